"""cimsim.kernels_shares: a shard's outputs written in its thread's kernel are numpy's numbers for the same
expression, bit for bit, the reads' conductance is the row-order sum, and threads taking shards from one counter take
each exactly once."""

import threading

import numpy as np
import pytest
from numba import njit

from cimsim.kernels_shares import finish_rows, most_examples, row_conductance, stack_rows, take_next


@njit(nogil=True)
def _take_all(counter, n, taken, who, me):
    got = 0
    while True:
        j = take_next(counter)
        if j >= n:
            break
        taken[j] += 1
        who[j] = me
        got += 1
    return got


def test_threads_taking_from_one_counter_take_every_shard_once():
    n, threads = 200_000, 4
    counter, taken, who = np.zeros(1, dtype=np.int64), np.zeros(n, dtype=np.int64), np.full(n, -1)
    got = [0] * threads

    def run(k):
        got[k] = _take_all(counter, n, taken, who, k)

    pool = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert (taken == 1).all() and sum(got) == n and (who >= 0).all()
    assert counter[0] == n + threads                     # each thread's last ask finds none left
    assert most_examples(np.array([0, 3, 10, 12])) == 7


@pytest.mark.parametrize("slices,with_offset", [(1, False), (4, True), (8, True)])
def test_finish_rows_equals_numpys_weighted_slice_sum(slices, with_offset):
    rng = np.random.default_rng(5)
    nb, n_out, b0, B = 13, 7, 5, 30
    acc = rng.standard_normal((nb, slices * n_out)) * 1e3
    rw = rng.standard_normal(slices * n_out)
    row_sums = rng.integers(0, 2 ** 20, size=B).astype(np.float64)
    offset = 128.0
    want = (acc * rw).reshape(nb, -1, n_out).sum(axis=1)
    if with_offset:
        want -= offset * row_sums[b0:b0 + nb, None]
    y = np.full((B, n_out), 7.0)
    finish_rows(acc, rw, n_out, offset, row_sums, with_offset, b0, y)
    np.testing.assert_array_equal(y[b0:b0 + nb], want)
    assert (y[:b0] == 7.0).all() and (y[b0 + nb:] == 7.0).all()        # only the shard's rows written


def test_row_conductance_is_the_row_order_sum():
    rng = np.random.default_rng(6)
    sq = rng.integers(0, 4096, size=117)
    g = rng.random(117) * 1e-4
    want = 0.0
    for k in range(117):
        want += float(sq[k]) * g[k]
    assert row_conductance(sq, g) == want
    assert row_conductance(sq[:0], g[:0]) == 0.0
    assert row_conductance(sq, g) == pytest.approx(float(sq @ g), rel=1e-14)


def test_stack_rows_pads_shorter_blocks_with_zeros():
    out = stack_rows([np.array([1.0, 2.0, 3.0]), np.array([4.0])], 3)
    np.testing.assert_array_equal(out, [[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
