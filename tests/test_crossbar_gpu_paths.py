"""The GPU's low-precision products, run here on the CPU with the same arithmetic (TorchTile.PRODUCTS allows
them per device type): int8 x int8 -> int32 for integer levels (exact: bit for bit equal to numba) and the split
bf16 product for real-valued levels (within its stated bound, far below the device noise)."""

import numpy as np
import pytest
import torch

import cimsim
from cimsim.crossbar_torch import TorchTile, bf16_split
from cimsim.devices import IdealReadout, ReRAM, SarADC, SenseAmp, TernaryReadout


@pytest.fixture
def gpu_products_on_cpu(monkeypatch):
    monkeypatch.setitem(TorchTile.PRODUCTS, "cpu", ("int8", "bf16", "tf32"))


@pytest.mark.parametrize("grid,low,parts", [(15, 0, 3), (15, -3, 3), (8, -3, 2), (12, 0, 3), (0, 0, 2)])
def test_int8_parts_hold_grid_levels_exactly(grid, low, parts):
    """Levels on a grid 2**-grid as int8 parts 7 bits apart (the one kernel's exact product of noisy levels): the
    parts give the levels back exactly, the most significant signed, the others in 0 .. 127, on the coarsest grid
    that holds every level; two parts where the scaled levels stay below 2**13."""
    from cimsim.torch_products import int8_parts

    rng = np.random.default_rng(grid + 7 * parts)
    a = np.clip(rng.integers(low, 4, size=(3, 128, 20)) + (rng.normal(0, 0.15, size=(3, 128, 20)) if grid else 0),
                low, 3)
    a = np.round(a * 2.0 ** grid) / 2.0 ** grid
    a[0, 0, 0] = 2.0 ** -grid if grid else 1.0                    # the finest step occurs: the grid is 2**-grid
    p, scale = int8_parts(torch.as_tensor(a, dtype=torch.float32), 1)
    assert p.dtype == torch.int8 and p.shape == (3, parts, 128, 20) and scale == 2.0 ** -grid
    assert int(p[:, 1:].min()) >= 0
    ints = sum(p[:, i].to(torch.int64) * 2 ** (7 * (parts - 1 - i)) for i in range(parts))
    np.testing.assert_array_equal(ints.numpy() * scale, a)


def test_int8_parts_refuse_what_they_cannot_hold_exactly():
    """None (the fp16 parts then) for levels off every grid up to 2**-24, non-finite levels, column sums of 2**24
    grid units or more (their float32 conversion would round), and digits whose partial sums could leave int32."""
    from cimsim.torch_products import int8_parts

    f32 = lambda v: torch.as_tensor(v, dtype=torch.float32)   # noqa: E731
    assert int8_parts(f32([[[0.1, 1.0]]]), 1) is None                 # 0.1 in float32 needs 27 fraction bits
    assert int8_parts(f32([[[float("nan"), 1.0]]]), 1) is None
    col = np.full((1, 128, 2), 3.0)
    col[0, 0, 0] = 2.0 ** -15
    assert int8_parts(f32(col), 1) is not None                        # 128 x 3 x 2**15 < 2**24
    assert int8_parts(f32(col), 2) is None                            # two-unit digits: 2**24.6 grid units
    assert int8_parts(f32(np.full((1, 2048, 2), 1.0)), 127) is None   # int32 partial sums: 127 x 2048 x 2**14
    assert int8_parts(f32([[[2.0 ** 21]]]), 1) is None                # beyond three parts


def test_bf16_split_leaves_at_most_2_to_the_minus_16():
    rng = np.random.default_rng(0)
    t = torch.as_tensor(np.concatenate([rng.normal(1.5, 0.5, 4000), rng.uniform(-3, 3, 4000),
                                        10.0 ** rng.uniform(-6, 3, 2000)]), dtype=torch.float32).reshape(100, 100)
    parts = bf16_split(t)
    assert parts.dtype == torch.bfloat16 and parts.shape == (200, 100)
    hi, lo = parts[:100].double(), parts[100:].double()
    r = t.double() - hi - lo
    assert torch.all(r.abs() <= 2.0 ** -16 * t.double().abs())
    assert torch.all((t.double() - hi).abs() <= 2.0 ** -8 * t.double().abs())
    assert r.abs().max() > 0     # bf16 does leave something: the bound is met, not trivially


def _noisy(dac_bits=1, read_sigma=0.0, signed="offset", seed=1):
    rng = np.random.default_rng(4)
    W = rng.integers(-127, 128, size=(40, 300))
    x = rng.integers(0, 256, size=(24, 300))
    spec = cimsim.CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=8, input_bits=8, dac_bits=dac_bits,
                               signed=signed, cell=ReRAM(prog_sigma_frac=0.05, read_sigma_frac=read_sigma))
    return W, x, spec


@pytest.mark.parametrize("dac_bits", [1, 4, 8])
def test_split_bf16_product_is_within_its_bound(gpu_products_on_cpu, dac_bits):
    """Column values of the split product against float64: within 2**-16 sum |x a| (the split) plus the float32
    accumulation bound 2R * 2**-24 sum |x| (|hi| + |lo|) that any float32 product has."""
    W, x, spec = _noisy(dac_bits)
    tile = cimsim.Crossbar(W, spec, seed=1, backend="torch")._torch
    assert tile.mode == "bf16"
    rng = np.random.default_rng(5)
    nblk, R = tile.a.shape[0], tile.a.shape[1]
    lo_d, hi_d = (0, 2 ** dac_bits - 1)
    xp = torch.as_tensor(rng.integers(lo_d, hi_d + 1, size=(nblk, 64, R)), dtype=torch.int8 if dac_bits <= 7
                         else torch.int32)
    got = tile._bmm(xp, tile.a, tile.a_parts, 0, nblk, "bf16").double()
    a = tile.a.double()
    exact = torch.bmm(xp.double(), a)
    parts = tile.a_parts.double().abs()
    bound = (2.0 ** -16 * torch.bmm(xp.double().abs(), a.abs())
             + 2 * R * 2.0 ** -24 * torch.bmm(xp.double().abs(), parts[:, :R] + parts[:, R:]))
    assert torch.all((got - exact).abs() <= bound)
    if dac_bits == 1:
        # the programmed levels sit on the grid of exact sums (cimsim.crossbar.exact_grid: 2**-15 of a level and
        # below 4 levels, 17 significant bits), which the two bf16 parts hold (round to nearest: 8 + 8 bits and a
        # sign): the split product is then the exact one, as on the CPU
        assert torch.equal(got, exact)
    else:
        # 4- and 8-bit digits leave a grid coarser than 2**-GRID_MIN_BITS: the levels stay off it, the split rounds
        assert (got - exact).abs().max() > 0


def test_split_bf16_error_is_far_below_the_read_noise(gpu_products_on_cpu):
    """The stated bound against the device noise it sits beside, on the bench's standard case (8-bit inputs by
    1-bit DACs, 2-bit ReRAM cells, read noise 2 % and programming noise 5 % of the range): for every column value
    of a batch, 2**-16 sum |x a| is below 1 % of the read noise's std sqrt(sum x**2 var)."""
    W, x, spec = _noisy(1, read_sigma=0.02)
    xb = cimsim.Crossbar(W, spec, seed=1, backend="torch")
    tile = xb._torch
    assert tile.mode == "bf16" and tile.var_mode == "bf16"
    digits = torch.as_tensor(np.random.default_rng(2).integers(0, 2, size=(tile.a.shape[0], 256, 128)),
                             dtype=torch.float64)
    bound = 2.0 ** -16 * torch.bmm(digits, tile.a.double().abs())
    std = torch.bmm(digits * digits, tile.var.double().expand(-1, -1, tile.a.shape[-1])).sqrt()
    ratio = bound[std > 0] / std[std > 0]
    assert float(ratio.max()) < 0.01


def test_split_bf16_crossbar_matches_numba_within_the_bound(gpu_products_on_cpu):
    """End to end (programming noise, lossless readout): y differs from numba's by at most the bound carried
    through the shift-and-add, 2**-15 max_o sum_k x_k (W + 128)_ok (offset mapping stores W + 128)."""
    W, x, spec = _noisy(1)
    a = cimsim.Crossbar(W, spec, seed=1)(x)
    xb = cimsim.Crossbar(W, spec, seed=1, backend="torch")
    assert xb._torch.mode == "bf16"
    b = xb(x)
    assert not np.array_equal(a, x @ W.T)
    assert np.abs(a - b).max() <= 2.0 ** -15 * (x @ (W + 128).T).max()


READOUTS = [IdealReadout(), SarADC(bits=5), SenseAmp(threshold=3.5), TernaryReadout(delta=2.5)]


@pytest.mark.parametrize("products", [("int8", "bf16"), ("bf16",)])
@pytest.mark.parametrize("signed,cell_bits,dac_bits,input_signed,batch", [
    ("offset", 2, 1, False, 9), ("offset", 3, 2, True, 1), ("twos", 2, 1, True, 40),
    ("differential", 2, 2, False, 3), ("differential", 3, 1, True, 17)])
def test_integer_level_products_agree_with_numba_bit_for_bit(monkeypatch, products, signed, cell_bits, dac_bits,
                                                             input_signed, batch):
    """Integer levels through torch._int_mm (cycles x batch rows above 16; exact float32 below), or through one
    bf16 product (integer levels and digits are exact in bf16, and their float32 sums below 2**24)."""
    monkeypatch.setitem(TorchTile.PRODUCTS, "cpu", products)
    rng = np.random.default_rng(6)
    W = rng.integers(-7, 8, size=(13, 150))
    x = rng.integers(-8, 8, size=(batch, 150)) if input_signed else rng.integers(0, 16, size=(batch, 150))
    for ro in READOUTS:
        for pair in ([False, True] if signed == "differential" and not isinstance(ro, IdealReadout) else [False]):
            spec = cimsim.CrossbarSpec(rows=64, cols=40, cell_bits=cell_bits, weight_bits=4, input_bits=4,
                                       dac_bits=dac_bits, signed=signed, input_signed=input_signed, readout=ro,
                                       pair_readout=pair)
            b = cimsim.Crossbar(W, spec, backend="torch")
            assert b._torch.mode == products[0]
            if products[0] == "bf16":
                assert b._torch.a_parts.shape == b._torch.a.shape      # one part: nothing left over
            assert np.array_equal(cimsim.Crossbar(W, spec)(x), b(x)), (type(ro).__name__, pair)


def test_product_choice(gpu_products_on_cpu, monkeypatch):
    """int8 for integer levels, bf16 for real ones; float64 products (and digits bf16 cannot hold) stay exact."""
    W, x, spec = _noisy(1, read_sigma=0.02)
    from dataclasses import replace
    ideal = replace(spec, cell=cimsim.devices.IdealCell())
    assert cimsim.Crossbar(W, ideal, backend="torch")._torch.mode == "int8"
    noisy = cimsim.Crossbar(W, spec, backend="torch")._torch
    assert (noisy.mode, noisy.var_mode) == ("bf16", "bf16")
    five = cimsim.Crossbar(W, replace(spec, dac_bits=5), backend="torch")._torch
    assert (five.mode, five.var_mode) == ("bf16", "tf32")     # 31**2 is not exact in bf16, it is in TF32
    wide = cimsim.Crossbar(W, replace(spec, rows=8192, cell_bits=4, dac_bits=8, input_bits=16), backend="torch")._torch
    assert wide._exact_dtype() == torch.float64 and wide.mode == "plain"
    monkeypatch.setitem(TorchTile.PRODUCTS, "cpu", ())
    assert cimsim.Crossbar(W, spec, backend="torch")._torch.mode == "plain"


def test_a_refused_int8_product_falls_back_to_the_exact_bf16_one(gpu_products_on_cpu, monkeypatch):
    rng = np.random.default_rng(8)
    W = rng.integers(-7, 8, size=(13, 150))
    x = rng.integers(0, 16, size=(30, 150))
    spec = cimsim.CrossbarSpec(rows=64, cols=40, weight_bits=4, input_bits=4, readout=SarADC(bits=5))

    def refuse(*a, **k):
        raise RuntimeError("self.size(0) needs to be greater than 16")
    monkeypatch.setattr(torch, "_int_mm", refuse)
    xb = cimsim.Crossbar(W, spec, backend="torch")
    assert xb._torch.mode == "int8"
    assert np.array_equal(xb(x), cimsim.Crossbar(W, spec)(x))
    assert xb._torch.mode == "bf16"


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_any_chunking_of_the_batch_gives_the_same_integer_numbers(monkeypatch, chunk):
    """A GPU streams far larger chunks than the spec's batch_chunk (TorchTile.chunk_rows): on integer paths the
    chunking cannot move a number (signed inputs: the sign bit's cycle is cut per chunk too)."""
    rng = np.random.default_rng(9)
    W = rng.integers(-7, 8, size=(13, 150))
    x = rng.integers(-8, 8, size=(23, 150))
    spec = cimsim.CrossbarSpec(rows=64, cols=40, weight_bits=4, input_bits=4, dac_bits=2, input_signed=True,
                               signed="differential", readout=SarADC(bits=5), adc_range="full")
    monkeypatch.setattr(TorchTile, "chunk_rows", lambda self, T: chunk)
    a, b = cimsim.Crossbar(W, spec), cimsim.Crossbar(W, spec, backend="torch")
    assert np.array_equal(a(x), b(x))
    assert a.ledger.totals().keys() == b.ledger.totals().keys()
    for k, v in a.ledger.totals().items():
        assert b.ledger.totals()[k] == pytest.approx(v, rel=1e-12), k


@pytest.mark.parametrize("bits,dac,signed,K,R", [
    (16, 1, False, 300, 128), (16, 1, False, 256, 128), (16, 2, True, 70, 32), (15, 3, False, 33, 16),
    (8, 1, False, 100, 64), (7, 4, True, 200, 64), (20, 4, True, 90, 32), (31, 5, False, 40, 16),
    (32, 8, True, 50, 16), (32, 3, False, 20, 16)])
@pytest.mark.parametrize("products", [("int8", "bf16"), ("bf16",), ()])
@pytest.mark.parametrize("xdtype", [torch.float64, torch.int64])
def test_eager_planes_are_the_digits_of_input_planes(monkeypatch, bits, dac, signed, K, R, products, xdtype):
    """TorchTile.planes (the shift broadcast over cycles written narrowed to the product's dtype, then the mask;
    padding and the row blocks' layout applied to the inputs) gives
    the digits of cimsim.encoding.input_planes, zero rows beyond the inputs, laid out (blocks, cycles x batch,
    rows); extreme inputs and zero included. On CUDA where there is one (the narrowing casts are the device's)."""
    from cimsim.encoding import input_planes
    monkeypatch.setitem(TorchTile.PRODUCTS, "cpu", products)
    rng = np.random.default_rng(bits * 100 + dac + K)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    x = rng.integers(lo, hi, size=(37, K), endpoint=True)
    x[0], x[1], x[2] = lo, hi, 0
    W = rng.integers(-7, 8, size=(5, K))
    spec = cimsim.CrossbarSpec(rows=R, cols=32, weight_bits=4, input_bits=bits, dac_bits=dac, input_signed=signed,
                               readout=IdealReadout())
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    monkeypatch.setitem(TorchTile.PRODUCTS, dev, products)
    tile = cimsim.Crossbar(W, spec, backend="torch", device=dev)._torch
    nblk = len(tile.xb.row_blocks)
    want, _ = input_planes(x, bits, dac, signed)                          # (T, B, K)
    T = want.shape[0]
    pad = np.zeros((T, 37, nblk * R), dtype=np.int64)
    pad[:, :, :K] = want
    want = pad.reshape(T, 37, nblk, R).transpose(2, 0, 1, 3).reshape(nblk, T * 37, R)
    got = tile.planes(torch.as_tensor(x, dtype=xdtype, device=dev), tile.constants([(0.0, 1.0)]), nblk)
    assert got.dtype == tile._plane_dtype() and got.shape == want.shape
    np.testing.assert_array_equal(got.to(torch.int64).cpu().numpy(), want)
