"""The CPU fused path's product from tables (:meth:`cimsim.crossbar_cpu.CpuTile._shard_fused`).

The fused path multiplies each cycle's one-bit digits by a row block's levels in float32. Where the levels sit on a
grid whose every partial sum float32 holds exactly (noisy levels on :func:`cimsim.crossbar.exact_grid`'s grid;
integer levels), any order of summation gives the same column values, so tables of sums of 4 rows (16 entries per
group and column) give BLAS's numbers bit for bit with a quarter of the additions and no multiplications: one table
row per nibble of digits, four groups summed per pass over a column chunk. Groups of 4 (our choice): 16 x columns x
4 B per group (1 MB for 128 rows x 512 columns) stays in L2, where groups of 8 would take 8 MB. Measured on this
project's machine (one thread, 256 stacked rows a slab, 128 rows x 512 columns): 3.6 ms against 6.5 ms for float32
BLAS (BENCHMARKS.md, "The fused path's product from tables of 4-row sums").
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from cimsim import numba_target
from cimsim.fileio import numba_cache_fallback
from cimsim.kernels import adc_rows, make_draw_buffers
from cimsim.kernels_shares import finish_shard, most_examples, next_shard

numba_cache_fallback()   # before numba loads (see cimsim.kernels)
numba_target.configure()   # 512-bit vectors where the CPU has AVX-512 (cimsim.numba_target)
from numba import njit  # noqa: E402

# at most this many bytes of tables per call (beyond, the remaining blocks take BLAS); our choice, as
# cimsim.kernels_bits.TABLE_BYTES_MAX
TABLE_BYTES_MAX = 64 << 20
TABLE_CHUNK = 512   # columns summed per pass: 32 table rows x 2 KB of a chunk in L1/L2; our choice
# the tables pay from this many columns on: 256 stacked rows x 128 rows of a block, one thread, this project's
# machine: 512 columns 3.6 ms against BLAS's 6.5, 2,048 columns 16.2 against 23.8, 128 columns 1.44 against 1.47
TABLE_COLS_MIN = 256


def grid_exact(a: np.ndarray, rows: int) -> bool:
    """Whether every sum of at most ``rows`` of ``a``'s (float32) values, each times 0 or 1, is exact in float32: the
    values sit on a grid 2**-m with ``rows x max|a| x 2**m < 2**24``."""
    a64 = np.asarray(a, dtype=np.float64)
    vmax = float(np.abs(a64).max(initial=0.0))
    if vmax == 0.0:
        return True
    for m in range(0, 25):
        if rows * vmax * 2.0 ** m >= 2.0 ** 24:
            return False
        s = np.ldexp(a64, m)
        if np.array_equal(s, np.rint(s)):
            return True
    return False


@njit(nogil=True, cache=True)
def nibble_tables(a):
    """Tables of a row block's float32 levels ``a`` (rows, cols): ``T[g, m, j] = sum_{q < 4} bit_q(m) a[4 g + q, j]``
    for groups g of 4 rows, padded with zero groups to a multiple of 4 groups (rows beyond ``a``'s are zeros); by
    doubling, ``T[g, m + 2**q] = T[g, m] + a[4 g + q]`` for m < 2**q."""
    rows, cols = a.shape
    groups = -(-rows // 4)
    groups = -(-groups // 4) * 4
    t = np.zeros((groups, 16, cols), dtype=np.float32)
    for g in range(groups):
        for q in range(4):
            k = 4 * g + q
            if k >= rows:
                for m in range(1 << q):
                    t[g, m + (1 << q)] = t[g, m]
                continue
            src = a[k]
            for m in range(1 << q):
                dst = t[g, m + (1 << q)]
                prev = t[g, m]
                for j in range(cols):
                    dst[j] = prev[j] + src[j]
    return t


@njit(nogil=True, cache=True)
def table_rows(u, b0, nb, k0, k1, shifts, tables, r0, r1, out, stats, var, noisy, rowvar, sqsum):
    """Stacked rows ``r0 .. r1 - 1`` (row r: cycle ``r // nb``, example ``b0 + r % nb``) of the product of the
    one-bit digits ``(u[b, k0:k1] >> shifts[t]) & 1`` with a row block's levels, into ``out[: r1 - r0]``, from
    :func:`nibble_tables` ``tables`` (the digits unsigned: a signed input's sign cycle is its bit, its place value
    negative in the shift-and-add). Exact where :func:`grid_exact` holds: then equal to the float32 GEMM bit for bit.
    With ``stats``, also what :func:`cimsim.kernels.stack_digits` gives for these rows, without the stacked digits:
    ``rowvar[r]`` = the sum over k in order of digit**2 x ``var[k]`` (with ``noisy``; the float64 sum of the 1
    digits' variances in row order, the 0 digits adding +0.0, or the count times the one variance where every row has
    the same one and that product equals the sum for every count: the same numbers either way), digit**2 added to
    ``sqsum[k]``, and the count of non-zero digits returned. The bits are packed into table indices without branches
    and the counts taken from the indices (a branch per digit cost a third of this kernel's time on random digits:
    BENCHMARKS.md, "Table indices without branches")."""
    groups, _, cols = tables.shape
    n = r1 - r0
    rows = k1 - k0
    full = rows // 4                 # groups of four rows; then a ragged one; padded groups stay index 0
    idx = np.zeros((n, groups), dtype=np.int64)
    nonzero = 0
    # one read-noise variance in every row, on a grid where adding it c times in turn gives c times it for every c
    # (checked here): then a row's sum over its 1 digits is its count times that variance, the same number
    uni = noisy and rows > 0
    v0 = var[0] if uni else 0.0
    if uni:
        acc_v = 0.0
        for k in range(rows):
            acc_v += v0
            if var[k] != v0 or acc_v != (k + 1) * v0:
                uni = False
                break
    for i in range(n):
        r = r0 + i
        t = r // nb
        b = b0 + r - t * nb
        sh = shifts[t]
        for g in range(full):        # branch-free: the bits of four rows packed into a table index
            k = k0 + 4 * g
            idx[i, g] = (((u[b, k] >> sh) & 1) | (((u[b, k + 1] >> sh) & 1) << 1)
                         | (((u[b, k + 2] >> sh) & 1) << 2) | (((u[b, k + 3] >> sh) & 1) << 3))
        if full * 4 < rows:
            m = 0
            for q in range(rows - full * 4):
                m |= ((u[b, k0 + 4 * full + q] >> sh) & 1) << q
            idx[i, full] = m
        if stats:                    # digits 0/1: a digit's square is itself
            cnt = 0
            for k in range(rows):
                bit = (idx[i, k >> 2] >> (k & 3)) & 1
                cnt += bit
                sqsum[k] += bit
            nonzero += cnt
            rv = 0.0
            if uni:
                rv = cnt * v0
            elif noisy:              # in row order; a 0 digit adds +0.0, which leaves every partial sum as it was
                for k in range(rows):
                    rv += var[k] * ((idx[i, k >> 2] >> (k & 3)) & 1)
            rowvar[r] = rv
    for c0 in range(0, cols, TABLE_CHUNK):   # zero-based views of a chunk: loops numba vectorizes
        w = min(TABLE_CHUNK, cols - c0)
        for i in range(n):
            row = out[i, c0:c0 + w]
            ta = tables[0, idx[i, 0], c0:c0 + w]
            tb = tables[1, idx[i, 1], c0:c0 + w]
            tc = tables[2, idx[i, 2], c0:c0 + w]
            td = tables[3, idx[i, 3], c0:c0 + w]
            for j in range(w):
                row[j] = (ta[j] + tb[j]) + (tc[j] + td[j])
            for g in range(4, groups, 4):
                ta = tables[g, idx[i, g], c0:c0 + w]
                tb = tables[g + 1, idx[i, g + 1], c0:c0 + w]
                tc = tables[g + 2, idx[i, g + 2], c0:c0 + w]
                td = tables[g + 3, idx[i, g + 3], c0:c0 + w]
                for j in range(w):
                    row[j] += (ta[j] + tb[j]) + (tc[j] + td[j])
    return nonzero


def table_blocks(a_blocks: list[np.ndarray], one_bit_float32: bool) -> list[bool]:
    """Per row block, whether its product may come from the tables: one-bit digits and a float32 product
    (``one_bit_float32``), at least :data:`TABLE_COLS_MIN` columns, and :func:`grid_exact` levels."""
    return [bool(one_bit_float32 and a.dtype == np.float32 and a.shape[1] >= TABLE_COLS_MIN
                 and grid_exact(a, a.shape[0])) for a in a_blocks]


def call_tables(a_blocks: list[np.ndarray], ok: list[bool]) -> list | None:
    """The :func:`nibble_tables` of the blocks ``ok`` allows (None elsewhere), up to :data:`TABLE_BYTES_MAX` in all:
    built once per call for every shard's thread (0.14 ms a block of 128 rows x 512 columns) and dropped after it,
    so no crossbar keeps them. None where no block takes them."""
    if not any(ok):
        return None
    out, total = [], 0
    for a, use in zip(a_blocks, ok):
        groups = -(-a.shape[0] // 4)
        size = -(-groups // 4) * 4 * 16 * a.shape[1] * 4        # float32 entries, groups padded to fours
        if use and total + size <= TABLE_BYTES_MAX:
            out.append(nibble_tables(a))
            total += size
        else:
            out.append(None)
    return out


def call_table_stack(a_blocks: list[np.ndarray], ok: list[bool]) -> np.ndarray | None:
    """Every block's :func:`nibble_tables` in one array (blocks, groups, 16, columns), the shorter blocks' tables
    padded with zero groups, where every block takes tables and they fit :data:`TABLE_BYTES_MAX`; else None. A
    zero group adds +0.0 to sums that are never -0.0 (every entry is a sum from +0.0), so the padded blocks' sums
    are the same numbers. Built for the call (:func:`kept_table_stack` keeps it between calls)."""
    if not a_blocks or not all(ok) or len({a.shape[1] for a in a_blocks}) != 1:
        return None
    groups = max(-(-(-(-a.shape[0] // 4)) // 4) * 4 for a in a_blocks)
    cols = a_blocks[0].shape[1]
    if len(a_blocks) * groups * 16 * cols * 4 > TABLE_BYTES_MAX:
        return None
    stack = np.zeros((len(a_blocks), groups, 16, cols), dtype=np.float32)
    for i, a in enumerate(a_blocks):
        t = nibble_tables(a)
        stack[i, : t.shape[0]] = t
    return stack


# the table stacks of the crossbars called last, kept up to this many bytes in all: a crossbar's tables depend only on
# its programmed levels, and building them was serial work in every call (on the device host's 16 cores the standard
# case took 32 ms a call with them built per call and 24.6 ms kept; BENCHMARKS.md, "Tables kept between calls");
# beyond it the least recently used are dropped (and built again when called). Our choice: the standard case's
# 9.4 MB and a whole LeNet-5 fit many times over, a network's largest layers fit one by one, and 128 MB stays well
# inside issue 19's 2 GB CPU budget
TABLE_CACHE_BYTES = 128 << 20
_STACKS: OrderedDict = OrderedDict()
_STACKS_LOCK = threading.Lock()


def kept_table_stack(a_blocks: list[np.ndarray], ok: list[bool]) -> np.ndarray | None:
    """:func:`call_table_stack` of the level matrices ``a_blocks`` (a crossbar's ``a_gemm``, a list replaced, never
    changed in place, when the crossbar is programmed again), kept between calls within :data:`TABLE_CACHE_BYTES`:
    the same array for the same list object and flags. The cache holds the list itself, so its id is not reused
    while the entry lives."""
    key, flags = id(a_blocks), tuple(bool(f) for f in ok)
    with _STACKS_LOCK:
        hit = _STACKS.get(key)
        if hit is not None and hit[0] is a_blocks and hit[1] == flags:
            _STACKS.move_to_end(key)
            return hit[2]
    stack = call_table_stack(a_blocks, ok)
    if stack is not None and stack.nbytes <= TABLE_CACHE_BYTES:
        stack.setflags(write=False)                 # shared between calls: nobody writes into it
        with _STACKS_LOCK:
            _STACKS[key] = (a_blocks, flags, stack)
            total = sum(v[2].nbytes for v in _STACKS.values())
            while total > TABLE_CACHE_BYTES:
                _, old = _STACKS.popitem(last=False)
                total -= old[2].nbytes
    return stack


def kept_table_bytes() -> int:
    """Bytes of table stacks kept now (:func:`kept_table_stack`)."""
    with _STACKS_LOCK:
        return sum(v[2].nbytes for v in _STACKS.values())


@njit(nogil=True, cache=True)
def _shard_tables(u, b0, nb, k0s, k1s, shifts, stack, var, noisy, pw, lo, lsb, top, key, gamma, acc,
                  vbuf, std, rowvar, sqsum, r, ph, q):
    """One shard (examples b0 .. b0 + nb) of :func:`share_tables` into ``acc`` (zeros on entry) and ``sqsum`` (the
    digits' squares per block and row, zeros on entry): returns (non-zero digits, clipped conversions)."""
    T, R = shifts.shape[0], stack.shape[0]
    slab = vbuf.shape[0]
    nonzero, clipped = 0, 0
    for i in range(R):
        for r0 in range(0, T * nb, slab):
            r1 = min(r0 + slab, T * nb)
            v = vbuf[: r1 - r0]
            nonzero += table_rows(u, b0, nb, k0s[i], k1s[i], shifts, stack[i], r0, r1, v, True, var[i],
                                  noisy, rowvar, sqsum[i])
            if noisy:
                for j in range(r1 - r0):
                    std[j, 0] = np.sqrt(rowvar[r0 + j])
            clipped += adc_rows(acc, v, std, False, noisy, r0, nb, pw, lo[i], lsb[i], top, key, gamma, b0, T, R,
                                 i, r, ph, q)
    return nonzero, clipped


@njit(nogil=True, cache=True)
def share_tables(counter, edges, u, k0s, k1s, shifts, stack, var, noisy, pw, lo, lsb, top, key, gamma,
                 slab_most, g, rw, n_out, offset, row_sums, with_offset, y, nz, cl, cond):
    """A call's shards (examples ``edges[j] .. edges[j + 1]``; the arguments from ``u`` to ``slab_most``:
    :func:`share_tables_args`) taken one by one from ``counter`` (:func:`cimsim.kernels_shares.take_next`) until none
    is left, each in one pass: per row block and slab of ``min(slab_most, cycles x examples)`` stacked rows,
    :func:`table_rows` from ``stack`` (:func:`kept_table_stack`) then the ADC epilogue (:func:`cimsim.kernels.adc_rows`), the numbers of that loop in Python
    (:meth:`cimsim.crossbar_cpu.CpuTile._shard_fused`); then the shards' rows of ``y`` and counts
    (:func:`cimsim.kernels_shares.finish_shard`). One call per thread, holding no lock."""
    R, T, cols = stack.shape[0], shifts.shape[0], stack.shape[3]
    nbmax = most_examples(edges)
    most = min(slab_most, T * nbmax)
    acc = np.empty((nbmax, cols))
    vbuf = np.empty((most, cols), np.float32)
    std = np.empty((most, 1))
    rowvar = np.empty(T * nbmax)
    sqsum = np.empty((R, var.shape[1]), np.int64)
    r, ph, q = make_draw_buffers(cols)
    while True:
        j, b0, nb = next_shard(counter, edges)
        if j < 0:
            break
        slab = min(slab_most, T * nb)
        a, rv = acc[:nb], rowvar[: T * nb]
        a[:] = 0.0
        rv[:] = 0.0
        sqsum[:] = 0
        nz[j], cl[j] = _shard_tables(u, b0, nb, k0s, k1s, shifts, stack, var, noisy, pw, lo, lsb, top, key,
                                     gamma, a, vbuf[:slab], std[:slab], rv, sqsum, r, ph, q)
        finish_shard(j, b0, a, sqsum, k0s, k1s, g, rw, n_out, offset, row_sums, with_offset, y, cond)


def share_tables_args(u, blocks, shifts, pw: np.ndarray, stack: np.ndarray, var, ranges, top: float,
                      stream: tuple[int, int], slab_most: int) -> tuple:
    """:func:`share_tables`' arguments from ``u`` to ``slab_most`` for a call (``pw``: the cycles' place values,
    :func:`cimsim.encoding.plane_weights`; ``stack``: :func:`kept_table_stack`, ``var``: :func:`stack_variances`)."""
    R = stack.shape[0]
    rows = max(k1 - k0 for k0, k1 in blocks)
    noisy = var is not None
    return (u, np.array([b[0] for b in blocks], dtype=np.int64), np.array([b[1] for b in blocks], dtype=np.int64),
            shifts, stack, var if noisy else np.zeros((R, rows)), noisy, np.asarray(pw, dtype=np.float64),
            np.array([float(x[0]) for x in ranges]), np.array([float(x[1]) for x in ranges]), float(top),
            np.uint64(stream[0]), np.uint64(stream[1]), int(slab_most))


def stack_variances(var_blocks: list):
    """The row blocks' per-row read-noise variances as one (blocks, rows) array for :func:`share_tables` (shorter
    blocks padded with zeros); None without read noise; False where a block has per-cell variances (the products
    then need the stacked digits) or only some blocks have noise."""
    if all(v is None for v in var_blocks):
        return None
    if any(v is None or v.ndim != 1 for v in var_blocks):
        return False
    out = np.zeros((len(var_blocks), max(v.shape[0] for v in var_blocks)))
    for i, v in enumerate(var_blocks):
        out[i, : v.shape[0]] = v
    return out


