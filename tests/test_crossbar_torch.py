"""The torch backend agrees with the numba backend: bit for bit on integer paths, in distribution on noisy ones."""

import numpy as np
import pytest
import torch

import cimsim
from cimsim import events
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
        if k == events.CELL_READ_CONDUCTANCE_S:
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


@pytest.mark.parametrize("device", DEVICES)
def test_programmed_noise_values_match_numba_closely(device):
    """Non-integer levels (programming noise, no read noise, lossless readout): the same conductances give the
    same column values up to float32 rounding on both backends; on a GPU through the split bf16 product, within
    its bound carried through the shift-and-add (tests/test_crossbar_gpu_paths.py; offset mapping stores W + 128)."""
    rng = np.random.default_rng(4)
    W = rng.integers(-127, 128, size=(40, 300))
    x = rng.integers(0, 256, size=(16, 300))
    spec = cimsim.CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=8, input_bits=8, signed="offset",
                               cell=ReRAM(prog_sigma_frac=0.05))
    a = cimsim.Crossbar(W, spec, seed=1)(x)
    b = cimsim.Crossbar(W, spec, seed=1, backend="torch", device=device)(x)
    assert not np.array_equal(a, x @ W.T)       # the noise is there
    assert np.abs(a - b).max() <= (2.0 ** -15 if device == "cuda" else 1e-6) * (x @ (W + 128).T).max()


def test_tf32_split_is_exact_in_float32_and_hi_fits_tf32():
    from cimsim.crossbar_torch import tf32_split

    t = torch.as_tensor(np.random.default_rng(0).normal(size=(64, 64)), dtype=torch.float32)
    hi, lo = tf32_split(t)
    assert torch.equal(hi + lo, t)
    assert torch.all((hi.view(torch.int32) & 0x1FFF) == 0)
    assert torch.all(lo.abs() <= t.abs() * 2 ** -10)
    assert tf32_split(torch.arange(8.0))[1] is None    # integer levels: nothing left over


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the fused Triton epilogue)")
@pytest.mark.parametrize("per_column", [False, True])
def test_fused_gpu_epilogue_equals_the_plain_one(monkeypatch, per_column):
    """The Triton epilogue (noise + ADC + shift-and-add) against the plain torch ops on the same GPU: bit for
    bit without read noise, the same error distribution with it (per-row and per-column sigma)."""
    from cimsim import kernels_triton as kt
    from cimsim.crossbar_torch import TorchTile

    if kt.triton is None:
        pytest.skip("torch build without Triton")
    monkeypatch.setattr(TorchTile, "GEMM_DEVICES", ())   # the epilogue kernel, not the one-kernel path
    rng = np.random.default_rng(7)
    W = rng.integers(-127, 128, size=(64, 300))
    x = rng.integers(0, 256, size=(32, 300))

    def run(read_sigma, fused):
        # a 5-bit ADC on a calibrated range: some conversions clip, and both epilogues must count them alike
        spec = cimsim.CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=8, input_bits=8, signed="offset",
                                   cell=ReRAM(prog_sigma_frac=0.05, read_sigma_frac=read_sigma),
                                   readout=SarADC(bits=5), adc_range="calibrated", calibration_percentile=90)
        xb = cimsim.Crossbar(W, spec, seed=2, backend="torch", device="cuda")
        xb.calibrate(x)
        if per_column and read_sigma:
            xb.ro_var = [np.repeat(v[:, None], xb.physical_columns, axis=1) for v in xb.ro_var]
            xb._torch.load()
            assert xb._torch.var.shape[-1] == xb.physical_columns
        with monkeypatch.context() as m:
            if not fused:
                m.setattr(kt, "triton", None)
            out = np.stack([xb(x) for _ in range(1 if not read_sigma else 200)])
        clipped[fused] = xb.ledger.count("clipped_conversions")
        return out

    clipped = {}
    assert np.array_equal(run(0.0, True), run(0.0, False))
    assert clipped[True] == clipped[False] > 0              # the fused kernel counts the same clipped conversions
    a, b = run(0.02, True), run(0.02, False)
    ref = run(0.0, False)[0]
    ea, eb = a - ref, b - ref
    assert ea.std() > 0 and ea.std() == pytest.approx(eb.std(), rel=0.05)
    se = np.sqrt(ea.var(axis=0) / len(ea) + eb.var(axis=0) / len(eb))
    assert np.all(np.abs(ea.mean(axis=0) - eb.mean(axis=0)) < 5 * se + 1e-9)


@pytest.mark.parametrize("device", DEVICES)
def test_out_of_range_inputs_are_refused_and_nothing_is_counted(device):
    from cimsim.errors import ConfigError

    W, x = _case("offset", False)
    spec = cimsim.CrossbarSpec(rows=64, cols=40, weight_bits=4, input_bits=4, readout=SarADC(bits=6))
    xb = cimsim.Crossbar(W, spec, backend="torch", device=device)
    xb.calibrate(x)
    for bad in (x + 16, x - 1, x.astype(float) + 0.5):
        with pytest.raises(ConfigError, match="inputs must"):
            xb(bad)
    assert xb.ledger.totals() == {}
    ref = cimsim.Crossbar(W, spec)
    ref.calibrate(x)
    assert np.array_equal(xb(x), ref(x))     # the refused calls left the tile as it was
