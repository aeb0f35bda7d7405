"""The ADC calibration's integer path (cimsim.calibration.HISTOGRAMS): with integer levels the column values are
integers, counted by magnitude in a histogram from the bit-serial tables; the percentile read from the histogram must
be the one the float GEMM and the exact selection give, range for range, and it must step aside for non-integer
levels."""

import numpy as np
import pytest

from _crossbar_cases import _operands
from cimsim import Crossbar, CrossbarSpec, calibration
from cimsim import crossbar_cpu
from cimsim.calibration import percentile_in_place, percentile_of_histogram
from cimsim.devices import ReRAM, SarADC


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
    assert any(lo < 0 for lo, _ in ranges_h) == (spec.input_signed or spec.pair_readout)


def test_non_integer_levels_keep_the_selection(monkeypatch):
    spec = CrossbarSpec(rows=32, cols=64, cell=ReRAM(prog_sigma_frac=0.05), cell_bits=2, weight_bits=8, input_bits=8,
                        dac_bits=1, signed="differential", adc_range="calibrated", readout=SarADC(bits=6))
    rng = np.random.default_rng(3)
    W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, False, 5, 40, 30)
    got = []
    for on in (True, False):
        monkeypatch.setattr(calibration, "HISTOGRAMS", on)
        xb = Crossbar(W, spec, seed=4)
        xb.calibrate(x)
        got.append(xb._range)
    assert got[0] == got[1]
    assert calibration._integer_histogram(np.zeros((2, 32), dtype=np.int64), 0, 32, xb.a_gemm[0], [0], [1],
                                          False) is None


def test_parallel_map_keeps_order(monkeypatch):
    monkeypatch.setenv("CIMSIM_THREADS", "4")
    assert crossbar_cpu.parallel_map(lambda v: v * v, range(9)) == [v * v for v in range(9)]
