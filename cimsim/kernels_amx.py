"""The CPU fused path's product on AMX tiles (Intel's Sapphire Rapids and later), fused with its epilogue.

Where the one-bit digits' product may come from tables (:mod:`cimsim.kernels_tables`: levels on a grid ``2**-m``
whose every partial sum float32 holds exactly), the same column values come from integer products: a row block's
levels times ``2**m`` are integers L with ``rows x max|L| < 2**24``, cut into 7-bit parts (the low ones 0..127, the
top one signed), ``L = sum_p 2**(7 p) P_p``. The digits d (bytes 0/1) and 128 d side by side, times the parts paired
into signed-byte weights (:func:`part_weights`), are one u8 x s8 product with int32 sums (AMX's ``tdpbusd``) whose
group g holds ``sum d (P_2g + 128 P_2g+1)``: below 2**24 in magnitude (the low group at most rows x 2**14, with
rows < 2**10 wherever there is a higher one; the top one at most rows x max|L| / 2**(14 g)), so each is exact as
float32; times ``2**(14 g - m)`` (a power of two: exact) and the groups added in order, every partial sum an integer
number of grid steps below 2**24, the column values equal the tables' (and the float32 GEMM's) bit for bit. One
kernel per shard cuts the digits of a slab of stacked rows, multiplies them on the tiles (2 x 2 tiles of 16 x 16
int32 sums, 32 rows at a time) and runs the epilogue of :func:`cimsim.kernels.adc_rows` (read noise, ADC,
shift-and-add) on those rows in the same order: the outputs, draws and tallies are the same numbers.

Taken where the CPU reports AMX int8 tiles and Linux grants their state to this process (``arch_prctl``), unless
``$CIMSIM_CPU_PRODUCT=tables``; ``amx`` insists (an error where it cannot run). Numba reaches the tile instructions
through LLVM inline assembly (compiled on first use only, so CPUs without AMX never assemble them). Measured:
BENCHMARKS.md, "The fused path's product on AMX tiles".
"""

from __future__ import annotations

import ctypes
import platform
import threading
from collections import OrderedDict
from functools import lru_cache

import numpy as np

from cimsim import numba_target
from cimsim.engine_threads import cpu_product
from cimsim.errors import ConfigError
from cimsim.fileio import numba_cache_fallback
from cimsim.kernels import draw_batch, fill_normals_at, make_draw_buffers, row_batch
from cimsim.kernels_shares import finish_shard, most_examples, next_shard

numba_cache_fallback()   # before numba loads (see cimsim.kernels)
numba_target.configure()   # 512-bit vectors where the CPU has AVX-512 (cimsim.numba_target)
import llvmlite.binding as llvm  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import njit, types  # noqa: E402
from numba.core.extending import intrinsic  # noqa: E402

llvm.initialize_native_asmparser()   # numba's LLVM assembles inline assembly only with the target's parser loaded

PART_BITS = 7            # a part's magnitude bits: the low parts 0..127, the top one a signed byte
MAX_PARTS = 4            # levels of at most 28 bits
STRIP = 32               # stacked rows per product: two A tiles of 16 rows
K_TILE = 64              # bytes of digits per tile row (64 one-byte digits)
COL_PAIR = 32            # output columns per product step: two C tiles of 16 int32 columns

_ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA, _SYS_ARCH_PRCTL = 0x1023, 18, 158   # Linux x86-64 (arch/x86/include)


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """This CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether AMX int8 tiles run here: Linux on x86-64, the CPU's ``amx_tile`` and ``amx_int8`` flags, Linux's
    permission for the tile state (asked once for the process), and a small product on the tiles equal to numpy's."""
    if platform.system() != "Linux" or platform.machine() != "x86_64" or not {"amx_tile", "amx_int8"} <= cpu_flags():
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) != 0:
            return False
        rng = np.random.default_rng(0)
        d = rng.integers(0, 2, size=(40, 70)).astype(np.uint8)
        w = rng.integers(-128, 128, size=(70, 50)).astype(np.int8)
        return bool(np.array_equal(tile_product(d, w), d.astype(np.int64) @ w.astype(np.int64)))
    except Exception:   # an assembler or kernel that refuses: the tables serve instead
        return False


def wanted() -> bool:
    """Whether the fused path should take this module's product (:func:`cimsim.engine_threads.cpu_product`)."""
    how = cpu_product()
    if how == "tables":
        return False
    if how == "amx":
        if not available():
            raise ConfigError("CIMSIM_CPU_PRODUCT=amx, but this CPU or system does not run AMX int8 tiles; unset it "
                              "(the tables serve)")
        return True
    return available()


def level_integers(a: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """A row block's float32 levels ``a`` (rows x cols) as integers L = ``a`` x 2**m on the coarsest grid that holds
    them, with the number of 7-bit parts they need (:data:`PART_BITS`: the low parts 0..127, the top one signed):
    ``(L, m, parts)``; None where no grid keeps the sums of ``a.shape[0]`` values below 2**24 steps (the condition
    of :func:`cimsim.kernels_tables.grid_exact`) or L needs more than :data:`MAX_PARTS` parts."""
    a64 = np.asarray(a, dtype=np.float64)
    vmax = float(np.abs(a64).max(initial=0.0))
    m = 0
    if vmax > 0.0:
        for m in range(0, 25):
            if a64.shape[0] * vmax * 2.0 ** m >= 2.0 ** 24:
                return None
            s = np.ldexp(a64, m)
            if np.array_equal(s, np.rint(s)):
                break
        else:
            return None
    L = np.rint(np.ldexp(a64, m)).astype(np.int64)
    parts = 1
    while not (-(1 << (PART_BITS * parts)) <= L.min(initial=0) and L.max(initial=0) < (1 << (PART_BITS * parts))):
        parts += 1
    return (L, m, parts) if parts <= MAX_PARTS else None


def part_weights(L: np.ndarray, m: int, parts: int, rows: int, doubled: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """The signed-byte weights of one product with the digits ``[d, 128 d]`` (``doubled``; else ``d``,
    which serves one part): the parts P_p of L (``L = sum_p 2**(7 p) P_p``) paired into groups, ``w[:rows, g] =
    P_2g`` and ``w[rows:, g] = P_2g+1`` (zeros where there is none), so group g sums ``d (P_2g + 128 P_2g+1)``.
    Returns ``(w (rows or 2 rows, groups * cols), each column's float32 scale 2**(14 g - m), groups)``; rows beyond
    L's are zeros."""
    k, cols = L.shape
    groups = -(-parts // 2)
    w = np.zeros((2 * rows if doubled else rows, groups * cols), dtype=np.int8)
    for p in range(parts):
        piece = L >> (PART_BITS * p)
        if p < parts - 1:
            piece = piece & ((1 << PART_BITS) - 1)
        r0, c0 = rows * (p % 2), cols * (p // 2)
        w[r0:r0 + k, c0:c0 + cols] = piece
    scale = np.repeat(np.ldexp(1.0, 2 * PART_BITS * np.arange(groups) - m), cols).astype(np.float32)
    return w, scale, groups


# ---------------------------------------------------------------- the tile instructions (LLVM inline assembly)
def _asm(text: str, n_args: int):
    """A numba intrinsic that emits ``text`` (AT&T syntax, operands $0.. as int64 registers) with side effects."""
    def codegen(context, builder, signature, args):
        fty = ir.FunctionType(ir.VoidType(), [a.type for a in args])
        builder.asm(fty, text, ",".join(["r"] * n_args + ["~{memory}"]), list(args), side_effect=True)
        return context.get_dummy_value()

    def typer(typingctx, *args):
        return types.void(*([types.int64] * n_args)), codegen

    # numba's intrinsic needs a fixed signature: one wrapper per arity
    if n_args == 0:
        return intrinsic(lambda typingctx: typer(typingctx))
    if n_args == 1:
        return intrinsic(lambda typingctx, a: typer(typingctx, a))
    if n_args == 5:
        return intrinsic(lambda typingctx, a, b, c, d, e: typer(typingctx, a, b, c, d, e))
    if n_args == 6:
        return intrinsic(lambda typingctx, a, b, c, d, e, f: typer(typingctx, a, b, c, d, e, f))
    raise ValueError(f"no intrinsic wrapper for {n_args} operands")


_load_config = _asm("ldtilecfg ($0)", 1)
_release = _asm("tilerelease", 0)
_zero = _asm("tilezero %tmm4\n\ttilezero %tmm5\n\ttilezero %tmm6\n\ttilezero %tmm7", 0)
# one step of 64 digits: A tiles (rows 0-15, 16-31) in tmm0/tmm1, B tiles (columns 0-15, 16-31) in tmm2/tmm3, and
# the 2 x 2 sums C[a][b] in tmm4 + 2 a + b; $0, $1: the two A tiles, $2: their row stride, $3, $4: the B tiles,
# $5: their row stride (64)
_step = _asm("tileloadd ($0,$2,1), %tmm0\n\ttileloadd ($1,$2,1), %tmm1\n\t"
             "tileloadd ($3,$5,1), %tmm2\n\ttileloadd ($4,$5,1), %tmm3\n\t"
             "tdpbusd %tmm2, %tmm0, %tmm4\n\ttdpbusd %tmm3, %tmm0, %tmm5\n\t"
             "tdpbusd %tmm2, %tmm1, %tmm6\n\ttdpbusd %tmm3, %tmm1, %tmm7", 6)
# the four sums to C (int32): $0 .. $3 = the addresses of C[0][0], C[0][1], C[1][0], C[1][1], $4 = C's row stride
_store = _asm("tilestored %tmm4, ($0,$4,1)\n\ttilestored %tmm5, ($1,$4,1)\n\t"
              "tilestored %tmm6, ($2,$4,1)\n\ttilestored %tmm7, ($3,$4,1)", 5)


def tile_config() -> np.ndarray:
    """The 64-byte tile configuration (palette 1): eight tiles of 16 rows x 64 bytes."""
    cfg = np.zeros(64, dtype=np.uint8)
    cfg[0] = 1
    cfg[16:32].view(np.uint16)[:8] = K_TILE
    cfg[48:56] = 16
    return cfg


def pack_weights(w: np.ndarray) -> np.ndarray:
    """Signed-byte weights (K x N) as the B tiles the kernel reads: K padded to a multiple of 64 and N to a multiple
    of 32 with zeros, then (N / 16 column tiles, K / 64 steps, 16 rows, 64 bytes), a tile row holding 16 columns x
    4 consecutive k (the ``tdpbusd`` layout)."""
    k, n = w.shape
    kp, npad = -(-k // K_TILE) * K_TILE, -(-n // COL_PAIR) * COL_PAIR
    full = np.zeros((kp, npad), dtype=np.int8)
    full[:k, :n] = w
    # (kc, 16 rows, 4 k, column tile, 16 columns) -> (column tile, kc, 16 rows, 16 columns, 4 k)
    tiles = full.reshape(kp // K_TILE, 16, 4, npad // 16, 16).transpose(3, 0, 1, 4, 2)
    return np.ascontiguousarray(tiles).reshape(npad // 16, kp // K_TILE, 16, K_TILE)


@njit(nogil=True, cache=True)
def _strip_product(cfg, a, bpack, c):
    """c (32 x tiles*16 int32) = a (32 x K u8, K a multiple of 64) times the packed weights (:func:`pack_weights`)."""
    ct, kc = bpack.shape[0], bpack.shape[1]
    _load_config(cfg.ctypes.data)
    astride = a.strides[0]
    a0 = a.ctypes.data
    a1 = a0 + 16 * astride
    cstride = c.strides[0]
    for t in range(0, ct, 2):
        _zero()
        for s in range(kc):
            _step(a0 + s * K_TILE, a1 + s * K_TILE, astride, bpack[t, s].ctypes.data, bpack[t + 1, s].ctypes.data,
                  K_TILE)
        c00 = c[0, 16 * t:].ctypes.data
        _store(c00, c00 + 64, c00 + 16 * cstride, c00 + 16 * cstride + 64, cstride)
    _release()


def tile_product(d: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``d @ w`` for bytes 0..255 ``d`` (M x K) and signed bytes ``w`` (K x N) on the tiles, int32 (M x N): the
    kernel's product, exposed for the checks (:func:`available`, the tests)."""
    m, k = d.shape
    n = w.shape[1]
    bpack = pack_weights(w)
    kp = bpack.shape[1] * K_TILE
    out = np.empty((m, n), dtype=np.int32)
    cfg = tile_config()
    for r0 in range(0, m, STRIP):
        a = np.zeros((STRIP, kp), dtype=np.uint8)
        a[: min(STRIP, m - r0), :k] = d[r0:r0 + STRIP]
        c = np.empty((STRIP, bpack.shape[0] * 16), dtype=np.int32)
        _strip_product(cfg, a, bpack, c)
        out[r0:r0 + STRIP] = c[: min(STRIP, m - r0), :n]
    return out


# ---------------------------------------------------------------- the fused path's shards
class TileBlocks:
    """A crossbar's row blocks prepared for the tiles: per block the packed weights (:func:`part_weights`,
    :func:`pack_weights`) in one array (blocks, column tiles, steps, 16, 64), each group's float32 scale
    (blocks, groups), the group count, and per pair of column tiles the steps of 64 digits it needs (all; half where
    its groups have no odd part, whose digits 128 d multiply zeros; none beyond the block's groups); ``rows`` = the
    longest block padded to 64 (shorter blocks' digits and weights are zeros beyond their rows), ``doubled``: whether
    the digits come as ``[d, 128 d]``."""

    def __init__(self, bpack: np.ndarray, scales: np.ndarray, groups: np.ndarray, steps: np.ndarray, rows: int,
                 cols: int, doubled: bool):
        self.bpack, self.scales, self.groups, self.steps = bpack, scales, groups, steps
        self.rows, self.cols, self.doubled = rows, cols, doubled
        self.nbytes = bpack.nbytes + scales.nbytes + groups.nbytes + steps.nbytes
        self.call = None    # the arrays of the call running now (share_tiles_args)

    @classmethod
    def build(cls, a_blocks: list[np.ndarray]) -> "TileBlocks | None":
        if not a_blocks or len({a.shape[1] for a in a_blocks}) != 1:
            return None
        ints = [level_integers(a) for a in a_blocks]
        if any(c is None for c in ints):
            return None
        rows = -(-max(a.shape[0] for a in a_blocks) // K_TILE) * K_TILE
        cols = a_blocks[0].shape[1]
        doubled = max(c[2] for c in ints) > 1
        most = max(-(-c[2] // 2) for c in ints)
        pairs = -(-most * cols // COL_PAIR)
        full_steps = (2 * rows if doubled else rows) // K_TILE
        packs, scales = [], np.ones((len(ints), most), dtype=np.float32)
        groups, steps = np.zeros(len(ints), dtype=np.int64), np.zeros((len(ints), pairs), dtype=np.int64)
        for i, (L, m, parts) in enumerate(ints):
            w, sc, g = part_weights(L, m, parts, rows, doubled)
            full = np.zeros((w.shape[0], most * cols), dtype=np.int8)   # every block as many groups (zeros)
            full[:, : w.shape[1]] = w
            packs.append(pack_weights(full))
            scales[i, :g] = sc[::cols]
            groups[i] = g
            for p in range(pairs):
                touched = range(COL_PAIR * p // cols, min(g, -(-COL_PAIR * (p + 1) // cols)))
                if len(touched):
                    odd = any(2 * gg + 1 < parts for gg in touched)
                    steps[i, p] = full_steps if odd or not doubled else full_steps // 2
        return cls(np.stack(packs), scales, groups, steps, rows, cols, doubled)


# the prepared blocks of the crossbars called last, as cimsim.kernels_tables keeps its tables (keyed by the level
# list, which is replaced, never changed in place, when a crossbar is programmed again); the standard case's are
# 2.4 MB
CACHE_BYTES = 128 << 20
_KEPT: OrderedDict = OrderedDict()
_KEPT_LOCK = threading.Lock()


def kept_blocks(a_blocks: list[np.ndarray]) -> TileBlocks | None:
    """:meth:`TileBlocks.build` of ``a_blocks`` (a crossbar's ``a_gemm``), kept between calls within
    :data:`CACHE_BYTES`; None where a block's levels cannot be cut into exact parts (that answer kept too)."""
    key = id(a_blocks)
    with _KEPT_LOCK:
        hit = _KEPT.get(key)
        if hit is not None and hit[0] is a_blocks:
            _KEPT.move_to_end(key)
            return hit[1]
    prep = TileBlocks.build(a_blocks)
    size = 0 if prep is None else prep.nbytes
    if size <= CACHE_BYTES:
        if prep is not None:
            prep.bpack.setflags(write=False)
        with _KEPT_LOCK:
            _KEPT[key] = (a_blocks, prep)
            total = sum(_size(v[1]) for v in _KEPT.values())
            while total > CACHE_BYTES:
                _, old = _KEPT.popitem(last=False)
                total -= _size(old[1])
    return prep


def _size(prep: TileBlocks | None) -> int:
    return 0 if prep is None else prep.nbytes


# stacked rows per product pass (our choice): larger slabs reuse each pair of weight tiles for more strips, but their
# sums outgrow L1 (the product alone, one thread: 7.1 / 10.4 / 10.8 us a strip of the standard case at 32 / 128 / 256
# rows); whole standard calls on this project's 2 cores: 32 / 64 / 128 rows 49.6-51.5 / 48.0-48.4 / 50.8-52.8 ms
SLAB = 64


@njit(nogil=True, cache=True)
def _slab_digits(u, b0, nb, k0, rows, shifts, s0, m, doubled, var_i, uni, v0, noisy, abuf, rowvar, sqsum_i):
    """Rows s0 .. s0 + m of block (k0, rows): the digits as bytes in ``abuf`` (and 128 times them at its second half
    with ``doubled``; rows m .. of the last strip zero), each row's read-noise variance sum in ``rowvar`` as
    :func:`cimsim.kernels_tables.table_rows` counts it; returns the count of 1 digits."""
    half = abuf.shape[1] // 2
    nonzero = 0
    for j in range(m):
        rr = s0 + j
        t = rr // nb
        b = b0 + rr - t * nb
        sh = shifts[t]
        d = abuf[j]
        cnt = 0
        for k in range(rows):
            bit = (u[b, k0 + k] >> sh) & 1
            d[k] = bit
            cnt += bit
            sqsum_i[k] += bit
        if doubled:
            for k in range(rows):
                d[half + k] = d[k] << 7
        nonzero += cnt
        rv = 0.0
        if uni:
            rv = cnt * v0
        elif noisy:                  # in row order; a 0 digit adds +0.0
            for k in range(rows):
                rv += var_i[k] * d[k]
        rowvar[j] = rv
    for j in range(m, -(-m // STRIP) * STRIP):
        abuf[j, :] = 0
    return nonzero


@njit(nogil=True, cache=True)
def _slab_product(abuf, m, bpack_i, steps_i, cbuf):
    """cbuf[:m'] (int32) = the digits ``abuf`` times block i's packed weights, strip by strip (m' = m rounded up to
    :data:`STRIP`), each pair of weight tiles loaded for every strip of the slab while it is in cache."""
    kc = bpack_i.shape[1]
    astride, cstride = abuf.strides[0], cbuf.strides[0]
    tile_bytes = kc * 16 * K_TILE
    base, a_base, c_base = bpack_i.ctypes.data, abuf.ctypes.data, cbuf.ctypes.data   # addresses taken once
    for p in range(steps_i.shape[0]):
        n_steps = steps_i[p]
        if n_steps == 0:
            continue
        bt = base + 2 * p * tile_bytes
        for s0 in range(0, m, STRIP):
            a0 = a_base + s0 * astride
            _zero()
            for s in range(n_steps):
                _step(a0 + s * K_TILE, a0 + 16 * astride + s * K_TILE, astride, bt + s * 16 * K_TILE,
                      bt + tile_bytes + s * 16 * K_TILE, K_TILE)
            cc = c_base + s0 * cstride + 4 * COL_PAIR * p
            _store(cc, cc + 64, cc + 16 * cstride, cc + 16 * cstride + 64, cstride)


@njit(nogil=True, cache=True)
def _slab_adc(cbuf, m, g_i, scales_i, cols, rowvar, noisy, s0, nb, pw, lo, lsb, top, key, gamma, e0, T, R,
              blk, acc, z, vrow, r, ph, q, zc, zs, ctrs, cw):
    """:func:`cimsim.kernels.adc_rows` on rows s0 .. s0 + m of block ``blk``, each row's column values made first
    (into ``vrow``, float32): its groups' int32 sums as float32 times their scales, added in group order (exact);
    the same numbers, draws and clipped count as that kernel on those
    values (the same loop)."""
    inv = 1.0 / lsb      # lsb is a power of two: multiplying by its inverse is exact
    words = cols + (cols & 1)
    batch, pairs = ctrs.shape[0], words // 2
    clipped = 0
    for i in range(m):   # 2-d indexing, no row views: a view per row cost as much as a narrow row's conversions
        g = s0 + i
        t = g // nb
        b = g - t * nb
        w = pw[t]
        sc = scales_i[0]
        if g_i == 2:                 # the common case (ISAAC's noisy levels: three parts), in one pass
            sc1 = scales_i[1]
            for j in range(cols):
                vrow[j] = np.float32(cbuf[i, j]) * sc + np.float32(cbuf[i, cols + j]) * sc1
        else:
            for j in range(cols):
                vrow[j] = np.float32(cbuf[i, j]) * sc
            for gg in range(1, g_i):
                sc = scales_i[gg]
                for j in range(cols):
                    vrow[j] += np.float32(cbuf[i, gg * cols + j]) * sc
        if noisy:    # adc_rows' loop (a shared per-row function measured 10-15 % slower: not inlined)
            if batch:
                k = i % batch
                if k == 0:
                    draw_batch(zc, zs, ctrs, cw, i, min(batch, m - i), s0, nb, T, R, blk, e0, key, gamma, words, r,
                               ph, q)
                kp = k * pairs
                for j in range(pairs):
                    z[j] = zc[kp + j]
                    z[pairs + j] = zs[kp + j]
            else:
                row = (np.uint64(e0 + b) * np.uint64(T) + np.uint64(t)) * np.uint64(R) + np.uint64(blk)
                fill_normals_at(z, key, gamma, row * np.uint64(words), r, ph, q)
            sd = float(np.sqrt(rowvar[i]))
            for j in range(cols):
                raw = np.floor((float(vrow[j]) + sd * z[j] - lo) * inv + 0.5)
                clipped += (raw < 0.0) | (raw > top)
                acc[b, j] += w * (lo + min(max(raw, 0.0), top) * lsb)
        else:
            for j in range(cols):
                raw = np.floor((float(vrow[j]) - lo) * inv + 0.5)
                clipped += (raw < 0.0) | (raw > top)
                acc[b, j] += w * (lo + min(max(raw, 0.0), top) * lsb)
    return clipped


@njit(nogil=True, cache=True)
def _shard_tiles(u, b0, nb, k0s, k1s, shifts, cfg, bpack, scales, groups, steps, cols, doubled, var, noisy,
                 pw, lo, lsb, top, key, gamma, acc, abuf, cbuf, rowvar, sqsum, r, ph, q):
    """One shard (examples b0 .. b0 + nb) of :func:`share_tiles` into ``acc`` and ``sqsum`` (zeros on entry; ``abuf``
    zeros, ``cbuf`` any): returns (non-zero digits, clipped conversions)."""
    R, T = k0s.shape[0], shifts.shape[0]
    n = T * nb
    slab = abuf.shape[0]
    z = np.empty(cols + (cols & 1), np.float32)
    vrow = np.empty(cols, np.float32)
    batch = row_batch(cols) if noisy else 0    # rows whose draws are made at once (kernels.draw_batch)
    zc, zs = np.empty(batch * (z.size // 2), np.float32), np.empty(batch * (z.size // 2), np.float32)
    ctrs, cw = np.empty(batch, np.uint64), np.empty(r.size if batch else 0, np.uint64)
    nonzero, clipped = 0, 0
    _load_config(cfg.ctypes.data)
    for i in range(R):
        k0, rows = k0s[i], k1s[i] - k0s[i]
        uni = noisy and rows > 0     # one variance in every row, adding it c times giving c times it (as table_rows)
        v0 = var[i, 0] if uni else 0.0
        if uni:
            acc_v = 0.0
            for k in range(rows):
                acc_v += v0
                if var[i, k] != v0 or acc_v != (k + 1) * v0:
                    uni = False
                    break
        for s0 in range(0, n, slab):
            m = min(slab, n - s0)
            nonzero += _slab_digits(u, b0, nb, k0, rows, shifts, s0, m, doubled, var[i], uni, v0, noisy, abuf,
                                    rowvar, sqsum[i])
            _slab_product(abuf, m, bpack[i], steps[i], cbuf)
            clipped += _slab_adc(cbuf, m, groups[i], scales[i], cols, rowvar, noisy, s0, nb, pw, lo[i],
                                 lsb[i], top, key, gamma, b0, T, R, i, acc, z, vrow, r, ph, q, zc, zs, ctrs, cw)
    _release()
    return nonzero, clipped


@njit(nogil=True, cache=True)
def share_tiles(counter, edges, u, k0s, k1s, shifts, cfg, bpack, scales, groups, steps, cols, doubled,
                var, noisy, pw, lo, lsb, top, key, gamma, g, rw, n_out, offset, row_sums, with_offset, y, nz, cl, cond):
    """:func:`cimsim.kernels_tables.share_tables` with the product on the tiles (the arguments from ``u`` to
    ``gamma``: :func:`share_tiles_args`): a call's shards (examples ``edges[j] .. edges[j + 1]``) taken one by one
    from ``counter`` (:func:`cimsim.kernels_shares.take_next`) until none is left, each in one pass over its row
    blocks and slabs of :data:`SLAB` stacked rows (the digits cut, multiplied on the tiles, then the epilogue of
    :func:`cimsim.kernels.adc_rows` in the same order: the same numbers and counts as the tables), then their rows of
    ``y`` and counts (:func:`cimsim.kernels_shares.finish_shard`)."""
    R, T = k0s.shape[0], shifts.shape[0]
    nbmax = most_examples(edges)
    most = -(-min(SLAB, T * nbmax) // STRIP) * STRIP
    acc = np.empty((nbmax, cols))
    abuf = np.empty((most, bpack.shape[2] * K_TILE), np.uint8)
    cbuf = np.empty((most, bpack.shape[1] * 16 + 16), np.int32)
    rowvar = np.empty(most)
    sqsum = np.empty((R, var.shape[1]), np.int64)
    r, ph, q = make_draw_buffers(cols)
    while True:
        j, b0, nb = next_shard(counter, edges)
        if j < 0:
            break
        rows = -(-min(SLAB, T * nb) // STRIP) * STRIP
        a, ab, rv = acc[:nb], abuf[:rows], rowvar[:rows]
        a[:] = 0.0
        ab[:] = 0
        rv[:] = 0.0
        sqsum[:] = 0
        nz[j], cl[j] = _shard_tiles(u, b0, nb, k0s, k1s, shifts, cfg, bpack, scales, groups, steps, cols,
                                    doubled, var, noisy, pw, lo, lsb, top, key, gamma, a, ab, cbuf[:rows], rv, sqsum,
                                    r, ph, q)
        finish_shard(j, b0, a, sqsum, k0s, k1s, g, rw, n_out, offset, row_sums, with_offset, y, cond)


def share_tiles_args(prep: TileBlocks, u, blocks, shifts, pw: np.ndarray, var, ranges, top: float,
                     stream: tuple[int, int]) -> tuple:
    """:func:`share_tiles`' arguments from ``u`` to ``gamma`` for a call (``prep``: :func:`kept_blocks`; ``pw``: the
    cycles' place values, :func:`cimsim.encoding.plane_weights`; ``var``:
    :func:`cimsim.kernels_tables.stack_variances`)."""
    R = len(blocks)
    noisy = var is not None
    call = prep.call
    if call is None or call[0] is not ranges or not np.array_equal(call[4], pw):   # a call's chunks share these
        call = prep.call = (ranges, shifts, np.array([b[0] for b in blocks], dtype=np.int64),
                            np.array([b[1] for b in blocks], dtype=np.int64), np.asarray(pw, dtype=np.float64),
                            np.array([float(x[0]) for x in ranges]), np.array([float(x[1]) for x in ranges]))
    _, _, k0s, k1s, pw, lo, lsb = call
    return (u, k0s, k1s, shifts, _CONFIG, prep.bpack, prep.scales, prep.groups, prep.steps, prep.cols,
            prep.doubled, var if noisy else np.zeros((R, prep.rows)), noisy, pw, lo, lsb, float(top),
            np.uint64(stream[0]), np.uint64(stream[1]))


_CONFIG = tile_config()
