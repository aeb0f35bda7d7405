"""Crossbar readout options of ADC-less architectures (HCiM): pair readout (G+ against G-) and column scales.

Expected values come from numpy references written here from the formulas (bit planes, weight slices and
row blocks from cimsim.encoding, everything else by hand), not from the engine's intermediate arrays.
"""

import numpy as np
import pytest

from _crossbar_cases import _matmul, _operands
from cimsim import Crossbar, CrossbarSpec
from cimsim.devices import IdealCell, IdealReadout, ReRAM, SarADC, SenseAmp, TernaryReadout
from cimsim.encoding import input_cycles, input_planes, slice_weights
from cimsim.errors import ConfigError
from cimsim.readouts import ACROSS_ROW_BLOCKS
from test_crossbar_scopes import ENGINES


def spec(**kw):
    base = dict(rows=16, cols=16, cell=IdealCell(), cell_bits=1, weight_bits=4, input_bits=4, dac_bits=1,
                signed="differential", pair_readout=True)
    base.update(kw)
    return CrossbarSpec(**base)


def psq_reference(W, x, s: CrossbarSpec, scales, readout: str, delta: float = 0.5):
    """y = sum_{t, r, j} 2**(d t) * w_slice * alpha * D(PS / alpha), PS = plane_t[rows r] @ (W+_j - W-_j)[rows r]."""
    sl = slice_weights(W, s.weight_bits, s.cell_bits, "differential")
    planes, pw = input_planes(x, s.input_bits, s.dac_bits, s.input_signed)
    D = sl.levels[:, 0] - sl.levels[:, 1]                     # (slices, out, in) signed slice values
    S, N, K = D.shape
    y = np.zeros((x.shape[0], N))
    for r, k0 in enumerate(range(0, K, s.rows)):
        k1 = min(k0 + s.rows, K)
        for t in range(planes.shape[0]):
            for j in range(S):
                ps = planes[t][:, k0:k1].astype(np.float64) @ D[j][:, k0:k1].T.astype(np.float64)
                u = ps / scales[r, j]
                dec = np.where(u > 0, 1.0, -1.0) if readout == "binary" else (u > delta) * 1.0 - (u < -delta) * 1.0
                y += pw[t] * sl.weights[j] * scales[r, j] * dec
    return y


# ------------------------------------------------------------------------------------------- identities
@pytest.mark.parametrize("backend,device", ENGINES, ids=lambda v: v)
@pytest.mark.parametrize("input_signed,cell_bits,wb,ib,dac", [(False, 1, 4, 4, 1), (True, 2, 8, 8, 2),
                                                              (False, 3, 5, 3, 3)])
def test_pair_readout_with_ideal_cells_and_readout_is_the_integer_matmul(input_signed, cell_bits, wb, ib, dac,
                                                                         backend, device):
    rng = np.random.default_rng(1)
    s = spec(cell_bits=cell_bits, weight_bits=wb, input_bits=ib, dac_bits=dac, input_signed=input_signed,
             rows=7, cols=5)
    W, x = _operands(rng, "differential", wb, ib, input_signed, 13, 40, 9)
    xb = Crossbar(W, s, seed=0, backend=backend, device=device)
    assert np.array_equal(xb(x), _matmul(x, W))
    # one conversion per column pair: half the physical columns
    cycles = input_cycles(ib, dac, input_signed)     # signed: the sign bit a cycle of its own
    assert xb.readout_columns == xb.physical_columns // 2
    assert xb.ledger.count("ideal-readout_conversion") == 9 * cycles * len(xb.row_blocks) * xb.readout_columns
    assert xb.ledger.count("nonzero_decisions") == 0


def test_pair_readout_through_a_wide_enough_adc_is_lossless():
    rng = np.random.default_rng(2)
    W, x = _operands(rng, "differential", 4, 4, False, 6, 20, 8)
    # |PS+ - PS-| <= 16 rows x 1 level: 6 bits cover [-16, 16] with an LSB of one level
    xb = Crossbar(W, spec(readout=SarADC(bits=6), adc_range="full"), seed=0)
    assert np.array_equal(xb(x), _matmul(x, W))
    cal = Crossbar(W, spec(readout=SarADC(bits=6), adc_range="calibrated", calibration_percentile=100), seed=0)
    cal.calibrate(x)
    assert np.array_equal(cal(x), _matmul(x, W))


@pytest.mark.parametrize("backend,device", ENGINES, ids=lambda v: v)
@pytest.mark.parametrize("readout", ["ternary", "binary"])
def test_scaled_decisions_equal_the_psq_formula_bit_for_bit(readout, backend, device):
    rng = np.random.default_rng(3)
    s = spec(readout=TernaryReadout(delta=0.5) if readout == "ternary" else SenseAmp(threshold=0.0))
    W, x = _operands(rng, "differential", 4, 4, False, 11, 40, 25)
    rb = -(-40 // s.rows)
    # dyadic scales (multiples of 1/4): every product and sum below is exact in float64
    scales = rng.integers(1, 24, size=(rb, 3, 11)) / 4.0
    scales[0, 0, 0] = 2.0                      # a threshold hit exactly (PS = 1 = 0.5 x 2) decides 0
    xb = Crossbar(W, s, seed=0, column_scales=scales, backend=backend, device=device)
    y = xb(x)
    ref = psq_reference(W, x, s, scales, readout)
    np.testing.assert_array_equal(y, ref)
    # the ledger: one decision per pair, and the non-zero ones (ternary zeros are skipped)
    planes, _ = input_planes(x, 4, 1, False)
    conv = 25 * 4 * rb * 3 * 11
    kind = "ternary_conversion" if readout == "ternary" else "sense-amp_conversion"
    assert xb.ledger.count(kind) == conv == xb.ledger.count("shift_adds")
    nz = xb.ledger.count("nonzero_decisions")
    if readout == "binary":
        assert nz == conv
    else:
        sl = slice_weights(W, 4, 1, "differential")
        D = sl.levels[:, 0] - sl.levels[:, 1]
        expect = 0
        for r in range(rb):
            k0, k1 = r * 16, min(r * 16 + 16, 40)
            for t in range(4):
                for j in range(3):
                    ps = planes[t][:, k0:k1] @ D[j][:, k0:k1].T
                    expect += np.count_nonzero(np.abs(ps / scales[r, j]) > 0.5)
        assert nz == expect and 0 < nz < conv


def test_large_scales_make_a_ternary_readout_all_zero_and_small_ones_the_sign():
    rng = np.random.default_rng(4)
    W, x = _operands(rng, "differential", 4, 4, False, 5, 16, 6)
    big = Crossbar(W, spec(readout=TernaryReadout(delta=0.5)), column_scales=np.full((1, 3, 5), 1e6))
    assert np.array_equal(big(x), np.zeros((6, 5)))
    assert big.ledger.count("nonzero_decisions") == 0


def test_pair_readout_noise_adds_both_columns_variances():
    """Read noise on a pair: the variance of PS+ - PS- is the sum of both columns' (checked by statistics)."""
    cell = ReRAM(read_sigma_frac=0.05)
    W = np.array([[7, -7, 0, 3]])
    x = np.full((4000, 4), 1)
    s = spec(cell=cell, input_bits=1, rows=4, readout=IdealReadout())
    xb = Crossbar(W, s, seed=5)
    y = xb(x)
    g = cell.program(slice_weights(W, 4, 1, "differential").levels, 1, None)
    g_min, g_max = cell.level_conductances(1)
    dg = g_max - g_min
    var = 0.0
    for j, wj in enumerate([1, 2, 4]):
        sig = cell.read_sigma_s(g[j]) / dg          # (2, 1, 4) per polarity and input
        var += wj ** 2 * float((sig ** 2).sum())
    assert cell.prog_sigma_frac == 0                # levels programmed exactly: the mean is the integer product
    mean_expect = float(_matmul(x[:1], W)[0, 0])
    assert float(y.mean()) == pytest.approx(mean_expect, abs=4 * np.sqrt(var / 4000))
    assert float(y.var()) == pytest.approx(var, rel=0.1)


# ------------------------------------------------------------------------------------------- validation
def test_bad_configurations_give_one_line_errors():
    W = np.zeros((3, 8), dtype=int)
    with pytest.raises(ConfigError, match="signed='differential'"):
        spec(signed="offset")
    with pytest.raises(ConfigError, match="pair_readout must be True or False"):
        spec(pair_readout="yes")
    with pytest.raises(ConfigError, match="shape"):
        Crossbar(W, spec(readout=TernaryReadout()), column_scales=np.ones((1, 3)))
    with pytest.raises(ConfigError, match="positive"):
        Crossbar(W, spec(readout=TernaryReadout()), column_scales=np.zeros((1, 3, 3)))
    with pytest.raises(ConfigError, match="SenseAmp or TernaryReadout"):
        Crossbar(W, spec(readout=SarADC(bits=4)), column_scales=np.ones((1, 3, 3)))
    with pytest.raises(ConfigError, match="row_blocks='each'"):
        Crossbar(W, spec(readout=TernaryReadout(), conversion=ACROSS_ROW_BLOCKS), column_scales=np.ones((1, 3, 3)))
    # without the pair readout the scales are per physical column (slices x polarities x outputs)
    xb = Crossbar(W, spec(pair_readout=False, readout=TernaryReadout()), column_scales=np.ones((1, 3, 2, 3)))
    assert xb.readout_columns == xb.physical_columns == 18
