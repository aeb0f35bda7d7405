"""Converters at the crossbar's edges: ADCs (SAR, flash), sense amplifiers (1-bit), ternary readout, DACs.

Transfer functions work on arrays in any input unit (volts, amperes or integer partial sums): the caller
gives the input range ``[lo, hi]``. An ``bits``-bit ADC has ``2**bits`` output codes whose reconstruction
levels are equally spaced from ``lo`` to ``hi`` (step ``lsb = (hi - lo) / (2**bits - 1)``); an input
converts to the nearest level (half-LSB decision thresholds), inputs beyond the range clip to the end
codes, and an input-referred offset / INL error of ``offset_sigma_lsb`` LSB (Gaussian, drawn per
conversion from the given generator) shifts the decision. With ``lo = 0``, ``hi = 2**bits - 1`` an
integer input is reproduced exactly: that is how the exactness tests get a lossless ADC.

Cost models (per conversion, SI units):

* SAR and flash ADC energy is the envelope of Murmann's ADC survey (:mod:`cimsim.devices.adc_survey`,
  docs/references.md#murmann-survey): the larger of the thermal bound (Schreier figure of merit, 4x per bit,
  CiMLoop's fit, docs/references.md#cimloop) and the technology floor (Walden figure of merit at the sample rate
  and node, 2x per bit). At 1.28 GS/s and 32 nm the floor rules up to about 9 bits: a 4-bit conversion costs
  about 129 fJ, an 8-bit one about 2.1 pJ (ISAAC's Table 6 converter: 1.5625 pJ). A flash converter's floor is
  the survey's flash designs' distance (3.3x) above the all-architecture one. Area follows the survey's area
  regression at that energy. A SAR takes ``bits + 1`` internal cycles per conversion, a flash one clock.
* Comparator (sense amplifier) decision energy: 1.6 fJ at 28 nm (MNSIM 2.0's sense amplifier,
  docs/references.md#mnsim), scaled to other nodes with :mod:`cimsim.devices.technology`.
* 1-bit DAC (word-line driver) energy and area: ISAAC's table (Shafiee et al., ISCA 2016, Table 6;
  docs/references.md#isaac): 4 mW and 0.00017 mm^2 for the 8x128 DACs of one IMA, each driving once per 100 ns
  cycle, i.e. 0.39 pJ and 0.166 um^2 per 1-bit DAC at 32 nm. An n-bit current-steering DAC is taken as
  ``2**n - 1`` unit cells (est.).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cimsim.devices.adc_survey import envelope_energy_j, survey_area_m2
from cimsim.devices.base import param, validate_fields
from cimsim.devices.technology import area_scale, delay_scale, energy_scale
from cimsim.errors import ConfigError

COMPARATOR_ENERGY_J_28NM = 1.6e-15   # MNSIM 2.0 sense amplifier at 28 nm (docs/references.md#mnsim)
COMPARATOR_AREA_M2_32NM = 5e-12      # (est.) ~12 near-minimum transistors of a StrongARM latch plus wiring
COMPARATOR_DELAY_S_32NM = 100e-12    # (est.) a StrongARM latch resolves in ~100 ps at 32 nm
# ISAAC Table 6: 4 mW for 8x128 1-bit DACs, each holding its word line through ISAAC's 100 ns crossbar read (sec. 4):
# 3.9 uW while it drives, 0.39 pJ per 100 ns drive. A drive costs that power over the read it holds (est.: a word-line
# driver's power is its bias while it holds the line; a 128-cell line's C V^2, ~40 fF x (1 V)^2, is a tenth of
# 0.39 pJ, so the figure is mostly held power, not switching)
ISAAC_DAC_POWER_W = 4e-3 / (8 * 128)
ISAAC_DAC_ENERGY_J = ISAAC_DAC_POWER_W * 100e-9   # one 100 ns drive (ISAAC's read)
ISAAC_DAC_AREA_M2 = 0.00017e-6 / (8 * 128)         # ISAAC Table 6: 0.00017 mm^2 for 8x128 DACs


def comparator_energy_j(node_nm: float) -> float:
    return COMPARATOR_ENERGY_J_28NM * energy_scale(28, node_nm)


class Readout:
    """Base of everything that turns a column's analog value into a number."""

    kind: ClassVar[str] = "readout"
    lossless: ClassVar[bool] = False

    def __post_init__(self):
        validate_fields(self)

    def convert(self, x, lo: float, hi: float, rng: np.random.Generator | None = None) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class IdealReadout(Readout):
    """Lossless readout: returns its input unchanged, costs nothing (for exactness tests)."""

    kind: ClassVar[str] = "ideal-readout"
    lossless: ClassVar[bool] = True
    bits: ClassVar[float] = math.inf

    def convert(self, x, lo: float = -math.inf, hi: float = math.inf, rng=None) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    energy_j: ClassVar[float] = 0.0
    latency_s: ClassVar[float] = 0.0
    area_m2: ClassVar[float] = 0.0


class Quantizer(Readout):
    """Uniform quantizer with clipping, half-LSB thresholds and input-referred offset noise."""

    def _check(self):
        if not float(self.bits).is_integer():
            raise ConfigError(f"{type(self).__name__}.bits must be a whole number, got {self.bits}")

    def __post_init__(self):
        super().__post_init__()
        self._check()

    @property
    def n_codes(self) -> int:
        return 2 ** int(self.bits)

    def lsb(self, lo: float, hi: float) -> float:
        if not hi > lo:
            raise ConfigError(f"{type(self).__name__}: input range needs hi > lo, got [{lo}, {hi}]")
        return (hi - lo) / (self.n_codes - 1)

    def codes(self, x, lo: float, hi: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """Output codes 0 .. 2**bits - 1 (int64) for inputs ``x`` over the range [lo, hi]."""
        x = np.asarray(x, dtype=np.float64)
        u = (x - lo) / self.lsb(lo, hi)
        if self.offset_sigma_lsb > 0 and rng is not None:
            u = u + self.offset_sigma_lsb * rng.standard_normal(u.shape)
        return np.clip(np.floor(u + 0.5), 0, self.n_codes - 1).astype(np.int64)

    def reconstruct(self, codes, lo: float, hi: float) -> np.ndarray:
        return lo + np.asarray(codes, dtype=np.float64) * self.lsb(lo, hi)

    def convert(self, x, lo: float, hi: float, rng: np.random.Generator | None = None) -> np.ndarray:
        return self.reconstruct(self.codes(x, lo, hi, rng), lo, hi)

    @property
    def enob(self) -> float:
        return self.bits - self.enob_loss_bits


@dataclass(frozen=True)
class SarADC(Quantizer):
    """Successive-approximation ADC: energy on the ADC survey's envelope, ``bits + 1`` cycles per conversion.

    ``E = max(E_thermal, E_technology)`` (:func:`cimsim.devices.adc_survey.envelope_energy_j` at
    ENOB = ``bits - enob_loss_bits``, the sample rate and the node)."""

    kind: ClassVar[str] = "sar-adc"

    bits: int = param(8, "bit", "ISAAC's 8-bit ADC (Shafiee et al., ISCA 2016, sec. 4; docs/references.md#isaac)",
                      lo=1, hi=16)
    sample_rate_hz: float = param(1.28e9, "1/s", "ISAAC: 128 columns per 100 ns read cycle per ADC "
                                  "(docs/references.md#isaac)", lo=0, lo_open=True)
    node_nm: float = param(32, "nm", "ISAAC's 32 nm node (docs/references.md#isaac)", lo=7, hi=180)
    offset_sigma_lsb: float = param(0.0, "LSB", "ideal by default; set to model comparator offset / INL", lo=0)
    enob_loss_bits: float = param(0.0, "bit", "ENOB = resolution, as the survey envelope assumes "
                                  "(docs/references.md#murmann-survey)", lo=0)

    @property
    def cycles(self) -> int:
        return int(self.bits) + 1

    @property
    def energy_j(self) -> float:
        """Energy per conversion (J): the survey envelope at this ENOB, sample rate and node."""
        return envelope_energy_j(self.enob, self.sample_rate_hz, self.node_nm, "sar")

    @property
    def latency_s(self) -> float:
        """One conversion: ``bits + 1`` cycles of the internal clock, which runs at ``(bits + 1) * fs``."""
        return self.cycles / (self.cycles * self.sample_rate_hz)

    @property
    def area_m2(self) -> float:
        """The survey's area regression at this converter's energy (:func:`~cimsim.devices.adc_survey.survey_area_m2`)."""
        return survey_area_m2(self.bits, self.sample_rate_hz, self.node_nm, self.energy_j)

    @property
    def power_w(self) -> float:
        return self.energy_j * self.sample_rate_hz


@dataclass(frozen=True)
class FlashADC(Quantizer):
    """Flash ADC: ``2**bits - 1`` comparators deciding in parallel, one conversion per clock.

    Energy: the survey envelope with the flash designs' technology floor, 3.3x the all-architecture one
    (:data:`cimsim.devices.adc_survey.FLASH_WALDEN_FACTOR`), 2x per bit as the comparator count."""

    kind: ClassVar[str] = "flash-adc"

    bits: int = param(4, "bit", "(est.) flash is used at low resolution; 4 bits as in low-precision CiM readouts",
                      lo=1, hi=10)
    sample_rate_hz: float = param(1.28e9, "1/s", "ISAAC's conversion rate, for comparison with SarADC "
                                  "(docs/references.md#isaac)", lo=0, lo_open=True)
    node_nm: float = param(32, "nm", "ISAAC's 32 nm node (docs/references.md#isaac)", lo=7, hi=180)
    offset_sigma_lsb: float = param(0.0, "LSB", "ideal by default; set to model comparator offsets", lo=0)
    enob_loss_bits: float = param(0.0, "bit", "ENOB = resolution, as the survey envelope assumes "
                                  "(docs/references.md#murmann-survey)", lo=0)

    @property
    def comparators(self) -> int:
        return self.n_codes - 1

    @property
    def energy_j(self) -> float:
        """Energy per conversion (J): the survey envelope with the flash floor."""
        return envelope_energy_j(self.enob, self.sample_rate_hz, self.node_nm, "flash")

    @property
    def latency_s(self) -> float:
        return 1.0 / self.sample_rate_hz

    @property
    def area_m2(self) -> float:
        """The survey's area regression at this converter's energy."""
        return survey_area_m2(self.bits, self.sample_rate_hz, self.node_nm, self.energy_j)

    @property
    def power_w(self) -> float:
        return self.energy_j * self.sample_rate_hz


@dataclass(frozen=True)
class SenseAmp(Readout):
    """1-bit ADC: a latched comparator with a threshold and Gaussian input-referred offset.

    ``convert`` returns 1.0 where ``x + offset > threshold`` and 0.0 otherwise (``signed=True``: +1 / -1).
    The threshold and offset are in the caller's input unit; ``offset_sigma`` is drawn per decision.
    """

    kind: ClassVar[str] = "sense-amp"
    bits: ClassVar[int] = 1

    threshold: float = param(0.0, "input unit", "decision threshold (set by the architecture)")
    offset_sigma: float = param(0.0, "input unit", "ideal by default; set to model input-referred offset", lo=0)
    node_nm: float = param(32, "nm", "ISAAC's 32 nm node, for comparison", lo=7, hi=180)
    sample_rate_hz: float = param(1.28e9, "1/s", "ISAAC's conversion rate, for comparison", lo=0, lo_open=True)

    def decide(self, x, rng: np.random.Generator | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.offset_sigma > 0 and rng is not None:
            x = x + self.offset_sigma * rng.standard_normal(x.shape)
        return x > self.threshold

    def convert(self, x, lo: float = 0.0, hi: float = 1.0, rng=None, signed: bool = False) -> np.ndarray:
        d = self.decide(x, rng)
        return np.where(d, 1.0, -1.0) if signed else d.astype(np.float64)

    @property
    def energy_j(self) -> float:
        return comparator_energy_j(self.node_nm)

    @property
    def latency_s(self) -> float:
        return COMPARATOR_DELAY_S_32NM * delay_scale(32, self.node_nm)

    @property
    def area_m2(self) -> float:
        return COMPARATOR_AREA_M2_32NM * area_scale(32, self.node_nm)


@dataclass(frozen=True)
class TernaryReadout(Readout):
    """Two sense amplifiers with thresholds ``+delta`` and ``-delta``: outputs +1, 0 or -1 (HCiM)."""

    kind: ClassVar[str] = "ternary"

    delta: float = param(0.5, "input unit", "HCiM ternary threshold (arXiv 2403.13577; learned in practice, est.)",
                         lo=0)
    offset_sigma: float = param(0.0, "input unit", "ideal by default", lo=0)
    node_nm: float = param(32, "nm", "ISAAC's 32 nm node, for comparison", lo=7, hi=180)
    sample_rate_hz: float = param(1.28e9, "1/s", "ISAAC's conversion rate, for comparison", lo=0, lo_open=True)

    bits: ClassVar[float] = math.log2(3)

    def convert(self, x, lo: float = 0.0, hi: float = 1.0, rng=None, delta=None) -> np.ndarray:
        """Decisions on ``x``; ``delta`` (an array broadcasting with ``x``, e.g. one per column): the thresholds of
        each value's comparators instead of :attr:`delta` (learned per-column thresholds)."""
        x = np.asarray(x, dtype=np.float64)
        if self.offset_sigma > 0 and rng is not None:
            up = x + self.offset_sigma * rng.standard_normal(x.shape)
            down = x + self.offset_sigma * rng.standard_normal(x.shape)
        else:
            up = down = x
        d = self.delta if delta is None else delta
        return (up > d).astype(np.float64) - (down < -d).astype(np.float64)

    @property
    def energy_j(self) -> float:
        return 2 * comparator_energy_j(self.node_nm)

    @property
    def latency_s(self) -> float:
        return COMPARATOR_DELAY_S_32NM * delay_scale(32, self.node_nm)

    @property
    def area_m2(self) -> float:
        return 2 * COMPARATOR_AREA_M2_32NM * area_scale(32, self.node_nm)


@dataclass(frozen=True)
class DAC(Readout):
    """Word-line DAC / driver: input code 0 .. 2**bits - 1 to a voltage 0 .. v_max_v."""

    kind: ClassVar[str] = "dac"

    bits: int = param(1, "bit", "ISAAC streams inputs 1 bit per cycle (Shafiee et al., ISCA 2016)", lo=1, hi=12)
    v_max_v: float = param(0.5, "V", "read voltage of the ADC-less SNN evaluation setup (docs/references.md#adc-less-snn)",
                           lo=0, lo_open=True)
    node_nm: float = param(32, "nm", "ISAAC's 32 nm node", lo=7, hi=180)
    cycle_s: float = param(100e-9, "s", "ISAAC's 100 ns crossbar read cycle", lo=0, lo_open=True)

    def convert(self, codes, lo: float = 0.0, hi: float | None = None, rng=None) -> np.ndarray:
        c = np.asarray(codes, dtype=np.float64)
        top = 2 ** int(self.bits) - 1
        if np.any((c < 0) | (c > top) | (c != np.floor(c))):
            raise ValueError(f"DAC input codes must be integers in 0..{top}")
        return c * (self.v_max_v / top)

    @property
    def unit_cells(self) -> int:
        return 2 ** int(self.bits) - 1

    @property
    def energy_j(self) -> float:
        """Energy per drive (J): ISAAC's 1-bit DAC power held for ``cycle_s`` (the read it drives), times the unit
        cells, scaled from 32 nm: 0.39 pJ over ISAAC's 100 ns read, 39 fJ over a 10 ns read."""
        return ISAAC_DAC_POWER_W * self.cycle_s * self.unit_cells * energy_scale(32, self.node_nm)

    @property
    def latency_s(self) -> float:
        return self.cycle_s

    @property
    def area_m2(self) -> float:
        return ISAAC_DAC_AREA_M2 * self.unit_cells * area_scale(32, self.node_nm)
