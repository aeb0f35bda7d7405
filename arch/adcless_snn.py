"""ADC-less in-memory computing for spiking networks (Apolinario, Kosta, Saxena, Roy, arXiv 2211.02167,
IEEE TETC 2023) and its high-precision-ADC baseline.

Both chips hold the same network on the same crossbars, the paper's evaluation setup (the first author's
NeuroSim V1.3 fork, docs/references.md#adc-less-snn): 65 nm, 1 GHz digital clock, RRAM crossbars without access
transistors (1-bit cells, R_on 6 kOhm, on/off 150, read at 0.5 V for 10 ns: cimsim's ReRAM defaults),
64x64 subarrays (32/64/128 in the paper: ``rows``/``cols``), 4-bit weights stored differentially
(G+ and G- columns, 3 magnitude bits in 1-bit cells: 6 columns per weight), 8-bit activations at the first
layer (streamed 1 bit per cycle) and spikes everywhere else (one read cycle per time step), digital LIF
units (1448 um^2, 5 ns, 1.20 mW: :class:`cimsim.devices.LIFNeuron`). They differ in the readout:

* ``adcless-snn``: one sense amplifier (1-bit ADC) per column. Each column's partial sum over a subarray is
  binarized, ``s * H(PS / s - threshold)``, with a learned scale ``s`` per (row block, slice, polarity,
  output), and the scaled decisions are accumulated digitally into the LIF membrane (a zero decision is
  skipped: ``nonzero_decisions`` additions);
* ``snn-hpadc``: a 5-bit ADC shared by 8 columns (the paper's baseline: a multi-level sense amplifier, modelled
  as a flash ADC of 31 comparators), whose codes are shifted and added digitally. As in NeuroSim's column
  multiplexing, an ADC reads its 8 columns one mux position at a time, each with its own read pulse and
  conversion, so one read cycle of the array lasts ``8 x max(read pulse, conversion)``.

Hierarchy and tile periphery: :class:`~cimsim.arch.tiled.TiledChip` (ISAAC's tiles, eDRAM, bus and
router, scaled to 65 nm). NeuroSim sizes its chip to each network; the paper's chip organisation is not
public, so we keep ISAAC's counts (est.), which holds every network of the paper's evaluation at 64x64.
Costs come from the run's events: crossbar reads (data dependent: a silent row is not driven), sense-amp
decisions or ADC conversions, accumulations, LIF updates (one per neuron per time step) and data movement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping

from cimsim import events as ev
from cimsim.arch.base import Component, register
from cimsim.arch.params import component, param
from cimsim.arch.tiled import DifferentialColumns, TiledChip
from cimsim.cost import EventCost, LayerPlan
from cimsim.devices.cell import MemoryCell
from cimsim.devices.converters import FlashADC, SenseAmp
from cimsim.devices.peripherals import LIFNeuron
from cimsim.devices.reram import ReRAM
from cimsim.spec import CrossbarSpec

_SRC = "ADC-less SNN, arXiv 2211.02167: NeuroSim evaluation setup (docs/references.md#adc-less-snn)"
CLOCK_HZ = 1e9   # the paper's evaluation: 1 GHz


def _hp_adc() -> FlashADC:
    # the paper's baseline: a 5-bit multi-level sense amplifier, i.e. 31 comparators against reference levels
    # (a flash ADC), converting once per 1 GHz clock cycle (est.)
    return FlashADC(bits=5, sample_rate_hz=CLOCK_HZ, node_nm=65)


@dataclass(frozen=True)
class SnnChip(DifferentialColumns, TiledChip):
    """What the ADC-less SNN chip and its HP-ADC baseline share (module docstring)."""

    rows: int = param(64, "1", f"{_SRC}: subarrays 32/64/128; 64x64 at the paper's working point", lo=2, hi=4096)
    cols: int = param(64, "1", f"{_SRC}: subarrays 32/64/128", lo=2, hi=4096)
    cell_bits: int = param(1, "bit", f"{_SRC}: 1-bit cells", lo=1, hi=8)
    weight_bits: int = param(4, "bit", f"{_SRC}: 4-bit weights", lo=2, hi=16)
    input_bits: int = param(8, "bit", f"{_SRC}: 8-bit activations at the first layer (spikes are 1 bit)", lo=1,
                            hi=16)
    read_cycle_s: float = param(10e-9, "s", f"{_SRC}: read pulse 10 ns", lo=1e-12, hi=1.0)
    node_nm: float = param(65, "nm", f"{_SRC}: 65 nm", lo=7, hi=180)
    clock_hz: float = param(CLOCK_HZ, "1/s", f"{_SRC}: 1 GHz", lo=1e6, hi=1e11)
    cell: MemoryCell = component(ReRAM, f"{_SRC}: RRAM without access transistors, R_on 6 kOhm, on/off 150, "
                                 "0.5 V / 10 ns reads (the ReRAM model's defaults)")
    lif: LIFNeuron = component(LIFNeuron, f"{_SRC}: digital LIF unit 1448 um^2, 5 ns, 1.20 mW")
    lif_units_per_tile: int = param(8, "1", "(est.) not public: 8 LIF units per tile (one per 12 crossbar "
                                    "columns' worth of outputs keeps LIF updates off the critical path)",
                                    lo=1, hi=4096)
    cols_per_accumulator: int = param(8, "1", "(est.) one accumulator (adder + register) per 8 columns, as the "
                                      "baseline's ADC sharing, so both chips have the same digital back-end",
                                      lo=1, hi=4096)
    accumulator_bits: int = param(16, "bit", "(est.) 16-bit membrane accumulators, as ISAAC's 16-bit partial "
                                  "sums (sec. 4)", lo=4, hi=64)

    aliases = {**TiledChip.aliases, "subarray": "rows"}
    cost_only = (*TiledChip.cost_only, "clock_hz", "lif.*", "lif_units_per_tile", "cols_per_accumulator",
                 "accumulator_bits")

    def check(self) -> None:
        super().check()
        if self.input_encoding != "twos":
            raise ValueError(f"input_encoding={self.input_encoding!r}: the sense-amp training models the 'twos' "
                             "encoding only: leave input_encoding at 'twos'")

    # ------------------------------------------------------------------ structure
    @property
    def accumulators_per_crossbar(self) -> int:
        return math.ceil(self.cols / self.cols_per_accumulator)

    def readout_cycle_s(self) -> float:
        """The time the readout needs per read cycle."""
        raise NotImplementedError

    @property
    def cycle_s(self) -> float:
        """One read cycle: the read pulse, or longer if the readout or the accumulators cannot keep up."""
        return max(self.read_cycle_s, self.readout_cycle_s(), self.cols_per_accumulator / self.clock_hz)

    def peak_ops_per_s(self) -> float:
        """Every crossbar busy on spikes: one time step's rows x weights MACs per read cycle (one MAC = 2 ops)."""
        return 2 * self.crossbars * self.rows * (self.cols // self.slices) / self.cycle_s

    def accumulate_energy_j(self) -> float:
        """(est.) One accumulation (a partial sum added into a membrane register): one ISAAC shift-and-add
        (Table 6, 16 bits at 32 nm), scaled to the node and to ``accumulator_bits``."""
        return self.scaled(self.tile_shift_add)[0] * self.accumulator_bits / 16

    def lif_energy_j(self) -> float:
        """One LIF update on the paper's unit (1.20 mW x 5 ns = 6 pJ at 65 nm), scaled to the node."""
        return self.scaled(self.lif)[0]

    # ------------------------------------------------------------------ inventory
    def readout_rows(self) -> list[Component]:
        raise NotImplementedError

    def inventory(self) -> tuple[Component, ...]:
        n = self.xbars_per_ima
        acc = n * self.accumulators_per_crossbar
        xbar, dac = self.array_rows()
        _, lif_p, lif_a, lif_leak = self.scaled(self.lif)
        return (
            *self.readout_rows(), dac, xbar,
            Component(f"accumulators ({self.accumulator_bits}-bit)", "accumulator", "ima", acc,
                      acc * self.accumulate_energy_j() * self.clock_hz,
                      acc * self.scaled(self.tile_shift_add)[2] * self.accumulator_bits / 16,
                      f"(est.) ISAAC shift-and-add (Table 6) scaled to {self.node_nm:g} nm, one per "
                      f"{self.cols_per_accumulator} columns, one add per clock", macro=True),
            Component("LIF units", "lif", "tile", self.lif_units_per_tile, self.lif_units_per_tile * lif_p,
                      self.lif_units_per_tile * lif_a, f"LIFNeuron model ({_SRC})",
                      self.lif_units_per_tile * lif_leak),
            *self.ima_register_rows(), *self.tile_rows(), *self.chip_rows())

    # ------------------------------------------------------------------ costs and timing
    def snn_event_costs(self) -> dict[str, EventCost]:
        return {**self.tile_event_costs(), ev.LIF_UPDATES: EventCost("lif", self.lif_energy_j())}

    def emitted_events(self, input_signed: bool = False) -> set[str]:
        return super().emitted_events(input_signed) | {ev.LIF_UPDATES}

    def dataflow_events(self, plan: LayerPlan, events: Mapping[str, float]) -> dict[str, float]:
        """As on every tiled chip (:meth:`TiledChip.dataflow_events`), but a layer's outputs leave the tile as
        spikes: the membrane accumulates next to the arrays and only the LIF units' 1-bit spikes travel to the
        eDRAM and the next layer (est.: the paper's digital LIF units sit after the accumulation)."""
        out = dict(events)
        in_bytes = plan.positions * plan.in_features * plan.groups * self.layer_input_bits(plan) / 8
        o_bytes = plan.positions * plan.out_features / 8
        for k, v in ((ev.INPUT_REGISTER_BYTES, in_bytes), (ev.OUTPUT_REGISTER_BYTES, o_bytes),
                     (ev.EDRAM_BYTES, in_bytes + o_bytes), (ev.BUS_BYTES, in_bytes + o_bytes)):
            out[k] = out.get(k, 0) + v
        return out

    def digital_events(self, layer: str, kind: str, events: Mapping[str, float]) -> dict[str, float]:
        """A spiking neuron layer runs on the LIF units: one update per neuron per time step (its profile's
        comparisons); other digital layers as on every tiled chip."""
        from cimsim.spiking import neuron_kinds   # torch: imported when a run is costed, not by 'cimsim archs'

        if kind in neuron_kinds():
            return {ev.LIF_UPDATES: events.get(ev.COMPARE, 0)}
        return super().digital_events(layer, kind, events)

    def unit_rates(self) -> dict[str, float]:
        return {**super().unit_rates(), ev.LIF_UPDATES: self.all_tiles * self.lif_units_per_tile * self.lif.op_rate_hz}

    def hierarchy(self) -> dict:
        return {**super().hierarchy(), "readout_cycle_s": self.readout_cycle_s()}


@register
@dataclass(frozen=True)
class AdclessSnn(SnnChip):
    """ADC-less SNN chip: a sense amplifier per column, learned per-row-block scales, digital LIF units."""

    sa_threshold: float = param(0.5, "1", "(est.) not public: the sense amp fires when PS > 0.5 x the column's scale "
                                "(rounds PS / s to {0, 1}, LSQ-style)", lo=0, hi=0.999999)
    sa_offset: float = param(0.0, "1", "sense-amp input-referred offset (units of the column scale); ideal by "
                             "default", lo=0, hi=100)

    name = "adcless-snn"
    learned_sense_amp_scales = True   # cimsim.mappers.snn_qat trains networks for it ('cimsim finetune')
    description = ("ADC-less SNN IMC (arXiv 2211.02167): 1-bit sense amp per column, binarized partial sums with "
                   "learned per-row-block scales accumulated into digital LIF units; 64x64 RRAM 1-bit cells, "
                   "4-bit weights, 65 nm")
    cost_only = (*SnnChip.cost_only,)

    def sense_amp(self) -> SenseAmp:
        return SenseAmp(threshold=self.sa_threshold, offset_sigma=self.sa_offset, node_nm=self.node_nm,
                        sample_rate_hz=1.0 / self.read_cycle_s)

    def readout_cycle_s(self) -> float:
        return self.sense_amp().latency_s

    def readout_rows(self) -> list[Component]:
        sa = self.sense_amp()
        n = self.xbars_per_ima * self.cols
        return [Component("sense amplifiers (1 per column)", "sense_amp", "ima", n, n * sa.energy_j / self.cycle_s,
                          n * sa.area_m2, f"SenseAmp model (comparator: MNSIM 2.0) at {self.node_nm:g} nm; {_SRC}",
                          macro=True)]

    def crossbar_spec(self, input_signed: bool = False) -> CrossbarSpec:
        """Differential weights; every column read by its own sense amp (the mapper adds the column scales)."""
        return CrossbarSpec(rows=self.rows, cols=self.cols, cell=self.cell, cell_bits=self.cell_bits,
                            weight_bits=self.weight_bits, input_bits=self.input_bits, dac_bits=self.dac_bits,
                            signed="differential", input_signed=input_signed, readout=self.sense_amp(),
                            input_encoding=self.input_encoding)

    def event_costs(self) -> dict[str, EventCost]:
        """Sense-amp decisions; a non-zero decision adds its scale into the accumulator (zeros skipped), which
        replaces the shift-and-add of the conversion (the engine's shift-add count costs nothing here)."""
        sa = self.sense_amp()
        return {**self.snn_event_costs(),
                ev.conversion(sa.kind): EventCost("sense_amp", sa.energy_j),
                ev.NONZERO_DECISIONS: EventCost("accumulator", self.accumulate_energy_j()),
                ev.SHIFT_ADDS: EventCost("accumulator", 0.0)}


@register
@dataclass(frozen=True)
class SnnHpAdc(SnnChip):
    """The paper's baseline: the same SNN chip with a 5-bit ADC shared by 8 columns."""

    adc: FlashADC = component(_hp_adc, f"{_SRC}: baseline 5-bit multi-level sense amp (ADC) shared by 8 columns: "
                              "a flash ADC (2**bits - 1 comparators), one conversion per 1 GHz clock (est.)")
    cols_per_adc: int = param(8, "1", f"{_SRC}: one ADC per 8 columns", lo=1, hi=4096)
    adc_range: str = param("calibrated", "", "our choice: ranges from calibration batches", choices=("calibrated",
                                                                                                      "full"))

    name = "snn-hpadc"
    description = ("HP-ADC SNN baseline (arXiv 2211.02167): the ADC-less SNN chip with a 5-bit ADC (multi-level "
                   "sense amp) shared by 8 columns, read one mux position per read pulse, codes shifted and added "
                   "digitally; 64x64 RRAM 1-bit cells, 4-bit weights, 65 nm")
    aliases = {**SnnChip.aliases, "adc_bits": "adc.bits", "adc_sample_rate_hz": "adc.sample_rate_hz"}
    derived = {**SnnChip.derived, "adc.node_nm": "node_nm"}
    cost_only = (*SnnChip.cost_only, "adc.sample_rate_hz", "cols_per_adc")

    def synced_components(self) -> dict:
        return {**super().synced_components(), "adc": replace(self.adc, node_nm=self.node_nm)}

    @property
    def adcs_per_crossbar(self) -> int:
        return math.ceil(self.cols / self.cols_per_adc)

    def readout_cycle_s(self) -> float:
        """The columns of one ADC are read one after another, each with its own read pulse and conversion
        (NeuroSim's column multiplexing, est.)."""
        return self.cols_per_adc * max(self.read_cycle_s, self.adc.latency_s)

    def readout_rows(self) -> list[Component]:
        n = self.xbars_per_ima * self.adcs_per_crossbar
        a = self.adc
        return [Component(f"ADC ({int(a.bits)}-bit, 1 per {self.cols_per_adc} columns)", "adc", "ima", n,
                          n * a.energy_j * a.sample_rate_hz, n * a.area_m2,
                          f"FlashADC model ({int(a.bits)} bits, {a.sample_rate_hz:.3g} S/s, {self.node_nm:g} nm); {_SRC}",
                          macro=True)]

    def crossbar_spec(self, input_signed: bool = False) -> CrossbarSpec:
        return CrossbarSpec(rows=self.rows, cols=self.cols, cell=self.cell, cell_bits=self.cell_bits,
                            weight_bits=self.weight_bits, input_bits=self.input_bits, dac_bits=self.dac_bits,
                            signed="differential", input_signed=input_signed, readout=self.adc,
                            adc_range=self.adc_range, input_encoding=self.input_encoding)

    def event_costs(self) -> dict[str, EventCost]:
        return {**self.snn_event_costs(),
                ev.conversion(self.adc.kind, int(self.adc.bits)): EventCost("adc", self.adc.energy_j),
                ev.CLIPPED_CONVERSIONS: EventCost("adc", 0.0),
                ev.SHIFT_ADDS: EventCost("accumulator", self.accumulate_energy_j())}
