"""ReRAM (resistive RAM) memory cell: bounded conductance window, programming / read noise, stuck-at
faults, log-time relaxation, and NeuroSim-style nonlinear, asymmetric pulse updates.

Every law below is written out in :class:`ReRAM`'s docstring and in the method that implements it.
Default values come from the ADC-less SNN paper's NeuroSim evaluation setup (arXiv 2211.02167,
docs/references.md#adc-less-snn) for the window and the read, from NeuroSim's example analog synapse
(Ag:a-Si, Chen et al., IEEE TCAD 2018, and the MLP+NeuroSim ``RealDevice`` defaults;
docs/references.md#neurosim) for the update law, and are marked ``(est.)`` where they are estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np

from cimsim.devices.base import param
from cimsim.devices.cell import MemoryCell
from cimsim.errors import ConfigError

ADCLESS = "ADC-less SNN, arXiv 2211.02167: NeuroSim evaluation setup (docs/references.md#adc-less-snn)"
NEUROSIM = ("NeuroSim, Chen et al., IEEE TCAD 2018: Ag:a-Si example synapse (MLP+NeuroSim RealDevice defaults; "
            "docs/references.md#neurosim)")

# NeuroSim's nonlinearity label NL is tied to the shape of the normalised update curve: the largest
# vertical gap between the curve y(x) (x = pulses / max_pulses, y = (G - G_min) / range) and the straight
# line y = x is 0.07 * sqrt(2) * |NL| (a perpendicular gap of 0.07 * |NL| in the unit square). This is the
# relation NeuroSim's tabulated "normalised A" values satisfy (checked: NL 0.01, 0.1, 0.5, 0.6 give
# A / max_pulses = 126.27, 12.626, 2.5199, 2.0979, as in its table); we solve it instead of tabulating.
_NL_GAP_PER_LABEL = 0.07 * math.sqrt(2.0)
NL_LIMIT = 9.0  # NeuroSim tabulates labels 0.01 .. 9; |NL| must stay below 1 / 0.099 = 10.1 for any curve


def _max_gap(k: float) -> float:
    """Largest ``y(x) - x`` of ``y(x) = (1 - exp(-k x)) / (1 - exp(-k))`` on [0, 1], for ``k > 0``.

    Closed form: the gap peaks where ``y'(x) = 1``, at ``x* = ln(k / (1 - e^-k)) / k``, where
    ``y(x*) = 1 / (1 - e^-k) - 1 / k``.
    """
    d = -math.expm1(-k)
    return 1.0 / d - 1.0 / k - math.log(k / d) / k


@lru_cache(maxsize=256)
def nl_efolds(nl: float) -> float:
    """Signed number of e-folds ``k = max_pulses / A`` of the update curve for NeuroSim label ``nl``.

    ``k`` solves ``max_gap(k) = 0.07 * sqrt(2) * |nl|`` and carries the sign of ``nl``; ``nl = 0`` gives
    ``k = 0`` (the linear law). Small labels use the series ``max_gap(k) = k / 8 + O(k^3)``.
    """
    nl = float(nl)
    if nl == 0.0:
        return 0.0
    if abs(nl) > NL_LIMIT:
        raise ConfigError(f"nonlinearity label {nl!r} is out of range: it must be [-{NL_LIMIT}, {NL_LIMIT}]")
    target = _NL_GAP_PER_LABEL * abs(nl)
    if target < 1e-6:
        k = 8.0 * target
    else:
        from scipy.optimize import brentq   # scipy.optimize takes a second to import: only when needed

        k = brentq(lambda kk: _max_gap(kk) - target, 1e-6, 1e3, xtol=1e-14, rtol=1e-14, maxiter=200)
    return math.copysign(k, nl)


def _curve(x: np.ndarray, k: float) -> np.ndarray:
    """Normalised update curve ``y(x) = (1 - exp(-k x)) / (1 - exp(-k))``, ``y(x) = x`` for ``k = 0``."""
    if k == 0.0:
        return x
    return np.expm1(-k * x) / math.expm1(-k)


def _inverse(y: np.ndarray, k: float) -> np.ndarray:
    """Inverse of :func:`_curve`: ``x(y) = -ln(1 - y (1 - exp(-k))) / k``."""
    if k == 0.0:
        return y
    return -np.log1p(y * math.expm1(-k)) / k


@dataclass(frozen=True)
class ReRAM(MemoryCell):
    """Resistive RAM cell: window [R_on/ratio conductance, 1/R_on], Gaussian noise, faults, relaxation, NeuroSim pulses.

    Conductance window: ``g_max = 1 / r_on_ohm``, ``g_min = g_max / on_off_ratio``, ``range = g_max - g_min``.

    Programming (:meth:`program`): level ``k`` of ``2**cell_bits`` targets ``g_min + k * range / (2**b - 1)``;
    the programmed value is ``clip(target + prog_sigma_frac * range * N(0, 1), g_min, g_max)``, drawn once.
    Then each cell is stuck at ``g_min`` with probability ``p_stuck_off`` or at ``g_max`` with probability
    ``p_stuck_on`` (one uniform draw per cell), overriding its target and its noise.

    Read (:meth:`read`): ``g + read_sigma_frac * range * N(0, 1)`` per read, a constant standard deviation.

    Relaxation (:meth:`at_time`): ``t`` seconds after programming each cell has moved by
    ``relax_sigma_frac * range * log10(1 + t / relax_t0_s) * z`` with one ``z ~ N(0, 1)`` per cell, then
    clipped into the window. The spread grows linearly in log time (log-time broadening of HfOx RRAM
    after programming; magnitude (est.)); the mean does not move.

    Pulse updates (:meth:`pulse`, the NeuroSim law): with ``N = max_pulses`` and pulse counts P measured
    from the window edge the pulses start at,

    * potentiation  ``G_p(P) = g_min + B_p (1 - exp(-P / A_p))``,  ``B_p = range / (1 - exp(-N / A_p))``,
    * depression    ``G_d(Q) = g_max - B_d (1 - exp(-Q / A_d))``,  ``B_d = range / (1 - exp(-N / A_d))``,

    so ``N`` pulses span the window exactly. ``A = N / k(NL)``, where ``k(NL)`` (:func:`nl_efolds`) is fixed by
    NeuroSim's label definition: the largest gap between the normalised curve and the straight line is
    ``0.07 * sqrt(2) * |NL|`` of the range. NL = 0 is the linear law (``range / N`` per pulse). Signs follow
    NeuroSim's convention (both curves drawn against the potentiation pulse axis): ``nl_ltp > 0`` and
    ``nl_ltd < 0`` both give saturating updates (large steps first, then smaller); the opposite signs give
    the reverse curvature (``A < 0`` above). A cell at ``g`` is placed on the curve of the pulse direction by
    inverting it, moves ``|n|`` pulses along it (stopping at the window edge), gets one Gaussian of standard
    deviation ``c2c_sigma_frac * range * sqrt(|n|)`` (independent per-pulse noise, variances add) and is
    clipped into the window.

    Energy: a read costs ``read_voltage_v**2 * G * read_time_s``; a write pulse costs
    ``write_voltage_v**2 * G * write_pulse_time_s`` at the state ``G`` the pulse starts from.
    """

    kind: ClassVar[str] = "reram"

    # --- conductance window and read: the ADC-less SNN paper's NeuroSim setup (docs/references.md#adc-less-snn)
    # R_on = 6 kOhm (arXiv 2211.02167, evaluation setup).
    r_on_ohm: float = param(6e3, "Ohm", f"{ADCLESS}: R_on 6 kOhm", lo=0, lo_open=True,
                            doc="on-state resistance; g_max_s = 1 / r_on_ohm")
    # on/off ratio 150 (arXiv 2211.02167, evaluation setup).
    on_off_ratio: float = param(150.0, "1", f"{ADCLESS}: on/off ratio 150", lo=1, lo_open=True,
                                doc="g_max_s / g_min_s")
    # read voltage 0.5 V (arXiv 2211.02167, evaluation setup).
    read_voltage_v: float = param(0.5, "V", f"{ADCLESS}: read voltage 0.5 V", lo=0, lo_open=True)
    # 10 ns read pulse (arXiv 2211.02167, evaluation setup).
    read_time_s: float = param(10e-9, "s", f"{ADCLESS}: 10 ns read pulse", lo=0, lo_open=True)

    # --- programming and read noise (Gaussian, additive, fractions of the range)
    # 0: the NeuroSim setup the ADC-less paper evaluates with models no device variation (NeuroSim's
    # defaults: read noise off, sigma 0); the engine benchmark sets 5 % programming / 2 % read noise.
    prog_sigma_frac: float = param(0.0, "1", "NeuroSim default (no programming variation), as in the ADC-less "
                                   "SNN evaluation (docs/references.md#adc-less-snn); the engine benchmark uses "
                                   "0.05", lo=0, hi=1,
                                   doc="std of programming noise / (g_max - g_min)")
    # 0: NeuroSim's RealDevice defaults have readNoise = false, sigmaReadNoise = 0.
    read_sigma_frac: float = param(0.0, "1", "NeuroSim default (read noise off), as in the ADC-less SNN "
                                   "evaluation (docs/references.md#adc-less-snn); the engine benchmark uses 0.02",
                                   lo=0, hi=1,
                                   doc="std of one read / (g_max - g_min)")

    # --- stuck-at faults, drawn once at programming
    # 0: the ADC-less SNN paper's NeuroSim evaluation assumes fault-free arrays; set per study.
    p_stuck_off: float = param(0.0, "1", "fault-free arrays, as the ADC-less SNN paper's NeuroSim evaluation "
                               "(docs/references.md#adc-less-snn)", lo=0, hi=1, doc="probability a cell is stuck at g_min")
    p_stuck_on: float = param(0.0, "1", "fault-free arrays, as the ADC-less SNN paper's NeuroSim evaluation "
                              "(docs/references.md#adc-less-snn)", lo=0, hi=1, doc="probability a cell is stuck at g_max")

    # --- relaxation after programming: std = relax_sigma_frac * range * log10(1 + t / relax_t0_s)
    # (est.): HfOx RRAM conductance distributions broaden roughly linearly in log time after programming
    # (the relaxation studies of analog RRAM arrays, e.g. the NeuRRAM chip, Wan et al., Nature 2022); the
    # magnitude 0.5 % of the range per decade is an estimate giving ~1.4 % 10 min after programming and
    # ~4 % after 10 years, the order of magnitude such studies report for write-verified cells.
    relax_sigma_frac: float = param(0.005, "1", "(est.) log-time broadening of HfOx RRAM after programming "
                                    "(e.g. Wan et al., Nature 2022); 0.5 % of range per decade estimated",
                                    lo=0, hi=1, doc="relaxation std per decade of (1 + t/t0), / range")
    # (est.): 1 s reference time, the usual first read after programming in relaxation measurements.
    relax_t0_s: float = param(1.0, "s", "(est.) 1 s reference time of log-time relaxation", lo=0, lo_open=True)

    # --- NeuroSim-style pulse updates
    # NeuroSim's Ag:a-Si synapse has 97 LTP / 100 LTD conductance states; one count of 100 (est., rounded).
    max_pulses: int = param(100, "1", f"{NEUROSIM}: 97 LTP / 100 LTD states, one count of 100 (est.)",
                            lo=1, hi=1_000_000, doc="pulses that move a cell across the whole window")
    # NL_LTP = 2.4 (NeuroSim's Ag:a-Si synapse).
    nl_ltp: float = param(2.4, "1", f"{NEUROSIM}: NL_LTP 2.4", lo=-NL_LIMIT, hi=NL_LIMIT,
                          doc="NeuroSim nonlinearity label of potentiation")
    # NL_LTD = -4.88 (NeuroSim's Ag:a-Si synapse).
    nl_ltd: float = param(-4.88, "1", f"{NEUROSIM}: NL_LTD -4.88", lo=-NL_LIMIT, hi=NL_LIMIT,
                          doc="NeuroSim nonlinearity label of depression")
    # sigma_C2C = 3.5 % of the range per pulse (NeuroSim's Ag:a-Si synapse: sigmaCtoC = 0.035 * range).
    c2c_sigma_frac: float = param(0.035, "1", f"{NEUROSIM}: cycle-to-cycle sigma 3.5 % of range per pulse",
                                  lo=0, hi=1, doc="std of one pulse's step / range; n pulses: * sqrt(n)")
    # (est.): typical HfOx RRAM SET/RESET pulse amplitude 1.5-2.5 V (NeuroSim's Ag:a-Si uses 3.2 V / 2.8 V).
    write_voltage_v: float = param(2.0, "V", "(est.) HfOx RRAM SET/RESET amplitude (NeuroSim's Ag:a-Si: 3.2 / 2.8 V)",
                                   lo=0, lo_open=True)
    # (est.): HfOx RRAM switches in 10-100 ns pulses (NeuroSim's slow Ag:a-Si device uses 300 us).
    write_pulse_time_s: float = param(100e-9, "s", "(est.) HfOx RRAM pulse width 10-100 ns "
                                      "(NeuroSim's Ag:a-Si: 300 us)", lo=0, lo_open=True)

    # ------------------------------------------------------------------ validation and window
    def _check(self) -> None:
        if self.p_stuck_off + self.p_stuck_on > 1.0:
            raise ConfigError(f"ReRAM.p_stuck_off + ReRAM.p_stuck_on = {self.p_stuck_off + self.p_stuck_on!r} "
                              "is out of range: the two fault probabilities must sum to at most 1")
        if float(self.max_pulses) != int(self.max_pulses):
            raise ConfigError(f"ReRAM.max_pulses = {self.max_pulses!r} must be a whole number of pulses")

    @property
    def g_max_s(self) -> float:
        return 1.0 / self.r_on_ohm

    @property
    def g_min_s(self) -> float:
        return self.g_max_s / self.on_off_ratio

    def _clip(self, g: np.ndarray) -> np.ndarray:
        return np.clip(g, self.g_min_s, self.g_max_s)

    # ------------------------------------------------------------------ programming
    def program(self, levels: np.ndarray, cell_bits: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Programmed conductances (S): target + clipped Gaussian noise, then stuck-at faults.

        Draw order from ``rng`` (fixed, so a seed fixes the result): one normal per cell if
        ``prog_sigma_frac > 0``, then one uniform per cell if a fault rate is non-zero; a uniform
        ``u < p_stuck_off`` sticks the cell at g_min, ``p_stuck_off <= u < p_stuck_off + p_stuck_on`` at
        g_max. With ``rng=None`` the exact targets are returned (no noise, no faults).
        """
        g = self.level_conductances(cell_bits)[self._check_levels(levels, cell_bits)]
        if rng is None:
            return g
        if self.prog_sigma_frac > 0:
            g = self._clip(g + (self.prog_sigma_frac * self.g_range_s) * rng.standard_normal(g.shape))
        if self.p_stuck_off > 0 or self.p_stuck_on > 0:
            u = rng.random(g.shape)
            g = np.where(u < self.p_stuck_off, self.g_min_s, g)
            g = np.where((u >= self.p_stuck_off) & (u < self.p_stuck_off + self.p_stuck_on), self.g_max_s, g)
        return g

    def programs_on_levels(self) -> bool:
        """No programming noise and no faults: :meth:`program` returns the targets and draws nothing."""
        return (type(self).program is ReRAM.program and self.prog_sigma_frac == 0
                and self.p_stuck_off == 0 and self.p_stuck_on == 0)

    # ------------------------------------------------------------------ reading and relaxation
    def read_sigma_s(self, g: np.ndarray) -> np.ndarray:
        """Standard deviation (S) of one read: ``read_sigma_frac * range``, the same for every state."""
        return np.full(np.shape(g), self.read_sigma_frac * self.g_range_s, dtype=np.float64)

    def relax_sigma_s(self, t_s: float) -> float:
        """Relaxation spread (S) at ``t_s`` seconds: ``relax_sigma_frac * range * log10(1 + t_s / relax_t0_s)``."""
        if t_s < 0:
            raise ValueError(f"t_s = {t_s!r} s: the time since programming must be >= 0")
        return self.relax_sigma_frac * self.g_range_s * math.log10(1.0 + t_s / self.relax_t0_s)

    def at_time(self, g: np.ndarray, t_s: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """Conductances ``t_s`` seconds after programming: ``clip(g + relax_sigma_s(t_s) * z)``.

        One ``z ~ N(0, 1)`` per cell from ``rng``: the same seed gives the same ``z`` at every ``t_s``, so
        calls at several times with equally seeded generators trace one coherent trajectory per cell.
        ``t_s = 0``, ``relax_sigma_frac = 0`` or ``rng=None`` return ``g`` unchanged (no draw).
        """
        g = np.asarray(g, dtype=np.float64)
        sigma = self.relax_sigma_s(t_s)
        if rng is None or sigma == 0.0:
            return g.copy()
        return self._clip(g + sigma * rng.standard_normal(g.shape))

    # ------------------------------------------------------------------ pulse updates
    @property
    def window_pulses(self) -> float:
        """Pulses across the window (``max_pulses``; nonlinear, so a pulse's step depends on the state)."""
        return float(self.max_pulses)

    @property
    def a_ltp_pulses(self) -> float:
        """NeuroSim's A of potentiation, in pulses (``inf`` for the linear law; negative: reverse curvature)."""
        k = nl_efolds(self.nl_ltp)
        return math.inf if k == 0.0 else self.max_pulses / k

    @property
    def a_ltd_pulses(self) -> float:
        """A of depression in pulses, measured from g_max (``inf`` linear; positive for NeuroSim's ``NL_LTD < 0``)."""
        k = nl_efolds(self.nl_ltd)
        return math.inf if k == 0.0 else -self.max_pulses / k

    def potentiation_curve(self, p: np.ndarray) -> np.ndarray:
        """``G_p(P)`` (S) after ``P`` potentiation pulses from g_min (P clipped to [0, max_pulses])."""
        x = np.clip(np.asarray(p, dtype=np.float64) / self.max_pulses, 0.0, 1.0)
        return self._on_window(_curve(x, nl_efolds(self.nl_ltp)), x)

    def depression_curve(self, q: np.ndarray) -> np.ndarray:
        """``G_d(Q)`` (S) after ``Q`` depression pulses from g_max (Q clipped to [0, max_pulses])."""
        x = 1.0 - np.clip(np.asarray(q, dtype=np.float64) / self.max_pulses, 0.0, 1.0)
        return self._on_window(_curve(x, nl_efolds(self.nl_ltd)), x)

    def _on_window(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Normalised curve value -> conductance, with the window edges exact."""
        g = self.g_min_s + self.g_range_s * y
        return np.where(x >= 1.0, self.g_max_s, np.where(x <= 0.0, self.g_min_s, g))

    def pulse(self, g: np.ndarray, n_pulses: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Conductances after signed pulse counts ``n_pulses`` (``> 0`` potentiate, ``< 0`` depress).

        ``g`` and ``n_pulses`` broadcast. Each moving cell's state (clipped into the window) is mapped to
        its position on the curve of its direction (both curves drawn on one axis ``x = P / max_pulses``,
        ``x = 0`` at g_min, ``x = 1`` at g_max), moved by ``n / max_pulses`` and clipped to [0, 1], mapped
        back; then, with ``rng``, one normal of std ``c2c_sigma_frac * range * sqrt(|n|)`` is added (one
        draw per element of the broadcast shape, used where ``n != 0``) and the result clipped into the
        window. Cells with ``n = 0`` come back unchanged.
        """
        g0 = np.asarray(g, dtype=np.float64)
        n0 = np.asarray(n_pulses, dtype=np.float64)
        shape = np.broadcast_shapes(g0.shape, n0.shape)
        g0 = np.broadcast_to(g0, shape)
        n0 = np.broadcast_to(n0, shape)
        out = np.array(g0, dtype=np.float64)
        u = np.clip((g0 - self.g_min_s) / self.g_range_s, 0.0, 1.0)
        for mask, k in ((n0 > 0, nl_efolds(self.nl_ltp)), (n0 < 0, nl_efolds(self.nl_ltd))):
            if np.any(mask):
                x = np.clip(_inverse(u[mask], k) + n0[mask] / self.max_pulses, 0.0, 1.0)
                out[mask] = self._on_window(_curve(x, k), x)
        moved = n0 != 0
        if rng is not None and self.c2c_sigma_frac > 0:
            z = rng.standard_normal(shape)
            noisy = self._clip(out + (self.c2c_sigma_frac * self.g_range_s) * np.sqrt(np.abs(n0)) * z)
            out = np.where(moved, noisy, out)
        return out

    # ------------------------------------------------------------------ write cost
    def write_pulse_energy_j(self, g: np.ndarray | None = None) -> float | np.ndarray:
        """Energy (J) of one write pulse from state ``g``: ``write_voltage_v**2 * g * write_pulse_time_s``.

        The cell current during the pulse is taken at the state the pulse starts from (a pulse changes G
        by at most a few % of the range). ``g=None`` gives the upper bound at g_max_s.
        """
        g = self.g_max_s if g is None else np.asarray(g, dtype=np.float64)
        return self.write_voltage_v ** 2 * g * self.write_pulse_time_s
