"""Integer encodings (cimsim.encoding): weight slicing and input bit planes reconstruct exactly."""

import math

import numpy as np
import pytest

from cimsim.encoding import (SIGNED_MODES, digit_source, input_cycles, input_planes, plane_layout, plane_weights,
                             slice_weights, source_bits, source_numbers)
from cimsim.errors import ConfigError


def _weight_range(mode, b):
    if mode == "differential":
        return -(2 ** (b - 1) - 1), 2 ** (b - 1) - 1
    return -(2 ** (b - 1)), 2 ** (b - 1) - 1


def _expected_slices(mode, b, c):
    if mode == "offset":
        return math.ceil(b / c)
    if mode == "twos":
        return math.ceil((b - 1) / c) + 1
    return math.ceil((b - 1) / c)


def _reconstruct(ws):
    """sum_s weight_s * sum_p sign_p * levels[s, p] - offset (the offset is subtracted per unit input)."""
    lv = ws.levels.astype(np.int64)
    total = np.zeros(lv.shape[2:], dtype=np.float64)
    for s in range(lv.shape[0]):
        for p in range(lv.shape[1]):
            total += ws.weights[s] * ws.sign[p] * lv[s, p]
    return total - ws.offset


def test_signed_modes_are_the_three_documented():
    assert SIGNED_MODES == ("offset", "twos", "differential")


@pytest.mark.parametrize("mode", SIGNED_MODES)
@pytest.mark.parametrize("c", [1, 2, 3, 4])
def test_slice_weights_reconstructs_every_representable_weight(mode, c):
    for b in range(2, 10):
        lo, hi = _weight_range(mode, b)
        w = np.arange(lo, hi + 1).reshape(1, -1)         # every value, extremes included
        w = np.concatenate([w, w[:, ::-1]])               # (2, n): out > 1
        ws = slice_weights(w, b, c, mode)
        n_sign = 2 if mode == "differential" else 1
        assert ws.levels.shape == (_expected_slices(mode, b, c), n_sign) + w.shape, (mode, b, c)
        assert np.issubdtype(ws.levels.dtype, np.integer)
        assert ws.levels.min() >= 0 and ws.levels.max() <= 2 ** c - 1
        # each slice stays within its own declared bits, and declared bits are <= c
        assert len(ws.bits) == ws.levels.shape[0]
        for s, bits in enumerate(ws.bits):
            assert 1 <= bits <= c
            assert ws.levels[s].max() <= 2 ** bits - 1
        assert sum(ws.bits) == (b if mode != "differential" else b - 1)
        rec = _reconstruct(ws)
        assert np.array_equal(rec, w.astype(np.float64)), (mode, b, c)
        # the extremes are hit explicitly
        assert rec[0, 0] == lo and rec[0, -1] == hi


@pytest.mark.parametrize("c", [1, 2, 3])
def test_slice_weight_conventions_per_mode(c):
    b = 6
    w = np.array([[-32, -1, 0, 1, 31]])
    off = slice_weights(w, b, c, "offset")
    assert off.offset == 32 and np.array_equal(off.sign, [1.0])
    # offset mode stores W + 2**(b-1): the top code is 63 for W=31 and 0 for W=-32
    stored = sum(off.weights[s] * off.levels[s, 0] for s in range(off.levels.shape[0]))
    assert np.array_equal(stored, w + 32)
    tw = slice_weights(w, b, c, "twos")
    assert tw.offset == 0 and tw.weights[-1] == -32.0 and tw.bits[-1] == 1
    assert np.array_equal(tw.levels[-1, 0], (w < 0).astype(int))        # the sign slice is the sign bit
    assert np.array_equal(tw.weights[:-1], [2.0 ** (c * i) for i in range(len(tw.weights) - 1)])  # LSB first
    w_d = np.array([[-31, -1, 0, 1, 31]])
    df = slice_weights(w_d, b, c, "differential")
    assert np.array_equal(df.sign, [1.0, -1.0]) and df.offset == 0
    plus = sum(df.weights[s] * df.levels[s, 0] for s in range(df.levels.shape[0]))
    minus = sum(df.weights[s] * df.levels[s, 1] for s in range(df.levels.shape[0]))
    assert np.array_equal(plus, np.maximum(w_d, 0)) and np.array_equal(minus, np.maximum(-w_d, 0))


def test_slice_weights_random_matrix_and_float_integers():
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, size=(7, 11))
    for mode in ("offset", "twos"):
        for c in (1, 2, 3, 4):
            assert np.array_equal(_reconstruct(slice_weights(w, 8, c, mode)), w)
            assert np.array_equal(_reconstruct(slice_weights(w.astype(np.float32), 8, c, mode)), w)


@pytest.mark.parametrize("mode", SIGNED_MODES)
def test_out_of_range_weights_raise_config_error_naming_the_range(mode):
    b = 5
    lo, hi = _weight_range(mode, b)
    for bad in (lo - 1, hi + 1):
        with pytest.raises(ConfigError, match=rf"\[{lo}, {hi}\]"):
            slice_weights(np.array([[0, bad]]), b, 2, mode)
    with pytest.raises(ConfigError, match="integers"):
        slice_weights(np.array([[0.5, 1.0]]), b, 2, mode)
    with pytest.raises(ConfigError, match="integers"):
        slice_weights(np.array([[np.nan, 1.0]]), b, 2, mode)


def test_differential_rejects_the_asymmetric_extreme():
    with pytest.raises(ConfigError, match=r"\[-127, 127\]"):
        slice_weights(np.array([[-128]]), 8, 2, "differential")
    # the same value is fine for offset / twos
    for mode in ("offset", "twos"):
        assert _reconstruct(slice_weights(np.array([[-128]]), 8, 2, mode))[0, 0] == -128


def test_unknown_signed_mode_raises():
    with pytest.raises(ConfigError, match="unknown signed mapping"):
        slice_weights(np.zeros((2, 2), dtype=int), 8, 2, "sign-magnitude")


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_input_planes_reconstruct_every_input(signed, d):
    for a in range(2, 10):
        if signed:
            lo, hi = -(2 ** (a - 1)), 2 ** (a - 1) - 1
        else:
            lo, hi = 0, 2 ** a - 1
        x = np.arange(lo, hi + 1).reshape(-1, 1) * np.ones((1, 3), dtype=np.int64)   # (batch, in)
        x[:, 1] = x[::-1, 1]
        planes, pw = input_planes(x, a, d, signed)
        m = a - 1 if signed else a                                                 # bits streamed d at a time
        cycles = math.ceil(m / d) + (1 if signed else 0)                           # the sign bit: a cycle of its own
        assert planes.shape == (cycles,) + x.shape
        assert input_cycles(a, d, signed) == cycles
        place = [2.0 ** (d * t) for t in range(math.ceil(m / d))] + ([-(2.0 ** (a - 1))] if signed else [])
        assert np.array_equal(pw, place)                                           # LSB first
        assert np.array_equal(np.tensordot(pw, planes, axes=1), x), (a, d, signed)
        top_w = m - d * (math.ceil(m / d) - 1)                                     # bits of the top magnitude digit
        for t in range(math.ceil(m / d) - 1):
            assert planes[t].min() == 0 and planes[t].max() == 2 ** d - 1
        t = math.ceil(m / d) - 1
        if t >= 0:
            assert planes[t].min() == 0 and planes[t].max() == 2 ** top_w - 1
        if signed:   # the sign bit, unipolar: 1 exactly where the input is negative
            assert np.array_equal(planes[-1], (x < 0).astype(planes.dtype))


def test_input_planes_hand_example():
    # 5-bit signed, 2-bit DAC: -11 = 10101b (two's complement) -> magnitude digits 01, 01, then the sign bit 1 with
    # place value -16: 1 + 4 - 16 = -11
    planes, pw = input_planes(np.array([[-11, 6]]), 5, 2, True)
    assert np.array_equal(planes[:, 0, 0], [1, 1, 1])
    assert np.array_equal(planes[:, 0, 1], [2, 1, 0])     # 6 = 00110b
    assert np.array_equal(pw, [1.0, 4.0, -16.0])
    # 1-bit DAC: the cycles of unsigned inputs, the last one weighing -2**(a-1)
    shifts, widths = plane_layout(8, 1, True)
    assert np.array_equal(shifts, np.arange(8)) and np.array_equal(widths, np.ones(8))
    assert np.array_equal(plane_weights(8, 1, True), [1, 2, 4, 8, 16, 32, 64, -128])
    assert input_cycles(8, 2, True) == 5 and input_cycles(8, 2, False) == 4 and input_cycles(9, 2, True) == 5


def test_out_of_range_and_non_integer_inputs_raise():
    with pytest.raises(ConfigError, match=r"\[0, 255\]"):
        input_planes(np.array([[256]]), 8, 1, False)
    with pytest.raises(ConfigError, match=r"\[0, 255\]"):
        input_planes(np.array([[-1]]), 8, 1, False)
    with pytest.raises(ConfigError, match=r"\[-128, 127\]"):
        input_planes(np.array([[128]]), 8, 2, True)
    with pytest.raises(ConfigError, match=r"\[-128, 127\]"):
        input_planes(np.array([[-129]]), 8, 2, True)
    with pytest.raises(ConfigError, match="integers"):
        input_planes(np.array([[1.25]]), 8, 1, False)
    with pytest.raises(ConfigError, match="integers"):
        input_planes(np.array([[np.inf]]), 8, 1, True)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_split_inputs_stream_a_positive_then_a_negative_part(d):
    """``"split"``: the positive part's a - 1 bits, then the negative part's (bits a - 1 .. 2a - 3 of the digit
    source), the latter with negative place values; every signed input back exactly, symmetric range only."""
    for a in range(2, 10):
        top = 2 ** (a - 1) - 1
        x = np.arange(-top, top + 1).reshape(-1, 1) * np.ones((1, 2), dtype=np.int64)
        planes, pw = input_planes(x, a, d, True, "split")
        half = math.ceil((a - 1) / d)
        assert planes.shape[0] == 2 * half == input_cycles(a, d, True, "split")
        assert np.array_equal(np.tensordot(pw, planes, axes=1), x)
        assert np.all(pw[:half] > 0) and np.all(pw[half:] < 0) and np.array_equal(pw[half:], -pw[:half])
        assert not np.any((np.abs(planes[:half]).sum(axis=0) > 0) & (np.abs(planes[half:]).sum(axis=0) > 0))
        u = digit_source(x, a, True, "split")
        assert u.max() < 2 ** source_bits(a, True, "split") and np.array_equal(source_numbers(u, a, True, "split"), x)
        assert np.array_equal(source_numbers(digit_source(x, a, True), a, True), x)            # two's complement
    with pytest.raises(ConfigError, match=r"\[-127, 127\]"):
        input_planes(np.array([[-128]]), 8, 1, True, "split")
