"""Triton kernels of the torch backend on a GPU (:mod:`cimsim.crossbar_torch`).

Three kernels, each one pass over memory where eager torch needs several:

* :func:`cut_planes`: integer inputs (batch, in) to the bit planes of a range of row blocks, laid out for the batched
  product ((blocks, cycles x batch, rows): the digits of input cycle ``t`` of example ``b`` in row ``r`` of block
  ``g``, zero beyond the layer's inputs), in the product's dtype, with the count of non-zero digits and each row's
  sum of squared digits (the read energy's and the read noise's inputs) accumulated on the way. The same digits as
  :func:`cimsim.encoding.input_planes` (tested through the interpreter, ``TRITON_INTERPRET=1``, and on CUDA).
* :func:`adc_epilogue`: read noise, the ADC's quantization and the shift-and-add over input cycles of the column
  values of a batched product, in one kernel.
* :func:`planes_gemm_adc` (the default on CUDA, ``TorchTile.GEMM_DEVICES``): the digits, their products (int8
  levels, or real-valued levels as two fp16 parts), the read noise and the ADC epilogue in one kernel: neither the
  planes nor the products reach memory.

Triton ships with CUDA builds of torch; without it (CPU-only installs) the torch backend runs the same arithmetic in
eager torch, and ``triton`` here is None.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:   # pragma: no cover - depends on the torch build
    triton = None

if triton is not None:
    @triton.jit
    def _adc_epilogue(v_ptr, std_ptr, lo_ptr, lsb_ptr, w_ptr, out_ptr, clip_ptr, seed, NC, C, VS, n_codes,
                      T: tl.constexpr, HAS_NOISE: tl.constexpr, PER_ROW: tl.constexpr, QUADS: tl.constexpr,
                      BLOCK: tl.constexpr):
        """One row block g and BLOCK (example, column) values: for each input cycle t read the column value
        (float32, or the int32 of an integer product, exact in float32 below 2**24; rows ``VS`` values apart), add the read noise
        ``std * N(0, 1)`` (Philox normals keyed by ``seed``: one ``randn4x`` call per four columns of an example
        and cycle, as :func:`_planes_gemm_adc` draws them; QUADS: C a multiple of 4, so a block's values are whole
        quads and each call serves four of them), quantize to the ADC's code
        ``clamp(floor((v - lo) / lsb + 1/2), 0, n_codes - 1)`` and accumulate ``w_t * code`` (the shift-and-add);
        the number of clipped conversions goes to one slot per program of ``clip_ptr``."""
        g = tl.program_id(0)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < NC
        lo = tl.load(lo_ptr + g)
        lsb = tl.load(lsb_ptr + g)
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
                if QUADS:   # value 4 k + j of the cycle: normal j of call k
                    n0, n1, n2, n3 = tl.randn4x(seed, (g * T + t) * (NC // 4) + tl.program_id(1) * (BLOCK // 4)
                                                + tl.arange(0, BLOCK // 4))
                    n = tl.reshape(tl.join(tl.join(n0, n2), tl.join(n1, n3)), (BLOCK,))
                else:       # each value draws its quad's four and keeps its own
                    n0, n1, n2, n3 = tl.randn4x(seed, ((g * T + t) * (NC // C) + b) * tl.cdiv(C, 4) + c // 4)
                    q = c % 4
                    n = tl.where(q == 0, n0, tl.where(q == 1, n1, tl.where(q == 2, n2, n3)))
                v = v + sd * n
            code = tl.floor((v - lo) / lsb + 0.5)
            clipped += ((code < 0.0) | (code > n_codes - 1.0)) & mask
            code = tl.minimum(tl.maximum(code, 0.0), n_codes - 1.0)
            acc += tl.load(w_ptr + t) * code
        tl.store(out_ptr + g * NC + offs, acc, mask=mask)
        tl.store(clip_ptr + g * tl.num_programs(1) + tl.program_id(1), tl.sum(clipped, axis=0))

    @triton.jit
    def _cut_planes(x_ptr, sh_ptr, mk_ptr, out_ptr, nz_ptr, sq_ptr, nb, K, R, g0, x_stride,
                    T: tl.constexpr, SIGNED: tl.constexpr, BITS: tl.constexpr, TOP_W: tl.constexpr,
                    BLOCK_B: tl.constexpr, BLOCK_R: tl.constexpr):
        """Examples ``b`` of one BLOCK_B tile, rows ``r`` of one BLOCK_R tile of row block ``g0 + g``: every input
        cycle's digit to ``out[g, t * nb + b, r]``; this program's count of non-zero digits to ``nz[pid]`` and its
        per-row sums of squared digits to ``sq[pid_b, g, r]`` (int64: exact)."""
        pb, g, pr = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        b = pb * BLOCK_B + tl.arange(0, BLOCK_B)
        r = pr * BLOCK_R + tl.arange(0, BLOCK_R)
        k = (g0 + g) * R + r
        valid = (b[:, None] < nb) & (r[None, :] < R)
        live = valid & (k[None, :] < K)
        x = tl.load(x_ptr + b[:, None].to(tl.int64) * x_stride + k[None, :], mask=live, other=0).to(tl.int32)
        if SIGNED:   # two's complement over BITS bits, the top digit signed
            x = tl.where(x < 0, x + (1 << BITS), x)
        nz = tl.zeros((BLOCK_B, BLOCK_R), dtype=tl.int32)
        sq = tl.zeros((BLOCK_R,), dtype=tl.int64)
        rows = g.to(tl.int64) * T * nb
        for t in tl.static_range(T):
            d = (x >> tl.load(sh_ptr + t)) & tl.load(mk_ptr + t)
            if SIGNED:
                if t == T - 1:
                    d = tl.where(d >= (1 << (TOP_W - 1)), d - (1 << TOP_W), d)
            nz += (d != 0).to(tl.int32)
            sq += tl.sum((d * d).to(tl.int64), axis=0)
            dst = out_ptr + ((rows + t * nb + b[:, None]) * R + r[None, :])
            tl.store(dst, d.to(out_ptr.dtype.element_ty), mask=valid)
        pid = (pb * tl.num_programs(1) + g) * tl.num_programs(2) + pr
        tl.store(nz_ptr + pid, tl.sum(tl.sum(nz, axis=1), axis=0).to(tl.int64))
        tl.store(sq_ptr + (pb * tl.num_programs(1) + g) * R + r, sq, mask=r < R)


if triton is not None:
    # nb (examples x positions) changes with every batch size: not specialized, so one compile serves them all; the
    # loop over input cycles is a loop (unrolled GEMM_UNROLL times, not T), so a kernel compiles in a few s
    @triton.jit(do_not_specialize=["nb", "seed"])
    def _planes_gemm_adc(x_ptr, a_ptr, var_ptr, sh_ptr, mk_ptr, lo_ptr, lsb_ptr, w_ptr, out_ptr, clip_ptr, nz_ptr,
                         sq_ptr, nb, R, C, CP, n_codes, seed, T: tl.constexpr, PARTS: tl.constexpr, NOISE: tl.constexpr,
                         BLOCK_B: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
                         UNROLL: tl.constexpr):
        """Examples ``b`` of one BLOCK_B tile, columns ``c`` of one BLOCK_C tile, row block ``g``: for each input
        cycle t the digits ``(x >> shift_t) & mask_t`` (in registers), their product with the block's levels (PARTS
        0: int8 levels, an int32 product: exact; PARTS 1 or 2: the levels as one or two fp16 parts, each an fp16
        product accumulated in float32, :func:`cimsim.torch_products.fp16_split`), with NOISE the read noise
        ``sqrt(sum_r d_r**2 var_r) * N(0, 1)`` (one variance per row; Philox normals keyed by ``seed``, one
        ``randn4x`` call per four columns of a cycle: :func:`_adc_epilogue`'s numbers), the ADC's code of that
        column value (as :func:`_adc_epilogue`)
        and the shift-and-add ``sum_t w_t code_t`` to ``out[g, b * C + c]``; clipped conversions to ``clip[pid]``;
        the first column tile also counts the non-zero digits (``nz[pid_b, g]``) and each row's sum of squared
        digits (``sq[pid_b, g, r]``, int64)."""
        pb, g, pc = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        b = pb * BLOCK_B + tl.arange(0, BLOCK_B)
        r = tl.arange(0, BLOCK_R)
        c = pc * BLOCK_C + tl.arange(0, BLOCK_C)
        bm, rm, cm = b < nb, r < R, c < C
        x = tl.load(x_ptr + (g.to(tl.int64) * nb + b[:, None]) * R + r[None, :], mask=bm[:, None] & rm[None, :],
                    other=0).to(tl.int32)
        am = rm[:, None] & cm[None, :]
        if PARTS == 0:
            a = tl.load(a_ptr + (g.to(tl.int64) * R + r[:, None]) * CP + c[None, :], mask=am, other=0)
            a_lo = a
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
        acc = tl.zeros((BLOCK_B, BLOCK_C), dtype=tl.float32)
        clipped = tl.zeros((BLOCK_C,), dtype=tl.int32)      # vectors, not tiles: fewer registers
        nz = tl.zeros((BLOCK_R,), dtype=tl.int32)
        sq = tl.zeros((BLOCK_R,), dtype=tl.int64)
        live = bm[:, None] & cm[None, :]
        # each cycle's normals: one Philox call (randn4x) per four columns of an example, the quad's four normals in
        # column order (join and reshape keep it), keyed as _adc_epilogue keys them
        quad = b[:, None] * tl.cdiv(C, 4) + (pc * (BLOCK_C // 4) + tl.arange(0, BLOCK_C // 4))[None, :]
        for t in tl.range(0, T, loop_unroll_factor=UNROLL):
            d = (x >> tl.load(sh_ptr + t)) & tl.load(mk_ptr + t)
            if pc == 0:
                nz += tl.sum((d != 0).to(tl.int32), axis=0)
                sq += tl.sum((d * d).to(tl.int64), axis=0)
            if PARTS == 0:
                v = tl.dot(d.to(tl.int8), a, out_dtype=tl.int32).to(tl.float32)
            else:
                db = d.to(tl.float16)          # digits below 2**11: exact
                v = tl.dot(db, a, out_dtype=tl.float32)
                if PARTS == 2:
                    v = tl.dot(db, a_lo, v, out_dtype=tl.float32)
            if NOISE:
                sd = tl.sqrt(tl.sum((d * d).to(tl.float32) * var[None, :], axis=1))
                n0, n1, n2, n3 = tl.randn4x(seed, (g * T + t) * nb * tl.cdiv(C, 4) + quad)
                n = tl.reshape(tl.join(tl.join(n0, n2), tl.join(n1, n3)), (BLOCK_B, BLOCK_C))
                v = v + sd[:, None] * n
            code = tl.floor((v - lo) / lsb + 0.5)
            clipped += tl.sum((((code < 0.0) | (code > n_codes - 1.0)) & live).to(tl.int32), axis=0)
            code = tl.minimum(tl.maximum(code, 0.0), n_codes - 1.0)
            acc += tl.load(w_ptr + t) * code
        tl.store(out_ptr + (g.to(tl.int64) * nb + b[:, None]) * C + c[None, :], acc, mask=live)
        pid = (pb * tl.num_programs(1) + g) * tl.num_programs(2) + pc
        tl.store(clip_ptr + pid, tl.sum(clipped, axis=0))
        if pc == 0:
            tl.store(nz_ptr + pb * tl.num_programs(1) + g, tl.sum(nz, axis=0).to(tl.int64))
            tl.store(sq_ptr + (pb * tl.num_programs(1) + g) * R + r, sq, mask=rm)


# the one kernel's loop over input cycles unrolled this many times: 1 compiles fastest (1.7 s for the int8 kernel on
# this project's CPU for an sm_90 target, against 14.8 s for gpu4's loop unrolled 16 times); our choice
GEMM_UNROLL = 1
# a program's tile, without and with read noise: examples, columns (at most; 64 for layers of 64 columns or fewer)
# and warps. Measured on an H200 (docs/bench_planes_kernel.py --tiles, two blocks of 128 rows x 128 columns, 16
# cycles): without noise 64 x 64 x 4 runs int8 levels at 287 G column values/s and fp16 parts at 272 (64 x 128 x 8,
# the earlier tile: 210 / 160); with read noise 32 x 128 x 4 at 110 / 104 (64 x 128 x 8: 89 / 77); BENCHMARKS.md
GEMM_TILES = {False: (64, 64, 4), True: (32, 128, 4)}


def planes_gemm_adc(x: torch.Tensor, a: torch.Tensor, shifts: torch.Tensor, masks: torch.Tensor, lo: torch.Tensor,
                    lsb: torch.Tensor, w_t: torch.Tensor, C: int, n_codes: float, var: torch.Tensor | None = None,
                    seed: int = 0, unroll: int | None = None, tiles=None):
    """The bit planes, their products, the read noise and the ADC epilogue in one kernel, without planes or products
    in memory: ``x`` (G, batch, R) the row blocks' integers (:meth:`cimsim.crossbar_torch.TorchTile.block_inputs`),
    ``a`` the levels: int8 (G, R, CP), CP >= C (an exact int32 product), or float32 (G, P, R, C) holding P = 1 or 2
    fp16 parts (:func:`cimsim.torch_products.fp16_split`; multiplied in fp16, exactly, and accumulated in float32);
    ``shifts``/``masks`` int32 (T,) (a signed top digit's mask all ones), ``lo``, ``lsb`` float32 (G,), ``w_t``
    float32 (T,) the cycles' place values; ``var`` float32 (G, R) each row's read-noise variance per unit squared
    digit (None: no read noise) and ``seed`` its Philox seed (the numbers :func:`adc_epilogue` draws with it);
    ``unroll``: the cycle loop's unroll factor (default :data:`GEMM_UNROLL`); ``tiles``: (examples, columns, warps)
    of a program (default :data:`GEMM_TILES`, by noise; ``docs/bench_planes_kernel.py`` times others).
    Returns the shift-and-added codes (G, batch x C) float32, the clipped conversions (float64 scalar), the non-zero
    digits (int64 scalar) and each row's sum of squared digits (G x R, float64): the numbers of :func:`cut_planes`
    and :func:`adc_epilogue`."""
    G, nb, R = x.shape
    T = int(shifts.numel())
    if nb * C * T * G >= 2 ** 31:
        raise ValueError(f"{nb} x {C} x {T} x {G} column values: the kernel's int32 indices overflow; stream fewer "
                         "examples per call")
    x, a = x.contiguous(), a.contiguous()
    parts = 0 if a.dtype == torch.int8 else a.shape[1]
    out = torch.empty((G, nb * C), dtype=torch.float32, device=x.device)
    # one tile shape per row count and noise (GEMM_TILES) x the block's rows (int8 tensor-core products need 32
    # rows or more), so few kernels compile
    tb, tc, warps = tiles or GEMM_TILES[var is not None]
    BLOCK_B, BLOCK_R, BLOCK_C = tb, max(32, triton.next_power_of_2(R)), min(tc, max(64, triton.next_power_of_2(C)))
    grid = (triton.cdiv(nb, BLOCK_B), G, triton.cdiv(C, BLOCK_C))
    clips = torch.empty(grid[0] * G * grid[2], dtype=torch.int32, device=x.device)
    nz = torch.empty(grid[0] * G, dtype=torch.int64, device=x.device)
    sq = torch.empty((grid[0], G, R), dtype=torch.int64, device=x.device)
    _planes_gemm_adc[grid](x, a, x if var is None else var.contiguous(), shifts, masks, lo.reshape(-1).contiguous(),
                           lsb.reshape(-1).contiguous(), w_t, out, clips, nz, sq, nb, R, C, a.shape[-1],
                           float(n_codes), int(seed), T=T, PARTS=parts, NOISE=var is not None, BLOCK_B=BLOCK_B,
                           BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C, UNROLL=int(unroll or GEMM_UNROLL), num_warps=warps)
    return out, clips.sum(dtype=torch.float64), nz.sum(), sq.sum(dim=0, dtype=torch.float64).reshape(-1)


def cut_planes(xt: torch.Tensor, shifts: torch.Tensor, masks: torch.Tensor, g0: int, g1: int, R: int,
               out_dtype: torch.dtype, signed: bool, bits: int, top_width: int):
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
                      T=T, SIGNED=bool(signed), BITS=int(bits), TOP_W=int(top_width), BLOCK_B=BLOCK_B, BLOCK_R=BLOCK_R)
    return out, nz.sum(), sq.sum(dim=0, dtype=torch.float64).reshape(-1)


def adc_epilogue(v, std, lo, lsb, w_t, T: int, nb: int, C: int, n_codes: float, seed: int):
    """:func:`_adc_epilogue` over row blocks (G, cycles x batch, columns): (G, batch x columns) float32 and the
    count of clipped conversions (float64 scalar tensor). ``v``: float32, or int32 with rows of ``C`` or more
    values (an int8 product's padded columns: the first ``C`` are read), contiguous."""
    G, NC = v.shape[0], nb * C
    v = v.contiguous()
    out = torch.empty((G, NC), dtype=torch.float32, device=v.device)
    block = 1024
    programs = triton.cdiv(NC, block)
    clips = torch.empty((G * programs,), dtype=torch.int32, device=v.device)
    _adc_epilogue[(G, programs)](
        v, v if std is None else std.contiguous(), lo.reshape(-1).contiguous(), lsb.reshape(-1).contiguous(),
        w_t, out, clips, seed, NC, C, v.shape[-1], float(n_codes), T=int(T), HAS_NOISE=std is not None,
        PER_ROW=std is not None and std.shape[-1] == 1, QUADS=C % 4 == 0, BLOCK=block)
    return out, clips.sum(dtype=torch.float64)
