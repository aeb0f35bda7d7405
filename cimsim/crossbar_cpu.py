"""The CPU backend of the crossbar engine (numba kernels and numpy BLAS).

For each shard of examples and each row block, the input digits of every cycle are cut from the integers
into one stacked (cycles x batch, rows) operand (:func:`cimsim.kernels.stack_digits`). Then:

* the fused path (a uniform quantizer without per-conversion noise, one conversion per cycle and row
  block): per slab of stacked rows one float32 GEMM, then the numba epilogue draws the read noise,
  quantizes and shifts-and-adds while the slab is in cache (:func:`cimsim.kernels.adc_accumulate_rows`); for
  one-bit digits and levels whose every partial sum float32 holds exactly (noisy levels on the grid of exact sums)
  the product comes from tables of 4-row sums instead, the GEMM's numbers bit for bit (:meth:`CpuTile._table_blocks`,
  :mod:`cimsim.kernels_tables`);
* the general path (every readout, pair readout, column scales, every conversion scope): per
  (row blocks, cycles) of one conversion, the column values of each cycle ``x_t @ A`` are summed in analog
  with their place values, the read noise of the sum is one Gaussian per conversion with the summed
  variance, the readout operation (:mod:`cimsim.readouts`) converts it, and the digital side shifts and
  adds. A conversion of one cycle and one row block computes its column values as earlier versions did
  (float32 sums). Its methods live in :mod:`cimsim.crossbar_general`; where every number is an exact integer, a
  readout whose buffered values carry an error relative to themselves (CASCADE) takes the values and their variances
  from one product (or popcounts) per row block (:mod:`cimsim.kernels_buffered`), and a conversion of several cycles
  with no noise to sum (Neural-PIM) one float64 product of each group's summed digits: the same numbers.

Two integer paths give the fused path's numbers without its float products where the levels are integers and
nothing is noisy: the lossless path (converters that return every column value: one exact product,
:meth:`CpuTile._lossless`) and the bit-serial path (converters that round or clip on an integer grid: column values
from tables of level sums, the ADC in integers, :meth:`CpuTile._bit_serial` and :mod:`cimsim.kernels_bits`).

Every random draw sits at a place fixed by what it is: the fused path's read noise by (call, example, cycle,
row block, column), the general path's read noise and its converters' own noise by (call, example,
conversion, column, which draw) (:func:`cimsim.kernels.placed_normals`, :class:`cimsim.kernels.PlacedNormals`).
So both split a batch into shards of at least :data:`MIN_SHARD_MACS` of work (the general path
:data:`GENERAL_SHARDS` times that and :data:`GENERAL_VALUES` values a conversion; a split that depends on the work
only) spread over every core
(``$CIMSIM_THREADS`` to choose), and a seed gives the same numbers on any number of threads.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from cimsim import kernels_amx, kernels_tables
from cimsim.crossbar_general import GeneralPath
from cimsim.crossbar_layout import Tally
from cimsim.encoding import source_numbers
from cimsim.engine_threads import blas_controller, fixed_shares, parallel_map, taken_shares, threads  # noqa: F401
from cimsim.kernels import adc_accumulate_rows, digit_tables, digit_tally, stack_digits
from cimsim.kernels_bits import bit_serial_rows, group_tables, weighted_columns
from cimsim.kernels_shares import row_conductance, share_tallies, stack_rows
from cimsim.kernels_tables import call_tables, kept_table_stack, stack_variances, table_blocks, table_rows
from cimsim.kernels_host import input_row_sums, int_bounds_row_sums

# the least work worth a shard of its own, measured on this project's 2-core AMD EPYC (ISAAC's LeNet-5 layers,
# _shard_fused timed by shard size on one thread, machine loaded). Per example of the 400 -> 120 layer
# (16 cycles, 4 row blocks, 960 columns): 5.5 ms in a shard of 1 example, 2.9 ms of 4, 2.1 ms of 16, 2.0 ms of
# 256; of the 120 -> 84 layer 0.72, 0.37, 0.43, 0.51 ms at 1, 4, 16, 256. Small shards pay for short products
# (a GEMM of 16 rows runs far below BLAS's rate) and fixed work (digit cutting, buffers). So a shard holds at
# least MIN_SHARD_ROWS stacked rows (cycles x examples: one full FUSED_ROWS slab) and MIN_SHARD_MACS of work
# (2-3 ms at the 2.5-4 G MAC/s a loaded core reached). At ISAAC, LeNet-5's first convolution splits a chunk of
# 1024 patch rows into 2 shards (16 shards of 64 rows before, on 16 cores), its 400 -> 120 layer a batch of 64
# into 4 and its last layer keeps one.
MIN_SHARD_ROWS = 256
MIN_SHARD_MACS = 1 << 23
# the general path's shards hold GENERAL_SHARDS times that least work: its fixed work per shard (numpy steps per
# row block, cycle and conversion, each a return to the interpreter) dominated small shards. Measured on this
# project's 2-core machine, CASCADE on LeNet-5 (512 test images, one command): 23.5 s with the fused path's sizes
# (conv2: shards of 16 patch rows), 17.2 s at 8x, 10.1 s at 16x, 14.4 at 32x (a busier minute); the same outputs
# at every size (exact sums; BENCHMARKS.md, "The general path's shards")
GENERAL_SHARDS = 16
# and at least GENERAL_VALUES values a conversion (examples x readout columns): with their products counted or
# summed first (crossbar_general) a narrow layer's shards were mostly numpy's fixed cost per step, holding the
# interpreter's lock (CASCADE's ResNet-20, 144 -> 16: shards of 256 patch rows, slower on 2 threads than on 1).
# Measured on this project's 2-core machine, 128 images: 22.7 s at 0 (no such floor), 18.9 s at 8192, 16.6 s at
# 16384 and 32768; LeNet-5 on CASCADE 6.0 -> 5.1 s, Neural-PIM and HCiM unchanged (BENCHMARKS.md, fifteenth session)
GENERAL_VALUES = 16384
# and run on at most GENERAL_THREADS of the engine's threads: a shard is many short steps (kernels of tens of
# microseconds, numpy operations) each returning to the interpreter, whose lock more threads wait for longer than they
# compute. Measured on the 16-core device host (BENCHMARKS.md, twenty-first session, evaluation at caps 2 / 4 / 8 /
# 16): CASCADE's LeNet-5 (2,000 images) 4.4 / 3.9 / 3.7 / 4.4 s, its ResNet-20 (128) 7.6-8.3 / 4.8 / 4.1 / 4.5-5.1 s,
# the spiking VGG on adcless-snn (200) 6.4-7.4 / - / 5.4-5.7 / 5.8-6.4 s; on this project's 2 cores the cap is moot
# (one thread and two equal since the one-pass conversion, eighteenth session)
GENERAL_THREADS = 8


def shard_count(examples: int, per_example: int, cycles: int, times: int = 1) -> int:
    """Shards for ``examples`` examples of ``per_example`` MACs and ``cycles`` stacked rows each: none with less
    than ``times`` x :data:`MIN_SHARD_ROWS` stacked rows or ``times`` x :data:`MIN_SHARD_MACS` of work, at least
    one. It does not depend on the number of threads (see CpuTile.forward)."""
    return int(max(1, min(examples * cycles // (times * MIN_SHARD_ROWS),
                          examples * per_example // (times * MIN_SHARD_MACS))))


@lru_cache(maxsize=4096)
def _cut(c0: int, c1: int, per_example: int, cycles: int, min_rows: int, min_macs: int, times: int = 1,
         values: int = 0, min_values: int = 0):
    """CpuTile._shards, remembered (a network calls each layer with the same batch shape); the least work is part
    of the key, as shard_count reads it. ``values``: values an example converts at a time, of which a shard holds at
    least ``min_values`` (the general path's numpy steps run over them)."""
    n_shards = shard_count(c1 - c0, per_example, cycles, times)
    if values and min_values:
        n_shards = max(1, min(n_shards, (c1 - c0) * values // min_values))
    edges = np.linspace(c0, c1, n_shards + 1).astype(int)
    return tuple((int(edges[j]), int(edges[j + 1])) for j in range(n_shards))


_NO_VAR = np.zeros(1)   # table_rows' variance argument where it draws no read noise

# stacked rows per GEMM + epilogue step. Our choice: 256 rows x 512 columns of float32 (0.5 MB) stay in
# the 1 MB L2 of this project's machine; 128 to 2048 rows measured alike within the noise of a shared machine
FUSED_ROWS = 256


class CpuTile(GeneralPath):
    """The forward pass of one :class:`cimsim.crossbar.Crossbar` on the CPU."""

    # take the lossless integer path where it applies (:meth:`_lossless`); False: always cut bit planes
    # (the tests compare both)
    EXACT = True
    # take the bit-serial integer path where it applies (:meth:`_bit_serial`); False: cut bit planes and multiply
    # in float (the tests compare both)
    BITS = True
    # on the fused path, the one-bit digits' product from tables of 4-row sums where they are exact
    # (:meth:`_table_blocks`, :mod:`cimsim.kernels_tables`); False: float32 BLAS (the tests compare both)
    TABLES = True

    def __init__(self, xb):
        self.xb = xb
        self._exact_key = None     # what _lossless was built from (the arrays, the readout weights)
        self._exact = None         # its result: None, or the exact path's static data
        self._bits_key = None      # what _bit_serial was built from (the arrays, their read noise)
        self._bits = None          # its result: None, or the bit-serial path's static data
        self._tables_key = None    # what _table_blocks was built from (the arrays)
        self._rows_key = None      # _shares' (g_rowsum, readout_weight) and its arrays made from them
        self._tables_ok = None     # per row block: whether its product may come from tables
        self.lossless_calls = 0    # calls that took the exact path (cimsim bench --model reports them)
        self.bit_serial_calls = 0  # calls that took the bit-serial integer path
        self.last_exact = None     # the lossless path's data when the last call took it, else None
        self.last_product = None   # the fused path's product in the last call: "amx", "tables" or None (BLAS)

    # ------------------------------------------------------------------ the lossless integer path
    def _lossless(self, ranges):
        """The exact path's data when this call's conversions provably reproduce every column value, else None.

        On the fused path without read noise, with integer levels (``a``) and integer readout weights, a
        column value of a cycle is an integer in [vmin, vmax] (its bounds over every digit vector), the GEMM
        computes it exactly (float32 below 2**24, see Crossbar.gemm_dtype), and an ADC with an integer ``lo``
        and a power-of-two ``lsb <= 1`` whose codes 0..top cover [vmin, vmax] returns it unchanged and never
        clips. Then the shift-and-add over the cycles and the readout weights give exactly the integer product
        x @ W, W = the readout-weighted sum of the slices' levels: the call computes that product in float64
        (every partial sum an integer below 2**53), and counts the digits from tables
        (:func:`cimsim.kernels.digit_tally`), with the same numbers as the bit-plane path bit for bit
        (``tests/test_crossbar_exact.py``). ISAAC's defaults on LeNet-5 are such a case at every layer."""
        xb = self.xb
        key = (xb.a_gemm, xb.var_gemm, xb.readout_weight)
        if self._exact_key is None or any(p is not q for p, q in zip(key, self._exact_key)):
            self._exact_key, self._exact = key, self._exact_static()
        st = self._exact
        if st is None:
            return None
        top = float(xb.readout_op.n_codes - 1)
        for (lo, lsb), vmin, vmax in zip(ranges, st["vmin"], st["vmax"]):
            lo, lsb = float(lo), float(lsb)
            if not (lo.is_integer() and 0.0 < lsb <= 1.0 and math.frexp(lsb)[0] == 0.5):
                return None
            if (vmin - lo) / lsb < 0.0 or (vmax - lo) / lsb > top:
                return None
        return st

    def _exact_static(self):
        """The exact path's per-crossbar data (see :meth:`_lossless`), or None where it cannot apply."""
        xb = self.xb
        spec = xb.spec
        if any(v is not None for v in xb.var_gemm):
            return None
        rw = np.asarray(xb.readout_weight, dtype=np.float64)
        if not np.array_equal(rw, np.rint(rw)):
            return None
        dlo, dhi = xb.digit_range()
        dmax = max(abs(dlo), abs(dhi))
        exact_below = 2.0 ** 24 if xb.gemm_dtype() == np.float32 else 2.0 ** 53
        N = xb.out_features
        vmin, vmax, w, col_abs = [], [], [], 0.0
        for a in xb.a_gemm:
            a = a.astype(np.float64)
            if not np.array_equal(a, np.rint(a)) or np.abs(a).sum(axis=0).max(initial=0.0) * dmax >= exact_below:
                return None
            vmin.append(float(np.minimum(dlo * a, dhi * a).sum(axis=0).min(initial=0.0)))
            vmax.append(float(np.maximum(dlo * a, dhi * a).sum(axis=0).max(initial=0.0)))
            w.append((a * rw).reshape(a.shape[0], -1, N).sum(axis=1))
            col_abs += np.abs(a).sum(axis=0).max(initial=0.0)
        # every partial sum below 2**53: the cycles' shift-and-add, the readout weights, the rows
        if 2.0 ** (spec.input_bits + 1) * dmax * col_abs * np.abs(rw).sum() >= 2.0 ** 53:
            return None
        w = np.concatenate(w, axis=0)
        tables = digit_tables(spec.input_bits, spec.dac_bits, spec.input_signed, spec.input_encoding)
        return {"vmin": vmin, "vmax": vmax, "w": w, "tables": tables,
                # the integer matrix the call's outputs equal x @ of, the offset correction applied
                "weights": w - float(xb.slices.offset) if xb.slices.offset else w}

    def exact_weights(self):
        """(in, out) float64 integers W such that the last call returned exactly x @ W (offset-corrected), when it
        took the lossless path (:meth:`_lossless`); None otherwise."""
        return None if self.last_exact is None else self.last_exact["weights"]

    def _forward_exact(self, u, st, per_example: int, product: bool = True):
        """The exact path (see :meth:`_lossless`) for the whole batch: (y before the offset correction, tally); y is
        None without ``product`` (the events only). The tally is summed shard by shard and block by block over the
        shards the bit-plane path would cut (:meth:`_shards`), in its order, so its float sums are the same numbers."""
        xb = self.xb
        spec = xb.spec
        B = u.shape[0]
        bounds = [sh for c0 in range(0, B, spec.batch_chunk)
                  for sh in self._shards(c0, min(c0 + spec.batch_chunk, B), per_example, xb.cycles)]
        split = spec.input_bits - 1 if spec.input_signed and spec.input_encoding == "split" else 0
        wrap = 1 << spec.input_bits if spec.input_signed and not split else 0   # u: negatives modulo 2**input_bits
        if st["tables"] is not None:   # one pass over the inputs: the digits' counts and the inputs as numbers
            # the shards in a few runs, one a thread (numba and BLAS release the GIL): each run counts its digits and
            # multiplies its rows; the counts are integers and every row's product is exact, so the split changes
            # no number
            y = np.empty((B, xb.out_features)) if product else None
            runs = np.unique(np.linspace(0, len(bounds), min(threads(), len(bounds)) + 1).astype(int))

            def run(r):
                r0, r1 = bounds[r[0]][0], bounds[r[1] - 1][1]
                nz_r, sq_r, xf = digit_tally(u[r0:r1], [b0 - r0 for b0, _ in bounds[r[0]:r[1]]] + [r1 - r0],
                                             xb.row_blocks, st["tables"], wrap, product, split)
                if product:
                    np.matmul(xf, st["w"], out=y[r0:r1])
                return nz_r, sq_r

            parts = parallel_map(run, zip(runs[:-1], runs[1:]))
            nz = (np.concatenate([p[0] for p in parts], axis=1) if parts
                  else np.zeros((len(xb.row_blocks), 0), dtype=np.int64))
            sq = np.concatenate([p[1] for p in parts], axis=0) if parts else np.zeros((0, u.shape[1]), dtype=np.int64)
            counts = [(nz[i], sq[:, k0:k1].astype(np.float64), xb.g_rowsum[i])
                      for i, (k0, k1) in enumerate(xb.row_blocks)]
        else:   # wide inputs: cut the digits to count them
            counts = []
            for i in range(len(xb.row_blocks)):
                got = [self._digits(u, b0, b1, i, False) for b0, b1 in bounds]
                counts.append(([g[2] for g in got], np.array([g[3] for g in got]).astype(np.float64), xb.g_rowsum[i]))
            y = None
            if product:
                xf = source_numbers(u, spec.input_bits, spec.input_signed, spec.input_encoding).astype(np.float64)
                y = xf @ st["w"]
        # the bit-plane path's float sums, operation for operation: per shard t = ((0 + c_0) + c_1) + ... over the
        # blocks, c_i = row_conductance(sqsum_i, g_i) * read time, then the call's total ((t_0 + t_1) + ...) in shard
        # order (np.add.accumulate is sequential); the digit counts are integers, exact in any order
        read_s = spec.cell.read_time_s
        per_shard = np.zeros(len(bounds))
        for _, sq, g in counts:
            per_shard += np.array([row_conductance(row, g) for row in sq]) * read_s
        tally = Tally()
        tally.nonzero_digits = float(sum(int(np.sum(nz)) for nz, _, _ in counts))
        tally.conductance_s = float(np.add.accumulate(per_shard)[-1]) if len(bounds) else 0.0
        return y, tally

    # ------------------------------------------------------------------ the bit-serial integer path
    def _bit_serial(self, ranges):
        """The bit-serial path's data and this call's ADC grid ((lo, log2 lsb) per row block) when the fused path's
        numbers are integer functions of integer column values, else None: no read noise, integer levels in
        0 .. 2**MAX_LEVEL_BITS - 1, inputs of at most TABLE_BITS bits (their digits counted from tables), and
        every row block's ADC on an integer grid (integer ``lo``, ``lsb`` a power of two >= 1) whose sums stay
        below 2**53 (see :mod:`cimsim.kernels_bits`; ``tests/test_crossbar_bits.py``: equal to the bit-plane
        path bit for bit, ledger included). ISAAC's low-bit ADC points on LeNet-5 are such cases."""
        xb = self.xb
        key = (xb.a_gemm, xb.var_gemm)
        if self._bits_key is None or any(p is not q for p, q in zip(key, self._bits_key)):
            self._bits_key, self._bits = key, self._bits_static()
        st = self._bits
        if st is None:
            return None
        top = xb.readout_op.n_codes - 1
        los, ss = [], []
        for lo, lsb in ranges:
            lo, lsb = float(lo), float(lsb)
            if not (lo.is_integer() and lsb >= 1.0 and math.frexp(lsb)[0] == 0.5):
                return None
            # the largest sum: every cycle's conversion at its extreme, weighted 2**shift, over the row blocks
            if len(xb.row_blocks) * 2.0 ** xb.spec.input_bits * max(abs(lo), abs(lo + top * lsb)) >= 2.0 ** 52:
                return None
            los.append(int(lo))
            ss.append(math.frexp(lsb)[1] - 1)
        return st, np.array(los, dtype=np.int64), np.array(ss, dtype=np.int64), int(top)

    def _bits_static(self):
        """The bit-serial path's per-crossbar data (levels' bit planes, digit tables), or None where it cannot apply."""
        xb = self.xb
        spec = xb.spec
        if any(v is not None for v in xb.var_gemm):
            return None
        tables = digit_tables(spec.input_bits, spec.dac_bits, spec.input_signed, spec.input_encoding)
        if tables is None:
            return None
        grouped = group_tables(xb.a_gemm)
        if grouped is None:
            return None
        return {"groups": grouped[0], "g": grouped[1], "plane_dtype": grouped[2], "tables": tables,
                "layout": xb.input_layout()}

    def _forward_bits(self, u, bits, per_example: int):
        """The fused path's call by the bit-serial kernel (see :meth:`_bit_serial`): (y before the offset correction,
        tally). The examples go to the threads in a few runs of whole shards of the bit-plane path (:meth:`_shards`);
        the kernel counts the digits shard by shard, and the tally's float sums are formed in the bit-plane path's
        order (per shard: per row block, conductance-seconds; then shard after shard), so they are the same numbers."""
        xb = self.xb
        spec = xb.spec
        st, los, ss, top = bits
        shifts, widths, places = st["layout"]
        B, N = u.shape[0], xb.out_features
        bounds = [sh for c0 in range(0, B, spec.batch_chunk)
                  for sh in self._shards(c0, min(c0 + spec.batch_chunk, B), per_example, xb.cycles)]
        edges = [b0 for b0, _ in bounds] + [B]
        runs = np.unique(np.linspace(0, len(bounds), min(threads(), len(bounds)) + 1).astype(int))
        def run(r):   # a run of shards: the kernel, then the readout weights (as the bit-plane path applies them)
            acc, clipped, nonzero, sq = bit_serial_rows(u, edges[r[0]:r[1] + 1], xb.row_blocks, st["groups"], st["g"],
                                                        st["plane_dtype"], shifts, widths, places, los, ss,
                                                        top, st["tables"])
            return weighted_columns(acc, xb.readout_weight, N), clipped, nonzero, sq

        parts = parallel_map(run, zip(runs[:-1], runs[1:]))
        y = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, N))
        sq = (np.concatenate([p[3] for p in parts]) if parts else np.zeros((0, u.shape[1]), dtype=np.int64)
              ).astype(np.float64)
        read_s = spec.cell.read_time_s
        tally = Tally()
        blocks = list(zip(xb.row_blocks, xb.g_rowsum))
        for row in sq:   # shard by shard, block by block, as _shard_fused adds them
            t = 0.0
            for (k0, k1), g in blocks:
                t += row_conductance(row[k0:k1], g) * read_s
            tally.conductance_s += t
        tally.clipped = float(sum(p[1] for p in parts))
        tally.nonzero_digits = float(sum(p[2] for p in parts))
        return y, tally

    @staticmethod
    def _shards(c0: int, c1: int, per_example: int, cycles: int, times: int = 1, values: int = 0
                ) -> tuple[tuple[int, int], ...]:
        """The shards of examples c0..c1 (one chunk): :func:`shard_count` of them, as equal as integers allow (and
        each at least :data:`GENERAL_VALUES` of ``values`` per example where given)."""
        return _cut(c0, c1, per_example, cycles, MIN_SHARD_ROWS, MIN_SHARD_MACS, times, values,
                    GENERAL_VALUES if values else 0)

    def forward(self, x: np.ndarray, ranges, product: bool = True) -> tuple[np.ndarray | None, Tally] | None:
        """y (batch, out) float64, offset-corrected, and the tally; ``ranges``: (lo, lsb) per conversion domain.
        Without ``product``: (None, the tally) where the call takes the lossless path, else None (nothing done)."""
        xb = self.xb
        spec, op = xb.spec, xb.readout_op
        fused = op.fused and spec.conversion.per_cycle and not spec.pair_readout and xb.column_scales is None
        exact = self._lossless(ranges) if fused and self.EXACT else None
        if not product and exact is None:
            return None   # before the inputs are read or the call's noise stream taken: nothing of this call happened
        # the offset's row sums and the inputs' bounds in one pass where they are int64 (a network's are)
        pre = int_bounds_row_sums(x) if xb.slices.offset and x.dtype == np.int64 and x.ndim == 2 and \
            x.flags.c_contiguous and x.size >= 4096 and x.shape[1] > 0 else None
        u = xb.digit_source(x, None if pre is None else pre[:2])
        row_sums = None if not (xb.slices.offset and product) else \
            input_row_sums(x, spec.input_bits, None if pre is None else pre[2])
        B, N = x.shape[0], xb.out_features
        tally = Tally()
        # both paths place every draw by what it is (example, cycle or conversion, row block, column), so the
        # draws do not depend on the split. The split depends only on the work, never on the thread count, and
        # every product runs on one BLAS thread: a seed gives the same numbers on any number of threads (BLAS may
        # round a float32 product's last bit differently for another number of rows, so the split itself is
        # kept fixed). Its shards are spread over every thread.
        n_threads = threads()
        per_example = xb.cycles * xb.in_features * xb.physical_columns   # MACs of one example's bit planes
        stream = xb.noise.call_stream()
        bits = self._bit_serial(ranges) if fused and exact is None and self.BITS else None
        self.last_exact = exact
        y = np.zeros((B, N)) if exact is None and bits is None else None   # those two paths return their own
        tables = stack = var_stack = prod = None
        if fused and exact is None and bits is None and self.TABLES:
            ok = self._table_blocks()
            var_stack = stack_variances(xb.var_gemm)
            # the tiles take any number of columns (the tables pay only from TABLE_COLS_MIN on)
            if var_stack is not False and xb.spec.dac_bits == 1 and xb.gemm_dtype() == np.float32 \
                    and kernels_amx.wanted():
                prod = kernels_amx.kept_blocks(xb.a_gemm)
            stack = kept_table_stack(xb.a_gemm, ok) if var_stack is not False and prod is None else None
            tables = None if stack is not None or prod is not None else call_tables(xb.a_gemm, ok)
        self.last_product = "amx" if prod is not None else "tables" if stack is not None or tables else None
        with blas_controller().limit(limits=1, user_api="blas"):
            if exact is not None:
                self.lossless_calls += 1
                y, tally = self._forward_exact(u, exact, per_example, product)
            elif bits is not None:
                self.bit_serial_calls += 1
                y, tally = self._forward_bits(u, bits, per_example)
            if prod is not None or stack is not None:
                # every chunk's shards (the same shards, in order) in one launch: each thread's kernel takes them as
                # they come, and a chunk bounds no memory here (a thread's buffers are one shard's)
                shards = [sh for c0 in range(0, B, spec.batch_chunk)
                          for sh in self._shards(c0, min(c0 + spec.batch_chunk, B), per_example, xb.cycles)]
                if shards:
                    for t in self._shares(u, shards, ranges, stream, stack, var_stack, prod, row_sums, y, n_threads):
                        tally += t
            if exact is None and bits is None and prod is None and stack is None:
                # every chunk's shards (the same shards, in order) in one launch, taken by the threads as they come
                # free: a thread's memory is one shard's, and the tallies are added in shard order
                times = 1 if fused else GENERAL_SHARDS
                shards = [sh for c0 in range(0, B, spec.batch_chunk)
                          for sh in self._shards(c0, min(c0 + spec.batch_chunk, B), per_example, xb.cycles, times,
                                                 0 if fused else xb.readout_columns)]
                if fused:
                    work = lambda sh: self._shard_fused(u, sh[0], sh[1], ranges, stream, tables)  # noqa: E731
                else:
                    work = lambda sh: self._shard(u, sh[0], sh[1], ranges, stream)  # noqa: E731
                finish = lambda sh: self._finish_shard(sh, work, row_sums, y)  # noqa: E731
                for t in taken_shares(finish, shards, n_threads if fused else min(n_threads, GENERAL_THREADS)):
                    tally += t
        if xb.slices.offset and (exact is not None or bits is not None) and product:
            y -= xb.slices.offset * row_sums[:, None]
        return y, tally

    def _finish_shard(self, sh, work, row_sums, y: np.ndarray):
        """One shard's ``work`` (acc, tally) turned into its rows of ``y`` on the thread that ran it (the column
        weights, the slices' sum, the offset's correction from ``row_sums``: numpy's operations of the whole batch on
        these rows, so the same numbers); returns its tally."""
        xb = self.xb
        b0, b1 = sh
        acc, t = work(sh)
        if b1 > b0:
            y[b0:b1] = (acc * xb.readout_weight).reshape(b1 - b0, -1, xb.out_features).sum(axis=1)
            if row_sums is not None:
                y[b0:b1] -= xb.slices.offset * row_sums[b0:b1, None]
        return t

    def _table_blocks(self) -> list[bool]:
        """Per row block, whether the fused path's product may come from tables of 4-row sums
        (:mod:`cimsim.kernels_tables`: one-bit digits, a float32 product, levels whose sums are exact), cached per
        set of arrays (``tests/test_crossbar_tables.py``)."""
        xb = self.xb
        if self._tables_key is None or self._tables_key[0] is not xb.a_gemm:
            self._tables_key = (xb.a_gemm,)
            self._tables_ok = table_blocks(xb.a_gemm, xb.spec.dac_bits == 1 and xb.gemm_dtype() == np.float32)
        return self._tables_ok

    def _shares(self, u, shards, ranges, stream: tuple[int, int], stack, var_stack, prod, row_sums, y: np.ndarray,
                n_threads: int) -> list[Tally]:
        """:meth:`_shard_fused`'s numbers where every row block takes the tables (``stack``) or the tiles (``prod``):
        one kernel per thread that takes ``shards`` (every chunk's, in order, contiguous) as they come
        (:mod:`cimsim.kernels_shares`) and writes their rows of ``y``; returns each shard's tally, in order."""
        xb = self.xb
        S, R = len(shards), len(xb.row_blocks)
        edges = np.array([shards[0][0]] + [b1 for _, b1 in shards], dtype=np.int64)
        nz, cl, cond = np.zeros(S, dtype=np.int64), np.zeros(S, dtype=np.int64), np.zeros((S, R))
        shifts, _, pw = xb.input_layout()
        top = float(xb.readout_op.n_codes - 1)
        key = self._rows_key
        if key is None or key[0] is not xb.g_rowsum or key[1] is not xb.readout_weight:
            key = self._rows_key = (xb.g_rowsum, xb.readout_weight, np.asarray(xb.readout_weight, dtype=np.float64),
                                    stack_rows(xb.g_rowsum, max(k1 - k0 for k0, k1 in xb.row_blocks)))
        out = (key[3], key[2], xb.out_features, float(xb.slices.offset),
               _NO_VAR if row_sums is None else row_sums, row_sums is not None, y, nz, cl, cond)
        if prod is not None:
            kernel = kernels_amx.share_tiles
            args = kernels_amx.share_tiles_args(prod, u, xb.row_blocks, shifts, pw, var_stack, ranges, top, stream)
        else:
            kernel = kernels_tables.share_tables
            args = kernels_tables.share_tables_args(u, xb.row_blocks, shifts, pw, stack, var_stack, ranges, top,
                                                    stream, FUSED_ROWS)
        n, counter = max(1, min(n_threads, S)), np.zeros(1, dtype=np.int64)
        fixed_shares(lambda k: kernel(counter, edges, *args, *out), range(n), n)   # each takes shards until none left
        return share_tallies(nz, cl, cond, xb.spec.cell.read_time_s)

    # ------------------------------------------------------------------ digits
    def _digits(self, u, b0: int, b1: int, i: int, with_rowvar: bool):
        """(stacked digits (T*nb, rows of block i), per-row variance or None, nonzero count, digit**2 per row)."""
        xb = self.xb
        k0, k1 = xb.row_blocks[i]
        shifts, widths, _ = xb.input_layout()
        xs = np.empty((len(shifts) * (b1 - b0), k1 - k0), dtype=xb.gemm_dtype())
        sqsum = np.zeros(k1 - k0, dtype=np.int64)
        var = xb.var_gemm[i] if with_rowvar else None
        rowvar, nz = stack_digits(u, b0, b1, k0, k1, shifts, widths, xs,
                                  var if var is not None and var.ndim == 1 else None, sqsum)
        return xs, rowvar, nz, sqsum

    def _shard_fused(self, u, b0: int, b1: int, ranges, stream: tuple[int, int], tables=None):
        """Per row block one stacked operand; per slab of FUSED_ROWS stacked rows one GEMM (or, where ``tables[i]``
        holds the block's :func:`cimsim.kernels_tables.nibble_tables`, their sums), then the numba epilogue
        (read-noise draw, ADC, shift-and-add) while the slab is in cache."""
        xb = self.xb
        nb, cols = b1 - b0, xb.physical_columns
        acc = np.zeros((max(nb, 0), cols))
        tally = Tally()
        if nb <= 0:
            return acc, tally
        shifts, _, pw = xb.input_layout()
        T = len(shifts)
        top = float(xb.readout_op.n_codes - 1)
        R = len(xb.row_blocks)
        slab = min(FUSED_ROWS, T * nb)
        vbuf = np.empty((slab, cols), dtype=xb.gemm_dtype())
        for i in range(len(xb.row_blocks)):
            a, var, (lo, lsb) = xb.a_gemm[i], xb.var_gemm[i], ranges[i]
            k0, k1 = xb.row_blocks[i]
            tab = tables[i] if tables is not None else None
            # the table kernel counts the digits itself where no per-cell variance needs them stacked
            own = tab is not None and (var is None or var.ndim == 1)
            if own:
                xs, nz = None, 0
                rowvar, sqsum = np.zeros(T * nb), np.zeros(k1 - k0, dtype=np.int64)
            else:
                xs, rowvar, nz, sqsum = self._digits(u, b0, b1, i, True)
            if var is None:
                std = None
            elif own:
                std = np.empty((T * nb, 1))                     # filled slab by slab below, as the rows are counted
            elif var.ndim == 1:
                std = np.sqrt(rowvar)[:, None]                   # one std per stacked row
            else:
                std = np.sqrt((xs * xs) @ var)
            for r0 in range(0, T * nb, slab):
                r1 = min(r0 + slab, T * nb)
                if tab is not None:
                    v = vbuf[: r1 - r0]
                    nz += table_rows(u, b0, nb, k0, k1, shifts, tab, r0, r1, v, own,
                                     var if own and var is not None else _NO_VAR, own and var is not None, rowvar,
                                     sqsum)
                    if own and var is not None:
                        std[r0:r1] = np.sqrt(rowvar[r0:r1])[:, None]
                else:
                    v = np.matmul(xs[r0:r1], a, out=vbuf[: r1 - r0])
                tally.clipped += adc_accumulate_rows(acc, v, None if std is None else std[r0:r1], r0, nb, pw,
                                                     lo, lsb, top, (*stream, b0, T, R, i))
            tally.nonzero_digits += nz
            tally.conductance_s += row_conductance(sqsum, xb.g_rowsum[i]) * xb.spec.cell.read_time_s
        return acc, tally
