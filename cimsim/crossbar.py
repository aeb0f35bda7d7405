"""The crossbar tile: integer inputs and integer weights in, the digital numbers analog hardware gives out.

``Crossbar(W, spec, seed)`` slices the weights (:mod:`cimsim.encoding`), tiles the reduction dimension
into row blocks of ``spec.rows`` and the physical columns (outputs x slices, x2 for differential) into
column blocks of ``spec.cols``, and programs every cell through the cell model (programming noise and
stuck-at faults drawn once). A call ``xb(x)`` streams the inputs bit-serially; the analog column sums go
through the readout at the spec's conversion scope (:class:`cimsim.readouts.ConversionScope`: every
(cycle, row block, column), or after an analog shift-and-add over cycles and/or an analog sum over row
blocks), then the digital side shifts and adds. The compute runs in :mod:`cimsim.crossbar_cpu` (numba) or
:mod:`cimsim.crossbar_torch`; readouts are dispatched through :mod:`cimsim.readouts`.

Analog model, in *level units* (one unit = one conductance step ``dg = (g_max - g_min) / (2**cell_bits - 1)``
times one DAC step ``V_read / (2**dac_bits - 1)``):

* column value = ``sum_k x_k * (G_k - g_min) / dg``: the ``g_min * sum_k x_k`` current of the finite on/off
  ratio is removed by an ideal reference column (so an ideal cell gives the exact integer sum);
* read noise: each cell read adds independent Gaussian noise of std ``cell.read_sigma_s(G)``; a column
  sums them, so the column value gets one Gaussian of variance ``sum_k x_k**2 * sigma_k**2 / dg**2`` -
  exact in distribution, computed as a second matrix product, with no per-cell draw.
* exact sums on any machine: where cells are off their levels (programming noise, drift, IR drop) their
  level units, and the read-noise variances, are stored on a power-of-two grid fine enough that every column
  sum of a row block is exact in the GEMM's float type (:func:`exact_grid`; ISAAC: 2**-15 of a level, about
  5,000 times finer than 5 % programming noise). So no sum depends on its order: a seed gives the same
  numbers with any BLAS and on any CPU, and a float32 matrix holds the values exactly (no float64 copy).

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
  the partial-sum quantization (PSQ) that :mod:`cimsim.mappers.qat` trains for. Scales of shape (row blocks,
  input cycles, ...) give every cycle its own factor ``s[r, t, j]`` (one conversion per cycle only). The ledger then also
  counts ``nonzero_decisions`` (the scale-factor additions a zero-skipping digital side performs).
  ``column_thresholds=t`` (a :class:`TernaryReadout`, with ``column_scales`` of the same shape): each column's
  comparators at ``+-t x s`` instead of the readout's one ``delta`` (HCiM's learned thresholds).

Both run on the general path of either backend (the fused ADC epilogue serves plain per-cycle ADC reads).
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np

from cimsim.calibration import column_value_ranges
from cimsim.crossbar_cpu import CpuTile
from cimsim.devices.cell import IdealCell
from cimsim.devices.converters import TernaryReadout
from cimsim.encoding import check_inputs, digit_source, slice_weights
from cimsim.errors import ConfigError, check_seed
from cimsim.irdrop import effective_conductance
from cimsim.kernels import NoiseStreams
from cimsim.ledger import EventLedger
from cimsim.readouts import readout_op
from cimsim.crossbar_layout import CrossbarLayout, Tally
from cimsim.spec import CrossbarSpec  # noqa: F401 (the engine's spec, importable from here)

BACKENDS = ("numba", "torch")


def _pow2_lsb(span: float, bits: int) -> float:
    """The smallest power-of-two LSB (>= 1 level unit) whose 2**bits codes cover ``span``."""
    need = span / (2 ** bits - 1)
    return 1.0 if need <= 1 else 2.0 ** math.ceil(math.log2(need))


def quantizer_lo_lsb(lo: float, hi: float, bits: int) -> tuple[float, float]:
    """A quantizing readout's (lo, lsb) over the range (lo, hi): ``lo`` floored to an integer (reconstruction levels
    ``lo + k * lsb`` stay integers: no bias) and the power-of-two LSB of :func:`_pow2_lsb`."""
    lo = float(math.floor(lo))
    return lo, _pow2_lsb(hi - lo, bits)


# physical columns transposed at a time when the level matrices are gathered from the levels (our choice: 64 x 128
# bytes per tile, measured 2.7x faster than numpy's transposed copy of a whole row block)
_TRANSPOSE_TILE = 64
# the coarsest grid of exact sums the level units are put on (exact_grid): 2**-12 of a level (our choice: 200 to
# 600 times finer than a 5 % programming-noise sigma, 0.05 of a level on 1-bit cells and 0.15 on 2-bit ones; 5 %
# as the engine benchmark's case, cimsim.bench.STANDARD); a coarser one would be a device effect of its own
GRID_MIN_BITS = 12


# device types where the torch backend calibrates its ADC ranges per cycle (the products and the percentile's
# selection: cimsim.calibration.device_block_range); the same ranges as the host's where the sums are exact (integer
# levels, the grid of exact sums). Our choice: a GPU (an H200 calibrates ResNet-18 in 1.5 s against 3.3 s on its
# host's 16 cores, and noisy ResNet-20 in about 1 s against 20 s, BENCHMARKS.md); on a CPU the host's histogram and
# float32 GEMM are the faster way
CALIBRATE_DEVICES = ("cuda",)


def exact_grid(values: list[np.ndarray], rows: int, term_max: float, dt) -> list[np.ndarray]:
    """``values`` (float64 arrays) rounded to the grid ``2**-m`` with the largest ``m`` for which a sum of ``rows``
    terms, each a value times at most ``term_max``, stays below 2**24 (float32 ``dt``) or 2**53 units of the grid:
    then every such sum (and every partial sum, in any order) is exact in ``dt``. Values already on the grid
    (integer levels) are unchanged; the rounding moves a value by at most ``2**-(m+1)``. Where that grid would be
    coarser than ``2**-GRID_MIN_BITS`` (a wide analog sum of weight slices, e.g. CASCADE's 16 one-bit slices in
    one conversion) the values are returned as they are: their sums round in ``dt`` as any float sum does."""
    vmax = max((float(np.abs(v).max()) for v in values if v is not None and v.size), default=0.0)
    if vmax == 0.0:
        return values
    limit = 2.0 ** (24 if np.dtype(dt) == np.float32 else 53)
    m = math.floor(math.log2(limit / (rows * term_max * vmax)))
    if m < GRID_MIN_BITS:
        return values
    return [None if v is None else np.ldexp(np.round(np.ldexp(v, m)), -m) for v in values]


def _narrowed(mats: list[np.ndarray], dt) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """``mats`` (float64) in the GEMM type ``dt``, and beside each the float64 original where ``dt`` does not hold
    it exactly (else None: :func:`_widened` gives it back from the narrow one, bit for bit)."""
    narrow = [m.astype(dt, copy=False) for m in mats]
    return narrow, [None if n is m or np.array_equal(n.astype(np.float64), m) else m for n, m in zip(narrow, mats)]


def _widened(narrow: list[np.ndarray], wide: list[np.ndarray | None]) -> list[np.ndarray]:
    return [w if w is not None else n if n.dtype == np.float64 else n.astype(np.float64) for n, w in zip(narrow, wide)]


class Crossbar(CrossbarLayout):
    """A weight matrix programmed into crossbar arrays; call it on integer inputs."""

    def __init__(self, W, spec: CrossbarSpec, seed: int = 0, backend: str = "numba", device: str = "cpu",
                 name: str = "crossbar", column_scales=None, column_thresholds=None):
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        if backend == "numba" and device != "cpu":
            raise ConfigError(f"the numba backend runs on the CPU; for device={device!r} use backend='torch'")
        if not isinstance(spec, CrossbarSpec):
            raise ConfigError(f"spec must be a cimsim.CrossbarSpec, got {type(spec).__name__}")
        check_seed(seed)
        W = np.asarray(W)
        if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] < 1:
            raise ConfigError(f"weights must be a 2-D array (out_features, in_features), got shape {W.shape}")
        self.spec, self.seed, self.backend, self.device, self.name = spec, seed, backend, device, name
        self.readout_op = readout_op(spec.readout)
        self.out_features, self.in_features = W.shape
        self.seed_sequence = np.random.SeedSequence(seed)   # seed=None draws fresh entropy, kept for at_time
        self.rng = np.random.default_rng(self.seed_sequence)
        self.noise = NoiseStreams(self.seed_sequence)
        slices = slice_weights(W, spec.weight_bits, spec.cell_bits, spec.signed)
        # levels kept in the smallest unsigned type that holds 0 .. 2**cell_bits - 1 (they are indices: int64 took
        # 8 bytes a cell, as much as the conductances; issue 19's mapping memory)
        self.slices = replace(slices, levels=slices.levels.astype(np.min_scalar_type((1 << spec.cell_bits) - 1)))
        # conductances (slices, polarity, out, in), programmed once
        table = spec.cell.level_conductances(spec.cell_bits)
        if spec.cell.programs_on_levels():   # the cell says so: every cell on its level, nothing drawn
            g, self._g, self._g_table = None, None, table
        else:
            g = spec.cell.program(self.slices.levels, spec.cell_bits, self.rng)
            self._g, self._g_table = g, None
            if g.dtype == table.dtype and np.array_equal(g, table[self.slices.levels]):   # every cell on its level: g is a table look-up, not stored
                self._g, self._g_table = None, table
        self.column_scales = None if column_scales is None else self._check_scales(column_scales)
        self.column_thresholds = None if column_thresholds is None else self._check_thresholds(column_thresholds,
                                                                                              column_scales)
        self.window_units = False
        self._prepare(g)
        del g
        self.ledger = EventLedger()
        self._range: list[tuple[float, float]] | None = None
        self._cpu = CpuTile(self)
        self._torch = None
        if backend == "torch":
            from cimsim.crossbar_torch import TorchTile
            self._torch = TorchTile(self, device)

    def _check_scales(self, scales) -> np.ndarray:
        """Column scale factors as (row blocks, readout columns) float64, validated."""
        if not readout_op(self.spec.readout).decides:
            raise ConfigError("column_scales scale decisions: they need a SenseAmp or TernaryReadout readout, "
                              f"got {type(self.spec.readout).__name__}")
        if self.spec.conversion.row_blocks != "each":
            raise ConfigError("column_scales are per row block: they need a conversion scope with row_blocks='each'")
        if self.spec.conversion.slices != 1:
            raise ConfigError("column_scales are per weight slice: they need a conversion scope with slices=1")
        s = np.asarray(scales)
        if s.dtype.kind not in "biuf":
            raise ConfigError(f"column_scales must be real numbers, got dtype {s.dtype}")
        s = s.astype(np.float64)
        rb, T = len(self.row_blocks), self.cycles
        shape = ((rb, self.n_slices, self.out_features) if self.spec.pair_readout
                 else (rb, self.n_slices, self.n_polarity, self.out_features))
        if s.shape in ((rb, T, *shape[1:]), (rb, T, self.readout_columns)):    # one per input cycle as well
            if not self.spec.conversion.per_cycle:
                raise ConfigError("column_scales per input cycle need one conversion per cycle (conversion scope "
                                  "cycles='each')")
            if not np.all(np.isfinite(s)) or np.any(s <= 0):
                raise ConfigError("column_scales must be finite and positive")
            return s.reshape(rb, T, -1).copy()
        if s.shape not in (shape, (rb, self.readout_columns)):
            raise ConfigError(f"column_scales must have shape {shape} (row blocks, slices, "
                              f"{'' if self.spec.pair_readout else 'polarities, '}outputs), or with the input "
                              f"cycles ({T}) after the row blocks, got {s.shape}")
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ConfigError("column_scales must be finite and positive")
        return s.reshape(rb, -1).copy()

    def _check_thresholds(self, thresholds, scales) -> np.ndarray:
        """Per-column comparator thresholds (units of the column's scale) as the column scales are kept, validated."""
        if scales is None or not isinstance(self.spec.readout, TernaryReadout):
            raise ConfigError("column_thresholds set each column's comparator references in units of its scale: they "
                              f"need column_scales and a TernaryReadout, got {type(self.spec.readout).__name__}"
                              f"{'' if scales is not None else ' without column_scales'}")
        t = np.asarray(thresholds)
        if t.dtype.kind not in "biuf" or t.shape != np.shape(scales):
            raise ConfigError(f"column_thresholds must be real numbers of the column scales' shape {np.shape(scales)}, "
                              f"got {t.dtype} {t.shape}")
        t = t.astype(np.float64)
        if not np.all(np.isfinite(t)) or np.any(t < 0):
            raise ConfigError("column_thresholds must be finite and >= 0")
        return t.reshape(self.column_scales.shape).copy()

    def _level_step(self) -> tuple[float, float]:
        cell = self.spec.cell
        if self.window_units and math.isfinite(cell.g_max_s):
            # built from conductances: the cell's window in 2**cell_bits - 1 units, whatever states it has
            return float(cell.g_min_s), float(cell.g_range_s) / (2 ** self.spec.cell_bits - 1)
        levels = cell.level_conductances(self.spec.cell_bits)
        return float(levels[0]), float(levels[1] - levels[0])

    @property
    def g(self) -> np.ndarray:
        """The programmed conductances (S), (slices, polarity, out, in) float64. Where programming left every cell
        exactly on its level (no programming noise, no fault) they are not stored but looked up from the levels
        when asked: the same numbers, without 8 bytes a cell held for the life of the tile."""
        return self._g if self._g is not None else self._g_table[self.slices.levels]

    @g.setter
    def g(self, value: np.ndarray) -> None:
        self._g, self._g_table = value, None

    @property
    def a(self) -> list[np.ndarray]:
        """Per row block the level-unit matrix (rows, physical columns), float64 (from :attr:`a_gemm` if exact)."""
        return _widened(self.a_gemm, self._a_wide)

    @property
    def ro_a(self) -> list[np.ndarray]:
        """What the readout converts per row block, float64: :attr:`a`, or G+ minus G- of each pair."""
        return _widened(self.ro_a_gemm, self._ro_a_wide)

    def _prepare(self, g: np.ndarray | None) -> None:
        """Per row block: level-unit matrices A (rows, physical columns) and read-noise variances, and what the
        readout converts (physical columns, or G+ minus G- of each pair with ``pair_readout``). Kept in the GEMM's
        float type, which holds them exactly: integer levels, or values on the grid of exact sums
        (:func:`exact_grid`); the float64 matrix only where a value is off both (a grid coarser than
        ``2**-GRID_MIN_BITS``). Built block by block: a whole (in, physical columns) float64 copy is never made."""
        g_min, dg = self._level_step()
        dt = self.gemm_dtype()
        if self._prepare_on_levels(g_min, dg, dt):
            self._prepare_readout(None, dt)
            return
        g = self.g if g is None else g   # looked up from the levels (the constructor need not have made it)
        S, P, N, K = g.shape
        a_wide, self.var, self.g_rowsum = [], [], []
        for k0, k1 in self.row_blocks:
            flat = g[..., k0:k1].transpose(3, 0, 1, 2).reshape(k1 - k0, S * P * N)    # (rows, physical columns)
            sigma = self.spec.cell.read_sigma_s(flat)
            read_g = flat
            if self.spec.r_wire_ohm > 0:
                # The array is a linear circuit: with resistive wires the column currents are exactly
                # v @ T(G) for a transfer matrix T of each physical array (cimsim.irdrop), so IR drop is folded
                # into the programmed conductances once. The g_min reference column is taken as ideal.
                read_g = np.empty_like(flat)
                c = self.spec.cols
                for j0 in range(0, flat.shape[1], c):
                    j1 = min(j0 + c, flat.shape[1])
                    read_g[:, j0:j1] = effective_conductance(
                        flat[:, j0:j1], self.spec.r_wire_ohm, self.spec.r_wire_ohm, model=self.spec.ir_drop)
            a_wide.append((read_g - g_min) / dg)
            var = (sigma / dg) ** 2
            if not np.any(var):
                var = None
            elif np.all(var == var[:, :1]):
                var = var[:, 0].copy()   # same sigma across a row: the column variance is a GEMV
            self.var.append(var)
            self.g_rowsum.append(flat.sum(axis=1))
            del flat, sigma, read_g
        # on the grid of exact sums (module docstring): a product's digit is at most d, a slice group (the
        # analog sum of weight slices) multiplies a value by at most the group's gain, a pair readout doubles a
        # variance; the float32 matrix then holds every value and the float64 copy is not kept
        lo_d, hi_d = self.digit_range()
        d, gain = max(abs(lo_d), hi_d, 1), self.slice_group_gain()
        a_wide = exact_grid(a_wide, self.spec.rows, d * gain, dt)
        self.var = exact_grid(self.var, self.spec.rows, d * d * gain * gain * (2 if self.spec.pair_readout else 1), dt)
        self.a_gemm, self._a_wide = _narrowed(a_wide, dt)
        self._prepare_readout(a_wide, dt)

    def _prepare_on_levels(self, g_min: float, dg: float, dt) -> bool:
        """:meth:`_prepare` where every cell sits on its level (conductances looked up from the levels), the wires
        are ideal, there is no read noise and the GEMM type holds every level-unit value exactly: the same matrices
        and row sums, gathered from the levels block by block (a byte a cell) instead of computed from float64
        conductances. False (nothing done) otherwise."""
        table = self._g_table
        if self._g is not None or table is None or self.spec.r_wire_ohm > 0:
            return False
        a_level = (table - g_min) / dg                                  # the level-unit value of each level
        narrow = a_level.astype(dt)
        if not np.array_equal(narrow.astype(np.float64), a_level):
            return False
        if np.any((self.spec.cell.read_sigma_s(table) / dg) ** 2):    # read noise: per-cell variances
            return False
        S, P, N, K = self.slices.levels.shape
        columns = self.slices.levels.reshape(S * P * N, K)
        counting = np.array_equal(narrow, np.arange(narrow.size))   # level l is l units: the levels themselves
        self.a_gemm, self._a_wide, self.var, self.g_rowsum = [], [], [], []
        for k0, k1 in self.row_blocks:
            lv = np.empty((k1 - k0, S * P * N), dtype=columns.dtype)   # (rows, physical columns)
            for j in range(0, S * P * N, _TRANSPOSE_TILE):   # transposed a tile at a time (cache-friendly)
                lv[:, j:j + _TRANSPOSE_TILE] = columns[j:j + _TRANSPOSE_TILE, k0:k1].T
            self.a_gemm.append(lv.astype(dt) if counting else narrow[lv])
            self._a_wide.append(None)
            self.var.append(None)
            # summed over the columns in their order, one after another, as numpy sums the conductances' strided
            # (rows, columns) view in the general path (not pairwise): the same float64 sums
            self.g_rowsum.append(table[columns[:, k0:k1]].sum(axis=0))
        return True

    def _prepare_readout(self, a_wide: list[np.ndarray] | None, dt) -> None:
        """The rest of :meth:`_prepare`: variances in the GEMM type, column weights, what the readout converts."""
        S, P, N, K = self.slices.levels.shape
        self._line_sums, self._slice_values = {}, {}
        self.var_gemm = [None if v is None else v.astype(dt) for v in self.var]
        shift = np.outer(self.slices.weights, self.slices.sign)    # (S, P) digital weight per column group
        self.col_weight = np.repeat(shift.reshape(-1), N)          # (physical columns,)
        self.ro_a_gemm, self._ro_a_wide, self.ro_var = self.a_gemm, self._a_wide, self.var_gemm
        self.readout_weight = self.col_weight
        if self.spec.pair_readout:
            pair = lambda m: (m.reshape(m.shape[0], S, P, N)[:, :, 0] - m.reshape(m.shape[0], S, P, N)[:, :, 1]  # noqa: E731
                              ).reshape(m.shape[0], S * N)
            wide = _widened(self.a_gemm, self._a_wide) if a_wide is None else a_wide   # the same float64 numbers
            self.ro_a_gemm, self._ro_a_wide = _narrowed([pair(a) for a in wide], dt)
            # the noise of both columns adds: variances add per pair (a per-row variance simply doubles)
            self.ro_var = [None if v is None else (2 * v if v.ndim == 1 else
                           (v.reshape(-1, S, P, N)[:, :, 0] + v.reshape(-1, S, P, N)[:, :, 1]).reshape(-1, S * N))
                           for v in self.var_gemm]
            self.readout_weight = np.repeat(self.slices.weights, N)     # (column pairs,)
        if self.spec.conversion.slices != 1:
            self._group_readout(dt)

    def _group_readout(self, dt) -> None:
        """A scope that sums weight slices in analog (``ConversionScope.slices``): what the readout converts is each
        slice group's value, ``sum_s (w_s / w_s0) v_s`` (:meth:`slice_group_matrix`), so the level matrices become
        the groups' (integers where the levels are: place values are powers of two), their read-noise variances
        ``sum_s (w_s / w_s0)**2 var_s``, and the digital weight of a group its least significant slice's."""
        m = self.slice_group_matrix()
        S, G = m.shape
        wide = _widened(self.ro_a_gemm, self._ro_a_wide)
        self.ro_a_gemm, self._ro_a_wide = _narrowed([self.group_slices(a, m) for a in wide], dt)
        per = self.buffered_columns // S          # columns of one slice (outputs, or polarities x outputs)
        self.ro_var = [None if v is None else
                       self.group_slices(np.repeat(v.astype(np.float64)[:, None], S * per, axis=1) if v.ndim == 1
                                         else v.astype(np.float64), m * m).astype(dt) for v in self.ro_var]
        w0 = np.array([self.slices.weights[s0] for s0, _ in self.slice_groups])
        self.readout_weight = (np.repeat(w0, self.out_features) if self.spec.pair_readout
                               else np.repeat(np.outer(w0, self.slices.sign).reshape(-1), self.out_features))

    def slice_values(self, i: int) -> np.ndarray:
        """Row block i's level matrix of each slice's converted value (G+ minus G- of each pair with
        ``pair_readout``, else the column), in the GEMM's type, before a slice grouping: what each buffered value
        holds (a readout whose error is relative to the values written needs it where slices are grouped)."""
        cache = self.__dict__.setdefault("_slice_values", {})
        if i not in cache:
            m = self.a_gemm[i]
            if self.spec.pair_readout:
                S, N = self.n_slices, self.out_features
                m = m.reshape(m.shape[0], S, 2, N)
                m = (m[:, :, 0] - m[:, :, 1]).reshape(m.shape[0], S * N)
            cache[i] = m
        return cache[i]

    def line_sum(self, i: int) -> np.ndarray:
        """Row block i's level matrix of what each slice's buffered value's lines hold together, in the GEMM's type:
        G+ plus G- of each pair with ``pair_readout`` (so a pair's lines hold ``(s + d) / 2`` and ``(s - d) / 2``
        for the sum ``s`` and the slice's difference ``d``), else the slice's column itself. Built on first use (only a
        readout whose error is relative to the values written needs it, :class:`cimsim.readouts.BufferedQuantizerOp`)."""
        cache = self.__dict__.setdefault("_line_sums", {})
        if i not in cache:
            if self.spec.pair_readout:
                S, P, N = self.n_slices, 2, self.out_features
                m = self.a_gemm[i]
                m = m.reshape(m.shape[0], S, P, N)
                cache[i] = (m[:, :, 0] + m[:, :, 1]).reshape(m.shape[0], S * N)
            else:
                cache[i] = self.a_gemm[i]
        return cache[i]

    # ------------------------------------------------------------------ readout ranges
    def ranges(self) -> list[tuple[float, float]]:
        """(lo, lsb) per conversion domain for a quantizing readout."""
        pol, bits = self.spec.adc_range, int(self.spec.readout.bits)
        out = []
        for d, blocks in enumerate(self.conversion_domains):
            if pol == "full":
                lo, hi = self.full_range(blocks)
            elif pol == "calibrated":
                if self._range is None:
                    raise ConfigError("adc_range='calibrated' needs a calibration batch: call xb.calibrate(x) first")
                lo, hi = self._range[d]
            else:
                lo, hi = float(pol[0]), float(pol[1])
            out.append(quantizer_lo_lsb(lo, hi, bits))
        return out

    def calibrate(self, x) -> None:
        """Set each conversion domain's ADC range from the values a calibration batch produces.

        The range is [min(0, -p), p] where p is the ``calibration_percentile`` of |value| over all
        conversions of that domain (noise-free values; 99.9 % by default). The ADC then rounds its LSB up to
        a power of two of level units, which widens the range by up to 2x, so at most 0.1 % of the
        calibration batch's conversions clip (usually fewer).
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ConfigError(f"calibration inputs must have shape (batch, {self.in_features}), got {x.shape}")
        if x.shape[0] == 0:
            raise ConfigError("the calibration batch is empty: give at least one input vector")
        shifts, widths, places = self.input_layout()
        gpu = self._torch.device if self._torch is not None and self._torch.device.type in CALIBRATE_DEVICES else None
        self._range = column_value_ranges(self.digit_source(x), self.row_blocks, self.ro_a_gemm, shifts, widths,
                                          places, self.spec.calibration_percentile, self.gemm_dtype(),
                                          self.spec.conversion, device=gpu)

    def digit_source(self, x: np.ndarray, bounds: tuple[int, int] | None = None) -> np.ndarray:
        """The validated inputs as the digit cutter (:func:`cimsim.kernels.stack_digits`) reads them
        (:func:`cimsim.encoding.digit_source`; ``bounds``: an int64 ``x``'s (min, max) where the caller has them)."""
        s = self.spec
        xv = check_inputs(x, s.input_bits, s.input_signed, one_pass=self._torch is None, bounds=bounds,
                          encoding=s.input_encoding)
        return digit_source(xv, s.input_bits, s.input_signed, s.input_encoding)

    # ------------------------------------------------------------------ forward
    def __call__(self, x, product: bool = True):
        """Outputs (batch, out) float64 of integer inputs ``x`` (batch, in). ``product=False``: a CPU call's events
        without its outputs (returns None) where it takes the lossless path, else False (nothing counted)."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ConfigError(f"inputs must have shape (batch, {self.in_features}), got {x.shape}")
        domains = len(self.conversion_domains)
        ranges = self.ranges() if self.readout_op.quantizes else [(0.0, 1.0)] * domains
        if self._torch is not None and not product:
            return False
        if self._torch is not None:  # bit planes are cut on the device from the validated integers
            # numpy's bounds: loading the numba one would cost a run that otherwise runs no numba 0.3-0.8 s
            check = lambda: check_inputs(x, self.spec.input_bits, self.spec.input_signed, one_pass=False,  # noqa: E731
                                         encoding=self.spec.input_encoding)
            if np.issubdtype(x.dtype, np.integer):   # checked on the host while the device computes
                y, tally = self._torch.forward(x, ranges, validate=check)   # offset-corrected on the device
            else:
                y, tally = self._torch.forward(check(), ranges)
        else:
            if (got := self._cpu.forward(x, ranges, product)) is None:
                return False
            y, tally = got
        if self._pending:
            self.ledger   # the device calls before this one are counted first
        self._count(x.shape[0], tally)
        return y

    @property
    def torch_device(self):
        """The torch backend's device (where :meth:`call_device` takes its inputs); None on the numba backend."""
        return None if self._torch is None else self._torch.device

    def exact_weights(self) -> np.ndarray | None:
        """(in_features, out_features) float64 integers W: the last call returned exactly ``x @ W`` when it took the
        CPU engine's lossless path (:meth:`cimsim.crossbar_cpu.CpuTile._lossless`), else None. A mapped layer uses it
        to skip recomputing the exact product its error is measured against."""
        return None if self._torch is not None else self._cpu.exact_weights()

    def call_device(self, xt):
        """The torch backend's call on a device tensor: integer inputs ``xt`` (batch, in) on the engine's device
        (any dtype holding integers, e.g. float32 patches), in range (not checked: the caller quantized them);
        returns y (batch, out) float64 on the device. The call's events are counted when :attr:`ledger` is next
        read (their tally stays on the device until then), so a mapped network's layers never wait for it."""
        if self._torch is None:
            raise ConfigError("call_device needs the torch backend (backend='torch')")
        domains = len(self.conversion_domains)
        ranges = self.ranges() if self.readout_op.quantizes else [(0.0, 1.0)] * domains
        y, tally = self._torch.forward_checked(xt, ranges)
        self._pending.append((int(xt.shape[0]), tally))
        return y

    @property
    def ledger(self) -> EventLedger:
        """Everything this crossbar did (events by layer name); counts the device calls still pending first."""
        if self._pending:
            import torch

            pending, self._pending = self._pending, []
            tallies = torch.stack([t for _, t in pending]).cpu().numpy()
            for (batch, _), t in zip(pending, tallies):
                self._count(batch, Tally(*(float(v) for v in t)))
        return self._ledger

    @ledger.setter
    def ledger(self, value: EventLedger) -> None:
        self._ledger, self._pending = value, []

    def read_voltage_step_v(self) -> float:
        """The word-line voltage of one input digit unit (a cell read spends digit**2 * this**2 * G * t)."""
        return self.spec.cell.read_voltage_v / ((1 << self.spec.dac_bits) - 1)

    # ------------------------------------------------------------------ time
    def at_time(self, t_s: float) -> "Crossbar":
        """A copy of this crossbar read ``t_s`` seconds after programming (drift, relaxation, leakage)."""
        out = copy.copy(self)
        entropy = self.seed_sequence.entropy
        out.g = self.spec.cell.at_time(self.g, t_s, np.random.default_rng([entropy, 0xD41F7]))
        out._prepare(out.g)
        out.ledger = EventLedger()
        out.rng = np.random.default_rng([entropy, 0x7EAD, int(t_s * 1e3) & 0xFFFFFFFF])
        out.noise = NoiseStreams(np.random.SeedSequence([entropy, 0x7EAD, int(t_s * 1e3) & 0xFFFFFFFF]))
        out._cpu = CpuTile(out)
        if self._torch is not None:
            from cimsim.crossbar_torch import TorchTile
            out.seed_sequence = np.random.SeedSequence([entropy, 0x7EAD, int(t_s * 1e3) & 0xFFFFFFFF])
            out._torch = TorchTile(out, str(self._torch.device))
        return out

    # ------------------------------------------------------------------ another readout
    def with_readout(self, readout) -> "Crossbar":
        """A copy of this crossbar as built (before any read) but converting with ``readout``, a converter of the
        same kind (other bits, other offset noise): the programmed conductances (programming noise included) and
        the calibrated value ranges are shared, the readout's (lo, lsb) follow from them and the new converter at
        each call (:meth:`ranges`), the read-noise streams start again at the first call and the ledger is empty.
        So it gives exactly what a crossbar built and calibrated with that readout and the same seed gives (a
        sweep over ADC settings programs each network once: :mod:`cimsim.sweep`)."""
        if type(readout) is not type(self.spec.readout):
            raise ConfigError(f"with_readout keeps the kind of converter: this crossbar has a "
                              f"{type(self.spec.readout).__name__}, not a {type(readout).__name__}")
        out = copy.copy(self)
        out.spec = replace(self.spec, readout=readout)
        out.readout_op = readout_op(readout)
        out.ledger = EventLedger()
        out.noise = self.noise.fresh()
        out._cpu = CpuTile(out)
        if self._torch is not None:
            from cimsim.crossbar_torch import TorchTile
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
        xb.spec, xb.window_units = spec, True
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
