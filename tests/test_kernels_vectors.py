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


def test_rows_of_normals_made_in_batches_are_each_rows_own():
    """fill_normal_rows (many narrow rows' normals in passes over all of them) gives each row the numbers
    fill_normals_at gives it alone, bit for bit, for any row length and counters; row_batch takes narrow rows only."""
    rng = np.random.default_rng(3)
    key, gamma = np.uint64(0x243F6A8885A308D3), np.uint64(0x9E3779B97F4A7C15)
    for pairs in (1, 3, 24, 100, 127, 300):
        rows = 37
        ctrs = rng.integers(0, 2 ** 40, size=rows).astype(np.uint64) * np.uint64(2)
        zc, zs = np.empty(rows * pairs, np.float32), np.empty(rows * pairs, np.float32)
        r, ph, q = K._buffers(K.PAIRS)
        K.fill_normal_rows(zc, zs, key, gamma, ctrs, rows, pairs, r, ph, q, np.empty(K.PAIRS, np.uint64))
        for i in range(rows):
            z = np.empty(2 * pairs, np.float32)
            K.fill_normals_at(z, key, gamma, ctrs[i], *K.draw_buffers(2 * pairs))
            np.testing.assert_array_equal(z[:pairs], zc[i * pairs:(i + 1) * pairs], err_msg=f"{pairs} pairs, row {i}")
            np.testing.assert_array_equal(z[pairs:], zs[i * pairs:(i + 1) * pairs], err_msg=f"{pairs} pairs, row {i}")
    assert K.row_batch(48) == 4 * K.PAIRS // 24 and K.row_batch(7) == 4 * K.PAIRS // 4
    assert K.row_batch(K.PAIRS) == 0 and K.row_batch(512) == 0 and K.row_batch(0) == 0
    assert K.draw_buffers(48)[0].size == K.PAIRS and K.draw_buffers(512)[0].size == K.PAIRS
    assert K.draw_buffers(300)[0].size == 150


def test_narrow_and_wide_rows_epilogue_give_per_row_draws():
    """adc_accumulate_rows on rows of 48 columns (draws made in batches) equals the same epilogue row by row (each
    row alone: one row per call, a batch of one), noisy, with per-row and per-cell deviations."""
    rng = np.random.default_rng(4)
    nb, T, cols = 29, 3, 48
    v = rng.normal(0.0, 8.0, size=(T * nb, cols)).astype(np.float32)
    pw = 2.0 ** np.arange(T)
    for std in (np.full((T * nb, 1), 0.7), rng.uniform(0.1, 2.0, size=(T * nb, cols))):
        draws = (123456789, 0x9E3779B97F4A7C15, 5, T, 2, 1)
        whole = np.zeros((nb, cols))
        c_whole = K.adc_accumulate_rows(whole, v, std, 0, nb, pw, -20.0, 0.25, 255.0, draws)
        rows = np.zeros((nb, cols))
        c_rows = sum(K.adc_accumulate_rows(rows, v[i:i + 1], std[i:i + 1], i, nb, pw, -20.0, 0.25, 255.0, draws)
                     for i in range(T * nb))
        np.testing.assert_array_equal(whole, rows)
        assert c_whole == c_rows


def test_placed_normals_of_narrow_rows_are_each_places_own():
    """The general path's placed draws (rows made in batches where they are narrow) equal each place's row made alone
    by fill_normals_at, for narrow and wide rows."""
    key, gamma = 0x243F6A8885A308D3, 0x9E3779B97F4A7C15
    for m in (1, 5, 48, 130, 255, 600):
        n, slots, slot, e0 = 23, 7, 3, 11
        z = K.placed_normals((n, m), key, gamma, e0, slots, slot)
        words = m + (m & 1)
        for i in range(n):
            row = np.empty(words)
            K.fill_normals_at(row, np.uint64(key), np.uint64(gamma), np.uint64(((e0 + i) * slots + slot) * words),
                              *K._buffers(K.PAIRS))
            np.testing.assert_array_equal(row[:m], z[i], err_msg=f"{m} columns, row {i}")
