"""The sense-amp product of :mod:`cimsim.mappers.snn_qat` as one autograd function whose memory does not grow with
the partial sums.

Forward (module docstring of :mod:`~cimsim.mappers.snn_qat`): for every row block ``r`` and every input bit plane,
``PS = plane[rows of r] @ levels[:, rows of r].T`` (one column per slice, polarity and output: ``C = S * 2 * O``),
``q = s * H(PS / s - threshold)`` for binarized columns (``PS`` itself for columns that stay exact), and the layer
adds ``sum_t w_t * sum_c coef_c * q`` per output. Written as plain torch operations, autograd keeps every block's
``PS / s`` and decision for the backward pass: ``2 x (planes x patch rows) x C`` numbers per row block, per layer
and per time step (4.3 GB for one training step of ``snn_dvsnet`` at batch 4, BENCHMARKS.md, issue 17). This
function keeps only its inputs (the planes, which autograd held anyway, the cell levels and the scales) and
recomputes the partial sums in the backward pass, one more GEMM per block; both passes work through the patch rows
``CHUNK_ELEMENTS`` partial sums at a time, so their temporaries stay bounded whatever the batch.

The forward numbers are the plain composition's, operation for operation: the same GEMM per row (each partial sum is
a sum of products of small integers on ideal cells, exact in float32 as in float64: at most ``rows x (2**cell_bits
- 1) x (2**dac_bits - 1)`` = 64 for adcless-snn, far below 2**24, so the chunking cannot change it), the same
division, comparison and per-row reduction over a row's ``C`` columns. Gradients (LSQ's straight-through
estimator, as before): ``dq/dPS = 1`` on ``0 <= PS/s <= 1``, else 0; ``dq/ds = H - PS/s`` inside, ``H`` outside,
times ``grad_scale``; exact columns pass ``dq/dPS = 1``. Sums over chunks may differ from one sum in the last bits.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

# our choice: partial sums computed 2**24 at a time (64 MB in float32); a block's temporaries are a few of these
CHUNK_ELEMENTS = 1 << 24


def _chunks(n_rows: int, T: int, cols: int) -> list[tuple[int, int, int]]:
    """(plane, first row, end row) of every chunk of ``n_rows // T`` rows per plane, ``CHUNK_ELEMENTS // cols``
    rows at most."""
    M = n_rows // T
    step = max(1, CHUNK_ELEMENTS // max(cols, 1))
    return [(t, t * M + a, t * M + min(a + step, M)) for t in range(T) for a in range(0, M, step)]


def _readout(ps: torch.Tensor, s: torch.Tensor, threshold: float, keep) -> torch.Tensor:
    """``s * H(PS / s - threshold)`` where binarized (``keep`` True, or every column for ``keep is None``), ``PS``
    where exact (``keep`` False)."""
    if keep is False:
        return ps
    q = (ps / s > threshold).to(ps.dtype) * s
    return q if keep is None else torch.where(keep, q, ps)


class SenseAmpProduct(torch.autograd.Function):
    """``(M, O)`` accumulated readouts of one layer (module docstring). ``P``: the input planes stacked, ``(T * M,
    K)``; ``levels``: ``(C, K)`` cell levels; ``scale``: ``(R, C)`` learned column scales; ``coef``: ``(C,)`` each
    column's digital weight; ``keep``: ``None`` (every column binarized), ``False`` (every column exact) or an
    ``(R, C)`` boolean mask of the binarized columns; ``pw``: the planes' weights; ``blocks``: the row blocks
    ``(k0, k1)``; ``grad_scale``: LSQ's gradient scale of the scales; ``outputs``: ``O``."""

    @staticmethod
    def forward(ctx, P, levels, scale, coef, keep, pw, blocks, threshold, grad_scale, outputs):
        T, C, O = len(pw), levels.shape[0], outputs
        M = P.shape[0] // T
        y = P.new_zeros(M, O)
        for r, (k0, k1) in enumerate(blocks):
            L, kr = levels[:, k0:k1], _block_keep(keep, r)
            z = P.new_empty(T * M, O)
            for _, a, b in _chunks(P.shape[0], T, C):
                q = _readout(P[a:b, k0:k1] @ L.T, scale[r][None, :], threshold, kr)
                z[a:b] = (q * coef[None, :]).reshape(b - a, -1, O).sum(dim=1)
            z = z.reshape(T, M, O)
            y = y + sum(w * z[t] for t, w in enumerate(pw))
        ctx.save_for_backward(P, levels, scale, coef, keep if isinstance(keep, torch.Tensor) else None)
        ctx.keep_flag = keep if not isinstance(keep, torch.Tensor) else True
        ctx.pw, ctx.blocks, ctx.threshold, ctx.grad_scale, ctx.outputs = pw, blocks, threshold, grad_scale, O
        return y

    @staticmethod
    def backward(ctx, gy):
        P, levels, scale, coef, mask = ctx.saved_tensors
        keep = mask if ctx.keep_flag is True else ctx.keep_flag
        need_p, need_l, need_s = ctx.needs_input_grad[:3]
        pw, O, T, C = ctx.pw, ctx.outputs, len(ctx.pw), levels.shape[0]
        M = P.shape[0] // T
        gp = torch.zeros_like(P) if need_p else None
        gl = torch.zeros_like(levels) if need_l else None
        gs = torch.zeros_like(scale) if need_s else None
        coef2 = coef.reshape(-1, O)                        # (S * 2, O): slice-major then polarity, as the columns
        for r, (k0, k1) in enumerate(ctx.blocks):
            L, kr, s = levels[:, k0:k1], _block_keep(keep, r), scale[r][None, :]
            for t, a, b in _chunks(P.shape[0], T, C):
                rows = slice(a - t * M, b - t * M)
                gq = ((pw[t] * gy[rows])[:, None, :] * coef2[None]).reshape(b - a, C)   # dLoss/dq
                pc = P[a:b, k0:k1]
                if kr is False:
                    gps = gq
                else:
                    u = (pc @ L.T) / s
                    inside = (u >= 0) & (u <= 1)
                    if need_s:
                        d = (u > ctx.threshold).to(u.dtype)
                        part = gq * torch.where(inside, d - u, d)
                        gs[r] += (part if kr is None else part * kr).sum(dim=0)
                    gps = gq * inside
                    if kr is not None:
                        gps = torch.where(kr, gps, gq)
                if need_p:
                    gp[a:b, k0:k1] = gps @ L
                if need_l:
                    gl[:, k0:k1] += gps.T @ pc
        if need_s:
            gs *= ctx.grad_scale
        return gp, gl, gs, None, None, None, None, None, None, None


class Reattached(torch.autograd.Function):
    """``value`` forward (a tensor computed once, detached, and reused by every call until ``source`` changes);
    backward, the gradient that ``build(source)`` would pass to ``source``, rebuilt from ``source`` for this call.

    Every call is its own node of the graph, which keeps nothing but ``source``: a second backward pass (gradient
    accumulation, a second batch before the optimizer step) finds its own node intact, where a cached
    differentiable tensor would belong to the first pass's graph, freed by its backward. The forward returns a view
    of ``value``: the calls share its memory."""

    @staticmethod
    def forward(ctx, source, value, build):
        ctx.save_for_backward(source)
        ctx.build = build
        return value.view_as(value)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        (source,) = ctx.saved_tensors
        with torch.enable_grad():
            s = source.detach().requires_grad_(True)
            (gs,) = torch.autograd.grad(ctx.build(s), s, g)
        return gs, None, None


def _block_keep(keep, r: int):
    return keep[r][None, :] if isinstance(keep, torch.Tensor) else keep
