"""The fused path's table product (CpuTile._table_blocks, cimsim.kernels_tables): where
one-bit digits multiply levels whose every partial sum float32 holds exactly (noisy levels on the grid of exact
sums, cimsim.crossbar.exact_grid), sums of 4-row tables give the float32 GEMM's column values in any order, so a
crossbar's outputs and events are the same bit for bit with the tables as with BLAS, read noise included."""

from dataclasses import replace

import numpy as np
import pytest

from cimsim import Crossbar, CrossbarSpec
from cimsim.crossbar_cpu import CpuTile
from cimsim.devices import ReRAM, SarADC
from cimsim.engine_threads import threads
from cimsim.kernels import stack_digits
from cimsim.kernels_tables import grid_exact, nibble_tables, table_rows


@pytest.fixture(autouse=True)
def _tables(monkeypatch):
    """These tests are about the tables: the AMX product (cimsim.kernels_amx, its own tests) stays off."""
    monkeypatch.setenv("CIMSIM_CPU_PRODUCT", "tables")


def _grid_levels(rng, rows, cols, bits=15):
    """Levels 0..3 with 5 % noise, on the grid 2**-bits (as exact_grid puts ISAAC's noisy levels)."""
    a = rng.integers(0, 4, (rows, cols)) + 0.05 * rng.standard_normal((rows, cols))
    return (np.round(a * 2.0 ** bits) / 2.0 ** bits).astype(np.float32)


@pytest.mark.parametrize("rows,cols,k0", [(128, 512, 0), (100, 520, 37), (3, 300, 5)])
def test_table_rows_are_the_float32_product_bit_for_bit(rows, cols, k0):
    """Row blocks of 128, 100 (not a multiple of 16: padded groups) and 3 rows; 520 columns (two column chunks);
    a slab boundary inside a cycle; the digits' statistics (read-noise variance per stacked row, squares per row,
    non-zero count) as the stacked digits give them."""
    rng = np.random.default_rng(rows + cols)
    a = _grid_levels(rng, rows, cols)
    assert grid_exact(a, rows)
    nb, T, b0 = 45, 8, 3
    u = rng.integers(0, 256, (nb + 5, k0 + rows + 4))
    shifts = np.arange(T)
    out = np.full((T * nb, cols), np.nan, dtype=np.float32)
    tables = nibble_tables(a)
    var = rng.random(rows) * 1e-3
    rowvar, sqsum, nz = np.full(T * nb, np.nan), np.zeros(rows, dtype=np.int64), 0
    for r0 in range(0, T * nb, 100):
        r1 = min(r0 + 100, T * nb)
        nz += table_rows(u, b0, nb, k0, k0 + rows, shifts, tables, r0, r1, out[r0:r1], True, var, True,
                         rowvar, sqsum)
    digits = np.concatenate([(u[b0:b0 + nb, k0:k0 + rows] >> t) & 1 for t in range(T)]).astype(np.float32)
    np.testing.assert_array_equal(out, digits @ a)
    # the digits' statistics as stack_digits gives them: the same float64 sums, bit for bit
    xs = np.empty((T * nb, rows), dtype=np.float32)
    sq_ref = np.zeros(rows, dtype=np.int64)
    rv_ref, nz_ref = stack_digits(u, b0, b0 + nb, k0, k0 + rows, shifts, np.ones(T, dtype=np.int64), xs, var, sq_ref)
    np.testing.assert_array_equal(xs, digits)
    assert nz == nz_ref
    np.testing.assert_array_equal(sqsum, sq_ref)
    np.testing.assert_array_equal(rowvar.view(np.int64), rv_ref.view(np.int64))


@pytest.mark.parametrize("v", [2.0 ** -12, 0.1, 3e-4])
def test_one_variance_per_block_gives_the_rows_sums(v):
    """One read-noise variance in every row (ISAAC's cells): a row's sum is its count of 1 digits times it where that
    product equals the sum in row order for every count (2**-12), else the sum in row order (0.1 and 3e-4, whose
    repeated sums round): either way the float64 numbers of stack_digits, bit for bit."""
    rng = np.random.default_rng(4)
    rows, cols, nb, T = 128, 64, 20, 8
    a = _grid_levels(rng, rows, cols)
    u = rng.integers(0, 256, (nb, rows))
    shifts = np.arange(T)
    var = np.full(rows, v)
    out = np.empty((T * nb, cols), dtype=np.float32)
    rowvar, sqsum = np.full(T * nb, np.nan), np.zeros(rows, dtype=np.int64)
    nz = table_rows(u, 0, nb, 0, rows, shifts, nibble_tables(a), 0, T * nb, out, True, var, True, rowvar, sqsum)
    xs = np.empty((T * nb, rows), dtype=np.float32)
    sq_ref = np.zeros(rows, dtype=np.int64)
    rv_ref, nz_ref = stack_digits(u, 0, nb, 0, rows, shifts, np.ones(T, dtype=np.int64), xs, var, sq_ref)
    assert nz == nz_ref
    np.testing.assert_array_equal(sqsum, sq_ref)
    np.testing.assert_array_equal(rowvar.view(np.int64), rv_ref.view(np.int64))
    if v == 0.1:   # the repeated sum does round here: the count's product would not be the same number
        assert sum([0.1] * 64) != 64 * 0.1


def test_grid_exact_needs_a_grid_and_headroom():
    rng = np.random.default_rng(0)
    assert grid_exact(_grid_levels(rng, 128, 64), 128)                      # ISAAC's grid: 128 x 3.2 x 2**15 < 2**24
    assert not grid_exact(_grid_levels(rng, 128, 64, bits=17), 128)         # a grid too fine for 128 rows
    assert not grid_exact(rng.random((128, 64)).astype(np.float32), 128)     # off any grid
    assert grid_exact(np.zeros((4, 4), np.float32), 4)


def _isaac(prog, read, signed=False):
    return CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=16, input_bits=16, dac_bits=1, signed="offset",
                        input_signed=signed, cell=ReRAM(prog_sigma_frac=prog, read_sigma_frac=read),
                        readout=SarADC(bits=8), adc_range="calibrated")


@pytest.mark.parametrize("prog,read,signed", [(0.05, 0.02, False), (0.05, 0.0, False), (0.05, 0.02, True)])
def test_a_noisy_crossbar_gives_the_same_numbers_with_the_tables(monkeypatch, prog, read, signed):
    """ISAAC's tile with programming and read noise (300 inputs: two full row blocks and a 44-row one; 40 outputs x
    8 slices = 320 columns, over the tables' minimum): outputs of two calls and the ledger equal with the tables on
    and off, and the tables taken on every block."""
    rng = np.random.default_rng(11)
    W = rng.integers(-2 ** 15, 2 ** 15, size=(40, 300))
    lo, hi = (-2 ** 15, 2 ** 15) if signed else (0, 2 ** 16)
    x = rng.integers(lo, hi, size=(37, 300))
    out = []
    for tables in (True, False):
        monkeypatch.setattr(CpuTile, "TABLES", tables)
        xb = Crossbar(W, _isaac(prog, read, signed), seed=5, name="l")
        xb.calibrate(x[:20])
        y1, y2 = xb(x), xb(x[:19])
        out.append((y1, y2, xb.ledger.to_dict(),
                    xb._cpu._tables_ok))
    (a1, a2, la, ok_on), (b1, b2, lb, _) = out
    assert ok_on == [True, True, True]
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert la == lb


def test_the_tables_give_the_same_numbers_on_any_number_of_threads(monkeypatch):
    """Shards of one example on 1, 2 and 8 threads share one call's tables: the outputs equal BLAS's on one thread."""
    from cimsim import crossbar_cpu

    rng = np.random.default_rng(4)
    W = rng.integers(-2 ** 15, 2 ** 15, size=(40, 200))
    x = rng.integers(0, 2 ** 16, size=(9, 200))
    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_MACS", 1)
    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_ROWS", 1)
    runs = {}
    for tables, n in ((False, 1), (True, 1), (True, 2), (True, 8)):
        monkeypatch.setattr(CpuTile, "TABLES", tables)
        monkeypatch.setenv("CIMSIM_THREADS", str(n))
        xb = Crossbar(W, _isaac(0.05, 0.02), seed=9, name="l")
        xb.calibrate(x)
        runs[tables, n] = xb(x)
        assert (xb._cpu._tables_ok or [False, False]) == [tables, tables]   # off: never consulted
    for key, y in runs.items():
        np.testing.assert_array_equal(y, runs[False, 1], err_msg=str(key))


@pytest.mark.parametrize("read,signed,chunk", [(0.02, False, 1024), (0.0, True, 1024), (0.02, False, 8)])
def test_whole_shards_in_one_kernel_give_the_block_loops_numbers(monkeypatch, read, signed, chunk):
    """Where every row block takes the tables, each thread takes the shards in one kernel
    (kernels_tables.share_tables, which writes the shards' outputs and counts); the loop over blocks in Python (tables
    per block, chunk by chunk) gives the same outputs and ledger, and the one kernel did run: one launch for every
    chunk's shards (29 examples in chunks of 8: four chunks)."""
    from cimsim import crossbar_cpu, kernels_tables

    rng = np.random.default_rng(12)
    W = rng.integers(-2 ** 15, 2 ** 15, size=(40, 300))
    lo, hi = (-2 ** 15, 2 ** 15) if signed else (0, 2 ** 16)
    x = rng.integers(lo, hi, size=(29, 300))
    calls = []
    real = kernels_tables.share_tables
    monkeypatch.setattr(kernels_tables, "share_tables", lambda *a: calls.append(len(a[1]) - 1) or real(*a))
    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_ROWS", 64)       # several shards
    out = []
    for whole in (True, False):
        if not whole:
            monkeypatch.setattr(crossbar_cpu, "kept_table_stack", lambda a, ok: None)
        xb = Crossbar(W, replace(_isaac(0.05, read, signed), batch_chunk=chunk), seed=3, name="l")
        xb.calibrate(x[:16])
        calls.clear()
        out.append((xb(x), xb.ledger.to_dict()))
        if whole:
            assert max(calls) > 2 and xb._cpu._tables_ok == [True, True, True]   # several shards
            # one launch: a kernel per thread, each offered every shard of every chunk (four chunks of at most 8)
            assert len(set(calls)) == 1 and len(calls) == min(threads(), calls[0]) and (chunk > 29 or calls[0] >= 4)
            calls.clear()
    assert not calls                                               # the block loop: no whole-shard kernel
    np.testing.assert_array_equal(out[0][0], out[1][0])
    assert out[0][1] == out[1][1]


def test_table_stacks_are_kept_between_calls_within_their_budget(monkeypatch):
    """A crossbar's table stack is built once and kept (the same array in its next call, read-only), a crossbar
    programmed again gets its own, the least recently used are dropped beyond TABLE_CACHE_BYTES, and the outputs
    are the numbers of stacks built for every call."""
    from cimsim import crossbar_cpu, kernels_tables

    rng = np.random.default_rng(21)
    W = rng.integers(-2 ** 15, 2 ** 15, size=(40, 300))
    x = rng.integers(0, 2 ** 16, size=(29, 300))
    built = []
    real = kernels_tables.call_table_stack
    monkeypatch.setattr(kernels_tables, "call_table_stack", lambda a, ok: built.append(id(a)) or real(a, ok))
    seen = []
    keep = kernels_tables.kept_table_stack
    monkeypatch.setattr(crossbar_cpu, "kept_table_stack", lambda a, ok: seen.append(keep(a, ok)) or seen[-1])

    def two_calls():
        xb = Crossbar(W, _isaac(0.05, 0.02, False), seed=3, name="l")
        xb.calibrate(x[:16])
        return xb, [xb(x), xb(x)]

    kernels_tables._STACKS.clear()
    xb, kept = two_calls()
    assert len(built) == 1 and seen[0] is seen[1] and not seen[0].flags.writeable
    assert kernels_tables.kept_table_bytes() == seen[0].nbytes
    monkeypatch.setattr(kernels_tables, "TABLE_CACHE_BYTES", seen[0].nbytes)   # room for one
    later = xb.at_time(10.0)                                       # new levels: its own stack, the older dropped
    later(x)
    assert len(built) == 2 and seen[-1] is not seen[0] and kernels_tables.kept_table_bytes() == seen[0].nbytes
    xb(x)                                                          # built again (and the other dropped)
    assert len(built) == 3 and kernels_tables.kept_table_bytes() == seen[0].nbytes
    monkeypatch.setattr(kernels_tables, "TABLE_CACHE_BYTES", 0)   # nothing kept: built in every call
    kernels_tables._STACKS.clear()
    n = len(built)
    _, fresh = two_calls()
    assert len(built) == n + 2 and kernels_tables.kept_table_bytes() == 0
    for a, b in zip(kept, fresh):
        np.testing.assert_array_equal(a, b)


def test_a_batch_of_several_chunks_counts_as_blas_does(monkeypatch):
    """Every chunk's shards in one launch (the tables' shares) add their tallies shard by shard, in order, as the
    BLAS path's chunk loop does: the same ledger to the last bit for a batch of five chunks (the conductance sums of
    many shards, where another grouping of the same float additions moves the last bit), and the same outputs."""
    from cimsim import crossbar_cpu

    rng = np.random.default_rng(30)
    W = rng.integers(-2 ** 15, 2 ** 15, size=(40, 300))
    x = rng.integers(0, 2 ** 16, size=(300, 300))
    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_ROWS", 64)       # several shards a chunk
    out = {}
    for tables in (True, False):
        monkeypatch.setattr(CpuTile, "TABLES", tables)
        xb = Crossbar(W, replace(_isaac(0.05, 0.02), batch_chunk=64), seed=4, name="l")
        xb.calibrate(x[:32])
        out[tables] = (xb(x), xb(x[:70]), xb.ledger.to_dict(), xb._cpu.last_product)
    assert out[True][3] in ("tables", "amx") and out[False][3] is None
    np.testing.assert_array_equal(out[True][0], out[False][0])
    np.testing.assert_array_equal(out[True][1], out[False][1])
    assert out[True][2] == out[False][2]
