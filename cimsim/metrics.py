"""What a network's outputs are scored by: top-1 accuracy for class labels, average endpoint error for flow.

A batch's targets say which: integer labels ``(B,)`` are classes; floating-point targets ``(B, 2, H, W)`` are
per-pixel optical flow (pixels), scored by the **average endpoint error** (AEE, the optical-flow metric of
Baker et al., IJCV 2011, used by MVSEC and Spike-FlowNet): ``AEE = mean over pixels of ||f_pred - f_true||_2``,
averaged per sample, then over samples. Lower is better; 0 is exact.
"""

from __future__ import annotations

import torch


def is_flow(y: torch.Tensor) -> bool:
    """Whether targets ``y`` are per-pixel flow (B, 2, H, W) rather than class labels."""
    return bool(y.is_floating_point() and y.dim() == 4 and y.shape[1] == 2)


def endpoint_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per sample (B,): the mean over pixels of the Euclidean distance between predicted and true flow."""
    return torch.linalg.vector_norm(pred - target, dim=1).flatten(1).mean(dim=1)


def batch_score_sum(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """:func:`batch_score` as a 0-d tensor on the outputs' device (no host synchronisation: a training loop on a
    GPU adds these up and reads the total once per epoch)."""
    if is_flow(y):
        return endpoint_error(out, y).sum()
    return (out.argmax(1) == y).sum()


def batch_score(out: torch.Tensor, y: torch.Tensor) -> float:
    """Summed over the batch: correct top-1 predictions (labels) or per-sample AEEs (flow)."""
    return float(batch_score_sum(out, y))
