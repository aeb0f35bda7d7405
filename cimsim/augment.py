"""Training-time data augmentation for image batches (random crops after zero padding, left-right flips), drawn
from a torch generator. Engine level: the trainers (:mod:`cimsim.workloads.train`) and the fine-tuners
(:mod:`cimsim.mappers.psq_finetune`) both use it, so it lives below both."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment(x: torch.Tensor, recipe, gen: torch.Generator) -> torch.Tensor:
    """A batch (N, C, H, W) randomly cropped after zero padding by ``recipe.crop_pad`` pixels and flipped
    left-right with probability 1/2 if ``recipe.flip`` (any object with those two fields), drawn from ``gen``."""
    if x.dim() != 4:
        return x
    n, c, h, w = x.shape
    if recipe.crop_pad > 0:
        p = recipe.crop_pad
        padded = F.pad(x, (p, p, p, p))
        oi = torch.randint(0, 2 * p + 1, (n,), generator=gen, device=gen.device).to(x.device)
        oj = torch.randint(0, 2 * p + 1, (n,), generator=gen, device=gen.device).to(x.device)
        rows = (oi[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (oj[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        x = padded[torch.arange(n, device=x.device)[:, None, None, None],
                   torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    if recipe.flip:
        mask = (torch.rand(n, generator=gen, device=gen.device) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x
