"""The crossbar engine (cimsim.Crossbar): exactness, ADC range handling, noise statistics, faults,
drift, 1-bit / ternary readouts, the event ledger and validation.

Every expected number is computed here from first principles (hand formulas or brute-force loops),
not from the engine's own intermediate arrays, except where noted.
"""

import math
import zlib

import numpy as np
import pytest

import cimsim
from _crossbar_cases import _matmul, _operands
from cimsim import Crossbar, CrossbarSpec
from cimsim.devices import IdealCell, IdealReadout, ReRAM, SarADC, SenseAmp, TernaryReadout
from cimsim.encoding import SIGNED_MODES, input_planes, plane_layout, slice_weights
from cimsim.errors import ConfigError


# ------------------------------------------------------------------------------------------- exactness
# shapes: (out, in, rows, cols, batch, batch_chunk)
S1 = (13, 150, 7, 5, 9, 4)       # many row blocks, many col blocks, chunk < batch
S2 = (13, 150, 128, 128, 1, 1)   # ragged second row block, batch 1
S3 = (4, 5, 128, 5, 9, 2)        # in_features < rows, chunk < batch
S4 = (1, 150, 128, 5, 9, 16)     # single output, chunk > batch
# pairwise-style design: every level of every factor appears at least twice (mode x input_signed fully)
EXACT_CASES = [
    # mode,          c, b, a, d, signed, shape
    ("offset",       1, 2, 3, 1, False, S1),
    ("offset",       2, 5, 8, 2, True,  S2),
    ("offset",       3, 8, 3, 3, True,  S3),
    ("offset",       2, 8, 8, 1, False, S4),
    ("twos",         1, 5, 8, 3, False, S3),
    ("twos",         2, 8, 3, 1, True,  S1),
    ("twos",         3, 2, 8, 2, False, S4),
    ("twos",         3, 5, 3, 3, True,  S2),
    ("differential", 1, 8, 3, 2, True,  S4),
    ("differential", 2, 2, 8, 3, False, S1),
    ("differential", 3, 5, 3, 1, False, S3),
    ("differential", 1, 2, 8, 2, True,  S2),
]


def test_exact_case_design_covers_every_level_twice():
    for idx, levels in ((0, SIGNED_MODES), (1, (1, 2, 3)), (2, (2, 5, 8)), (3, (3, 8)), (4, (1, 2, 3)),
                        (5, (False, True)), (6, (S1, S2, S3, S4))):
        for lv in levels:
            assert sum(case[idx] == lv for case in EXACT_CASES) >= 2, (idx, lv)


@pytest.mark.parametrize("mode,c,b,a,d,signed,shape", EXACT_CASES)
def test_ideal_crossbar_is_exact(mode, c, b, a, d, signed, shape):
    out, inp, rows, cols, batch, chunk = shape
    rng = np.random.default_rng(zlib.crc32(repr((mode, c, b, a, d, signed, shape)).encode()))   # stable seed
    W, x = _operands(rng, mode, b, a, signed, out, inp, batch)
    spec = CrossbarSpec(rows=rows, cols=cols, cell=IdealCell(), cell_bits=c, weight_bits=b, input_bits=a,
                        dac_bits=d, signed=mode, input_signed=signed, readout=IdealReadout(), batch_chunk=chunk)
    y = Crossbar(W, spec, seed=1)(x)
    assert y.shape == (batch, out)
    assert np.array_equal(y, _matmul(x, W))


def test_ideal_crossbar_exact_randomized_sweep():
    rng = np.random.default_rng(20240611)
    for i in range(40):
        mode = SIGNED_MODES[rng.integers(3)]
        c, b, a, d = int(rng.integers(1, 5)), int(rng.integers(2, 10)), int(rng.integers(2, 10)), int(rng.integers(1, 5))
        signed = bool(rng.integers(2))
        out, inp = int(rng.integers(1, 14)), int(rng.integers(1, 151))
        rows, cols = int(rng.choice([3, 7, 16, 128])), int(rng.choice([1, 5, 128]))
        batch = int(rng.integers(1, 10))
        chunk = int(rng.integers(1, batch + 2))
        W, x = _operands(rng, mode, b, a, signed, out, inp, batch)
        spec = CrossbarSpec(rows=rows, cols=cols, cell_bits=c, weight_bits=b, input_bits=a, dac_bits=d,
                            signed=mode, input_signed=signed, batch_chunk=chunk)
        y = Crossbar(W, spec, seed=i)(x)
        assert np.array_equal(y, _matmul(x, W)), (i, mode, c, b, a, d, signed, out, inp, rows, cols, batch, chunk)


def test_float_integer_operands_are_accepted_exactly():
    rng = np.random.default_rng(5)
    W, x = _operands(rng, "twos", 8, 8, True, 3, 20, 4)
    y = Crossbar(W.astype(np.float64), CrossbarSpec(rows=8, signed="twos", input_signed=True))(x.astype(np.float32))
    assert np.array_equal(y, _matmul(x, W))


# ------------------------------------------------------------------------------------------------ ADC
def _worst_span(rows, c, a, d, signed):
    """Worst-case column value span in level units, from the digit ranges of all planes (unsigned digits: a signed
    input's sign is its last cycle's place value)."""
    _, widths = plane_layout(a, d, signed)
    return rows * (2 ** int(max(widths)) - 1) * (2 ** c - 1)


ADC_CASES = [
    # mode, c, a, d, signed, rows, inp
    ("differential", 2, 8, 1, False, 16, 40),
    ("twos", 3, 5, 2, True, 7, 30),
    ("offset", 1, 6, 3, True, 20, 20),
    ("twos", 1, 4, 1, False, 31, 40),        # span exactly 2**5 - 1: the range boundary case
]


@pytest.mark.parametrize("mode,c,a,d,signed,rows,inp", ADC_CASES)
def test_full_range_adc_with_enough_bits_is_lossless_and_one_bit_less_is_not(mode, c, a, d, signed, rows, inp):
    rng = np.random.default_rng(17)
    W, x = _operands(rng, mode, 8, a, signed, 5, inp, 12)
    span = _worst_span(min(rows, inp), c, a, d, signed)
    bits = math.ceil(math.log2(span + 1))
    ref = _matmul(x, W)
    ys = {}
    for nb in (bits, bits - 1):
        spec = CrossbarSpec(rows=rows, cols=16, cell_bits=c, input_bits=a, dac_bits=d, signed=mode,
                            input_signed=signed, readout=SarADC(bits=nb), adc_range="full")
        ys[nb] = Crossbar(W, spec)(x)
    assert np.array_equal(ys[bits], ref)
    assert np.abs(ys[bits - 1] - ref).max() > 0
    # one bit less: per row block the LSB is the power of two covering that block's worst-case span (2 for
    # full blocks, 1 for a short last block) on a grid anchored at the block's worst-case minimum
    ws = slice_weights(W, 8, c, mode)
    planes, pw = input_planes(x, a, d, signed)
    r = np.zeros((planes.shape[0], x.shape[0]) + ws.levels.shape[:3])
    for k0 in range(0, inp, rows):
        k1 = min(k0 + rows, inp)
        v = np.einsum("tbk,spnk->tbspn", planes[:, :, k0:k1].astype(float), ws.levels[..., k0:k1].astype(float))
        n = k1 - k0
        lo = 0.0                                    # every column value >= 0: a unipolar range
        lsb = 2.0 ** max(0, math.ceil(math.log2(_worst_span(n, c, a, d, signed) / (2 ** (bits - 1) - 1))))
        r += lo + lsb * np.clip(np.floor((v - lo) / lsb + 0.5), 0, 2 ** (bits - 1) - 1)
    assert np.array_equal(ys[bits - 1], _digital_sum(ws, pw, r, x))


def test_adc_error_grows_as_bits_drop():
    # rows=128, 2-bit cells, 1-bit DAC: worst-case span 384 level units -> 9 bits lossless. Examples have
    # a per-example input-bit density in [0, 1] so column values spread over the whole range.
    # Observed mean |error| (seed 7), bits 9..3: 0, 5465, 12489, 26859, 57592, 86469, 136338 (mean |ref| 88618).
    # Note: with uniform-density inputs (column values bunched near 96) the curve is NOT monotone at the coarse
    # end (4 bits: 198711 > 3 bits: 81150): G+ and G- then round to the same code and the output collapses to 0.
    rng = np.random.default_rng(7)
    W = rng.integers(-127, 128, (8, 128))
    dens = rng.random((32, 1))
    bits_x = (rng.random((32, 128, 8)) < dens[:, :, None]).astype(np.int64)
    x = (bits_x << np.arange(8)).sum(-1)
    ref = _matmul(x, W)
    errs = []
    for bits in range(9, 2, -1):
        spec = CrossbarSpec(rows=128, cols=128, readout=SarADC(bits=bits))
        errs.append(np.abs(Crossbar(W, spec)(x) - ref).mean())
    assert errs[0] == 0
    assert np.all(np.diff(errs) > 0), errs
    assert errs[1] == pytest.approx(5465, rel=0.05) and errs[-1] == pytest.approx(136338, rel=0.05)


def _column_values(W, x, mode, b, c, a, d, signed):
    """Noise-free column values (cycles, batch, slices, polarity, out) for a single row block."""
    ws = slice_weights(W, b, c, mode)
    planes, pw = input_planes(x, a, d, signed)
    v = np.einsum("tbk,spnk->tbspn", planes.astype(np.float64), ws.levels.astype(np.float64))
    return ws, planes, pw, v


def _digital_sum(ws, pw, r, x):
    """Shift-and-add of per-column readouts r (cycles, batch, slices, polarity, out), then the offset."""
    y = np.einsum("t,s,p,tbspn->bn", pw, ws.weights, ws.sign, r)
    return y - ws.offset * np.asarray(x).sum(axis=1)[:, None]


def test_fixed_adc_range_clips_outside_values():
    mode, b, c, a, d = "twos", 5, 2, 4, 1
    rng = np.random.default_rng(2)
    W, x = _operands(rng, mode, b, a, False, 4, 12, 10)
    ws, planes, pw, v = _column_values(W, x, mode, b, c, a, d, False)
    assert v.max() > 7                       # the case does exercise clipping
    # (0, 7) with 3 bits: LSB exactly 1, so values convert exactly inside and clip to 0 / 7 outside
    spec = CrossbarSpec(rows=16, cols=8, cell_bits=c, weight_bits=b, input_bits=a, dac_bits=d, signed=mode,
                        readout=SarADC(bits=3), adc_range=(0, 7))
    y = Crossbar(W, spec)(x)
    expected = _digital_sum(ws, pw, np.clip(v, 0, 7), x)
    assert np.array_equal(y, expected)
    assert not np.array_equal(y, _matmul(x, W))
    # (0, 10) with 3 bits: the LSB rounds up to the power of two 2, so the top code is 14, not 10
    spec = CrossbarSpec(rows=16, cols=8, cell_bits=c, weight_bits=b, input_bits=a, dac_bits=d, signed=mode,
                        readout=SarADC(bits=3), adc_range=(0, 10))
    expected = _digital_sum(ws, pw, 2.0 * np.clip(np.floor(v / 2 + 0.5), 0, 7), x)
    assert np.array_equal(Crossbar(W, spec)(x), expected)


@pytest.mark.parametrize("mode", SIGNED_MODES)
def test_non_integer_adc_lo_does_not_bias_outputs(mode):
    # regression: lo = -200.3 used to put every reconstruction level at v + 0.3 (a constant bias per
    # conversion; it cancelled only in differential mode: errors 13.5 / 22.5 / 0 for twos / offset / diff)
    rng = np.random.default_rng(0)
    W, x = _operands(rng, mode, 4, 4, True, 3, 10, 5)
    spec = CrossbarSpec(rows=16, cols=32, weight_bits=4, input_bits=4, signed=mode, input_signed=True,
                        readout=SarADC(bits=12), adc_range=(-200.3, 200.0))
    assert np.array_equal(Crossbar(W, spec)(x), _matmul(x, W))


def test_calibrated_range_needs_calibration():
    spec = CrossbarSpec(rows=8, readout=SarADC(bits=8), adc_range="calibrated")
    xb = Crossbar(np.ones((2, 4), dtype=int), spec)
    with pytest.raises(ConfigError, match="calibrate"):
        xb(np.ones((1, 4), dtype=int))


def test_calibrated_percentile_range_is_lossless_inside_for_signed_inputs():
    # signed inputs: the digits are unsigned (the sign bit a cycle whose place value is negative), so the
    # calibrated range is [0, p] with p an interpolated percentile (non-integer here); with bits to spare nothing
    # clips, so the output must be exact (no bias from a fractional p)
    mode, b, c, a, d = "twos", 8, 2, 8, 1
    rng = np.random.default_rng(1)
    W, x = _operands(rng, mode, b, a, True, 3, 10, 7)
    _, _, _, v = _column_values(W, x, mode, b, c, a, d, True)
    p = np.percentile(np.abs(v), 99.9)
    assert p != round(p) and v.min() == 0 and x.min() < 0
    spec = CrossbarSpec(rows=16, cols=32, signed=mode, input_signed=True, readout=SarADC(bits=14),
                        adc_range="calibrated")
    xb = Crossbar(W, spec)
    xb.calibrate(x)
    assert xb._range == [(0.0, p)]       # numpy's percentile of every column value, to the last bit
    assert np.array_equal(xb(x), _matmul(x, W))
    with pytest.raises(ConfigError, match=r"calibration inputs must have shape \(batch, 10\)"):
        xb.calibrate(x[:, :9])


def test_percentile_in_place_is_numpys_linear_rule():
    from cimsim.calibration import percentile_in_place

    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 1000, 65537):
        for q in (0, 50, 99.9, 99.99, 100):
            for a in (rng.normal(size=n), rng.integers(0, 400, n).astype(np.float32)):
                assert percentile_in_place(a.copy(), q) == float(np.percentile(a.astype(np.float64), q))


def test_calibrated_8bit_beats_full_range_5bit_on_sparse_small_inputs():
    # realistic case: 128x128 array, 2-bit cells, 1-bit DAC, 8-bit weights; 20 % of the inputs non-zero,
    # values < 64 (post-ReLU-like). Observed relative errors ||y - ref|| / ||ref|| (seed 11):
    #   full 5 bit: 0.652   full 6 bit: 0.784   full 8 bit: 0.133
    #   calibrated (range [0, 26] level units) 5 bit: 0.00095   8 bit: 0.0
    rng = np.random.default_rng(11)
    W = rng.integers(-127, 128, (16, 128))
    x = rng.integers(0, 64, (64, 128)) * (rng.random((64, 128)) < 0.2)
    ref = _matmul(x, W)

    def rel(y):
        return np.linalg.norm(y - ref) / np.linalg.norm(ref)

    full5 = rel(Crossbar(W, CrossbarSpec(readout=SarADC(bits=5)))(x))
    full8 = rel(Crossbar(W, CrossbarSpec(readout=SarADC(bits=8)))(x))
    cal = {}
    for bits in (5, 8):
        xb = Crossbar(W, CrossbarSpec(readout=SarADC(bits=bits), adc_range="calibrated"))
        xb.calibrate(x)
        cal[bits] = rel(xb(x))
    assert cal[8] < full5 and cal[8] < full8 and cal[5] < full5
    assert full5 == pytest.approx(0.652, rel=0.01) and full8 == pytest.approx(0.133, rel=0.01)
    assert cal[8] == 0.0 and 0 < cal[5] < 0.002


# --------------------------------------------------------------------------- 1-bit / ternary readouts
W_HAND = np.array([[3, 3, 3], [-4, 1, 0]])    # 3-bit weights, 1-bit cells


def test_sense_amp_twos_by_hand():
    # twos, 3 bits: slices bit0 (w 1), bit1 (w 2), sign (w -4). W row 0 = 011 each; row 1: -4 -> sign only, 1 -> bit0.
    # x = [1,1,1]: plane0 sums out0 (3,3,0) -> decisions (1,1,0) -> 3; out1 (1,0,1) -> 1 - 4 = -3.
    # x = [3,2,0]: plane0 [1,0,0]: out0 (1,1,0) -> 3, out1 (0,0,1) -> -4; plane1 [1,1,0]: out0 (2,2,0) -> 3,
    # out1 (1,0,1) -> -3. y = plane0 + 2 * plane1 = [9, -10]   (exact would be [15, -10])
    spec = CrossbarSpec(rows=4, cols=4, cell_bits=1, weight_bits=3, input_bits=2, dac_bits=1, signed="twos",
                        readout=SenseAmp(threshold=0.5))
    y = Crossbar(W_HAND, spec)(np.array([[1, 1, 1], [3, 2, 0]]))
    assert np.array_equal(y, [[3, -3], [9, -10]])


def test_sense_amp_offset_by_hand():
    # offset, 3 bits: stored W + 4 = [[7,7,7],[0,5,4]] -> slices (w 1, 2, 4): [[1,1,1],[0,1,0]], [[1,1,1],[0,0,0]],
    # [[1,1,1],[0,1,1]]; the digital side subtracts 4 * sum(x).
    # x = [1,1,1]: out0 all sums 3 -> 7; out1 (1,0,2) -> 1 + 4 = 5; minus 12 -> [-5, -7].
    # x = [3,2,0]: plane0 [1,0,0]: out0 7, out1 0; plane1 [1,1,0]: out0 (2,2,2) -> 7, out1 (1,0,1) -> 5;
    # 7 + 2*7 - 20 = 1, 0 + 2*5 - 20 = -10.
    spec = CrossbarSpec(rows=4, cols=4, cell_bits=1, weight_bits=3, input_bits=2, dac_bits=1, signed="offset",
                        readout=SenseAmp(threshold=0.5))
    y = Crossbar(W_HAND, spec)(np.array([[1, 1, 1], [3, 2, 0]]))
    assert np.array_equal(y, [[-5, -7], [1, -10]])


def test_ternary_readout_by_hand():
    # signed 2-bit inputs with a 2-bit DAC: cycle 0 the magnitude bit (place 1), cycle 1 the sign bit (place -2),
    # both unipolar digits; twos 3-bit weights as above (slices bit 0, bit 1, sign with weights 1, 2, -4).
    # x = [-2,-2,1] (digits [0,0,1], then [1,1,0]): out0 slice sums (1,1,0) -> 3, then (2,2,0) -> (1,1,0) -> 3 x -2:
    # -3; out1 (0,0,0), then (1,0,1) -> 1 - 4 = -3 x -2 = 6.
    # x = [1,0,0]: out0 (1,1,0) -> 3; out1 (0,0,1) -> -4.
    # x = [1,-1,0] (digits [1,1,0], then [0,1,0]): out0 (2,2,0) -> 3, (1,1,0) -> 3 x -2: -3; out1 (1,0,1) -> -3,
    # (1,0,0) -> 1 x -2: -5.
    spec = CrossbarSpec(rows=4, cols=4, cell_bits=1, weight_bits=3, input_bits=2, dac_bits=2, signed="twos",
                        input_signed=True, readout=TernaryReadout(delta=0.5))
    y = Crossbar(W_HAND, spec)(np.array([[-2, -2, 1], [1, 0, 0], [1, -1, 0]]))
    assert np.array_equal(y, [[-3, 6], [3, -4], [-3, -5]])


@pytest.mark.parametrize("readout", [SenseAmp(threshold=1.5), TernaryReadout(delta=2.5)])
def test_decision_readouts_match_reference_on_random_data(readout):
    mode, b, c, a, d = "differential", 5, 2, 4, 2
    rng = np.random.default_rng(30)
    W, x = _operands(rng, mode, b, a, True, 4, 6, 8)
    ws, planes, pw, v = _column_values(W, x, mode, b, c, a, d, True)
    if isinstance(readout, SenseAmp):
        r = (v > 1.5).astype(float)
    else:
        r = (v > 2.5).astype(float) - (v < -2.5).astype(float)
    spec = CrossbarSpec(rows=8, cols=8, cell_bits=c, weight_bits=b, input_bits=a, dac_bits=d, signed=mode,
                        input_signed=True, readout=readout)
    assert np.array_equal(Crossbar(W, spec)(x), _digital_sum(ws, pw, r, x))


# ------------------------------------------------------------------------------------------------ ledger
def test_ledger_counts_and_read_energy():
    cell = ReRAM()
    mode, c, b, a, d = "differential", 2, 4, 3, 2
    W = np.array([[1, -7, 3, 0, 5], [-2, 6, 0, -1, 7]])
    x = np.array([[3, -4, 0, 1, 2], [0, 0, 0, 0, 0], [-1, 2, -3, 0, 1]])
    spec = CrossbarSpec(rows=3, cols=4, cell=cell, cell_bits=c, weight_bits=b, input_bits=a, dac_bits=d,
                        signed=mode, input_signed=True, readout=SarADC(bits=8), batch_chunk=2)
    xb = Crossbar(W, spec, name="L")
    xb(x)
    batch, cycles = 3, 2                                   # ceil((3 - 1) / 2) magnitude cycles + the sign bit's
    slices = 2                                             # ceil((4 - 1) / 2)
    phys = slices * 2 * 2                                  # slices x polarity x out = 8
    row_blocks, col_blocks = 2, 2                          # ceil(5 / 3), ceil(8 / 4)
    # digits (two's complement, 3 bits, 2-bit DAC): plane0 = x & 3, plane1 = the sign bit (place value -4)
    u = np.where(x < 0, x + 8, x)
    p0, p1 = u & 3, (u >> 2) & 1
    nonzero = np.count_nonzero(p0) + np.count_nonzero(p1)
    assert nonzero == 10                                  # row 0: 3 + 1, row 1: 0, row 2: 4 + 2
    led = xb.ledger
    conversions = batch * cycles * row_blocks * phys
    expected = {
        "array_read_cycles": batch * cycles * row_blocks * col_blocks,
        "sar-adc_conversion_8b": conversions,
        "shift_adds": conversions,
        "dac_drives": nonzero * col_blocks,
        "cell_reads": nonzero * phys,
        "clipped_conversions": 0,                          # a full-range 8-bit ADC never clips
    }
    assert set(led.events()) == set(expected) | {"cell_read_conductance_s"}
    for event, n in expected.items():
        assert led.count(event, "L") == n, event
    # brute-force read energy: (digit * V_read / (2**d - 1))**2 * G * t_read per cell read; the ledger counts
    # the conductance-seconds sum digit**2 * G * t_read, which times the DAC step squared is that energy
    e = 0.0
    for bi in range(batch):
        for plane in (p0, p1):
            for k in range(5):
                digit = plane[bi, k]
                if digit:
                    for s in range(slices):
                        for p in range(2):
                            for o in range(2):
                                e += (digit * cell.read_voltage_v / 3) ** 2 * xb.g[s, p, o, k] * cell.read_time_s
    v_step = cell.read_voltage_v / 3
    assert xb.read_voltage_step_v() == v_step
    assert led.count("cell_read_conductance_s", "L") * v_step ** 2 == pytest.approx(e, rel=1e-9)
    assert e > 0
    before = led.totals()
    xb(x)
    after = xb.ledger.totals()
    for event, n in before.items():
        assert after[event] == pytest.approx(2 * n, rel=1e-12), event


def test_ledger_ideal_readout_event_and_offset_adds():
    W = np.array([[1, -2], [3, 0], [-4, 2]])
    xb = Crossbar(W, CrossbarSpec(rows=8, cols=8, weight_bits=4, input_bits=2, signed="offset"), name="o")
    xb(np.array([[1, 2], [3, 0]]))
    phys = 2 * 3                                           # ceil(4 / 2) slices x 3 outputs
    assert xb.ledger.count("ideal-readout_conversion", "o") == 2 * 2 * 1 * phys
    assert xb.ledger.count("offset_correction_adds", "o") == 2 * (2 + 3)
    assert xb.ledger.count("cell_reads", "o") == 4 * phys   # nonzero bits: 1, 2, 3 = 1 + 1 + 2


# -------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs", [
    {"rows": 0}, {"cols": -1}, {"cell_bits": 0}, {"weight_bits": 1}, {"dac_bits": 1.5}, {"batch_chunk": True},
    {"signed": "foo"}, {"adc_range": "bogus"}, {"adc_range": (5, 1)}, {"cell": "reram"}, {"cell": object()},
    {"readout": "adc"}, {"input_bits": 1, "input_signed": True}, {"calibration_percentile": 10},
])
def test_bad_spec_values_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        CrossbarSpec(**kwargs)


def test_bad_shapes_and_backends():
    W = np.ones((3, 4), dtype=int)
    xb = Crossbar(W, CrossbarSpec())
    for bad in (np.ones(4, dtype=int), np.ones((2, 5), dtype=int), np.ones((1, 2, 4), dtype=int)):
        with pytest.raises(ConfigError, match="shape"):
            xb(bad)
    with pytest.raises(ConfigError, match=r"\[0, 255\]"):
        xb(np.full((1, 4), 256))
    with pytest.raises(ConfigError, match="integers"):
        xb(np.full((1, 4), 0.5))
    with pytest.raises(ConfigError):
        Crossbar(np.ones(4, dtype=int), CrossbarSpec())
    with pytest.raises(ConfigError, match=r"\[-127, 127\]"):
        Crossbar(np.full((2, 2), -128), CrossbarSpec())
    with pytest.raises(ConfigError, match="numba backend runs on the CPU"):
        Crossbar(W, CrossbarSpec(), device="cuda")
    with pytest.raises(ConfigError, match="backend"):
        Crossbar(W, CrossbarSpec(), backend="jax")


def test_public_facade_exports_the_engine():
    assert cimsim.Crossbar is Crossbar and cimsim.CrossbarSpec is CrossbarSpec

