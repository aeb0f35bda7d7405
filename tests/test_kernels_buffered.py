"""The general path's analog sums of buffered values with a relative write error (CASCADE) from one product per row
block and group of cycles (cimsim.kernels_buffered): numpy's three products' numbers bit for bit where every value is
an exact integer, numpy's products kept elsewhere; the general path's shards taken by threads as they come free."""

import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from _crossbar_cases import _with_and_without

import cimsim
from cimsim.crossbar_general import GeneralPath
from cimsim.encoding import plane_layout
from cimsim.engine_threads import taken_shares
from cimsim.kernels import stack_digits
from cimsim.kernels_buffered import (buffered_sums, digit_masks, exact_integers, level_planes,
                                      popcount_cycles, popcount_sums)
from cimsim.readouts import ConversionScope


def _numpy_sums(q, m, pair, P, N, w, c2):
    """Independent reference: the group values and variance terms as numpy's path forms them from three products
    (the lines' sums s and the slices' differences d of each pair, or a column twice), (examples, columns)."""
    S = m.shape[0]
    q = q.astype(np.float64).reshape(q.shape[0], S, P, N)
    if pair:
        s, d = q[:, :, 0] + q[:, :, 1], q[:, :, 0] - q[:, :, 1]            # (examples, S, N)
    else:
        s = d = q.reshape(q.shape[0], S, P * N)
    value = np.einsum("esx,sg->egx", d, m).reshape(q.shape[0], -1)
    var = c2 * np.einsum("esx,sg->egx", s * s + d * d, m * m).reshape(q.shape[0], -1)
    return w * value, var


@pytest.mark.parametrize("pair,P", [(True, 2), (False, 2), (False, 1)])
@pytest.mark.parametrize("groups", [[(0, 7)], [(0, 2), (2, 4), (4, 6), (6, 7)], [(s, s + 1) for s in range(7)]])
def test_buffered_sums_give_numpys_numbers(pair, P, groups):
    """Integer levels 0..3 on 40 rows, digits 0..1, 7 slices of place values 4**s, 5 outputs, two cycles: the values
    (w times each group's value, summed) and the variance terms equal the reference bit for bit."""
    rng = np.random.default_rng(4)
    S, N, K, nb = 7, 5, 40, 23
    a = rng.integers(0, 4, (K, S * P * N)).astype(np.float32)
    x = rng.integers(0, 2, (2 * nb, K)).astype(np.float32)
    m = np.zeros((S, len(groups)))
    for g, (s0, s1) in enumerate(groups):
        m[s0:s1, g] = 4.0 ** np.arange(s1 - s0)
    assert exact_integers([a], [K], 1, m, np.float32)
    qt = a.T @ x.T
    lo, hi = np.array([g[0] for g in groups]), np.array([g[1] for g in groups])
    cols = len(groups) * (N if pair else P * N)
    vt, var_t = np.zeros((cols, nb)), np.empty((cols, nb))
    r = 0.0562
    for k, w in enumerate((1.0, 2.0)):
        buffered_sums(qt, k * nb, nb, lo, hi, m, m * m, pair, P, N, w, (w * r) ** 2 * 0.5, vt, var_t, k == 0)
    v0, s0 = _numpy_sums((x[:nb] @ a), m, pair, P, N, 1.0, (1.0 * r) ** 2 * 0.5)
    v1, s1 = _numpy_sums((x[nb:] @ a), m, pair, P, N, 2.0, (2.0 * r) ** 2 * 0.5)
    assert np.array_equal(vt.T, v0 + v1)
    assert np.array_equal(var_t.T, s0 + s1)


def test_exact_integers_only_where_every_sum_is_exact():
    m = np.zeros((15, 1))
    m[:, 0] = 2.0 ** np.arange(15)                   # CASCADE's 15 magnitude slices summed per conversion
    ones = np.ones((64, 8), dtype=np.float32)
    assert exact_integers([ones], [64], 1, m, np.float32)
    assert not exact_integers([ones + 0.5], [64], 1, m, np.float32)             # levels off the integers
    # a pair's lines over a group, 2 x 64 rows x level 8 x (2**15 - 1), pass float32's exact integers (2**24)
    assert exact_integers([4 * ones], [64], 1, m, np.float32)
    assert not exact_integers([8 * ones], [64], 1, m, np.float32)
    assert exact_integers([8 * ones.astype(np.float64)], [64], 1, m, np.float64)
    assert not exact_integers([ones], [64], 1, m + 0.25, np.float32)            # place values off the integers


def _cascade_specs():
    a8 = cimsim.arch.get("cascade", weight_bits=8, input_bits=8, node_nm=32, rows=32).crossbar_spec()
    return {
        "whole-weight": a8,
        "slice-pairs": replace(a8, conversion=ConversionScope(2, "sum", 2)),
        "per-slice": replace(a8, conversion=ConversionScope(2, "sum", 1)),
        "four-cycles": replace(a8, conversion=ConversionScope(4, "sum", 0)),
        "offset-columns": replace(a8, signed="offset", pair_readout=False),
        "read-noise": replace(a8, cell=replace(a8.cell, read_sigma_frac=0.02)),
        "programming-noise": replace(a8, cell=replace(a8.cell, prog_sigma_frac=0.05)),
        "two-bit-cells": replace(a8, cell_bits=2),
    }


@pytest.mark.parametrize("name", list(_cascade_specs()))
def test_cascade_gives_numpys_numbers_on_any_thread_count(monkeypatch, name):
    """CASCADE's organisation at 8 bits on 32-row arrays (3 row blocks), 70 examples in chunks of 16 (several chunks
    and shards in one launch): outputs and ledger equal with numpy's three products and with the kernel, on 1 and 3
    threads; the kernel runs wherever the levels are integers (not with programming noise)."""
    spec = replace(_cascade_specs()[name], batch_chunk=16)
    rng = np.random.default_rng(7)
    W = np.clip(np.round(rng.normal(0, 30, (9, 80))), -127, 127).astype(int)
    x = rng.integers(0, 256, (70, 80)) * (rng.random((70, 80)) < 0.6)
    sums = {}
    for kernel in (True, False):   # the analog sums themselves (values and noise before the converter), cycles 2..4
        xb = cimsim.Crossbar(W, spec, seed=5)
        if not kernel:
            xb._cpu._buffered_static = lambda: False
        digits = {i: xb._cpu._block_digits(xb.digit_source(x), 0, 70, i)[0] for i in range(len(xb.row_blocks))}
        sums[kernel] = xb._cpu._analog_sum(digits, list(digits), 2, 4, plane_layout(8, 1)[0], 70, (3, 4, 0, 8, 1))

    def check(xb):
        static = xb._cpu._buffered_static()
        assert bool(static) == (name != "programming-noise")
        # the lines' values counted from words of digits wherever the digits are one unsigned bit and no cell's
        # read noise needs them as numbers
        assert (static and static[1] is not None) == (name not in ("programming-noise", "read-noise"))

    runs = _with_and_without(monkeypatch, GeneralPath, "_buffered_static", False, W, spec, 5, x, x[:32], check)
    assert np.array_equal(sums[True], sums[False])
    ref = runs[False, 1]
    for key, (y, ledger) in runs.items():
        assert np.array_equal(y, ref[0]) and ledger == ref[1], key
    assert np.std(ref[0] - x @ W.T) > 0                                  # the buffer's error is there


def test_threads_take_the_general_paths_shards_as_they_come_free():
    """Twenty items of uneven work on 3 threads: each done once, the results in the items' order, more than one
    thread used; one thread or one item runs in the caller."""
    done, lock = [], threading.Lock()

    def fn(k):
        time.sleep(0.002 * (k % 4))
        with lock:
            done.append((k, threading.current_thread().name))
        return k * k

    assert taken_shares(fn, range(20), 3) == [k * k for k in range(20)]
    assert sorted(k for k, _ in done) == list(range(20))
    assert len({name for _, name in done}) > 1
    done.clear()
    assert taken_shares(fn, range(5), 1) == [k * k for k in range(5)]
    assert {name for _, name in done} == {threading.current_thread().name}


def test_words_of_digits_and_planes_of_levels_count_the_product():
    """Digit words hold each one-bit digit (with stack_digits' counts and squares); levels 0..3 in two bit planes;
    the counted sums equal the multiplied ones bit for bit (pair and single columns, slice groups)."""
    rng = np.random.default_rng(11)
    K, nb, S, N = 50, 37, 6, 4
    shifts = np.arange(8, dtype=np.int64)
    u = rng.integers(0, 256, (nb + 5, 70)) * (rng.random((nb + 5, 70)) < 0.7)
    masks, sq = np.empty((8, nb), dtype=np.int64), np.zeros(K, dtype=np.int64)
    nz = digit_masks(u, 5, nb, 10, 10 + K, shifts, masks, sq)
    xs, sq_ref = np.empty((8 * nb, K), dtype=np.float32), np.zeros(K, dtype=np.int64)
    _, nz_ref = stack_digits(u, 5, 5 + nb, 10, 10 + K, shifts, np.ones(8, dtype=np.int64), xs, None, sq_ref)
    bits = (masks.reshape(-1)[:, None] >> np.arange(K)) & 1                    # (cycles x examples, rows)
    assert np.array_equal(bits, xs) and nz == nz_ref and np.array_equal(sq, sq_ref)
    m = np.zeros((S, 2))
    m[:3, 0], m[3:, 1] = 2.0 ** np.arange(3), 2.0 ** np.arange(3)
    lo, hi = np.array([0, 3]), np.array([3, 6])
    for pair, P in ((True, 2), (False, 1)):
        a = rng.integers(0, 4, (K, S * P * N)).astype(np.float32)
        planes = level_planes(a)
        assert planes.shape == (2, S * P * N)
        assert np.array_equal(sum(((planes[p] >> np.arange(K)[:, None]) & 1) << p for p in range(2)), a)
        cols = 2 * (N if pair else P * N)
        counted, multiplied = [np.zeros((cols, nb)) for _ in range(2)], [np.zeros((cols, nb)) for _ in range(2)]
        qt = a.T @ xs.T
        for t, w in ((2, 1.0), (3, 2.0)):
            c2 = (w * 0.05) ** 2 * 0.5
            popcount_sums(masks, t, planes, lo, hi, m, m * m, pair, P, N, w, c2, *counted, t == 2)
            buffered_sums(qt, t * nb, nb, lo, hi, m, m * m, pair, P, N, w, c2, *multiplied, t == 2)
        assert np.array_equal(counted[0], multiplied[0]) and np.array_equal(counted[1], multiplied[1])
        # both cycles in one call (popcount_cycles): the same additions in the same order
        ws = np.array([1.0, 2.0])
        together = [np.zeros((cols, nb)), np.full((cols, nb), 7.0)]   # values added to, variances set first
        popcount_cycles(masks, 2, 4, ws, (ws * 0.05) ** 2 * 0.5, planes, lo, hi, m, m * m, pair, P, N, *together,
                        True)
        assert np.array_equal(together[0], counted[0]) and np.array_equal(together[1], counted[1])
    assert level_planes(np.ones((65, 3))) is None                      # more rows than a word holds
    assert level_planes(-np.ones((8, 3))) is None and level_planes(np.full((8, 3), 0.5)) is None
    assert level_planes(np.full((8, 3), 16.0)) is None                 # more than PLANE_BITS_MAX planes


@pytest.mark.parametrize("sigma", [0.0, 0.7])
def test_a_buffered_quantizers_one_pass_gives_the_numpy_transfers_numbers(sigma):
    """cimsim.kernels_buffered.noisy_quantize behind BufferedQuantizerOp.convert: values, clipped count and the draws
    taken equal to the quantizer's numpy transfer (QuantizerOp.convert after the noise is added), bit for bit, with
    values clipping at both ends, ties at half an LSB, a range whose LSB is not a power of two, and the fallback where
    the readout has an offset of its own."""
    from cimsim.devices.analog_accumulators import BufferedADC
    from cimsim.kernels import PlacedNormals
    from cimsim.readouts import QuantizerOp, readout_op

    rng = np.random.default_rng(5)
    v = np.round(rng.normal(0, 40, (37, 23)) * 4) / 4          # quarters: many ties at the half LSB
    v[0, :3] = (-1e3, 1e3, 0.5)
    for lo, lsb, bits in ((-64.0, 1.0, 7), (-10.0, 0.75, 5), (0.0, 3.0, 4)):
        op = readout_op(BufferedADC(bits=bits, analog_sigma=sigma))
        a, b = PlacedNormals(3, 4, 0, 8, 1), PlacedNormals(3, 4, 0, 8, 1)
        got, clipped = op.convert(v, lo, lsb, a, False)
        x = v + sigma * b.standard_normal(v.shape) if sigma > 0 else v
        want, want_clipped = QuantizerOp.convert(op, x, lo, lsb, b, False)
        assert np.array_equal(got, want) and clipped == want_clipped > 0 and a.draws == b.draws
    op = readout_op(BufferedADC(bits=6, analog_sigma=sigma, offset_sigma_lsb=0.3))   # the numpy lines themselves
    got = op.convert(v, -32.0, 1.0, PlacedNormals(3, 4, 0, 8, 1), False)
    assert got[0].shape == v.shape
