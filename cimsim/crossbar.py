"""The crossbar tile: integer inputs and integer weights in, the digital numbers analog hardware gives out.

``Crossbar(W, spec, seed)`` slices the weights (:mod:`cimsim.encoding`), tiles the reduction dimension
into row blocks of ``spec.rows`` and the physical columns (outputs x slices, x2 for differential) into
column blocks of ``spec.cols``, and programs every cell through the cell model (programming noise and
stuck-at faults drawn once). A call ``xb(x)`` streams the inputs bit-serially; for every (cycle, row
block, physical column) the analog column sum goes through the readout, then the digital side
shifts and adds.

Analog model, in *level units* (one unit = one conductance step ``dg = (g_max - g_min) / (2**cell_bits - 1)``
times one DAC step ``V_read / (2**dac_bits - 1)``):

* column value = ``sum_k x_k * (G_k - g_min) / dg``: the ``g_min * sum_k x_k`` current of the finite on/off
  ratio is removed by an ideal reference column (so an ideal cell gives the exact integer sum);
* read noise: each cell read adds independent Gaussian noise of std ``cell.read_sigma_s(G)``; a column
  sums them, so the column value gets one Gaussian of variance ``sum_k x_k**2 * sigma_k**2 / dg**2`` -
  exact in distribution, computed as a second matrix product, with no per-cell draw.

Readouts: :class:`~cimsim.devices.IdealReadout` passes the value; ADCs (``SarADC``, ``FlashADC``) quantize
it over a range chosen per row block by ``adc_range``: ``"full"`` (the worst-case column value),
``"calibrated"`` (the ``calibration_percentile`` of |column values| seen by :meth:`Crossbar.calibrate`)
or a fixed ``(lo, hi)`` in level units; the LSB is rounded up to a power of two of level units (at least
one), so the digital shift-and-add stays integer and an ADC with enough bits is lossless. ``SenseAmp``
outputs 1 / 0 decisions against its threshold (in level units) and ``TernaryReadout`` -1 / 0 / +1: these
are decisions, to be scaled by the architecture that uses them.

Two readout options serve ADC-less architectures such as HCiM (arXiv 2403.13577):

* ``spec.pair_readout`` (``signed="differential"`` only): the readout compares each G+ column with its
  G- column, so it converts ``PS+ - PS-`` (one conversion per column pair; the read noise of both
  columns adds). A :class:`SenseAmp` then decides the sign (+1 / -1), a ternary readout -1 / 0 / +1.
* ``Crossbar(W, spec, column_scales=s)`` (decision readouts only): one positive scale factor per
  (row block, weight slice, [polarity,] output). Each column's comparator reference is its scale times
  the readout's threshold (the readout sees ``v / s``) and the decision is multiplied by ``s`` before the
  digital shift-and-add: ``y = sum_{t, r, j} 2**(d t) * w_slice(j) * s[r, j] * D(v[t, r, j] / s[r, j])``,
  the partial-sum quantization (PSQ) that :mod:`cimsim.mappers.qat` trains for. The ledger then also
  counts ``nonzero_decisions`` (the scale-factor additions a zero-skipping digital side performs).

Both run on the non-fused numba path (the fused ADC epilogue is untouched); the torch backend refuses them.
"""

from __future__ import annotations

import copy
import math
import os
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import ThreadpoolController
from dataclasses import dataclass, field, replace

import numpy as np

from cimsim.calibration import column_value_ranges
from cimsim.devices.cell import IdealCell, MemoryCell
from cimsim.devices.converters import IdealReadout, Readout, SenseAmp, TernaryReadout, _Quantizer
from cimsim.encoding import SIGNED_MODES, check_inputs, input_planes, plane_layout, slice_weights
from cimsim.errors import ConfigError
from cimsim.irdrop import effective_conductance
from cimsim.kernels import NoiseStreams, adc_accumulate_rows, stack_digits
from cimsim.ledger import EventLedger

BACKENDS = ("numba", "torch")


@dataclass(frozen=True)
class CrossbarSpec:
    """Geometry, encoding and readout of a crossbar tile (defaults: ISAAC's array, 8-bit operands)."""

    rows: int = 128                 # ISAAC: 128x128 arrays (Shafiee et al., ISCA 2016, Table 6)
    cols: int = 128
    cell: MemoryCell = field(default_factory=IdealCell)
    cell_bits: int = 2              # ISAAC: 2-bit cells
    weight_bits: int = 8            # 8-bit weights, the common CiM operating point (Neural-PIM, HCiM)
    input_bits: int = 8
    dac_bits: int = 1               # ISAAC: inputs streamed 1 bit per cycle
    signed: str = "differential"    # Neural-PIM: positive and negative weights in adjacent columns
    input_signed: bool = False      # inputs after ReLU are unsigned
    readout: Readout = field(default_factory=IdealReadout)
    adc_range: object = "full"      # "full", "calibrated" or (lo, hi) in level units
    calibration_percentile: float = 99.9   # our choice: clips 0.1 % of column values, see Crossbar.calibrate
    r_wire_ohm: float = 0.0         # word- and bit-line wire resistance per cell pitch; 0 = ideal wires
    ir_drop: str = "rational"       # "rational" (fast, default), "linear" (first order) or "exact" (nodal solve)
    batch_chunk: int = 1024         # examples per streamed chunk (bounds memory)
    pair_readout: bool = False      # HCiM (arXiv 2403.13577): each G+ column is read against its G- column, so the
                                    # readout sees PS+ - PS- (signed='differential' only); False: every column alone

    def __post_init__(self):
        for k in ("rows", "cols", "cell_bits", "weight_bits", "input_bits", "dac_bits", "batch_chunk"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"CrossbarSpec.{k} must be a positive integer, got {v!r}")
        if self.weight_bits < 2:
            raise ConfigError("CrossbarSpec.weight_bits must be at least 2 (signed weights)")
        if self.input_signed and self.input_bits < 2:
            raise ConfigError("CrossbarSpec.input_bits must be at least 2 for signed inputs")
        if self.signed not in SIGNED_MODES:
            raise ConfigError(f"CrossbarSpec.signed = {self.signed!r}: choose one of {', '.join(SIGNED_MODES)}")
        if not isinstance(self.cell, MemoryCell):
            raise ConfigError(f"CrossbarSpec.cell must be a cell model (cimsim.devices), got {self.cell!r}")
        if not isinstance(self.readout, Readout):
            raise ConfigError(f"CrossbarSpec.readout must be a readout (cimsim.devices), got {self.readout!r}")
        r = self.adc_range
        if not (r in ("full", "calibrated") or (isinstance(r, (tuple, list)) and len(r) == 2 and r[1] > r[0])):
            raise ConfigError(f"CrossbarSpec.adc_range = {r!r}: use 'full', 'calibrated' or (lo, hi) with hi > lo")
        if not (self.r_wire_ohm >= 0 and math.isfinite(self.r_wire_ohm)):
            raise ConfigError(f"CrossbarSpec.r_wire_ohm must be a non-negative number of ohms, got {self.r_wire_ohm!r}")
        if self.ir_drop not in ("rational", "linear", "exact"):
            raise ConfigError(f"CrossbarSpec.ir_drop = {self.ir_drop!r}: choose 'rational', 'linear' or 'exact'")
        if not 50 <= self.calibration_percentile <= 100:
            raise ConfigError("CrossbarSpec.calibration_percentile must lie in [50, 100]")
        if not isinstance(self.pair_readout, (bool, np.bool_)):
            raise ConfigError(f"CrossbarSpec.pair_readout must be True or False, got {self.pair_readout!r}")
        if self.pair_readout and self.signed != "differential":
            raise ConfigError("CrossbarSpec.pair_readout=True compares G+ with G- columns: it needs "
                              f"signed='differential', got signed={self.signed!r}")


_POOL: ThreadPoolExecutor | None = None
_BLAS: ThreadpoolController | None = None


def _blas_controller() -> ThreadpoolController:
    """The BLAS libraries of this process, found once: building a controller scans every loaded library
    (about 2.5 ms, which ``threadpool_limits`` paid on each call: 30 % of a LeNet-5 evaluation)."""
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    return _BLAS


def _pow2_lsb(span: float, bits: int) -> float:
    """The smallest power-of-two LSB (>= 1 level unit) whose 2**bits codes cover ``span``."""
    need = span / (2 ** bits - 1)
    return 1.0 if need <= 1 else 2.0 ** math.ceil(math.log2(need))


class Crossbar:
    """A weight matrix programmed into crossbar arrays; call it on integer inputs."""

    def __init__(self, W, spec: CrossbarSpec, seed: int = 0, backend: str = "numba", device: str = "cpu",
                 name: str = "crossbar", column_scales=None):
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        if backend == "numba" and device != "cpu":
            raise ConfigError(f"the numba backend runs on the CPU; for device={device!r} use backend='torch'")
        W = np.asarray(W)
        if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] < 1:
            raise ConfigError(f"weights must be a 2-D array (out_features, in_features), got shape {W.shape}")
        self.spec, self.seed, self.backend, self.device, self.name = spec, seed, backend, device, name
        self.out_features, self.in_features = W.shape
        self._seeds = np.random.SeedSequence(seed)   # seed=None draws fresh entropy, kept for at_time
        self._rng = np.random.default_rng(self._seeds)
        self._noise = NoiseStreams(self._seeds)
        self.slices = slice_weights(W, spec.weight_bits, spec.cell_bits, spec.signed)
        # conductances (slices, polarity, out, in), programmed once
        self.g = spec.cell.program(self.slices.levels, spec.cell_bits, self._rng)
        self._scales = None if column_scales is None else self._check_scales(column_scales)
        self._prepare(self.g)
        self.ledger = EventLedger()
        self._range: list[tuple[float, float]] | None = None
        self._torch = None
        if backend == "torch":
            if spec.pair_readout or self._scales is not None:
                raise ConfigError("the torch backend does not support pair_readout or column_scales yet: "
                                  "use backend='numba'")
            from cimsim.crossbar_torch import TorchTile
            self._torch = TorchTile(self, device)

    # ------------------------------------------------------------------ layout
    @property
    def n_slices(self) -> int:
        return self.slices.levels.shape[0]

    @property
    def n_polarity(self) -> int:
        return self.slices.levels.shape[1]

    @property
    def physical_columns(self) -> int:
        return self.n_slices * self.n_polarity * self.out_features

    @property
    def readout_columns(self) -> int:
        """Values converted per (input cycle, row block): column pairs with ``pair_readout``, else physical columns."""
        return self.n_slices * self.out_features if self.spec.pair_readout else self.physical_columns

    @property
    def row_blocks(self) -> list[tuple[int, int]]:
        r = self.spec.rows
        return [(k, min(k + r, self.in_features)) for k in range(0, self.in_features, r)]

    @property
    def col_blocks(self) -> int:
        return math.ceil(self.physical_columns / self.spec.cols)

    @property
    def arrays(self) -> int:
        return len(self.row_blocks) * self.col_blocks

    def _check_scales(self, scales) -> np.ndarray:
        """Column scale factors as (row blocks, readout columns) float64, validated."""
        if not isinstance(self.spec.readout, (SenseAmp, TernaryReadout)):
            raise ConfigError("column_scales scale decisions: they need a SenseAmp or TernaryReadout readout, "
                              f"got {type(self.spec.readout).__name__}")
        s = np.asarray(scales, dtype=np.float64)
        rb = len(self.row_blocks)
        shape = ((rb, self.n_slices, self.out_features) if self.spec.pair_readout
                 else (rb, self.n_slices, self.n_polarity, self.out_features))
        if s.shape not in (shape, (rb, self.readout_columns)):
            raise ConfigError(f"column_scales must have shape {shape} (row blocks, slices, "
                              f"{'' if self.spec.pair_readout else 'polarities, '}outputs), got {s.shape}")
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ConfigError("column_scales must be finite and positive")
        return s.reshape(rb, -1).copy()

    def _level_step(self) -> tuple[float, float]:
        cell = self.spec.cell
        if getattr(self, "_window_units", False) and math.isfinite(cell.g_max_s):
            # built from conductances: the cell's window in 2**cell_bits - 1 units, whatever states it has
            return float(cell.g_min_s), float(cell.g_range_s) / (2 ** self.spec.cell_bits - 1)
        levels = cell.level_conductances(self.spec.cell_bits)
        return float(levels[0]), float(levels[1] - levels[0])

    def _prepare(self, g: np.ndarray) -> None:
        """Per row block: level-unit matrices A (rows, physical columns) and read-noise variances."""
        g_min, dg = self._level_step()
        S, P, N, K = g.shape
        flat = g.transpose(3, 0, 1, 2).reshape(K, S * P * N)       # (in, physical columns)
        sigma = self.spec.cell.read_sigma_s(flat)
        read_g = flat
        if self.spec.r_wire_ohm > 0:
            # The array is a linear circuit: with resistive wires the column currents are exactly
            # v @ T(G) for a transfer matrix T of each physical array (cimsim.irdrop), so IR drop is folded
            # into the programmed conductances once. The g_min reference column is taken as ideal.
            read_g = np.empty_like(flat)
            c = self.spec.cols
            for k0, k1 in self.row_blocks:
                for j0 in range(0, flat.shape[1], c):
                    j1 = min(j0 + c, flat.shape[1])
                    read_g[k0:k1, j0:j1] = effective_conductance(
                        flat[k0:k1, j0:j1], self.spec.r_wire_ohm, self.spec.r_wire_ohm, model=self.spec.ir_drop)
        self._a, self._var, self._g_rowsum = [], [], []
        for k0, k1 in self.row_blocks:
            self._a.append((read_g[k0:k1] - g_min) / dg)
            var = (sigma[k0:k1] / dg) ** 2
            if not np.any(var):
                var = None
            elif np.all(var == var[:, :1]):
                var = var[:, 0].copy()   # same sigma across a row: the column variance is a GEMV
            self._var.append(var)
            self._g_rowsum.append(flat[k0:k1].sum(axis=1))
        dt = self.gemm_dtype()
        self._a_gemm = [a.astype(dt) for a in self._a]
        self._var_gemm = [None if v is None else v.astype(dt) for v in self._var]
        shift = np.outer(self.slices.weights, self.slices.sign)    # (S, P) digital weight per column group
        self._col_weight = np.repeat(shift.reshape(-1), N)          # (physical columns,)
        # what the readout converts: physical columns, or G+ minus G- of each pair (pair_readout)
        self._ro_a, self._ro_a_gemm, self._ro_var, self._ro_weight = self._a, self._a_gemm, self._var_gemm, self._col_weight
        if self.spec.pair_readout:
            pair = lambda m: (m.reshape(m.shape[0], S, P, N)[:, :, 0] - m.reshape(m.shape[0], S, P, N)[:, :, 1]  # noqa: E731
                              ).reshape(m.shape[0], S * N)
            self._ro_a = [pair(a) for a in self._a]
            self._ro_a_gemm = [a.astype(dt) for a in self._ro_a]
            # the noise of both columns adds: variances add per pair (a per-row variance simply doubles)
            self._ro_var = [None if v is None else (2 * v if v.ndim == 1 else
                            (v.reshape(-1, S, P, N)[:, :, 0] + v.reshape(-1, S, P, N)[:, :, 1]).reshape(-1, S * N))
                            for v in self._var_gemm]
            self._ro_weight = np.repeat(self.slices.weights, N)     # (column pairs,)

    # ------------------------------------------------------------------ readout ranges
    def _digit_range(self) -> tuple[int, int]:
        d, a = self.spec.dac_bits, self.spec.input_bits
        if self.spec.input_signed:
            top = a - d * (math.ceil(a / d) - 1)       # bits of the signed top digit
            return -(1 << (top - 1)), (1 << d) - 1
        return 0, (1 << d) - 1

    def gemm_dtype(self) -> type:
        """float32 when integer column values stay below 2**24 in magnitude (then float32 products are
        exact, like float64 ones, so both backends agree bit for bit on integer paths), float64 otherwise.
        On non-integer paths (programming noise, IR drop) float32 rounds to ~1e-7 of full scale, far
        below any device effect."""
        lo_d, hi_d = self._digit_range()
        bound = self.spec.rows * max(abs(lo_d), hi_d) * (2 ** self.spec.cell_bits - 1)
        return np.float32 if bound < 2 ** 24 else np.float64

    def _full_range(self, rows: int) -> tuple[float, float]:
        lo_d, hi_d = self._digit_range()
        top_level = 2 ** self.spec.cell_bits - 1
        if self.spec.pair_readout:   # PS+ - PS-: symmetric about zero
            m = rows * max(-lo_d, hi_d) * top_level
            return -m, m
        return rows * lo_d * top_level, rows * hi_d * top_level

    def _ranges(self) -> list[tuple[float, float]]:
        """(lo, lsb) per row block for a quantizing readout."""
        ro, pol = self.spec.readout, self.spec.adc_range
        bits = int(ro.bits)
        out = []
        for i, (k0, k1) in enumerate(self.row_blocks):
            if pol == "full":
                lo, hi = self._full_range(k1 - k0)
            elif pol == "calibrated":
                if self._range is None:
                    raise ConfigError("adc_range='calibrated' needs a calibration batch: call xb.calibrate(x) first")
                lo, hi = self._range[i]
            else:
                lo, hi = float(pol[0]), float(pol[1])
            lo = float(math.floor(lo))  # integer lo: reconstruction levels lo + k * lsb stay integers (no bias)
            out.append((lo, _pow2_lsb(hi - lo, bits)))
        return out

    def calibrate(self, x) -> None:
        """Set each row block's ADC range from the column values a calibration batch produces.

        The range is [min(0, -p), p] where p is the ``calibration_percentile`` of |column value| over
        all cycles, examples and columns of that row block (noise-free values; 99.9 % by default). The
        ADC then rounds its LSB up to a power of two of level units, which widens the range by up to
        2x, so at most 0.1 % of the calibration batch's conversions clip (usually fewer).
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ConfigError(f"calibration inputs must have shape (batch, {self.in_features}), got {x.shape}")
        shifts, widths = plane_layout(self.spec.input_bits, self.spec.dac_bits)
        self._range = column_value_ranges(self._digit_source(x), self.row_blocks, self._ro_a_gemm, shifts, widths,
                                          self.spec.input_signed, self.spec.calibration_percentile, self.gemm_dtype())

    def _digit_source(self, x: np.ndarray) -> np.ndarray:
        """The validated inputs (int64) with negatives taken modulo 2**input_bits: what the digit cutter
        (:func:`cimsim.kernels.stack_digits`) reads, as :func:`cimsim.encoding.input_planes` does."""
        xv = check_inputs(x, self.spec.input_bits, self.spec.input_signed)
        return np.where(xv < 0, xv + (1 << self.spec.input_bits), xv) if self.spec.input_signed else xv

    # ------------------------------------------------------------------ forward
    def _readout(self, v: np.ndarray, lo: float, lsb: float) -> np.ndarray:
        ro = self.spec.readout
        if isinstance(ro, IdealReadout):
            return v
        if isinstance(ro, _Quantizer):
            return ro.convert(v, lo, lo + lsb * (ro.n_codes - 1), self._rng)
        if isinstance(ro, (SenseAmp, TernaryReadout)):
            return ro.convert(v, rng=self._rng)
        raise ConfigError(f"readout {type(ro).__name__} is not supported by the crossbar engine")

    def _conversion_event(self) -> str:
        ro = self.spec.readout
        if isinstance(ro, _Quantizer):
            return f"{ro.kind}_conversion_{int(ro.bits)}b"
        return f"{ro.kind}_conversion"

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ConfigError(f"inputs must have shape (batch, {self.in_features}), got {x.shape}")
        ranges = self._ranges() if isinstance(self.spec.readout, _Quantizer) else [(0.0, 1.0)] * len(self.row_blocks)
        B, N = x.shape[0], self.out_features
        if self._torch is not None:  # bit planes are cut on the device from the validated integers
            check = lambda: check_inputs(x, self.spec.input_bits, self.spec.input_signed)  # noqa: E731
            if np.issubdtype(x.dtype, np.integer):   # checked on the host while the device computes
                y, nonzero, read_energy = self._torch.forward(x, validate=check)   # offset-corrected on the device
            else:
                y, nonzero, read_energy = self._torch.forward(check())
            self._count(B, len(plane_layout(self.spec.input_bits, self.spec.dac_bits)[0]), nonzero, read_energy)
            return y
        ro = self.spec.readout
        # Quantizers without their own offset noise run in the fused numba epilogue and in parallel over
        # fixed batch shards (each with its own noise stream, so the numbers do not depend on the thread
        # count); other readouts draw from the crossbar's generator and run serially.
        fused = isinstance(ro, _Quantizer) and ro.offset_sigma_lsb == 0
        special = self.spec.pair_readout or self._scales is not None   # pair / scaled readout: own, serial path
        fused = fused and not special
        shard = self._shard_readout if special else self._shard
        if fused:   # each shard cuts its own digits from the integers (the role of input_planes)
            planes = self._digit_source(x)
            pw = None
            cycles = len(plane_layout(self.spec.input_bits, self.spec.dac_bits)[0])
        else:
            planes, pw = input_planes(x, self.spec.input_bits, self.spec.dac_bits, self.spec.input_signed)
            cycles = planes.shape[0]
        y = np.zeros((B, N))
        nonzero = read_energy = decisions = 0.0
        for c0 in range(0, B, self.spec.batch_chunk):
            c1 = min(c0 + self.spec.batch_chunk, B)
            edges = np.linspace(c0, c1, NoiseStreams.STREAMS + 1).astype(int)
            shards = [(j, int(edges[j]), int(edges[j + 1])) for j in range(NoiseStreams.STREAMS)]
            work = lambda sh: shard(planes, pw, sh[1], sh[2], ranges, fused, sh[0])  # noqa: E731
            if fused and c1 - c0 >= 64:
                with _blas_controller().limit(limits=1, user_api="blas"):  # one BLAS thread per shard thread
                    results = list(self._pool().map(work, shards))
            else:
                results = [work(sh) for sh in shards]
            for (_, b0, b1), (acc, nz, energy, *nzd) in zip(shards, results):
                if b1 > b0:
                    y[b0:b1] = (acc * self._ro_weight).reshape(b1 - b0, -1, N).sum(axis=1)
                nonzero += nz
                read_energy += energy
                decisions += sum(nzd)
        if self.slices.offset:
            y -= self.slices.offset * x.sum(axis=1, dtype=np.float64)[:, None]
        decides = special and isinstance(ro, (SenseAmp, TernaryReadout))
        self._count(B, cycles, nonzero, read_energy, decisions if decides else None)
        return y

    def _pool(self) -> ThreadPoolExecutor:
        global _POOL
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=min(NoiseStreams.STREAMS, os.cpu_count() or 1))
        return _POOL

    def _shard(self, planes, pw, b0: int, b1: int, ranges, fused: bool, stream: int):
        """Column sums, noise, readout and shift-add of examples b0..b1: (acc, nonzero digits, read energy)."""
        cols = self.physical_columns
        if fused and b1 > b0:
            return self._shard_fused(planes, b0, b1, ranges, stream)
        acc = np.zeros((b1 - b0, cols))
        if b1 <= b0:
            return acc, 0.0, 0.0
        v_step = self.spec.cell.read_voltage_v / ((1 << self.spec.dac_bits) - 1)
        nonzero = read_energy = 0.0
        dt = self.gemm_dtype()
        for i, (k0, k1) in enumerate(self.row_blocks):   # readouts outside the fused kernel
            a, var, (lo, lsb) = self._a_gemm[i], self._var_gemm[i], ranges[i]
            for t in range(planes.shape[0]):
                xp = planes[t, b0:b1, k0:k1].astype(dt)
                v = xp @ a
                if var is None:
                    std = z = np.broadcast_to(np.zeros((1, 1)), v.shape)
                else:
                    std = np.sqrt((xp * xp) @ var)
                    std = np.broadcast_to(std[:, None], v.shape) if std.ndim == 1 else std
                    z = self._noise.standard_normal(v.shape, stream)
                acc += pw[t] * self._readout(v + std * z if var is not None else v, lo, lsb)
                sq = (xp * xp).sum(axis=0, dtype=np.float64)
                nonzero += float(np.count_nonzero(xp))
                read_energy += float(sq @ self._g_rowsum[i]) * v_step ** 2 * self.spec.cell.read_time_s
        return acc, nonzero, read_energy

    # stacked rows per GEMM + epilogue step. Our choice: 256 rows x 512 columns of float32 (0.5 MB) stay in
    # the 1 MB L2 of this project's machine; 128 to 2048 rows measured alike within the noise of a shared machine
    FUSED_ROWS = 256

    def _shard_fused(self, u, b0: int, b1: int, ranges, stream: int):
        """The hot path of :meth:`_shard` for quantizing readouts: per row block, the input digits of all
        cycles cut straight from the integers into one stacked (cycles x batch) operand; per slab of
        FUSED_ROWS stacked rows one GEMM, then the numba epilogue (read-noise draw, ADC, shift-and-add)
        while the slab is in cache."""
        nb, cols = b1 - b0, self.physical_columns
        shifts, widths = plane_layout(self.spec.input_bits, self.spec.dac_bits)
        T = len(shifts)
        pw = 2.0 ** shifts
        acc = np.zeros((nb, cols))
        top = float(self.spec.readout.n_codes - 1)
        v_step = self.spec.cell.read_voltage_v / ((1 << self.spec.dac_bits) - 1)
        dt = self.gemm_dtype()
        state = self._noise.states[stream]
        slab = min(self.FUSED_ROWS, T * nb)
        vbuf = np.empty((slab, cols), dtype=dt)
        xs_buf = np.empty((T * nb, self.spec.rows), dtype=dt)
        nonzero = read_energy = 0.0
        for i, (k0, k1) in enumerate(self.row_blocks):
            a, var, (lo, lsb) = self._a_gemm[i], self._var_gemm[i], ranges[i]
            xs = xs_buf[:, : k1 - k0]
            sqsum = np.zeros(k1 - k0, dtype=np.int64)
            rowvar, nz = stack_digits(u, b0, b1, k0, k1, shifts, widths, self.spec.input_signed, xs,
                                      var if var is not None and var.ndim == 1 else None, sqsum)
            if var is None:
                std = None
            elif var.ndim == 1:
                std = np.sqrt(rowvar)[:, None]                   # one std per stacked row
            else:
                std = np.sqrt((xs * xs) @ var)
            for r0 in range(0, T * nb, slab):
                r1 = min(r0 + slab, T * nb)
                v = np.matmul(xs[r0:r1], a, out=vbuf[: r1 - r0])
                adc_accumulate_rows(acc, v, None if std is None else std[r0:r1], r0, nb, pw, lo, lsb, top, state)
            nonzero += nz
            read_energy += float(sqsum.astype(np.float64) @ self._g_rowsum[i]) * v_step ** 2 * \
                self.spec.cell.read_time_s
        return acc, nonzero, read_energy

    def _shard_readout(self, planes, pw, b0: int, b1: int, ranges, fused: bool, stream: int):
        """Pair readout and/or column scales (see the module docstring), examples b0..b1:
        (acc (batch, readout columns), nonzero digits, read energy, nonzero decisions)."""
        acc = np.zeros((b1 - b0, self.readout_columns))
        if b1 <= b0:
            return acc, 0.0, 0.0, 0.0
        ro = self.spec.readout
        v_step = self.spec.cell.read_voltage_v / ((1 << self.spec.dac_bits) - 1)
        nonzero = read_energy = decisions = 0.0
        dt = self.gemm_dtype()
        for i, (k0, k1) in enumerate(self.row_blocks):
            a, var, (lo, lsb) = self._ro_a_gemm[i], self._ro_var[i], ranges[i]
            scale = None if self._scales is None else self._scales[i]
            for t in range(planes.shape[0]):
                xp = planes[t, b0:b1, k0:k1].astype(dt)
                v = (xp @ a).astype(np.float64)
                if var is not None:
                    std = np.sqrt((xp * xp) @ var)
                    std = std[:, None] if std.ndim == 1 else std
                    v = v + std * self._noise.standard_normal(v.shape, stream)
                u = v if scale is None else v / scale          # comparator reference = threshold x scale
                if isinstance(ro, SenseAmp) and self.spec.pair_readout:
                    d = ro.convert(u, rng=self._rng, signed=True)   # PS+ against PS-: the sign
                else:
                    d = self._readout(u, lo, lsb)
                if isinstance(ro, (SenseAmp, TernaryReadout)):
                    decisions += float(np.count_nonzero(d))
                acc += pw[t] * (d if scale is None else d * scale)
                sq = (xp * xp).sum(axis=0, dtype=np.float64)
                nonzero += float(np.count_nonzero(xp))
                read_energy += float(sq @ self._g_rowsum[i]) * v_step ** 2 * self.spec.cell.read_time_s
        return acc, nonzero, read_energy, decisions

    def _count(self, batch: int, cycles: int, nonzero_inputs: float, read_energy_j: float,
               nonzero_decisions: float | None = None) -> None:
        led, name = self.ledger, self.name
        rb = len(self.row_blocks)
        conversions = batch * cycles * rb * self.readout_columns
        led.add(name, "array_read_cycles", batch * cycles * self.arrays)
        led.add(name, self._conversion_event(), conversions)
        led.add(name, "dac_drives", nonzero_inputs * self.col_blocks)
        led.add(name, "cell_reads", nonzero_inputs * self.physical_columns)
        led.add(name, "cell_read_energy_j", read_energy_j)
        led.add(name, "shift_adds", conversions)
        if nonzero_decisions is not None:
            led.add(name, "nonzero_decisions", nonzero_decisions)
        if self.slices.offset:
            led.add(name, "offset_correction_adds", batch * (self.in_features + self.out_features))

    # ------------------------------------------------------------------ time
    def at_time(self, t_s: float) -> "Crossbar":
        """A copy of this crossbar read ``t_s`` seconds after programming (drift, relaxation, leakage)."""
        out = copy.copy(self)
        entropy = self._seeds.entropy
        out.g = self.spec.cell.at_time(self.g, t_s, np.random.default_rng([entropy, 0xD41F7]))
        out._prepare(out.g)
        out.ledger = EventLedger()
        out._rng = np.random.default_rng([entropy, 0x7EAD, int(t_s * 1e3) & 0xFFFFFFFF])
        out._noise = NoiseStreams(np.random.SeedSequence([entropy, 0x7EAD, int(t_s * 1e3) & 0xFFFFFFFF]))
        if self._torch is not None:
            from cimsim.crossbar_torch import TorchTile
            out._seeds = np.random.SeedSequence([entropy, 0x7EAD, int(t_s * 1e3) & 0xFFFFFFFF])
            out._torch = TorchTile(out, str(self._torch.device))
        return out

    # ------------------------------------------------------------------ analog (learned) conductances
    @classmethod
    def from_conductances(cls, g, spec: CrossbarSpec, seed: int = 0, backend: str = "numba", device: str = "cpu",
                          name: str = "crossbar") -> "Crossbar":
        """A crossbar holding the given conductances (S) instead of programmed integer levels.

        For on-chip learning, where the synapses sit at any conductance the device law moved them to.
        ``g`` has shape (2, out, in): the G+ and G- columns of a differential pair; ``spec`` must be
        differential with one slice (``weight_bits == cell_bits + 1``). Outputs are in level units of
        ``spec``, ``sum_k x_k * (G+_k - G-_k) / dg`` with ``dg = (g_max - g_min) / (2**cell_bits - 1)``,
        read with every non-ideality and readout of ``spec``, and counted in :attr:`ledger` as usual.
        Conductances that sit exactly on levels give the same numbers as :class:`Crossbar` programmed
        with those integer weights and an ideal cell.
        """
        if spec.signed != "differential" or spec.weight_bits != spec.cell_bits + 1:
            raise ConfigError("Crossbar.from_conductances needs signed='differential' and weight_bits = "
                              f"cell_bits + 1 (one slice per polarity), got signed={spec.signed!r}, "
                              f"weight_bits={spec.weight_bits}, cell_bits={spec.cell_bits}")
        g = np.asarray(g, dtype=np.float64)
        if g.ndim != 3 or g.shape[0] != 2 or g.shape[1] < 1 or g.shape[2] < 1:
            raise ConfigError(f"conductances must have shape (2, out_features, in_features), got {g.shape}")
        # built on an ideal cell (nothing is programmed), then handed the real cell and its conductances
        xb = cls(np.zeros(g.shape[1:], dtype=np.int64), replace(spec, cell=IdealCell()), seed=seed,
                 backend=backend, device=device, name=name)
        xb.spec, xb._window_units = spec, True
        xb.set_conductances(g)
        return xb

    def set_conductances(self, g) -> None:
        """Replace the conductances (S) the arrays hold, shape (slices, polarity, out, in) or, with one
        slice, (polarity, out, in); the next call reads them (readout ranges and ledger are kept)."""
        g = np.asarray(g, dtype=np.float64)
        if g.ndim == self.g.ndim - 1 and self.n_slices == 1:
            g = g[None]
        if g.shape != self.g.shape:
            raise ConfigError(f"conductances must have shape {self.g.shape[1:] if self.n_slices == 1 else self.g.shape}, "
                              f"got {g.shape}")
        if not np.all(np.isfinite(g)) or g.min() < 0:
            raise ConfigError("conductances must be finite and non-negative (S)")
        self.g = g.copy()
        self._prepare(self.g)
        if self._torch is not None:
            self._torch.load()
