"""Training-time data augmentation for image batches (random crops after zero padding, left-right flips), drawn
from a torch generator. Engine level: the trainers (:mod:`cimsim.workloads.train`) and the fine-tuners
(:mod:`cimsim.mappers.psq_finetune`) both use it, so it lives below both."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draws(n: int, recipe, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The random numbers :func:`augment` takes for a batch of ``n`` images, drawn from ``gen`` in its order
    (crop offsets down, across; flips), on ``gen``'s device."""
    out = {}
    if recipe.crop_pad > 0:
        p = recipe.crop_pad
        out["oi"] = torch.randint(0, 2 * p + 1, (n,), generator=gen, device=gen.device)
        out["oj"] = torch.randint(0, 2 * p + 1, (n,), generator=gen, device=gen.device)
    if recipe.flip:
        out["flip"] = torch.rand(n, generator=gen, device=gen.device) < 0.5
    return out


def epoch_draws(batches: list[int], recipe, gen: torch.Generator, device) -> dict[str, torch.Tensor]:
    """:func:`draws` of every batch of an epoch (sizes ``batches``, in order), concatenated and moved to ``device``
    at once: the same numbers as drawing batch by batch, with one host-to-device copy per epoch."""
    per = [draws(n, recipe, gen) for n in batches]
    return {k: torch.cat([d[k] for d in per]).to(device) for k in (per[0] if per else {})}


def apply(x: torch.Tensor, recipe, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """Crop and flip the batch ``x`` (N, C, H, W) with the draws ``d`` (:func:`draws`, on ``x``'s device)."""
    if x.dim() != 4:
        return x
    n, c, h, w = x.shape
    if recipe.crop_pad > 0:
        p = recipe.crop_pad
        padded = F.pad(x, (p, p, p, p))
        rows = (d["oi"][:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (d["oj"][:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        x = padded[torch.arange(n, device=x.device)[:, None, None, None],
                   torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    if recipe.flip:
        x = torch.where(d["flip"][:, None, None, None], x.flip(3), x)
    return x


def augment(x: torch.Tensor, recipe, gen: torch.Generator) -> torch.Tensor:
    """A batch (N, C, H, W) randomly cropped after zero padding by ``recipe.crop_pad`` pixels and flipped
    left-right with probability 1/2 if ``recipe.flip`` (any object with those two fields), drawn from ``gen``."""
    if x.dim() != 4:
        return x
    return apply(x, recipe, {k: v.to(x.device) for k, v in draws(x.shape[0], recipe, gen).items()})
