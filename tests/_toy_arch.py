"""A toy architecture written in one file, as CONTRIBUTING.md describes: ISAAC-style tiles whose columns are
read once per matrix-vector product by a flash ADC after an analog shift-and-add over the input cycles (the
Neural-PIM dataflow class, here with made-up figures for the analog accumulator). It exists to show that a
new architecture is one subclass, its parameters, inventory and event costs, and that the contract tests
(tests/test_contracts.py) check it without a test of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from cimsim import events as ev
from cimsim.arch.base import Component
from cimsim.arch.params import component, param
from cimsim.arch.tiled import TiledChip
from cimsim.cost import EventCost
from cimsim.spec import CrossbarSpec
from cimsim.devices.converters import FlashADC
from cimsim.readouts import PER_MVM


@dataclass(frozen=True)
class ToyAnalogSum(TiledChip):
    """Tiles of 64x64 arrays, 8-bit operands, one 6-bit flash ADC per 16 columns, analog shift-and-add."""

    rows: int = param(64, "1", "toy: 64x64 arrays", lo=2, hi=4096)
    cols: int = param(64, "1", "toy: 64x64 arrays", lo=2, hi=4096)
    weight_bits: int = param(8, "bit", "toy: 8-bit weights", lo=2, hi=32)
    input_bits: int = param(8, "bit", "toy: 8-bit inputs", lo=1, hi=32)
    adc: FlashADC = component(lambda: FlashADC(bits=6, sample_rate_hz=1e9, node_nm=32), "toy: a 6-bit flash ADC")
    cols_per_adc: int = param(16, "1", "toy: one ADC per 16 columns", lo=1, hi=4096)
    accumulate_energy_j: float = param(5e-15, "J", "toy (est.): one switched-capacitor accumulation step", lo=0, hi=1e-9)

    name = "toy-analog-sum"
    description = "toy: one flash conversion per MVM after an analog shift-and-add (CONTRIBUTING.md)"
    aliases = {**TiledChip.aliases, "adc_bits": "adc.bits"}
    derived = {**TiledChip.derived, "adc.node_nm": "node_nm"}
    cost_only = (*TiledChip.cost_only, "accumulate_energy_j", "cols_per_adc", "adc.sample_rate_hz")

    def synced_components(self) -> dict:
        return {**super().synced_components(), "adc": replace(self.adc, node_nm=self.node_nm)}

    @property
    def slices(self) -> int:
        return math.ceil(self.weight_bits / self.cell_bits)

    def check(self) -> None:
        super().check()
        if self.cols % (2 * self.slices):
            raise ValueError(f"cols ({self.cols}) must hold whole differential weights of {self.slices} slices")

    def inventory(self) -> tuple[Component, ...]:
        adcs = self.xbars_per_ima * math.ceil(self.cols / self.cols_per_adc)
        xbar, dac = self.array_rows()
        return (Component("flash ADC", "adc", "ima", adcs, adcs * self.adc.power_w, adcs * self.adc.area_m2,
                          "FlashADC model", macro=True),
                xbar, dac, *self.ima_register_rows(), *self.tile_rows(), *self.chip_rows())

    def crossbar_spec(self, input_signed: bool = False) -> CrossbarSpec:
        return CrossbarSpec(rows=self.rows, cols=self.cols, cell=self.cell, cell_bits=self.cell_bits,
                            weight_bits=self.weight_bits, input_bits=self.input_bits, dac_bits=self.dac_bits,
                            signed="differential", input_signed=input_signed, readout=self.adc,
                            adc_range="calibrated", conversion=PER_MVM)

    def event_costs(self) -> dict[str, EventCost]:
        return {**self.tile_event_costs(),
                ev.conversion(self.adc.kind, int(self.adc.bits)): EventCost("adc", self.adc.energy_j),
                ev.CLIPPED_CONVERSIONS: EventCost("adc", 0.0),
                ev.ANALOG_ACCUMULATIONS: EventCost("analog_sum", self.accumulate_energy_j),
                ev.SHIFT_ADDS: EventCost("shift_add", self.scaled(self.tile_shift_add)[0])}
