"""The kernel of the CPU engine's bit-serial integer path: column values from tables, the ADC in integers.

Where the cells hold integer levels ``a``, nothing is noisy and the ADC reconstructs on an integer grid (integer
``lo``, ``lsb = 2**s``, s >= 0), the fused path's numbers are integer functions of the integer column values. The
inputs' bit plane n of a row block (bit n of each row's input) gives the column values

    V_n[j] = sum_k bit_n(x_k) * a[k, j] = sum_g T_g[byte g of plane n, j]

with T_g[m, j] = sum_{r < 8} bit_r(m) * a[8 g + r, j] a table per group of 8 rows (the "four Russians" method:
one table row per byte instead of eight products; groups of 4 rows where 8 would make the tables too large). A
cycle's column value is v_t = sum_p c_p V_{shift_t + p}, with c_p = 2**p the weight of the digit's bit p (the digits
are unsigned; the sign cycle of signed inputs has a negative place value, :func:`cimsim.encoding.plane_weights`).
The ADC of the fused
epilogue (:func:`cimsim.kernels.adc_accumulate_rows`), ``lo + clip(floor((v - lo) / lsb + 1/2), 0, top) * lsb``,
is for integer v exactly ``lo + clip((v - lo + half) >> s, 0, top) << s`` (half = 2**(s - 1), 0 for s = 0):
every float there is an integer or a multiple of 2**-s below 2**53. So the kernel forms each example's
shift-and-add sum in int64 and gives exactly the float64 sums of the bit-plane path (integers below 2**53, exact in
any order) and the same count of clipped conversions.

Work saved besides the products: a plane with no set bit gives column values 0 (one constant per cycle); a plane
equal to an earlier one of the same example and row block reuses its values (LeNet-5's first convolution reads
8-bit pixels scaled by 257 into 16 bits: its planes n and n + 8 are equal); and one-bit cycles that read the same
values are converted once, their place values summed (the conversion is the same integer function).
"""

from __future__ import annotations

import numpy as np

from cimsim import numba_target
from cimsim.fileio import numba_cache_fallback

numba_cache_fallback()   # before numba loads (see cimsim.kernels)
numba_target.configure()   # 512-bit vectors where the CPU has AVX-512 (cimsim.numba_target)
from numba import njit, types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

# the tables of one crossbar may take this many bytes with groups of 8 rows, else groups of 4 are tried, and beyond
# TABLE_BYTES_MAX the path steps aside. Our choice: 8 MB keeps LeNet-5's convolutions on 8-row groups (its largest
# table, 150 rows x 128 columns, is 0.6 MB of int8) and its 400 -> 120 layer's 15.7 MB on 4-row groups (2 MB)
TABLE_BYTES_8 = 8 << 20
TABLE_BYTES_MAX = 64 << 20

_U8 = np.uint64(0xFF)
_M1 = np.uint64(0x00AA00AA00AA00AA)
_M2 = np.uint64(0x0000CCCC0000CCCC)
_M3 = np.uint64(0x00000000F0F0F0F0)


@njit(inline="always")
def _transpose8(x):
    """The 8 x 8 bit matrix in a uint64 (byte r = row r, bit c = column c) transposed (Warren, Hacker's Delight,
    2nd ed., section 7-3, transpose8rS64): byte c of the result holds column c, its bit r from row r."""
    t = (x ^ (x >> np.uint64(7))) & _M1
    x = x ^ t ^ (t << np.uint64(7))
    t = (x ^ (x >> np.uint64(14))) & _M2
    x = x ^ t ^ (t << np.uint64(14))
    t = (x ^ (x >> np.uint64(28))) & _M3
    return x ^ t ^ (t << np.uint64(28))


@njit(nogil=True, cache=True)
def transpose8(x):
    """:func:`_transpose8` on an array of uint64 (exposed for tests)."""
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = _transpose8(x[i])
    return out


def group_tables(a_blocks: list[np.ndarray]) -> tuple[list[np.ndarray], int, type] | None:
    """The tables of every row block, the rows per group g (8 or 4) and the type of a plane's column values: ``tables[i][G, m, j]`` = sum over the rows r < g
    of group G of bit r of m times ``a_blocks[i][g G + r, j]``, in the narrowest integer type that holds them all; None
    unless every level is an integer and the tables fit in TABLE_BYTES_MAX."""
    ints = []
    for a in a_blocks:
        if a.size and (not np.array_equal(a, np.rint(a)) or np.abs(a).max() >= 2 ** 20):
            return None
        ints.append(np.rint(a).astype(np.int64))
    cols = ints[0].shape[1]
    quads = []   # |levels| summed over groups of 4 rows (the blocks padded to 8: a last group of zeros at most)
    for a in ints:
        padded = np.zeros((-(-a.shape[0] // 8) * 8, cols), dtype=np.int64)
        np.abs(a, out=padded[:a.shape[0]])
        quads.append(padded.reshape(-1, 4, cols).sum(axis=1))
    for g, cap in ((8, TABLE_BYTES_8), (4, TABLE_BYTES_MAX)):
        entries = sum(-(-a.shape[0] // g) for a in ints) * (1 << g) * cols
        if entries > cap:   # not even in int8
            continue
        big = max(int((q if g == 4 else q.reshape(-1, 2, cols).sum(axis=1)).max(initial=0))
                  for q in quads)   # the largest |entry| of any table
        dtype = np.int8 if big < 2 ** 7 else np.int16 if big < 2 ** 15 else np.int32
        if entries * np.dtype(dtype).itemsize <= cap:
            break
    else:
        return None
    # a plane's column values are sums of table entries: int16 where every column's sum of |levels| fits
    plane = np.int16 if max(int(q.sum(axis=0).max(initial=0)) for q in quads) < 2 ** 15 else np.int64
    tables = []
    for a in ints:   # by doubling: T[G, m + 2**r] = T[G, m] + a[g G + r] for m < 2**r (every partial sum fits dtype)
        n = -(-a.shape[0] // g)
        padded = np.zeros((n, g, cols), dtype=dtype)
        padded.reshape(n * g, cols)[:a.shape[0]] = a
        t = np.empty((n, 1 << g, cols), dtype=dtype)
        t[:, 0] = 0
        for r in range(g):
            np.add(t[:, :1 << r], padded[:, r, None, :], out=t[:, 1 << r:2 << r])
        tables.append(t)
    return tables, g, plane


@intrinsic
def ctpop(typingctx, x):
    """The number of set bits of an int64 (LLVM's ctpop: the popcnt instruction)."""
    def codegen(context, builder, sig, args):
        return builder.ctpop(args[0])
    return types.int64(types.int64), codegen


@njit(inline="always")
def _convert(out, V, weight, count, lo, half, s, top):
    """out += weight * ADC(V) column by column; returns count x the conversions that clipped."""
    clipped = 0
    for j in range(V.shape[0]):
        raw = (V[j] - lo + half) >> s
        clipped += (raw < 0) | (raw > top)
        out[j] += weight * (lo + (min(max(raw, 0), top) << s))
    return clipped * count


@njit(inline="always")
def _add_row(Vn, row):
    for j in range(Vn.shape[0]):
        Vn[j] += row[j]


@njit(inline="always")
def _live(src, sh, width):
    """Whether any of the ``width`` one-bit planes from ``sh`` on has a non-zero digit (``src`` >= 0)."""
    for p in range(width):
        if src[sh + p] >= 0:
            return True
    return False


@njit(inline="always")
def _cut_planes(u, b, k0, k1, nbits, X, src):
    """The bit planes of example b's rows k0..k1 into X (plane n: bit n of row k0 + k at bit k % 64 of word k // 64),
    and src[n] = -1 (plane n is zero), n (a plane of its own) or an earlier plane with the same bits."""
    nbytes = (k1 - k0 + 7) >> 3
    nw = (nbytes + 7) >> 3
    X[:, :] = 0
    for G in range(nbytes):   # the planes: one 8 x 8 bit transpose per group of 8 rows and input byte
        r1 = min(8, k1 - k0 - 8 * G)
        for h in range((nbits + 7) >> 3):
            word = np.uint64(0)
            for r in range(r1):
                word |= ((np.uint64(u[b, k0 + 8 * G + r]) >> np.uint64(8 * h)) & _U8) << np.uint64(8 * r)
            if word == 0:
                continue
            word = _transpose8(word)
            for c in range(min(8, nbits - 8 * h)):
                X[8 * h + c, G >> 3] |= np.int64((word >> np.uint64(8 * c)) & _U8) << (8 * (G & 7))
    for n in range(nbits):   # which planes are zero, which repeat an earlier one
        src[n] = -1
        zero = True
        for w in range(nw):
            if X[n, w] != 0:
                zero = False
                break
        if zero:
            continue
        for m in range(n):
            if src[m] == m:
                same = True
                for w in range(nw):
                    if X[m, w] != X[n, w]:
                        same = False
                        break
                if same:
                    src[n] = m
                    break
        if src[n] < 0:
            src[n] = n


@njit(inline="always")
def _plane_values(u, b, k0, k1, nbits, X, src, V, table, g):
    """:func:`_cut_planes`, and the column values of each plane of its own into V."""
    _cut_planes(u, b, k0, k1, nbits, X, src)
    nbytes = (k1 - k0 + 7) >> 3
    for n in range(nbits):
        if src[n] == n:
            V[n, :] = 0
    for G in range(nbytes):   # group by group (its tables stay in cache), the planes' sums of table rows
        for n in range(nbits):
            if src[n] != n:
                continue
            m8 = (X[n, G >> 3] >> (8 * (G & 7))) & 255
            if m8 == 0:
                continue
            if g == 8:
                _add_row(V[n], table[G, m8])
            else:   # two groups of 4 rows per byte
                if m8 & 15:
                    _add_row(V[n], table[2 * G, m8 & 15])
                if m8 >> 4:
                    _add_row(V[n], table[2 * G + 1, m8 >> 4])


@njit(inline="always")
def _cycle_value(C, V, src, sh, width):
    """C = the column values of a cycle of ``width``-bit digits at ``shift`` from its planes' values."""
    C[:] = 0
    for p in range(width):
        m = src[sh + p]
        if m >= 0:
            cp = np.int64(1) << p
            for j in range(C.shape[0]):
                C[j] += cp * V[m, j]


@njit(nogil=True, cache=True)
def _block_rows(u, edges, k0, k1, table, g, shifts, widths, places, lo, s, top, nz_tab, sq_tab, bit_planes,
                acc, sq, V):
    nbits = shifts[-1] + widths[-1]
    T = shifts.shape[0]
    cols = table.shape[2]
    X = np.zeros((nbits, (k1 - k0 + 63) >> 6), dtype=np.int64)   # plane n: bit n of row k0 + k at bit k % 64 of word k // 64
    C = np.empty(cols, dtype=np.int64)              # a multi-bit cycle's column values
    src = np.empty(nbits, dtype=np.int64)           # whose values plane n has: -1 (none: zero), n, or an earlier one
    weight = np.empty(nbits, dtype=np.int64)        # place values summed per plane of the one-bit cycles
    count = np.empty(nbits, dtype=np.int64)
    half = (1 << s) >> 1
    clipped = 0
    nonzero = 0
    e = 0                                           # the shard of example b
    for b in range(edges[0], edges[-1]):
        while b >= edges[e + 1]:
            e += 1
        out = acc[b - edges[0]]
        for k in range(k0, k1):   # the digits' counts
            v = u[b, k]
            if bit_planes:   # one-bit digits: non-zero digits = digit**2 = set bits
                c = ctpop(v)
                nonzero += c
                sq[e, k] += c
            else:
                nonzero += nz_tab[v]
                sq[e, k] += sq_tab[v]
        _plane_values(u, b, k0, k1, nbits, X, src, V, table, g)
        weight[:] = 0
        count[:] = 0
        zero_weight = 0
        zero_count = 0
        for t in range(T):   # the ADC and the shift-and-add: one-bit cycles grouped by the values they convert
            sh, width = shifts[t], widths[t]
            place = places[t]
            if not _live(src, sh, width):
                zero_weight += place
                zero_count += 1
            elif width == 1:
                weight[src[sh]] += place
                count[src[sh]] += 1
            else:
                _cycle_value(C, V, src, sh, width)
                clipped += _convert(out, C, place, 1, lo, half, s, top)
        for n in range(nbits):
            if count[n]:
                clipped += _convert(out, V[n], weight[n], count[n], lo, half, s, top)
        if zero_count:   # column values 0: one conversion result for every column
            raw = (half - lo) >> s
            if raw < 0 or raw > top:
                clipped += cols * zero_count
            c = zero_weight * (lo + (min(max(raw, 0), top) << s))
            if c != 0:
                for j in range(cols):
                    out[j] += c
    return clipped, nonzero


# values a histogram pass scans at a time for one at or above its threshold (our choice: a vectorized min/max of 64
# int16 values costs about what counting 8 of them does)
SCAN = 64


@njit(inline="always")
def _count_values(hist, row, c, tau):
    """hist[|v|] += c for each value v = row[j] with |v| >= tau (runs of SCAN values with none skipped after
    their min and max; hist ends with 8 spare bins); returns (whether any v < 0, values counted x c)."""
    spare = hist.shape[0] - 8
    negative = False
    added = 0
    for c0 in range(0, row.shape[0], SCAN):
        seg = row[c0:c0 + SCAN]
        mx = seg[0]
        mn = seg[0]
        for j in range(seg.shape[0]):
            mx = max(mx, seg[j])
            mn = min(mn, seg[j])
        if mn < 0:
            negative = True
        if mx >= tau or mn <= -tau:   # without a branch: a value below tau goes to one of 8 spare bins at the end
            for j in range(seg.shape[0]):
                v = abs(seg[j])
                hit = v >= tau
                hist[v if hit else spare + (j & 7)] += c
                added += c * hit
    return negative, added


@njit(inline="always")
def _raised(hist, tau, total, need):
    """(t, values counted at or above t): the largest t >= tau with at least ``need`` counted values at or above it
    (the 8 spare bins at the end of hist left out)."""
    s = 0
    for v in range(hist.shape[0] - 9, tau - 1, -1):
        s += hist[v]
        if s >= need:
            return v, s
    return tau, total


@njit(inline="always")
def _plane_sum(Vn, Xn, nbytes, table, g):
    """Vn = the column values of the plane whose bits Xn holds: its table rows summed."""
    Vn[:] = 0
    for G in range(nbytes):
        m8 = (Xn[G >> 3] >> (8 * (G & 7))) & 255
        if m8 == 0:
            continue
        if g == 8:
            _add_row(Vn, table[G, m8])
        else:   # two groups of 4 rows per byte
            if m8 & 15:
                _add_row(Vn, table[2 * G, m8 & 15])
            if m8 >> 4:
                _add_row(Vn, table[2 * G + 1, m8 >> 4])


@njit(inline="always")
def _plane_bounds(Xn, nbytes, lo_tab, hi_tab, g):
    """(lower, upper) bound on the plane's column values: its table rows' smallest and largest entries summed."""
    lo = 0
    hi = 0
    for G in range(nbytes):
        m8 = (Xn[G >> 3] >> (8 * (G & 7))) & 255
        if m8 == 0:
            continue
        if g == 8:
            lo += lo_tab[G, m8]
            hi += hi_tab[G, m8]
        else:   # two groups of 4 rows per byte (the second may not exist: then its nibble is 0)
            if m8 & 15:
                lo += lo_tab[2 * G, m8 & 15]
                hi += hi_tab[2 * G, m8 & 15]
            if m8 >> 4:
                lo += lo_tab[2 * G + 1, m8 >> 4]
                hi += hi_tab[2 * G + 1, m8 >> 4]
    return lo, hi


@njit(nogil=True, cache=True)
def _block_histogram(u, examples, k0, k1, table, g, lo_tab, hi_tab, shifts, widths, V, hist, tau, need):
    nbits = shifts[-1] + widths[-1]
    nbytes = (k1 - k0 + 7) >> 3
    T = shifts.shape[0]
    cols = table.shape[2]
    X = np.zeros((nbits, (k1 - k0 + 63) >> 6), dtype=np.int64)
    C = np.empty(cols, dtype=np.int64)
    src = np.empty(nbits, dtype=np.int64)
    done = np.empty(nbits, dtype=np.bool_)         # V[n] holds plane n's values
    count = np.empty(nbits, dtype=np.int64)        # one-bit cycles per plane
    negative = False
    total = 0                                      # values counted (all of them at or above tau)
    for b in examples:
        _cut_planes(u, b, k0, k1, nbits, X, src)
        done[:] = False
        count[:] = 0
        zero_count = 0
        for t in range(T):
            sh, width = shifts[t], widths[t]
            if not _live(src, sh, width):
                zero_count += 1
            elif width == 1:
                count[src[sh]] += 1
            else:
                for p in range(width):
                    m = src[sh + p]
                    if m >= 0 and not done[m]:
                        _plane_sum(V[m], X[m], nbytes, table, g)
                        done[m] = True
                _cycle_value(C, V, src, sh, width)
                neg, added = _count_values(hist, C, 1, tau)
                negative |= neg
                total += added
        for n in range(nbits):
            if count[n]:
                if not done[n] and tau > 0:   # a plane whose values all lie below tau and whose signs are known
                    lo, hi = _plane_bounds(X[n], nbytes, lo_tab, hi_tab, g)
                    if max(hi, -lo) < tau:
                        if lo >= 0 or negative:
                            continue
                        if hi < 0:   # every value negative
                            negative = True
                            continue
                if not done[n]:
                    _plane_sum(V[n], X[n], nbytes, table, g)
                    done[n] = True
                neg, added = _count_values(hist, V[n], count[n], tau)
                negative |= neg
                total += added
        if tau == 0:
            hist[0] += cols * zero_count
            total += cols * zero_count
        if need > 0 and total >= 2 * need:
            tau, total = _raised(hist, tau, total, need)
    return negative, tau


def value_histogram(u, b0: int, b1: int, k0: int, k1: int, tables, g: int, plane_dtype, shifts, widths, bins: int,
                    tau: int = 0, need: int = 0, examples=None, bounds=None) -> tuple[np.ndarray, bool, int]:
    """The column values of every cycle of examples b0..b1 (or of the examples listed in ``examples``) on rows k0..k1
    (one row block, ``tables`` its tables from :func:`group_tables`) as a histogram of their magnitudes (``bins``
    bins: 0 .. bins - 1, int64 counts), whether any was negative, and the threshold t from which on the counts are
    exact: what :func:`cimsim.calibration.column_value_ranges` selects its percentile from.

    Only magnitudes at or above the threshold are counted (from ``tau`` on; 0: all of them), and with ``need`` > 0 it
    rises as the pass goes to the largest t with at least ``need`` counted values at or above it. For a percentile
    whose upper order statistics are the ``need`` largest values, every t so raised is at most the percentile's
    lower order statistic: the counts from t on give it exactly. A plane whose table rows' extremes (``bounds``:
    :func:`table_bounds`, computed when not given) keep all its values below the threshold is not summed."""
    hist = np.zeros(bins + 8, dtype=np.int64)   # 8 spare bins for the values below the threshold
    negative = False
    examples = np.arange(b0, b1, dtype=np.int64) if examples is None else np.asarray(examples, dtype=np.int64)
    if examples.size:
        shifts = np.asarray(shifts, dtype=np.int64)
        widths = np.asarray(widths, dtype=np.int64)
        lo_tab, hi_tab = table_bounds(tables) if bounds is None else bounds
        V = np.empty((int(shifts[-1] + widths[-1]), tables.shape[2]), dtype=plane_dtype)
        negative, tau = _block_histogram(u, examples, k0, k1, tables, g, lo_tab, hi_tab, shifts, widths, V, hist,
                                         int(tau), int(need))
    return hist[:bins], bool(negative), int(tau)


def table_bounds(tables: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smallest and the largest entry of each table row (int64): the bounds :func:`value_histogram` sums."""
    if tables.shape[2] == 0:
        z = np.zeros(tables.shape[:2], dtype=np.int64)
        return z, z
    return tables.min(axis=2).astype(np.int64), tables.max(axis=2).astype(np.int64)


@njit(nogil=True, cache=True)
def _weighted_columns(acc, weights, n_out):
    rows, cols = acc.shape
    y = np.empty((rows, n_out))
    for b in range(rows):
        for n in range(n_out):
            y[b, n] = acc[b, n] * weights[n]
        for base in range(n_out, cols, n_out):
            for n in range(n_out):
                y[b, n] += acc[b, base + n] * weights[base + n]
    return y


def weighted_columns(acc: np.ndarray, weights: np.ndarray, n_out: int) -> np.ndarray:
    """``(acc * weights).reshape(rows, -1, n_out).sum(axis=1)`` for integer sums ``acc`` (int64) and integer column
    weights, without the temporaries: the same numbers (every term and partial sum an integer below 2**53, added as
    numpy adds them, from the first group on, so that a sum of negative zeros stays -0.0)."""
    return _weighted_columns(acc, np.ascontiguousarray(weights, dtype=np.float64), int(n_out))


def bit_serial_rows(u, edges, row_blocks, tables, g: int, plane_dtype, shifts, widths, places, los, ss, top: int,
                    digit_tabs) -> tuple:
    """Examples edges[0]..edges[-1] of ``u`` (the digit source: inputs with negatives modulo 2**input_bits, at most 16
    bits) through the integer path (module docstring), their digits counted per shard edges[j]..edges[j + 1]: (acc
    (examples, columns) int64, the shift-and-add sums of every row block before the readout weights; clipped
    conversions; non-zero digits; sum of digit**2 over the cycles and each shard's examples per shard and input row
    (int64)). ``places``: the cycles' place values (:func:`cimsim.encoding.plane_weights`, integers; a signed input's
    negative ones). ``tables``, ``g``, ``plane_dtype``: :func:`group_tables`; ``los``, ``ss``: each row block's ADC
    ``lo`` and log2 of its LSB; ``digit_tabs``: :func:`cimsim.kernels.digit_tables`."""
    edges = np.asarray(edges, dtype=np.int64)
    acc = np.zeros((int(edges[-1] - edges[0]), tables[0].shape[2]), dtype=np.int64)
    sq = np.zeros((len(edges) - 1, u.shape[1]), dtype=np.int64)
    clipped = nonzero = 0
    if edges[-1] > edges[0]:
        shifts = np.asarray(shifts, dtype=np.int64)
        widths = np.asarray(widths, dtype=np.int64)
        nbits = int(shifts[-1] + widths[-1])
        places = np.asarray(places).astype(np.int64)
        for i, (k0, k1) in enumerate(row_blocks):
            V = np.empty((nbits, tables[i].shape[2]), dtype=plane_dtype)
            c, nz = _block_rows(u, edges, k0, k1, tables[i], g, shifts, widths, places, int(los[i]), int(ss[i]),
                                int(top), digit_tabs[0], digit_tabs[1], bool(digit_tabs[2]), acc, sq, V)
            clipped += int(c)
            nonzero += int(nz)
    return acc, clipped, nonzero, sq


@njit(nogil=True, cache=True)
def pattern_counts(u, b0, b1, k0, k1, shifts):
    """counts[m] of the one-bit cycles of examples b0..b1 whose digits on rows k0..k1 (at most about 16) form the
    pattern m (bit r: row k0 + r's digit): a small block's column values are those of its patterns, counted this many
    times."""
    R = k1 - k0
    T = shifts.shape[0]
    counts = np.zeros(1 << R, dtype=np.int64)
    chunk = 1024
    col = np.empty(chunk, dtype=np.int64)
    pat = np.empty((T, chunk), dtype=np.int64)
    for c0 in range(b0, b1, chunk):
        n = min(chunk, b1 - c0)
        pat[:, :n] = 0
        for r in range(R):   # row by row, over a chunk of examples at once (vectorized)
            for b in range(n):
                col[b] = u[c0 + b, k0 + r]
            for t in range(T):
                sh = shifts[t]
                for b in range(n):
                    pat[t, b] |= ((col[b] >> sh) & 1) << r
        for t in range(T):
            for b in range(n):
                counts[pat[t, b]] += 1
    return counts


@njit(nogil=True, cache=True)
def pattern_histogram(counts, values, hist):
    """hist[|v|] += counts[m] for every column value v = values[m, j] of a pattern that occurred
    (:func:`pattern_counts`); returns whether any such v < 0."""
    negative = False
    for m in range(counts.shape[0]):
        c = counts[m]
        if c == 0:
            continue
        for j in range(values.shape[1]):
            v = values[m, j]
            if v < 0:
                negative = True
            hist[abs(v)] += c
    return negative
