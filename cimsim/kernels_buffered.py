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
"""

from __future__ import annotations

import numpy as np
from numba import njit

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
