"""The closed-loop crossbar inversion circuit (INV): one analog settling gives ``x = A^-1 b``.

Circuit (Sun et al., PNAS 116, 4123, 2019, Fig. 1; docs/references.md#sun-pnas-2019): the matrix is
programmed as conductances, ``A / max|A| ~ (G+ - G-) / (L dg)`` with ``L = 2**(matrix_bits-1) - 1`` levels per
polarity (two arrays, the G- array driven through unity-gain inverters). Column ``j`` of the arrays feeds the
inverting input of op-amp ``j`` whose output drives row ``j``; the right-hand side enters as currents
``g_in V_in`` through input conductances ``g_in = L dg`` (one full-scale cell). Kirchhoff's current law at
node ``j`` with node voltage ``e_j`` and op-amp output ``V_j = -A0 (e_j - V_os,j)``:

    g_in V_in + G V - D e = 0,   D = diag(g_in + sum_i (G+_ji + G-_ji)),   G = G+ - G-

so the settled outputs are ``V = -(G + D / A0)^-1 (g_in V_in - D V_os)``: finite open-loop gain ``A0`` adds
``D / A0`` to the diagonal and the input offsets ``V_os`` add a current error ``D V_os``. With ``A0 -> inf``
and ``V_os = 0``, ``V = -g_in G^-1 V_in`` and ``x = -V max|b| / (max|A| v_in_max)`` is ``A^-1 b`` exactly.

Dynamics (single-pole op-amps of gain-bandwidth ``f_t``, ``A(s) = 2 pi f_t / s``; Sun et al., IEEE TED 67,
2945, 2020, "Time complexity of in-memory solution of linear systems"): ``dV/dt = -2 pi f_t (D^-1 (g_in V_in +
G V) - V_os)``. It settles iff every eigenvalue of the normalised matrix ``M = D^-1 G`` has a positive real
part; the slowest mode decays with ``tau = 1 / (2 pi f_t min Re lambda(M))``, and the output is within half an
LSB of full scale after ``t = tau ln(2**(output_bits+1))``. So the time depends on the smallest eigenvalue of
the normalised matrix, not on the size.

Precision limits modelled: conductance quantization to ``matrix_bits`` and programming noise / faults of the
cell model (:meth:`cimsim.devices.MemoryCell.program`), finite gain, input offsets, input quantization to
``input_bits`` (the DACs) and output quantization to ``output_bits`` (a SAR ADC per output, its range set
to the largest output: auto-ranging, est.).

Energy per settling (est. as the settled powers times the settling time):
``sum_ij (G+_ij + G-_ij) V_j^2 + g_in sum V_in^2`` (the arrays and input conductances, rows at the op-amp
outputs, columns at virtual ground) plus ``2 n`` amplifiers (op-amps and inverters) at ``opamp_power_w``, all
over ``t``; plus ``n`` DAC drives and ``n`` ADC conversions from the converter models
(:class:`cimsim.devices.DAC`, :class:`cimsim.devices.SarADC`).

Matrices the circuit cannot settle on (an eigenvalue of ``M`` with non-positive real part) are refused with
one line; ``solve(..., normal=True)`` maps them through the normal equations ``A^T A x = A^T b`` (symmetric
positive definite, always stable; the condition number squares), our documented choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from cimsim.blas import one_thread
from cimsim.devices.cell import MemoryCell
from cimsim.devices.converters import DAC, SarADC
from cimsim.devices.reram import ReRAM
from cimsim.errors import ConfigError, check_seed

SINGULAR_CONDITION = 1e12   # our bound: beyond it a float64 matrix is numerically singular for this purpose


def _default_cell() -> MemoryCell:
    # (est.) ReRAM of the ADC-less SNN NeuroSim setup (6 kOhm, on/off 150) programmed by write-and-verify to
    # 0.2 % of the window (a quarter of one 7-bit level step): what an "8-bit" INV circuit needs (RePAST,
    # arXiv 2210.15255, sec. 2.2, takes 8-bit INV circuits as proven).
    return ReRAM(prog_sigma_frac=0.002)


@dataclass(frozen=True)
class InversionCircuit:
    """Parameters of one closed-loop inversion crossbar (Sun et al., PNAS 2019); ``None`` bits = lossless."""

    size: int = 128                  # (est.) n x n arrays, ISAAC's array size (Shafiee et al., ISCA 2016, Table 6)
    # RePAST (arXiv 2210.15255; docs/references.md#repast): the proven INV circuit is 8-bit
    matrix_bits: int | None = 8
    input_bits: int | None = 8       # 8-bit input DACs, as the 8-bit INV circuit of RePAST
    output_bits: int | None = 8      # 8-bit output ADCs, as the 8-bit INV circuit of RePAST
    cell: MemoryCell = field(default_factory=_default_cell)
    open_loop_gain: float = 1e4      # (est.) 80 dB: a single-stage integrated op-amp; math.inf = ideal
    offset_sigma_v: float = 50e-6    # (est.) input offset after auto-zeroing, 50 uV (std per op-amp)
    gbw_hz: float = 100e6            # (est.) 100 MHz gain-bandwidth product of an integrated op-amp
    opamp_power_w: float = 100e-6    # (est.) 100 uW per op-amp (and per inverter)
    # (est.) 0.2 V input full scale, below the ReRAM read disturb (docs/references.md#sun-pnas-2019)
    v_in_max_v: float = 0.2
    adc_sample_rate_hz: float = 1.28e9   # ISAAC's SAR ADC rate (Shafiee et al., ISCA 2016), for its energy and latency
    node_nm: float = 32              # ISAAC's 32 nm node, for the converters

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or not 1 <= self.size <= 4096:
            raise ConfigError(f"InversionCircuit.size must be an integer in 1..4096, got {self.size!r}")
        for k, lo in (("matrix_bits", 2), ("input_bits", 2), ("output_bits", 1)):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= 16):
                raise ConfigError(f"InversionCircuit.{k} must be None (lossless) or an integer in {lo}..16, got {v!r}")
        if not isinstance(self.cell, MemoryCell):
            raise ConfigError(f"InversionCircuit.cell must be a cell model (cimsim.devices), got {self.cell!r}")
        g = self.open_loop_gain
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not (g > 1 or g == math.inf):
            raise ConfigError(f"InversionCircuit.open_loop_gain must be > 1 (math.inf = ideal), got {g!r}")
        for k in ("offset_sigma_v",):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"InversionCircuit.{k} must be a finite number >= 0, got {v!r}")
        for k in ("gbw_hz", "opamp_power_w", "v_in_max_v", "adc_sample_rate_hz", "node_nm"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"InversionCircuit.{k} must be a finite number > 0, got {v!r}")

    @classmethod
    def ideal(cls, size: int = 128) -> "InversionCircuit":
        """Lossless everything: exact conductances, infinite gain, no offset, no converters' rounding."""
        from cimsim.devices.cell import IdealCell

        return cls(size=size, matrix_bits=None, input_bits=None, output_bits=None, cell=IdealCell(),
                   open_loop_gain=math.inf, offset_sigma_v=0.0)

    @property
    def adc(self) -> SarADC | None:
        if self.output_bits is None:
            return None
        return SarADC(bits=self.output_bits, sample_rate_hz=self.adc_sample_rate_hz, node_nm=self.node_nm)

    @property
    def dac(self) -> DAC:
        return DAC(bits=self.input_bits or 8, v_max_v=self.v_in_max_v, node_nm=self.node_nm)


@dataclass(frozen=True)
class Cost:
    """Time (s) and energy (J) of an operation, with the energy split by component."""

    time_s: float
    energy_j: float
    parts: dict

    def __add__(self, other: "Cost") -> "Cost":
        parts = dict(self.parts)
        for k, v in other.parts.items():
            parts[k] = parts.get(k, 0.0) + v
        return Cost(self.time_s + other.time_s, self.energy_j + other.energy_j, parts)

    def scaled_energy_only(self) -> "Cost":
        """The same energy, no time (for parts that run in parallel with others: the caller adds the time)."""
        return Cost(0.0, self.energy_j, dict(self.parts))

    def scaled(self, k: float) -> "Cost":
        return Cost(self.time_s * k, self.energy_j * k, {p: v * k for p, v in self.parts.items()})


ZERO_COST = Cost(0.0, 0.0, {})


def check_matrix(A, size: int | None = None, what: str = "A") -> np.ndarray:
    """A finite, square, non-singular float64 matrix no larger than the array (one ConfigError line otherwise)."""
    A = np.asarray(A)
    if A.dtype.kind not in "biuf":
        raise ConfigError(f"{what} must be a real matrix, got an array of {A.dtype}")
    A = A.astype(np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 1:
        raise ConfigError(f"{what} must be a square matrix, got shape {A.shape}; the inversion circuit solves "
                          "n x n systems")
    if not np.all(np.isfinite(A)):
        raise ConfigError(f"{what} holds NaN or infinite entries: give a finite matrix")
    if size is not None and A.shape[0] > size:
        raise ConfigError(f"{what} is {A.shape[0]} x {A.shape[0]}, larger than the {size} x {size} inversion array: "
                          f"raise InversionCircuit.size or split the system into blocks")
    cond = np.linalg.cond(A)
    if not math.isfinite(cond) or cond > SINGULAR_CONDITION:
        raise ConfigError(f"{what} is singular (condition number {cond:.3g} > {SINGULAR_CONDITION:.0e}): "
                          "no inverse exists; regularise it (e.g. add a damping term to the diagonal)")
    return A


def check_rhs(b, n: int) -> np.ndarray:
    b = np.asarray(b)
    if b.dtype.kind not in "biuf":
        raise ConfigError(f"b must be a real vector or matrix, got an array of {b.dtype}")
    b = b.astype(np.float64)
    if b.ndim not in (1, 2) or b.shape[0] != n or (b.ndim == 2 and b.shape[1] < 1):
        raise ConfigError(f"b must have shape ({n},) or ({n}, k) to match A, got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ConfigError("b holds NaN or infinite entries: give a finite right-hand side")
    return b


def _quantize_signed(u: np.ndarray, bits: int | None) -> np.ndarray:
    """Round values in [-1, 1] to the ``2**(bits-1) - 1`` symmetric levels of a signed converter."""
    if bits is None:
        return u
    m = (1 << (bits - 1)) - 1
    return np.round(u * m) / m


class ProgrammedInverter:
    """A matrix programmed into an inversion circuit; :meth:`solve` settles it on right-hand sides."""

    def __init__(self, A, circuit: InversionCircuit | None = None, seed: int = 0):
        with one_thread():   # small dense algebra: one BLAS thread (cimsim.blas)
            self._build(A, circuit, seed)

    def _build(self, A, circuit, seed) -> None:
        circuit = InversionCircuit() if circuit is None else circuit
        if not isinstance(circuit, InversionCircuit):
            raise ConfigError(f"circuit must be a cimsim.linalg.InversionCircuit, got {type(circuit).__name__}")
        check_seed(seed)
        A = check_matrix(A, circuit.size)
        self.circuit, self.n = circuit, A.shape[0]
        self.rng = np.random.default_rng(seed)
        self.a_max = float(np.max(np.abs(A)))
        c = circuit
        cell_bits = (c.matrix_bits - 1) if c.matrix_bits is not None else 8
        L = (1 << cell_bits) - 1
        levels_g = c.cell.level_conductances(cell_bits)
        g_min, dg = float(levels_g[0]), float(levels_g[1] - levels_g[0])
        a = A / self.a_max * L                         # in level units, |a| <= L
        pos, neg = np.maximum(a, 0.0), np.maximum(-a, 0.0)
        if c.matrix_bits is not None:                  # integer levels through the cell model: noise and faults
            lev = np.stack([np.rint(pos), np.rint(neg)]).astype(np.int64)
            g = c.cell.program(lev, cell_bits, self.rng)
        else:                                          # analog (exact) conductances
            g = g_min + dg * np.stack([pos, neg])
        self.g_pos, self.g_neg = g[0], g[1]
        self.g_in = L * dg                             # one full-scale cell per input (est.)
        self.unit = L * dg                             # conductance of |A| = max|A|
        self.G = self.g_pos - self.g_neg               # effective (the g_min of both polarities cancels)
        self.D = self.g_in + (self.g_pos + self.g_neg).sum(axis=1)
        self.v_os = (c.offset_sigma_v * self.rng.standard_normal(self.n) if c.offset_sigma_v > 0
                     else np.zeros(self.n))
        self.M = self.G / self.D[:, None]              # the normalised matrix of the dynamics
        lam = np.linalg.eigvals(self.M)
        self.lambda_min = float(lam.real.min())
        if not self.lambda_min > 1e-12:
            raise ConfigError(f"the programmed matrix has an eigenvalue with non-positive real part "
                              f"(min Re lambda = {self.lambda_min:.3g}): the feedback circuit cannot settle; "
                              "solve with normal=True (--normal on the command line: A^T A x = A^T b) or give a "
                              "positive-definite matrix")
        gain = c.open_loop_gain
        self.K = self.G + (np.diag(self.D) / gain if gain != math.inf else 0.0)
        self.tau_s = 1.0 / (2 * math.pi * c.gbw_hz * self.lambda_min)
        bits = c.output_bits if c.output_bits is not None else 24   # lossless readout: settle to 24 bits (our choice)
        self.t_settle_s = self.tau_s * math.log(2.0 ** (bits + 1))

    @property
    def A_programmed(self) -> np.ndarray:
        """The matrix the arrays hold, in the units of A: ``(G+ - G-) max|A| / (L dg)`` (noise and rounding in)."""
        return self.G * (self.a_max / self.unit)

    # ------------------------------------------------------------------ one settling per column
    def solve(self, b) -> tuple[np.ndarray, "Cost"]:
        """``x ~ A^-1 b`` for b of shape (n,) or (n, k) (k settlings), and the cost."""
        with one_thread():
            return self._solve(check_rhs(b, self.n))

    def _solve(self, b: np.ndarray) -> tuple[np.ndarray, "Cost"]:
        B = b[:, None] if b.ndim == 1 else b
        c = self.circuit
        b_max = np.max(np.abs(B), axis=0)
        safe = np.where(b_max > 0, b_max, 1.0)
        v_in = c.v_in_max_v * _quantize_signed(B / safe, c.input_bits)        # the DACs
        current = self.g_in * v_in - (self.D * self.v_os)[:, None]
        V = -np.linalg.solve(self.K, current)                                  # the settled op-amp outputs
        adc = c.adc
        if adc is not None:                                                    # auto-ranged ADC per output (est.)
            fs = np.max(np.abs(V), axis=0)
            fs = np.where(fs > 0, fs, 1.0)
            Vq = np.empty_like(V)
            for j in range(V.shape[1]):
                Vq[:, j] = adc.convert(V[:, j], -fs[j], fs[j], self.rng)
        else:
            Vq = V
        x = -Vq * (self.unit / self.g_in) * (safe / (self.a_max * c.v_in_max_v))
        x[:, b_max == 0] = 0.0
        cost = self._cost(V, v_in)
        return (x[:, 0] if b.ndim == 1 else x), cost

    def _cost(self, V: np.ndarray, v_in: np.ndarray) -> "Cost":
        c, n, k = self.circuit, self.n, V.shape[1]
        t = self.t_settle_s
        p_array = float(np.sum((self.g_pos + self.g_neg) @ (V ** 2)))         # sum_j sum_i G_ji V_i^2 over columns
        p_input = float(self.g_in * np.sum(v_in ** 2))
        amps = 2 * n if np.any(self.g_neg > 0) else n
        e_amp = amps * c.opamp_power_w * t * k
        e_dac = n * k * c.dac.energy_j
        adc = c.adc
        e_adc = n * k * adc.energy_j if adc is not None else 0.0
        t_adc = adc.latency_s if adc is not None else 0.0
        parts = {"array": (p_array + p_input) * t, "opamps": e_amp, "dac": e_dac, "adc": e_adc}
        return Cost(k * (t + t_adc), sum(parts.values()), parts)

    def program_cost(self, pulses_per_cell: float = 10.0) -> "Cost":
        """Writing the matrix: every cell of both arrays by write-and-verify, ``pulses_per_cell`` pulses each
        (est.), one row at a time (row-parallel programming, est.)."""
        cell = self.circuit.cell
        try:
            e_pulse = float(np.sum(cell.write_pulse_energy_j(np.concatenate([self.g_pos, self.g_neg]))))
            t_pulse = cell.write_pulse_latency_s
        except NotImplementedError:
            e_pulse, t_pulse = 0.0, 0.0
        e = e_pulse * pulses_per_cell
        return Cost(self.n * pulses_per_cell * t_pulse, e, {"program": e})


def solve(A, b, circuit: InversionCircuit | None = None, seed: int = 0, normal: bool = False,
          return_cost: bool = False):
    """``x ~ A^-1 b`` on the inversion circuit (one settling per column of b); see the module docstring.

    ``normal=True`` solves ``A^T A x = A^T b`` instead (for matrices the circuit cannot settle on: any
    non-singular A; the product and ``A^T b`` are taken as exact, the condition number squares).
    """
    circuit = InversionCircuit() if circuit is None else circuit
    A = check_matrix(A, circuit.size if isinstance(circuit, InversionCircuit) else None)
    b = check_rhs(b, A.shape[0])
    if normal:
        A, b = A.T @ A, A.T @ b
    inv_ = ProgrammedInverter(A, circuit, seed)
    x, cost = inv_.solve(b)
    return (x, cost) if return_cost else x


def inv(A, circuit: InversionCircuit | None = None, seed: int = 0, normal: bool = False, return_cost: bool = False):
    """``A^-1`` column by column on the inversion circuit (n settlings)."""
    A = check_matrix(A)
    return solve(A, np.eye(A.shape[0]), circuit, seed, normal, return_cost)


def with_bits(circuit: InversionCircuit, bits: int | None) -> InversionCircuit:
    """The same circuit with matrix, input and output precision all set to ``bits``."""
    return replace(circuit, matrix_bits=bits, input_bits=bits, output_bits=bits)
