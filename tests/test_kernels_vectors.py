"""The fused epilogue's kernels written for short vectors (AVX2: no 64-bit integer product, no int64-to-double
conversion): the numbers of the definitions they implement."""

import math

import numpy as np

from cimsim import kernels as K

_MASK = (1 << 64) - 1


def _words(key: int, gamma: int, n: int) -> list[int]:
    return [K._mix_int((key + c * gamma) & _MASK) for c in range(n)]


def test_normals_are_box_muller_of_the_counter_words():
    """Pair i of the draws is r cos and r sin of the word w = mix(key + 2i gamma) (the counter as an induction, key +
    c gamma stepped by 2 gamma, gives the same words as the product): u from w's top 31 bits, the angle's quadrant
    from bits 0-1 and its place in the quadrant from bits 8-31, worked out here in float64."""
    state = K.seed_state(np.random.SeedSequence(11))
    key, gamma = int(state[0]), int(state[1])
    n = 2 * 1000
    z = K.standard_normal(state.copy(), n)
    w = _words(key, gamma, n)
    pairs = n // 2
    for i in range(pairs):
        word = w[2 * i]
        u = ((word >> 33) + 0.5) * 2.0 ** -31
        low = word & 0xFFFFFFFF
        theta = (((low >> 8) * 2.0 ** -24) - 0.5) * (math.pi / 2) + (low & 3) * (math.pi / 2)
        r = math.sqrt(-2.0 * math.log(u))
        # float32 arithmetic: within a few of its roundings of r; a wrong word or bit field would be off by O(1)
        assert abs(z[i] - r * math.cos(theta)) <= 2e-6 * max(1.0, r)
        assert abs(z[pairs + i] - r * math.sin(theta)) <= 2e-6 * max(1.0, r)


def test_fused_adc_codes_and_clips_exactly():
    """acc[b] += pw[t] * (lo + clip(floor((v + std z - lo) / lsb + 1/2), 0, top) * lsb), clipped = codes off 0..top,
    with z the draws at (example, cycle, block) placed as documented; against numpy, to the bit."""
    rng = np.random.default_rng(3)
    T, nb, m, R, blk, e0 = 4, 5, 33, 3, 2, 7
    v = (rng.integers(-80, 400, (T * nb, m)) + rng.choice([0.0, 0.5, 0.25, -0.5], (T * nb, m))).astype(np.float32)
    pw = 2.0 ** np.arange(T)
    lo, lsb, top = -16.0, 2.0, 127.0
    key, gamma = 0x1234567, 0x9E3779B97F4A7C15
    for std in (None, np.full((T * nb, 1), 0.7), rng.random((T * nb, m)) * 2):
        acc = np.zeros((nb, m))
        clipped = K.adc_accumulate_rows(acc, v, std, 0, nb, pw, lo, lsb, top, (key, gamma, e0, T, R, blk))
        want, clips = np.zeros((nb, m)), 0
        for r in range(T * nb):
            t, b = divmod(r, nb)
            x = v[r].astype(np.float64)
            if std is not None:
                row = ((e0 + b) * T + t) * R + blk
                z = K.placed_normals((1, m), key, gamma, row, 1, 0)[0]
                x = x + (std[r, 0] if std.shape[1] == 1 else std[r]) * z
            raw = np.floor((x - lo) * (1.0 / lsb) + 0.5)
            clips += int(np.sum((raw < 0) | (raw > top)))
            want[b] += pw[t] * (lo + np.clip(raw, 0, top) * lsb)
        assert clipped == clips and np.array_equal(acc, want)
        if std is None:
            assert 0 < clips < T * nb * m
