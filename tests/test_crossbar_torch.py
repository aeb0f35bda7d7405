"""The torch backend agrees with the numba backend: bit for bit on integer paths, in distribution on noisy ones."""

import itertools

import numpy as np
import pytest
import torch

import cimsim
from cimsim.devices import IdealReadout, ReRAM, SarADC, SenseAmp, TernaryReadout

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
READOUTS = [IdealReadout(), SarADC(bits=6), SenseAmp(threshold=3.5), TernaryReadout(delta=2.5)]


def _case(signed, input_signed, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.integers(-7, 8, size=(13, 150))
    x = rng.integers(-8, 8, size=(9, 150)) if input_signed else rng.integers(0, 16, size=(9, 150))
    return W, x


def _assert_same_ledger(a, b):
    ta, tb = a.ledger.totals(), b.ledger.totals()
    assert ta.keys() == tb.keys()
    for k in ta:
        if k.endswith("_j"):
            assert tb[k] == pytest.approx(ta[k], rel=1e-12)   # float sums in another order
        else:
            assert tb[k] == ta[k], k


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("signed,cell_bits,dac_bits,input_signed", [
    ("offset", 1, 1, False), ("offset", 3, 2, True), ("twos", 2, 1, True), ("twos", 1, 2, False),
    ("differential", 2, 2, False), ("differential", 3, 1, True)])
def test_integer_paths_agree_bit_for_bit(device, signed, cell_bits, dac_bits, input_signed):
    W, x = _case(signed, input_signed)
    ref = x.astype(np.int64) @ W.T.astype(np.int64)
    for ro in READOUTS:
        spec = cimsim.CrossbarSpec(rows=64, cols=40, cell_bits=cell_bits, weight_bits=4, input_bits=4,
                                   dac_bits=dac_bits, signed=signed, input_signed=input_signed, readout=ro)
        a = cimsim.Crossbar(W, spec)
        b = cimsim.Crossbar(W, spec, backend="torch", device=device)
        ya, yb = a(x), b(x)
        assert np.array_equal(ya, yb), type(ro).__name__
        if isinstance(ro, IdealReadout):
            assert np.array_equal(yb, ref)
        _assert_same_ledger(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_finite_on_off_ratio_is_corrected_on_torch(device):
    W, x = _case("differential", False, seed=2)
    spec = cimsim.CrossbarSpec(rows=64, cols=40, weight_bits=4, input_bits=4, cell=ReRAM(), signed="differential")
    y = cimsim.Crossbar(W, spec, backend="torch", device=device)(x)
    assert np.allclose(y, x @ W.T, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("device", DEVICES)
def test_noisy_paths_agree_in_distribution_and_repeat_for_a_seed(device):
    rng = np.random.default_rng(3)
    W = rng.integers(-7, 8, size=(6, 200))
    x = rng.integers(0, 16, size=(4, 200))
    ref = x @ W.T
    spec = cimsim.CrossbarSpec(signed="differential", weight_bits=4, input_bits=4,
                               cell=ReRAM(read_sigma_frac=0.05), readout=SarADC(bits=6))
    errs = {}
    for backend in ("numba", "torch"):
        xb = cimsim.Crossbar(W, spec, seed=5, backend=backend, device=device if backend == "torch" else "cpu")
        errs[backend] = np.stack([xb(x) - ref for _ in range(400)])
    a, b = errs["numba"], errs["torch"]
    # read noise through a 6-bit ADC: same spread within 6 %, means within 5 standard errors per output
    assert b.std() == pytest.approx(a.std(), rel=0.06)
    se = np.sqrt(a.var(axis=0) / len(a) + b.var(axis=0) / len(b))
    assert np.all(np.abs(a.mean(axis=0) - b.mean(axis=0)) < 5 * se + 1e-9)
    one = cimsim.Crossbar(W, spec, seed=5, backend="torch", device=device)
    two = cimsim.Crossbar(W, spec, seed=5, backend="torch", device=device)
    assert np.array_equal(one(x), two(x))
    assert not np.array_equal(one(x), cimsim.Crossbar(W, spec, seed=6, backend="torch", device=device)(x))


def test_cuda_without_a_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from cimsim.errors import ConfigError
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        cimsim.Crossbar(np.ones((2, 3), dtype=int), cimsim.CrossbarSpec(), backend="torch", device="cuda")
    with pytest.raises(ConfigError, match="numba backend runs on the CPU"):
        cimsim.Crossbar(np.ones((2, 3), dtype=int), cimsim.CrossbarSpec(), backend="numba", device="cuda")
