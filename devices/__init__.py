"""Device physics (``cimsim.devices``): memory cells, converters and digital peripherals.

Every model is a frozen dataclass whose parameters carry an SI unit, the source of their default and
their allowed range (see :mod:`cimsim.devices.base`); ``cimsim devices`` lists them all. Only numpy,
scipy and :mod:`cimsim.errors` are imported here (see DESIGN.md).
"""

from cimsim.devices.base import describe, param
from cimsim.devices.cell import IdealCell, MemoryCell
from cimsim.devices.converters import DAC, FlashADC, IdealReadout, Readout, SarADC, SenseAmp, TernaryReadout
from cimsim.devices.domain_wall import DomainWallSynapse
from cimsim.devices.mosfet import MOSFETSynapse
from cimsim.devices.peripherals import (PERIPHERALS, ActivationUnit, Bus, EDRAMBuffer, HyperTransportLink, LIFNeuron,
                                        OutputRegister, PoolingUnit, Register, Router, SampleHold,
                                        ShiftAdd, SRAMBuffer, TileOutputRegister)
from cimsim.devices.reram import ReRAM

__all__ = [
    "describe", "param", "MemoryCell", "IdealCell", "ReRAM", "MOSFETSynapse", "DomainWallSynapse",
    "Readout", "IdealReadout", "SarADC", "FlashADC", "SenseAmp", "TernaryReadout", "DAC",
    "PERIPHERALS", "ShiftAdd", "SampleHold", "Register", "OutputRegister", "TileOutputRegister",
    "EDRAMBuffer", "SRAMBuffer", "Bus", "Router", "ActivationUnit", "PoolingUnit", "HyperTransportLink", "LIFNeuron",
]
