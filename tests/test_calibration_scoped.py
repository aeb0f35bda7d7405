"""Calibrated ranges of conversions that sum several cycles (CASCADE's groups, Neural-PIM's whole MVM): where every
value is an exact integer, each group's digits are summed first and multiplied once (float64, or float32 where every
sum stays below 2**24)
(cimsim.calibration.grouped_products, cimsim.kernels_host.group_digits); the ranges must be the per-cycle products'
to the last bit, and noisy levels keep the per-cycle products."""

from dataclasses import replace

import numpy as np
import pytest

from _crossbar_cases import _with_and_without

import cimsim
from cimsim import calibration
from cimsim.encoding import digit_source, plane_layout, plane_weights
from cimsim.kernels import stack_digits
from cimsim.kernels_host import group_digits
from cimsim.readouts import ConversionScope


@pytest.mark.parametrize("bits,dac,signed,encoding", [(8, 1, False, "twos"), (8, 1, True, "twos"),
                                                     (8, 3, True, "twos"), (7, 2, False, "twos"),
                                                     (8, 1, True, "split"), (7, 2, True, "split")])
def test_group_digits_sum_each_groups_cycles_with_place_values(bits, dac, signed, encoding):
    """Each group's digits summed with their place values relative to the group's first cycle: a two's-complement
    sign cycle subtracted where it follows others in its group (its field sign-extended), its bit alone where it is a
    group of its own (the place value, negative, is then the shift-and-add's); a split input's groups within one part
    are plain fields, and a group spanning both parts is none (group_fields: None)."""
    rng = np.random.default_rng(bits + dac)
    x = rng.integers(-(1 << (bits - 1)) + 1 if signed else 0, 1 << (bits - 1 if signed else bits), (30, 20))
    u = digit_source(x, bits, signed, encoding)
    shifts, widths = plane_layout(bits, dac, signed, encoding)
    pw = plane_weights(bits, dac, signed, encoding)
    T = len(shifts)
    digits = np.empty((T * 25, 12), dtype=np.float64)
    stack_digits(u, 3, 28, 4, 16, shifts, widths, digits, None, np.zeros(12, dtype=np.int64))
    digits = digits.reshape(T, 25, 12)
    half = T // 2
    for groups in ([(t, min(t + 2, T)) for t in range(0, T, 2)], [(0, T - 1), (T - 1, T)], [(0, half), (half, T)]):
        sext = calibration.group_fields(shifts, widths, pw, groups)
        if encoding == "split" and any(t0 < half < t1 for t0, t1 in groups):
            assert sext is None            # a group across the positive and the negative part: no bit field
            continue
        g0, g1 = np.array([g[0] for g in groups]), np.array([g[1] for g in groups])
        out = np.empty((len(groups), 25, 12))
        group_digits(u, 3, 25, 4, 16, shifts, widths, sext, g0, g1, out)
        for g, (t0, t1) in enumerate(groups):
            want = sum(pw[t] / pw[t0] * digits[t] for t in range(t0, t1))
            assert np.array_equal(out[g], want)
            if signed and encoding == "twos" and t1 == T:   # the sign bit: -1 after others, +1 alone
                neg = x[3:28, 4:16] < 0
                assert (out[g][neg].min() < 0) == (t1 - t0 > 1) and out[g][~neg].min() >= 0


def _specs():
    c8 = cimsim.arch.get("cascade", weight_bits=8, input_bits=8, node_nm=32).crossbar_spec()
    npim = cimsim.arch.get("neural-pim").crossbar_spec()
    return {
        "cascade": c8,
        "cascade-16-bit": cimsim.arch.get("cascade").crossbar_spec(),
        "cascade-signed-inputs": replace(c8, input_signed=True),
        "cascade-2-bit-dacs": replace(c8, dac_bits=2),
        "cascade-programming-noise": replace(c8, cell=replace(c8.cell, prog_sigma_frac=0.05)),
        "neural-pim": npim,
        "neural-pim-3-cycles": replace(npim, conversion=ConversionScope(3, "sum", 1)),
    }


@pytest.mark.parametrize("name", list(_specs()))
def test_grouped_calibration_gives_the_per_cycle_products_ranges(monkeypatch, name):
    spec = _specs()[name]
    rng = np.random.default_rng(5)
    wide = spec.weight_bits > 8
    W = rng.integers(-30000, 30000, (12, 150)) if wide else np.clip(np.round(rng.normal(0, 30, (12, 150))), -127, 127)
    hi = 1 << spec.input_bits
    x = rng.integers(-hi // 2 if spec.input_signed else 0, hi // 2 if spec.input_signed else hi, (200, 150))
    x = x * (rng.random(x.shape) < 0.6)
    taken = []
    real = calibration.grouped_products
    monkeypatch.setattr(calibration, "grouped_products", lambda *a: taken.append(real(*a)) or taken[-1])
    xb = cimsim.Crossbar(W.astype(int), spec, seed=0)
    xb.calibrate(x)
    grouped = xb.ranges()
    assert taken and all((t is None) == (name == "cascade-programming-noise") for t in taken)
    monkeypatch.setattr(calibration, "grouped_products", lambda *a: None)
    xb.calibrate(x)
    assert xb.ranges() == grouped


def test_sums_past_float64s_integers_keep_the_per_cycle_products():
    """A group's value bound at or past 2**53 (or a cycle's past its type's exact integers): None."""
    groups = [(0, 8)]
    shifts, widths = plane_layout(8, 1)
    ok = np.ones((64, 4), dtype=np.float32)
    assert calibration.grouped_products([0], [(0, 64)], [ok], shifts, widths, 2.0 ** shifts, groups) is not None
    big = np.full((64, 4), 2.0 ** 40)
    assert calibration.grouped_products([0], [(0, 64)], [big], shifts, widths, 2.0 ** shifts, groups) is None
    assert calibration.grouped_products([0], [(0, 64)], [np.full((64, 4), 2.0 ** 18, dtype=np.float32)],
                                         shifts, widths, 2.0 ** shifts, groups) is None


@pytest.mark.parametrize("name", ["neural-pim", "neural-pim-3-cycles", "neural-pim-signed-inputs",
                                  "neural-pim-read-noise", "cascade-exact-writes"])
def test_the_engines_grouped_sums_give_the_per_cycle_products_numbers(monkeypatch, name):
    """The general path's conversions of several cycles without noise to add (Neural-PIM's analog shift-and-add):
    each group's digits summed, one exact product a block (GeneralPath._summed_values; float32 here: every sum below
    2**24), and the reads counted without cutting the digits; outputs and ledgers equal
    to the per-cycle products', on 1 and 3 threads; not taken where the cells' read noise must be summed."""
    from cimsim.crossbar_general import GeneralPath

    npim = cimsim.arch.get("neural-pim").crossbar_spec()
    spec = {"neural-pim": npim,
            "neural-pim-3-cycles": replace(npim, conversion=ConversionScope(3, "sum", 1)),
            "neural-pim-signed-inputs": replace(npim, input_signed=True),
            "neural-pim-read-noise": replace(npim, cell=replace(npim.cell, read_sigma_frac=0.02)),
            "cascade-exact-writes": cimsim.arch.get("cascade", weight_bits=8, input_bits=8, rows=32, **{
                "buffer.write_sigma_frac": 0}).crossbar_spec()}[name]
    spec = replace(spec, batch_chunk=16)
    rng = np.random.default_rng(9)
    W = np.clip(np.round(rng.normal(0, 30, (10, 150))), -127, 127).astype(int)
    lo = -128 if spec.input_signed else 0
    x = rng.integers(lo, lo + 256, (60, 150)) * (rng.random((60, 150)) < 0.6)
    def check(xb):
        taken = [s is not None for s in xb._cpu._summed_static()]
        assert all(taken) == (name != "neural-pim-read-noise") and any(taken) == all(taken)

    runs = _with_and_without(monkeypatch, GeneralPath, "_summed_static", [None] * 64, W, spec, 4, x, x[:30], check)
    ref = runs[False, 1]
    for key, (y, ledger) in runs.items():
        assert np.array_equal(y, ref[0]) and ledger == ref[1], key


def test_a_block_whose_sums_stay_below_2_24_is_multiplied_in_float32():
    """8-bit inputs in one group of 8 cycles (sums up to 255 x a column's levels): 64 rows of ones stay below 2**24
    (float32, twice BLAS's rate, the same integers); levels of 2**11 pass it (float64)."""
    groups = [(0, 8)]
    shifts, widths = plane_layout(8, 1)
    small = calibration.grouped_products([0], [(0, 64)], [np.ones((64, 4))], shifts, widths, 2.0 ** shifts, groups)
    assert small[2][0].dtype == np.float32 and np.array_equal(small[2][0], np.ones((64, 4)))
    wide = calibration.grouped_products([0], [(0, 64)], [np.full((64, 4), 2.0 ** 11)], shifts, widths, 2.0 ** shifts,
                                        groups)
    assert wide[2][0].dtype == np.float64
