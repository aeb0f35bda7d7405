"""What a programmed crossbar keeps for its life (issue 19: a mapped ResNet-18 within 2 GB on the CPU).

A tile whose cells sit exactly on their levels keeps one byte a cell of levels and four of float32 level-unit
matrices: its conductances and float64 matrices are looked up or widened when asked, with the same numbers as
the ones it used to store. Programming noise or IR drop puts the level units on the grid of exact sums
(cimsim.crossbar.exact_grid), which float32 holds: no float64 copy either."""
import math


import numpy as np
import pytest

from cimsim import Crossbar, CrossbarSpec
from cimsim.crossbar import GRID_MIN_BITS, exact_grid
from cimsim.devices import ReRAM, SarADC
from cimsim.encoding import slice_weights


def _held_bytes(xb) -> int:
    """Bytes of every numpy array the tile holds (attributes, lists of arrays, its weight slices), each once."""
    held = {}
    for v in list(vars(xb).values()) + list(vars(xb.slices).values()):
        for a in (v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(a, np.ndarray):
                held[id(a)] = a.nbytes
    return sum(held.values())


def _spec(cell, **kw):
    # ISAAC's defaults (arch/isaac.py): 16-bit weights in 2-bit cells, 128 x 128 arrays, offset mapping
    base = dict(rows=128, cols=128, cell=cell, cell_bits=2, weight_bits=16, input_bits=16, dac_bits=1,
                signed="offset", readout=SarADC(bits=8), adc_range="full")
    return CrossbarSpec(**{**base, **kw})


def _independent_a(xb, g):
    """The float64 level-unit matrix of each row block from the conductances, as the engine defines it."""
    cell, c = xb.spec.cell, xb.spec.cell_bits
    levels = cell.level_conductances(c)
    g_min, dg = levels[0], levels[1] - levels[0]
    S, P, N, K = g.shape
    flat = g.transpose(3, 0, 1, 2).reshape(K, S * P * N)
    return [(flat[k0:k1] - g_min) / dg for k0, k1 in xb.row_blocks]


def test_ideal_programming_keeps_five_bytes_a_cell_and_the_same_numbers():
    rng = np.random.default_rng(3)
    W = rng.integers(-2 ** 15, 2 ** 15, (96, 300))
    cell = ReRAM(prog_sigma_frac=0.0, read_sigma_frac=0.02)
    xb = Crossbar(W, _spec(cell), seed=4)
    cells = xb.slices.levels.size
    assert cells == 8 * 96 * 300
    # levels (1 byte) + float32 matrices (4 bytes) a cell; the rest is per row or per column (rows x 8 B sums,
    # columns x 8 B weights): under 5.1 bytes a cell here, 28 before (int64 levels, float64 g and A, float32 A)
    assert _held_bytes(xb) < 5.1 * cells
    assert xb.slices.levels.dtype == np.uint8
    assert np.array_equal(xb.slices.levels, slice_weights(W, 16, 2, "offset").levels)
    g = cell.program(slice_weights(W, 16, 2, "offset").levels, 2, np.random.default_rng(np.random.SeedSequence(4)))
    assert xb.g.dtype == np.float64 and np.array_equal(xb.g, g)
    for got, want, narrow in zip(xb.a, _independent_a(xb, g), xb.a_gemm):
        assert got.dtype == np.float64 and np.array_equal(got, want)
        assert narrow.dtype == np.float32 and np.array_equal(narrow, want)
    assert xb.ro_a[0] is not xb.a[0] and np.array_equal(xb.ro_a[0], xb.a[0])


def _grid_bits(raw: list[np.ndarray], rows: int) -> int:
    """m of the grid 2**-m: the largest with rows x (a digit of 1) x the largest |value| x 2**m below 2**24."""
    vmax = max(float(np.abs(a).max()) for a in raw)
    return math.floor(24 - math.log2(rows * vmax))


def test_programming_noise_and_ir_drop_put_the_level_units_on_the_grid_of_exact_sums():
    rng = np.random.default_rng(5)
    W = rng.integers(-2 ** 15, 2 ** 15, (40, 200))
    for spec in (_spec(ReRAM(prog_sigma_frac=0.05)), _spec(ReRAM(prog_sigma_frac=0.0), r_wire_ohm=1.0)):
        xb = Crossbar(W, spec, seed=6)
        g = spec.cell.program(xb.slices.levels, 2, np.random.default_rng(np.random.SeedSequence(6)))
        assert np.array_equal(xb.g, g)
        assert all(w is None for w in xb._a_wide)                       # float32 holds them: no float64 copy
        if spec.r_wire_ohm == 0:
            raw = _independent_a(xb, g)
            m = _grid_bits(raw, spec.rows)
            assert m == 15                                              # ISAAC's 2-bit cells, 5 % noise: 2**-15
            for got, narrow, want in zip(xb.a, xb.a_gemm, raw):
                assert got.dtype == np.float64 and narrow.dtype == np.float32
                assert np.array_equal(narrow.astype(np.float64), got)
                assert np.array_equal(np.round(got * 2.0 ** m), got * 2.0 ** m)            # on the grid
                assert np.abs(got - want).max() <= 2.0 ** -(m + 1)                         # the nearest point
                assert not np.array_equal(got, want)                                       # and moved there


def test_the_grid_makes_every_column_sum_exact_in_float32():
    """Products of the level units and of the read-noise variances with any digits (here the largest, in random
    patterns) are the float64 products exactly, so no BLAS, summation order or number of rows per call changes
    a bit."""
    rng = np.random.default_rng(11)
    W = rng.integers(-2 ** 15, 2 ** 15, (64, 300))
    xb = Crossbar(W, _spec(ReRAM(prog_sigma_frac=0.05, read_sigma_frac=0.05)), seed=2)
    for a, var in zip(xb.a_gemm, xb.var_gemm):
        d = rng.integers(0, 2, (257, a.shape[0])).astype(np.float32)
        assert np.array_equal((d @ a).astype(np.float64), d.astype(np.float64) @ a.astype(np.float64))
        assert np.array_equal(d[::-1] @ a, (d @ a)[::-1])
        if var is not None:
            assert np.array_equal(((d * d) @ var).astype(np.float64), (d * d).astype(np.float64) @ var.astype(np.float64))


def test_exact_grid_rounds_to_the_nearest_point_and_leaves_coarse_grids_alone():
    v = [np.array([0.0, 1.0, 3.0, 2.5 + 2.0 ** -20, -0.1]), None]
    out = exact_grid(v, rows=128, term_max=1.0, dt=np.float32)          # m = floor(24 - log2(128 * 3)) = 15
    assert out[1] is None
    assert np.array_equal(out[0], np.round(v[0] * 2.0 ** 15) / 2.0 ** 15)
    assert np.array_equal(out[0][:3], [0.0, 1.0, 3.0])                 # integer levels stay where they are
    wide = exact_grid(v, rows=128, term_max=2.0 ** 12, dt=np.float32)   # m = 3 < GRID_MIN_BITS: left as they are
    assert GRID_MIN_BITS > 3 and wide[0] is v[0]
    assert np.array_equal(exact_grid(v, rows=128, term_max=1.0, dt=np.float64)[0],
                          np.round(v[0] * 2.0 ** 44) / 2.0 ** 44)       # float64: 53 bits of room


def test_lookup_conductances_follow_drift_and_replacement():
    """at_time and set_conductances replace the looked-up conductances; the original tile is unchanged."""
    cell = ReRAM(prog_sigma_frac=0.0, relax_sigma_frac=0.02)
    W = np.random.default_rng(7).integers(-2 ** 15, 2 ** 15, (8, 20))
    xb = Crossbar(W, _spec(cell), seed=8)
    g0 = xb.g.copy()
    late = xb.at_time(1e4)
    assert not np.array_equal(late.g, g0) and np.array_equal(xb.g, g0)
    raw = _independent_a(late, late.g)
    m = _grid_bits(raw, late.spec.rows)
    assert np.abs(late.a[0] - raw[0]).max() <= 2.0 ** -(m + 1)          # drifted, then on the grid of exact sums
    assert np.array_equal(late.a[0], exact_grid(raw, late.spec.rows, 1.0, np.float32)[0])
    g1 = np.full_like(g0, cell.g_min_s)
    xb.set_conductances(g1)
    assert np.array_equal(xb.g, g1) and not np.any(xb.a[0])


@pytest.mark.parametrize("cell_bits,dtype", [(1, np.uint8), (8, np.uint8), (9, np.uint16)])
def test_levels_take_the_smallest_unsigned_type(cell_bits, dtype):
    W = np.random.default_rng(9).integers(-2 ** 15, 2 ** 15, (4, 10))
    xb = Crossbar(W, _spec(ReRAM(prog_sigma_frac=0.0), cell_bits=cell_bits), seed=1)
    assert xb.slices.levels.dtype == dtype
    assert np.array_equal(xb.slices.levels, slice_weights(W, 16, cell_bits, "offset").levels)


@pytest.mark.parametrize("kw", [dict(), dict(signed="differential", weight_bits=9, pair_readout=True, rows=32, cols=64),
                                dict(signed="twos", cell_bits=1, weight_bits=5, rows=64), dict(cell_bits=3, rows=100)])
def test_matrices_gathered_from_levels_equal_the_general_path(monkeypatch, kw):
    """Cells on their levels: the level matrices, read-noise variances and row sums of conductance gathered from the
    levels (Crossbar._prepare_on_levels) are the general path's arrays byte for byte (the row sums added in the same
    order), on ragged row blocks; with read noise the general path is taken."""
    rng = np.random.default_rng(8)
    spec = _spec(ReRAM(), **kw)
    half = 1 << (spec.weight_bits - 1)
    W = rng.integers(-half + (spec.signed == "differential"), half, size=(70, 300))
    got = []
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(Crossbar, "_prepare_on_levels", lambda *a: False)
        xb = Crossbar(W, spec, seed=3)
        assert xb._prepare_on_levels(*xb._level_step(), xb.gemm_dtype()) == fast
        got.append({k: [None if a is None else (a.dtype.str, a.shape, a.tobytes()) for a in getattr(xb, k)]
                    for k in ("a_gemm", "_a_wide", "var", "var_gemm", "g_rowsum", "ro_a_gemm", "_ro_a_wide",
                              "ro_var")})
    assert got[0] == got[1]
    monkeypatch.undo()
    noisy = Crossbar(W, _spec(ReRAM(read_sigma_frac=0.02), **kw), seed=3)
    assert noisy.var[0] is not None and not noisy._prepare_on_levels(0.0, 1.0, np.float32)
