"""Attention with its projections as separate layers, so the mapper can place them on crossbars.

``nn.MultiheadAttention`` keeps its query, key and value projections in one packed parameter and calls them through
``F.multi_head_attention_forward`` (or a fused kernel), never through a layer's ``forward``; the mapper sees no
``nn.Linear`` it could program, and ``nn.TransformerEncoderLayer``'s fast path reads its sub-layers' weights directly.
:func:`unfuse` puts a :class:`SplitAttention` in place of every ``nn.MultiheadAttention`` it can express: the same
function (tested against torch's to float rounding, with every mask form, ``need_weights``, ``kdim``/``vdim``, batch
first or not, unbatched inputs) with four ``nn.Linear`` layers, ``q_proj``, ``k_proj``, ``v_proj`` (the packed
weight's three blocks) and ``out_proj``, and the attention itself (scores, softmax, weighted values: products of two
activations, which no programmed array holds) in torch functions the profile costs as digital work.

Modelling choices: the three projections are three layers (three arrays, each driven by its own input; a packed
3E x E array would share one input drive between them in self-attention); torch's fused paths are declined by the
module having no packed projection (``in_proj_bias is None``: ``nn.TransformerEncoderLayer`` then runs its
layer-by-layer path, the same arithmetic), and an ``nn.TransformerEncoder`` no longer turns padded batches into
nested tensors (``use_nested_tensor = False``): with a key padding mask, the outputs at padded positions are the
layer-by-layer path's numbers where the nested path gives zeros; the positions that are not padded are the same.
Attention with ``add_bias_kv`` or ``add_zero_attn`` is left as it is (kept digital, its work costed by
:mod:`cimsim.mappers.profile_ops`). :func:`fuse` packs a split network back into torch's modules, the same weights
(ADMM prunes the projections split and saves the network packed, so its checkpoint loads into the zoo model).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _float_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A boolean mask (True: not attended) as an additive one (-inf there, 0 elsewhere); a float mask as it is."""
    if mask is None or mask.is_floating_point():
        return mask
    if mask.dtype != torch.bool:
        raise TypeError(f"attention masks are boolean or floating point, got {mask.dtype}")
    return torch.zeros_like(mask, dtype=dtype).masked_fill_(mask, float("-inf"))


class SplitAttention(nn.Module):
    """``nn.MultiheadAttention`` (same arguments, same outputs) with separate query, key, value and output
    projections. Built from an existing one by :meth:`from_torch`; its dropout acts in training only, as torch's."""

    # no packed projection: torch's fused encoder paths check these and take their layer-by-layer path
    in_proj_weight = None
    in_proj_bias = None
    _qkv_same_embed_dim = False

    def __init__(self, embed_dim: int, num_heads: int, *, bias: bool = True, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, dropout: float = 0.0,
                 device=None, dtype=None):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        kw = {"device": device, "dtype": dtype}
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.kdim, self.vdim = kdim or embed_dim, vdim or embed_dim
        self.batch_first, self.dropout = batch_first, dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **kw)
        self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias, **kw)
        self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias, **kw)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **kw)

    @classmethod
    @torch.no_grad()
    def from_torch(cls, mha: nn.MultiheadAttention) -> "SplitAttention":
        """The same attention as ``mha`` (its weights copied, its training mode kept)."""
        w = mha.out_proj.weight
        new = cls(mha.embed_dim, mha.num_heads, bias=mha.in_proj_bias is not None, kdim=mha.kdim, vdim=mha.vdim,
                  batch_first=mha.batch_first, dropout=mha.dropout, device=w.device, dtype=w.dtype)
        if mha._qkv_same_embed_dim:
            weights = mha.in_proj_weight.chunk(3)
        else:
            weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
        biases = (None,) * 3 if mha.in_proj_bias is None else mha.in_proj_bias.chunk(3)
        for lin, wt, b in zip((new.q_proj, new.k_proj, new.v_proj), weights, biases):
            lin.weight.copy_(wt)
            if b is not None:
                lin.bias.copy_(b)
        new.out_proj.weight.copy_(w)
        if mha.out_proj.bias is not None:
            new.out_proj.bias.copy_(mha.out_proj.bias)
        return new.train(mha.training)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, E) -> (N, heads, L, head_dim)."""
        n, length, _ = x.shape
        return x.reshape(n, length, self.num_heads, self.head_dim).transpose(1, 2)

    def _mask(self, attn_mask, key_padding_mask, n: int, tgt: int, src: int, dtype) -> torch.Tensor | None:
        """The additive mask of every (example, head, query, key), broadcastable: torch's rules and shapes."""
        merged = None
        attn_mask = _float_mask(attn_mask, dtype)
        if attn_mask is not None:
            if attn_mask.dim() == 2:
                if tuple(attn_mask.shape) != (tgt, src):
                    raise RuntimeError(f"The shape of the 2D attn_mask is {tuple(attn_mask.shape)}, but should be "
                                       f"{(tgt, src)}.")
                merged = attn_mask[None, None]
            elif attn_mask.dim() == 3:
                if tuple(attn_mask.shape) != (n * self.num_heads, tgt, src):
                    raise RuntimeError(f"The shape of the 3D attn_mask is {tuple(attn_mask.shape)}, but should be "
                                       f"{(n * self.num_heads, tgt, src)}.")
                merged = attn_mask.reshape(n, self.num_heads, tgt, src)
            else:
                raise RuntimeError(f"attn_mask's dimension {attn_mask.dim()} is not supported")
        key_padding_mask = _float_mask(key_padding_mask, dtype)
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (n, src):
                raise RuntimeError(f"expecting key_padding_mask shape of {(n, src)}, but got "
                                   f"{tuple(key_padding_mask.shape)}")
            pad = key_padding_mask[:, None, None, :]
            merged = pad if merged is None else merged + pad
        return merged

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if is_causal and attn_mask is None:
            raise RuntimeError("Need attn_mask if specifying the is_causal hint (as nn.MultiheadAttention).")
        batched = query.dim() == 3
        if not batched:   # (L, E): one example
            query, key, value = query[None], key[None], value[None]
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask[None]
        elif not self.batch_first:   # (L, N, E) -> (N, L, E)
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        n, tgt, src = query.shape[0], query.shape[1], key.shape[1]
        q = self._heads(self.q_proj(query))
        k = self._heads(self.k_proj(key))
        v = self._heads(self.v_proj(value))
        mask = self._mask(attn_mask, key_padding_mask, n, tgt, src, q.dtype)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:   # the weights are returned: formed explicitly (torch does the same)
            scores = (q * math.sqrt(1.0 / self.head_dim)) @ k.transpose(-2, -1)
            if mask is not None:
                scores = scores + mask
            weights = torch.softmax(scores, dim=-1)
            if p > 0:
                weights = F.dropout(weights, p=p)
            out = weights @ v
            if average_attn_weights:
                weights = weights.mean(dim=1)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        out = self.out_proj(out.transpose(1, 2).reshape(n, tgt, self.embed_dim))
        if not batched:
            return out[0], None if weights is None else weights[0]
        return (out if self.batch_first else out.transpose(0, 1)), weights


    @torch.no_grad()
    def to_torch(self) -> nn.MultiheadAttention:
        """The same attention as one ``nn.MultiheadAttention`` (weights packed as torch packs them)."""
        w = self.out_proj.weight
        mha = nn.MultiheadAttention(self.embed_dim, self.num_heads, dropout=self.dropout,
                                    bias=self.q_proj.bias is not None, kdim=self.kdim, vdim=self.vdim,
                                    batch_first=self.batch_first, device=w.device, dtype=w.dtype)
        projections = (self.q_proj, self.k_proj, self.v_proj)
        if mha._qkv_same_embed_dim:
            mha.in_proj_weight.copy_(torch.cat([p.weight for p in projections]))
        else:
            for packed, p in zip((mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight), projections):
                packed.copy_(p.weight)
        if mha.in_proj_bias is not None:
            mha.in_proj_bias.copy_(torch.cat([p.bias for p in projections]))
            mha.out_proj.bias.copy_(self.out_proj.bias)
        mha.out_proj.weight.copy_(w)
        return mha.train(self.training)


def why_not_split(mha: nn.MultiheadAttention) -> str | None:
    """Why an ``nn.MultiheadAttention`` keeps its packed form (None: it can be split)."""
    if mha.bias_k is not None:
        return "add_bias_kv=True (its learned key and value rows are not split out)"
    if mha.add_zero_attn:
        return "add_zero_attn=True (not split out)"
    return None


def unfuse(model: nn.Module) -> list[str]:
    """Put a :class:`SplitAttention` in place of every ``nn.MultiheadAttention`` of ``model`` that can be split (in
    place); turn off ``nn.TransformerEncoder``'s nested-tensor path. Returns the names of the attentions split."""
    split = []
    for name, mod in list(model.named_modules()):
        if name and isinstance(mod, nn.MultiheadAttention) and why_not_split(mod) is None:
            model.set_submodule(name, SplitAttention.from_torch(mod))
            split.append(name)
    for mod in model.modules():
        if isinstance(mod, nn.TransformerEncoder):
            mod.use_nested_tensor = False
    return split


def fuse(model: nn.Module) -> list[str]:
    """Undo :func:`unfuse` (in place): every :class:`SplitAttention` back into an ``nn.MultiheadAttention`` with the
    same weights, so the network's parameters have torch's names again (a checkpoint any copy of the model loads).
    Returns the names packed."""
    packed = []
    for name, mod in list(model.named_modules()):
        if name and isinstance(mod, SplitAttention):
            model.set_submodule(name, mod.to_torch())
            packed.append(name)
    return packed
