"""The ADC calibration's integer path (cimsim.calibration.HISTOGRAMS): with integer levels the column values are
integers, counted by magnitude in a histogram from the bit-serial tables; the percentile read from the histogram must
be the one the float GEMM and the exact selection give, range for range, and it must step aside for non-integer
levels."""

import contextlib
import math

import numpy as np
import pytest

from _crossbar_cases import _operands
from cimsim import Crossbar, CrossbarSpec, calibration
from cimsim import crossbar_cpu, kernels_bits
from cimsim.calibration import percentile_in_place, percentile_of_histogram
from cimsim.devices import IdealCell, ReRAM, SarADC
from cimsim.kernels_bits import group_tables, value_histogram


def test_histogram_percentile_is_numpys_linear_rule():
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 10, 999, 100_000):
        for q in (0, 12.5, 50, 99.9, 99.99, 100):
            for top in (1, 5, 400):
                v = rng.integers(0, top + 1, n)
                hist = np.bincount(v, minlength=top + 3)         # trailing empty bins too
                want = float(np.percentile(v.astype(np.float64), q))
                assert percentile_of_histogram(hist, q) == want
                assert percentile_in_place(v.astype(np.float32), q) == want


SPECS = {
    "isaac-like": CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=16, input_bits=16, dac_bits=1,
                               signed="offset", adc_range="calibrated", readout=SarADC(bits=8)),
    "signed-dac3": CrossbarSpec(rows=32, cols=64, cell_bits=2, weight_bits=8, input_bits=8, dac_bits=3,
                                signed="offset", input_signed=True, adc_range="calibrated",
                                calibration_percentile=97.0, readout=SarADC(bits=6)),
    "pair-readout": CrossbarSpec(rows=64, cols=64, cell_bits=2, weight_bits=5, input_bits=6, dac_bits=2,
                                 signed="differential", pair_readout=True, adc_range="calibrated",
                                 readout=SarADC(bits=5)),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_histogram_ranges_equal_the_selection(monkeypatch, name):
    """Enough values (> 2**20 per block for the ISAAC-like case) that the selection samples a threshold first; small
    shards spread the histogram over threads."""
    spec = SPECS[name]
    monkeypatch.setenv("CIMSIM_THREADS", "3")
    rng = np.random.default_rng(1)
    batch = 1000 if name == "isaac-like" else 150
    W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, spec.input_signed, 9, 150, batch)
    x[: batch // 3] //= 7                                  # a spread of magnitudes
    got = []
    for on in (True, False):
        monkeypatch.setattr(calibration, "HISTOGRAMS", on)
        calls = []
        real = calibration._integer_histogram
        monkeypatch.setattr(calibration, "_integer_histogram", lambda *a: calls.append(1) or real(*a))
        xb = Crossbar(W, spec, seed=2)
        xb.calibrate(x)
        got.append((xb._range, len(calls)))
    (ranges_h, n_h), (ranges_s, n_s) = got
    assert n_h == len(Crossbar(W, spec).row_blocks) and n_s == 0
    assert ranges_h == ranges_s                            # the same floats, block by block
    # signed inputs convert unipolar (their sign is the last cycle's place value): only the pair readout is bipolar
    assert any(lo < 0 for lo, _ in ranges_h) == spec.pair_readout


def _calibrated_both_ways(monkeypatch, W, spec, x, seed):
    """A crossbar calibrated on ``x`` with the histogram path on and off: both give the same range; the last one."""
    got = []
    for on in (True, False):
        monkeypatch.setattr(calibration, "HISTOGRAMS", on)
        xb = Crossbar(W, spec, seed=seed)
        xb.calibrate(x)
        got.append(xb._range)
    assert got[0] == got[1]
    return xb


def test_non_integer_levels_keep_the_selection(monkeypatch):
    spec = CrossbarSpec(rows=32, cols=64, cell=ReRAM(prog_sigma_frac=0.05), cell_bits=2, weight_bits=8, input_bits=8,
                        dac_bits=1, signed="differential", adc_range="calibrated", readout=SarADC(bits=6))
    rng = np.random.default_rng(3)
    W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, False, 5, 40, 30)
    xb = _calibrated_both_ways(monkeypatch, W, spec, x, seed=4)
    assert calibration._integer_histogram(np.zeros((2, 32), dtype=np.int64), 0, 32, xb.a_gemm[0], [0], [1]) is None


def test_parallel_map_keeps_order(monkeypatch):
    monkeypatch.setenv("CIMSIM_THREADS", "4")
    assert crossbar_cpu.parallel_map(lambda v: v * v, range(9)) == [v * v for v in range(9)]


def _tables_and_inputs(rng, rows=40, cols=70, batch=300, bits=8, signed_levels=False):
    a = rng.integers(-3 if signed_levels else 0, 4, size=(rows, cols)).astype(np.float32)
    u = rng.integers(0, 1 << bits, size=(batch, rows)).astype(np.int64)
    u[: batch // 2] >>= rng.integers(0, bits, size=(batch // 2, 1))   # a spread of magnitudes
    tables, g, plane = group_tables([a])
    bins = int(np.abs(a).sum(axis=0).max()) * 4 + 1
    return a, u, tables[0], g, plane, bins


@pytest.mark.parametrize("signed,dac_bits,rows_per_group", [(False, 1, 8), (True, 1, 8), (True, 2, 8), (False, 1, 4),
                                                             (True, 2, 4)])
def test_thresholded_histograms_give_the_percentile_exactly(monkeypatch, signed, dac_bits, rows_per_group):
    """A threshold that rises with the counts (``need``: the values among which the percentile's two order statistics
    lie) leaves the counts from the threshold on exact, planes whose bounds keep them below it unsummed: merged over
    shards and with the rest in bin 0 they give the percentile of the full histogram, for low and high percentiles,
    shard splits, sampled passes, signed levels, 2-bit digits and 4-row groups (19 rows: a ragged last
    byte)."""
    if rows_per_group == 4:
        monkeypatch.setattr(kernels_bits, "TABLE_BYTES_8", 0)
    rng = np.random.default_rng(11)
    rows = 40 if rows_per_group == 8 else 19
    a, u, table, g, plane, bins = _tables_and_inputs(rng, rows=rows, signed_levels=signed)
    assert g == rows_per_group
    shifts, widths = list(range(0, 8, dac_bits)), [dac_bits] * (8 // dac_bits)
    T = len(shifts)
    full, neg_full, tau0 = value_histogram(u, 0, len(u), 0, rows, table, g, plane, shifts, widths, bins)
    assert tau0 == 0 and int(full.sum()) == len(u) * T * 70 and neg_full == signed
    raised = 0
    for q in (50.0, 90.0, 99.0, 99.9, 99.99, 100.0):
        n = int(full.sum())
        need = n - int(math.floor((n - 1) * (q / 100.0)))
        for edges in ([0, 300], [0, 7, 150, 299, 300]):
            parts = [value_histogram(u, e0, e1, 0, rows, table, g, plane, shifts, widths, bins, 0, need)
                     for e0, e1 in zip(edges[:-1], edges[1:])]
            tau = max(t for _, _, t in parts)
            hist = sum(h for h, _, _ in parts)
            hist[:tau] = 0
            hist[0] += n - hist.sum()
            assert percentile_of_histogram(hist, q) == percentile_of_histogram(full, q)
            assert any(neg for _, neg, _ in parts) == neg_full
            raised += tau > 0
    assert raised >= 8                    # the threshold did rise (from the 90th percentile on, at least)
    picked = np.arange(3, 300, 7)
    sub, _, _ = value_histogram(u, 0, 0, 0, rows, table, g, plane, shifts, widths, bins, examples=picked)
    want = sum(value_histogram(u, b, b + 1, 0, rows, table, g, plane, shifts, widths, bins)[0] for b in picked)
    assert np.array_equal(sub, want)      # listed examples


def test_plane_bounds_skip_planes_and_keep_the_sign():
    """Row 0's levels negative, the others positive: planes whose table extremes keep them below the threshold are
    skipped, yet a negative value is still reported when only such a plane gives one (and not when none does)."""
    a = np.ones((8, 3), dtype=np.float32)                          # every column value = the set bits of the plane
    a[0] = -1.0                                                    # ... less row 0's
    tables, g, plane = group_tables([a])
    u = np.zeros((50, 8), dtype=np.int64)
    u[:, 1:] = 0b0111                                             # planes 0-2: rows 1-7, value 7
    u[7, 0] = 0b1000                                              # plane 3 of one example: row 0 alone, -1
    shifts, widths = [0, 1, 2, 3], [1, 1, 1, 1]
    for tau in (7, 2, 8, 100):
        hist, neg, _ = value_histogram(u, 0, 50, 0, 8, tables[0], g, plane, shifts, widths, 40, tau)
        assert neg and int(hist[tau:].sum()) == (150 * 3 if tau <= 7 else 0)
    u[7, 0] = 0
    hist, neg, _ = value_histogram(u, 0, 50, 0, 8, tables[0], g, plane, shifts, widths, 40, 8)
    assert not neg and int(hist.sum()) == 0


def test_a_guess_the_batch_does_not_bear_out_is_dropped(monkeypatch):
    """The pilot's sample of examples much larger than the rest: the threshold guessed from them is too high
    for the batch, the examples are counted again from 0, and the ranges equal the selection's."""
    monkeypatch.setenv("CIMSIM_THREADS", "2")
    spec = SPECS["isaac-like"]
    rng = np.random.default_rng(4)
    W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, False, 9, 150, 1024)
    x[:] >>= 12                                            # 4-bit inputs ...
    sample = np.random.default_rng(calibration.PILOT_SEED).choice(1024, 1024 // calibration.PILOT_STEP, replace=False)
    x[sample] = (1 << 16) - 1                              # ... but the sampled examples at full scale
    calls = []
    real = calibration.value_histogram
    monkeypatch.setattr(calibration, "value_histogram",
                        lambda *a, **k: calls.append((a[3], a[11])) or real(*a, **k))
    _calibrated_both_ways(monkeypatch, W, spec, x, seed=2)
    first = [tau for k0, tau in calls if k0 == 0]   # the first row block (128 rows): pilot, guess, again from 0
    shards = min(4 * 2, 1024 // 64)
    assert len(first) == 1 + 2 * shards and first[0] == 0 and first[1] > 0
    assert first[1:1 + shards] == [first[1]] * shards and first[1 + shards:] == [0] * shards


@pytest.mark.parametrize("rows,bits,signed_levels,batch", [(1, 8, False, 300), (9, 16, False, 9000), (9, 8, True, 300),
                                                          (12, 4, False, 300), (5, 1, True, 300), (7, 6, True, 0)])
def test_small_blocks_count_their_patterns(monkeypatch, rows, bits, signed_levels, batch):
    """A block of at most PATTERN_ROWS rows with one-bit digits counts each cycle's pattern of digits and then each
    pattern's column values: the histogram of every value (the tables' pass without a threshold) and the same sign,
    for rows k0..k1 of wider inputs, signed levels, a batch spread over threads (9,000 examples: 2 shards) and an
    empty one."""
    monkeypatch.setenv("CIMSIM_THREADS", "3")
    rng = np.random.default_rng(rows * 100 + bits)
    a = rng.integers(-3 if signed_levels else 0, 4, size=(rows, 11)).astype(np.float32)
    u = rng.integers(0, 1 << bits, size=(batch, rows + 5)).astype(np.int64)
    u[: batch // 2] >>= rng.integers(0, bits, size=(batch // 2, 1))   # a spread of magnitudes, zero patterns too
    k0, k1 = 2, 2 + rows
    shifts, widths = list(range(bits)), [1] * bits
    tables, g, plane = group_tables([a])
    bins = int(np.abs(a).sum(axis=0).max()) * 2 + 1
    full, neg, _ = value_histogram(u, 0, batch, k0, k1, tables[0], g, plane, shifts, widths, bins)
    calls = []
    real = kernels_bits.pattern_counts
    monkeypatch.setattr(calibration, "pattern_counts", lambda *args: calls.append(args[1:3]) or real(*args))
    hist, negative = calibration._integer_histogram(u, k0, k1, a, shifts, widths)
    assert np.array_equal(hist, full) and negative == neg
    assert int(hist.sum()) == batch * bits * 11 and (negative == (batch > 0 and signed_levels))
    assert sorted(calls) == ([(0, 4500), (4500, 9000)] if batch == 9000 else [(0, batch)])


def test_a_depthwise_crossbar_counts_patterns_to_the_same_range(monkeypatch):
    """A 3 x 3 depthwise kernel's crossbar (9 rows, ISAAC's 16-bit inputs in 1-bit cycles): the patterns' range is the
    tables' (PATTERN_ROWS = 0) and the selection's (no histogram), for signed inputs too (unipolar: offset weights'
    levels are non-negative and the sign bit's cycle reads them like any other)."""
    for signed in (False, True):
        spec = CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=16, input_bits=16, dac_bits=1,
                            signed="offset", input_signed=signed, adc_range="calibrated", readout=SarADC(bits=8))
        rng = np.random.default_rng(5)
        W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, signed, 9, 1, 2000)
        x[:700] //= 9
        got = []
        for rows in (12, 0):
            monkeypatch.setattr(calibration, "PATTERN_ROWS", rows)
            got.append(_calibrated_both_ways(monkeypatch, W, spec, x, seed=1)._range)
        assert got[0] == got[1] and got[0][0][0] == 0.0


@pytest.mark.parametrize("percentile,signed", [(99.9, False), (97.0, True), (50.0, False), (100.0, True)])
def test_the_selection_streamed_chunk_by_chunk_is_numpys_percentile(monkeypatch, percentile, signed):
    """The selection (levels the histograms do not take) goes chunk by chunk, keeping only the largest n - lo
    magnitudes (calibration._streamed_range), over 1 to 3 threads: numpy's percentile of every column value at once, each the chunk's
    product as the GEMM forms it, for noisy (non-integer) levels and integer ones without the histograms, high and
    low percentiles, signed inputs, over 38 chunks (CALIBRATION_ROWS small)."""
    from cimsim.encoding import plane_layout
    from cimsim.kernels import stack_digits

    monkeypatch.setattr(calibration, "CALIBRATION_ROWS", 64)      # 8 examples of 8 cycles a chunk: 38 chunks
    monkeypatch.setattr(calibration, "HISTOGRAMS", False)
    # on 1, 2 and 3 threads (rounds of 1 to 3 lanes, the last round short), the buffers fresh or kept between calls
    cases = [(c, lanes, keep) for c in (ReRAM(prog_sigma_frac=0.05), IdealCell()) for lanes, keep in
             ((1, False), (2, True), (3, False), (3, True))]
    for cell, lanes, keep in cases:
        monkeypatch.setattr(calibration, "threads", lambda lanes=lanes: lanes)
        spec = CrossbarSpec(rows=32, cols=64, cell=cell, cell_bits=2, weight_bits=8, input_bits=8, dac_bits=1,
                            signed="differential", input_signed=signed, adc_range="calibrated",
                            calibration_percentile=percentile, readout=SarADC(bits=6))
        rng = np.random.default_rng(3)
        W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, signed, 5, 40, 300)
        x[:100] //= 5
        xb = Crossbar(W, spec, seed=4)
        with calibration.kept_buffers() if keep else contextlib.nullcontext():
            xb.calibrate(x)
            xb.calibrate(x)   # kept buffers: written over by the second call
        u = xb.digit_source(x)
        shifts, widths = plane_layout(8, 1, signed)
        want = []
        for (k0, k1), a in zip(xb.row_blocks, xb.ro_a_gemm):   # every value, chunk by chunk as the GEMM forms it
            vals = []
            for b0 in range(0, 300, 8):
                d = np.empty((8 * min(8, 300 - b0), k1 - k0), dtype=a.dtype)
                stack_digits(u, b0, min(300, b0 + 8), k0, k1, shifts, widths, d, None,
                             np.zeros(k1 - k0, dtype=np.int64))
                vals.append((d @ a).ravel())
            v = np.concatenate(vals)
            p = float(np.percentile(np.abs(v).astype(np.float64), percentile))   # the values exactly, lerp in float64
            low = -p if v.min() < 0 else 0.0
            want.append((low, max(p, low + 1.0)))
        assert xb._range == want and len(want) == 2
        assert all(lo == 0.0 and hi > 0 for lo, hi in want)   # each column one polarity, every digit unsigned


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keep_magnitudes_is_numpys_abs_and_mask(dtype):
    """cimsim.kernels_host.keep_magnitudes: the magnitudes at or above tau moved to the front in their order (ties
    kept), whether a value was negative (-0.0 is not), and every magnitude in place for tau < 0; sizes across its
    blocks of KEEP_BLOCK values, blocks that hold none, and the empty array."""
    from cimsim.kernels_host import KEEP_BLOCK, keep_magnitudes

    rng = np.random.default_rng(11)
    for n in (0, 1, KEEP_BLOCK - 1, KEEP_BLOCK, 5 * KEEP_BLOCK + 3, 100_000):
        base = np.round(rng.standard_normal(n) * 8) / 4   # many ties, zeros among them
        for sign in (1, -1, None):
            v0 = (np.abs(base) * sign if sign is not None else base).astype(dtype)
            if sign == 1 and n:
                v0[0] = -0.0
            for tau in (-1.0, 0.0, 0.5, 3.0, 1e9):
                v = v0.copy()
                kept, negative = keep_magnitudes(v, tau)
                a = np.abs(v0)
                want = a if tau < 0 else a[a >= tau]
                assert kept == want.size and np.array_equal(v[:kept], want) and v[:kept].dtype == dtype
                assert negative == bool((v0 < 0).any()) and (not negative if sign == 1 else True)
    with pytest.raises(ValueError, match="contiguous 1-d"):
        keep_magnitudes(np.zeros((4, 4), dtype=np.float32), 0.0)
    with pytest.raises(ValueError, match="float32 or float64"):
        keep_magnitudes(np.zeros(4, dtype=np.int32), 0.0)
