"""ADC range calibration of a crossbar: the column values a calibration batch produces, and their exact
high percentile.

:meth:`cimsim.Crossbar.calibrate` sets each row block's range to [min(0, -p), p], p the
``calibration_percentile`` of |column value| over all cycles, examples and columns of the block. A
calibration batch gives tens of millions of such values (a ResNet-20 layer: 16 cycles x 16 384 rows x up to
1024 columns): integer levels count them in a histogram (:func:`_integer_histogram`); other levels compute them chunk
by chunk on the engine's threads, in the engine's GEMM dtype (exact on the grid of exact sums, as in the forward
pass), keeping only the magnitudes the percentile can be among (:func:`_streamed_range`). On the torch backend's GPU
(``crossbar.CALIBRATE_DEVICES``) the products and the selection run there instead (:func:`device_block_range`).
Conversions that sum several cycles (CASCADE, Neural-PIM) sum each group's digits first and multiply once in float64
where every value is an exact integer (:func:`grouped_products`): the same ranges.
"""

from __future__ import annotations

import contextlib
import math
import threading

import numpy as np

from cimsim.encoding import input_parts
from cimsim.engine_threads import blas_controller, parallel_map, threads
from cimsim.kernels import stack_digits
from cimsim.kernels_bits import (group_tables, pattern_counts, pattern_histogram, table_bounds,
                                 value_histogram)
from cimsim.kernels_host import group_digits, keep_magnitudes
from cimsim.readouts import PER_CYCLE, ConversionScope

# stacked (cycle, example) rows per calibration GEMM: bounds the digit buffer (our choice)
CALIBRATION_ROWS = 32768
# integer levels: count the column values' magnitudes in a histogram from the bit-serial tables (exact, the same
# percentile) instead of multiplying and selecting; False: always the GEMM and the selection (the tests compare both)
HISTOGRAMS = True
# the longest such histogram (our bound: 2**24 int64 counts are 128 MB; ISAAC's 128 rows of 2-bit cells and 1-bit
# digits need 385 bins)
HISTOGRAM_BINS = 1 << 24
# blocks of at most this many rows with one-bit digits count each cycle's pattern of digits (2**rows of them)
# instead of its column values (a depthwise 3 x 3 crossbar: 9 rows; our choice: 4,096 patterns a sign at most)
PATTERN_ROWS = 12
# column values per device product in device_block_range (2**26 float64 values: 0.5 GB, and as much for the digits
# at most; our choice for a GPU's memory)
DEVICE_VALUES = 1 << 26
# the histogram's threshold is guessed from one in PILOT_STEP examples (drawn with PILOT_SEED) of batches of at
# least PILOT_MIN_EXAMPLES, at the value with PILOT_MARGIN times the expected count of sampled values above the
# percentile (our choices: a sixteenth of the work; a guess the whole batch does not bear out costs a second pass)
PILOT_STEP = 16
PILOT_SEED = 0
PILOT_MIN_EXAMPLES = 512
PILOT_MARGIN = 1.5


def percentile_rank(n: int, q: float) -> tuple[float, int]:
    """numpy's default ("linear") percentile of n values: (its virtual index h, the lower order statistic's index)."""
    h = (n - 1) * (q / 100.0)
    return h, int(math.floor(h))


def lerp_order_statistics(x0: float, x1: float, h: float, lo: int) -> float:
    """numpy's ``_lerp`` between the order statistics lo and lo + 1 at the virtual index h, bit for bit."""
    t = h - lo
    return x0 + t * (x1 - x0) if t < 0.5 else x1 - (x1 - x0) * (1.0 - t)


def tensor_percentile(v, q: float) -> float:
    """``np.percentile(v, q)`` of a torch tensor's values, bit for bit, where they are: on the CPU
    :func:`percentile_in_place` (reordering ``v``: give a copy), elsewhere (a GPU) the ``n - lo`` largest by top-k
    there, of which only the two order statistics travel."""
    import torch

    v = v.reshape(-1)
    if v.device.type == "cpu":   # types numpy lacks (bfloat16) widened first: exact
        numpy_type = v.dtype in (torch.float16, torch.float32, torch.float64)
        return percentile_in_place((v if numpy_type else v.double()).numpy(), q)
    n = int(v.numel())
    h, lo = percentile_rank(n, q)
    need = n - lo
    top = torch.topk(v, need, sorted=False).values if n > need else v
    smallest = torch.topk(top, min(2, need), largest=False).values.tolist()   # ascending: statistics lo, lo + 1
    return lerp_order_statistics(smallest[0], smallest[-1], h, lo)


def percentile_in_place(a: np.ndarray, q: float) -> float:
    """The q-th percentile of the 1-d array ``a`` by numpy's default ("linear") rule, exactly, reordering
    ``a`` in place.

    For a high percentile of a large array only the top of ``a`` is sorted: a threshold read from an
    evenly strided sample of ``a``, with a margin, is checked to leave at least the needed order statistics
    above it, and those are found among the values above it; where the check fails, the whole array is
    partitioned."""
    n = a.size
    h, lo = percentile_rank(n, q)
    hi = min(lo + 1, n - 1)
    top, base = a, 0
    if n >= 1 << 20 and n - lo <= n // 16:
        step = n >> 16                                    # a sample of about 65536 values
        sample = np.sort(a[::step])
        guess = max(0, int(sample.size * lo / n) - 64 - int(4 * math.sqrt(sample.size * (n - lo) / n)))
        tau = sample[guess]
        above = a >= tau
        count = int(np.count_nonzero(above))
        if count >= n - lo:                               # every order statistic from lo up is >= tau
            top, base = a[above], n - count
    k0, k1 = lo - base, hi - base
    top.partition([k0, k1] if k1 > k0 else [k0])
    return lerp_order_statistics(float(top[k0]), float(top[k1]), h, lo)


def column_value_ranges(u: np.ndarray, row_blocks, matrices, shifts, widths, places, percentile: float,
                        dtype, scope: ConversionScope = PER_CYCLE, device=None) -> list[tuple[float, float]]:
    """(lo, hi) per conversion domain: [min(0, -p), max(p, lo + 1)] with p the ``percentile`` of the |values|
    converted in that domain over every conversion, example and column (``u``: the digit source,
    :func:`cimsim.encoding.digit_source`; ``shifts``/``widths``/``places``: the cycles' digit layout and place
    values, :func:`cimsim.encoding.plane_layout` and :func:`cimsim.encoding.plane_weights`). Per cycle (the
    default scope) a domain is a row block and a value is ``digits @ matrix`` (unsigned digits); other scopes sum
    those over the cycles of a conversion (with their place values relative to the first cycle's) and/or over the
    row blocks of the domain.

    ``device`` (a torch device, e.g. the torch backend's CUDA GPU): per cycle, every block is multiplied and
    selected there (:func:`device_block_range`) instead of by the host's integer histogram or GEMM: the same
    ranges where the sums are exact (integer levels, the grid of exact sums)."""
    if not scope.per_cycle:
        return _scoped_ranges(u, row_blocks, matrices, shifts, widths, places, percentile, scope)
    T, B = len(shifts), u.shape[0]
    chunk = max(1, CALIBRATION_ROWS // T)
    out, scratch = [], None
    for (k0, k1), a in zip(row_blocks, matrices):
        m = a.shape[1]
        if B * m == 0:
            out.append((0.0, 1.0))
            continue
        counted = (_integer_histogram(u, k0, k1, a, shifts, widths, percentile)
                   if HISTOGRAMS and device is None else None)
        if counted is not None:
            hist, negative = counted
            p = percentile_of_histogram(hist, percentile)
            lo = -p if negative else 0.0
            out.append((lo, max(p, lo + 1.0)))
            continue
        if device is not None:
            out.append(device_block_range(u, k0, k1, a, shifts, widths, percentile, dtype, device))
            continue
        if scratch is None:   # buffers for every block the selection takes (fresh memory is slow to touch)
            lanes, lane_chunk = _lanes(B, chunk)
            scratch = _selection_buffers(T * min(lane_chunk, B), max(k1_ - k0_ for k0_, k1_ in row_blocks),
                                         max(mat.shape[1] for mat in matrices), dtype, lanes)
        out.append(_streamed_range(u, k0, k1, a, shifts, widths, percentile, dtype, chunk, scratch))
    return out


_KEPT = threading.local()   # kept_buffers(): this thread's selection buffers, by dtype


@contextlib.contextmanager
def kept_buffers():
    """Within the block, :func:`_streamed_range` keeps its buffers from one calibration to the next (the mapper
    calibrates every crossbar of a network in turn; fresh memory of tens of MB costs its first touch each time, 0.4 s
    for the 83 MB of a 128 x 512 block on this project's VMs); they are freed when the block ends."""
    outer = getattr(_KEPT, "buffers", None)
    _KEPT.buffers = {} if outer is None else outer
    try:
        yield
    finally:
        _KEPT.buffers = outer


def _lanes(examples: int, chunk: int) -> tuple[int, int]:
    """(threads, examples each) of a round of :func:`_streamed_range`: the engine's threads share a chunk's examples."""
    lanes = min(threads(), -(-examples // chunk))
    return lanes, -(-chunk // lanes)


def _selection_buffers(rows: int, k: int, m: int, dtype, lanes: int) -> list:
    """Flat (digits, values) buffers of ``rows`` stacked rows, ``k`` inputs and ``m`` columns, one pair for each of
    ``lanes`` threads (within :func:`kept_buffers` the ones kept, grown where they are too small)."""
    dtype = np.dtype(dtype)
    kept = getattr(_KEPT, "buffers", None)
    if kept is None:
        return [(np.empty(rows * k, dtype=dtype), np.empty(rows * m, dtype=dtype)) for _ in range(lanes)]
    have = kept.get(dtype, [])
    while len(have) < lanes:
        have.append((np.empty(0, dtype=dtype), np.empty(0, dtype=dtype)))
    have = [(d if d.size >= rows * k else np.empty(rows * k, dtype=dtype),
             v if v.size >= rows * m else np.empty(rows * m, dtype=dtype)) for d, v in have]
    kept[dtype] = have
    return have[:lanes]


def _streamed_range(u, k0: int, k1: int, a: np.ndarray, shifts, widths, percentile: float, dtype,
                    chunk: int, scratch=None) -> tuple[float, float]:
    """:func:`column_value_ranges`' selection for one row block: each chunk of examples' digits (all cycles stacked)
    times the block's levels in the GEMM's type, of whose magnitudes only the largest ``n - lo`` are kept (the
    percentile's two order statistics and those above; a chunk's values below the smallest kept one cannot be among
    them): numpy's percentile of all n values without holding them (a 1 x 1 convolution of 384 outputs would hold
    3.2 GB of float32 values). Chunks go to the engine's threads a round at a time (BLAS on one thread each; each
    selects in its own buffers, :func:`_selection_buffers`, where the values are computed), the kept magnitudes are
    merged after each round: the same order statistics on any number of threads."""
    T, B, m, kb = len(shifts), u.shape[0], a.shape[1], k1 - k0
    n = T * B * m
    h, lo = percentile_rank(n, percentile)
    need = n - lo                      # the order statistics lo and lo + 1 are the smallest of the `need` largest
    lanes, chunk = _lanes(B, chunk)
    starts = list(range(0, B, chunk))
    scratch = scratch or _selection_buffers(T * min(chunk, B), kb, m, dtype, lanes)
    top, tau, negative = None, None, False   # top: the `need` largest magnitudes so far (all while fewer)

    def largest(job):   # a chunk's magnitudes at or above tau (all while it is None): at most its `need` largest
        b0, (digit_buffer, value_buffer) = job
        rows = T * (min(B, b0 + chunk) - b0)
        digits = digit_buffer[:rows * kb].reshape(rows, kb)
        stack_digits(u, b0, b0 + rows // T, k0, k1, shifts, widths, digits, None, np.zeros(kb, np.int64))
        v = np.matmul(digits, a, out=value_buffer[:rows * m].reshape(rows, m)).reshape(-1)
        kept, neg = keep_magnitudes(v, -1.0 if tau is None else tau)
        if kept > need:                # in place, in this thread's buffer
            v[:kept].partition(kept - need)
            return v[kept - need:kept].copy(), neg
        return v[:kept].copy(), neg

    lanes = min(lanes, len(scratch))
    # the threads share the cores, not BLAS
    with blas_controller().limit(limits=1, user_api="blas") if lanes > 1 else contextlib.nullcontext():
        for r0 in range(0, len(starts), lanes):
            parts = parallel_map(largest, zip(starts[r0:r0 + lanes], scratch))
            negative = negative or any(neg for _, neg in parts)
            v = np.concatenate(([] if top is None else [top]) + [p for p, _ in parts])
            if v.size > need:
                v.partition(v.size - need)
                v = v[v.size - need:]
                tau = v[0]             # the smallest of them
            top = v
    smallest = np.partition(top, min(1, top.size - 1))[:2]   # ascending: order statistics lo, lo + 1
    p = lerp_order_statistics(float(smallest[0]), float(smallest[min(1, need - 1)]), h, lo)
    low = -p if negative else 0.0
    return low, max(p, low + 1.0)


def device_block_range(u: np.ndarray, k0: int, k1: int, a: np.ndarray, shifts, widths, percentile: float, dtype,
                       device) -> tuple[float, float]:
    """The range :func:`column_value_ranges` gives row block k0..k1 with levels ``a``, computed on the torch
    ``device``: each chunk of examples' inputs (``u``, the digit source, int64 on the host; only the block's columns
    travel, so a layer's inputs cross once over all its blocks) cut into digits there, multiplied in float64 and
    rounded to the values' ``dtype``; of their magnitudes only the largest ``n - lo`` (the percentile's order
    statistics and those above; n values, lo the lower order statistic's index) are kept from chunk to chunk.

    Where every sum of the block is exact in ``dtype`` (integer levels, or levels on the grid of exact sums,
    :func:`cimsim.crossbar.exact_grid`) the values are the host GEMM's, and so is the range, bit for bit; elsewhere a
    value may differ from the host's float32 sum in its last bit (sums in another order)."""
    import torch

    T, B, m = len(shifts), int(u.shape[0]), a.shape[1]
    n = T * B * m
    if n == 0:
        return 0.0, 1.0
    h, lo = percentile_rank(n, percentile)
    need = n - lo                      # the order statistics lo and lo + 1 are the smallest of the `need` largest
    at = torch.as_tensor(np.asarray(a, dtype=np.float64), device=device)
    vdt = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
    top, vmin = None, None
    chunk = max(1, DEVICE_VALUES // (T * max(m, k1 - k0)))
    for b0 in range(0, B, chunk):
        xb = torch.from_numpy(np.ascontiguousarray(u[b0:b0 + chunk, k0:k1], dtype=np.int64)).to(device)
        d = torch.empty((T, xb.shape[0], k1 - k0), dtype=torch.float64, device=device)
        for t, (sh, w) in enumerate(zip(shifts, widths)):
            d[t] = (xb >> int(sh)) & ((1 << int(w)) - 1)
        v = (d.reshape(-1, k1 - k0) @ at).to(vdt).reshape(-1)
        low = v.min()
        vmin = low if vmin is None else torch.minimum(vmin, low)
        v = v.abs_()
        if top is not None:
            v = torch.cat([top, v])
        top = torch.topk(v, need, sorted=False).values if v.numel() > need else v
    smallest = torch.topk(top, min(2, need), largest=False).values.tolist()   # ascending: order statistics lo, lo + 1
    p = lerp_order_statistics(smallest[0], smallest[-1], h, lo)               # (lo = n - 1: both the largest)
    low = -p if float(vmin) < 0 else 0.0
    return low, max(p, low + 1.0)


def percentile_of_histogram(hist: np.ndarray, q: float) -> float:
    """The q-th percentile, by numpy's default ("linear") rule and as :func:`percentile_in_place` computes it, of
    the integers whose counts ``hist`` holds (``hist[v]`` values equal to v): the same two order statistics, found
    in the cumulative counts, and the same interpolation."""
    cum = np.cumsum(hist)
    n = int(cum[-1])
    h = (n - 1) * (q / 100.0)
    lo = int(math.floor(h))
    hi = min(lo + 1, n - 1)
    x0, x1 = (float(np.searchsorted(cum, k, side="right")) for k in (lo, hi))   # the k-th smallest (from 0)
    t = h - lo
    return x0 + t * (x1 - x0) if t < 0.5 else x1 - (x1 - x0) * (1.0 - t)   # numpy's _lerp


def _integer_histogram(u, k0: int, k1: int, a: np.ndarray, shifts, widths, percentile=None):
    """(histogram of |column value| over every cycle, example and column of rows k0..k1, whether a value was
    negative) by the bit-serial tables (:func:`cimsim.kernels_bits.value_histogram`), examples spread over the
    engine's threads; None where the levels are not integers (then the values are products in the GEMM's float
    type) or the histogram would be too long.

    With a ``percentile``, only the values from a threshold on are counted one by one and the others are counted in
    bin 0: the histogram then gives that percentile exactly (:func:`percentile_of_histogram`), not the others. The
    threshold starts from a guess read off a sample of the examples (one in PILOT_STEP) and rises as the counts
    allow (:func:`cimsim.kernels_bits.value_histogram`); a guess that the counts do not bear out (fewer values at or
    above it than the percentile's upper order statistics) is dropped and the examples are counted again from 0."""
    grouped = group_tables([a])
    if grouped is None:
        return None
    tables, g, plane_dtype = grouped
    dmax = 1 << int(np.max(widths))   # bound on |digit|
    bins = int(np.abs(np.rint(a)).sum(axis=0).max(initial=0)) * dmax + 1
    if bins > HISTOGRAM_BINS:
        return None
    B = u.shape[0]
    if k1 - k0 <= PATTERN_ROWS and all(int(w) == 1 for w in widths):
        return _pattern_histogram(u, k0, k1, np.rint(a).astype(np.int64), shifts, bins)
    n_values = B * len(shifts) * a.shape[1]
    need = 0   # the percentile's order statistics are among the `need` largest values
    if percentile is not None and n_values:
        need = n_values - int(math.floor((n_values - 1) * (percentile / 100.0)))   # as percentile_of_histogram

    bounds = table_bounds(tables[0])

    def count(tau: int):
        n = max(1, min(4 * threads(), B // 64))   # shards of at least 64 examples; any split gives the same counts
        edges = np.linspace(0, B, n + 1).astype(int)
        return parallel_map(lambda e: value_histogram(u, e[0], e[1], k0, k1, tables[0], g, plane_dtype, shifts,
                                                      widths, bins, tau, need, bounds=bounds),
                            zip(edges[:-1], edges[1:]))

    guess = 0
    if need and B >= PILOT_MIN_EXAMPLES:
        # a uniform sample (examples in a row are often the positions of one image: a stride could alias them)
        sample = np.sort(np.random.default_rng(PILOT_SEED).choice(B, B // PILOT_STEP, replace=False))
        expected = need * sample.size / B   # values at or above the percentile expected in the sample
        need_sample = int(PILOT_MARGIN * expected + 4.0 * math.sqrt(expected) + 16)
        parts = np.array_split(sample, max(1, min(threads(), sample.size // 64)))   # the sample over the threads
        guess = min(parallel_map(lambda p: value_histogram(u, 0, B, k0, k1, tables[0], g, plane_dtype, shifts, widths,
                                                           bins, 0, -(-need_sample // len(parts)),
                                                           examples=p, bounds=bounds)[2], parts))
    parts = count(guess)
    hist = sum(h for h, _, _ in parts)
    tau = max(t for _, _, t in parts)   # each shard's raised threshold is a bound the whole batch bears out
    if tau == guess and guess > 0 and int(hist[guess:].sum()) < need:   # the guess was too high
        parts = count(0)
        hist = sum(h for h, _, _ in parts)
        tau = max(t for _, _, t in parts)
    if need:
        hist[:tau] = 0
        hist[0] += n_values - int(hist.sum())   # the values below the threshold, in bin 0
    return hist, any(neg for _, neg, _ in parts)


def _pattern_histogram(u, k0: int, k1: int, a: np.ndarray, shifts, bins: int):
    """:func:`_integer_histogram`'s (histogram, whether a value was negative) for a block of few rows and one-bit
    digits, every value counted: the cycles' patterns of digits counted over the examples (spread over the engine's
    threads), then each pattern's column values (the sums of the rows' levels ``a`` over its set bits) that often."""
    shifts = np.asarray(shifts, dtype=np.int64)
    B, R = u.shape[0], k1 - k0
    edges = np.linspace(0, B, max(1, min(threads(), B // 4096)) + 1).astype(int)
    counts = sum(parallel_map(lambda e: pattern_counts(u, e[0], e[1], k0, k1, shifts),
                              zip(edges[:-1], edges[1:])))
    values = np.zeros((1 << R, a.shape[1]), dtype=np.int64)
    for r in range(R):   # by doubling: the patterns with bit r set are those below 2**r plus row r's levels
        values[1 << r:2 << r] = values[:1 << r] + a[r]
    hist = np.zeros(bins, dtype=np.int64)
    negative = pattern_histogram(counts, values, hist)
    return hist, bool(negative)


def _range_of(absv: np.ndarray, vmin: float, percentile: float) -> tuple[float, float]:
    p = percentile_in_place(absv, percentile)
    lo = -p if vmin < 0 else 0.0
    return lo, max(p, lo + 1.0)


def group_fields(shifts, widths, places, groups) -> np.ndarray | None:
    """Per group of cycles (first, end), whether its digits summed with their place values relative to its first
    cycle's are the group's bit field of the digit source (0), that field sign-extended (1: a two's-complement sign
    cycle last, after others), or neither (None: a group spanning a split input's two parts)."""
    out = []
    for t0, t1 in groups:
        r = np.asarray(places[t0:t1], dtype=np.float64) / float(places[t0])
        rel = 2.0 ** (np.asarray(shifts[t0:t1], dtype=np.float64) - float(shifts[t0]))
        if np.array_equal(r, rel):
            out.append(0)
        elif t1 - t0 > 1 and int(widths[t1 - 1]) == 1 and np.array_equal(r[:-1], rel[:-1]) and r[-1] == -rel[-1]:
            out.append(1)
        else:
            return None
    return np.array(out, dtype=np.int64)


def grouped_products(blocks, row_blocks, matrices, shifts, widths, places, groups):
    """``(first cycles, end cycles, {block: matrix}, sign-extended)`` where the values of the conversions of
    ``blocks`` may be computed as one product per group of cycles (float64, or float32 where that block's sums stay
    below 2**24) of the group's summed digits (:func:`cimsim.kernels_host.group_digits`; which groups' fields are
    sign-extended: :func:`group_fields`) with each block's matrix, giving the numbers of the product per cycle
    in the matrix's type summed with place values: integer levels whose every per-cycle sum that type holds exactly
    and whose every grouped sum, over the domain's blocks too, float64 holds exactly (then both are the exact integers,
    in any order). Else None."""
    sext = group_fields(shifts, widths, places, groups)
    if sext is None:
        return None
    dmax = max((1 << int(w)) - 1 for w in widths) if len(widths) else 0
    ymax = max((sum(2 ** (int(shifts[t]) - int(shifts[t0])) for t in range(t0, t1)) for t0, t1 in groups), default=0)
    total, wide = 0.0, {}
    for i in blocks:
        a = matrices[i]
        exact = 2.0 ** 24 if a.dtype == np.float32 else 2.0 ** 53 if a.dtype == np.float64 else 0.0
        a64 = a.astype(np.float64)
        col = float(np.abs(a64).sum(axis=0).max(initial=0.0))
        if not np.array_equal(a64, np.round(a64)) or dmax * col >= exact:
            return None
        total += ymax * dmax * col
        # float32 where its product's every partial sum is an integer below 2**24 (the same integers, twice the rate)
        wide[i] = a64.astype(np.float32) if ymax * dmax * col < 2.0 ** 24 else a64
    if total >= 2.0 ** 53:
        return None
    return (np.array([t0 for t0, _ in groups], dtype=np.int64), np.array([t1 for _, t1 in groups], dtype=np.int64),
            wide, sext)


def _scoped_ranges(u, row_blocks, matrices, shifts, widths, places, percentile, scope) -> list[tuple[float, float]]:
    """The ranges of analog sums (see :func:`column_value_ranges`), in float64 (sums may exceed float32's
    exact integers)."""
    T, B = len(shifts), u.shape[0]
    pw = np.asarray(places, dtype=np.float64)
    groups = scope.cycle_groups(T, input_parts(pw))
    chunk = max(1, CALIBRATION_ROWS // T)
    m = matrices[0].shape[1] if matrices else 0
    out = []
    for blocks in scope.block_groups(len(row_blocks)):
        if B * m == 0:
            out.append((0.0, 1.0))
            continue
        absv = np.empty(len(groups) * B * m)
        vmin, pos = 0.0, 0
        grouped = grouped_products(blocks, row_blocks, matrices, shifts, widths, pw, groups)
        for b0 in range(0, B, chunk):
            nb = min(B, b0 + chunk) - b0
            V = np.zeros((len(groups), nb, m))
            for i in blocks:
                k0, k1 = row_blocks[i]
                if grouped is not None:   # each group's digits summed first: one product, exact
                    Y = np.empty((len(groups), nb, k1 - k0), dtype=grouped[2][i].dtype)
                    group_digits(u, b0, nb, k0, k1, shifts, widths, grouped[3], grouped[0], grouped[1], Y)
                    V += (Y.reshape(-1, k1 - k0) @ grouped[2][i]).reshape(V.shape)
                    continue
                digits = np.empty((T * nb, k1 - k0), dtype=matrices[i].dtype)
                stack_digits(u, b0, b0 + nb, k0, k1, shifts, widths, digits, None,
                             np.zeros(k1 - k0, dtype=np.int64))
                v = (digits @ matrices[i]).reshape(T, nb, m)
                for g, (t0, t1) in enumerate(groups):
                    for t in range(t0, t1):
                        V[g] += pw[t] / pw[t0] * v[t]
            vmin = min(vmin, float(V.min()))
            absv[pos:pos + V.size] = np.abs(V).reshape(-1)
            pos += V.size
        out.append(_range_of(absv, vmin, percentile))
    return out
