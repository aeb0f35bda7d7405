"""Numba helpers of the host path around the crossbars: a mapped convolution's integer patches in one pass, and the
row sums of integer inputs (the offset encoding's correction).

:meth:`cimsim.mappers.mapped.MappedLayer._patches` cuts the patches of the quantized activations with torch (pad, a
strided view, one copy, in float32; in float64 for codes wider than 24 bits) and the host path then converted them
to int64: three passes over the largest array of a LeNet-5 evaluation (its first convolution's 50,176 x 25 patches a
batch). :func:`patch_codes` writes the same int64 numbers directly (each value as ``int64(float32(code))`` where the
torch path cuts in float32, else the code itself) and 0 where the window reads the zero padding.
"""

from __future__ import annotations

import numpy as np

from cimsim import numba_target
from cimsim.fileio import numba_cache_fallback

numba_cache_fallback()   # before numba loads (see cimsim.kernels)
numba_target.configure()   # 512-bit vectors where the CPU has AVX-512 (cimsim.numba_target)
from numba import njit  # noqa: E402

# values a block of keep_magnitudes (our choice: a block of 64 rarely holds one of the largest 0.1 %)
KEEP_BLOCK = 64


@njit(nogil=True, cache=True)
def _patch_codes(x, kh, kw, sh, sw, dh, dw, top, left, Ho, Wo, f32, out):
    B, C, H, W = x.shape
    per = C // out.shape[0]   # channels of a group: group g's columns are out[g]'s
    for b in range(B):
        for i in range(Ho):
            for j in range(Wo):
                r = (b * Ho + i) * Wo + j
                for c in range(C):
                    row = out[c // per, r]
                    col = (c % per) * kh * kw
                    for p in range(kh):
                        y = i * sh + p * dh - top
                        inside = 0 <= y < H
                        for q in range(kw):
                            xx = j * sw + q * dw - left
                            if inside and 0 <= xx < W:
                                v = x[b, c, y, xx]
                                row[col] = np.int64(np.float32(v)) if f32 else np.int64(v)
                            else:
                                row[col] = 0
                            col += 1


def _windows(shape, kernel, stride, dilation, pad) -> tuple:
    """((kh, kw), (sh, sw), (dh, dw), top, left, Ho, Wo) of a convolution over inputs of ``shape`` (B, C, H, W) with
    ``pad`` = (left, right, top, bottom) as F.pad takes it."""
    H, W = int(shape[2]), int(shape[3])
    left, right, top, bottom = (int(v) for v in pad)
    kh, kw = (int(v) for v in kernel)
    sh, sw = (int(v) for v in stride)
    dh, dw = (int(v) for v in dilation)
    Ho = (H + top + bottom - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + left + right - dw * (kw - 1) - 1) // sw + 1
    return (kh, kw), (sh, sw), (dh, dw), top, left, Ho, Wo


def patch_codes(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
                pad: tuple[int, int, int, int], through_float32: bool = True, groups: int = 1) -> np.ndarray:
    """The patches (B * Ho * Wo, C * kh * kw) int64 of integer codes ``x`` (B, C, H, W) float64, in F.unfold's order
    (rows: example, output row, output column; columns: channel, kernel row, kernel column), with ``pad`` = (left,
    right, top, bottom) zeros as F.pad takes them (non-negative). Each value is ``int64(float32(code))`` with
    ``through_float32`` (what ``MappedLayer._patches(...).numpy().astype(np.int64)`` gives for codes of up to 24 bits,
    cut in float32), else ``int64(code)`` (wider codes, cut in float64). ``groups`` > 1: group-major, (groups,
    B * Ho * Wo, C / groups * kh * kw), group g's columns (channels g C / groups ...) each one contiguous array (a
    grouped convolution's per-group inputs)."""
    B, C = x.shape[:2]
    (kh, kw), (sh, sw), (dh, dw), top, left, Ho, Wo = _windows(x.shape, kernel, stride, dilation, pad)
    out = np.empty((groups, B * max(Ho, 0) * max(Wo, 0), C // groups * kh * kw), dtype=np.int64)
    if out.size:
        rows = max(Ho, 0) * max(Wo, 0)

        def cut(r):   # examples b0..b1 into their own rows: any split writes the same numbers
            b0, b1 = r
            _patch_codes(x[b0:b1], kh, kw, sh, sw, dh, dw, top, left, Ho, Wo, bool(through_float32),
                         out[:, b0 * rows:b1 * rows])

        _over_threads(cut, B, out.size // B)
    return out[0] if groups == 1 else out


@njit(nogil=True, cache=True)
def _drawn_codes(x, bs, ys, xs, kh, kw, dh, dw, c0, per, scale, lo, hi, out):
    C = out.shape[0] * per
    H, W = x.shape[2], x.shape[3]
    kk = kh * kw
    for n0 in range(0, bs.shape[0], 256):   # a block of rows, channel by channel: each channel's plane stays in cache
        n1 = min(n0 + 256, bs.shape[0])
        for cc in range(C):
            g, c, col0 = cc // per, c0 + cc, (cc % per) * kk
            for n in range(n0, n1):
                b, row = bs[n], out[g, n]
                for p in range(kh):
                    y = ys[n] + p * dh
                    inside = 0 <= y < H
                    for q in range(kw):
                        xx = xs[n] + q * dw
                        if inside and 0 <= xx < W:
                            row[col0 + p * kw + q] = np.int64(min(max(np.rint(np.float64(x[b, c, y, xx]) / scale),
                                                                      lo), hi))
                        else:
                            row[col0 + p * kw + q] = 0


def drawn_patch_codes(x: np.ndarray, rows: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                      dilation: tuple[int, int], pad: tuple[int, int, int, int], scale: float, lo: int, hi: int,
                      out: np.ndarray, groups: int = 1, first: int = 0) -> None:
    """The patch rows ``rows`` (int64, in F.unfold's order: example, output row, output column) of the activation
    ``x`` (B, C, H, W), quantized, into ``out`` (groups ``first`` .. ``first`` + len(out) of ``groups``, len(rows),
    C / groups * kh * kw) int64, group-major as :func:`patch_codes` with ``groups``: each value
    ``clamp(rint(float64(v) / scale), lo, hi)``, the code ``MappedLayer.quantize_input`` gives it (an IEEE division,
    ties to even as ``torch.round``), and 0 where the window reads the zero padding (whose code is 0). Only the drawn
    rows are read: no quantized or padded copy of the activation, no full patch matrix."""
    C = x.shape[1]
    (kh, kw), (sh, sw), (dh, dw), top, left, Ho, Wo = _windows(x.shape, kernel, stride, dilation, pad)
    rows = np.asarray(rows, dtype=np.int64)
    bs, ys, xs = rows // (Ho * Wo), (rows // Wo) % Ho * sh - top, rows % Wo * sw - left   # each row's window
    per = C // groups
    if out.ndim != 3 or first + len(out) > groups or out.shape[1:] != (rows.size, per * kh * kw):
        raise ValueError(f"out {out.shape}: expected (at most {groups - first} groups, {rows.size}, {per * kh * kw})")
    if rows.size and len(out):
        _over_threads(lambda r: _drawn_codes(x, bs[r[0]:r[1]], ys[r[0]:r[1]], xs[r[0]:r[1]], kh, kw, dh, dw,
                                             first * per, per, float(scale), float(lo), float(hi),
                                             out[:, r[0]:r[1]]),
                      len(rows), len(out) * per * kh * kw)


@njit(nogil=True, cache=True)
def _one_column_products(p, w, out):
    G, R, K = p.shape
    for b0 in range(0, R, 256):   # a block of rows, group by group: the block's outputs stay in cache
        b1 = min(b0 + 256, R)
        for g in range(G):
            for r in range(b0, b1):
                s = 0.0
                for k in range(K):
                    s += np.float64(p[g, r, k]) * w[k, g]
                out[r, g] = s


def one_column_products(p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``out[:, g] = p[g].astype(float64) @ w[:, g]`` (rows, G) for group-major integer patches ``p`` (G, rows, K) and
    float64 weights ``w`` (K, G), one output column a group (a depthwise convolution), where every partial sum is an
    integer below 2**53: the exact integers BLAS gives group by group (+0.0 for a zero sum, as BLAS's zeroed
    accumulators give), in one pass instead of a product and a strided column write per group."""
    G, R, K = p.shape
    out = np.empty((R, G))
    if out.size:
        _over_threads(lambda r: _one_column_products(p[:, r[0]:r[1]], w, out[r[0]:r[1]]), R, G * K)
    return out


# values a part must hold before a host pass is split over the engine's threads (our choice: 2**17 int64 values,
# 1 MB, take about 0.1 ms a pass; below that the thread hand-over costs more than it saves)
SPLIT_VALUES = 1 << 17


def _over_threads(fn, n: int, per_item: int):
    """``fn((i0, i1))`` over consecutive ranges covering 0..n, on the engine's threads
    (:func:`cimsim.engine_threads.parallel_map`) where each range holds at least :data:`SPLIT_VALUES` values of
    ``per_item`` each; in one call otherwise. Returns the results in range order."""
    from cimsim.engine_threads import parallel_map, threads

    parts = int(max(1, min(threads(), n * max(per_item, 1) // SPLIT_VALUES, n)))
    edges = np.linspace(0, n, parts + 1).astype(np.int64)
    return parallel_map(fn, [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])])


@njit(nogil=True, cache=True)
def _keep_magnitudes(bits, tau, sign, shift):
    # bits: the values' IEEE patterns as signed integers; a magnitude's pattern (bits & ~sign) orders as it does, and
    # integer reductions vectorize where float min / max (NaN rules) do not. (b >> shift) & m: a negative value's
    # magnitude, else 0 (-0.0 is not negative)
    n, kept, negative = bits.size, 0, 0
    if tau < 0:   # every magnitude kept: in place
        for i in range(n):
            b = bits[i]
            m = b & ~sign
            negative = max(negative, (b >> shift) & m)
            bits[i] = m
        return n, negative > 0
    for b0 in range(0, n, KEEP_BLOCK):   # a block's largest magnitude first: few blocks hold one at or above tau
        b1 = min(n, b0 + KEEP_BLOCK)
        top = 0
        for i in range(b0, b1):
            b = bits[i]
            m = b & ~sign
            negative = max(negative, (b >> shift) & m)
            top = max(top, m)
        if top >= tau:
            for i in range(b0, b1):
                m = bits[i] & ~sign
                if m >= tau:
                    bits[kept] = m   # kept <= i: nothing unread is overwritten
                    kept += 1
    return kept, negative > 0


def keep_magnitudes(v: np.ndarray, tau: float) -> tuple[int, bool]:
    """One pass over the 1-d float array ``v``: the magnitudes ``|v| >= tau`` moved to its front in their order (its
    first ``count`` values; the rest is left as it is), and whether any value was negative: ``(count, negative)``.
    What ``v.min() < 0`` and ``a = abs(v); a[a >= tau]`` give, without the three passes and the mask; ``tau < 0``:
    every magnitude, in place."""
    if v.ndim != 1 or not v.flags.c_contiguous or v.dtype not in (np.float32, np.float64):
        raise ValueError("keep_magnitudes takes a contiguous 1-d float32 or float64 array")
    itype = np.int32 if v.dtype == np.float32 else np.int64
    sign = itype(np.iinfo(itype).min)
    t = np.array(abs(tau), dtype=v.dtype).view(itype)[()] if tau >= 0 else itype(-1)
    kept, negative = _keep_magnitudes(v.view(itype), t, sign, itype(8 * v.itemsize - 1))
    return int(kept), bool(negative)


@njit(nogil=True, cache=True)
def _int_row_sums(x, out):
    for i in range(x.shape[0]):
        s = np.int64(0)
        for k in range(x.shape[1]):
            s += x[i, k]
        out[i] = s


def int_row_sums(x: np.ndarray) -> np.ndarray:
    """``x.sum(axis=1, dtype=np.int64)`` of a 2-d array of integers that int64 holds (signed, or unsigned of at most 32
    bits), in one pass: numpy's reduction along a short last axis runs several times slower (1.15 against 0.22 ms for
    LeNet-5's 50,176 x 25 first-layer patches)."""
    out = np.empty(x.shape[0], dtype=np.int64)
    if x.size:
        _over_threads(lambda r: _int_row_sums(x[r[0]:r[1]], out[r[0]:r[1]]), x.shape[0], x.shape[1])
    else:
        out[:] = 0
    return out


@njit(nogil=True, cache=True)
def _int_bounds(flat):
    lo = flat[0]
    hi = flat[0]
    for i in range(1, flat.shape[0]):
        v = flat[i]
        lo = min(lo, v)
        hi = max(hi, v)
    return lo, hi


def int_bounds(a: np.ndarray) -> tuple[int, int]:
    """``(a.min(), a.max())`` of a non-empty int64 array in one pass over it (numpy makes two)."""
    flat = np.ascontiguousarray(a).reshape(-1)
    parts = _over_threads(lambda r: _int_bounds(flat[r[0]:r[1]]), flat.shape[0], 1)
    return int(min(p[0] for p in parts)), int(max(p[1] for p in parts))


@njit(nogil=True, cache=True)
def _int_bounds_row_sums(x, out):
    lo = x[0, 0]
    hi = x[0, 0]
    for i in range(x.shape[0]):
        s = np.int64(0)
        for k in range(x.shape[1]):
            v = x[i, k]
            s += v
            lo = min(lo, v)
            hi = max(hi, v)
        out[i] = s
    return lo, hi


def int_bounds_row_sums(x: np.ndarray) -> tuple[int, int, np.ndarray]:
    """``(x.min(), x.max(), x.sum(axis=1))`` of a C-contiguous 2-d int64 array with at least one column, in one pass
    over it (a crossbar's inputs where the offset mapping needs their row sums: :func:`int_bounds` and
    :func:`int_row_sums` made two, each waking the engine's threads)."""
    out = np.empty(x.shape[0], dtype=np.int64)
    parts = _over_threads(lambda r: _int_bounds_row_sums(x[r[0]:r[1]], out[r[0]:r[1]]), x.shape[0], x.shape[1])
    return int(min(p[0] for p in parts)), int(max(p[1] for p in parts)), out


def input_row_sums(x: np.ndarray, input_bits: int, sums: np.ndarray | None = None) -> np.ndarray:
    """``x.sum(axis=1, dtype=np.float64)`` of validated integer inputs (|x| < 2**input_bits), the same numbers: where
    every partial sum is an integer below 2**53 in magnitude the float sum is exact in any order, so it equals the
    integer sum, which int64 forms without a float copy of x (about 9x faster, :func:`cimsim.kernels_host.int_row_sums`;
    ``sums``: those integer sums where the caller has them, :func:`int_bounds_row_sums`)."""
    small = x.dtype.kind == "i" or (x.dtype.kind == "u" and x.dtype.itemsize < 8)   # held by int64 as they are
    if small and input_bits + max(1, x.shape[1]).bit_length() < 53:
        return (int_row_sums(x) if sums is None else sums).astype(np.float64)
    return x.sum(axis=1, dtype=np.float64)


@njit(nogil=True, cache=True)
def group_digits(u, b0, nb, k0, k1, shifts, widths, sext, g0, g1, out):  # pragma: no cover - numba
    """``out[g, b, k]`` = the sum over the cycles t of group g (``g0[g] .. g1[g]``) of ``place_t / place_{g0[g]}`` times
    the digit of input ``u[b0 + b, k0 + k]`` in cycle t (the unsigned digits of :func:`cimsim.kernels.stack_digits`;
    ``place``: :func:`cimsim.encoding.plane_weights`), in ``out``'s float type (exact: the caller's bounds,
    :func:`cimsim.calibration.grouped_products`): one pass for what a conversion of several cycles sums, so its value
    is one product of these with the levels. The cycles of a group read adjacent bits (``shifts[t + 1] = shifts[t] +
    widths[t]``), so that sum is the group's bit field of the digit source, sign-extended where ``sext[g]`` (a
    two's-complement sign cycle after others, summed in analog with its negative place value:
    :func:`cimsim.calibration.group_fields`)."""
    for g in range(g0.shape[0]):
        base = shifts[g0[g]]
        span = shifts[g1[g] - 1] + widths[g1[g] - 1] - base
        mask = (np.int64(1) << span) - 1
        top = sext[g] != 0       # the field's highest bit is the sign, subtracted
        sign = np.int64(1) << (span - 1)
        for b in range(nb):
            row = out[g, b]
            for k in range(k1 - k0):
                f = (np.int64(u[b0 + b, k0 + k]) >> base) & mask
                if top:
                    f = (f ^ sign) - sign
                row[k] = f

