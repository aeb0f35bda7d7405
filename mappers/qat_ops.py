"""The arithmetic pieces of partial-sum QAT (:mod:`cimsim.mappers.qat`): the engine's bit planes and weight slices
with straight-through gradients, the comparators' decision and LSQ's scaled decision, the quantizers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from cimsim.errors import ConfigError

if TYPE_CHECKING:
    from cimsim.mappers.qat import PSQConfig


class LinearRows:
    """A linear layer's inputs as rows of a crossbar product, (positions, in), and its outputs back in the input's
    leading shape: the unfold of the hardware-aware linear layers (PSQ, sense-amp)."""

    def _patches(self, x):
        return x.reshape(-1, x.shape[-1]), x.shape[:-1]

    def _unpatch(self, y, shape):
        return y.reshape(*shape, -1)


class ConvRows:
    """A zero-padded 2-D convolution's input windows as rows, (batch x Ho x Wo, C_in x kh x kw), and its outputs
    back to (batch, C_out, Ho, Wo): the unfold of the hardware-aware convolutions (PSQ, sense-amp)."""

    def _patches(self, x):
        p = self.padding
        if isinstance(p, str):
            if p != "valid":
                raise ConfigError(f"{type(self).__name__}: padding={p!r} is not supported; use explicit padding")
            p = (0, 0)
        x = F.pad(x, (p[1], p[1], p[0], p[0]))
        B, C, H, W = x.shape
        k, s, d = self.kernel_size, self.stride, self.dilation
        cols = F.unfold(x, k, dilation=d, stride=s)
        Ho = (H - d[0] * (k[0] - 1) - 1) // s[0] + 1
        Wo = (W - d[1] * (k[1] - 1) - 1) // s[1] + 1
        return cols.transpose(1, 2).reshape(B * Ho * Wo, -1), (B, Ho, Wo)

    def _unpatch(self, y, shape):
        B, Ho, Wo = shape
        return y.reshape(B, Ho * Wo, -1).transpose(1, 2).reshape(B, -1, Ho, Wo)


def _ste(value: torch.Tensor, source: torch.Tensor, share: float) -> torch.Tensor:
    """``value`` forward, ``share`` x the gradient of ``source`` backward."""
    return value.detach() + share * (source - source.detach())


def bit_planes(x_int: torch.Tensor, cfg: PSQConfig, signed: bool) -> tuple[list[torch.Tensor], list[float]]:
    """The engine's input planes (LSB first; unsigned digits, the sign bit of signed inputs a cycle of its own) and
    their place values (the sign cycle's negative: :func:`cimsim.encoding.plane_weights`), with STE gradients."""
    a = cfg.input_bits
    u = torch.where(x_int < 0, x_int + 2 ** a, x_int) if signed else x_int
    u = u.detach()
    layout, places = cfg.plane_shifts(signed), cfg.plane_places(signed)
    norm = sum(p * p for p in places)
    planes = []
    for (s, w), place in zip(layout, places):
        p = torch.remainder(torch.floor(u / 2 ** s), 2 ** w)
        # without a gradient to carry (the partial sums' planes: their STE term is a product of its own) the
        # straight-through term adds zeros; the planes hold no -0.0, so leaving it out changes no value
        planes.append(_ste(p, x_int, place / norm) if x_int.requires_grad else p)
    return planes, list(places)


def stacked_planes(x_int: torch.Tensor, cfg: PSQConfig, signed: bool) -> torch.Tensor:
    """``torch.cat(bit_planes(x_int, cfg, signed)[0])`` for inputs without a gradient to carry: (T x M, K), the
    planes one after another. On the CPU (float32/float64, :data:`FUSED_CPU_DECISIONS`) cut in one numba pass
    (:func:`cimsim.kernels_psq.cut_planes`: the same integers) instead of three passes a plane and a copy."""
    if x_int.requires_grad or not (FUSED_CPU_DECISIONS and x_int.device.type == "cpu" and x_int.dim() == 2
                                   and x_int.dtype in (torch.float32, torch.float64)):
        return torch.cat(bit_planes(x_int, cfg, signed)[0])
    from cimsim.engine_threads import fixed_shares
    from cimsim.kernels_psq import BLOCK, cut_planes

    layout = cfg.plane_shifts(signed)
    shifts = np.array([s for s, _ in layout], dtype=np.int64)
    widths = np.array([w for _, w in layout], dtype=np.int64)
    x = x_int.detach().contiguous()
    M, K = x.shape
    out = torch.empty((len(layout) * M, K), dtype=x.dtype)
    X, O = x.numpy(), out.numpy()
    fixed_shares(lambda m0: cut_planes(X, shifts, widths, O, m0, min(m0 + BLOCK, M)), range(0, M, BLOCK),
                 torch.get_num_threads())
    return out


def weight_slices(w_int: torch.Tensor, cfg: PSQConfig) -> tuple[list[torch.Tensor], list[float]]:
    """Signed slice values ``sign(w) * level_j(|w|)`` (what G+ minus G- of a pair holds), STE gradients."""
    mag, sign = w_int.detach().abs(), torch.sign(w_int.detach())
    layout = cfg.slice_shifts()
    norm = sum(4.0 ** s for s, _ in layout)
    out, weights = [], []
    for s, w in layout:
        level = torch.remainder(torch.floor(mag / 2 ** s), 2 ** w)
        out.append(_ste(sign * level, w_int, 2.0 ** s / norm))
        weights.append(2.0 ** s)
    return out, weights


def decide(u: torch.Tensor, cfg: PSQConfig) -> torch.Tensor:
    """The comparators' decision on ``u = PS / alpha``: ternary -1 / 0 / +1 or binary -1 / +1 (at the configured
    threshold; with learned thresholds, where they start: :attr:`PSQConfig.initial_threshold`)."""
    if cfg.readout == "binary":
        return torch.where(u > 0, 1.0, -1.0).to(u.dtype)
    t = cfg.initial_threshold
    return (u > t).to(u.dtype) - (u < -t).to(u.dtype)


def quantize_activation(x: torch.Tensor, scale, bits: int, signed: bool) -> torch.Tensor:
    """Integer codes ``clamp(round(x / scale))`` (rounding passes the gradient through; ``scale``: a number or a
    learned tensor, which then gets LSQ's gradient once the caller multiplies the codes by it)."""
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    v = x / scale
    return _ste(torch.clamp(torch.round(v), lo, hi), torch.clamp(v, lo, hi), 1.0)


def quantize_weight_ste(w: torch.Tensor, bits: int, step: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric integers (as :func:`cimsim.mappers.quantize_weights`) and scales, STE.

    ``step`` (per output channel, learned: :func:`learn_weight_steps`): the scale is ``min(step, amax / qmax)``,
    so a learned step can only clip a channel's largest weights, never leave its top code unused (what lets
    :func:`learn_weight_steps` write it back as clipped weights that the mapper's max-scaling quantizes to the
    same integers); its gradient is LSQ's (``round(v) - v`` inside the range, ``+-qmax`` outside) once the caller
    multiplies the codes by the scale."""
    qmax = 2 ** (bits - 1) - 1
    flat = w.reshape(w.shape[0], -1)
    amax = flat.detach().abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    if step is None:
        v = flat / scale[:, None]
        return _ste(torch.clamp(torch.round(v), -qmax, qmax), v, 1.0), scale
    scale = torch.minimum(step, scale)
    v = flat / scale[:, None]
    return _ste(torch.clamp(torch.round(v), -qmax, qmax), torch.clamp(v, -qmax, qmax), 1.0), scale


class ScaledDecision(torch.autograd.Function):
    """``coef * alpha * D(PS / alpha)`` forward; LSQ's straight-through gradients backward (module docstring)."""

    @staticmethod
    def forward(ctx, ps, alpha, coef, readout, threshold, grad_scale):
        u = ps / alpha
        if readout == "binary":
            d = torch.where(u > 0, 1.0, -1.0).to(u.dtype)
        else:
            d = (u > threshold).to(u.dtype) - (u < -threshold).to(u.dtype)
        ctx.save_for_backward(u, d, alpha, coef)
        ctx.grad_scale = grad_scale
        return d * (alpha * coef)

    @staticmethod
    def backward(ctx, g):
        u, d, alpha, coef = ctx.saved_tensors
        g = g * coef
        inside = u.abs() <= 1
        grad_ps = g * inside
        grad = g * torch.where(inside, d - u, d)
        dims = tuple(i for i in range(grad.dim()) if alpha.shape[i] == 1 and grad.shape[i] > 1)   # broadcast
        grad_alpha = (grad.sum(dim=dims, keepdim=True) if dims else grad) * ctx.grad_scale
        return grad_ps, grad_alpha, None, None, None, None


# the CPU fine-tune's decisions and their sum in one numba pass each way (DecisionSum); False: eager torch everywhere
FUSED_CPU_DECISIONS = True


def _flat(ps, alpha, coef):
    """(T, M, S, O) of a row block and numpy views of its partial sums (T, M, J) and column scales (Ta, J)."""
    T, S, O = coef.shape[0], alpha.shape[2], alpha.shape[3]
    M = ps.shape[0] // T
    return (T, M, S, O, ps.detach().reshape(T, M, S * O).numpy(),
            alpha.detach().reshape(alpha.shape[0], S * O).contiguous().numpy())


class DecisionSum(torch.autograd.Function):
    """``ScaledDecision.apply(ps.reshape(T, M, S, O), alpha, coef, ...).sum(dim=(0, 2))`` (``t`` None), or
    ``ThresholdDecision``'s with learned thresholds ``t`` (alpha's shape), on the CPU in one pass
    (:mod:`cimsim.kernels_psq`): ``ps`` (T x M, S x O) contiguous, ``alpha`` (Ta, 1, S, O) with Ta = 1 or T,
    ``coef`` (T, 1, S, 1); (M, O) out. The same elementwise values and gradient of ``ps``; the sums (the output, the
    gradients of ``alpha`` and ``t``) in another order. ``z`` (M, S x O) and ``shares`` (T,), given together: the
    inputs' zero-valued straight-through term, taken as if ``shares_t z`` were added to cycle t's partial sums (it
    adds nothing forward); backward its gradient ``sum_t shares_t grad_ps_t`` comes from the same pass, in place of
    eager torch's broadcast product and its reduction."""

    @staticmethod
    def forward(ctx, ps, alpha, t, coef, readout, threshold, grad_scale, min_width, z=None, shares=None):
        from cimsim.engine_threads import fixed_shares
        from cimsim.kernels_psq import BLOCK, decision_sums

        T, M, S, O, P, a = _flat(ps, alpha, coef)
        thr = np.full(a.shape, threshold, P.dtype) if t is None else t.detach().reshape(a.shape).contiguous().numpy()
        w = (alpha.detach() * coef).reshape(T, S * O).contiguous().numpy()   # ScaledDecision's alpha * coef
        y = torch.empty((M, O), dtype=ps.dtype)
        Y, binary = y.numpy(), readout == "binary"
        fixed_shares(lambda m0: decision_sums(P, a, w, thr, binary, Y, m0, min(m0 + BLOCK, M)),
                     range(0, M, BLOCK), torch.get_num_threads())
        ctx.save_for_backward(ps, alpha, t, coef, shares)
        ctx.readout, ctx.threshold, ctx.grad_scale, ctx.min_width = readout, threshold, grad_scale, min_width
        ctx.ste = z is not None
        return y

    @staticmethod
    def backward(ctx, g):
        from cimsim.engine_threads import fixed_shares
        from cimsim.kernels_psq import BLOCK, decision_grads

        ps, alpha, t, coef, shares = ctx.saved_tensors
        T, M, S, O, P, a = _flat(ps, alpha, coef)
        c = coef.detach().expand(T, 1, S, O).reshape(T, S * O).contiguous().numpy()
        if t is None:
            thr, width = np.full(a.shape, ctx.threshold, P.dtype), a   # width unread without learned thresholds
        else:   # ThresholdDecision's dither half-width
            td = t.detach()
            thr = td.reshape(a.shape).contiguous().numpy()
            width = torch.clamp(torch.minimum(td, 1 - td), min=ctx.min_width).reshape(a.shape).contiguous().numpy()
        G = g.detach().contiguous().numpy()
        grad_ps = torch.empty_like(ps)
        gps = grad_ps.reshape(T, M, S * O).numpy()
        starts = range(0, M, BLOCK)
        ga = np.zeros((len(starts), *a.shape), dtype=P.dtype)   # each block's own: the same sums on any threads
        gt = np.zeros_like(ga) if t is not None else ga
        binary = ctx.readout == "binary"
        grad_z = torch.zeros((M, S * O), dtype=ps.dtype) if ctx.ste else None
        sh = shares.detach().to(ps.dtype).contiguous().numpy() if ctx.ste else np.empty(0, P.dtype)
        gz = grad_z.numpy() if ctx.ste else np.empty((0, 0), P.dtype)
        fixed_shares(lambda k: decision_grads(P, a, c, thr, width, t is not None, binary, G, gps, ga[k], gt[k], sh,
                                              gz, starts[k], min(starts[k] + BLOCK, M)),
                     range(len(starts)), torch.get_num_threads())
        grad_alpha = torch.from_numpy(ga.sum(axis=0)).reshape(alpha.shape) * ctx.grad_scale
        grad_t = None if t is None else torch.from_numpy(gt.sum(axis=0)).reshape(t.shape) * ctx.grad_scale
        grads = (grad_ps, grad_alpha, grad_t, None, None, None, None, None)
        return grads + (grad_z, None) if ctx.ste else grads


def decision_sum(ps: torch.Tensor, alpha: torch.Tensor, coef: torch.Tensor, readout: str, threshold: float,
                 grad_scale: float, t: torch.Tensor | None = None, min_width: float = 0.0,
                 ste: tuple | None = None) -> torch.Tensor:
    """(M, O): the sum over cycles and slices of :class:`ScaledDecision` on ``ps`` (T x M, S x O), or of
    :class:`ThresholdDecision` with learned thresholds ``t`` (alpha's shape; ``min_width`` its dither's least
    half-width): by :class:`DecisionSum` on the CPU (float32 or float64, :data:`FUSED_CPU_DECISIONS`), else in
    eager torch. ``ste``: ``(z, shares)``, the inputs' zero-valued straight-through term ``shares_t z`` of cycle
    t's partial sums (:meth:`cimsim.mappers.qat._PSQ.partial_sums`), added here (eager) or carried by the
    one pass's backward (:class:`DecisionSum`)."""
    T, S, O = coef.shape[0], alpha.shape[2], alpha.shape[3]
    if (FUSED_CPU_DECISIONS and ps.device.type == "cpu" and ps.dtype in (torch.float32, torch.float64)
            and alpha.dtype == ps.dtype and ps.is_contiguous() and (t is None or t.dtype == ps.dtype)
            and (ste is None or (ste[0].dtype == ps.dtype and ste[0].shape == (ps.shape[0] // T, ps.shape[1])))):
        if ste is None:
            return DecisionSum.apply(ps, alpha, t, coef, readout, threshold, grad_scale, min_width)
        return DecisionSum.apply(ps, alpha, t, coef, readout, threshold, grad_scale, min_width, *ste)
    if ste is not None:
        z, shares = ste
        ps = (ps.reshape(T, -1, z.shape[1]) + shares[:, None, None] * z[None]).reshape(ps.shape)
    if t is None:
        q = ScaledDecision.apply(ps.reshape(T, -1, S, O), alpha, coef, readout, threshold, grad_scale)
    else:
        q = ThresholdDecision.apply(ps.reshape(T, -1, S, O), alpha, t, coef, grad_scale, min_width)
    return q.sum(dim=(0, 2))


def grid_thresholds(t: torch.Tensor, bits: int) -> torch.Tensor:
    """Learned thresholds on their reference DAC's grid: ``clamp(round(t * 2**bits), 0, 2**bits - 1) / 2**bits``, so
    in [0, 1) (units of alpha); the rounding passes the gradient straight through. Exact multiples of ``2**-bits``."""
    n = 2.0 ** bits
    return _ste(torch.clamp(torch.round(t.detach() * n), 0, n - 1) / n, t, 1.0)


class ThresholdDecision(torch.autograd.Function):
    """``coef * alpha * D(PS / alpha; t)``, ``D = (u > t) - (u < -t)`` with a learned threshold ``t`` per column scale
    (its shape, broadcast like ``alpha``). Backward: PS and alpha as :class:`ScaledDecision` (LSQ); for ``t`` the
    derivative of the decision averaged over a uniform dither of the threshold of half-width ``w``:
    ``E[D(u; t + e)], e ~ U(-w, w)`` is two hard-sigmoid steps of width ``2w`` centred on ``+-t``, so
    ``dD/dt = -sign(u) / (2w)`` where ``||u| - t| < w`` and 0 elsewhere: the clipped-identity straight-through
    estimator (Bengio et al., arXiv 1308.3432; the hard-tanh STE of Binarized Neural Networks, arXiv 1602.02830:
    docs/references.md#ste) applied to the step's position. ``w = min(t, 1 - t)`` (est., our choice), at least
    ``min_width``: the step spread over the interval between the levels it separates (0 and 1); at t = 0.5 the smoothed decision is
    ``clamp(u, -1, 1)``, the surrogate LSQ's backward already uses for PS and alpha. The gradient of ``t`` is scaled
    like alpha's (``grad_scale``); ``min_width`` keeps it finite at t = 0 (the caller's: half a grid step)."""

    @staticmethod
    def forward(ctx, ps, alpha, t, coef, grad_scale, min_width):
        u = ps / alpha
        d = (u > t).to(u.dtype) - (u < -t).to(u.dtype)
        ctx.save_for_backward(u, d, alpha, t, coef)
        ctx.grad_scale, ctx.min_width = grad_scale, min_width
        return d * (alpha * coef)

    @staticmethod
    def backward(ctx, g):
        u, d, alpha, t, coef = ctx.saved_tensors
        g = g * coef
        inside = u.abs() <= 1
        dims = tuple(i for i in range(g.dim()) if alpha.shape[i] == 1 and g.shape[i] > 1)   # broadcast
        grad = g * torch.where(inside, d - u, d)
        grad_alpha = (grad.sum(dim=dims, keepdim=True) if dims else grad) * ctx.grad_scale
        w = torch.clamp(torch.minimum(t, 1 - t), min=ctx.min_width)
        near = ((u.abs() - t).abs() < w).to(u.dtype)
        gt = g * alpha * near * (-torch.sign(u) / (2 * w))
        grad_t = (gt.sum(dim=dims, keepdim=True) if dims else gt) * ctx.grad_scale
        return g * inside, grad_alpha, grad_t, None, None, None


_CONSTS: dict = {}


def cached_constant(values: tuple, like: torch.Tensor) -> torch.Tensor:
    """A small constant vector on ``like``'s device and dtype, made once (a fresh host-to-device copy per
    step would wait for the accelerator's queued work)."""
    key = (values, like.device, like.dtype)
    if key not in _CONSTS:
        _CONSTS[key] = torch.tensor(values, dtype=like.dtype, device=like.device)
    return _CONSTS[key]


# ------------------------------------------------------------------------------------------------ ADC-read layers
# our choice, the engine's default (cimsim.CrossbarSpec.calibration_percentile): the 99.9th percentile of |PS| sets
# the range of a layer read by an ADC (hcim adc_layers), so 0.1 % of the calibration batch's conversions clip
ADC_RANGE_PERCENTILE = 99.9


def adc_range(ps: torch.Tensor) -> tuple[float, float]:
    """(lo, hi) of an ADC reading pair values ``ps``: the engine's calibration rule (:meth:`cimsim.Crossbar.calibrate`),
    ``[-p, max(p, 1 - p)]`` with p the :data:`ADC_RANGE_PERCENTILE` of |PS| (float64, numpy's percentile)."""
    import numpy as np

    p = float(np.percentile(ps.detach().double().abs().reshape(-1).cpu().numpy(), ADC_RANGE_PERCENTILE))
    return -p, max(p, 1.0 - p)


def adc_lo_lsb(lo: float, hi: float, bits: int) -> tuple[float, float]:
    """The engine's quantizer over (lo, hi) (:meth:`cimsim.Crossbar.ranges`, the same function): an integer ``lo``
    (floored) and the smallest power-of-two LSB of at least one level whose ``2**bits`` codes cover the range."""
    from cimsim.crossbar import quantizer_lo_lsb

    return quantizer_lo_lsb(lo, hi, bits)


def adc_quantize(ps: torch.Tensor, lo: float, lsb: float, bits: int) -> torch.Tensor:
    """The engine's uniform quantizer (:class:`cimsim.readouts.QuantizerOp`, ideal converter): ``lo + lsb * code``,
    ``code = clamp(floor((ps - lo) / lsb + 0.5), 0, 2**bits - 1)``; backward: the identity inside the range and
    zero beyond it (a straight-through estimator of the rounding, the clipping's gradient kept)."""
    top = 2 ** bits - 1
    with torch.no_grad():
        q = torch.clamp(torch.floor((ps - lo) / lsb + 0.5), 0, top) * lsb + lo
    inside = torch.clamp(ps, lo, lo + top * lsb)
    return inside + (q - inside).detach()
