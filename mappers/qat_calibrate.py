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

from cimsim.calibration import tensor_percentile

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


def activation_range(acts: torch.Tensor, bits: int) -> tuple[float, bool]:
    """(input scale, signed) by the mapper's rule: the 99.99th percentile of |activation| over every calibration
    activation maps to the top code (numpy's percentile bit for bit, by selection where the values are:
    :func:`cimsim.calibration.tensor_percentile`)."""
    signed = bool(acts.min() < 0)
    qmax = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
    magnitudes = acts.detach().reshape(-1).abs()        # a copy, which the selection reorders
    vmax = float(magnitudes.max())                       # first: the fallback where the percentile is 0
    amax = tensor_percentile(magnitudes, ACTIVATION_PERCENTILE)
    if amax <= 0:
        amax = vmax or 1.0
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
