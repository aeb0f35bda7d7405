"""The partial-sum fine-tune's comparator decisions on the CPU, summed in the same pass
(:class:`cimsim.mappers.qat_ops.DecisionSum`).

A row block's partial sums ``ps`` (cycles T, positions M, slices x outputs J = S x O) are divided by their column
scales, decided (ternary ``(u > thr) - (u < -thr)``, the threshold fixed or learned per column scale, or binary
``+-1``), weighted by ``alpha x coef`` and summed over cycles and slices into (M, O); backward, LSQ's straight-through
gradients (:class:`~cimsim.mappers.qat_ops.ScaledDecision`) and a learned threshold's dithered-step gradient
(:class:`~cimsim.mappers.qat_ops.ThresholdDecision`).
Eager torch did that as some ten passes over (T, M, S, O) tensors and kept the weighted decisions for the sum's
backward; here one pass forward and one backward, the decisions recomputed from ``ps`` (BENCHMARKS.md, "The
fine-tune's decisions in one pass").

The elementwise values are torch's bit for bit (the same IEEE operations on the same operands: ``u = ps / alpha``,
``g x coef``, the gradient of ``ps``); only the sums' order differs (the output over cycles and slices, the column
scales' and thresholds' gradients over positions), which moves them by float rounding. Positions go in blocks of
:data:`BLOCK`, each block's gradients summed apart and the blocks' sums added in order, so the numbers do not depend
on how many threads take the blocks.
"""

from __future__ import annotations

import numpy as np

from cimsim import numba_target
from cimsim.fileio import numba_cache_fallback

numba_cache_fallback()   # before numba loads (see cimsim.kernels)
numba_target.configure()   # 512-bit vectors where the CPU has AVX-512 (cimsim.numba_target)
from numba import njit  # noqa: E402

# positions a block (our choice): one block's partial sums of a 24-column layer are 4 x 2048 x 24 x 4 bytes = 0.8 MB
BLOCK = 2048


@njit(cache=True, nogil=True)
def decision_sums(ps, alpha, w, thr, binary, y, m0, m1):
    """Positions ``m0 .. m1 - 1``: ``y[m, o] = sum_t sum_s D(ps[t, m, s O + o] / alpha) w[t, s O + o]``.
    ``ps`` (T, M, J); ``alpha`` and ``thr`` (Ta, J), Ta = 1 or T (one scale per cycle), ``thr`` the comparators'
    thresholds in units of alpha (ternary); ``w`` (T, J) = alpha x coef (torch's product); ``y`` (M, O), written."""
    T, J, O, Ta = ps.shape[0], ps.shape[2], y.shape[1], alpha.shape[0]
    q = np.empty(J, ps.dtype)
    for m in range(m0, m1):
        for o in range(O):
            y[m, o] = 0.0
    for t in range(T):
        a, th, wt = alpha[t if Ta > 1 else 0], thr[t if Ta > 1 else 0], w[t]
        for m in range(m0, m1):
            p = ps[t, m]
            if binary:
                for j in range(J):
                    u = p[j] / a[j]
                    q[j] = (ps.dtype.type(2.0) * ps.dtype.type(u > 0) - ps.dtype.type(1.0)) * wt[j]
            else:
                for j in range(J):
                    u = p[j] / a[j]
                    q[j] = (ps.dtype.type(u > th[j]) - ps.dtype.type(u < -th[j])) * wt[j]
            for s in range(J // O):
                for o in range(O):
                    y[m, o] += q[s * O + o]


@njit(cache=True, nogil=True)
def decision_grads(ps, alpha, c, thr, width, learn, binary, g, gps, ga, gt, shares, gz, m0, m1):
    """Backward of :func:`decision_sums` for positions ``m0 .. m1 - 1``: ``gps[t, m, j]`` = ``g[m, o] c[t, j]``
    where ``|u| <= 1``, else 0 (written); ``ga[ta, j]`` += ``g[m, o] c[t, j] (D - u)`` inside, ``(D)`` outside,
    summed over the block's positions (and cycles where ``alpha`` has one row). ``c`` (T, J): coef per column.
    ``learn``: the thresholds' gradient too, ``gt[ta, j]`` += ``g c alpha near (-sign(u) / (2 w))``, ``near`` where
    ``||u| - thr| < w``, ``w = width[ta, j]`` (:class:`cimsim.mappers.qat_ops.ThresholdDecision`'s, in its order).
    ``shares`` (T,), non-empty: the inputs' straight-through gradient too, ``gz[m, j]`` (zeroed by the caller) +=
    ``shares[t] gps[t, m, j]``, cycle after cycle (the gradient of the zero-valued term ``shares_t z`` the partial
    sums carry for it, :meth:`cimsim.mappers.qat._PSQ.partial_sums`)."""
    T, J, O, Ta = ps.shape[0], ps.shape[2], g.shape[1], alpha.shape[0]
    one = ps.dtype.type(1.0)
    ge = np.empty(J, ps.dtype)
    ste = shares.size > 0
    for t in range(T):
        r = t if Ta > 1 else 0
        a, th, wd, ct, gat, gtt = alpha[r], thr[r], width[r], c[t], ga[r], gt[r]
        sh = shares[t] if ste else ps.dtype.type(0.0)
        for m in range(m0, m1):
            for s in range(J // O):
                for o in range(O):
                    ge[s * O + o] = g[m, o]
            p = ps[t, m]
            gp = gps[t, m]
            for j in range(J):
                u = p[j] / a[j]
                if binary:
                    d = ps.dtype.type(2.0) * ps.dtype.type(u > 0) - one
                else:
                    d = ps.dtype.type(u > th[j]) - ps.dtype.type(u < -th[j])
                gc = ge[j] * ct[j]
                inside = ps.dtype.type(abs(u) <= one)
                gp[j] = gc * inside
                gat[j] += gc * (d - u * inside)
                if learn:
                    near = ps.dtype.type(abs(abs(u) - th[j]) < wd[j])
                    gtt[j] += gc * a[j] * near * (-np.sign(u) / (ps.dtype.type(2.0) * wd[j]))
            if ste:
                gzm = gz[m]
                for j in range(J):
                    gzm[j] += sh * gp[j]


@njit(cache=True, nogil=True)
def cut_planes(x, shifts, widths, out, m0, m1):
    """Rows ``m0 .. m1 - 1`` of the integers ``x`` (M, K) (floats holding them) as the fine-tune's input planes,
    ``out[t M + m, k]`` = digit t of ``x[m, k]``: ``(x >> shifts[t]) & (2**widths[t] - 1)`` in two's complement
    (unsigned digits; a signed input's sign bit is a cycle of its own, :func:`cimsim.encoding.plane_layout`); the
    numbers of :func:`cimsim.mappers.qat_ops.bit_planes` (its floor and remainder of exact integers), cut in one
    pass."""
    T, M, K = shifts.size, x.shape[0], x.shape[1]
    for t in range(T):      # plane after plane: rows written in order (a loop the compiler vectorizes)
        sh, mask = shifts[t], (np.int64(1) << widths[t]) - 1
        for m in range(m0, m1):
            src, dst = x[m], out[t * M + m]
            for k in range(K):
                dst[k] = (np.int64(src[k]) >> sh) & mask
