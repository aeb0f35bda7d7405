"""Calibration helpers shared by PSQ fine-tuning (:mod:`cimsim.mappers.qat`) and the mapper
(:mod:`cimsim.mappers.mapper`): the order in which a forward pass first calls a network's layers (with their inputs
recorded), a layer's input range from calibration activations by the mapper's percentile rule, and LSQ's initial
column scales from the engine's own encodings. All re-exported by :mod:`cimsim.mappers.qat`, where callers find them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from cimsim.mappers.qat import PSQConfig

# our choice: the 99.99th percentile of |activation| sets the input range, so one outlier in the calibration
# batches cannot waste input codes (0.01 % of calibration values clip); the mapper uses the same rule, so the
# fine-tuned and the mapped network quantize their inputs identically
ACTIVATION_PERCENTILE = 99.99


def _record(seen: dict, order: list, name: str, inputs) -> None:
    """Forward pre-hook body: keep a layer's input, and note the layer in ``order`` at its first call."""
    if not seen[name]:
        order.append(name)
    seen[name].append(inputs[0].detach())


def called_order(model: nn.Module, names, example: torch.Tensor) -> list[str]:
    """The sub-modules ``names`` in the order of their first call by a forward pass of ``model`` on ``example``."""
    order: list[str] = []
    mods = dict(model.named_modules())
    handles = [mods[n].register_forward_pre_hook(lambda mod, inp, n=n: order.append(n) if n not in order else None)
               for n in names]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return order


def first_called(model: nn.Module, names, example: torch.Tensor) -> str | None:
    """The first of the sub-modules ``names`` that a forward pass of ``model`` on ``example`` calls."""
    order = called_order(model, names, example)
    return order[0] if order else None


def top_percentile(values: torch.Tensor, percentile: float) -> float:
    """``np.percentile(values.double().abs().numpy(), percentile)`` (numpy's default, linear) bit for bit, from the
    two order statistics it interpolates between, selected where the values are (a GPU's values stay there):
    the largest ``n - floor(q (n - 1))`` magnitudes, on the CPU among those above a threshold read from every
    64th value (exact whatever the threshold; all of them when too few pass), then numpy's own interpolation
    formula in float64 (widening float32 or float16 is exact). ``tests/test_activation_range.py``."""
    x = values.detach().reshape(-1).abs()
    n = int(x.numel())
    if n == 0:
        raise ValueError("a percentile of no values")
    q = np.true_divide(np.float64(percentile), 100)
    vi = (n - 1) * q                                   # numpy's virtual index of method 'linear'
    below = np.floor(vi)
    gamma = vi - below
    lo = int(below) if vi < n - 1 else n - 1
    k = n - lo                                         # ranks lo .. n-1: the top k
    top = None
    if x.device.type == "cpu" and n > 1 << 16 and k < n // 256:
        stride = 64
        sample = x[::stride]
        ks = min(int(sample.numel()), k // stride + 1)
        threshold = torch.topk(sample, ks).values[-1]  # about ks * stride values lie at or above it
        candidates = x[x >= threshold]
        if candidates.numel() >= k:
            top = torch.topk(candidates, k).values
    if top is None:
        top = torch.topk(x, k).values
    top = top.double().cpu().numpy()[::-1]             # ascending: top[0] is rank lo
    a, b = np.float64(top[0]), np.float64(top[min(1, k - 1)])
    diff = b - a
    return float(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)


def activation_range(acts: torch.Tensor, bits: int) -> tuple[float, bool]:
    """(input scale, signed) by the mapper's rule: the 99.99th percentile of |activation| over every calibration
    activation (:func:`top_percentile`) maps to the top code."""
    signed = bool(acts.min() < 0)
    qmax = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
    amax = top_percentile(acts, ACTIVATION_PERCENTILE)
    if amax <= 0:
        amax = float(acts.detach().abs().max()) or 1.0
    return amax / qmax, signed


def lsq_scales(x_int: np.ndarray, w_int: np.ndarray, cfg: PSQConfig, input_signed: bool) -> np.ndarray:
    """LSQ's initial column scales ``max(1, 2 * mean |PS|)`` (row blocks, [cycles,] slices, outputs) from integer
    inputs (positions, K) and weights (O, K), computed with the engine's own encodings (for layers mapped without
    PSQ); per cycle (``cfg.cycle_scales``) the mean of each cycle's partial sums."""
    from cimsim.encoding import input_planes, slice_weights

    planes, _ = input_planes(x_int, cfg.input_bits, cfg.dac_bits, input_signed)
    sl = slice_weights(w_int, cfg.weight_bits, cfg.cell_bits, "differential")
    D = (sl.levels[:, 0] - sl.levels[:, 1]).astype(np.float64)         # (S, O, K)
    blocks = cfg.row_blocks(w_int.shape[1])
    T, n = len(planes), x_int.shape[0]
    out = np.empty((len(blocks), *((T,) if cfg.cycle_scales else ()), D.shape[0], D.shape[1]))
    for r, (k0, k1) in enumerate(blocks):
        for j in range(D.shape[0]):
            tots = [np.abs(p[:, k0:k1].astype(np.float64) @ D[j][:, k0:k1].T).sum(axis=0) for p in planes]
            if cfg.cycle_scales:
                for t in range(T):
                    out[r, t, j] = tots[t] / n
            else:
                out[r, j] = sum(tots) / (T * n)
    return np.maximum(2 * out, 1.0)
