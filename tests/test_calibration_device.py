"""The ADC calibration on the torch backend's device (cimsim.calibration.device_block_range, CALIBRATE_DEVICES):
for levels whose sums are exact (integer levels, and noisy levels on the grid of exact sums) it must give the host's
ranges bit for bit, however its examples are chunked; off the grid within a value's last bits. Run here on torch's
CPU device (the arithmetic a GPU runs: float64 products, a running top-k)."""

import numpy as np
import pytest
import torch

from _crossbar_cases import _operands
from cimsim import Crossbar, CrossbarSpec, calibration, crossbar
from cimsim.devices import ReRAM, SarADC

NOISY = ReRAM(prog_sigma_frac=0.05)
SPECS = {
    # ISAAC's shape with programming noise: levels on the grid of 2**-15 (exact float32 sums)
    "isaac-noisy": CrossbarSpec(rows=128, cols=96, cell=NOISY, cell_bits=2, weight_bits=16, input_bits=16, dac_bits=1,
                                signed="offset", adc_range="calibrated", readout=SarADC(bits=8)),
    "signed-dac3-noisy": CrossbarSpec(rows=32, cols=64, cell=NOISY, cell_bits=2, weight_bits=8, input_bits=8,
                                      dac_bits=3, signed="offset", input_signed=True, adc_range="calibrated",
                                      calibration_percentile=97.0, readout=SarADC(bits=6)),
    "pair-integer": CrossbarSpec(rows=64, cols=64, cell_bits=2, weight_bits=5, input_bits=6, dac_bits=2,
                                 signed="differential", pair_readout=True, adc_range="calibrated",
                                 readout=SarADC(bits=5)),
}


def _ranges(monkeypatch, spec, W, x, devices, histograms=True):
    monkeypatch.setattr(crossbar, "CALIBRATE_DEVICES", devices)
    monkeypatch.setattr(calibration, "HISTOGRAMS", histograms)
    xb = Crossbar(W, spec, seed=3, backend="torch", device="cpu")
    xb.calibrate(x)
    return xb._range


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("values", [1 << 26, 5000])
def test_device_ranges_equal_the_hosts(monkeypatch, name, values):
    """``values`` 5000: a chunk of a few examples, so the running top-k crosses dozens of chunks."""
    spec = SPECS[name]
    rng = np.random.default_rng(5)
    W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, spec.input_signed, 9, 150, 300)
    x[:100] //= 5                                         # a spread of magnitudes
    calls = []
    real = calibration.device_block_range
    monkeypatch.setattr(calibration, "device_block_range", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(calibration, "DEVICE_VALUES", values)
    host = _ranges(monkeypatch, spec, W, x, (), histograms=False)
    assert not calls
    dev = _ranges(monkeypatch, spec, W, x, ("cpu",), histograms=False)
    assert len(calls) == len(host) >= 2
    assert dev == host                                      # the same floats, block by block
    if name == "pair-integer":                              # integer levels: the histogram's ranges too
        assert _ranges(monkeypatch, spec, W, x, (), histograms=True) == host
    assert any(lo < 0 for lo, _ in host) == spec.pair_readout    # signed inputs convert unipolar too


@pytest.mark.parametrize("q", [0.0, 50.0, 99.9, 100.0])
def test_device_percentile_is_numpys_linear_rule(q):
    """The order statistics' extremes: q = 100 keeps one value (the largest), q = 0 all of them."""
    rng = np.random.default_rng(11)
    a = rng.integers(0, 4, size=(24, 7)).astype(np.float32) + np.float32(0.25)
    u = rng.integers(0, 1 << 4, size=(33, 24)).astype(np.int64)
    shifts, widths = np.array([0, 2]), np.array([2, 2])
    vals = []
    for s, w in zip(shifts, widths):
        vals.append(((u >> s) & ((1 << w) - 1)).astype(np.float64) @ a.astype(np.float64))
    v = np.concatenate([x.ravel() for x in vals])
    lo, hi = calibration.device_block_range(u, 0, 24, a, shifts, widths, q, np.float32, "cpu")
    p = float(np.percentile(v.astype(np.float32), q))
    assert (lo, hi) == (0.0, max(p, 1.0))


def test_off_grid_levels_agree_within_float32_rounding(monkeypatch):
    """Levels off the grid (a spec too wide for it is forced here by a coarsest grid above any): the host's float32
    sums and the device's float64 ones rounded to float32 may differ in a last bit, the range by no more."""
    monkeypatch.setattr(crossbar, "GRID_MIN_BITS", 60)
    spec = SPECS["isaac-noisy"]
    rng = np.random.default_rng(2)
    W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, False, 9, 150, 200)
    host = _ranges(monkeypatch, spec, W, x, (), histograms=False)
    dev = _ranges(monkeypatch, spec, W, x, ("cpu",), histograms=False)
    for (l0, h0), (l1, h1) in zip(host, dev):
        assert l0 == l1 == 0.0 and h1 == pytest.approx(h0, rel=2 ** -20)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", list(SPECS))
def test_cuda_ranges_equal_the_numba_backends(name):
    """On the GPU (CALIBRATE_DEVICES' default): the numba backend's host ranges, bit for bit."""
    spec = SPECS[name]
    rng = np.random.default_rng(8)
    W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, spec.input_signed, 9, 150, 3000)
    x[:1000] //= 9
    got = []
    for backend, device in (("numba", "cpu"), ("torch", "cuda")):
        xb = Crossbar(W, spec, seed=3, backend=backend, device=device)
        xb.calibrate(x)
        got.append(xb._range)
    assert got[0] == got[1]
