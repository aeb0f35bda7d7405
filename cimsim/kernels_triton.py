"""Triton kernels of the torch backend on a GPU (:mod:`cimsim.crossbar_torch`).

Two kernels, each one pass over memory where eager torch needs several:

* :func:`cut_planes`: integer inputs (batch, in) to the bit planes of a range of row blocks, laid out for the batched
  product ((blocks, cycles x batch, rows): the digits of input cycle ``t`` of example ``b`` in row ``r`` of block
  ``g``, zero beyond the layer's inputs), in the product's dtype, with the count of non-zero digits and each row's
  sum of squared digits (the read energy's and the read noise's inputs) accumulated on the way. The same digits as
  :func:`cimsim.encoding.input_planes` (tested through the interpreter, ``TRITON_INTERPRET=1``, and on CUDA).
* :func:`adc_epilogue`: read noise, the ADC's quantization and the shift-and-add over input cycles of the column
  values of a batched product, in one kernel.

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
    def _adc_epilogue(v_ptr, std_ptr, lo_ptr, lsb_ptr, w_ptr, out_ptr, clip_ptr, seed, T, NC, C, n_codes,
                      HAS_NOISE: tl.constexpr, PER_ROW: tl.constexpr, BLOCK: tl.constexpr):
        """One row block g and BLOCK (example, column) values: for each input cycle t add the read noise
        ``std * N(0, 1)`` (Philox normals keyed by ``seed`` and the value's index), quantize to the ADC's code
        ``clamp(floor((v - lo) / lsb + 1/2), 0, n_codes - 1)`` and accumulate ``w_t * code`` (the shift-and-add);
        the number of clipped conversions goes to one slot per program of ``clip_ptr``."""
        g = tl.program_id(0)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < NC
        lo = tl.load(lo_ptr + g)
        lsb = tl.load(lsb_ptr + g)
        acc = tl.zeros((BLOCK,), dtype=tl.float32)
        clipped = tl.zeros((BLOCK,), dtype=tl.int32)
        for t in range(T):
            idx = (g * T + t) * NC + offs
            v = tl.load(v_ptr + idx, mask=mask, other=0.0)
            if HAS_NOISE:   # std per (row, column), or one per row (the same sigma in every column)
                if PER_ROW:
                    sd = tl.load(std_ptr + (g * T + t) * (NC // C) + offs // C, mask=mask, other=0.0)
                else:
                    sd = tl.load(std_ptr + idx, mask=mask, other=0.0)
                v = v + sd * tl.randn(seed, idx)
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
    count of clipped conversions (float64 scalar tensor)."""
    G, NC = v.shape[0], nb * C
    out = torch.empty((G, NC), dtype=torch.float32, device=v.device)
    block = 1024
    programs = triton.cdiv(NC, block)
    clips = torch.empty((G * programs,), dtype=torch.int32, device=v.device)
    _adc_epilogue[(G, programs)](
        v, v if std is None else std.contiguous(), lo.reshape(-1).contiguous(), lsb.reshape(-1).contiguous(),
        w_t, out, clips, seed, T, NC, C, float(n_codes), HAS_NOISE=std is not None,
        PER_ROW=std is not None and std.shape[-1] == 1, BLOCK=block)
    return out, clips.sum(dtype=torch.float64)
