"""The fused path's product on AMX tiles (cimsim.kernels_amx): levels on the grid of exact sums cut into signed-byte
parts, the digits as bytes, every sum an integer float32 holds: the tables' column values bit for bit, so a crossbar's
outputs, draws and ledger are the same numbers whichever product runs (``$CIMSIM_CPU_PRODUCT``). The tile kernels
run only where the CPU has AMX (this project's machine of 2026-12-04 and the device host: Sapphire / Emerald
Rapids); elsewhere those tests skip and the weight layout is checked against numpy."""

import numpy as np
import pytest

from cimsim import Crossbar, CrossbarSpec, kernels_amx
from cimsim.devices import ReRAM, SarADC
from cimsim.errors import ConfigError

needs_amx = pytest.mark.skipif(not kernels_amx.available(), reason="no AMX int8 tiles on this CPU")


def _levels(rng, rows, cols, bits=15, top=4):
    a = rng.integers(0, top, (rows, cols)) + 0.05 * rng.standard_normal((rows, cols))
    return (np.round(a * 2.0 ** bits) / 2.0 ** bits).astype(np.float32)


@pytest.mark.parametrize("bits,top,parts,doubled", [(0, 4, 1, False), (0, 4, 1, True), (6, 4, 2, True),
                                                   (15, 4, 3, True), (15, 200, 4, True)])
def test_part_weights_rebuild_the_levels(bits, top, parts, doubled):
    """Integer levels take one part (with the digits single or doubled), ISAAC's noisy grid (2**-15) three; the
    weights times the digits [1, 128] and the groups' scales give back every level exactly, the low parts within
    0..127, the padded rows zero."""
    rng = np.random.default_rng(bits + top)
    rows = 128 if top == 4 else 2        # 200 x 2**15 needs 23 bits: only a 2-row block keeps sums below 2**24
    a = rng.integers(0, top, (rows, 40)).astype(np.float32) if bits == 0 else _levels(rng, rows, 40, bits, top)
    L, m, n_parts = kernels_amx.level_integers(a)
    assert n_parts == parts
    pad = rows + 3
    w, scale, groups = kernels_amx.part_weights(L, m, parts, pad, doubled)
    assert groups == -(-parts // 2) and w.dtype == np.int8 and w.shape == ((2 if doubled else 1) * pad, groups * 40)
    assert not w[rows:pad].any() and not w[pad + rows:].any()
    w64 = w.astype(np.float64)
    back = (w64[:rows] + (128 * w64[pad: pad + rows] if doubled else 0)) * scale.astype(np.float64)
    np.testing.assert_array_equal(back.reshape(rows, groups, 40).sum(axis=1), a.astype(np.float64))
    assert w[:rows, :40].min() >= 0 and (parts < 3 or w[pad: pad + rows, :40].min() >= 0)


@needs_amx
@pytest.mark.parametrize("m,k,n", [(40, 70, 50), (33, 128, 64), (1, 1, 1), (64, 256, 1040)])
def test_the_tile_product_is_numpys(m, k, n):
    """The tiles' u8 x s8 product with int32 sums (ragged rows, steps and column pairs padded) equals numpy's."""
    rng = np.random.default_rng(m + k + n)
    d = rng.integers(0, 256, (m, k)).astype(np.uint8)
    w = rng.integers(-128, 128, (k, n)).astype(np.int8)
    np.testing.assert_array_equal(kernels_amx.tile_product(d, w), d.astype(np.int64) @ w.astype(np.int64))


def test_packed_weights_hold_the_tile_layout():
    """Tile (column tile c, step s) row r holds columns 16 c .. 16 c + 15, each with its four k = 64 s + 4 r + 0..3."""
    rng = np.random.default_rng(2)
    w = rng.integers(-128, 128, (100, 40)).astype(np.int8)
    p = kernels_amx.pack_weights(w)
    assert p.shape == (4, 2, 16, 64)                     # 40 columns padded to 64 (two pairs), 100 rows to 128
    full = np.zeros((128, 64), np.int8)
    full[:100, :40] = w
    for c, s, r, j, q in [(0, 0, 0, 0, 0), (1, 1, 3, 5, 2), (2, 1, 15, 7, 3), (3, 0, 9, 15, 1)]:
        assert p[c, s, r, 4 * j + q] == full[64 * s + 4 * r + q, 16 * c + j]


def test_level_integers_refuse_levels_off_the_grid():
    rng = np.random.default_rng(0)
    assert kernels_amx.level_integers(rng.random((128, 8)).astype(np.float32)) is None
    assert kernels_amx.level_integers(_levels(rng, 128, 8, bits=17)) is None   # sums beyond 2**24 steps


def _isaac(prog, read, signed=False, input_bits=16):
    return CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=16, input_bits=input_bits, dac_bits=1,
                        signed="offset", input_signed=signed, cell=ReRAM(prog_sigma_frac=prog, read_sigma_frac=read),
                        readout=SarADC(bits=8), adc_range="calibrated")


@needs_amx
@pytest.mark.parametrize("prog,read,signed,n_in,n_out", [(0.05, 0.02, False, 300, 40), (0.05, 0.0, True, 300, 40),
                                                          (0.0, 0.02, False, 256, 40), (0.05, 0.02, True, 256, 40),
                                                          (0.05, 0.02, True, 25, 6), (0.05, 0.02, False, 150, 13)])
def test_tile_products_give_the_tables_numbers(monkeypatch, prog, read, signed, n_in, n_out):
    """ISAAC's tile (16-bit inputs and weights, 8 slices: 320 columns) with and without either noise (integer levels:
    one part), signed inputs (the last cycle's digits -1), a short last row block (300 inputs), and layers of
    LeNet-5's size whose 48 and 104 columns the tables leave to BLAS (the tiles take them): two calls' outputs and
    the ledger equal with the tables (or BLAS) and with the tiles' product on 1, 2 and 8 threads, and each call took
    the product it was asked for."""
    from cimsim import crossbar_cpu

    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_ROWS", 64)       # several shards
    rng = np.random.default_rng(11 + n_in)
    W = rng.integers(-2 ** 15, 2 ** 15, size=(n_out, n_in))
    lo, hi = (-2 ** 15, 2 ** 15) if signed else (0, 2 ** 16)
    x = rng.integers(lo, hi, size=(37, n_in))
    out = {}
    for how, n in (("tables", 1), ("amx", 1), ("amx", 2), ("amx", 8)):
        monkeypatch.setenv("CIMSIM_CPU_PRODUCT", how)
        monkeypatch.setenv("CIMSIM_THREADS", str(n))
        xb = Crossbar(W, _isaac(prog, read, signed), seed=5, name="l")
        xb.calibrate(x[:20])
        y1 = xb(x)
        assert xb._cpu.last_product == (how if how == "amx" or 8 * n_out >= 256 else None)
        out[how, n] = (y1, xb(x[:19]), xb.ledger.to_dict())
    for key, (y1, y2, ledger) in out.items():
        np.testing.assert_array_equal(y1, out["tables", 1][0], err_msg=str(key))
        np.testing.assert_array_equal(y2, out["tables", 1][1], err_msg=str(key))
        assert ledger == out["tables", 1][2]


@needs_amx
def test_prepared_blocks_are_kept_per_programmed_levels(monkeypatch):
    """A crossbar's packed parts are made once and kept; programmed again, it gets its own."""
    monkeypatch.setenv("CIMSIM_CPU_PRODUCT", "amx")
    rng = np.random.default_rng(21)
    W = rng.integers(-2 ** 15, 2 ** 15, size=(40, 300))
    x = rng.integers(0, 2 ** 16, size=(29, 300))
    built = []
    real = kernels_amx.TileBlocks.build
    monkeypatch.setattr(kernels_amx.TileBlocks, "build", lambda a: built.append(id(a)) or real(a))
    kernels_amx._KEPT.clear()
    xb = Crossbar(W, _isaac(0.05, 0.02), seed=3, name="l")
    xb.calibrate(x[:16])
    xb(x), xb(x)
    assert len(built) == 1
    xb.at_time(10.0)(x)
    assert len(built) == 2


def test_the_product_choice_is_checked(monkeypatch, capsys):
    """A bad $CIMSIM_CPU_PRODUCT is one line naming the choices, from the engine and from the CLI before any work."""
    from cimsim.cli import main

    monkeypatch.setenv("CIMSIM_CPU_PRODUCT", "fast")
    with pytest.raises(ConfigError, match="CIMSIM_CPU_PRODUCT='fast' is not one of auto, tables, amx"):
        kernels_amx.wanted()
    assert main(["archs"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CIMSIM_CPU_PRODUCT='fast' is not one of auto, tables, amx" in err
    monkeypatch.setenv("CIMSIM_CPU_PRODUCT", "tables")
    assert kernels_amx.wanted() is False
    monkeypatch.setenv("CIMSIM_CPU_PRODUCT", "auto")
    assert kernels_amx.wanted() == kernels_amx.available()
