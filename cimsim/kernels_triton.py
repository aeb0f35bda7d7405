"""Triton kernels of the torch backend on a GPU (:mod:`cimsim.crossbar_torch`).

Four kernels, each one pass over memory where eager torch needs several:

* :func:`cut_planes`: integer inputs (batch, in) to the bit planes of a range of row blocks, laid out for the batched
  product ((blocks, cycles x batch, rows): the digits of input cycle ``t`` of example ``b`` in row ``r`` of block
  ``g``, zero beyond the layer's inputs), in the product's dtype, with the count of non-zero digits and each row's
  sum of squared digits (the read energy's and the read noise's inputs) accumulated on the way. The same digits as
  :func:`cimsim.encoding.input_planes` (tested through the interpreter, ``TRITON_INTERPRET=1``, and on CUDA).
* :func:`adc_epilogue`: read noise, the ADC's quantization and the shift-and-add over input cycles of the column
  values of a batched product, in one kernel.
* :func:`planes_gemm_adc` (the default on CUDA, ``TorchTile.GEMM_DEVICES``): the digits, their products (int8
  levels, or real-valued levels as two fp16 parts), the read noise and the ADC epilogue in one kernel: neither the
  planes nor the products reach memory (the digits' counts, for the read energy, in a small second kernel); where
  the sum is exact in any order, the kernel also adds each column's value, times its digital weight, to its output
  (float64 atomic adds of integers), so neither the codes nor their float64 copies reach memory either.
* :func:`exact_error_sums`: a mapped layer's exact integer product and its output error's sums (the layer
  quality's inputs), read from the float32 patches without their float64 copy, the product or the error in memory.

Triton ships with CUDA builds of torch; without it (CPU-only installs) the torch backend runs the same arithmetic in
eager torch, and ``triton`` here is None.
"""

from __future__ import annotations

import os

import numpy as np
import torch

try:
    import triton
    import triton.language as tl
except ImportError:   # pragma: no cover - depends on the torch build
    triton = None
try:
    from triton.language.extra import libdevice
except ImportError:   # pragma: no cover - Triton before 3.0
    libdevice = None


def fast_math() -> bool:
    """Whether the kernels' normals take the SFU's approximate log2, sine and cosine (:func:`_pair`): on a GPU
    with Triton 3's ``libdevice``; not under Triton's interpreter (``TRITON_INTERPRET=1``), which has no extern
    functions and runs the same formula with numpy's."""
    return libdevice is not None and os.environ.get("TRITON_INTERPRET", "0") != "1"


# the Philox word's split between a Box-Muller pair's radius and angle (:func:`_pair`): 20 and 12 bits
PAIR_RADIUS_BITS, PAIR_ANGLE_BITS = 20, 12


def normals_from_words(words) -> np.ndarray:
    """The kernels' normals worked out on the host in float64 (tests and bounds): ``words`` (..., 4) Philox words
    (integers below 2**32) to (..., 8) normals in :func:`_normals8`'s order, word i's cosine and sine at 2 i and
    2 i + 1, each pair as :func:`_pair` forms it."""
    w = np.asarray(words, dtype=np.uint64)
    u = ((w >> np.uint64(PAIR_ANGLE_BITS)).astype(np.float64) + 0.5) * 2.0 ** -PAIR_RADIUS_BITS
    a = ((w & np.uint64((1 << PAIR_ANGLE_BITS) - 1)).astype(np.float64) + 0.5) * (2 * np.pi / 2 ** PAIR_ANGLE_BITS) \
        - np.pi
    r = np.sqrt(-2.0 * np.log(u))
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=-1).reshape(*w.shape[:-1], 8)


if triton is not None:
    @triton.jit
    def _pair(w, FAST: tl.constexpr):
        """One Box-Muller pair ``r (cos a, sin a)`` from a 32-bit Philox word: ``r = sqrt(-2 ln 2 log2 u)`` with
        ``u = (k + 1/2) 2**-20`` from the word's top 20 bits ``k`` (so |r| reaches sqrt(42 ln 2) = 5.40: the
        normal's mass beyond is 6.7e-8) and the angle ``a = 2 pi (j + 1/2) / 4096 - pi`` from its low 12 bits
        ``j``, in [-pi, pi), the range the SFU's sine and cosine are specified on. The angle's grid of 4,096 steps
        moves the distribution function by at most 8.3e-5 from the normal's (the moments below the 4,096th are the
        normal's), u's grid by less than 2**-21 (tests/test_gpu_normals.py works the bound out and holds the
        formula's draws to it). FAST: the SFU's approximate ``lg2``, ``sin`` and ``cos`` (one instruction each)
        instead of libdevice's accurate ones, with which the noisy kernel took 1.7x as long on an H200
        (BENCHMARKS.md, issue 19); the normals differ from the accurate ones by less than the bound
        ``test_fast_normals_are_the_accurate_ones_within_their_bound`` states, far below anything a read-noise
        draw resolves."""
        u = ((w >> 12).to(tl.float32) + 0.5) * 9.5367431640625e-07
        a = ((w & 0xFFF).to(tl.float32) + 0.5) * 0.0015339807878856412 - 3.141592653589793
        if FAST:
            r = tl.sqrt(-1.3862943611198906 * libdevice.fast_log2f(u))
            return r * libdevice.fast_cosf(a), r * libdevice.fast_sinf(a)
        else:
            r = tl.sqrt(-1.3862943611198906 * tl.log2(u))
            return r * tl.cos(a), r * tl.sin(a)

    @triton.jit
    def _normals8(seed, offsets, FAST: tl.constexpr):
        """Eight standard normals per offset, in column order: the four words of ``tl.randint4x(seed, offsets)``
        (Philox4x32, 10 rounds), each a Box-Muller pair (:func:`_pair`), word i's cosine and sine normals 2 i and
        2 i + 1: eight normals per Philox call where there were four (a pair per 32 bits, not 64), and the noisy
        kernel converts 13 % more values a second on an H100 (BENCHMARKS.md, issue 19).
        Both kernels draw through here, so they keep drawing the same numbers."""
        w1, w2, w3, w4 = tl.randint4x(seed, offsets)
        return _pair(w1, FAST) + _pair(w2, FAST) + _pair(w3, FAST) + _pair(w4, FAST)

    @triton.jit
    def _in_order(q0, q1, q2, q3, q4, q5, q6, q7):
        """The eight normals of each call side by side, ``(..., 8 k + j)`` holding call k's normal j: tl.join
        stacks along a new last axis, so the innermost join picks the index's top bit."""
        return tl.join(tl.join(tl.join(q0, q4), tl.join(q2, q6)), tl.join(tl.join(q1, q5), tl.join(q3, q7)))

    @triton.jit
    def _adc_epilogue(v_ptr, std_ptr, lo_ptr, lsb_ptr, w_ptr, out_ptr, clip_ptr, seed, NC, C, VS, n_codes,
                      T: tl.constexpr, HAS_NOISE: tl.constexpr, PER_ROW: tl.constexpr, OCTS: tl.constexpr,
                      FAST: tl.constexpr, POW2: tl.constexpr, BLOCK: tl.constexpr):
        """One row block g and BLOCK (example, column) values: for each input cycle t read the column value
        (float32, or the int32 of an integer product, exact in float32 below 2**24; rows ``VS`` values apart), add
        the read noise ``std * N(0, 1)`` (Philox normals keyed by ``seed``, :func:`_normals8`: one call per eight
        columns of an example and cycle, as :func:`_planes_gemm_adc` draws them; OCTS: C a multiple of 8, so a
        block's values are whole groups of eight and each call serves eight of them), quantize to the ADC's code
        ``clamp(floor((v - lo) / lsb + 1/2), 0, n_codes - 1)`` (POW2: every lsb a power of two, so the division is
        the product with its inverse, bit for bit, and cheaper) and accumulate ``w_t * code`` (the shift-and-add);
        the number of clipped conversions goes to one slot per program of ``clip_ptr``."""
        g = tl.program_id(0)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < NC
        lo = tl.load(lo_ptr + g)
        lsb = tl.load(lsb_ptr + g)
        inv = 1.0 / lsb
        acc = tl.zeros((BLOCK,), dtype=tl.float32)
        clipped = tl.zeros((BLOCK,), dtype=tl.int32)
        voffs = (offs // C) * VS + offs % C     # (example, column) in v's rows of VS values
        NV = (NC // C) * VS
        b, c = offs // C, offs % C
        for t in range(T):
            idx = (g * T + t) * NC + offs
            v = tl.load(v_ptr + (g * T + t) * NV + voffs, mask=mask, other=0).to(tl.float32)
            if HAS_NOISE:   # std per (row, column), or one per row (the same sigma in every column)
                if PER_ROW:
                    sd = tl.load(std_ptr + (g * T + t) * (NC // C) + b, mask=mask, other=0.0)
                else:
                    sd = tl.load(std_ptr + idx, mask=mask, other=0.0)
                if OCTS:   # value 8 k + j of the cycle: normal j of call k
                    q0, q1, q2, q3, q4, q5, q6, q7 = _normals8(seed, (g * T + t) * (NC // 8) + tl.program_id(1)
                                                               * (BLOCK // 8) + tl.arange(0, BLOCK // 8), FAST)
                    n = tl.reshape(_in_order(q0, q1, q2, q3, q4, q5, q6, q7), (BLOCK,))
                else:      # each value draws its group's eight and keeps its own
                    q0, q1, q2, q3, q4, q5, q6, q7 = _normals8(seed, ((g * T + t) * (NC // C) + b) * tl.cdiv(C, 8)
                                                               + c // 8, FAST)
                    j = c % 8
                    n = tl.where(j < 4, tl.where(j < 2, tl.where(j == 0, q0, q1), tl.where(j == 2, q2, q3)),
                                 tl.where(j < 6, tl.where(j == 4, q4, q5), tl.where(j == 6, q6, q7)))
                v = tl.fma(sd, n, v)     # one rounding, as the one kernel adds it (whatever the compiler fuses)
            if POW2:
                code = tl.floor((v - lo) * inv + 0.5)
            else:
                code = tl.floor((v - lo) / lsb + 0.5)
            clipped += ((code < 0.0) | (code > n_codes - 1.0)) & mask
            code = tl.minimum(tl.maximum(code, 0.0), n_codes - 1.0)
            acc += tl.load(w_ptr + t) * code
        tl.store(out_ptr + g * NC + offs, acc, mask=mask)
        tl.store(clip_ptr + g * tl.num_programs(1) + tl.program_id(1), tl.sum(clipped, axis=0))

    @triton.jit
    def _cut_planes(x_ptr, sh_ptr, mk_ptr, out_ptr, nz_ptr, sq_ptr, nb, K, R, g0, x_stride,
                    T: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_R: tl.constexpr):
        """Examples ``b`` of one BLOCK_B tile, rows ``r`` of one BLOCK_R tile of row block ``g0 + g``: every input
        cycle's digit to ``out[g, t * nb + b, r]``; this program's count of non-zero digits to ``nz[pid]`` and its
        per-row sums of squared digits to ``sq[pid_b, g, r]`` (int64: exact). The digits are unsigned: bits of the
        int32 two's complement, a signed input's sign bit its own cycle."""
        pb, g, pr = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        b = pb * BLOCK_B + tl.arange(0, BLOCK_B)
        r = pr * BLOCK_R + tl.arange(0, BLOCK_R)
        k = (g0 + g) * R + r
        valid = (b[:, None] < nb) & (r[None, :] < R)
        live = valid & (k[None, :] < K)
        x = tl.load(x_ptr + b[:, None].to(tl.int64) * x_stride + k[None, :], mask=live, other=0).to(tl.int32)
        nz = tl.zeros((BLOCK_B, BLOCK_R), dtype=tl.int32)
        sq = tl.zeros((BLOCK_R,), dtype=tl.int64)
        rows = g.to(tl.int64) * T * nb
        for t in tl.static_range(T):
            d = (x >> tl.load(sh_ptr + t)) & tl.load(mk_ptr + t)
            nz += (d != 0).to(tl.int32)
            sq += tl.sum((d * d).to(tl.int64), axis=0)
            dst = out_ptr + ((rows + t * nb + b[:, None]) * R + r[None, :])
            tl.store(dst, d.to(out_ptr.dtype.element_ty), mask=valid)
        pid = (pb * tl.num_programs(1) + g) * tl.num_programs(2) + pr
        tl.store(nz_ptr + pid, tl.sum(tl.sum(nz, axis=1), axis=0).to(tl.int64))
        tl.store(sq_ptr + (pb * tl.num_programs(1) + g) * R + r, sq, mask=r < R)


if triton is not None:
    @triton.jit
    def _block_x(x_ptr, g, b, r, nb, R, K, x_stride, FLAT: tl.constexpr):
        """The integers of examples ``b`` in rows ``r`` of row block ``g`` as int32, zero beyond the examples and
        the inputs: from the row blocks' layout (G, nb, R), or (FLAT) straight from the inputs (nb, K) (rows
        ``x_stride`` apart; integers in any dtype, floats holding them included), so no copy in the blocks' layout
        is made first."""
        if FLAT:
            k = g * R + r
            return tl.load(x_ptr + b[:, None].to(tl.int64) * x_stride + k[None, :],
                           mask=(b[:, None] < nb) & ((r < R) & (k < K))[None, :], other=0).to(tl.int32)
        else:
            return tl.load(x_ptr + (g.to(tl.int64) * nb + b[:, None]) * R + r[None, :],
                           mask=(b[:, None] < nb) & (r[None, :] < R), other=0).to(tl.int32)

    @triton.jit(do_not_specialize=["nb"])
    def _digit_stats(x_ptr, sh_ptr, mk_ptr, nz_ptr, sq_ptr, rs_ptr, nb, R, K, x_stride, T: tl.constexpr,
                     BINARY: tl.constexpr, ROWS: tl.constexpr, FLAT: tl.constexpr, BLOCK_B: tl.constexpr,
                     BLOCK_R: tl.constexpr):
        """Examples ``b`` of one BLOCK_B tile of row block ``g``: the digits ``(x >> shift_t) & mask_t`` of every
        cycle, counted per element in registers and reduced once: the non-zero digits added to ``nz[0]`` and each
        row's sum of squared digits to ``sq[g * R + r]`` (float64 accumulators, added atomically: integers, exact).
        :func:`_planes_gemm_adc`'s bookkeeping, apart: reduced across warps in every cycle there, it took 30-45 % of
        that kernel's time (BENCHMARKS.md).
        BINARY: the digits are bits 0 .. T - 1 of x (1-bit DACs, unsigned inputs), so both counts of an integer are
        its population count, taken at once (SWAR) instead of cycle by cycle. ROWS: each example's sum of its
        integers over the block's rows added to ``rs[b]`` as well (exact: the offset encoding's correction)."""
        pb, g = tl.program_id(0), tl.program_id(1)
        b = pb * BLOCK_B + tl.arange(0, BLOCK_B)
        r = tl.arange(0, BLOCK_R)
        x = _block_x(x_ptr, g, b, r, nb, R, K, x_stride, FLAT)
        if BINARY:   # 0 <= x < 2**T <= 2**31: bits counted in pairs, nibbles, bytes, then the bytes summed
            v = x & ((1 << T) - 1)
            v = v - ((v >> 1) & 0x55555555)
            v = (v & 0x33333333) + ((v >> 2) & 0x33333333)
            v = (v + (v >> 4)) & 0x0F0F0F0F
            nz = (v * 0x01010101) >> 24
            sq = nz.to(tl.int64)
        else:
            nz = tl.zeros((BLOCK_B, BLOCK_R), dtype=tl.int32)
            sq = tl.zeros((BLOCK_B, BLOCK_R), dtype=tl.int64)
            for t in tl.static_range(T):
                d = (x >> tl.load(sh_ptr + t)) & tl.load(mk_ptr + t)
                nz += (d != 0).to(tl.int32)
                sq += (d * d).to(tl.int64)
        # integers added in float64 (exact below 2**53, so in any order: the same sums in every run)
        tl.atomic_add(nz_ptr, tl.sum(tl.sum(nz, axis=1), axis=0).to(tl.float64), sem="relaxed")
        tl.atomic_add(sq_ptr + g * R + r, tl.sum(sq, axis=0).to(tl.float64), mask=r < R, sem="relaxed")
        if ROWS:
            tl.atomic_add(rs_ptr + b, tl.sum(x.to(tl.int64), axis=1).to(tl.float64), mask=b < nb, sem="relaxed")

    # nb (examples x positions) changes with every batch size: not specialized, so one compile serves them all; the
    # loop over input cycles is a loop (unrolled GEMM_UNROLL times, not T), so a kernel compiles in a few s
    @triton.jit(do_not_specialize=["nb", "seed"])
    def _planes_gemm_adc(x_ptr, a_ptr, var_ptr, sh_ptr, mk_ptr, lo_ptr, lsb_ptr, w_ptr, out_ptr, clip_ptr,
                         cw_ptr, base_ptr, lsb64_ptr, uvar_ptr, nb, R, K, x_stride, C, CP, N, n_codes, iscale,
                         seed, T: tl.constexpr, FLAT: tl.constexpr,
                         PARTS: tl.constexpr, NOISE: tl.constexpr, UNI: tl.constexpr, FAST: tl.constexpr,
                         POW2: tl.constexpr, FOLD: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_R: tl.constexpr,
                         BLOCK_C: tl.constexpr, UNROLL: tl.constexpr):
        """Examples ``b`` of one BLOCK_B tile, columns ``c`` of one BLOCK_C tile, row block ``g``: for each input
        cycle t the digits ``(x >> shift_t) & mask_t`` (in registers), their product with the block's levels (PARTS
        0: int8 levels, an int32 product: exact; PARTS 1 or 2: the levels as one or two fp16 parts, each an fp16
        product accumulated in float32, :func:`cimsim.torch_products.fp16_split`; PARTS -2 or -3: levels on a grid
        ``iscale = 2**-m`` as two or three int8 parts 7 bits apart, most significant first
        (:func:`cimsim.torch_products.int8_parts`), their int32 products combined by Horner's rule and the sum times
        ``iscale``: exact while every sum is below 2**24 grid units, the grid's own rule), with NOISE the read noise
        ``sqrt(sum_r d_r**2 var_r) * N(0, 1)`` (one variance per row; UNI: 0/1 digits and one variance ``uvar_g``
        per row block, on a grid where ``count x uvar_g`` is exact, so the sum is that product, the count taken on
        the tensor cores beside the levels' product; Philox normals keyed by ``seed``, one
        :func:`_normals8` call per eight columns of a cycle: :func:`_adc_epilogue`'s numbers), the ADC's code of that
        column value (as :func:`_adc_epilogue`, POW2 as there) and the shift-and-add ``sum_t w_t code_t`` to
        ``out[g, b * C + c]`` (FOLD: its value ``base_g + lsb_g sum_t w_t code_t`` times the column's digital weight
        ``cw_c``, in float64, added to the output ``out[b, c % N]`` by an atomic add: every term an integer below
        2**53, so the sum is exact in any order); clipped conversions added to ``clip[0]`` (with NOISE counted per
        example in each cycle, a reduction within a warp, not across warps; without, per value in a tile reduced
        once: the registers the normals would take are free, BENCHMARKS.md). The digits' counts are
        :func:`_digit_stats`'s."""
        pb, g, pc = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        b = pb * BLOCK_B + tl.arange(0, BLOCK_B)
        r = tl.arange(0, BLOCK_R)
        c = pc * BLOCK_C + tl.arange(0, BLOCK_C)
        bm, rm, cm = b < nb, r < R, c < C
        x = _block_x(x_ptr, g, b, r, nb, R, K, x_stride, FLAT)
        am = rm[:, None] & cm[None, :]
        if PARTS == 0:
            a = tl.load(a_ptr + (g.to(tl.int64) * R + r[:, None]) * CP + c[None, :], mask=am, other=0)
            a_lo = a
            a_mid = a
        elif PARTS < 0:   # int8 parts (G, -PARTS, R, CP), the most significant first
            a = tl.load(a_ptr + (g.to(tl.int64) * -PARTS * R + r[:, None]) * CP + c[None, :], mask=am, other=0)
            a_mid = a
            if PARTS == -3:
                a_mid = tl.load(a_ptr + ((g.to(tl.int64) * 3 + 1) * R + r[:, None]) * CP + c[None, :], mask=am,
                                other=0)
            a_lo = tl.load(a_ptr + ((g.to(tl.int64) * -PARTS - PARTS - 1) * R + r[:, None]) * CP + c[None, :],
                           mask=am, other=0)
        else:   # float32 values of the fp16 parts: exact in fp16
            a = tl.load(a_ptr + (g.to(tl.int64) * PARTS * R + r[:, None]) * CP + c[None, :], mask=am,
                        other=0.0).to(tl.float16)
            a_lo = a
            if PARTS == 2:
                a_lo = tl.load(a_ptr + ((g.to(tl.int64) * 2 + 1) * R + r[:, None]) * CP + c[None, :], mask=am,
                               other=0.0).to(tl.float16)
        var = tl.zeros((BLOCK_R,), dtype=tl.float32)
        if NOISE:
            var = tl.load(var_ptr + g * R + r, mask=rm, other=0.0)
        lo = tl.load(lo_ptr + g)
        lsb = tl.load(lsb_ptr + g)
        inv = 1.0 / lsb
        acc = tl.zeros((BLOCK_B, BLOCK_C), dtype=tl.float32)
        clipped = tl.zeros((BLOCK_B,), dtype=tl.int32)      # with noise a vector, not a tile: fewer registers
        clip_tile = tl.zeros((BLOCK_B, BLOCK_C), dtype=tl.int32)
        live = bm[:, None] & cm[None, :]
        # each cycle's normals: one Philox call (_normals8) per eight columns of an example, its eight normals in
        # column order (_in_order and reshape keep it), keyed as _adc_epilogue keys them
        octs = b[:, None] * tl.cdiv(C, 8) + (pc * (BLOCK_C // 8) + tl.arange(0, BLOCK_C // 8))[None, :]
        uvar = 0.0
        if UNI:
            uvar = tl.load(uvar_ptr + g)
        for t in tl.range(0, T, loop_unroll_factor=UNROLL):
            d = (x >> tl.load(sh_ptr + t)) & tl.load(mk_ptr + t)
            if PARTS == 0:
                d8 = d.to(tl.int8)
                v = tl.dot(d8, a, out_dtype=tl.int32).to(tl.float32)
            elif PARTS < 0:   # Horner's rule over the parts in int32, then the grid's scale (a power of two)
                d8 = d.to(tl.int8)
                vi = tl.dot(d8, a, out_dtype=tl.int32)
                if PARTS == -3:
                    vi = tl.dot(d8, a_mid, vi << 7, out_dtype=tl.int32)
                vi = tl.dot(d8, a_lo, vi << 7, out_dtype=tl.int32)
                v = vi.to(tl.float32) * iscale
            else:
                db = d.to(tl.float16)          # digits below 2**11: exact
                v = tl.dot(db, a, out_dtype=tl.float32)
                if PARTS == 2:
                    v = tl.dot(db, a_lo, v, out_dtype=tl.float32)
            if NOISE:
                if UNI:    # each example's count of 1 digits, in every one of 16 columns: their largest
                    if PARTS <= 0:
                        cnt = tl.dot(d8, tl.full((BLOCK_R, 16), 1, tl.int8), out_dtype=tl.int32).to(tl.float32)
                    else:
                        cnt = tl.dot(db, tl.full((BLOCK_R, 16), 1.0, tl.float16), out_dtype=tl.float32)
                    sd = tl.sqrt(tl.max(cnt, axis=1) * uvar)
                else:
                    sd = tl.sqrt(tl.sum((d * d).to(tl.float32) * var[None, :], axis=1))
                q0, q1, q2, q3, q4, q5, q6, q7 = _normals8(seed, (g * T + t) * nb * tl.cdiv(C, 8) + octs, FAST)
                n = tl.reshape(_in_order(q0, q1, q2, q3, q4, q5, q6, q7), (BLOCK_B, BLOCK_C))
                # one fused multiply-add, spelled out: with the int8 parts' v = sum * iscale the compiler could
                # otherwise fuse that product instead, and round differently from the other paths
                v = tl.fma(sd[:, None], n, v)
            if POW2:
                code = tl.floor((v - lo) * inv + 0.5)
            else:
                code = tl.floor((v - lo) / lsb + 0.5)
            if NOISE:
                clipped += tl.sum((((code < 0.0) | (code > n_codes - 1.0)) & live).to(tl.int32), axis=1)
            else:
                clip_tile += ((code < 0.0) | (code > n_codes - 1.0)).to(tl.int32)
            code = tl.minimum(tl.maximum(code, 0.0), n_codes - 1.0)
            acc += tl.load(w_ptr + t) * code
        if FOLD:
            val = tl.load(base_ptr + g) + tl.load(lsb64_ptr + g) * acc.to(tl.float64)
            val = val * tl.load(cw_ptr + c, mask=cm, other=0.0)[None, :]
            tl.atomic_add(out_ptr + b[:, None].to(tl.int64) * N + (c % N)[None, :], val, mask=live, sem="relaxed")
        else:
            tl.store(out_ptr + (g.to(tl.int64) * nb + b[:, None]) * C + c[None, :], acc, mask=live)
        if not NOISE:
            clipped = tl.sum(tl.where(live, clip_tile, 0), axis=1)
        tl.atomic_add(clip_ptr, tl.sum(clipped, axis=0).to(tl.float64), sem="relaxed")   # an integer: exact


if triton is not None:
    @triton.jit
    def _exact_error(p_ptr, w_ptr, acc_ptr, sc_ptr, part_ptr, M, O, p_stride, K: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_O: tl.constexpr):
        """(K a compile-time constant: one compile per layer width, and Triton's interpreter takes no run-time loop
        bound.) Rows ``m`` of one BLOCK_M tile: the exact product ``p[m] @ w`` in float64 (integers whose sums stay
        below 2**53: exact in any order), then this tile's ``sum(((acc - exact) * scale)**2)`` and
        ``sum((exact * scale)**2)`` to ``part[pid, 0:2]`` (summed by the caller in a fixed order: the same sums
        in every run)."""
        pid = tl.program_id(0)
        m = pid * BLOCK_M + tl.arange(0, BLOCK_M)
        o = tl.arange(0, BLOCK_O)
        mm, om = m < M, o < O
        exact = tl.zeros((BLOCK_M, BLOCK_O), dtype=tl.float64)
        for k0 in range(0, K, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            km = k < K
            p = tl.load(p_ptr + m[:, None].to(tl.int64) * p_stride + k[None, :], mask=mm[:, None] & km[None, :],
                        other=0.0).to(tl.float64)
            w = tl.load(w_ptr + k[:, None] * O + o[None, :], mask=km[:, None] & om[None, :], other=0.0)
            exact = tl.dot(p, w, exact, out_dtype=tl.float64)
        live = mm[:, None] & om[None, :]
        a = tl.load(acc_ptr + m[:, None].to(tl.int64) * O + o[None, :], mask=live, other=0.0)
        sc = tl.load(sc_ptr + o, mask=om, other=0.0)[None, :]
        e = (a - exact) * sc
        r = exact * sc
        tl.store(part_ptr + 2 * pid, tl.sum(tl.sum(e * e, axis=1), axis=0))
        tl.store(part_ptr + 2 * pid + 1, tl.sum(tl.sum(r * r, axis=1), axis=0))


# the one kernel's loop over input cycles unrolled this many times: 1 compiles fastest (1.7 s for the int8 kernel on
# this project's CPU for an sm_90 target, against 14.8 s for gpu4's loop unrolled 16 times); our choice
GEMM_UNROLL = 1
# a program's tile, without and with read noise: examples, columns (at most; 64 for layers of 64 columns or fewer)
# and warps. Measured on an H200 (docs/bench_planes_kernel.py --tiles, two blocks of 128 rows x 128 columns, 16
# cycles), with the SFU's normals and the digits' counts in their own kernel: 64 x 64 x 4 converts int8 levels at 502 G
# column values/s and fp16 parts at 399 without noise, 271 / 229 with read noise (32 x 128 x 4, the noisy tile while
# the normals were accurate and the counts reduced in every cycle: 264 / 218); BENCHMARKS.md. With Triton 3.6 (the
# eleventh session's device) the same tile gave int8 724 / 323 G (clean / noisy) dividing by the LSB, 781 / 340
# multiplying by its inverse, 852 (clean) with the clipped count kept per value
GEMM_TILES = {False: (64, 64, 4), True: (64, 64, 4)}


def planes_gemm_adc(x: torch.Tensor, a: torch.Tensor, shifts: torch.Tensor, masks: torch.Tensor, lo: torch.Tensor,
                    lsb: torch.Tensor, w_t: torch.Tensor, C: int, n_codes: float, var: torch.Tensor | None = None,
                    seed: int = 0, unroll: int | None = None, tiles=None, lsb_pow2: bool = False, fold=None,
                    binary: bool = False, uniform_var: torch.Tensor | None = None, iscale: float = 1.0,
                    row_sums: torch.Tensor | None = None, rows: int | None = None, tally=None):
    """The bit planes, their products, the read noise and the ADC epilogue in one kernel, without planes or products
    in memory: ``x`` (G, batch, R) the row blocks' integers (:meth:`cimsim.crossbar_torch.TorchTile.block_inputs`),
    or the inputs themselves (batch, in), integers in any dtype (floats holding them included), with ``rows`` = R:
    the kernels read them in the blocks' layout (G = ceil(in / R), zero beyond the inputs), so no copy is made;
    ``a`` the levels: int8 (G, R, CP), CP >= C (an exact int32 product), int8 (G, P, R, CP) holding P = 2 or 3 parts
    of levels on the grid ``iscale = 2**-m`` (:func:`cimsim.torch_products.int8_parts`: an exact int32 product too,
    times ``iscale``), or float32 (G, P, R, C) holding P = 1 or 2 fp16 parts
    (:func:`cimsim.torch_products.fp16_split`; multiplied in fp16, exactly, and accumulated in float32);
    ``shifts``/``masks`` int32 (T,) (unsigned digits), ``lo``, ``lsb`` float32 (G,), ``w_t``
    float32 (T,) the cycles' place values; ``var`` float32 (G, R) each row's read-noise variance per unit squared
    digit (None: no read noise) and ``seed`` its Philox seed (the numbers :func:`adc_epilogue` draws with it);
    ``unroll``: the cycle loop's unroll factor (default :data:`GEMM_UNROLL`); ``tiles``: (examples, columns, warps)
    of a program (default :data:`GEMM_TILES`, by noise; ``docs/bench_planes_kernel.py`` times others); ``lsb_pow2``:
    the caller knows every ``lsb`` is a power of two (the engine's rule, :func:`cimsim.crossbar.quantizer_lo_lsb`), so
    the kernel multiplies by its inverse instead of dividing: the same codes, bit for bit. ``fold``: ``(y, cw, base,
    lsb64)``, the output (batch, N) float64 (zeros, or a sum to add to), each column's digital weight (C,) and each
    row block's ``lo * sum(w_t)`` and ``lsb`` (G,), all float64: the kernel adds every column's value to its output
    ``c % N`` itself (exact when every term is an integer below 2**53, the caller's duty) and returns None in
    place of the codes. ``binary``: the digits are bits 0 .. T - 1 of ``x`` (shifts 0 .. T - 1, masks 1: 1-bit DACs,
    unsigned inputs), so the digits' counts are population counts; with ``uniform_var`` (G,) float32 as well (each
    row block's one read-noise variance, on a grid where any count of rows times it is exact in float32: the
    caller's duty, :meth:`cimsim.crossbar_torch.TorchTile._uniform_var`) the noise's sum over rows is that count
    times it, the count a tensor-core product. ``row_sums`` (batch,) float64: each example's integers summed over
    every block's rows are added to it, exactly (taken where the digits' counts are). ``tally``: float64
    accumulators (clipped conversions (), non-zero digits (), each row's sum of squared digits (G x R,)) the kernels
    add to (atomically: integers, exact in any order below 2**53, so the same sums in every run), in place of the
    partial counts a caller would sum and add with kernels of its own; new zeros if None.
    Returns the shift-and-added codes (G, batch x C) float32 and the three accumulators: the numbers of
    :func:`cut_planes` and :func:`adc_epilogue`."""
    flat = x.dim() == 2
    if flat:
        if rows is None:
            raise ValueError("inputs (batch, in) need rows= (the row blocks' rows)")
        nb, K = x.shape
        R = int(rows)
        G = -(-K // R)
        x = x if x.stride(1) == 1 else x.contiguous()
        x_stride = x.stride(0)
    else:
        G, nb, R = x.shape
        x = x.contiguous()
        K, x_stride = G * R, R
    T = int(shifts.numel())
    if nb * C * T * G >= 2 ** 31:
        raise ValueError(f"{nb} x {C} x {T} x {G} column values: the kernel's int32 indices overflow; stream fewer "
                         "examples per call")
    a = a.contiguous()
    parts = (0 if a.dim() == 3 else -a.shape[1]) if a.dtype == torch.int8 else a.shape[1]
    if parts not in (-3, -2, 0, 1, 2):
        raise ValueError(f"{abs(parts)} level parts: the kernel takes int8 levels, two or three int8 parts, or one "
                         "or two fp16 parts")
    if fold is None:
        out = torch.empty((G, nb * C), dtype=torch.float32, device=x.device)
        cw = base = lsb64 = out
        N = C
    else:
        out, cw, base, lsb64 = fold
        N = out.shape[1]
        if out.dtype != torch.float64 or out.shape[0] != nb or not out.is_contiguous() or C % N:
            raise ValueError("fold: y must be a contiguous float64 (batch, N) tensor with C a multiple of N")
    # one tile shape per row count and noise (GEMM_TILES) x the block's rows (int8 tensor-core products need 32
    # rows or more), so few kernels compile
    tb, tc, warps = tiles or GEMM_TILES[var is not None]
    uni = var is not None and bool(binary) and uniform_var is not None
    BLOCK_B, BLOCK_R, BLOCK_C = tb, max(32, triton.next_power_of_2(R)), min(tc, max(64, triton.next_power_of_2(C)))
    grid = (triton.cdiv(nb, BLOCK_B), G, triton.cdiv(C, BLOCK_C))
    if tally is None:
        tally = tuple(torch.zeros(n, dtype=torch.float64, device=x.device) for n in ((), (), G * R))
    clips, nz, sq = tally
    if clips.dtype != torch.float64 or nz.dtype != torch.float64 or sq.dtype != torch.float64 \
            or sq.shape != (G * R,) or not sq.is_contiguous():
        raise ValueError("tally: float64 accumulators (), () and (G x R,) contiguous")
    rs = row_sums
    if rs is not None and (rs.dtype != torch.float64 or rs.shape != (nb,) or not rs.is_contiguous()):
        raise ValueError("row_sums: a contiguous float64 (batch,) tensor")
    stats_b = 64      # examples a program: fewer programs adding to the same rows' sums (32 before the atomic adds)
    stats_grid = (triton.cdiv(nb, stats_b), G)
    _digit_stats[stats_grid](x, shifts, masks, nz, sq, sq if rs is None else rs, nb, R, K, x_stride, T=T,
                             BINARY=bool(binary) and T <= 31, ROWS=rs is not None, FLAT=flat, BLOCK_B=stats_b,
                             BLOCK_R=BLOCK_R)
    _planes_gemm_adc[grid](x, a, x if var is None else var.contiguous(), shifts, masks, lo.reshape(-1).contiguous(),
                           lsb.reshape(-1).contiguous(), w_t, out, clips, cw, base, lsb64,
                           uniform_var if uni else out, nb, R, K, x_stride, C, a.shape[-1], N, float(n_codes),
                           float(iscale), int(seed), T=T, FLAT=flat,
                           PARTS=parts, NOISE=var is not None, UNI=uni, FAST=fast_math(),
                           POW2=bool(lsb_pow2), FOLD=fold is not None, BLOCK_B=BLOCK_B,
                           BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C, UNROLL=int(unroll or GEMM_UNROLL), num_warps=warps)
    return (None if fold is not None else out), clips, nz, sq


def cut_planes(xt: torch.Tensor, shifts: torch.Tensor, masks: torch.Tensor, g0: int, g1: int, R: int,
               out_dtype: torch.dtype):
    """Bit planes of the integers ``xt`` (batch, in; any integer or integer-valued float dtype; |x| < 2**31) for row
    blocks ``g0 .. g1 - 1`` of ``R`` rows: ((g1 - g0, cycles x batch, R) of ``out_dtype``, the number of non-zero
    digits (int64 scalar tensor), each row's sum of squared digits ((g1 - g0) x R float64)). ``shifts`` and
    ``masks``: int32 device tensors of the cycles' shifts and digit masks (:func:`cimsim.encoding.plane_layout`)."""
    nb, K = xt.shape
    T, G = int(shifts.numel()), g1 - g0
    xt = xt if xt.stride(1) == 1 else xt.contiguous()
    out = torch.empty((G, T * nb, R), dtype=out_dtype, device=xt.device)
    BLOCK_B, BLOCK_R = 32, min(128, triton.next_power_of_2(R))
    grid = (triton.cdiv(nb, BLOCK_B), G, triton.cdiv(R, BLOCK_R))
    nz = torch.empty(grid[0] * G * grid[2], dtype=torch.int64, device=xt.device)
    sq = torch.empty((grid[0], G, R), dtype=torch.int64, device=xt.device)
    _cut_planes[grid](xt, shifts, masks, out, nz, sq, nb, K, R, g0, xt.stride(0),
                      T=T, BLOCK_B=BLOCK_B, BLOCK_R=BLOCK_R)
    return out, nz.sum(), sq.sum(dim=0, dtype=torch.float64).reshape(-1)


def adc_epilogue(v, std, lo, lsb, w_t, T: int, nb: int, C: int, n_codes: float, seed: int, lsb_pow2: bool = False):
    """:func:`_adc_epilogue` over row blocks (G, cycles x batch, columns): (G, batch x columns) float32 and the
    count of clipped conversions (float64 scalar tensor). ``v``: float32, or int32 with rows of ``C`` or more
    values (an int8 product's padded columns: the first ``C`` are read), contiguous; ``lsb_pow2`` as
    :func:`planes_gemm_adc`'s."""
    G, NC = v.shape[0], nb * C
    v = v.contiguous()
    out = torch.empty((G, NC), dtype=torch.float32, device=v.device)
    block = 1024
    programs = triton.cdiv(NC, block)
    clips = torch.empty((G * programs,), dtype=torch.int32, device=v.device)
    _adc_epilogue[(G, programs)](
        v, v if std is None else std.contiguous(), lo.reshape(-1).contiguous(), lsb.reshape(-1).contiguous(),
        w_t, out, clips, seed, NC, C, v.shape[-1], float(n_codes), T=int(T), HAS_NOISE=std is not None,
        PER_ROW=std is not None and std.shape[-1] == 1, OCTS=C % 8 == 0, FAST=fast_math(), POW2=bool(lsb_pow2),
        BLOCK=block)
    return out, clips.sum(dtype=torch.float64)


def exact_error_sums(patches: torch.Tensor, w: torch.Tensor, acc: torch.Tensor, scale: torch.Tensor,
                     err: torch.Tensor) -> bool:
    """A mapped layer's error sums on a GPU in one kernel (:func:`_exact_error`): adds ``sum(((acc - exact) *
    scale)**2)`` and ``sum((exact * scale)**2)`` to ``err[0:2]``, with ``exact = patches @ w`` (patches (M, K)
    float32 or float64 integers, unit stride along K; ``w`` (K, O), ``acc`` (M, O) and ``scale`` (1, O) float64;
    the exact product's sums below 2**53, :meth:`cimsim.mappers.mapped.MappedLayer._sums_exact`'s rule), without
    the float64 copy of the patches, the product or the error in memory. The exact product is the same integers as
    ``patches.double() @ w``; the sums are the same to the last bits of their order (per tile, then the tiles in
    order). Returns False, doing nothing, where it does not apply (no Triton, other dtypes or layouts): the caller
    then forms them in torch (and calls this on CUDA tensors only: Triton's interpreter runs CPU tensors slowly)."""
    if triton is None or patches.dim() != 2 or patches.stride(1) != 1 \
            or patches.dtype not in (torch.float32, torch.float64) or w.dtype != torch.float64 \
            or acc.dtype != torch.float64 or w.dim() != 2 or w.shape[0] != patches.shape[1] \
            or acc.shape != (patches.shape[0], w.shape[1]) or w.shape[1] > 256:
        return False
    M, K = patches.shape
    O = w.shape[1]
    block_o = max(16, triton.next_power_of_2(O))
    block_m, block_k = max(16, min(64, 4096 // block_o)), 32       # at most 4,096 float64 sums a program
    programs = triton.cdiv(M, block_m)
    part = torch.empty((programs, 2), dtype=torch.float64, device=patches.device)
    _exact_error[(programs,)](patches, w.contiguous(), acc.contiguous(), scale.reshape(-1).contiguous(), part, M, O,
                              patches.stride(0), K=K, BLOCK_M=block_m, BLOCK_K=block_k, BLOCK_O=block_o,
                              num_warps=4)
    err += part.sum(dim=0)
    return True
