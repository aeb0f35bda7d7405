"""The ADC's transfer at its edges, pinned by hand-derived numbers on every engine path (added by a mutation audit:
the rounding of exact half-LSB ties, the clipping boundary and the range's integer ``lo`` were not pinned).

The quantizer (devices/converters.py, cimsim/readouts.py): ``code = clip(floor((v - lo) / lsb + 0.5), 0, 2**bits - 1)``,
reconstructed as ``lo + code * lsb``; a conversion clips when ``floor((v - lo) / lsb + 0.5)`` lies outside
``0 .. 2**bits - 1``. With integer column values and a power-of-two LSB >= 2, exact ties (``v - lo`` an odd multiple
of ``lsb / 2``) are common, so the rounding of a tie (half up) is part of every backend's numbers.
"""

import math

import numpy as np
import pytest

from cimsim import Crossbar, CrossbarSpec
from cimsim.crossbar import quantizer_lo_lsb
from cimsim.crossbar_cpu import CpuTile
from cimsim.devices import FlashADC, SarADC
from cimsim.readouts import ConversionScope

# One output, four rows holding the levels 1, 2, 3, 3 (2-bit cells, unsigned 2-bit weights: one slice, level = weight),
# one-bit unsigned inputs (one cycle, digit = input). The column value is the sum of the selected levels: the ten
# inputs below give every value 0 .. 9.
W = np.array([[1, 2, 3, 3]])
X = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 1, 0],
              [1, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]])
# A 2-bit ADC over adc_range (0, 6): lo = 0, lsb = 6 / (2**2 - 1) = 2 (a power of two already), codes 0..3,
# levels 0, 2, 4, 6. By hand, v -> floor(v / 2 + 0.5) clipped to 0..3, times 2:
#   v:   0  1  2  3  4  5  6  7  8  9
#   y:   0  2  2  4  4  6  6  6  6  6      (v = 1, 3, 5, 7 are ties: they round up)
# and the conversions of v = 7, 8, 9 clip (raw codes 4, 4, 5 > 3); v = 6 is the top code itself, which does not clip.
Y_HAND = np.array([0, 2, 2, 4, 4, 6, 6, 6, 6, 6], dtype=float)
CLIPPED_HAND = 3


def _spec(scope):
    return CrossbarSpec(rows=8, cols=8, cell_bits=2, weight_bits=2, input_bits=1, dac_bits=1, signed="unsigned",
                        readout=SarADC(bits=2), adc_range=(0, 6), conversion=scope)


def test_the_operands_give_every_column_value():
    assert np.array_equal((X @ W.T).ravel(), np.arange(10))


# the CPU engine's paths: the bit-serial integer kernel (default), the float BLAS product with the fused epilogue
# (kernels.adc_rows, BITS off), and the general path (a row-block sum over one row block converts the same values as
# one conversion per cycle, through readouts.QuantizerOp.convert and Quantizer.codes)
@pytest.mark.parametrize("row_blocks,bits_path", [("each", True), ("each", False), ("sum", True)])
def test_ties_round_up_and_the_top_code_does_not_clip_on_the_cpu(monkeypatch, row_blocks, bits_path):
    monkeypatch.setattr(CpuTile, "BITS", bits_path)
    xb = Crossbar(W, _spec(ConversionScope(1, row_blocks)), name="L")
    assert xb.ranges() == [(0.0, 2.0)]
    y = xb(X)
    assert np.array_equal(y.ravel(), Y_HAND)
    assert xb.ledger.count("clipped_conversions", "L") == CLIPPED_HAND
    if row_blocks == "each":
        assert xb._cpu.bit_serial_calls == (1 if bits_path else 0)   # the path the case means to take


@pytest.mark.parametrize("row_blocks", ["each", "sum"])
def test_ties_round_up_and_the_top_code_does_not_clip_on_torch(row_blocks):
    pytest.importorskip("torch")
    xb = Crossbar(W, _spec(ConversionScope(1, row_blocks)), backend="torch", name="L")
    y = xb(X)
    assert np.array_equal(np.asarray(y).ravel(), Y_HAND)
    assert xb.ledger.count("clipped_conversions", "L") == CLIPPED_HAND


@pytest.mark.parametrize("adc", [SarADC, FlashADC])
def test_the_device_model_rounds_ties_half_up(adc):
    # 3 bits over [0, 7]: lsb 1, so u = x; ties at k + 0.5 go to k + 1 (the half-LSB thresholds sit at k + 0.5 and a
    # value on a threshold belongs to the upper code), clipped to 0..7
    ro = adc(bits=3)
    x = np.array([-0.5, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5])
    assert np.array_equal(ro.codes(x, 0.0, 7.0), [0, 1, 2, 3, 4, 5, 6, 7, 7])


@pytest.mark.parametrize("lo,hi,bits", [(-2.5, 5.5, 3), (0.3, 10.0, 2), (-100.7, 3.2, 4), (-0.5, 0.5, 1),
                                        (0.0, 255.0, 8), (0.0, 256.0, 8), (-7.0, 9.0, 3), (12.25, 700.0, 5)])
def test_quantizer_range_is_the_tightest_power_of_two_grid_over_it(lo, hi, bits):
    # the documented rule (cimsim/crossbar.py): lo floored to an integer, then the smallest power-of-two LSB of at
    # least one level unit whose 2**bits codes reach hi
    lo2, lsb = quantizer_lo_lsb(lo, hi, bits)
    top = 2 ** bits - 1
    assert lo2 == math.floor(lo) and lo2 <= lo < lo2 + 1
    assert lsb >= 1 and math.log2(lsb).is_integer()
    assert lo2 + lsb * top >= hi                                   # the grid covers the range
    if lsb > 1:
        assert lo2 + (lsb / 2) * top < hi                          # and half that LSB would not


def test_a_fixed_range_with_a_fractional_lo_keeps_its_bottom_value():
    # adc_range (-2.5, 5.5), 3 bits: lo = floor(-2.5) = -3, span 8.5 over 7 steps -> lsb 2; levels -3, -1, ..., 11.
    # Differential 2-bit weights (W in -1..1, one 1-bit slice per polarity), 1-bit inputs: the pair readout converts
    # G+ - G-, here -3 for weights (-1, -1, -1) and inputs (1, 1, 1): the bottom level, reproduced without clipping.
    spec = CrossbarSpec(rows=8, cols=8, cell_bits=1, weight_bits=2, input_bits=1, dac_bits=1, signed="differential",
                        pair_readout=True, readout=SarADC(bits=3), adc_range=(-2.5, 5.5))
    xb = Crossbar(np.array([[-1, -1, -1]]), spec, name="L")
    assert xb.ranges() == [(-3.0, 2.0)]
    assert xb(np.array([[1, 1, 1]])).ravel().tolist() == [-3.0]
    assert xb.ledger.count("clipped_conversions", "L") == 0


@pytest.mark.parametrize("a,d,expected", [(3, 1, (-4, 3)), (4, 2, (-8, 7)), (5, 2, (-16, 15))])
def test_full_range_of_an_analog_shift_and_add_over_signed_inputs_is_the_input_range(a, d, expected):
    # conversion scope cycles=0 (Neural-PIM: every cycle summed with its place value before one conversion): the
    # summed digits of an a-bit two's complement input span exactly [-2**(a-1), 2**(a-1) - 1]; a column of R rows at
    # the top level L = 2**c - 1 then spans R * L times that (unsigned weights: levels 0..L)
    R, c = 4, 2
    spec = CrossbarSpec(rows=8, cols=8, cell_bits=c, weight_bits=c, input_bits=a, dac_bits=d, signed="unsigned",
                        input_signed=True, readout=SarADC(bits=8), conversion=ConversionScope(0, "each"))
    xb = Crossbar(np.zeros((1, R), dtype=np.int64), spec)
    L = 2 ** c - 1
    assert xb.full_range([0]) == (expected[0] * R * L, expected[1] * R * L)
