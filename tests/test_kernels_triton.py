"""The Triton kernels of the torch backend (cimsim.kernels_triton): the planes cut in one kernel are the digits of
cimsim.encoding.input_planes, with the same non-zero count and row sums of squares, and a crossbar gives the same
numbers with the kernel as without it. Run on CUDA, or on the CPU through Triton's interpreter where Triton is
installed (``TRITON_INTERPRET=1``); skipped otherwise (CPU-only torch builds ship no Triton)."""

import os

import numpy as np
import pytest
import torch

import cimsim
from cimsim import kernels_triton
from cimsim.crossbar_torch import TorchTile
from cimsim.devices import IdealReadout, ReRAM, SarADC
from cimsim.encoding import input_planes, plane_layout

if torch.cuda.is_available() and kernels_triton.triton is not None:
    DEVICE = "cuda"
elif kernels_triton.triton is not None and os.environ.get("TRITON_INTERPRET") == "1":
    DEVICE = "cpu"
else:
    DEVICE = None
pytestmark = pytest.mark.skipif(DEVICE is None, reason="needs CUDA with Triton, or Triton's interpreter")


@pytest.mark.parametrize("bits,dac,signed,K,R,g0,g1", [
    (8, 1, False, 300, 128, 0, 3), (8, 1, False, 300, 128, 1, 3), (16, 1, False, 144, 128, 0, 2),
    (8, 2, True, 70, 32, 0, 3), (7, 4, True, 200, 64, 2, 4), (5, 8, False, 33, 16, 0, 3)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.int8, torch.float32])
def test_cut_planes_equals_input_planes(bits, dac, signed, K, R, g0, g1, dtype):
    if DEVICE == "cpu" and dtype == torch.bfloat16:
        pytest.skip("Triton's interpreter does not store bf16 faithfully (numpy has no bf16); runs on CUDA")
    rng = np.random.default_rng(bits * 100 + dac + K)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    x = rng.integers(lo, hi + 1, size=(37, K))
    x[3] = 0
    planes, _ = input_planes(x, bits, dac, signed)                    # (T, B, K)
    T = planes.shape[0]
    pad = np.zeros((T, 37, 4 * R), dtype=np.int64)
    pad[:, :, :K] = planes
    want = pad.reshape(T, 37, 4, R)[:, :, g0:g1].transpose(2, 0, 1, 3).reshape(g1 - g0, T * 37, R)
    shifts, widths = plane_layout(bits, dac)
    dev = DEVICE
    xt = torch.as_tensor(x, dtype=torch.float32 if dtype == torch.float32 else torch.int16, device=dev)
    got, nz, sq = kernels_triton.cut_planes(
        xt, torch.as_tensor(shifts, dtype=torch.int32, device=dev),
        torch.as_tensor((1 << widths) - 1, dtype=torch.int32, device=dev), g0, g1, R, dtype, signed, bits,
        int(widths[-1]))
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.cpu().to(torch.int64).numpy(), want)
    live = pad.reshape(T, 37, 4, R)[:, :, g0:g1]
    assert int(nz) == int(np.count_nonzero(live))
    np.testing.assert_array_equal(sq.cpu().numpy(), (live.astype(np.float64) ** 2).sum(axis=(0, 1)).reshape(-1))


@pytest.mark.parametrize("readout,signed,dac", [(SarADC(bits=6), "offset", 1), (IdealReadout(), "differential", 2),
                                                (SarADC(bits=8), "differential", 1)])
def test_crossbar_is_the_same_with_and_without_the_kernel(monkeypatch, readout, signed, dac):
    """Ideal cells, integer levels: both paths are exact, so the outputs and the tally are identical."""
    rng = np.random.default_rng(7)
    W = rng.integers(-127, 128, size=(40, 300))
    x = rng.integers(0, 256, size=(50, 300))
    spec = cimsim.CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=8, input_bits=8, dac_bits=dac,
                               signed=signed, cell=ReRAM(prog_sigma_frac=0.0, read_sigma_frac=0.0), readout=readout)
    xb = cimsim.Crossbar(W, spec, seed=1, backend="torch", device=DEVICE)
    xb.calibrate(x)
    ranges = xb.ranges() if xb.readout_op.quantizes else [(0.0, 1.0)] * len(xb.conversion_domains)
    xt = torch.as_tensor(x, device=DEVICE)
    monkeypatch.setattr(TorchTile, "CUT_DEVICES", ())
    y0, t0 = xb._torch.forward_device(xt, ranges)
    monkeypatch.setattr(TorchTile, "CUT_DEVICES", (DEVICE,))
    y1, t1 = xb._torch.forward_device(xt, ranges)
    torch.testing.assert_close(y1, y0, rtol=0, atol=0)
    torch.testing.assert_close(t1, t0, rtol=0, atol=0)


@pytest.mark.parametrize("cols,int8", [(36, True), (40, True), (36, False)])
def test_fused_epilogue_reads_an_int8_products_int32_sums(monkeypatch, cols, int8):
    """The fused ADC epilogue reads an int8 product's int32 sums in place (rows padded to a multiple of 8 columns)
    or float32 values: the same outputs and tally as the plain torch epilogue (ideal cells: every path exact)."""
    rng = np.random.default_rng(11)
    W = rng.integers(-127, 128, size=(cols // 4 if int8 else cols // 4, 300))
    x = rng.integers(0, 256, size=(50, 300))
    monkeypatch.setitem(TorchTile.PRODUCTS, DEVICE, ("int8",) if int8 else ())
    spec = cimsim.CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=8, input_bits=8, dac_bits=1,
                               signed="offset", cell=ReRAM(prog_sigma_frac=0.0, read_sigma_frac=0.0),
                               readout=SarADC(bits=5), adc_range="calibrated", calibration_percentile=90)
    xb = cimsim.Crossbar(W, spec, seed=1, backend="torch", device=DEVICE)
    xb.calibrate(x)
    assert xb._torch.mode == ("int8" if int8 else "plain") and (xb.readout_columns % 8 != 0) == (cols == 36)
    ranges = xb.ranges()
    xt = torch.as_tensor(x, device=DEVICE)
    monkeypatch.setattr(TorchTile, "FUSED_DEVICES", ())
    y0, t0 = xb._torch.forward_device(xt, ranges)
    monkeypatch.setattr(TorchTile, "FUSED_DEVICES", (DEVICE,))
    calls = []
    monkeypatch.setattr(kernels_triton, "adc_epilogue", lambda *a: calls.append(a[0].dtype) or adc(*a))
    y1, t1 = xb._torch.forward_device(xt, ranges)
    assert calls and set(calls) == {torch.int32 if int8 else torch.float32}
    assert float(t0[3]) > 0                       # some conversions clip: both count them alike
    torch.testing.assert_close(y1, y0, rtol=0, atol=0)
    torch.testing.assert_close(t1, t0, rtol=0, atol=0)


adc = kernels_triton.adc_epilogue


@pytest.mark.parametrize("bits,dac,input_signed,signed,K,W_rows", [
    (16, 1, False, "offset", 300, 9), (8, 2, True, "differential", 200, 5), (7, 3, False, "offset", 64, 40)])
def test_planes_gemm_adc_kernel_gives_the_same_numbers(monkeypatch, bits, dac, input_signed, signed, K, W_rows):
    """Digits, int8 products and the ADC in one kernel (TorchTile.GEMM_DEVICES) against the default path: the same
    outputs and tally (non-zero digits, read energy, clipped conversions) for unsigned 16-bit and signed inputs,
    ragged row blocks and columns not a multiple of the kernel's tile."""
    rng = np.random.default_rng(bits + K)
    W = rng.integers(-127, 128, size=(W_rows, K))
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if input_signed else (0, (1 << bits) - 1)
    x = rng.integers(lo, hi, size=(70, K), endpoint=True)
    x[0], x[1], x[2] = lo, hi, 0
    monkeypatch.setitem(TorchTile.PRODUCTS, DEVICE, ("int8",))
    monkeypatch.setattr(TorchTile, "FUSED_DEVICES", (DEVICE,))
    spec = cimsim.CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=8, input_bits=bits, dac_bits=dac,
                               signed=signed, input_signed=input_signed,
                               cell=ReRAM(prog_sigma_frac=0.0, read_sigma_frac=0.0),
                               readout=SarADC(bits=6), adc_range="calibrated", calibration_percentile=90)
    xb = cimsim.Crossbar(W, spec, seed=1, backend="torch", device=DEVICE)
    xb.calibrate(x)
    assert xb._torch.mode == "int8" and xb._torch.var is None
    ranges = xb.ranges()
    xt = torch.as_tensor(x, dtype=torch.float32, device=DEVICE)
    y0, t0 = xb._torch.forward_device(xt, ranges)
    monkeypatch.setattr(TorchTile, "GEMM_DEVICES", (DEVICE,))
    calls = []
    monkeypatch.setattr(kernels_triton, "planes_gemm_adc", lambda *a: calls.append(1) or gemm(*a))
    y1, t1 = xb._torch.forward_device(xt, ranges)
    assert calls and float(t0[3]) > 0 and float(t0[0]) > 0
    torch.testing.assert_close(y1, y0, rtol=0, atol=0)
    torch.testing.assert_close(t1, t0, rtol=0, atol=0)


gemm = kernels_triton.planes_gemm_adc
