"""ADMM crossbar-aware structured pruning and quantization (Yuan et al., ISLPED 2019, arXiv 1908.11691;
docs/references.md#admm).

The paper's three steps, for any architecture that maps to crossbars:

1. **ADMM-regularized training.** Every Linear / Conv2d weight ``W`` (out, in) in the mapper's order (``in`` =
   ``C_in * kh * kw``, the rows a crossbar holds) is cut into crossbar-sized blocks: ``block_rows`` inputs (an
   array's rows) x ``block_outputs`` outputs (the weights an array's columns hold: ``cols / columns per
   weight`` of the architecture's slicing). The constraint set ``S`` keeps the blocks of largest Frobenius
   norm that fit in ``1 / compression`` of the layer's weights (at least one block) and puts the kept
   weights on the ``weight_bits`` per-channel grid (the device's levels, as the mapper quantizes). ADMM
   (Boyd et al. 2011; Zhang et al., ECCV 2018 for DNN pruning) minimises
   ``loss(W) + rho / 2 * sum ||W - Z + U||^2`` by SGD, and after every epoch ``Z = Proj_S(W + U)``,
   ``U = U + W - Z``.
2. **Masked mapping.** ``W`` is hard-pruned to the blocks of ``Proj_S(W)``; the mapper then allocates only
   the arrays of non-zero blocks (:func:`masked_groups`, run by :class:`cimsim.packed.PackedTile`).
3. **Retraining** with the mask held (pruned weights stay zero).

Weight compression = weights / non-zero weights, over the network: the first and the last layer stay dense
(our choice, common in pruning work: at block granularity a pruned classifier loses whole classes), and the
others are pruned to reach the target in all, convolutions less than fully connected layers, as in the
paper (:func:`layer_compression`). Grouped convolutions
(depthwise) and layers with fewer than two blocks are left dense too. Knobs: block size (the array,
:meth:`ADMMConfig.from_arch`), target ``compression``, ``weight_bits``; ``rho`` and the epochs are the recipe's.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cimsim.encoding import slice_weights
from cimsim.errors import ConfigError
from cimsim.packed import PackedGroup
from cimsim.mappers.psq_finetune import evaluate_accuracy
from cimsim.mappers.unfuse import fuse, unfuse


@dataclass(frozen=True)
class ADMMConfig:
    """Block size (inputs x outputs of one array), target weight compression and weight bits."""

    block_rows: int
    block_outputs: int
    compression: float
    weight_bits: int

    def __post_init__(self):
        for k in ("block_rows", "block_outputs", "weight_bits"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"ADMMConfig.{k} must be a positive integer, got {v!r}")
        if not (isinstance(self.compression, (int, float)) and math.isfinite(self.compression)
                and self.compression >= 1):
            raise ConfigError(f"ADMMConfig.compression must be at least 1 (weights / kept weights), got "
                              f"{self.compression!r}")

    @classmethod
    def from_arch(cls, arch, compression: float) -> "ADMMConfig":
        """Blocks of one array of ``arch``: its rows, and the outputs its columns hold."""
        spec = arch.crossbar_spec()
        sl = slice_weights(np.zeros((1, 1), dtype=np.int64), spec.weight_bits, spec.cell_bits, spec.signed)
        per_weight = sl.levels.shape[0] * sl.levels.shape[1]
        return cls(int(spec.rows), max(1, int(spec.cols) // per_weight), float(compression), int(spec.weight_bits))


def prunable(mod: nn.Module) -> bool:
    return isinstance(mod, nn.Linear) or (isinstance(mod, nn.Conv2d) and mod.groups == 1)


def _blocks(w2: torch.Tensor, cfg: ADMMConfig) -> tuple[torch.Tensor, tuple[int, int]]:
    """Squared Frobenius norm of every block: (output blocks, row blocks)."""
    O, K = w2.shape
    no, nr = math.ceil(O / cfg.block_outputs), math.ceil(K / cfg.block_rows)
    pad = w2.new_zeros(no * cfg.block_outputs, nr * cfg.block_rows)
    pad[:O, :K] = w2
    return pad.reshape(no, cfg.block_outputs, nr, cfg.block_rows).square().sum(dim=(1, 3)), (no, nr)


def block_mask(w: torch.Tensor, cfg: ADMMConfig) -> torch.Tensor:
    """The mask (shape of ``w``) of the largest-norm blocks, as many as fit in ``1 / compression`` of the weights (at
    least one): the layer is compressed at least ``compression`` times."""
    w2 = w.detach().reshape(w.shape[0], -1)
    O, K = w2.shape
    norms, (no, nr) = _blocks(w2, cfg)
    sizes = torch.zeros(no, nr)
    for i in range(no):
        for j in range(nr):
            sizes[i, j] = (min(O, (i + 1) * cfg.block_outputs) - i * cfg.block_outputs) * \
                (min(K, (j + 1) * cfg.block_rows) - j * cfg.block_rows)
    order = torch.argsort(norms.flatten().cpu(), descending=True, stable=True)
    need = O * K / cfg.compression
    kept = torch.zeros(no * nr, dtype=torch.bool)
    total = 0.0
    for idx in order.tolist():
        size = float(sizes.flatten()[idx])
        if total + size > need and kept.any():
            break
        kept[idx] = True
        total += size
    m = kept.reshape(no, nr).repeat_interleave(cfg.block_outputs, 0).repeat_interleave(cfg.block_rows, 1)[:O, :K]
    return m.to(w.device, w.dtype).reshape(w.shape)


def quantize_to_grid(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel symmetric ``bits``-bit grid (the mapper's quantizer), in float."""
    qmax = 2 ** (bits - 1) - 1
    flat = w.reshape(w.shape[0], -1)
    amax = flat.abs().amax(dim=1, keepdim=True)
    s = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    return (torch.clamp(torch.round(flat / s), -qmax, qmax) * s).reshape(w.shape)


def project(w: torch.Tensor, cfg: ADMMConfig) -> torch.Tensor:
    """``Proj_S``: the largest blocks, on the device's levels."""
    return quantize_to_grid(w * block_mask(w, cfg), cfg.weight_bits)


@dataclass(frozen=True)
class ADMMRecipe:
    """SGD with momentum (our choice, the recipe the zoo trains with); ``rho`` of the augmented Lagrangian grows by
    ``rho_growth`` every ADMM epoch (progressive ADMM, as Ye et al., arXiv 1903.09769, raise it, so a short schedule
    still ends with ``W`` at ``Z``; est.: 1e-2 x 3**epoch, so that ``lr x rho`` reaches a few percent per step); the
    retraining's learning rate decays as a cosine."""

    admm_epochs: int = 6
    retrain_epochs: int = 10      # (est.) LeNet-5 at 17.7x: 86.6 % after 10 (BENCHMARKS.md)
    batch_size: int = 128
    lr: float = 1e-2
    rho: float = 1e-2
    rho_growth: float = 3.0


def _layers(model: nn.Module, cfg: ADMMConfig) -> dict[str, nn.Module]:
    """The layers ADMM prunes: every prunable layer of two or more blocks but the first and the last (kept dense:
    the input layer is small and feeds everything; at block granularity the classifier would lose whole classes)."""
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    out = {}
    for name, mod in named[1:-1]:
        if prunable(mod):
            w2 = mod.weight.reshape(mod.weight.shape[0], -1)
            if _blocks(w2, cfg)[0].numel() > 1:
                out[name] = mod
    return out


# per-layer allocation of the kept weights: in proportion to SHARE_CONV (convolutions) or 1 (fully connected) x
# size ** SHARE_EXPONENT. The paper prunes its convolutions far less than its large FC layers (arXiv 1908.11691,
# LeNet-5 and VGG-16 tables); the numbers are ours (est.), measured on LeNet-5 / Fashion-MNIST at 17.7x (32x32
# arrays, 6 ADMM + 10 retraining epochs): sqrt(size) with no conv share (conv2 7.3x, fc1 32x, fc2 15x) retrained to
# 83.1 %, conv2 4x / fc1 46x / fc2 12x to 86.4 %, this rule (2.7x / 51x / 16x) to 86.6 % (BENCHMARKS.md).
SHARE_EXPONENT = 0.25
SHARE_CONV = 2.0


def layer_compression(model: nn.Module, layers: dict[str, nn.Module], cfg: ADMMConfig) -> dict[str, float]:
    """Each pruned layer's compression, so that the network reaches ``cfg.compression`` in all (the layers not
    pruned stay dense). The weights kept in pruned layers are shared out in proportion to ``SHARE_CONV`` (for a
    convolution) x size ** ``SHARE_EXPONENT`` (a large, redundant FC layer is cut deeper than a small one or a
    convolution; capped at the layer's size, the excess going to the others)."""
    total = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)))
    sizes = {n: m.weight.numel() for n, m in layers.items()}
    share = {n: (SHARE_CONV if isinstance(m, (nn.Conv1d, nn.Conv2d)) else 1.0) * sizes[n] ** SHARE_EXPONENT
             for n, m in layers.items()}
    budget = total / cfg.compression - (total - sum(sizes.values()))
    if budget <= 0:
        raise ConfigError(f"compression {cfg.compression:g}x is out of reach: the layers kept dense already hold "
                          f"{total - sum(sizes.values())} of {total} weights (at most "
                          f"{total / (total - sum(sizes.values())):.3g}x)")
    keep: dict[str, float] = {}
    free = dict(sizes)
    while free:
        weight = sum(share[n] for n in free)
        left = budget - sum(keep.values())
        full = {n: v for n, v in free.items() if left * share[n] / weight >= v}
        if not full:
            keep.update({n: left * share[n] / weight for n in free})
            break
        keep.update(full)
        for n in full:
            del free[n]
    return {n: max(1.0, sizes[n] / keep[n]) for n in layers}


def _epoch(model, layers, x, y, recipe, opt, gen, admm=None, masks=None, rho=0.0, sched=None, bar=None) -> float:
    model.train()
    order = torch.randperm(len(y), generator=gen).to(y.device)
    loss_sum = 0.0
    for i in range(0, len(y), recipe.batch_size):
        idx = order[i:i + recipe.batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        if admm is not None:
            z, u = admm
            loss = loss + rho / 2 * sum((m.weight - z[n] + u[n]).square().sum() for n, m in layers.items())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if masks is not None:
            with torch.no_grad():
                for n, m in layers.items():
                    m.weight.mul_(masks[n])
        loss_sum += float(loss.detach()) * len(idx)
        if bar is not None:
            bar.update(1)
    return loss_sum / max(len(y), 1)


def admm_prune(model: nn.Module, cfg: ADMMConfig, data, recipe: ADMMRecipe = ADMMRecipe(), seed: int = 0,
               limit: int | None = None, test_limit: int | None = None, device: str = "cpu",
               progress: bool | None = None) -> tuple[nn.Module, dict]:
    """The three steps on a copy of ``model`` with ``data`` (a :class:`cimsim.workloads.datasets.Dataset`): (pruned
    model on the CPU, metadata: per-layer weights, kept weights, compression, accuracy before, pruned and after).
    ``limit`` / ``test_limit``: the first examples only; ``device``: where the training runs ("cpu", "cuda");
    ``progress=False`` silences the progress report on stderr."""
    import copy

    from cimsim.progress import progress as progress_bar

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    target = cfg.compression
    work = copy.deepcopy(model)
    unfuse(work)   # attention's projections pruned as the layers the mapper maps (cimsim.mappers.unfuse)
    x, y = data.x_train, data.y_train
    if limit is not None:
        x, y = x[:limit], y[:limit]
    xt, yt = data.x_test, data.y_test
    if test_limit is not None:
        xt, yt = xt[:test_limit], yt[:test_limit]
    work, x, y, xt, yt = work.to(device), x.to(device), y.to(device), xt.to(device), yt.to(device)
    layers = _layers(work, cfg)
    if not layers:
        raise ConfigError("ADMM pruning found no layer of two or more crossbar blocks to prune (the first and the "
                          "last layer stay dense)")
    cfgs = {n: replace(cfg, compression=c) for n, c in layer_compression(work, layers, cfg).items()}
    before = evaluate_accuracy(work, xt, yt)
    history = []
    with torch.no_grad():
        z = {n: project(m.weight, cfgs[n]) for n, m in layers.items()}
        u = {n: torch.zeros_like(m.weight) for n, m in layers.items()}
    opt = torch.optim.SGD(work.parameters(), lr=recipe.lr, momentum=0.9)
    per_epoch = math.ceil(len(y) / recipe.batch_size)
    bar = progress_bar(desc="ADMM prune", total=(recipe.admm_epochs + recipe.retrain_epochs) * per_epoch,
                       unit="steps", enabled=progress)
    for epoch in range(recipe.admm_epochs):                            # 1. ADMM-regularized training
        loss = _epoch(work, layers, x, y, recipe, opt, gen, admm=(z, u), rho=recipe.rho * recipe.rho_growth ** epoch,
                      bar=bar)
        with torch.no_grad():
            for n, m in layers.items():
                z[n] = project(m.weight + u[n], cfgs[n])
                # the scaled dual follows rho: U = y / rho, so it shrinks as rho grows for the next epoch
                u[n] = (u[n] + m.weight - z[n]) / recipe.rho_growth
        history.append({"step": "admm", "epoch": epoch + 1, "loss": loss})
    with torch.no_grad():                                              # 2. hard pruning to the blocks of Proj_S
        masks = {n: block_mask(m.weight, cfgs[n]) for n, m in layers.items()}
        for n, m in layers.items():
            m.weight.mul_(masks[n])
    pruned = evaluate_accuracy(work, xt, yt)
    opt = torch.optim.SGD(work.parameters(), lr=recipe.lr, momentum=0.9)
    steps = recipe.retrain_epochs * math.ceil(len(y) / recipe.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(steps, 1))))
    for epoch in range(recipe.retrain_epochs):                         # 3. masked retraining
        loss = _epoch(work, layers, x, y, recipe, opt, gen, masks=masks, sched=sched, bar=bar)
        history.append({"step": "retrain", "epoch": epoch + 1, "loss": loss})
    bar.close()
    after = evaluate_accuracy(work.eval(), xt, yt)
    work = work.to("cpu")
    per_layer = {}
    total = kept = 0
    for name, mod in work.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            n, k = mod.weight.numel(), int((mod.weight != 0).sum())
            per_layer[name] = {"weights": n, "kept": k, "compression": n / max(k, 1), "pruned": name in layers}
            total, kept = total + n, kept + k
    info = {"admm": asdict(cfg), "layer_compression": {n: c.compression for n, c in cfgs.items()},
            "target_compression": target, "recipe": asdict(recipe), "seed": seed, "device": device,
            "train_examples": len(y),
            "test_examples": len(yt), "test_accuracy_before": before, "test_accuracy_pruned": pruned,
            "test_accuracy": after, "compression": total / max(kept, 1), "layers": per_layer, "history": history,
            "train_seconds": round(time.perf_counter() - started, 1)}
    fuse(work)     # torch's own attention modules again: the checkpoint loads into the network it came from
    return work.eval(), info


# ---------------------------------------------------------------------------------------------- masked mapping
def masked_groups(q: np.ndarray, rows: int, outputs_per_array: int) -> list[PackedGroup] | None:
    """The masked mapping of integer weights ``q`` (out, in): per row block, the output blocks holding a non-zero
    weight, as one packed group (their arrays side by side); ``None`` when no block is all zero (the dense tile).
    Each group is its own tile, so a conversion scope that sums row blocks in analog sums within a group only."""
    O, K = q.shape
    groups, skipped = [], 0
    for k0 in range(0, K, rows):
        k1 = min(k0 + rows, K)
        outs = []
        for o0 in range(0, O, outputs_per_array):
            o1 = min(o0 + outputs_per_array, O)
            if np.any(q[o0:o1, k0:k1]):
                outs.append(np.arange(o0, o1))
            else:
                skipped += 1
        if outs:
            o = np.concatenate(outs)
            groups.append(PackedGroup(np.arange(k0, k1), o, np.ones(len(o)), q[o, k0:k1]))
    if not skipped:
        return None
    if not groups:   # an all-zero layer keeps one array
        groups = [PackedGroup(np.arange(min(rows, K)), np.arange(1), np.ones(1), np.zeros((1, min(rows, K)), np.int64))]
    return groups


def outputs_per_array(spec) -> int:
    """Outputs whose columns one array of ``spec`` holds (at least one)."""
    sl = slice_weights(np.zeros((1, 1), dtype=np.int64), spec.weight_bits, spec.cell_bits, spec.signed)
    return max(1, int(spec.cols) // (sl.levels.shape[0] * sl.levels.shape[1]))


def program_masked(layer, spec, seeds: list[int], *, backend: str = "numba", device: str = "cpu") -> bool:
    """Masked mapping of a :class:`cimsim.mappers.MappedLayer`: when a group of its integer weights has an all-zero
    array block (pruned), that group becomes a :class:`~cimsim.packed.PackedTile` of its non-zero blocks and the
    others stay dense :class:`~cimsim.Crossbar`\\ s; ``layer.layout_counts`` gets ``xbars_dense`` (the dense grid)
    and ``xbars_masked``. Returns False, doing nothing, when no block is all zero."""
    from cimsim.crossbar import Crossbar
    from cimsim.packed import PackedTile

    groups = layer.plan.groups
    og = layer.w_int.shape[0] // groups
    per = outputs_per_array(spec)
    layouts = [masked_groups(layer.w_int[g * og:(g + 1) * og], spec.rows, per) for g in range(groups)]
    if all(lay is None for lay in layouts):
        return False
    dense = 0
    for g, lay in enumerate(layouts):
        w = layer.w_int[g * og:(g + 1) * og]
        xb = Crossbar(w, spec, seed=seeds[g], backend=backend, device=device, name=layer.name) if lay is None else \
            PackedTile(og, w.shape[1], lay, spec, seed=seeds[g], backend=backend, device=device, name=layer.name)
        layer.crossbars.append(xb)
        dense += math.ceil(w.shape[1] / spec.rows) * math.ceil(og / per)
    layer.layout_counts = {"xbars_dense": dense, "xbars_masked": sum(t.arrays for t in layer.crossbars)}
    return True
