"""The general path's analog sums where each buffered value is written with an error relative to itself
(:class:`cimsim.readouts.BufferedQuantizerOp`'s ``relative_sigma``, CASCADE's buffer RRAM): the converted value
and its variance from one product per row block and group of cycles.

A readout with a relative error ``r`` needs, per row block and cycle, the group's value ``d`` and the variance
``w**2 r**2 (s**2 + d_s**2) / 2`` of each slice's buffered value, ``s`` its lines' sum and ``d_s`` its difference
(:meth:`cimsim.crossbar.Crossbar.line_sum`, :meth:`~cimsim.crossbar.Crossbar.slice_values`), summed over the slices of
a group with their place values squared. For a pair of lines holding ``p`` and ``m`` (G+ and G-),
``s**2 + d_s**2 = 2 (p**2 + m**2)``; for a single column ``2 p**2``. So one product of the digits with the level
matrix itself, ``Q = x @ A`` (every physical column), gives all three: :func:`buffered_sums` forms ``d`` and the
variance term from ``Q`` in one pass, where numpy made three products (the group's values, the lines' sums, the
slices' values) and five array passes.

The numbers are numpy's bit for bit where every one of them is an integer that its type holds exactly
(:func:`exact_integers`): integer levels and digits, ``|Q|`` within float32's (or float64's) exact integers, the
grouped sums and the squares' weighted sums within float64's. Then any order of summation gives the same value, and
the only rounding left is the final scaling by ``(w r)**2 / 2``, done as numpy does it. Elsewhere (noisy levels off
the integers, very wide sums) the caller keeps numpy's three products.

Where the digits are one unsigned bit, a row block has at most 64 rows and the levels are small non-negative integers
(CASCADE's 64-row arrays of one-bit cells), there is no product at all: each example's digits of a cycle are one
64-bit word (:func:`digit_masks`), each line's levels a few bit planes (:func:`level_planes`), and a line's value
``sum_p 2**p popcount(digits & plane_p)`` (:func:`popcount_sums`; a conversion's cycles in one call,
:func:`popcount_cycles`), the same integer. The buffered quantizer then converts the noisy sum in one pass
(:func:`noisy_quantize`, numpy's operations in numpy's order).
"""

from __future__ import annotations

import numpy as np

from cimsim import numba_target
from cimsim.fileio import numba_cache_fallback

numba_cache_fallback()   # before numba loads (see cimsim.kernels)
numba_target.configure()   # 512-bit vectors where the CPU has AVX-512 (cimsim.numba_target)
from numba import njit  # noqa: E402

from cimsim.kernels_bits import ctpop  # noqa: E402

# float32 and float64 hold every integer of magnitude up to 2**24 and 2**53
_EXACT = {np.dtype(np.float32): float(2 ** 24), np.dtype(np.float64): float(2 ** 53)}


def exact_integers(a_blocks, rows: list[int], digit_max: int, m: np.ndarray, dtype) -> bool:
    """Whether :func:`buffered_sums` gives numpy's numbers for these level matrices (one per row block, in the
    GEMM's type ``dtype``; ``rows`` each block's row count), digits of magnitude at most ``digit_max`` and the
    (slices, groups) place-value matrix ``m``: every level an integer, and every partial sum of the products (each
    line's value, its pair's sum and difference, a group's value) and of the squares' weighted sums an integer
    within the exact integers of its type."""
    lim = _EXACT.get(np.dtype(dtype))
    if lim is None or not np.all(m == np.round(m)):
        return False
    top = 0.0
    for a, k in zip(a_blocks, rows):
        if a is None or a.size == 0:
            continue
        if not np.array_equal(a, np.round(a)):
            return False
        top = max(top, float(k) * digit_max * float(np.abs(a).max()))   # bound on a line's |value|
    gain = float(np.abs(m).sum(axis=0).max())
    # a pair's sum or difference (2 top), a group's value (gain x 2 top) in the GEMM's type; the squares' weighted
    # sum, sum_s m_s**2 2 (p**2 + m**2) <= 4 top**2 sum_s m_s**2, in float64
    return 2 * top * gain < lim and 4 * top * top * float((m * m).sum(axis=0).max()) < 2.0 ** 53


@njit(cache=True, nogil=True)
def buffered_sums(qt, r0, nb, lo, hi, m, m2, pair, polarities, n_out, w, c2, vt, var_t, first):  # pragma: no cover
    """One cycle of one row block: ``qt[:, r0:r0 + nb]`` (physical columns ordered slice, polarity, output; examples)
    the product of its digits with the level matrix, transposed; slice group ``g`` sums slices ``lo[g]..hi[g]`` with
    the place values ``m[:, g]`` (``m2`` their squares). Adds ``w`` times each group's value to ``vt`` and ``c2``
    times ``sum_s m2 (s**2 + d_s**2)`` to ``var_t`` (or sets it where ``first``): both (groups x values per slice,
    examples), a value per output (``pair``: G+ minus G-) or per polarity and output. Examples run innermost
    (contiguous: vector instructions whatever the number of outputs)."""
    per = n_out if pair else polarities * n_out
    d = np.empty(nb)
    s = np.empty(nb)
    for g in range(lo.shape[0]):
        for c in range(per):
            d[:] = 0.0
            s[:] = 0.0
            for sl in range(lo[g], hi[g]):   # exact sums: any order gives the same values
                mg, mg2 = m[sl, g], m2[sl, g]
                if pair:
                    qa, qb = qt[2 * sl * n_out + c], qt[(2 * sl + 1) * n_out + c]
                    for r in range(nb):
                        a = np.float64(qa[r0 + r])
                        b = np.float64(qb[r0 + r])
                        d[r] += mg * (a - b)
                        s[r] += mg2 * (a * a + b * b)
                else:
                    qa = qt[sl * per + c]
                    for r in range(nb):
                        a = np.float64(qa[r0 + r])
                        d[r] += mg * a
                        s[r] += mg2 * (a * a)
            vo, so = vt[g * per + c], var_t[g * per + c]
            for r in range(nb):
                vo[r] = vo[r] + w * d[r]
                t = c2 * (2.0 * s[r])
                so[r] = t if first else so[r] + t


# the popcount path's limits: one 64-bit word of digits per row block and cycle, levels of a few bits
WORD_ROWS = 64
PLANE_BITS_MAX = 4


def level_planes(a: np.ndarray) -> np.ndarray | None:
    """A row block's integer levels ``a`` (rows <= 64, physical columns), non-negative and below
    ``2**PLANE_BITS_MAX``, as bit planes: (planes, columns) int64, bit k of plane p of column j = bit p of
    ``a[k, j]``; None where they are not such levels."""
    rows = a.shape[0]
    if rows > WORD_ROWS or a.size == 0 or not np.array_equal(a, np.round(a)) or a.min() < 0 \
            or a.max() >= 2 ** PLANE_BITS_MAX:
        return None
    lv = a.astype(np.int64)
    n = max(1, int(lv.max()).bit_length())
    weight = np.left_shift(np.int64(1), np.arange(rows, dtype=np.int64))[:, None]
    return np.stack([(((lv >> p) & 1) * weight).sum(axis=0) for p in range(n)]).astype(np.int64)


@njit(cache=True, nogil=True)
def digit_masks(u, b0, nb, k0, k1, shifts, masks, sqsum):  # pragma: no cover - numba
    """One-bit digits of examples b0 .. b0 + nb and rows k0 .. k1 (at most 64) of every cycle as words:
    ``masks[t, b - b0]`` has bit k where bit ``shifts[t]`` of ``u[b, k0 + k]`` is set. Adds each row's count of
    set digits (its digits' squares) to ``sqsum`` and returns the count of non-zero digits: what
    :func:`cimsim.kernels.stack_digits` gives for these one-bit, unsigned digits."""
    T = shifts.shape[0]
    rows = k1 - k0
    read = np.int64(0)   # the bits the cycles read
    for t in range(T):
        read |= np.int64(1) << shifts[t]
    nonzero = 0
    for r in range(nb):
        src = u[b0 + r, k0:k1]
        for t in range(T):
            sh = shifts[t]
            word = np.int64(0)
            for k in range(rows):
                word |= ((np.int64(src[k]) >> sh) & 1) << k
            masks[t, r] = word
        for k in range(rows):
            c = ctpop(np.int64(src[k]) & read)
            sqsum[k] += c
            nonzero += c
    return nonzero


@njit(cache=True, nogil=True)
def popcount_sums(masks, t, planes, lo, hi, m, m2, pair, polarities, n_out, w, c2, vt, var_t, first):  # pragma: no cover
    """:func:`buffered_sums` with each line's value of cycle ``t`` counted, not multiplied: for one-bit digits
    (``masks``, :func:`digit_masks`) and levels in bit planes (``planes``, :func:`level_planes`), a line's value
    is ``sum_p 2**p popcount(digits & plane_p)``, an integer: the same numbers as the product."""
    nb = masks.shape[1]
    P = planes.shape[0]
    per = n_out if pair else polarities * n_out
    x = masks[t]
    d = np.empty(nb)
    s = np.empty(nb)
    qa = np.empty(nb, dtype=np.int64)
    qb = np.zeros(nb, dtype=np.int64)
    for g in range(lo.shape[0]):
        for c in range(per):
            d[:] = 0.0
            s[:] = 0.0
            for sl in range(lo[g], hi[g]):
                mg, mg2 = m[sl, g], m2[sl, g]
                ja = 2 * sl * n_out + c if pair else sl * per + c
                if P == 1 and pair:   # one-bit cells (CASCADE's): both lines counted in one pass
                    pa, pb = planes[0, ja], planes[0, ja + n_out]
                    for r in range(nb):
                        fa = np.float64(ctpop(x[r] & pa))
                        fb = np.float64(ctpop(x[r] & pb))
                        d[r] += mg * (fa - fb)
                        s[r] += mg2 * (fa * fa + fb * fb)
                    continue
                qa[:] = 0
                for p in range(P):   # each line's value: its planes' counts (words: vector instructions)
                    pa = planes[p, ja]
                    for r in range(nb):
                        qa[r] += ctpop(x[r] & pa) << p
                if pair:
                    qb[:] = 0
                    for p in range(P):
                        pb = planes[p, ja + n_out]
                        for r in range(nb):
                            qb[r] += ctpop(x[r] & pb) << p
                for r in range(nb):
                    fa, fb = np.float64(qa[r]), np.float64(qb[r])
                    d[r] += mg * (fa - fb)
                    s[r] += mg2 * (fa * fa + fb * fb)
            vo, so = vt[g * per + c], var_t[g * per + c]
            for r in range(nb):
                vo[r] = vo[r] + w * d[r]
                u = c2 * (2.0 * s[r])
                so[r] = u if first else so[r] + u


@njit(cache=True, nogil=True)
def popcount_cycles(masks, t0, t1, ws, c2s, planes, lo, hi, m, m2, pair, polarities, n_out, vt, var_t, first):  # pragma: no cover
    """:func:`popcount_sums` of cycles t0 .. t1 in turn in one call (cycle t with place value ``ws[t - t0]`` and
    variance factor ``c2s[t - t0]``; ``first``: the first cycle sets ``var_t``): the same additions in the same
    order, one return to the interpreter instead of one a cycle."""
    for t in range(t0, t1):
        popcount_sums(masks, t, planes, lo, hi, m, m2, pair, polarities, n_out, ws[t - t0], c2s[t - t0], vt, var_t,
                      first and t == t0)


@njit(cache=True, nogil=True)
def noisy_quantize(v, z, s, lo, lsb, step, top, out):  # pragma: no cover - numba
    """A buffered quantizer's conversion of the flat values ``v`` with their analog noise ``s * z`` (``s`` = 0: none)
    in one pass: ``x = v + s z``; a conversion clips where ``floor((x - lo) / lsb + 0.5)`` falls outside ``0 .. top``;
    the code ``clip(floor((x - lo) / step + 0.5), 0, top)`` (``step``: the quantizer's own LSB of its range) is written
    back as ``lo + code * step``. The IEEE operations of :meth:`cimsim.readouts.QuantizerOp.convert` and
    :class:`cimsim.devices.converters.Quantizer` in the same order: the same numbers. Returns the clipped count."""
    clipped = 0
    for i in range(v.size):
        x = v[i] + s * z[i] if s > 0 else v[i]
        raw = np.floor((x - lo) / lsb + 0.5)
        if raw < 0 or raw > top:
            clipped += 1
        c = np.floor((x - lo) / step + 0.5)
        c = 0.0 if c < 0 else top if c > top else c
        out[i] = lo + c * step
    return clipped
