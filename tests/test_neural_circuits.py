"""Neural-PIM's trained circuits (cimsim/neural_circuits.py): 3-bit weights found by noise-injected training,
the pipelined NNADC's transfer and the NNS+A's error, and both through the engine's conversion."""

import numpy as np
import pytest

import cimsim
from cimsim import neural_circuits as nc
from cimsim.devices.analog_accumulators import STAGE_CELLS, STAGE_INVERTERS, NeuralADC, NeuralShiftAdd
from cimsim.readouts import readout_op


def test_training_is_deterministic_and_finds_3_bit_weights_inside_the_redundancy_band():
    """A 1.5-bit stage tolerates comparator thresholds anywhere in (1/4, 1/2) and (1/2, 3/4); the trained 3-bit
    weights put them at 3/7 and 4/7 (the nearest ratios of 3-bit levels to 3/8 and 5/8 that keep the slope)."""
    st = nc.train("stage")
    assert np.array_equal(st.w, nc.train("stage", steps=1500).w)
    assert np.abs(st.w).max() <= 7 and st.w.dtype.kind == "i"
    thresholds = -st.w[:, 1] / st.w[:, 0]
    assert 0.25 < thresholds[0] < 0.5 < thresholds[1] < 0.75
    assert thresholds == pytest.approx([3 / 7, 4 / 7])
    # a reduced re-training (300 steps, another seed) lands in the band too
    short = nc.train("stage", seed=1, steps=300)
    t = -short.w[:, 1] / short.w[:, 0]
    assert 0.25 < t.min() < 0.5 < t.max() < 0.75


def test_shift_add_weights_and_its_error_over_eight_cycles():
    """The NNS+A's trained column is (4, 4, 0) levels at gain 7/8: exactly (v + p) / 2 but for the amplifier's
    finite gain (1 - 1/1001 per step); over 8 cycles its RMS error is 1.01e-3 of full scale."""
    sa = nc.train("shift-add")
    assert sa.w.tolist() == [[4, 4, 0]]
    assert nc.nnsa_error_fs(8) == pytest.approx(1.013e-3, rel=0.01)
    assert nc.nnsa_error_fs(8, variation=0.01) > 5 * nc.nnsa_error_fs(8)


def test_counts_of_the_device_models_match_the_trained_circuits():
    assert STAGE_CELLS == nc.train("stage").cells + nc.RESIDUE.cells
    assert STAGE_INVERTERS == nc.train("stage").inverters + nc.RESIDUE.inverters
    assert NeuralShiftAdd.cells == nc.train("shift-add").cells and NeuralShiftAdd.inverters == 3


def test_nnadc_transfer_is_within_one_lsb_and_its_sinad():
    """Without variation the trained 8-bit pipeline's code is within 1 LSB of the ideal rounding everywhere and
    equal to it on 74 % of inputs (INL from the residue amplifiers' gain error); SINAD on a sine 47.5 dB
    (ideal 49.9 dB), asserted 46.5-48.5 dB."""
    u = np.linspace(0, 255, 255 * 64 + 1)
    codes = nc.nnadc_codes(u / 255, 8)
    ideal = np.floor(u + 0.5)
    assert np.abs(codes - ideal).max() <= 1
    assert np.mean(codes == ideal) == pytest.approx(0.741, abs=0.01)
    n = 1 << 16
    x = 127.5 * (1 + np.sin(2 * np.pi * np.arange(n) * 1021 / n))
    assert 46.5 < nc.sinad_db(nc.nnadc_codes(x / 255, 8), x) < 48.5


def test_the_engine_converts_through_the_table_and_adds_the_chain_error():
    """The readout op gives the table's code (lo + code * lsb), and the chain error's variance adds to the
    conversion error: chain_sigma 2 LSB (of 255 codes) gives an error std of sqrt(2**2 + e0**2) within 3 %."""
    rng = np.random.default_rng(0)
    v = rng.uniform(0, 255, 200_000)
    adc = NeuralADC()
    out, clipped = readout_op(adc).convert(v * 2 + 10, 10.0, 2.0, rng, True)
    assert clipped == 0
    ref = nc.nnadc_table(8)[np.floor(v * nc.GRID_PER_LSB + 0.5).astype(int)]
    assert np.array_equal((out - 10) / 2, ref)
    e0 = np.std(ref - v)
    noisy = NeuralADC(chain_sigma_fs=2 / 255)
    out2, _ = readout_op(noisy).convert(v, 0.0, 1.0, rng, True)
    assert np.std(out2 - v) == pytest.approx(np.hypot(2, e0), rel=0.03)


def test_torch_and_numpy_conversions_agree_without_noise():
    import torch

    v = np.linspace(-3, 260, 5000)
    op = readout_op(NeuralADC())
    out, _ = op.convert(v, 0.0, 1.0, np.random.default_rng(0), True)
    codes, clipped = op.codes_torch(torch.tensor(v), 0.0, 1.0, torch.randn_like, True)
    assert np.array_equal(codes.numpy(), out) and int(clipped) == np.count_nonzero((v < -0.5) | (v >= 255.5))


def test_neural_pim_tile_error_comes_from_the_trained_chain():
    """A Neural-PIM tile with ideal cells: the error against the integer product shrinks to the quantization
    of an ideal NNADC when the trained transfer is replaced (adc.trained=0), and is larger with it."""
    from dataclasses import replace

    from cimsim.devices import IdealCell

    rng = np.random.default_rng(2)
    W = rng.integers(-127, 128, size=(16, 128))
    x = rng.integers(0, 256, size=(64, 128))
    exact = x @ W.T
    errs = {}
    for trained in (0, 1):
        a = cimsim.arch.get("neural-pim", **{"adc.trained": trained})
        xb = cimsim.Crossbar(W, replace(a.crossbar_spec(), cell=IdealCell()), seed=0)
        xb.calibrate(x)
        errs[trained] = np.std(xb(x) - exact)
    assert errs[1] > 1.05 * errs[0] > 0
