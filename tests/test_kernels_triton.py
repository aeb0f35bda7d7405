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
from cimsim.torch_products import fp16_split, int8_parts

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
    shifts, widths = plane_layout(bits, dac, signed)
    dev = DEVICE
    xt = torch.as_tensor(x, dtype=torch.float32 if dtype == torch.float32 else torch.int16, device=dev)
    got, nz, sq = kernels_triton.cut_planes(
        xt, torch.as_tensor(shifts, dtype=torch.int32, device=dev),
        torch.as_tensor((1 << widths) - 1, dtype=torch.int32, device=dev), g0, g1, R, dtype)
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
    monkeypatch.setattr(TorchTile, "GEMM_DEVICES", ())     # the eager path's digit cutters are what is compared
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
    monkeypatch.setattr(TorchTile, "GEMM_DEVICES", ())     # the eager path's epilogue is what is compared
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
    monkeypatch.setattr(kernels_triton, "adc_epilogue", lambda *a, **k: calls.append(a[0].dtype) or adc(*a, **k))
    y1, t1 = xb._torch.forward_device(xt, ranges)
    assert calls and set(calls) == {torch.int32 if int8 else torch.float32}
    assert float(t0[3]) > 0                       # some conversions clip: both count them alike
    torch.testing.assert_close(y1, y0, rtol=0, atol=0)
    torch.testing.assert_close(t1, t0, rtol=0, atol=0)


adc = kernels_triton.adc_epilogue


@pytest.mark.parametrize("bits,dac,input_signed,signed,K,W_rows,product", [
    (16, 1, False, "offset", 300, 9, "int8"), (8, 2, True, "differential", 200, 5, "int8"),
    (7, 3, False, "offset", 64, 40, "int8"), (16, 1, False, "offset", 300, 9, "bf16"),
    (8, 2, True, "differential", 200, 20, "bf16")])
def test_planes_gemm_adc_kernel_gives_the_same_numbers(monkeypatch, bits, dac, input_signed, signed, K, W_rows,
                                                       product):
    """Digits, products and the ADC in one kernel (TorchTile.GEMM_DEVICES) against the eager path: the same
    outputs and tally (non-zero digits, read energy, clipped conversions) for unsigned 16-bit and signed inputs,
    ragged row blocks and columns not a multiple of the kernel's tile; integer levels as int8 or as one bf16 part
    (both exact: the same numbers bit for bit)."""
    rng = np.random.default_rng(bits + K)
    W = rng.integers(-127, 128, size=(W_rows, K))
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if input_signed else (0, (1 << bits) - 1)
    x = rng.integers(lo, hi, size=(70, K), endpoint=True)
    x[0], x[1], x[2] = lo, hi, 0
    monkeypatch.setitem(TorchTile.PRODUCTS, DEVICE, (product,))
    monkeypatch.setattr(TorchTile, "FUSED_DEVICES", (DEVICE,))
    monkeypatch.setattr(TorchTile, "GEMM_DEVICES", ())
    spec = cimsim.CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=8, input_bits=bits, dac_bits=dac,
                               signed=signed, input_signed=input_signed,
                               cell=ReRAM(prog_sigma_frac=0.0, read_sigma_frac=0.0),
                               readout=SarADC(bits=6), adc_range="calibrated", calibration_percentile=90)
    xb = cimsim.Crossbar(W, spec, seed=1, backend="torch", device=DEVICE)
    xb.calibrate(x)
    assert xb._torch.mode == product and xb._torch.var is None
    ranges = xb.ranges()
    xt = torch.as_tensor(x, dtype=torch.float32, device=DEVICE)
    y0, t0 = xb._torch.forward_device(xt, ranges)
    monkeypatch.setattr(TorchTile, "GEMM_DEVICES", (DEVICE,))
    calls = []
    monkeypatch.setattr(kernels_triton, "planes_gemm_adc", lambda *a, **k: calls.append(1) or gemm(*a, **k))
    y1, t1 = xb._torch.forward_device(xt, ranges)
    assert calls and float(t0[3]) > 0 and float(t0[0]) > 0
    torch.testing.assert_close(y1, y0, rtol=0, atol=0)
    torch.testing.assert_close(t1, t0, rtol=0, atol=0)


gemm = kernels_triton.planes_gemm_adc


def test_split_fp16_product_in_the_kernel_is_within_its_bound_far_below_the_read_noise():
    """Levels with programming noise as two fp16 parts (crossbar_torch.fp16_split), multiplied in the one kernel and
    accumulated in float32: each column value within ``2**-22 sum_k |d_k a_k| + 2**-25 sum_k |d_k|`` (what the split
    leaves) plus the float32 accumulation (``R 2**-24 sum_k |d_k a_k|``) and half the fine ADC step that reads it
    back, of the exact float64 product. At ISAAC's shapes (128 rows, 2-bit cells) that bound is under 0.5 % of the
    read noise's standard deviation at 2 % of the range (the benchmark's setting), ``0.02 * 3 sqrt(sum_k d_k**2)``."""
    from cimsim.crossbar_torch import fp16_split

    rng = np.random.default_rng(19)
    G, nb, R, C = 3, 96, 128, 40
    a = np.clip(rng.integers(0, 4, size=(G, R, C)) + rng.normal(0, 0.05 * 3, size=(G, R, C)), 0, 3)   # levels 0..3
    x = rng.integers(0, 2, size=(G, nb, R))                  # one cycle of 1-bit digits
    x[:, 0] = 1                                               # a full column: the largest sums
    lsb = 2.0 ** -12                                          # a fine ADC reads the value back: |v| < 2**24 lsb
    hi, lo = fp16_split(torch.as_tensor(a, dtype=torch.float32))
    assert lo is not None
    dev = DEVICE
    parts = torch.stack([hi, lo], dim=1).to(torch.float32).to(dev)
    i32 = lambda v: torch.as_tensor(v, dtype=torch.int32, device=dev)   # noqa: E731
    f32 = lambda v: torch.as_tensor(v, dtype=torch.float32, device=dev)  # noqa: E731
    out, clips, nz, sq = kernels_triton.planes_gemm_adc(
        i32(x), parts, i32([0]), i32([1]), f32([0.0] * G), f32([lsb] * G), f32([1.0]), C, 2.0 ** 24)
    got = out.cpu().numpy().astype(np.float64).reshape(G, nb, C) * lsb
    a32 = a.astype(np.float32).astype(np.float64)            # the levels the tile holds (float32)
    exact = np.einsum("gbr,grc->gbc", x.astype(np.float64), a32)
    mag = np.einsum("gbr,grc->gbc", x.astype(np.float64), np.abs(a32))
    split_bound = (2.0 ** -22 + R * 2.0 ** -24) * mag + 2.0 ** -25 * x.sum(axis=2)[..., None]
    assert float(clips) == 0 and int(nz) == int(np.count_nonzero(x))
    np.testing.assert_array_equal(sq.cpu().numpy(), (x.astype(np.float64) ** 2).sum(axis=1).reshape(-1))
    assert np.all(np.abs(got - exact) <= split_bound + lsb / 2)
    noise = 0.02 * 3 * np.sqrt((x.astype(np.float64) ** 2).sum(axis=2))[..., None]
    assert (split_bound / noise).max() < 0.005


@pytest.mark.parametrize("grid,signed_levels,noise,T", [(15, False, False, 1), (15, True, True, 4),
                                                           (8, True, False, 3), (12, False, True, 5)])
def test_int8_parts_in_the_kernel_give_the_fp16_parts_numbers(grid, signed_levels, noise, T):
    """Levels with programming noise on a grid ``2**-grid`` (the grid of exact sums puts them there) as two or three
    int8 parts (int8_parts: an int32 product per part, combined by Horner's rule, times the grid's step) give the
    numbers of the two fp16 parts bit for bit, with and without read noise (the same seed: the same normals; on a
    GPU this needs the noise added by one explicit FMA, else the compiler fused ``sum * iscale`` into the add and 1
    value in 3,360 moved by a step), and without noise the exact product read back through a fine ADC: every sum
    exact on both paths."""
    G, nb, R, C = 2, 70, 128, 24
    dev = DEVICE
    rng = np.random.default_rng(grid * 10 + T)
    lo_l = -3 if signed_levels else 0                             # G+ - G- pairs reach -3 .. 3
    a = np.clip(rng.integers(lo_l, 4, size=(G, R, C)) + rng.normal(0, 0.15, size=(G, R, C)), lo_l, 3)
    a = np.round(a * 2 ** grid) / 2 ** grid
    x = rng.integers(0, 2 ** T, size=(G, nb, R))
    x[:, 0] = 2 ** T - 1                                          # a full column: the largest sums
    x[1, :, 100:] = 0                                             # a ragged last block
    at = torch.as_tensor(a, dtype=torch.float32)
    p8, iscale = int8_parts(at, 1)
    assert p8.shape[1] == (3 if 3 * 2 ** grid >= 2 ** 13 else 2) and iscale == 2.0 ** -grid
    hi, lo = fp16_split(at)
    p16 = torch.stack([hi] if lo is None else [hi, lo], dim=1).to(torch.float32).to(dev)
    i32 = lambda v: torch.as_tensor(v, dtype=torch.int32, device=dev)   # noqa: E731
    f32 = lambda v: torch.as_tensor(v, dtype=torch.float32, device=dev)  # noqa: E731
    lsb, lo_v = 2.0 ** -grid, -3.0 * R * (lo_l < 0)      # an ADC step per grid point, from the lowest sum
    var = f32(np.full((G, R), 0.02 ** 2 * 9)) if noise else None
    args = (i32(x), i32(range(T)), i32([1] * T), f32([lo_v] * G), f32([lsb] * G), f32(2.0 ** np.arange(T)), C,
            2.0 ** 24, var, 5)
    want = kernels_triton.planes_gemm_adc(i32(x), p16, *args[1:], binary=True)
    got = kernels_triton.planes_gemm_adc(i32(x), p8.to(dev), *args[1:], binary=True, iscale=iscale)
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    if not noise:   # exactly the float64 product (the fine ADC reads every grid point back)
        exact = sum(np.einsum("gbr,grc->gbc", ((x >> t) & 1).astype(np.float64), a) * 2.0 ** t for t in range(T))
        got_v = got[0].cpu().numpy().astype(np.float64).reshape(G, nb, C) * lsb + lo_v * (2 ** T - 1)
        np.testing.assert_array_equal(got_v, exact)


def _noisy_isaac_tile(monkeypatch, prog: float, read: float, products=("bf16",), weight_bits=16, outputs=12):
    """An ISAAC-like crossbar (16-bit inputs, 1-bit DAC, 2-bit cells, 8-bit ADC on a calibrated range) with
    programming and read noise, on DEVICE, with the GPU's products allowed there."""
    monkeypatch.setitem(TorchTile.PRODUCTS, DEVICE, products)
    monkeypatch.setattr(TorchTile, "FUSED_DEVICES", (DEVICE,))
    rng = np.random.default_rng(23)
    W = rng.integers(-2 ** (weight_bits - 1), 2 ** (weight_bits - 1), size=(outputs, 300))
    x = rng.integers(0, 2 ** 16, size=(60, 300))
    spec = cimsim.CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=weight_bits, input_bits=16, dac_bits=1,
                               signed="offset", cell=ReRAM(prog_sigma_frac=prog, read_sigma_frac=read),
                               readout=SarADC(bits=8), adc_range="calibrated")
    xb = cimsim.Crossbar(W, spec, seed=3, backend="torch", device=DEVICE)
    xb.calibrate(x)
    return xb, torch.as_tensor(x, dtype=torch.float32, device=DEVICE)


@pytest.mark.parametrize("prog,read,product,shape", [(0.05, 0.02, "bf16", (16, 12)), (0.0, 0.02, "int8", (16, 12)),
                                                     (0.05, 0.0, "bf16", (16, 12)), (0.05, 0.02, "bf16", (6, 11))])
def test_noisy_tiles_take_the_one_kernel_path_with_the_eager_paths_numbers(monkeypatch, prog, read, product, shape):
    """Programming and read noise on (the issue's ISAAC case): the one kernel draws the eager epilogue's Philox
    normals (same seeds, same indices), and the noisy levels sit on the grid of exact sums
    (cimsim.crossbar.exact_grid, 2**-15 of a level), which the eager path's two bf16 parts and the kernel's two fp16
    parts both hold, so every column sum is exact on both paths: the same outputs bit for bit (before the grid,
    0.14 % of them differed with both noises and 1.4 % with programming noise alone), the same non-zero digits and
    read energy. Columns: 96 (whole quads: one Philox call per four values in the eager epilogue too) and 33 (6-bit
    weights of 11 outputs: not a multiple of 4, so the eager epilogue draws each value's quad and keeps its own)."""
    xb, xt = _noisy_isaac_tile(monkeypatch, prog, read, (product,), *shape)
    tile = xb._torch
    assert tile.a.shape[-1] == {12: 96, 11: 33}[shape[1]]
    assert tile.mode == product and (tile.var is not None) == (read > 0)
    assert tile._gemm_levels() is not None
    ranges = xb.ranges()
    state = tile.host_rng.bit_generator.state
    monkeypatch.setattr(TorchTile, "GEMM_DEVICES", ())
    y0, t0 = tile.forward_device(xt, ranges)
    tile.host_rng.bit_generator.state = state                 # the same seeds for the kernel's normals
    monkeypatch.setattr(TorchTile, "GEMM_DEVICES", (DEVICE,))
    calls = []
    monkeypatch.setattr(kernels_triton, "planes_gemm_adc",
                        lambda *a, **k: calls.append(a[-1]) or gemm(*a, **k))
    y1, t1 = tile.forward_device(xt, ranges)
    assert calls
    y0, y1 = y0.cpu().numpy(), y1.cpu().numpy()
    np.testing.assert_array_equal(y1, y0)
    torch.testing.assert_close(t1[:3], t0[:3], rtol=0, atol=0)
    assert abs(float(t1[3]) - float(t0[3])) <= 0.001 * float(t0[0]) + 1
    tile.host_rng.bit_generator.state = state
    y2, _ = tile.forward_device(xt, ranges)                   # the same seed: the same numbers
    np.testing.assert_array_equal(y2.cpu().numpy(), y1)
    if read:                                                  # another seed: other numbers
        y3, _ = tile.forward_device(xt, ranges)
        assert not np.array_equal(y3.cpu().numpy(), y1)


def test_the_kernels_read_noise_is_standard_normal_per_value_and_cycle():
    """The one kernel's read noise, recovered value by value through a fine ADC (lsb 1/64 of the noise's sigma, one
    cycle's place value at a time, the same seed): mean 0 and standard deviation 1 within 3 % over 8,192 values per
    cycle, each of a Philox call's eight normals (columns c mod 8) too, and the cycles and the eight columns of a
    call uncorrelated (|r| < 0.05)."""
    G, nb, R, C, T = 1, 256, 32, 32, 4
    dev = DEVICE
    rng = np.random.default_rng(5)
    x = torch.full((G, nb, R), 2 ** T - 1, dtype=torch.int32, device=dev)     # every digit 1 in every cycle
    a8 = torch.as_tensor(rng.integers(0, 4, size=(G, R, C)), dtype=torch.int8, device=dev)
    var = torch.full((G, R), 1.0 / R, dtype=torch.float32, device=dev)         # sd = sqrt(sum_r 1 * var_r) = 1
    i32 = lambda v: torch.as_tensor(v, dtype=torch.int32, device=dev)   # noqa: E731
    f32 = lambda v: torch.as_tensor(v, dtype=torch.float32, device=dev)  # noqa: E731
    v = a8.to(torch.float64).sum(dim=1).cpu().numpy()[0]                      # each column's exact value
    n = []
    for t in range(T):
        out, clips, _, _ = kernels_triton.planes_gemm_adc(
            x, a8, i32(range(T)), i32([1] * T), f32([-64.0]), f32([1 / 64]), f32(np.eye(T)[t]), C, 2.0 ** 24,
            var, 12345)
        assert float(clips) == 0
        n.append(out.cpu().numpy().astype(np.float64).reshape(nb, C) / 64 - 64 - v[None, :])
    octs = np.stack(n).reshape(T, nb * C // 8, 8)           # (cycle, Philox call, its eight normals)
    for m in (octs.reshape(T, -1), octs.transpose(2, 0, 1).reshape(8, -1)):   # by cycle; by place in the call
        assert np.all(np.abs(m.mean(axis=1)) < 0.05)
        assert np.all(np.abs(m.std(axis=1) - 1) < 0.03)
        r = np.corrcoef(m)
        assert np.all(np.abs(r[~np.eye(len(m), dtype=bool)]) < 0.05)


@pytest.mark.parametrize("lsb", [2.0 ** -3, 1.0, 4.0, 16.0])
def test_the_kernels_multiply_by_a_power_of_two_lsbs_inverse_with_the_divisions_codes(lsb):
    """``lsb_pow2``: both kernels multiply by 1 / lsb instead of dividing (cheaper on the GPU); for a power-of-two lsb
    (the engine's rule, crossbar.quantizer_lo_lsb) the codes, sums and clipped counts are the division's bit for bit,
    with read noise (values off the integers) and without, on and off the ADC's range."""
    G, nb, R, C, T = 2, 200, 64, 40, 5
    dev = DEVICE
    rng = np.random.default_rng(int(np.log2(lsb)) + 40)
    i32 = lambda v: torch.as_tensor(v, dtype=torch.int32, device=dev)   # noqa: E731
    f32 = lambda v: torch.as_tensor(v, dtype=torch.float32, device=dev)  # noqa: E731
    x = i32(rng.integers(0, 2 ** T, size=(G, nb, R)))
    a8 = torch.as_tensor(rng.integers(0, 4, size=(G, R, C)), dtype=torch.int8, device=dev)
    var = f32(np.full((G, R), (0.7 * lsb) ** 2 / R))                 # noise of about an LSB: codes move
    lo = f32([48.0 - 16 * lsb, 40.0])                                   # column values: about 48 +- 10
    w = f32(2.0 ** np.arange(T))
    for v in (None, var):
        args = (x, a8, i32(range(T)), i32([1] * T), lo, f32([lsb] * G), w, C, 32.0, v, 99)
        div, mul = kernels_triton.planes_gemm_adc(*args), kernels_triton.planes_gemm_adc(*args, lsb_pow2=True)
        assert 0 < float(div[1]) < G * nb * C * T                   # some conversions clipped, not all
        for d, m in zip(div, mul):
            torch.testing.assert_close(m, d, rtol=0, atol=0)
    vals = f32(rng.normal(0, 40 * lsb, size=(G, T * nb, C)))
    std = f32(np.full((G, T * nb, C), 0.5 * lsb))
    lo_e, lsb_e = f32([-16.0 * lsb, -4.0 * lsb])[:, None, None], f32([lsb] * G)[:, None, None]
    for sd in (None, std):
        div = kernels_triton.adc_epilogue(vals, sd, lo_e, lsb_e, w, T, nb, C, 32.0, 5)
        mul = kernels_triton.adc_epilogue(vals, sd, lo_e, lsb_e, w, T, nb, C, 32.0, 5, lsb_pow2=True)
        assert 0 < float(div[1]) < G * nb * C * T
        for d, m in zip(div, mul):
            torch.testing.assert_close(m, d, rtol=0, atol=0)


@pytest.mark.parametrize("noise", [False, True])
def test_the_kernel_adds_its_values_to_the_outputs_exactly(noise):
    """``fold``: the one kernel adds each column's ``lo * sum(w_t) + lsb * code sum``, times the column's digital
    weight (signed powers of two), to output ``c % N`` by float64 atomic adds; every term an integer, so the sums
    equal, bit for bit, the codes returned and combined in float64 afterwards (the path without ``fold``), whatever
    order the adds land in; an output that held a value keeps it."""
    G, nb, R, N, S, T = 3, 150, 64, 12, 4, 6
    C = N * S
    dev = DEVICE
    rng = np.random.default_rng(7 + noise)
    i32 = lambda v: torch.as_tensor(v, dtype=torch.int32, device=dev)   # noqa: E731
    f32 = lambda v: torch.as_tensor(v, dtype=torch.float32, device=dev)  # noqa: E731
    f64 = lambda v: torch.as_tensor(v, dtype=torch.float64, device=dev)  # noqa: E731
    x = i32(rng.integers(0, 2 ** T, size=(G, nb, R)))
    a8 = torch.as_tensor(rng.integers(0, 4, size=(G, R, C)), dtype=torch.int8, device=dev)
    var = f32(np.full((G, R), 0.3 / R)) if noise else None
    lo, lsb = np.array([-5.0, 0.0, 12.0]), np.array([1.0, 2.0, 4.0])
    place = 2.0 ** np.arange(T)
    cw = np.repeat([1.0, 4.0, 16.0, -64.0], N)                         # slices' weights, the top one negative
    args = (x, a8, i32(range(T)), i32([1] * T), f32(lo), f32(lsb), f32(place), C, 16.0, var, 3)
    codes, clips, nz, sq = kernels_triton.planes_gemm_adc(*args, lsb_pow2=True)
    vals = f64(lo)[:, None] * place.sum() + f64(lsb)[:, None] * codes.to(torch.float64)   # (G, nb * C)
    want = (vals.sum(dim=0).reshape(nb, C) * f64(cw)).reshape(nb, S, N).sum(dim=1)
    y = torch.full((nb, N), 0.0, dtype=torch.float64, device=dev)
    y[0] = 1000.0
    none, clips2, nz2, sq2 = kernels_triton.planes_gemm_adc(
        *args, lsb_pow2=True, fold=(y, f64(cw), f64(lo * place.sum()), f64(lsb)))
    assert none is None and 0 < float(clips) < G * nb * C * T
    want[0] += 1000.0
    torch.testing.assert_close(y, want, rtol=0, atol=0)
    for a, b in ((clips2, clips), (nz2, nz), (sq2, sq)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("T", [1, 8, 16, 31])
def test_binary_digits_counts_are_population_counts(T):
    """``binary``: with 1-bit digits (shifts 0 .. T - 1, masks 1) the digits' kernel counts each integer's set bits
    at once; the non-zero digits and each row's sum of squared digits equal the cycle-by-cycle counts, bits at T and
    above ignored as the cycles ignore them. The same kernel's row sums (``row_sums``) are the integers' sums."""
    G, nb, R, C = 2, 70, 48, 16
    dev = DEVICE
    rng = np.random.default_rng(T)
    i32 = lambda v: torch.as_tensor(v, dtype=torch.int32, device=dev)   # noqa: E731
    f32 = lambda v: torch.as_tensor(v, dtype=torch.float32, device=dev)  # noqa: E731
    xs = rng.integers(0, 2 ** T, size=(G, nb, R))
    xs[0, 0] = 2 ** T - 1                                    # every bit set
    xs[1, :3] |= int(rng.integers(0, 2 ** (31 - T))) << T if T < 31 else 0
    x = i32(xs)
    a8 = torch.as_tensor(rng.integers(0, 4, size=(G, R, C)), dtype=torch.int8, device=dev)
    args = (x, a8, i32(range(T)), i32([1] * T), f32([0.0, 0.0]), f32([1.0, 1.0]), f32(2.0 ** np.arange(T)), C,
            2.0 ** 20)
    loop, pop = kernels_triton.planes_gemm_adc(*args), kernels_triton.planes_gemm_adc(*args, binary=True)
    bits = (xs[..., None] >> np.arange(T)) & 1
    assert int(pop[2]) == int(loop[2]) == int(bits.sum())
    torch.testing.assert_close(pop[3], loop[3], rtol=0, atol=0)
    np.testing.assert_array_equal(pop[3].cpu().numpy(), bits.sum(axis=(1, 3)).reshape(-1))
    # row_sums: each example's integers over every block's rows (the offset encoding's correction), added to
    # what is there, with either count; the outputs the same as without
    for binary in (False, True):
        sums = torch.full((nb,), 0.5, dtype=torch.float64, device=dev)
        with_sums = kernels_triton.planes_gemm_adc(*args, binary=binary, row_sums=sums)
        np.testing.assert_array_equal(sums.cpu().numpy(), xs.sum(axis=(0, 2)) + 0.5)
        torch.testing.assert_close(with_sums[0], loop[0], rtol=0, atol=0)


@pytest.mark.parametrize("parts", [0, 2, -3])
def test_uniform_read_noise_from_the_digits_count_is_the_rows_sum(parts):
    """``uniform_var`` with 0/1 digits: the noise's variance as the count of 1 digits (a tensor-core product) times
    the block's one variance, on the exact grid, is the per-row sum bit for bit: the same outputs, int8 levels, two
    fp16 parts and three int8 parts, ragged row blocks (their missing rows carry no digits) included."""
    G, nb, R, C, T = 3, 130, 64, 40, 6
    dev = DEVICE
    rng = np.random.default_rng(11 + parts)
    i32 = lambda v: torch.as_tensor(v, dtype=torch.int32, device=dev)   # noqa: E731
    f32 = lambda v: torch.as_tensor(v, dtype=torch.float32, device=dev)  # noqa: E731
    xs = rng.integers(0, 2 ** T, size=(G, nb, R))
    xs[2, :, 50:] = 0                                        # the last block's rows 50.. beyond the layer
    levels = rng.integers(0, 4, size=(G, R, C)).astype(np.float64)
    if parts:
        noisy = np.round((levels + rng.normal(0, 0.15, size=levels.shape)) * 2 ** 12) / 2 ** 12
        if parts > 0:
            hi, lo = fp16_split(torch.as_tensor(noisy, dtype=torch.float32))
            a = torch.stack([hi, lo], dim=1).to(torch.float32).to(dev)
        else:
            a, iscale = int8_parts(torch.as_tensor(noisy, dtype=torch.float32), 1)
            a = a.to(dev)
    else:
        a = torch.as_tensor(levels, dtype=torch.int8, device=dev)
    u = np.array([0.0123, 0.5, 3.0]) * 2.0 ** -6
    u = np.round(u * 2 ** 18) / 2 ** 18                      # 12 significant bits at most: count x u exact
    var = np.repeat(u[:, None], R, axis=1)
    var[2, 50:] = 0.0
    args = (i32(xs), a, i32(range(T)), i32([1] * T), f32([-20.0] * G), f32([1.0] * G), f32(2.0 ** np.arange(T)), C,
            64.0, f32(var), 77)
    kw = {"iscale": iscale} if parts < 0 else {}
    want = kernels_triton.planes_gemm_adc(*args, binary=True, **kw)
    got = kernels_triton.planes_gemm_adc(*args, binary=True, uniform_var=f32(u), **kw)
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    assert float(want[1]) > 0


def test_uniform_variance_only_where_the_products_are_exact(monkeypatch):
    """A tile offers the uniform variance only where every row of a block has the same one and any count of rows
    times it is exact in float32; a variance with 24 significant bits, or rows that differ, get None."""
    xb, _ = _noisy_isaac_tile(monkeypatch, 0.05, 0.02)
    tile = xb._torch
    var = tile._gemm_levels()[1]
    assert tile._uniform_var(var) is not None
    odd = var.clone()
    odd[0, 3] *= 2
    assert tile._uniform_var(odd) is None
    full = torch.full_like(var, float(np.float32(1 / 3)))     # 24 significant bits: 100 x it rounds
    assert tile._uniform_var(full) is None


def test_the_kernel_folds_only_where_the_sum_is_exact(monkeypatch):
    """A tile's constants offer the kernel the fold (integer ``lo``, power-of-two LSBs) for the engine's ranges, and
    withhold it for a range whose ``lo`` is not an integer, where the outputs then come as before."""
    xb, xt = _noisy_isaac_tile(monkeypatch, 0.05, 0.02)
    tile = xb._torch
    assert tile.constants(xb.ranges())["fold"] is not None
    odd = [(lo + 0.5, lsb) for lo, lsb in xb.ranges()]
    assert tile.constants(odd)["fold"] is None


def test_engine_ranges_have_power_of_two_lsbs_so_the_kernels_multiply(monkeypatch):
    """Every range the engine calibrates has a power-of-two LSB, so the tile's constants tell the kernels to multiply
    (``pow2``); a range whose LSB is not one makes them divide."""
    xb, _ = _noisy_isaac_tile(monkeypatch, 0.05, 0.02)
    tile = xb._torch
    assert tile.constants(xb.ranges())["pow2"] is True
    assert tile.constants([(0.0, 3.0)] * len(xb.ranges()))["pow2"] is False


def test_isaac_with_noise_takes_the_one_kernel_path(monkeypatch):
    """ISAAC's own crossbar spec with programming and read noise set, under the products CUDA runs: the one-kernel
    path applies (bf16 parts on the eager path, three exact int8 parts in the kernel, one read-noise variance per
    row); the ISAAC defaults (no noise) take int8."""
    from cimsim import arch

    monkeypatch.setitem(TorchTile.PRODUCTS, DEVICE, TorchTile.PRODUCTS["cuda"])
    W = np.random.default_rng(0).integers(-2 ** 15, 2 ** 15, size=(16, 144))
    for sets, mode in (({}, "int8"), ({"prog_sigma_frac": 0.05, "read_sigma_frac": 0.02}, "bf16")):
        spec = arch.get("isaac", **sets).crossbar_spec()
        tile = cimsim.Crossbar(W, spec, seed=1, backend="torch", device=DEVICE)._torch
        levels, var, uniform, iscale = tile._gemm_levels()
        assert tile.mode == mode and (var is not None) == bool(sets)
        # noisy levels on the grid of exact sums (2**-15 of a level here): three exact int8 parts
        assert levels.dtype == torch.int8 and levels.dim() == (3 if mode == "int8" else 4)
        assert iscale == (1.0 if mode == "int8" else 2.0 ** -15)
        if sets:   # three int8 parts; ISAAC's read noise does not depend on the level: one variance per row block
            assert levels.shape[1] == 3
            assert uniform is not None and uniform.shape == (var.shape[0],)
            torch.testing.assert_close(uniform[:, None].expand(-1, 128)[:, :16], var[:, :16], rtol=0, atol=0)


def test_the_kernels_normals_are_the_host_formulas_of_their_philox_words():
    """:func:`kernels_triton._normals8` against :func:`kernels_triton.normals_from_words` (float64) applied to the
    same Philox words (``tl.randint4x`` of the same seed and offsets, stored by the test's kernel): within 1e-5 with
    the accurate functions (the interpreter), within the SFU's bound (2.5e-4, the next test's) with them: the
    kernel's radius and angle bits, order and constants are the ones the bounds were worked out for."""
    import triton
    import triton.language as tl

    @triton.jit
    def draw(words_ptr, out_ptr, seed, FAST: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        w1, w2, w3, w4 = tl.randint4x(seed, offs)
        tl.store(words_ptr + offs * 4, w1.to(tl.int64))
        tl.store(words_ptr + offs * 4 + 1, w2.to(tl.int64))
        tl.store(words_ptr + offs * 4 + 2, w3.to(tl.int64))
        tl.store(words_ptr + offs * 4 + 3, w4.to(tl.int64))
        q0, q1, q2, q3, q4, q5, q6, q7 = kernels_triton._normals8(seed, offs, FAST)
        n = tl.reshape(kernels_triton._in_order(q0, q1, q2, q3, q4, q5, q6, q7), (BLOCK * 8,))
        tl.store(out_ptr + tl.program_id(0) * BLOCK * 8 + tl.arange(0, BLOCK * 8), n)

    calls = 1 << 12
    fast = kernels_triton.fast_math()
    words = torch.empty(4 * calls, dtype=torch.int64, device=DEVICE)
    out = torch.empty(8 * calls, dtype=torch.float32, device=DEVICE)
    draw[(calls // 256,)](words, out, 2024, FAST=fast, BLOCK=256)
    w = words.cpu().numpy().reshape(calls, 4) & 0xFFFFFFFF
    assert w.min() >= 0 and len(np.unique(w)) > 4 * calls - 8          # 32-bit words, (almost) all distinct
    want = kernels_triton.normals_from_words(w)
    got = out.cpu().numpy().astype(np.float64).reshape(calls, 8)
    assert np.abs(got - want).max() < (2.5e-4 if fast else 1e-5)


def test_fast_normals_are_the_accurate_ones_within_their_bound():
    """The kernels' normals with the SFU's approximate lg2, sine and cosine (``FAST``, the default on a GPU) against
    the same formula with the accurate functions, over 2**19 Philox calls (4 Mi normals): the same words, so the
    same normals to within 2.5e-4 of a sigma (the largest where u is near 1 and the normal near 0: lg2.approx's
    absolute error over a small radius; with four normals a call, 3.7e-5 here and 8.6e-5 over 16 Mi normals on an
    H200, mean 1.6e-7: BENCHMARKS.md), with mean 0 and standard deviation 1."""
    if DEVICE != "cuda" or not kernels_triton.fast_math():
        pytest.skip("the SFU's approximations exist only on a GPU")
    import triton
    import triton.language as tl

    @triton.jit
    def draw(out_ptr, seed, FAST: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        q0, q1, q2, q3, q4, q5, q6, q7 = kernels_triton._normals8(seed, offs, FAST)
        n = tl.reshape(kernels_triton._in_order(q0, q1, q2, q3, q4, q5, q6, q7), (BLOCK * 8,))
        tl.store(out_ptr + tl.program_id(0) * BLOCK * 8 + tl.arange(0, BLOCK * 8), n)

    calls = 1 << 19
    fast, slow = (torch.empty(8 * calls, device="cuda") for _ in range(2))
    draw[(calls // 1024,)](fast, 4242, FAST=True, BLOCK=1024)
    draw[(calls // 1024,)](slow, 4242, FAST=False, BLOCK=1024)
    diff = (fast.double() - slow.double()).abs()
    assert float(diff.max()) < 2.5e-4 and float(diff.mean()) < 1e-6
    assert abs(float(fast.double().mean())) < 0.005 and abs(float(fast.double().std()) - 1) < 0.005

