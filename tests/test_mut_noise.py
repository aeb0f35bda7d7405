"""Device-noise scalings pinned by first-principles numbers (added by a mutation audit: the programming noise's
reference (the window, not g_max) and the read-noise variance of an analog sum of weight slices were not pinned).
"""

import numpy as np
import pytest

from cimsim import Crossbar, CrossbarSpec
from cimsim.devices import ReRAM
from cimsim.readouts import ConversionScope


def test_programming_noise_is_a_fraction_of_the_window_not_of_g_max():
    # ReRAM's docstring: programmed = clip(target + prog_sigma_frac * (g_max - g_min) * N(0, 1)). With an on/off
    # ratio of 2 the window is g_max / 2, so a sigma taken on g_max instead would be twice as large. Level 1 of 2-bit
    # cells sits a third of the way up the window, 33 sigma from either edge: the clip never acts.
    cell = ReRAM(on_off_ratio=2.0, prog_sigma_frac=0.01)
    window = cell.g_max_s - cell.g_min_s
    assert window == pytest.approx(cell.g_max_s / 2, rel=1e-12)
    n = 200_000
    g = cell.program(np.ones(n, dtype=np.int64), 2, np.random.default_rng(0))
    target = cell.g_min_s + window / 3
    # the sample std of n normals has a relative standard error 1 / sqrt(2 n) = 0.16 %; 1 % is > 6 of them
    assert np.std(g - target) == pytest.approx(0.01 * window, rel=0.01)
    assert abs(np.mean(g - target)) < 5 * 0.01 * window / np.sqrt(n)


@pytest.mark.parametrize("slices", [1, 0])
def test_read_noise_of_an_analog_sum_of_weight_slices_weights_each_variance_by_the_place_value_squared(slices):
    # Unsigned 2-bit weights on 1-bit cells: two slices, place values 1 and 2, one column each. One-bit inputs, an
    # ideal readout. A cell read adds N(0, s * window) in siemens, i.e. s * (2**1 - 1) = s level units. The digital
    # result is slice0 + 2 * slice1 whether the slices are converted apart (scope slices=1) or summed in analog with
    # their place values first (slices=0, CASCADE's summing amplifier: one group, value v0 + 2 v1): either way every
    # read of a row with input 1 adds (1**2 + 2**2) s**2 = 5 s**2 to the output's variance.
    s = 0.05
    cell = ReRAM(read_sigma_frac=s)
    W = np.array([[3, 1, 2, 0, 3, 3], [0, 2, 1, 3, 1, 2]])
    x0 = np.array([[1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1], [0, 0, 1, 0, 0, 0]])
    x = np.repeat(x0, 1000, axis=0)                       # 1000 independent reads of each input
    spec = CrossbarSpec(rows=8, cols=8, cell=cell, cell_bits=1, weight_bits=2, input_bits=1, dac_bits=1,
                        signed="unsigned", conversion=ConversionScope(1, "each", slices))
    xb = Crossbar(W, spec, seed=3)
    err = xb(x) - x @ W.T
    pred_std = np.sqrt(5 * s ** 2 * x.sum(axis=1))[:, None]
    z = err / pred_std                                    # 6000 standardized errors
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert z.std() == pytest.approx(1.0, rel=0.04)        # the std of 6000 samples: 0.9 % standard error


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_read_noise_std_through_a_lossless_readout_on_each_backend(backend):
    # The numba backend's read noise is pinned in test_crossbar_nonideal; the torch backend's only through a coarse
    # ADC against numba's. Here, both against first principles: unsigned 2-bit weights on 2-bit cells (one slice,
    # level = weight), 2-bit unsigned inputs streamed one bit a cycle (place values 1, 2), an ideal readout. A cell
    # read has std s * window = s * 3 level steps, so an output's variance is 9 s**2 sum_k (b0_k + 4 b1_k) over its
    # input bits b_t (one read per set bit, scaled by the place value 2**t).
    if backend == "torch":
        pytest.importorskip("torch")
    s = 0.03
    cell = ReRAM(read_sigma_frac=s)
    W = np.array([[3, 1, 2, 0, 3, 3, 1, 2], [0, 2, 1, 3, 1, 2, 3, 3]])
    x0 = np.array([[1, 3, 0, 2, 1, 0, 3, 3], [3, 3, 3, 3, 3, 3, 3, 3], [0, 0, 2, 0, 0, 1, 0, 0]])
    x = np.repeat(x0, 1000, axis=0)
    spec = CrossbarSpec(rows=8, cols=8, cell=cell, cell_bits=2, weight_bits=2, input_bits=2, dac_bits=1,
                        signed="unsigned")
    xb = Crossbar(W, spec, seed=11, backend=backend)
    err = np.asarray(xb(x)) - x @ W.T
    b0, b1 = x & 1, (x >> 1) & 1
    pred_std = np.sqrt(9 * s ** 2 * (b0 + 4 * b1).sum(axis=1))[:, None]
    z = err / pred_std
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert z.std() == pytest.approx(1.0, rel=0.04)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_the_nnadc_chain_error_is_a_fraction_of_the_full_scale(backend):
    # NeuralADC(trained=1): the value plus chain_sigma_fs of full scale (Gaussian), then the trained circuit's transfer,
    # a table on a grid of GRID_PER_LSB points per LSB. Full scale is the range the NNADC codes, 2**bits - 1 LSB
    # (cimsim.neural_circuits.nnadc_table feeds it u / top; nnsa_error_fs, which sets chain_sigma_fs, is of that same
    # full scale). 3 bits, chain_sigma_fs = 1/7: one LSB of noise. The output's distribution for an input of 3 LSB then
    # follows from the table alone: index i = clip(floor(3 * grid + sigma * z + 0.5)) with sigma = grid, so
    # P(i) = Phi((i + 0.5 - u0) / sigma) - Phi((i - 0.5 - u0) / sigma), the end cells taking the tails.
    from scipy.stats import norm

    from cimsim.devices.analog_accumulators import NeuralADC
    from cimsim.neural_circuits import GRID_PER_LSB, nnadc_table
    from cimsim.readouts import readout_op

    op = readout_op(NeuralADC(bits=3, chain_sigma_fs=1 / 7))
    table = nnadc_table(3, 0.0, 0).astype(float)
    n = 40_000
    if backend == "numpy":
        y, clipped = op.convert(np.full(n, 3.0), 0.0, 1.0, np.random.default_rng(0), False)
    else:
        torch = pytest.importorskip("torch")
        g = torch.Generator().manual_seed(0)
        codes, clipped = op.codes_torch(torch.full((n,), 3.0, dtype=torch.float64), 0.0, 1.0,
                                        lambda like: torch.randn(like.shape, generator=g, dtype=like.dtype), False)
        y, clipped = codes.numpy(), int(clipped)
    assert clipped == 0                                   # the input itself lies inside the range
    u0, sigma = 3.0 * GRID_PER_LSB, 1.0 * GRID_PER_LSB
    i = np.arange(table.size)
    up, down = norm.cdf((i + 0.5 - u0) / sigma), norm.cdf((i - 0.5 - u0) / sigma)
    p = up - down
    p[0], p[-1] = up[0], 1 - down[-1]
    mean = float(p @ table)
    var = float(p @ table ** 2) - mean ** 2               # about 1.09 LSB**2 (a 1-LSB noise plus the rounding)
    assert np.mean(y) == pytest.approx(mean, abs=5 * np.sqrt(var / n))
    assert np.var(y) == pytest.approx(var, rel=0.04)      # the sample variance of 40000: 0.7 % standard error
