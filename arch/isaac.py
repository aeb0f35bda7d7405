"""ISAAC (Shafiee et al., ISCA 2016): the high-precision-ADC baseline of the analog CiM papers.

Hierarchy: chip -> tiles -> IMAs (in-situ multiply-accumulate units) -> crossbars (:class:`TiledChip`).
Every IMA has ``xbars_per_ima`` crossbars, one SAR ADC per ``cols_per_adc`` columns converting every
column of every input cycle (one conversion per cycle, row block and column), a sample-and-hold per
column and one shift-and-add unit per two crossbars.

The inventory is derived from the device models at the operating point: the ADC from the SAR model at
its bits, sample rate and node, calibrated once to ISAAC's own converter (Table 6: 16 mW and 0.0096 mm^2
for 8 ADCs of 8 bits at 1.28 GS/s, i.e. 1.5625 pJ per conversion; ``adc_energy_factor`` and
``adc_area_factor`` are that design's distance from the survey envelope, 0.755 and 0.315, kept at every other
resolution: below the envelope's knee, about 9 bits at 1.28 GS/s and 32 nm, a b-bit conversion costs
1.5625 pJ / 2**(8 - b));
the crossbars from the cell model read for ISAAC's 100 ns (sec. 4; R_on solved so the read draws Table 6's 2.4 mW per
IMA, 30 pJ per array read); the DACs (Table 6's power held for the read), sample-and-holds, registers and tile units
from their models.
At ISAAC's defaults the chip rolls up to Table 6's 65.8 W and 85.4 mm^2; ADC bits, rows, columns, DAC
bits and columns per ADC all move power and area. Runs charge the same models' energies per event.

Peak throughput. A crossbar of ``rows x cols`` cells of ``cell_bits`` bits holds ``cols / slices``
weights of ``weight_bits`` bits per row (``slices = weight_bits / cell_bits``); inputs stream
``dac_bits`` per cycle, so one full-precision matrix-vector product takes ``input_bits / dac_bits``
cycles. Peak = crossbars x rows x cols/slices MACs per ``cycles x cycle_s``, one MAC = 2 operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping

from cimsim import events as ev
from cimsim.arch.base import Component, register
from cimsim.arch.params import component, param
from cimsim.arch.tiled import ISAAC_READ_S, T6, TiledChip
from cimsim.cost import EventCost, LayerPlan
from cimsim.spec import CrossbarSpec
from cimsim.devices.converters import SarADC
from cimsim.devices.peripherals import SampleHold, ShiftAdd

# ISAAC Table 6: 8 ADCs of 8 bits at 1.28 GS/s draw 16 mW and occupy 0.0096 mm^2 per IMA
TABLE6_ADC_RATE_HZ = 1.28e9                     # ISAAC sec. 4 / Table 6: 1.28 GS/s
TABLE6_ADC_ENERGY_J = 16e-3 / 8 / TABLE6_ADC_RATE_HZ   # 1.5625 pJ per conversion
TABLE6_ADC_AREA_M2 = 0.0096e-6 / 8              # 1200 um^2 per ADC


def _isaac_adc() -> SarADC:
    return SarADC(bits=8, sample_rate_hz=TABLE6_ADC_RATE_HZ, node_nm=32)


# ISAAC's converter against the SAR model at the same point (8 bits, 1.28 GS/s, 32 nm)
ADC_ENERGY_FACTOR = TABLE6_ADC_ENERGY_J / _isaac_adc().energy_j
ADC_AREA_FACTOR = TABLE6_ADC_AREA_M2 / _isaac_adc().area_m2


@register
@dataclass(frozen=True)
class Isaac(TiledChip):
    """ISAAC: 168 tiles x 12 IMAs x 8 crossbars of 128x128 2-bit cells, 16-bit weights and inputs, 8-bit ADCs."""

    adc: SarADC = component(_isaac_adc, "ISAAC sec. 4 / Table 6: one 8-bit 1.28 GS/s SAR ADC per crossbar "
                            "(Kull et al., ISSCC 2013), SAR model of cimsim.devices")
    adc_energy_factor: float = param(ADC_ENERGY_FACTOR, "1", f"{T6}: 2 mW per ADC at 1.28 GS/s, over the SAR "
                                     "model at 8 bits (calibration kept at every resolution)", lo=1e-3, hi=1e3)
    adc_area_factor: float = param(ADC_AREA_FACTOR, "1", f"{T6}: 0.0012 mm^2 per ADC, over the SAR model's area "
                                   "at 8 bits", lo=1e-3, hi=1e3)
    read_cycle_s: float = param(ISAAC_READ_S, "s", "ISAAC sec. 4: a crossbar read takes 100 ns, the cycle its 1.28 GS/s "
                                "ADC converts 128 columns in (arch/tiled.py ISAAC_READ_S)", lo=1e-12, hi=1.0)
    cols_per_adc: int = param(128, "1", f"{T6}: one ADC shared by the 128 columns of a crossbar", lo=1, hi=4096)
    signed: str = param("offset", "", "ISAAC sec. 4: signed weights stored with a bias, removed digitally",
                        choices=("offset", "differential", "twos"))
    adc_range: str = param("calibrated", "", "our choice: ranges from calibration batches (ISAAC sizes its ADC to "
                           "the worst case with weight flipping; 'full' models a worst-case range)",
                           choices=("calibrated", "full"))
    sample_hold: SampleHold = component(SampleHold, f"{T6}: one sample-and-hold per column")
    ima_shift_add: ShiftAdd = component(ShiftAdd, f"{T6}: 4 shift-and-add units per IMA (one per 2 crossbars)")

    name = "isaac"
    description = ("ISAAC (ISCA 2016): 168 tiles x 12 IMAs x 8 crossbars 128x128, 2-bit cells, 16-bit "
                   "weights/inputs, 1-bit DACs, one 8-bit 1.28 GS/s SAR ADC per crossbar, 32 nm")
    aliases = {**TiledChip.aliases, "adc_bits": "adc.bits", "adc_sample_rate_hz": "adc.sample_rate_hz"}
    derived = {**TiledChip.derived, "adc.node_nm": "node_nm"}
    cost_only = (*TiledChip.cost_only, "adc.sample_rate_hz", "adc_energy_factor", "adc_area_factor", "cols_per_adc",
                 "sample_hold.*", "ima_shift_add.*")

    def synced_components(self) -> dict:
        return {**super().synced_components(), "adc": replace(self.adc, node_nm=self.node_nm)}

    def check(self) -> None:
        super().check()
        if self.weight_bits % self.cell_bits:
            raise ValueError(f"weight_bits ({self.weight_bits}) must be a multiple of cell_bits ({self.cell_bits})")
        if self.cols % self.slices:
            raise ValueError(f"cols ({self.cols}) must hold whole weights of {self.slices} slices")

    @property
    def adc_bits(self) -> int:
        return int(self.adc.bits)

    @property
    def slices(self) -> int:
        return self.weight_bits // self.cell_bits

    @property
    def adcs_per_crossbar(self) -> int:
        return math.ceil(self.cols / self.cols_per_adc)

    def readout_cycle_s(self) -> float:
        """The shared ADC converts its ``cols_per_adc`` columns every cycle: 128 / 1.28 GS/s = 100 ns (ISAAC sec. 4)."""
        return self.cols_per_adc / self.adc.sample_rate_hz

    # ------------------------------------------------------------------ inventory
    def adc_energy_j(self) -> float:
        return self.adc_energy_factor * self.adc.energy_j

    def inventory(self) -> tuple[Component, ...]:
        n = self.xbars_per_ima
        adcs = n * self.adcs_per_crossbar
        xbar, dac = self.array_rows()
        adc_src = (f"SarADC model ({self.adc_bits} bits, {self.adc.sample_rate_hz:.3g} S/s, {self.node_nm:g} nm) "
                   f"calibrated to {T6}")
        return (
            Component(f"ADC ({self.adc_bits}-bit, {self.adc.sample_rate_hz / 1e9:.3g} GS/s)", "adc", "ima", adcs,
                      adcs * self.adc_energy_j() * self.adc.sample_rate_hz,
                      adcs * self.adc_area_factor * self.adc.area_m2, adc_src, macro=True),
            dac,
            self.unit_row("sample-and-hold", "sample_hold", "ima", n * self.cols, self.sample_hold, macro=True),
            xbar,
            self.unit_row("shift-and-add", "shift_add", "ima", n / 2, self.ima_shift_add, macro=True),
            *self.ima_register_rows(), *self.tile_rows(), *self.chip_rows())

    # ------------------------------------------------------------------ simulation (used by the mapper)
    def crossbar_spec(self, input_signed: bool = False) -> CrossbarSpec:
        """The tile every mapped layer is programmed into."""
        return CrossbarSpec(rows=self.rows, cols=self.cols, cell=self.cell, cell_bits=self.cell_bits,
                            weight_bits=self.weight_bits, input_bits=self.input_bits, dac_bits=self.dac_bits,
                            signed=self.signed, input_signed=input_signed, readout=self.adc,
                            adc_range=self.adc_range, input_encoding=self.input_encoding)

    def event_costs(self) -> dict[str, EventCost]:
        """Energy of every event kind the ledger may hold (crossbar, converters, digital peripherals)."""
        sa = self.scaled(self.ima_shift_add)[0]
        return {
            **self.tile_event_costs(),
            ev.conversion(self.adc.kind, self.adc_bits): EventCost("adc", self.adc_energy_j()),
            ev.CLIPPED_CONVERSIONS: EventCost("adc", 0.0),
            ev.SAMPLE_HOLDS: EventCost("sample_hold", self.scaled(self.sample_hold)[0]),
            ev.SHIFT_ADDS: EventCost("shift_add", sa),
            ev.OFFSET_CORRECTION_ADDS: EventCost("shift_add", sa),
        }

    def readout_dataflow_events(self) -> set[str]:
        return {ev.SAMPLE_HOLDS}

    def dataflow_events(self, plan: LayerPlan, events: Mapping[str, float]) -> dict[str, float]:
        """The tile's data movement (:meth:`TiledChip.dataflow_events`) plus one sample-and-hold per conversion."""
        out = super().dataflow_events(plan, events)
        out[ev.SAMPLE_HOLDS] = out.get(ev.SAMPLE_HOLDS, 0) + ev.conversions(events)
        return out
