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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from cimsim.arch.isaac import (CELL_KINDS, ISAAC_TABLE, TABLE6_RERAM_R_ON_OHM, Component, Isaac, _check_r_on,
                               common_event_costs)
from cimsim.cost import EventCost, area_scale, energy_scale
from cimsim.crossbar import CrossbarSpec
from cimsim.devices.converters import SenseAmp, TernaryReadout
from cimsim.devices.peripherals import ShiftAdd

READOUTS = ("ternary", "binary")
_SRC = "HCiM, arXiv 2403.13577"
# (est.) a 6T SRAM bit cell at 32 nm: 0.171 um^2 (Intel 32 nm, Natarajan et al., IEDM 2008); the DCiM
# array's compute periphery (adders, sense amplifiers) taken as doubling it
SRAM_BIT_AREA_M2_32NM = 0.171e-12
DCIM_AREA_OVERHEAD = 2.0


@dataclass(frozen=True)
class Hcim:
    """HCiM: ISAAC-like tiles whose crossbars are read by comparators and a DCiM scale-factor array."""

    tiles: int = 168                 # (est.) ISAAC's chip organisation (Table 6), as the baseline it is compared with
    imas_per_tile: int = 12          # (est.) ISAAC Table 6
    xbars_per_ima: int = 8           # (est.) ISAAC Table 6
    rows: int = 128                  # (est.) 128x128 arrays, as ISAAC and the HCiM baselines
    cols: int = 128
    cell: str = "reram"              # HCiM: analog (resistive) crossbars; any cell kind of 'cimsim devices'
    reram_r_on_ohm: float = TABLE6_RERAM_R_ON_OHM   # the ISAAC baselines' cell (ISAAC Table 6 crossbar power,
                                     # cimsim.arch.isaac.table6_reram_r_on_ohm), so only the readout differs
    cell_bits: int = 1               # (est.) 1-bit cells: one weight bit per partial sum (ADC-less setting)
    weight_bits: int = 4             # (est.) 4-bit weights: see the module docstring
    input_bits: int = 4              # (est.) 4-bit activations
    dac_bits: int = 1                # (est.) bit-serial inputs, as ISAAC (sec. 4)
    readout: str = "ternary"         # HCiM: ternary partial sums (binary also supported)
    threshold: float = 0.5           # (est.) comparator reference = 0.5 x alpha: ternary rounding of PS / alpha
                                     # (LSQ, Esser et al. ICLR 2020, with levels -1, 0, 1)
    scale_bits: int = 16             # (est.) scale factors and accumulators as ISAAC's 16-bit values (sec. 4)
    dcim_add_rate_hz: float = 1.28e9 # (est.) additions per second of one crossbar's DCiM array: ISAAC's shift-and-add
                                     # rate per crossbar (4 S+A units per 8 crossbars, Table 6)
    read_cycle_s: float = 100e-9     # ISAAC sec. 4: 100 ns crossbar read cycle
    node_nm: float = 32              # ISAAC Table 6: 32 nm (the technology of the baselines)
    prog_sigma_frac: float = 0.0     # NeuroSim default (no programming variation); sweepable
    read_sigma_frac: float = 0.0     # NeuroSim default (read noise off); sweepable
    comparator_offset: float = 0.0   # comparator input-referred offset in units of alpha; ideal by default

    name = "hcim"
    description = ("HCiM (arXiv 2403.13577): ADC-less; ternary/binary partial sums by comparators on column pairs, "
                   "learned per-column scale factors added in a digital CiM array with zero-skipping; "
                   "4-bit weights/inputs, 1-bit cells, 128x128, ISAAC tiles, 32 nm")
    column_scales = True             # the mapper programs learned scale factors (cimsim.mappers.qat)

    def __post_init__(self):
        for k in ("tiles", "imas_per_tile", "xbars_per_ima", "rows", "cols", "cell_bits", "weight_bits",
                  "input_bits", "dac_bits", "scale_bits"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {v!r}")
        if self.weight_bits < 2:
            raise ValueError("weight_bits must be at least 2 (signed weights, stored differentially)")
        if self.input_bits % self.dac_bits:
            raise ValueError("input_bits must be a multiple of dac_bits")
        if self.cols % 2:
            raise ValueError(f"cols ({self.cols}) must be even: columns are read in G+/G- pairs")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be 'ternary' or 'binary', got {self.readout!r}")
        if not 0 <= self.threshold < 1:
            raise ValueError(f"threshold must lie in [0, 1) (a fraction of the column scale), got {self.threshold!r}")
        if self.cell.strip().lower().replace("_", "-") not in CELL_KINDS:
            raise ValueError(f"unknown device {self.cell!r} for cell: choose one of {', '.join(CELL_KINDS)}")
        for k in ("prog_sigma_frac", "read_sigma_frac"):
            if not 0 <= getattr(self, k) < 1:
                raise ValueError(f"{k} must lie in [0, 1), got {getattr(self, k)!r}")
        _check_r_on(self.reram_r_on_ohm)
        for k in ("read_cycle_s", "dcim_add_rate_hz"):
            if not (getattr(self, k) > 0 and math.isfinite(getattr(self, k))):
                raise ValueError(f"{k} must be positive, got {getattr(self, k)!r}")
        if not self.comparator_offset >= 0:
            raise ValueError(f"comparator_offset must be non-negative, got {self.comparator_offset!r}")

    # ------------------------------------------------------------------ structure
    @property
    def slices(self) -> int:
        """Magnitude slices per weight (each in a G+ and a G- column)."""
        return math.ceil((self.weight_bits - 1) / self.cell_bits)

    input_cycles = Isaac.input_cycles     # same hierarchy as ISAAC's
    imas = Isaac.imas
    crossbars = Isaac.crossbars
    units = Isaac.units
    breakdown = Isaac.breakdown
    _area = Isaac._area
    _copies = Isaac._copies

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

    def dcim_add_energy_j(self) -> float:
        """(est.) One scale-factor addition in the DCiM array: one ISAAC shift-and-add operation (a 16-bit add
        into a partial-sum register, ISAAC Table 6), scaled from 32 nm to the node."""
        return ShiftAdd().energy_per_op_j * energy_scale(32, self.node_nm) * self.scale_bits / 16

    @property
    def table(self) -> tuple[Component, ...]:
        """The component table: ISAAC's without ADCs, sample-and-holds and IMA shift-and-adds, plus comparators and
        DCiM arrays."""
        pairs = self.xbars_per_ima * self.cols // 2
        comp = self.comparator()
        rate = 1.0 / self.read_cycle_s
        n_comp = pairs * self.comparators_per_pair
        dcim_bits = self.xbars_per_ima * (self.cols // 2) * self.slices * self.scale_bits
        rows = [Component(f"comparators ({self.readout})", "comparator", "ima", n_comp,
                          pairs * comp.energy_j * rate, pairs * comp.area_m2,
                          f"{type(comp).__name__} model (comparator: MNSIM 2.0, ../shared/papers.md); {_SRC}"),
                Component("DCiM scale-factor arrays", "dcim", "ima", self.xbars_per_ima,
                          self.xbars_per_ima * self.dcim_add_rate_hz * self.dcim_add_energy_j(),
                          dcim_bits * SRAM_BIT_AREA_M2_32NM * DCIM_AREA_OVERHEAD * area_scale(32, self.node_nm),
                          f"(est.) {_SRC}: SRAM of the scale factors plus adders; power at full add rate")]
        # the DCiM arrays take over the IMA's shift-and-add units; the tile keeps its own
        keep = tuple(c for c in ISAAC_TABLE
                     if c.kind not in ("adc", "sample_hold") and not (c.kind == "shift_add" and c.level == "ima"))
        return tuple(rows) + keep

    @property
    def peak_macs_per_s(self) -> float:
        macs_per_mvm = self.rows * (self.cols // (2 * self.slices))
        return self.crossbars * macs_per_mvm / (self.input_cycles * self.read_cycle_s)

    summary = Isaac.summary                # the same roll-up of the component table

    def params(self) -> dict:
        return asdict(self)

    # ------------------------------------------------------------------ simulation (used by the mapper)
    cell_model = Isaac.cell_model

    def crossbar_spec(self, input_signed: bool = False) -> CrossbarSpec:
        """Differential tile read in G+/G- pairs by the comparators; the mapper adds the column scales."""
        return CrossbarSpec(rows=self.rows, cols=self.cols, cell=self.cell_model(), cell_bits=self.cell_bits,
                            weight_bits=self.weight_bits, input_bits=self.input_bits, dac_bits=self.dac_bits,
                            signed="differential", input_signed=input_signed, readout=self.comparator(),
                            pair_readout=True)

    @property
    def cycle_s(self) -> float:
        """The shortest read cycle: the crossbar read (the comparators resolve in a fraction of it)."""
        return max(self.read_cycle_s, self.comparator().latency_s)

    def _mvm_s(self, plan, events: dict) -> float:
        """One MVM: its cycles, each as long as the read or as the DCiM array needs for the cycle's additions
        (the layer's non-zero decisions per array and cycle, on average: data dependent)."""
        cycles = events.get("array_read_cycles", 0)
        adds_per_cycle = events.get("nonzero_decisions", 0) / cycles if cycles else 0.0
        return self.input_cycles * max(self.cycle_s, adds_per_cycle / self.dcim_add_rate_hz)

    def _dataflow_events(self, plan, events: dict) -> dict:
        """ISAAC's data movement (inputs through eDRAM, bus and input register, 16-bit outputs back), without
        sample-and-holds (comparators latch the bit lines) and with the shift-and-adds replaced by the
        DCiM array's scale-factor additions (``nonzero_decisions``: zeros are skipped)."""
        ev = Isaac._dataflow_events(self, plan, events)
        ev.pop("sample_holds", None)
        ev.pop("shift_adds", None)
        return ev

    cost = Isaac.cost

    def event_costs(self, events) -> dict[str, EventCost]:
        """Energy of every event kind the ledger may hold."""
        comp = self.comparator()
        return {
            **common_event_costs(self),
            f"{comp.kind}_conversion": EventCost("comparator", comp.energy_j),
            "nonzero_decisions": EventCost("dcim", self.dcim_add_energy_j()),
        }
