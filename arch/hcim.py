"""HCiM (Negi, Saxena, Roy, arXiv 2403.13577): an ADC-less hybrid analog-digital CiM accelerator.

Dataflow. Weights are stored differentially (G+ and G- columns, ``weight_bits - 1`` magnitude bits sliced
into ``cell_bits`` cells); inputs stream ``dac_bits`` per cycle. Every column pair is read by comparators
against each other (the readout sees ``PS+ - PS-``, :attr:`cimsim.CrossbarSpec.pair_readout`): a ternary
readout (two comparators, references ``+-threshold x alpha``) gives -1 / 0 / +1, a binary one (one
comparator) the sign. There is no multi-bit ADC and no sample-and-hold. The decisions drive a digital
CiM (DCiM) scale-factor array per crossbar, an SRAM holding the learned per-column scale factors
``alpha`` (per row block, slice and output, trained by :mod:`cimsim.mappers.qat`), which adds or
subtracts ``alpha`` into the output accumulators in memory; a ternary zero is skipped (no add).

Costs are counted from the run's events: crossbar read energy (data dependent), DAC drives, comparator
decisions (``ternary_conversion`` / ``sense-amp_conversion``), scale-factor additions actually performed
(``nonzero_decisions``), and the same register / eDRAM / bus traffic and digital units as ISAAC's tile
(the paper compares HCiM against an analog CiM baseline of that kind; we keep the ISAAC hierarchy so
that the comparison isolates the readout). Latency: a read cycle lasts the crossbar read, or longer if
the comparators or the DCiM array (its additions per cycle at ``dcim_add_rate_hz``) cannot keep up.

Operating point. HCiM's exact array and precision parameters are not available offline; we choose
4-bit weights and 4-bit activations (the precision at which partial-sum quantization keeps CNN accuracy
within about a point in the PSQ literature, and the lowest at which a 4-bit-ADC baseline is lossless
per column slice), 1-bit cells and 1-bit DACs (the ADC-less setting: a column pair's partial sum of one
input bit plane and one weight bit), 128x128 arrays and ISAAC's 32 nm, 100 ns technology so that the
ISAAC baselines (``cimsim.arch.get("isaac", adc_bits=4 or 7, weight_bits=4, input_bits=4, cell_bits=1)``)
differ only in the readout.

Options. ``first_input_bits`` (e.g. 8): the network's first mapped layer streams that many input bit planes
(``first_input_bits / dac_bits`` cycles) through the same comparators; LeNet-5's first convolution has only 25
rows, so 4-bit images give its ternary partial sums few distinct values. ``cycle_scales``: one scale factor per
column pair and input cycle (the DCiM array holds ``input_cycles`` times as many) instead of one shared by the
cycles.

``adc_layers`` (``none`` | ``first`` | ``last`` | ``first,last``; default none): those layers' column pairs are read
by the 4-bit (``adc_layer_bits``; 7: the other baseline) SAR ADC of HCiM's ISAAC baselines instead of the
comparators, each pair's ``PS+ - PS-`` converted once per input cycle and row block over the layer's range (set by
partial-sum QAT from calibration partial sums and kept in the checkpoint; else calibrated at mapping), the codes
shifted and added digitally as in ISAAC, with one sample-and-hold per conversion. Low-precision training keeps the
first and last layers at higher precision as common practice (8 bits in LSQ, Esser et al., ICLR 2020; full precision
in DoReFa-Net, Zhou et al., arXiv 1606.06160); reading them by an ADC instead of comparators is that practice applied
to the partial sums (est.: the paper does not say which layers, if any, HCiM reads otherwise). Inventory (est.): one
such ADC per crossbar, ISAAC's organisation, plus a sample-and-hold per column pair and ISAAC's 4 shift-and-add units
per IMA, in every IMA (an upper bound: a chip would equip only the IMAs those layers occupy). The ADC's range rule,
quantizer and gradient in fine-tuning: :mod:`cimsim.mappers.qat_ops`.

``learn_thresholds`` (default off): every column scale (per row block, slice, output, and cycle with ``cycle_scales``)
gets its own comparator threshold ``t`` in units of its alpha, learned in fine-tuning independently of alpha
(:class:`cimsim.mappers.qat_ops.ThresholdDecision`), starting at ``threshold``: the pair's references are ``+-t x
alpha``. A programmable reference per column pair (est., our model): a ``threshold_bits`` DAC (the project's
:class:`~cimsim.devices.converters.DAC` model, ISAAC Table 6's unit driver) scaling the column's reference full scale
(alpha's, which the default's fixed ``0.5 x alpha`` references need as well and which is not costed in either case)
by ``k / 2**threshold_bits``, ``k = 0 .. 2**threshold_bits - 1``: the thresholds live on that grid in [0, 1), in
fine-tuning too. One DAC per pair (the ``-t`` comparator compares the swapped pair against the same reference); a
drive per ternary decision (``reference_dac_drives``), held for ``reference_hold_s``; the thresholds' bits in the
DCiM SRAM beside the scales.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from cimsim import events as ev
from cimsim.arch.base import Component, crossbar_events, register
from cimsim.arch.isaac import ADC_ENERGY_FACTOR, ADC_AREA_FACTOR, TABLE6_ADC_RATE_HZ
from cimsim.arch.params import param
from cimsim.arch.tiled import T6, DifferentialColumns, TiledChip
from cimsim.cost import EventCost, LayerPlan
from cimsim.spec import CrossbarSpec
from cimsim.devices.converters import DAC, SarADC, SenseAmp, TernaryReadout
from cimsim.devices.peripherals import SampleHold, ShiftAdd
from cimsim.devices.technology import area_scale, energy_scale

READOUTS = ("ternary", "binary")
# the layers an ADC may read instead of the comparators (adc_layers; cimsim.mappers.qat.PSQConfig takes the same)
ADC_LAYERS = ("none", "first", "last", "first,last")
_SRC = "HCiM, arXiv 2403.13577"
# (est.) a 6T SRAM bit cell at 32 nm: 0.171 um^2 (Intel 32 nm, Natarajan et al., IEDM 2008); the DCiM
# array's compute periphery (adders, sense amplifiers) taken as doubling it
SRAM_BIT_AREA_M2_32NM = 0.171e-12
DCIM_AREA_OVERHEAD = 2.0


@register
@dataclass(frozen=True)
class Hcim(DifferentialColumns, TiledChip):
    """HCiM: ISAAC-like tiles whose crossbars are read by comparators and a DCiM scale-factor array."""

    cell_bits: int = param(1, "bit", "(est.) 1-bit cells: one weight bit per partial sum (ADC-less setting)", lo=1, hi=8)
    weight_bits: int = param(4, "bit", "(est.) 4-bit weights: see the module docstring", lo=2, hi=32)
    input_bits: int = param(4, "bit", "(est.) 4-bit activations", lo=1, hi=32)
    first_input_bits: int = param(0, "bit", "inputs of the network's first mapped layer, streamed dac_bits per cycle "
                                  "and read by the same comparators (0: input_bits). 8 keeps the image at 8 bits, the "
                                  "ADC-less IMC setup of the same group (4-bit weights, 8-bit activations at the first "
                                  "layer: Apolinario et al., arXiv 2211.02167, hardware evaluation) and the QAT rule of "
                                  "a full-precision first layer (Zhou et al., DoReFa-Net, arXiv 1606.06160)", lo=0, hi=16)
    cycle_scales: bool = param(False, "", "one learned scale factor per column pair and input cycle (alpha_{j,t}) "
                               "instead of one per column pair shared by the cycles: HCiM keeps its scale factors in "
                               "the DCiM array (arXiv 2403.13577), which then holds input_cycles times as many "
                               "(our option; off: the shared factor)")
    adc_layers: str = param("none", "", "layers whose column pairs an ADC reads instead of the comparators: the "
                            "network's first and/or last mapped layer, kept at higher precision as low-precision "
                            "training does (LSQ, Esser et al., ICLR 2020; DoReFa-Net, arXiv 1606.06160; est. for "
                            "partial sums); none: every layer ternary/binary (HCiM, arXiv 2403.13577)",
                            choices=ADC_LAYERS)
    adc_layer_bits: int = param(4, "bit", "bits of that ADC: the 4-bit baseline's SAR ADC (7: the 7-bit "
                                "baseline's), ISAAC's converter at 1.28 GS/s and 32 nm calibrated to Table 6 "
                                "(arch/isaac.py)", lo=1, hi=16)
    readout: str = param("ternary", "", "HCiM: ternary partial sums (binary also supported)", choices=READOUTS)
    learn_thresholds: bool = param(False, "", "one learned comparator threshold per column scale (t x alpha, t in [0, "
                                   "1) on the reference DAC's grid), learned with the scales in fine-tuning, each pair's "
                                   "references set by a threshold_bits DAC (our option; off: threshold for every "
                                   "column, HCiM arXiv 2403.13577)")
    threshold_bits: int = param(5, "bit", "(est.) bits of each column pair's reference DAC with learn_thresholds: a "
                                "grid of 1/32 x alpha, finer than the 0.3-0.6 x alpha span over which a fixed threshold "
                                "moved the accuracy within seed noise (BENCHMARKS.md, HCiM)", lo=1, hi=8)
    reference_hold_s: float = param(0.0, "s", "(est.) how long a reference DAC drives per decision; 0: the comparator "
                                    "pair's resolution time (the latch samples the reference then; the DAC model's "
                                    "power for that time); read_cycle_s (a reference held the whole read, ISAAC's "
                                    "word-line driver power) is the upper bound", lo=0, hi=1)
    threshold: float = param(0.5, "1", "(est.) comparator reference = 0.5 x alpha: ternary rounding of PS / alpha "
                             "(LSQ, Esser et al. ICLR 2020, with levels -1, 0, 1)", lo=0, hi=0.999999)
    scale_bits: int = param(16, "bit", "(est.) scale factors and accumulators as ISAAC's 16-bit values (sec. 4)",
                            lo=1, hi=64)
    dcim_add_rate_hz: float = param(1.28e9, "1/s", "(est.) additions per second of one crossbar's DCiM array: "
                                    "ISAAC's shift-and-add rate per crossbar (4 S+A units per 8 crossbars, Table 6)",
                                    lo=1.0, hi=1e13)
    comparator_offset: float = param(0.0, "1", "comparator input-referred offset in units of alpha; ideal by default",
                                     lo=0, hi=100)

    name = "hcim"
    description = ("HCiM (arXiv 2403.13577): ADC-less; ternary/binary partial sums by comparators on column pairs, "
                   "learned per-column scale factors added in a digital CiM array with zero-skipping; "
                   "4-bit weights/inputs, 1-bit cells, 128x128, ISAAC tiles, 32 nm")
    learned_column_scales = True     # the mapper programs learned scale factors (cimsim.mappers.qat)
    cost_only = (*TiledChip.cost_only, "scale_bits", "dcim_add_rate_hz", "reference_hold_s")
    # the ADC-read layers' shift-and-adds and sample-and-holds: ISAAC's units (Table 6), as in the baselines
    LAYER_SHIFT_ADD = ShiftAdd()
    LAYER_SAMPLE_HOLD = SampleHold()

    def check(self) -> None:
        super().check()
        if self.cols % 2:
            raise ValueError(f"cols ({self.cols}) must be even: columns are read in G+/G- pairs")
        if self.learn_thresholds and self.readout != "ternary":
            raise ValueError("learn_thresholds needs readout=ternary (a binary readout compares with 0)")
        if self.first_input_bits % self.dac_bits:
            raise ValueError(f"first_input_bits ({self.first_input_bits}) must be a multiple of dac_bits "
                             f"({self.dac_bits})")
        if self.input_encoding != "twos":
            raise ValueError(f"input_encoding={self.input_encoding!r}: HCiM's partial-sum fine-tuning models the "
                             "'twos' encoding only: leave input_encoding at 'twos'")

    def first_layer_input_bits(self) -> int:
        return self.first_input_bits

    # ------------------------------------------------------------------ the ADC-read layers (adc_layers)
    def layer_adc(self) -> SarADC:
        """The ADC of the layers ``adc_layers`` names: ISAAC's SAR converter at ``adc_layer_bits`` (the baselines')."""
        return SarADC(bits=self.adc_layer_bits, sample_rate_hz=TABLE6_ADC_RATE_HZ, node_nm=self.node_nm)

    def layer_adc_energy_j(self) -> float:
        """One conversion, calibrated to ISAAC Table 6 as the baselines' (``arch/isaac.py`` ADC_ENERGY_FACTOR)."""
        return ADC_ENERGY_FACTOR * self.layer_adc().energy_j

    def adc_read_spec(self, input_signed: bool, first: bool, last: bool) -> CrossbarSpec | None:
        """The tile of a layer read by the ADC (the network's ``first`` and/or ``last`` mapped layer, as
        ``adc_layers`` names them): the same differential pairs, each pair's ``PS+ - PS-`` converted once per
        input cycle and row block over a calibrated range; None for the layers the comparators read."""
        roles = self.adc_layers.split(",")
        if not ((first and "first" in roles) or (last and "last" in roles)):
            return None
        return CrossbarSpec(rows=self.rows, cols=self.cols, cell=self.cell, cell_bits=self.cell_bits,
                            weight_bits=self.weight_bits, input_bits=self.input_bits, dac_bits=self.dac_bits,
                            signed="differential", input_signed=input_signed, readout=self.layer_adc(),
                            adc_range="calibrated", pair_readout=True)

    def _adc_event(self) -> str:
        return ev.conversion(self.layer_adc().kind, self.adc_layer_bits)

    def adc_rows(self) -> list[Component]:
        """(est.) One ADC per crossbar (ISAAC's organisation), a sample-and-hold per column pair and ISAAC's 4
        shift-and-add units, in every IMA; none without ADC-read layers."""
        if self.adc_layers == "none":
            return []
        n, adc = self.xbars_per_ima, self.layer_adc()
        return [Component(f"ADC ({self.adc_layer_bits}-bit, {adc.sample_rate_hz / 1e9:.3g} GS/s) of the ADC-read "
                          "layers", "adc", "ima", n, n * self.layer_adc_energy_j() * adc.sample_rate_hz,
                          n * ADC_AREA_FACTOR * adc.area_m2, f"SarADC model calibrated to {T6}; (est.) one per "
                          "crossbar in every IMA", macro=True),
                self.unit_row("sample-and-hold", "sample_hold", "ima", n * self.cols // 2, self.LAYER_SAMPLE_HOLD,
                              macro=True),
                self.unit_row("shift-and-add", "shift_add", "ima", n / 2, self.LAYER_SHIFT_ADD, macro=True)]

    # ------------------------------------------------------------------ structure
    @property
    def comparators_per_pair(self) -> int:
        return 2 if self.readout == "ternary" else 1

    def comparator(self):
        """The readout model of one column pair (threshold in units of the column's scale factor)."""
        if self.readout == "ternary":
            return TernaryReadout(delta=self.threshold, offset_sigma=self.comparator_offset, node_nm=self.node_nm,
                                  sample_rate_hz=1.0 / self.read_cycle_s)
        return SenseAmp(threshold=0.0, offset_sigma=self.comparator_offset, node_nm=self.node_nm,
                        sample_rate_hz=1.0 / self.read_cycle_s)

    def reference_dac(self) -> DAC:
        """One column pair's reference DAC (learn_thresholds): ``threshold_bits`` at the node, driving for
        ``reference_hold_s`` (0: the comparators' resolution time) per decision."""
        return DAC(bits=self.threshold_bits, node_nm=self.node_nm,
                   cycle_s=self.reference_hold_s or self.comparator().latency_s)

    def dcim_add_energy_j(self) -> float:
        """(est.) One scale-factor addition in the DCiM array: one ISAAC shift-and-add operation (a 16-bit add
        into a partial-sum register, ISAAC Table 6), scaled from 32 nm to the node."""
        return self.tile_shift_add.energy_per_op_j * energy_scale(self.tile_shift_add.node_nm, self.node_nm) \
            * self.scale_bits / 16

    @property
    def cycle_s(self) -> float:
        """The shortest read cycle: the crossbar read (the comparators resolve in a fraction of it)."""
        return max(self.read_cycle_s, self.comparator().latency_s)

    # ------------------------------------------------------------------ inventory
    def inventory(self) -> tuple[Component, ...]:
        """ISAAC's tile without ADCs, sample-and-holds and IMA shift-and-adds, plus comparators and DCiM arrays."""
        pairs = self.xbars_per_ima * self.cols // 2
        comp = self.comparator()
        rate = 1.0 / self.read_cycle_s
        dcim_bits = (self.xbars_per_ima * (self.cols // 2) * self.magnitude_slices       # scales (and thresholds)
                     * (self.scale_bits + (self.threshold_bits if self.learn_thresholds else 0))
                     * (max(self.input_cycles, self.first_input_bits // self.dac_bits) if self.cycle_scales else 1))
        xbar, dac = self.array_rows()
        ref = self.reference_dac()
        refs = [Component(f"reference DACs ({self.threshold_bits}-bit, learned thresholds)", "reference_dac", "ima",
                          pairs, pairs * ref.energy_j * rate, pairs * ref.area_m2,
                          f"DAC model ({T6}); (est.) one per column pair, a drive per decision", macro=True)
                ] if self.learn_thresholds else []
        return (
            Component(f"comparators ({self.readout})", "comparator", "ima", pairs * self.comparators_per_pair,
                      pairs * comp.energy_j * rate, pairs * comp.area_m2,
                      f"{type(comp).__name__} model (comparator: MNSIM 2.0); {_SRC}", macro=True),
            Component("DCiM scale-factor arrays", "dcim", "ima", self.xbars_per_ima,
                      self.xbars_per_ima * self.dcim_add_rate_hz * self.dcim_add_energy_j(),
                      dcim_bits * SRAM_BIT_AREA_M2_32NM * DCIM_AREA_OVERHEAD * area_scale(32, self.node_nm),
                      f"(est.) {_SRC}: SRAM of the scale factors plus adders; power at full add rate", macro=True),
            *refs, *self.adc_rows(), dac, xbar, *self.ima_register_rows(), *self.tile_rows(), *self.chip_rows())

    def peak_ops_per_s(self) -> float:
        macs_per_mvm = self.rows * (self.cols // self.slices)
        return 2 * self.crossbars * macs_per_mvm / (self.input_cycles * self.cycle_s)

    # ------------------------------------------------------------------ simulation (used by the mapper)
    def crossbar_spec(self, input_signed: bool = False) -> CrossbarSpec:
        """Differential tile read in G+/G- pairs by the comparators; the mapper adds the column scales."""
        return CrossbarSpec(rows=self.rows, cols=self.cols, cell=self.cell, cell_bits=self.cell_bits,
                            weight_bits=self.weight_bits, input_bits=self.input_bits, dac_bits=self.dac_bits,
                            signed="differential", input_signed=input_signed, readout=self.comparator(),
                            pair_readout=True)

    def psq_fields(self) -> dict:
        return {"rows": self.rows, "cell_bits": self.cell_bits, "weight_bits": self.weight_bits,
                "input_bits": self.input_bits, "dac_bits": self.dac_bits, "readout": self.readout,
                "threshold": float(self.threshold), "first_input_bits": self.first_input_bits,
                "cycle_scales": bool(self.cycle_scales), "adc_layers": self.adc_layers,
                "adc_bits": self.adc_layer_bits, "learn_thresholds": bool(self.learn_thresholds),
                "threshold_bits": self.threshold_bits}

    def mvm_time_s(self, plan: LayerPlan, events: Mapping[str, float]) -> float:
        """One MVM: its cycles, each as long as the read or as the DCiM array needs for the cycle's additions
        (the layer's non-zero decisions per array and cycle, on average: data dependent)."""
        cycles = events.get(ev.ARRAY_READ_CYCLES, 0)
        adds_per_cycle = events.get(ev.NONZERO_DECISIONS, 0) / cycles if cycles else 0.0
        return self.layer_cycles(plan) * max(self.cycle_s, adds_per_cycle / self.dcim_add_rate_hz)

    def event_costs(self) -> dict[str, EventCost]:
        """Energy of every event kind the ledger may hold. Comparators latch the bit lines (no sample-and-hold);
        the DCiM array's scale-factor additions replace the shift-and-adds (``nonzero_decisions``: zeros are
        skipped), so the engine's shift-and-add count costs nothing here."""
        comp = self.comparator()
        out = {
            **self.tile_event_costs(),
            ev.conversion(comp.kind): EventCost("comparator", comp.energy_j),
            ev.NONZERO_DECISIONS: EventCost("dcim", self.dcim_add_energy_j()),
            ev.SHIFT_ADDS: EventCost("dcim", 0.0),
        }
        if self.learn_thresholds:       # each decision's reference set by the pair's DAC
            out[ev.REFERENCE_DAC_DRIVES] = EventCost("reference_dac", self.reference_dac().energy_j)
        if self.adc_layers != "none":   # the ADC-read layers: ISAAC's converter, sample-and-holds and shift-and-adds
            out.update({self._adc_event(): EventCost("adc", self.layer_adc_energy_j()),
                        ev.CLIPPED_CONVERSIONS: EventCost("adc", 0.0),
                        ev.SAMPLE_HOLDS: EventCost("sample_hold", self.scaled(self.LAYER_SAMPLE_HOLD)[0]),
                        ev.SHIFT_ADDS: EventCost("shift_add", self.scaled(self.LAYER_SHIFT_ADD)[0])})
        return out

    def readout_dataflow_events(self) -> set[str]:
        return {ev.REFERENCE_DAC_DRIVES} if self.learn_thresholds else set()

    def emitted_events(self, input_signed: bool = False) -> set[str]:
        out = super().emitted_events(input_signed)
        spec = self.adc_read_spec(input_signed, True, True)
        return out if spec is None else out | crossbar_events(spec, offset=False) | {ev.SAMPLE_HOLDS}

    def dataflow_events(self, plan: LayerPlan, events: Mapping[str, float]) -> dict[str, float]:
        """The tile's data movement; with ADC-read layers, a sample-and-hold per ADC conversion, and the layers the
        comparators read drop the engine's shift-and-adds (their DCiM additions, ``nonzero_decisions``, replace
        them), so ``shift_adds`` counts the ADC-read layers' own; with learned thresholds, a reference-DAC drive per
        ternary decision."""
        out = super().dataflow_events(plan, events)
        decisions = out.get(ev.conversion(self.comparator().kind), 0)
        if self.learn_thresholds and decisions:   # a reference-DAC drive per ternary decision
            out[ev.REFERENCE_DAC_DRIVES] = out.get(ev.REFERENCE_DAC_DRIVES, 0) + decisions
        if self.adc_layers == "none":
            return out
        conv = out.get(self._adc_event(), 0)
        if conv:
            out[ev.SAMPLE_HOLDS] = out.get(ev.SAMPLE_HOLDS, 0) + conv
        else:
            out.pop(ev.SHIFT_ADDS, None)
        return out
