"""Numba kernels of the crossbar engine's hot loop (the quantizing epilogue after each bit-plane GEMM).

Read noise is drawn inside the epilogue, one standard normal per conversion, so no array of draws is
written and read back. The draws come from our own generator, written so that the compiler vectorizes
every step (no branch, no table lookup, no call into libm):

* uniform bits, counter-based: the i-th 64-bit word of a stream is ``mix(key + i * gamma)``, the output
  function of SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
  OOPSLA 2014; ``mix`` is Stafford's variant 13 of the MurmurHash3 finalizer, as in Vigna's SplitMix64).
  Each stream has its own key and its own odd increment ``gamma``, so two streams are not shifted copies
  of one sequence. The state (:func:`seed_state`) is (key, gamma, counter, 0); drawing advances the
  counter in place.
* normals: the Box-Muller transform (Box and Muller, Ann. Math. Stat. 29(2), 1958) in float32, two normals
  ``r cos(theta)``, ``r sin(theta)`` per word, ``r = sqrt(-2 ln u)`` with u in (0, 1) on a 2^-31 grid
  offset by half a step (so |z| reaches sqrt(64 ln 2) = 6.66, as with cuRAND's 32-bit uniforms; the mass
  beyond is 3e-11; the GPU kernels' 20-bit radii stop at 5.40) and theta on a 2^-24 grid of
  its quadrant. ln, sin and cos are evaluated here by series whose truncation error is below float32's
  rounding (:func:`ln_unit`, :func:`sincos_quarter`; tested against libm), so the draws are standard normal
  in distribution to single precision, which is ample for noise that an ADC then rounds.

On this project's CPU (AVX-512) a draw costs about 0.6 ns on one thread, 1.0 ns with AVX2 (float64 with
53-bit uniforms, before: 1.4 and 2.5-2.9 ns; the scalar ziggurat before that: 1.6 ns; see BENCHMARKS.md).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from cimsim import numba_target
from cimsim.fileio import numba_cache_fallback

numba_cache_fallback()   # before numba loads: a read-only $HOME and package folder must not stop the import
numba_target.configure()   # 512-bit vectors where the CPU has AVX-512 (cimsim.numba_target)
from llvmlite import ir  # noqa: E402
from numba import njit, types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

# Stafford's mix13 constants and shifts (http://zimbry.blogspot.com/2011/09/better-bit-mixing-improving-on.html),
# the SplitMix64 output function
_MIX_M1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_M2 = np.uint64(0x94D049BB133111EB)
_TWO_M53 = 2.0 ** -53
# the normals' float32 constants (a Python float in a float32 expression would widen it to float64)
_F = np.float32
_LN2 = _F(math.log(2.0))
_SQRT2 = _F(math.sqrt(2.0))
_HALF_PI = _F(0.5 * math.pi)
_TWO_M31 = _F(2.0 ** -31)
_TWO_M24 = _F(2.0 ** -24)
_MANTISSA = np.int32(0x007FFFFF)
_ONE_BITS = np.int32(0x3F800000)        # the bits of 1.0f
# the kernels: fused multiply-add allowed, no Python division-by-zero checks (they stop vectorization)
_VEC = dict(fastmath={"contract"}, nogil=True, cache=True, error_model="numpy")
PAIRS = 256                            # pairs per vectorized pass: the buffers stay in L1


@intrinsic
def _bits_of(typingctx, x):
    """The int32 bit pattern of the float32 x."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@intrinsic
def _float_of(typingctx, b):
    """The float32 whose bit pattern is the int32 b."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@njit(inline="always")
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _MIX_M1
    z = (z ^ (z >> np.uint64(27))) * _MIX_M2
    return z ^ (z >> np.uint64(31))


# series coefficients (float32), highest power first: atanh(s) / s = 1 + s^2/3 + ... + s^8/9;
# (p - sin p) / p^3 = 1/3! - p^2/5! + ... + p^6/9!; (cos p - 1 + p^2/2) / p^4 = 1/4! - p^2/6! + p^4/8!
_ATANH_C = tuple(_F(1.0 / (2 * k + 1)) for k in range(4, -1, -1))                      # 1/9 ... 1
_SIN_C = tuple(_F(1.0 / math.factorial(2 * k + 1)) for k in range(4, 0, -1))           # 1/9! ... 1/3!
_COS_C = tuple(_F(1.0 / math.factorial(2 * k)) for k in range(4, 1, -1))               # 1/8! ... 1/4!


@njit(inline="always")
def _horner(x, c):
    """c[0] x^(n-1) + ... + c[n-1] by Horner's rule (c a tuple, unrolled by the compiler)."""
    s = c[0]
    for k in c[1:]:
        s = s * x + k
    return s


@njit(inline="always")
def _ln(x):
    """ln x for a positive normal float32: x = m 2^e with m in [sqrt(1/2), sqrt(2)), and
    ln m = 2 atanh(s) = 2 (s + s^3/3 + ... + s^9/9) with s = (m - 1) / (m + 1), |s| <= 0.1716;
    the first term left out, 2 s^11 / 11, is below 7e-10, a fortieth of float32's step at ln m's largest (0.35)."""
    b = _bits_of(x)
    e = (b >> 23) - np.int32(127)
    m = _float_of((b & _MANTISSA) | _ONE_BITS)          # [1, 2)
    big = m > _SQRT2
    m = m * _F(0.5) if big else m
    e = e + np.int32(1) if big else e
    s = (m - _F(1.0)) / (m + _F(1.0))
    return _F(e) * _LN2 + _F(2.0) * s * _horner(s * s, _ATANH_C)


@njit(inline="always")
def _sincos(p):
    """(sin p, cos p) for |p| <= pi/4 in float32 by their Taylor series to p^9 and p^8 (first terms left out:
    below 2e-9 and 3e-8, under float32's rounding of the results)."""
    p2 = p * p
    sn = p - p * p2 * _horner(-p2, _SIN_C)
    cs = _F(1.0) - _F(0.5) * p2 + p2 * p2 * _horner(-p2, _COS_C)
    return sn, cs


@njit(**_VEC)
def ln_unit(out, x):
    """out[i] = ln x[i] (positive normal float32s) with the generator's series: exposed for tests."""
    for i in range(x.size):
        out[i] = _ln(x[i])


@njit(**_VEC)
def sincos_quarter(s, c, p):
    """s[i], c[i] = sin p[i], cos p[i] (float32) for |p[i]| <= pi/4 with the generator's series: exposed for
    tests."""
    for i in range(p.size):
        s[i], c[i] = _sincos(p[i])


_GOLDEN = 0x9E3779B97F4A7C15           # 2^64 / phi, SplitMix64's increment
_MASK64 = (1 << 64) - 1


def _mix_int(z: int) -> int:
    """:func:`_mix` on a Python int (mod 2**64)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def seed_state(seed_sequence: np.random.SeedSequence) -> np.ndarray:
    """A generator state (key, gamma, counter = 0, 0) as 4 uint64 from a SeedSequence. gamma is odd and,
    as in Steele, Lea and Flood's mixGamma, has at least 24 bit transitions (a sparse increment would
    make neighbouring counters' inputs to ``mix`` too alike)."""
    key, gamma = (int(v) for v in seed_sequence.generate_state(2, dtype=np.uint64))
    gamma |= 1
    if bin(gamma ^ (gamma >> 1)).count("1") < 24:
        gamma ^= 0xAAAAAAAAAAAAAAAA
    return np.array([key, gamma, 0, 0], dtype=np.uint64)


@njit(inline="always")
def counter_uniform(key, gamma, ctr):
    """The ``ctr``-th uniform of stream (key, gamma) (uint64s): ``mix(key + ctr * gamma)``'s top 53 bits as a
    float in [0, 1) on a 2^-53 grid. A draw sits at a place fixed by what it is (the counter), so a kernel
    that names each draw's place gives the same numbers however the work is ordered or split. Callable from
    numba code and from Python."""
    return float(np.int64(_mix(key + ctr * gamma) >> np.uint64(11))) * _TWO_M53


class NoiseStreams:
    """The crossbar's normal streams, from its seed: one counter-based stream per call, ``call_stream()``
    (the key of call n is ``mix(key + n * golden)``). Both CPU paths place every draw by what it is: the fused
    epilogue (:func:`adc_accumulate_rows`) by (example, cycle, row block, column), the general path
    (:func:`placed_normals`, :class:`PlacedNormals`) by (example, conversion, column). So a seed gives the same
    numbers however a batch is split, on any number of threads.
    """

    def __init__(self, seeds: np.random.SeedSequence):
        # the fifth child, as when four numpy generators (the general path's old fixed shards) were spawned
        # first: the fused path's numbers for a seed stay what they were
        key, gamma, _, _ = seed_state(seeds.spawn(5)[-1])
        self.key, self.gamma, self.calls = int(key), int(gamma), 0

    def call_stream(self) -> tuple[int, int]:
        """(key, gamma) of the next call's counter-based stream (each call gets its own key)."""
        n = self.calls
        self.calls += 1
        return sub_key(self.key, n), self.gamma

    def fresh(self) -> "NoiseStreams":
        """A copy at the first call, as built (the streams of a crossbar that has not been read yet)."""
        out = object.__new__(NoiseStreams)
        out.key, out.gamma, out.calls = self.key, self.gamma, 0
        return out


def sub_key(key: int, n: int) -> int:
    """The key of sub-stream n of stream ``key``: ``mix(key + n * golden)`` (uint64 as a Python int)."""
    return _mix_int((int(key) + int(n) * _GOLDEN) & _MASK64)


@njit(**_VEC)
def _pass_words(r, ph, q, n, key, gamma, ctr):
    """Pass 1 of Box-Muller for pairs 0..n, pair i from the word w = mix(key + (ctr + 2i) gamma): the uniform
    u = (w's top 31 bits + 1/2) 2^-31 in (0, 1) (into r), the angle within its quadrant, in [-pi/4, pi/4), from
    bits 8..31 (into ph), and the quadrant from bits 0..1 (into q). Counter ctr + 2i + 1 is not drawn: a pair
    keeps the two places it has always had, so every caller's placement (two words a pair) stands."""
    # the mix inputs key + c * gamma as an induction (+ 2 gamma a pair, modulo 2**64: the same words); the
    # 31- and 24-bit integers go to float32 through int32, which AVX2 converts 8 at a time
    z = key + ctr * gamma
    step = np.uint64(2) * gamma
    for i in range(n):
        r[i], ph[i], q[i] = _word_parts(_mix(z))
        z += step


@njit(inline="always")
def _word_parts(w):
    """A word's uniform in (0, 1), angle within its quadrant and quadrant (see :func:`_pass_words`)."""
    low = np.int32(w & np.uint64(0xFFFFFFFF))
    return ((_F(np.int32(w >> np.uint64(33))) + _F(0.5)) * _TWO_M31,
            (_F((low >> 8) & np.int32(0xFFFFFF)) * _TWO_M24 - _F(0.5)) * _HALF_PI, low & np.int32(3))


@njit(**_VEC)
def _pass_words_at(r, ph, q, n, key, gamma, cw):
    """:func:`_pass_words` for pairs whose words sit at counters ``cw[0 .. n]`` (any counters)."""
    for i in range(n):
        r[i], ph[i], q[i] = _word_parts(_mix(key + cw[i] * gamma))


@njit(**_VEC)
def _pass_radius(r, n):
    for i in range(n):
        r[i] = math.sqrt(_F(-2.0) * _ln(r[i]))


@njit(**_VEC)
def _pass_rotate(zc, zs, r, ph, q, n):
    """zc[i], zs[i] = r (cos, sin)(theta) with theta = ph + q pi / 2: the quadrant turns (cos p, sin p)
    by q right angles. (zc and zs are two views: one array written at two offsets does not vectorize.)"""
    for i in range(n):
        sn, cs = _sincos(ph[i])
        k = q[i]
        turn = (k & 1) != 0
        a = sn if turn else cs
        b = cs if turn else sn
        sa = _F(-1.0) if ((k ^ (k >> 1)) & 1) != 0 else _F(1.0)   # cos(theta) < 0 in quadrants 1 and 2
        sb = _F(-1.0) if (k >> 1) != 0 else _F(1.0)               # sin(theta) < 0 in quadrants 2 and 3
        zc[i] = r[i] * a * sa
        zs[i] = r[i] * b * sb


@njit(nogil=True, cache=True)
def fill_normals_at(z, key, gamma, ctr, r, ph, q):
    """z = len(z) // 2 pairs of standard normals (the cosines in the first half, the sines in the second;
    len(z) even) from the words ctr, ctr + 1, ... of stream (key, gamma); returns the counter after them."""
    pairs = z.size // 2
    for p0 in range(0, pairs, r.size):
        n = min(r.size, pairs - p0)
        _pass_words(r, ph, q, n, key, gamma, ctr)
        _pass_radius(r, n)
        _pass_rotate(z[p0:p0 + n], z[pairs + p0:pairs + p0 + n], r, ph, q, n)
        ctr += np.uint64(2 * n)
    return ctr


@njit(nogil=True, cache=True)
def fill_normal_rows(zc, zs, key, gamma, ctrs, rows, pairs, r, ph, q, cw):
    """Rows i < ``rows`` of ``pairs`` pairs of normals from the words ``ctrs[i], ctrs[i] + 1, ...``: row i's cosines
    at ``zc[i pairs ...]``, its sines at ``zs[i pairs ...]``, the numbers :func:`fill_normals_at` puts in
    ``z[:pairs]`` and ``z[pairs:]``, made in passes over many rows at once (``cw``: uint64 scratch as long as ``r``).
    A row of 24 pairs alone (LeNet-5's first layer at ISAAC: 48 columns) spent most of its time outside the vector
    loops: 2.7 ns a normal against 0.8 in rows of 512 (BENCHMARKS.md, "Narrow rows' normals in batches")."""
    n = rows * pairs
    i, p = 0, 0
    for k0 in range(0, n, r.size):
        m = min(r.size, n - k0)
        k = 0
        while k < m:             # the pass's counters, one row's run at a time
            run = min(pairs - p, m - k)
            base = ctrs[i] + np.uint64(2 * p)
            for j in range(run):
                cw[k + j] = base + np.uint64(2 * j)
            k += run
            p += run
            if p == pairs:
                p = 0
                i += 1
        _pass_words_at(r, ph, q, m, key, gamma, cw)
        _pass_radius(r, m)
        _pass_rotate(zc[k0:k0 + m], zs[k0:k0 + m], r, ph, q, m)


@njit(inline="always")
def row_batch(columns):
    """Rows whose normals :func:`draw_batch` makes in one :func:`fill_normal_rows` for rows of ``columns`` draws: about
    4 x :data:`PAIRS` pairs where a row holds fewer than PAIRS / 2 pairs, else 0 (each row on its own)."""
    pairs = (columns + 1) // 2
    return max(1, 4 * PAIRS // pairs) if 0 < 2 * pairs < PAIRS else 0


@njit(nogil=True, cache=True)
def draw_batch(zc, zs, ctrs, cw, i, rows, first, nb, T, R, blk, e0, key, gamma, words, r, ph, q):
    """The draws of an ADC epilogue's rows i .. i + rows (stacked rows ``first + i ..``: cycle t, example b), row by
    row from the word ``(((e0 + b) T + t) R + blk) words`` on, into ``zc``/``zs`` by :func:`fill_normal_rows`
    (``ctrs``: at least ``rows`` long, ``cw``: as ``r``). The epilogues call it every :func:`row_batch` rows
    where that is not 0, and :func:`fill_normals_at` for each row where it is: the same numbers."""
    for a in range(rows):
        g = first + i + a
        t = g // nb
        b = g - t * nb
        ctrs[a] = ((np.uint64(e0 + b) * np.uint64(T) + np.uint64(t)) * np.uint64(R) + np.uint64(blk)) * np.uint64(words)
    fill_normal_rows(zc, zs, key, gamma, ctrs, rows, words // 2, r, ph, q, cw)


@njit(nogil=True, cache=True)
def _fill_normals(z, state, r, ph, q):
    """:func:`fill_normals_at` from a state (key, gamma, counter, 0), advancing its counter."""
    state[2] = fill_normals_at(z, state[0], state[1], state[2], r, ph, q)


def _buffers(pairs: int):
    return np.empty(pairs, np.float32), np.empty(pairs, np.float32), np.empty(pairs, dtype=np.int32)


@njit(inline="always")
def make_draw_buffers(columns):
    """The generator's scratch buffers (radius, angle, quadrant) for rows of ``columns`` draws: the last three
    arguments of :func:`adc_rows` (:data:`PAIRS` long where rows are batched, :func:`row_batch`)."""
    pairs = PAIRS if row_batch(columns) else min(PAIRS, (columns + 1) // 2)
    return np.empty(pairs, np.float32), np.empty(pairs, np.float32), np.empty(pairs, np.int32)


def draw_buffers(columns: int):
    """:func:`make_draw_buffers` from Python (its rule run as Python: a call into numba cost 70 us, 3 % of a CASCADE
    run that draws per conversion)."""
    return make_draw_buffers.py_func(columns)


def standard_normal(state: np.ndarray, n: int) -> np.ndarray:
    """``n`` standard normals (float64) from a generator ``state`` (:func:`seed_state`), advanced in
    place: the draws of the fused epilogue, exposed for tests."""
    out = np.empty(n + (n & 1))
    _fill_normals(out, state, *_buffers(PAIRS))
    return out[:n]


@njit(nogil=True, cache=True)
def _placed_rows(z, key, gamma, e0, slots, slot, r, ph, q):
    n, m = z.shape
    words = m + (m & 1)
    batch = row_batch(m)
    if batch:   # narrow rows: many at once (fill_normal_rows), the same numbers
        pairs = words // 2
        zc, zs = np.empty(batch * pairs, np.float32), np.empty(batch * pairs, np.float32)
        ctrs, cw = np.empty(batch, np.uint64), np.empty(r.size, np.uint64)
        for i0 in range(0, n, batch):
            rows = min(batch, n - i0)
            for a in range(rows):
                ctrs[a] = (np.uint64(e0 + i0 + a) * np.uint64(slots) + np.uint64(slot)) * np.uint64(words)
            fill_normal_rows(zc, zs, key, gamma, ctrs, rows, pairs, r, ph, q, cw)
            for a in range(rows):
                for j in range(min(m, pairs)):
                    z[i0 + a, j] = zc[a * pairs + j]
                for j in range(pairs, m):
                    z[i0 + a, j] = zs[a * pairs + j - pairs]
        return
    row = np.empty(words)
    for i in range(n):
        place = np.uint64(e0 + i) * np.uint64(slots) + np.uint64(slot)
        fill_normals_at(row, key, gamma, place * np.uint64(words), r, ph, q)
        z[i, :] = row[:m]


def placed_normals(shape: tuple[int, ...], key: int, gamma: int, e0: int, slots: int, slot: int) -> np.ndarray:
    """Standard normals (float64) of ``shape`` = (examples, ...) whose row i (example e0 + i) is the row of
    draws at place ``(e0 + i) * slots + slot`` of stream (key, gamma), each row ``prod(shape[1:])`` rounded up
    to even words long: what a draw is fixes where it sits, so any split of the examples gives the same
    numbers. The general CPU path keys its read noise by (example, conversion): ``slots`` conversions per
    example, ``slot`` this one (cycle group x conversion domain)."""
    n = int(shape[0])
    m = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    z = np.empty((n, m))
    if n and m:
        _placed_rows(z, np.uint64(key), np.uint64(gamma), int(e0), int(slots), int(slot),
                     *draw_buffers(m))
    return z.reshape(shape)


class PlacedNormals:
    """What a converter's own noise draws from on the general CPU path: ``standard_normal(shape)`` as a numpy
    Generator has it, the k-th call from sub-stream k + 1 of the call's key (sub-stream 0 is unused: the read
    noise uses the key itself), each at the places of :func:`placed_normals`. So a converter's draws (offset
    noise, a buffer's analog noise) depend on (example, conversion, column, which draw) and not on the split."""

    def __init__(self, key: int, gamma: int, e0: int, slots: int, slot: int):
        self.key, self.gamma, self.e0, self.slots, self.slot, self.draws = key, gamma, e0, slots, slot, 0

    def standard_normal(self, shape, dtype=np.float64) -> np.ndarray:
        shape = (shape,) if np.isscalar(shape) else tuple(shape)
        self.draws += 1
        z = placed_normals(shape, sub_key(self.key, self.draws), self.gamma, self.e0, self.slots, self.slot)
        return z.astype(dtype, copy=False)


@njit(nogil=True, cache=True)
def adc_rows(acc, v, std, full_std, noisy, r0, nb, pw, lo, lsb, top, key, gamma, e0, T, R, blk, r, ph, q):
    """The kernel of :func:`adc_accumulate_rows` (its arguments unpacked and typed; ``r, ph, q``:
    :func:`draw_buffers`), callable from other numba kernels (:func:`cimsim.kernels_tables.share_tables`)."""
    n, m = v.shape
    inv = 1.0 / lsb      # lsb is a power of two: multiplying by its inverse is exact
    # codes by np.floor, a float: math.floor is an int64 in numba, and converting it back for the clip was a scalar
    # conversion per lane without AVX-512 (the same codes: every column value is far below 2**63)
    words = m + (m & 1)  # words of one row of draws
    z = np.empty(words, np.float32)
    batch, pairs = row_batch(m) if noisy else 0, words // 2
    zc, zs = np.empty(batch * pairs, np.float32), np.empty(batch * pairs, np.float32)
    ctrs, cw = np.empty(batch, np.uint64), np.empty(r.size if batch else 0, np.uint64)
    clipped = 0
    for i in range(n):
        g = r0 + i
        t = g // nb
        b = g - t * nb
        w = pw[t]
        if noisy and batch:   # the row's draws (vectorized passes), then a branch-free loop the compiler vectorizes
            k = i % batch
            if k == 0:
                draw_batch(zc, zs, ctrs, cw, i, min(batch, n - i), r0, nb, T, R, blk, e0, key, gamma, words, r, ph, q)
            kp = k * pairs
            for j in range(pairs):     # (a slice assignment cost more than the draws)
                z[j] = zc[kp + j]
                z[pairs + j] = zs[kp + j]
        elif noisy:
            row = (np.uint64(e0 + b) * np.uint64(T) + np.uint64(t)) * np.uint64(R) + np.uint64(blk)
            fill_normals_at(z, key, gamma, row * np.uint64(words), r, ph, q)
        if not noisy:
            for j in range(m):
                raw = np.floor((float(v[i, j]) - lo) * inv + 0.5)
                clipped += (raw < 0.0) | (raw > top)
                acc[b, j] += w * (lo + min(max(raw, 0.0), top) * lsb)
        elif full_std:
            for j in range(m):
                raw = np.floor((float(v[i, j]) + float(std[i, j]) * z[j] - lo) * inv + 0.5)
                clipped += (raw < 0.0) | (raw > top)
                acc[b, j] += w * (lo + min(max(raw, 0.0), top) * lsb)
        else:
            sd = float(std[i, 0])
            for j in range(m):
                raw = np.floor((float(v[i, j]) + sd * z[j] - lo) * inv + 0.5)
                clipped += (raw < 0.0) | (raw > top)
                acc[b, j] += w * (lo + min(max(raw, 0.0), top) * lsb)
    return clipped


def adc_accumulate_rows(acc, v, std, r0, nb, pw, lo, lsb, top, draws) -> int:
    """acc[b] += pw[t] * ADC(v[i] + std[i] * z) for the stacked rows i of ``v`` (row r0 + i of a
    (cycles x batch) stack: cycle t = (r0 + i) // nb, example b = (r0 + i) % nb).

    Uniform quantizer, half-LSB thresholds, codes clipped to 0..top, reconstructed as ``lo + code * lsb``
    (``lsb`` a power of two). ``std`` is None (no read noise), (rows, 1) (one std per row) or v's shape;
    z is a standard normal, one per conversion, drawn here at a place fixed by what it is:
    ``draws = (key, gamma, e0, T, R, block)`` names the stream and says that example b is example e0 + b of
    the call, of T cycles and R row blocks, in row block ``block``; the row of draws of (example e, cycle t)
    starts at word ``((e * T + t) * R + block) * (columns rounded up to even)``. So the numbers do not depend
    on how the batch is split over threads. Returns the number of conversions that clipped (raw code below 0
    or above ``top``).
    """
    noisy = std is not None
    if std is None:
        std = np.zeros((1, 1), dtype=v.dtype)
    key, gamma, e0, T, R, blk = draws
    return adc_rows(acc, v, std, std.shape[1] > 1, noisy, r0, nb, pw, float(lo), float(lsb), float(top),
                     np.uint64(key), np.uint64(gamma), int(e0), int(T), int(R), int(blk),
                     *draw_buffers(v.shape[1]))


@njit(nogil=True, cache=True)
def _stack_digits(u, b0, b1, k0, k1, shifts, widths, out, var, noisy, rowvar, sqsum):
    nb, T = b1 - b0, shifts.shape[0]
    nonzero = 0
    for t in range(T):
        sh = shifts[t]
        mask = (1 << widths[t]) - 1
        for b in range(nb):
            r = t * nb + b
            # two passes over the row: the digits (a loop the compiler vectorizes: the digit goes to float through
            # int32, which AVX2 converts in vectors, unlike int64), then the variance, a sum in row order
            for k in range(k1 - k0):
                d = (u[b0 + b, k0 + k] >> sh) & mask
                out[r, k] = np.int32(d)
                d2 = d * d
                nonzero += d2 != 0
                sqsum[k] += d2
            rv = 0.0
            if noisy:
                for k in range(k1 - k0):
                    d = float(out[r, k])   # the digit, exact in float32 and float64
                    rv += (d * d) * var[k]
            rowvar[r] = rv
    return nonzero


def stack_digits(u, b0, b1, k0, k1, shifts, widths, out, var, sqsum):
    """The input digits of examples b0..b1 and rows k0..k1, all cycles stacked: out[t * nb + b, k] (the unsigned
    digits of :func:`cimsim.encoding.input_planes`, bits ``shifts[t] ..`` of ``u`` = the inputs with negative values
    taken modulo 2**input_bits; ``shifts``/``widths``: :func:`cimsim.encoding.plane_layout`). Also returns the
    read-noise variance of every stacked row, sum_k digit**2 * var[k] (float64; zeros when ``var`` is None), and the
    count of nonzero digits, and adds sum over stacked rows of digit**2 to ``sqsum[k]`` (int64)."""
    rowvar = np.empty(out.shape[0])
    noisy = var is not None
    nz = _stack_digits(u, b0, b1, k0, k1, shifts, widths, out, np.zeros(1) if var is None else var, noisy, rowvar,
                       sqsum)
    return rowvar, int(nz)


# digit tables up to this many input bits (2**16 values: two int64 tables of 0.5 MB each); wider inputs count
# their digits with stack_digits. Our choice: ISAAC's 16-bit inputs fit.
TABLE_BITS = 16


@lru_cache(maxsize=64)   # one copy per spec shared by every crossbar (a network may hold thousands); never written
def digit_tables(input_bits: int, dac_bits: int, signed: bool, encoding: str = "twos"
                 ) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """Per digit-source value u (:func:`cimsim.encoding.digit_source`): (nonzero digits of u over the cycles, sum of
    its digits**2, whether every digit is one bit), the digits cut as :func:`stack_digits` cuts them; None above
    :data:`TABLE_BITS` bits."""
    from cimsim.encoding import plane_layout, source_bits

    if source_bits(input_bits, signed, encoding) > TABLE_BITS:
        return None
    shifts, widths = plane_layout(input_bits, dac_bits, signed, encoding)
    u = np.arange(1 << source_bits(input_bits, signed, encoding), dtype=np.int64)
    nz, sq = np.zeros_like(u), np.zeros_like(u)
    for sh, w in zip(shifts, widths):
        d = (u >> int(sh)) & ((1 << int(w)) - 1)
        nz += d != 0
        sq += d * d
    # compact tables stay in cache (two int64 tables of 2**16 entries are 1 MB): int8 counts, int32 squares where
    # they fit
    # one-bit digits (every width 1): both counts are the set bits, which digit_tally counts without the tables
    return nz.astype(np.int8), sq.astype(np.int32) if sq.max() < 2 ** 31 else sq, bool(np.all(widths == 1))


@njit(inline="always")
def _popcount(v):
    """Set bits of a non-negative int64 below 2**62 (SWAR: branch-free, vectorizes on AVX2)."""
    v = v - ((v >> 1) & 0x5555555555555555)
    v = (v & 0x3333333333333333) + ((v >> 2) & 0x3333333333333333)
    v = (v + (v >> 4)) & 0x0F0F0F0F0F0F0F0F
    return (v * 0x0101010101010101) >> 56


@njit(nogil=True, cache=True)
def _table_tally(u, edges, blocks, nz_tab, sq_tab, bit_planes, signed_wrap, split, xf, nz, sq, with_xf):
    half = signed_wrap // 2
    low = (1 << split) - 1
    K = u.shape[1]
    nz_row = np.zeros(K, dtype=np.int64)   # a shard's non-zero digits per row, added to its blocks at the shard's end
    for j in range(edges.shape[0] - 1):
        sq_j = sq[j]
        for b in range(edges[j], edges[j + 1]):
            ub = u[b]
            if bit_planes:   # one-bit digits: non-zero digits = digit**2 = set bits
                for k in range(K):
                    sq_j[k] += _popcount(ub[k])
            else:
                for k in range(K):
                    nz_row[k] += nz_tab[ub[k]]
                    sq_j[k] += sq_tab[ub[k]]
            if with_xf:
                xb = xf[b]
                if split:
                    for k in range(K):
                        xb[k] = (ub[k] & low) - (ub[k] >> split)
                else:
                    for k in range(K):
                        xb[k] = ub[k] - signed_wrap if signed_wrap and ub[k] >= half else ub[k]
        for k in range(K):
            nz[blocks[k], j] += sq_j[k] if bit_planes else nz_row[k]
            nz_row[k] = 0


def digit_tally(u, edges, row_blocks, tables, signed_wrap: int = 0, numbers: bool = True, split: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """What :func:`stack_digits` counts, without cutting the digits, for each shard of examples edges[j]..edges[j + 1]:
    (nonzero digits per row block and shard (blocks, shards), sum of digit**2 over the cycles and the shard's examples
    per row (shards, rows), both int64, and with ``numbers`` the inputs as float64 numbers: ``u`` less ``signed_wrap``
    (2**input_bits for signed inputs, else 0) where ``u`` holds a negative value, or with ``split`` (a - 1 for split
    signed inputs) ``u``'s low ``split`` bits less the rest, else None); ``tables`` from :func:`digit_tables`."""
    edges = np.asarray(edges, dtype=np.int64)
    blocks = np.zeros(u.shape[1], dtype=np.int64)
    for i, (k0, k1) in enumerate(row_blocks):
        blocks[k0:k1] = i
    nz = np.zeros((len(row_blocks), len(edges) - 1), dtype=np.int64)
    sq = np.zeros((len(edges) - 1, u.shape[1]), dtype=np.int64)
    xf = np.empty(u.shape if numbers else (1, 1), dtype=np.float64)
    _table_tally(u, edges, blocks, tables[0], tables[1], tables[2], int(signed_wrap), int(split), xf, nz, sq, numbers)
    return nz, sq, xf if numbers else None
