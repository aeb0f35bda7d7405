"""Device physics (``cimsim.devices``): memory cells, converters and peripherals.

Only numpy and scipy may be imported here (see DESIGN.md). The cell and converter models arrive with
the Devices milestone (issue 3).
"""
