"""Numba kernels of the crossbar engine's hot loop (the quantizing epilogue after each bit-plane GEMM).

Read noise is drawn inside the epilogue, one standard normal per conversion, so no array of draws is
written and read back. The draws come from our own generator:

* uniform bits: xoshiro256++ (Blackman and Vigna, "Scrambled linear pseudorandom number generators",
  ACM TOMS 47(4), 2021), a 256-bit state per noise stream, advanced in place;
* normals: the ziggurat method of Marsaglia and Tsang ("The ziggurat method for generating random
  variables", J. Stat. Softw. 5(8), 2000) with 256 layers, including its exact tail sampler and the
  exact wedge test, so the draws are standard normal in distribution (no approximation beyond the
  53-bit uniforms). The layer table is computed here from first principles (:func:`ziggurat_tables`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_U11 = np.uint64(11)
_U8 = np.uint64(8)
_U1 = np.uint64(1)
_U17 = np.uint64(17)
_MASK8 = np.uint64(0xFF)
_TWO_M53 = 2.0 ** -53


def ziggurat_tables(layers: int = 256) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(r, X, F, K): right edge r of the base layer, layer widths X (layers + 1; X[0] the base layer's
    virtual width v / f(r), X[1] = r, X[layers] = 0), F = f(X) with f(x) = exp(-x^2 / 2), and the integer
    acceptance thresholds K[i] = ceil(2^53 X[i+1] / X[i]) of the fast path.

    Every layer has the same area v = r f(r) + int_r^inf f; r is the root of "the top layer closes at
    height f(0) = 1", found by bisection (Marsaglia and Tsang quote r = 3.6541528853610088 for 256 layers).
    """
    f = lambda x: math.exp(-0.5 * x * x)  # noqa: E731

    def widths(r):
        v = r * f(r) + math.sqrt(math.pi / 2) * math.erfc(r / math.sqrt(2))
        x = [v / f(r), r]
        for _ in range(2, layers):
            y = f(x[-1]) + v / x[-1]
            if y >= 1.0:
                return None, v        # the layers reach the top too early: r too small
            x.append(math.sqrt(-2.0 * math.log(y)))
        return x, v

    lo, hi = 3.0, 4.5
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        x, v = widths(mid)
        if x is None or x[-1] * (1.0 - f(x[-1])) < v:   # top layer too small (or overflowing)
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-16:
            break
    r = hi
    x, v = widths(r)
    X = np.array(x + [0.0])
    F = np.exp(-0.5 * X * X)
    F[0] = 0.0                                           # unused for the base layer
    K = np.zeros(layers, dtype=np.uint64)
    for i in range(layers):
        K[i] = np.uint64(math.ceil(2.0 ** 53 * X[i + 1] / X[i]))
    return r, X, F, K


ZIG_R, ZIG_X, ZIG_F, ZIG_K = ziggurat_tables()
ZIG_W = ZIG_X[:-1] * 2.0 ** -53          # x = u53 * W[i] for a 53-bit integer u53


def seed_state(seed_sequence: np.random.SeedSequence) -> np.ndarray:
    """A xoshiro256++ state (4 uint64, not all zero) from a SeedSequence."""
    s = seed_sequence.generate_state(4, dtype=np.uint64)
    if not s.any():          # the one forbidden state (probability 2^-256)
        s[0] = 1
    return s


@njit(inline="always")
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(inline="always")
def _next(s0, s1, s2, s3):
    """One xoshiro256++ output and the advanced state."""
    result = _rotl(s0 + s3, 23) + s0
    t = s1 << _U17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    return result, s0, s1, s2, s3


@njit(nogil=True, cache=True)
def _normal_slow(r, s0, s1, s2, s3, K, W, X, F, R):
    """The rare ziggurat branches (about 1 % of draws): base-layer tail and wedge tests, with restarts."""
    while True:
        i = r & _MASK8
        u = r >> _U11
        x = float(u) * W[i]
        if u < K[i]:
            break
        if i == 0:   # the tail beyond R (Marsaglia 1964): x = R + a with a ~ Exp(R) truncated by b
            while True:
                r1, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
                r2, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
                a = -math.log((float(r1 >> _U11) + 1.0) * _TWO_M53) / R
                b = -math.log((float(r2 >> _U11) + 1.0) * _TWO_M53)
                if b + b > a * a:
                    break
            x = R + a
            break
        r2, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
        y = F[i] + float(r2 >> _U11) * _TWO_M53 * (F[i + 1] - F[i])
        if y < math.exp(-0.5 * x * x):
            break
        r, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
    if (r >> _U8) & _U1:
        x = -x
    return x, s0, s1, s2, s3


@njit(nogil=True, cache=True)
def _fill_normal(out, state, K, W, X, F, R):
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    for n in range(out.size):
        # the ziggurat's fast path (about 98.5 % of draws), written out here: bits 0-7 pick the layer,
        # bit 8 the sign, bits 11-63 the abscissa (a helper function returning the state was 20x slower)
        r, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
        i = r & _MASK8
        u = r >> _U11
        if u < K[i]:
            x = float(u) * W[i]
            if (r >> _U8) & _U1:
                x = -x
        else:
            x, s0, s1, s2, s3 = _normal_slow(r, s0, s1, s2, s3, K, W, X, F, R)
        out[n] = x
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3


def standard_normal(state: np.ndarray, n: int) -> np.ndarray:
    """``n`` standard normals (float64) from a xoshiro256++ ``state``, advanced in place: the draws of the
    fused epilogue, exposed for tests."""
    out = np.empty(n)
    _fill_normal(out, state, ZIG_K, ZIG_W, ZIG_X, ZIG_F, ZIG_R)
    return out


@njit(nogil=True, cache=True)
def _adc_rows(acc, v, std, full_std, noisy, r0, nb, pw, lo, lsb, top, state, K, W, X, F, R):
    n, m = v.shape
    inv = 1.0 / lsb      # lsb is a power of two: multiplying by its inverse is exact
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    z = np.empty(m)
    for i in range(n):
        g = r0 + i
        t = g // nb
        b = g - t * nb
        w = pw[t]
        if noisy:
            # one row of draws first (the generator is serial), then a branch-free loop the compiler
            # vectorizes
            for j in range(m):
                r, s0, s1, s2, s3 = _next(s0, s1, s2, s3)      # ziggurat fast path, as in _fill_normal
                k = r & _MASK8
                u = r >> _U11
                if u < K[k]:
                    x = float(u) * W[k]
                    if (r >> _U8) & _U1:
                        x = -x
                else:
                    x, s0, s1, s2, s3 = _normal_slow(r, s0, s1, s2, s3, K, W, X, F, R)
                z[j] = x
        if not noisy:
            for j in range(m):
                code = min(max(math.floor((float(v[i, j]) - lo) * inv + 0.5), 0.0), top)
                acc[b, j] += w * (lo + code * lsb)
        elif full_std:
            for j in range(m):
                val = float(v[i, j]) + float(std[i, j]) * z[j]
                code = min(max(math.floor((val - lo) * inv + 0.5), 0.0), top)
                acc[b, j] += w * (lo + code * lsb)
        else:
            sd = float(std[i, 0])
            for j in range(m):
                val = float(v[i, j]) + sd * z[j]
                code = min(max(math.floor((val - lo) * inv + 0.5), 0.0), top)
                acc[b, j] += w * (lo + code * lsb)
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3


def adc_accumulate_rows(acc, v, std, r0, nb, pw, lo, lsb, top, state) -> None:
    """acc[b] += pw[t] * ADC(v[i] + std[i] * z) for the stacked rows i of ``v`` (row r0 + i of a
    (cycles x batch) stack: cycle t = (r0 + i) // nb, example b = (r0 + i) % nb).

    Uniform quantizer, half-LSB thresholds, codes clipped to 0..top, reconstructed as ``lo + code * lsb``
    (``lsb`` a power of two). ``std`` is None (no read noise), (rows, 1) (one std per row) or v's shape;
    z is a standard normal drawn here from ``state`` (xoshiro256++, advanced in place), one per
    conversion, in row-major order.
    """
    noisy = std is not None
    if std is None:
        std = np.zeros((1, 1), dtype=v.dtype)
    _adc_rows(acc, v, std, std.shape[1] > 1, noisy, r0, nb, pw, float(lo), float(lsb), float(top), state,
              ZIG_K, ZIG_W, ZIG_X, ZIG_F, ZIG_R)



@njit(nogil=True, cache=True)
def _stack_digits(u, b0, b1, k0, k1, shifts, widths, signed, out, var, noisy, rowvar, sqsum):
    nb, T = b1 - b0, shifts.shape[0]
    nonzero = 0
    for t in range(T):
        sh = shifts[t]
        mask = (1 << widths[t]) - 1
        top = signed and t == T - 1
        half = 1 << (widths[t] - 1)
        full = 1 << widths[t]
        for b in range(nb):
            r = t * nb + b
            rv = 0.0
            for k in range(k1 - k0):
                d = (u[b0 + b, k0 + k] >> sh) & mask
                if top and d >= half:
                    d -= full
                out[r, k] = d
                d2 = d * d
                nonzero += d2 != 0
                sqsum[k] += d2
                if noisy:
                    rv += d2 * var[k]
            rowvar[r] = rv
    return nonzero


def stack_digits(u, b0, b1, k0, k1, shifts, widths, signed, out, var, sqsum):
    """The input digits of examples b0..b1 and rows k0..k1, all cycles stacked: out[t * nb + b, k] (the
    digits of :func:`cimsim.encoding.input_planes`, cut from ``u`` = the inputs with negative values
    taken modulo 2**input_bits). Also returns the read-noise variance of every stacked row,
    sum_k digit**2 * var[k] (float64; zeros when ``var`` is None), and the count of nonzero digits, and
    adds sum over stacked rows of digit**2 to ``sqsum[k]`` (int64)."""
    rowvar = np.empty(out.shape[0])
    noisy = var is not None
    nz = _stack_digits(u, b0, b1, k0, k1, shifts, widths, signed, out, np.zeros(1) if var is None else var, noisy,
                       rowvar, sqsum)
    return rowvar, int(nz)
