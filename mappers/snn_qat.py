"""Hardware-aware training of spiking networks for crossbars read by one sense amplifier per column.

The ADC-less SNN chip (``adcless-snn``, arXiv 2211.02167) binarizes every column's partial sum: for row block
``r``, weight slice ``j``, polarity ``p`` (G+ or G- column) and output ``o``,

    q = s[r, j, p, o] * H(PS / s[r, j, p, o] - threshold),   PS = plane_t[rows of r] . level_{j, p}[rows of r]

and accumulates ``y = s_x * s_w * sum_{t, r, j, p} 2**(dac_bits t) * 2**shift_j * sign_p * q + bias`` into the
LIF membrane (:class:`cimsim.Crossbar` with a per-column :class:`~cimsim.devices.SenseAmp` and
``column_scales`` computes exactly this). :class:`SAConv2d` / :class:`SALinear` compute the same thing in torch,
with the engine's slicing (``signed="differential"``), bit planes and row blocks, so a network trained with them
maps onto the chip with the same numbers (tested bit for bit on ideal cells).

Gradients: straight-through. Inputs fed spikes (0/1) are their own single bit plane, so the spike's surrogate
gradient flows through the partial sums exactly; multi-bit inputs (the first layer of a directly encoded network)
use :func:`cimsim.mappers.qat.bit_planes`. Weight slices pass their share of the integer weight's gradient
(:func:`cimsim.mappers.qat.quantize_weight_ste` gives the integers). The decision uses the LSQ estimator
(Esser et al., ICLR 2020) for a 1-bit unsigned quantizer {0, s}: ``dq/dPS = 1`` on ``0 <= PS/s <= 1``, else 0;
``dq/ds = H - PS/s`` inside, ``H`` outside, scaled by ``1 / sqrt(number of partial sums per scale)``.

**Progressive schedule** (the paper's method: "progressively increasing the hardware awareness during SNN
training", arXiv 2211.02167, abstract; the stages themselves are not public). Ours (``schedule="progressive"``):
layer by layer from the input. With ``L`` sense-amp layers (in the network's registration order, which is the
order from the input for the zoo's networks), stage ``k = 1 .. L - 1`` binarizes the first ``k`` layers' partial
sums and fine-tunes the whole network at the peak learning rate while the later layers still see exact partial
sums; then the final phase binarizes all ``L`` layers. The final phase is the same for every schedule: ``epochs``
passes over the training data with all partial sums binarized, the learning rate decayed by a cosine from the
peak. ``direct`` is that final phase alone (all partial sums binarized from the first step). ``progressive``
adds ``stage_share`` x the final phase's steps before it, split evenly over its ``L - 1`` stages: its length is
proportional to the run, and both schedules spend the same number of steps on the fully binarized network, so
the comparison measures what the stages add (the earlier form of the comparison spent part of progressive's
budget on partly exact readouts and found it worse at equal total steps). ``fraction`` keeps that earlier
schedule for reference: every column of every layer has a fixed random rank (seeded), columns ranked below a
fraction ``f`` are binarized, ``f`` rising linearly from ``start_fraction`` to 1 over the first ``ramp`` share of
the final phase.

Memory: the partial sums and decisions of every row block, plane, layer and time step are not kept for the
backward pass; :mod:`cimsim.mappers.snn_qat_ops` recomputes them there, a chunk of patch rows at a time (one step
of ``snn_dvsnet`` at batch 4: 4.3 -> 0.6 GB, BENCHMARKS.md, issue 17). The weights' integers and cell levels are
computed once per weight update and shared by every time step and batch, detached; each call gets its own gradient
node onto them (:class:`~cimsim.mappers.snn_qat_ops.Reattached`), so several forward and backward passes before an
optimizer step (gradient accumulation) add their gradients as separate passes would.

Noise injection (``noise_frac``): during training every cell level gets Gaussian noise of ``noise_frac`` of the
level range (per cell, as :mod:`cimsim.mappers.qat` does), so the network learns margins around programming
variation.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cimsim.errors import ConfigError
from cimsim.mappers import qat
from cimsim.mappers.qat_ops import ConvRows, LinearRows
from cimsim.mappers.psq_finetune import progressive_stages
from cimsim.mappers.snn_qat_ops import Reattached, SenseAmpProduct
from cimsim.mappers.unfuse import unfuse
from cimsim.metrics import batch_score_sum, endpoint_error, is_flow


@dataclass(frozen=True)
class SAConfig:
    """What the crossbar does to a partial sum (must match the architecture the network is mapped onto)."""

    # the defaults are arch "adcless-snn"'s (arch/adcless_snn.py, where each is cited): 64x64 subarrays, 1-bit
    # cells, 4-bit weights (ADC-less SNN, arXiv 2211.02167)
    rows: int = 64
    cell_bits: int = 1
    weight_bits: int = 4
    input_bits: int = 8          # bits of non-spike inputs (the first layer's)
    dac_bits: int = 1
    threshold: float = 0.5

    @classmethod
    def from_arch(cls, arch) -> "SAConfig":
        return cls(rows=arch.rows, cell_bits=arch.cell_bits, weight_bits=arch.weight_bits,
                   input_bits=arch.input_bits, dac_bits=arch.dac_bits, threshold=float(arch.sa_threshold))

    def slice_shifts(self) -> list[tuple[int, int]]:
        return qat.PSQConfig(rows=self.rows, cell_bits=self.cell_bits, weight_bits=self.weight_bits).slice_shifts()

    def planes_config(self) -> qat.PSQConfig:
        return qat.PSQConfig(rows=self.rows, cell_bits=self.cell_bits, weight_bits=self.weight_bits,
                             input_bits=self.input_bits, dac_bits=self.dac_bits)

    def row_blocks(self, k: int) -> list[tuple[int, int]]:
        return [(k0, min(k0 + self.rows, k)) for k0 in range(0, k, self.rows)]


class _SA:
    """Mixin of the sense-amp layers: config, input range, learned scales ``sa_scale`` (row blocks, S*P*O)."""

    sa_config: SAConfig
    hw_enabled: bool = True
    fraction: float = 1.0
    noise_frac: float = 0.0

    def _setup(self, cfg: SAConfig, k: int, spikes: bool, input_scale: float, input_signed: bool, seed: int):
        self.sa_config, self.hw_enabled, self.fraction, self.noise_frac = cfg, True, 1.0, 0.0
        S, O = len(cfg.slice_shifts()), self.weight.shape[0]
        self.sa_scale = nn.Parameter(torch.ones(len(cfg.row_blocks(k)), S * 2 * O, dtype=self.weight.dtype))
        self.register_buffer("input_scale", torch.tensor(float(input_scale), dtype=torch.float64))
        self.register_buffer("input_signed", torch.tensor(bool(input_signed)))
        self.register_buffer("spike_input", torch.tensor(bool(spikes)))
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("column_rank", torch.rand(self.sa_scale.shape, generator=g, dtype=torch.float64))
        self._memo = None

    # ------------------------------------------------------------------ pieces
    def flags(self) -> tuple[bool, float, bool]:
        """(spike input, input scale, signed input) as Python values, read from the buffers once per change of
        them (reading a GPU buffer waits for the device: not once per step)."""
        bufs = (self.spike_input, self.input_scale, self.input_signed)
        key = tuple((b.data_ptr(), b._version) for b in bufs)
        cached = getattr(self, "_flags", None)
        if cached is None or cached[0] != key:
            cached = (key, (bool(self.spike_input), float(self.input_scale), bool(self.input_signed)))
            self._flags = cached
        return cached[1]

    def integer_inputs(self, x: torch.Tensor) -> torch.Tensor:
        spikes, scale, signed = self.flags()
        if spikes:
            return x
        return qat.quantize_activation(x, scale, self.sa_config.input_bits, signed)

    def planes(self, patches: torch.Tensor) -> tuple[list[torch.Tensor], list[float]]:
        spikes, _, signed = self.flags()
        if spikes:
            return [patches], [1.0]
        return qat.bit_planes(patches, self.sa_config.planes_config(), signed)

    def columns(self, w_int: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell levels of every physical column (S*P*O, K), slice-major then polarity, with STE gradients, and
        each column's digital weight ``2**shift_j * sign_p`` (S*P*O,); in training with ``noise_frac``, one draw of
        programming noise on the levels."""
        levels, coef = self._clean_columns(w_int)
        if self.training and self.noise_frac > 0:
            levels = levels + self.noise_frac * (2 ** self.sa_config.cell_bits - 1) * torch.randn_like(levels)
        return levels, coef

    def _clean_columns(self, w_int: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`columns` without the programming noise."""
        cfg = self.sa_config
        mag, pos, neg = w_int.detach().abs(), (w_int.detach() > 0).to(w_int.dtype), (w_int.detach() < 0).to(w_int.dtype)
        layout = cfg.slice_shifts()
        norm = sum(4.0 ** s for s, _ in layout)
        dw = w_int - w_int.detach()
        cols, coef = [], []
        O = w_int.shape[0]
        for s, wd in layout:
            level = torch.remainder(torch.floor(mag / 2 ** s), 2 ** wd)
            share = 2.0 ** s / norm
            cols += [level * pos + share * dw * pos, level * neg - share * dw * neg]
            # filled on the device (a host-made tensor would be a host-to-device copy per weight update)
            coef += [w_int.new_full((O,), 2.0 ** s), w_int.new_full((O,), -(2.0 ** s))]
        return torch.cat(cols), torch.cat(coef)

    def _weight_levels(self, weight: torch.Tensor) -> torch.Tensor:
        """The cell levels as a function of the float weights (what the straight-through gradient follows)."""
        return self._clean_columns(qat.quantize_weight_ste(weight, self.sa_config.weight_bits)[0])[0]

    def sa_product(self, patches: torch.Tensor, w_int: torch.Tensor, scale: torch.Tensor,
                   columns: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """(M, O): the crossbar's accumulated binarized partial sums in integer units of x @ W.T (one group),
        computed by :class:`~cimsim.mappers.snn_qat_ops.SenseAmpProduct` (keeps no partial sums for backward)."""
        cfg = self.sa_config
        planes, pw = self.planes(patches)
        levels, coef = columns if columns is not None else self.columns(w_int)
        P = planes[0] if len(planes) == 1 else torch.cat(planes)          # (T * M, K)
        blocks = cfg.row_blocks(patches.shape[1])
        # which columns read through the sense amps (a Python choice for 0 and 1: no mask, no device read)
        keep = None if self.fraction >= 1 else False if self.fraction <= 0 else self.column_rank < self.fraction
        return SenseAmpProduct.apply(P, levels, scale, coef, keep, tuple(pw), blocks, cfg.threshold,
                                     1.0 / math.sqrt(P.shape[0]), w_int.shape[0])

    def sa_forward(self, x: torch.Tensor) -> torch.Tensor:
        # a directly encoded input repeats every step (one tensor seen T times): same weights, same output; the
        # memo holds until a backward pass reaches its output (whose graph that pass frees: see _forget_on_backward)
        key = (self.weight.data_ptr(), self.weight._version, self.sa_scale._version, self.fraction, self.training,
               self.noise_frac, torch.is_grad_enabled())
        memo = self._memo
        if memo is not None and memo[1] == key and _same_view(memo[0], x):
            return memo[2]
        cfg = self.sa_config
        x_int = self.integer_inputs(x.to(self.weight.dtype))
        patches, shape = self._patches(x_int)
        # the weights' integers and cell levels (with one draw of programming noise) are the same at every time
        # step and every batch until the weights change: computed once per weight update, detached; each call
        # attaches its own gradient node to them (Reattached), so no call's graph depends on another's
        wkey = (self.weight.data_ptr(), self.weight._version, self.noise_frac, self.training, torch.is_grad_enabled())
        wm = getattr(self, "_weights_memo", None)
        if wm is None or wm[0] != wkey or wm[1] is not self.weight:
            with torch.no_grad():
                w_int, w_scale = qat.quantize_weight_ste(self.weight, cfg.weight_bits)
                wm = (wkey, self.weight, w_int, w_scale, self.columns(w_int))
            self._weights_memo = wm
        _, _, w_int, w_scale, (levels, coef) = wm
        if torch.is_grad_enabled() and self.weight.requires_grad:
            levels = Reattached.apply(self.weight, levels, self._weight_levels)
        acc = self.sa_product(patches, w_int, self.sa_scale, (levels, coef))
        y = acc * (self.input_scale.to(acc.dtype) * w_scale)[None, :]
        if self.bias is not None:
            y = y + self.bias[None, :]
        out = self._unpatch(y, shape)
        self._memo = None
        if not self.flags()[0]:
            self._memo = (x, key, out)
            if out.requires_grad:
                _forget_on_backward(self, out)
        return out


def _forget_on_backward(mod: _SA, out: torch.Tensor) -> None:
    """Drop ``mod``'s memo of ``out`` when a backward pass reaches ``out``: that pass frees ``out``'s graph, so a
    later forward of the same input (a second pass over one batch before the optimizer step) recomputes it. (Two
    forwards of one input tensor before the first one's backward still share one graph: back-propagate their
    losses summed, or pass a copy of the input.)"""
    mod_ref, out_ref = weakref.ref(mod), weakref.ref(out)

    def hook(grad):
        m = mod_ref()
        if m is not None and m._memo is not None and m._memo[2] is out_ref():
            m._memo = None
        return None

    out.register_hook(hook)


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The same values: one storage, place, shape and strides, unmodified (``a`` is held, so its memory cannot
    have been reused by another tensor)."""
    return (a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()
            and a.dtype == b.dtype and a._version == b._version and a.requires_grad == b.requires_grad)


class SALinear(_SA, LinearRows, nn.Linear):
    """``nn.Linear`` trained for a sense-amp-per-column crossbar (module docstring)."""

    def forward(self, x):
        return self.sa_forward(x) if self.hw_enabled else nn.Linear.forward(self, x)


class SAConv2d(_SA, ConvRows, nn.Conv2d):
    """``nn.Conv2d`` (zero padding) trained for a sense-amp-per-column crossbar (module docstring)."""

    def forward(self, x):
        if self.groups != 1:
            raise ConfigError("SAConv2d supports groups=1 only")
        return self.sa_forward(x) if self.hw_enabled else nn.Conv2d.forward(self, x)


def is_sa(mod: nn.Module) -> bool:
    return isinstance(mod, _SA)


def sa_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if is_sa(m)}


def set_fraction(model: nn.Module, fraction: float) -> None:
    """Binarize this fraction of every layer's columns (the rest pass their exact partial sums)."""
    for m in sa_layers(model).values():
        m.fraction = float(fraction)


def column_scales(mod: nn.Module) -> np.ndarray:
    """A trained layer's scales as the engine takes them: (row blocks, slices, polarities, outputs)."""
    S = len(mod.sa_config.slice_shifts())
    s = mod.sa_scale.detach().double().cpu().numpy()
    return s.reshape(s.shape[0], S, 2, -1)


# ---------------------------------------------------------------------------------------------- prepare
def _convertible(mod: nn.Module) -> bool:
    if type(mod) is nn.Linear:
        return True
    return (type(mod) is nn.Conv2d and mod.padding_mode == "zeros" and not isinstance(mod.padding, str)
            and mod.groups == 1)


@torch.no_grad()
def prepare(model: nn.Module, cfg: SAConfig, calibration: list[torch.Tensor], seed: int = 0) -> nn.Module:
    """A sense-amp-aware copy of ``model``: BN folded, every Linear/Conv2d an :class:`SALinear` /
    :class:`SAConv2d` with its input range (spikes: 1 bit; else the mapper's percentile rule) and its scales
    initialised from the calibration partial sums (:func:`cimsim.mappers.snn.sense_amp_scales`)."""
    import copy

    from cimsim.devices.converters import SenseAmp
    from cimsim.mappers import snn
    from cimsim.mappers.mapper import fold_batchnorm
    from cimsim.spec import CrossbarSpec

    if not calibration:
        raise ConfigError("hardware-aware training needs calibration batches (inputs from the training split)")
    work = copy.deepcopy(model).eval()
    unfuse(work)    # attention's projections as Linear layers, trained as the mapper maps them
    folded = fold_batchnorm(work, calibration[0])
    targets = {n: m for n, m in work.named_modules() if _convertible(m)}
    if not targets:
        raise ConfigError("the model has no Linear or Conv2d layer to train for the sense-amp readout")
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in targets}
    handles = [m.register_forward_pre_hook(lambda mod, inp, n=n: seen[n].append(inp[0].detach()))
               for n, m in targets.items()]
    try:
        for xb in calibration:
            work(xb)
    finally:
        for h in handles:
            h.remove()
    rng = np.random.default_rng(seed)
    for i, (name, mod) in enumerate(targets.items()):
        spikes = snn.binary_inputs(seen[name])
        scale, signed = (1.0, False) if spikes else qat.activation_range(
            torch.cat([a.reshape(-1) for a in seen[name]]), cfg.input_bits)
        k = mod.weight[0].numel()
        mod.__class__ = SALinear if isinstance(mod, nn.Linear) else SAConv2d
        mod._setup(cfg, k, spikes, scale, signed, seed=seed * 1000 + i)
        # initial scales from a sample of the calibration inputs, with the engine's own encoding
        x_int = torch.cat([mod._patches(mod.integer_inputs(a.double()))[0] for a in seen[name][:4]])
        if x_int.shape[0] > 8192:
            x_int = x_int[torch.from_numpy(np.sort(rng.choice(x_int.shape[0], 8192, replace=False)))]
        w_int, _ = qat.quantize_weight_ste(mod.weight.detach().double(), cfg.weight_bits)
        spec = CrossbarSpec(rows=cfg.rows, cell_bits=cfg.cell_bits, weight_bits=cfg.weight_bits,
                            input_bits=1 if spikes else cfg.input_bits, dac_bits=1 if spikes else cfg.dac_bits,
                            input_signed=signed, readout=SenseAmp(threshold=cfg.threshold))
        init = snn.sense_amp_scales(x_int.numpy().astype(np.int64), w_int.numpy().astype(np.int64), spec)
        mod.sa_scale.data = torch.from_numpy(init.reshape(init.shape[0], -1)).to(mod.weight.dtype)
    work.sa_folded = [list(p) for p in folded]
    return work


# ---------------------------------------------------------------------------------------------- fine-tune
SCHEDULES = ("progressive", "direct", "fraction")


@dataclass(frozen=True)
class SnnFinetuneRecipe:
    """Adam with a cosine decay (our choice: a short fine-tune from a trained SNN), the schedule of binarization
    (module docstring) and noise injection. ``epochs`` is the length of the final phase, on the fully binarized
    network, for every schedule; ``progressive`` runs ``stage_share`` x as many steps before it, split evenly
    over its layer-by-layer stages."""

    epochs: int = 2
    batch_size: int = 64
    lr: float = 5e-4                 # weights and biases
    scale_lr: float = 1e-2           # column scales (LSQ step sizes learn faster than weights)
    schedule: str = "progressive"
    stage_share: float = 0.5         # progressive: steps of the layer stages / steps of the final phase (our choice)
    start_fraction: float = 0.0      # fraction: binarized share of the columns at the first step
    ramp: float = 0.6                # fraction: share of the steps over which it reaches 1
    noise_frac: float = 0.0
    calibration_examples: int = 256

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if not 0 <= self.start_fraction <= 1 or not 0 < self.ramp <= 1:
            raise ConfigError("start_fraction must lie in [0, 1] and ramp in (0, 1]")
        if not self.stage_share >= 0:
            raise ConfigError(f"stage_share must be at least 0, got {self.stage_share}")

    def fraction(self, step: int, steps: int) -> float:
        """The ``fraction`` schedule's share of binarized columns at ``step`` of ``steps`` (1 for ``direct``)."""
        if self.schedule != "fraction":
            return 1.0
        t = step / max(self.ramp * steps, 1)
        return min(1.0, self.start_fraction + (1 - self.start_fraction) * t)

    def stages(self, final_steps: int, layers: int) -> list[tuple[int, int]]:
        """(binarized layers, steps) of each phase, ending with (``layers``, ``final_steps``): for ``progressive``
        first one stage per layer but the last, each ``ceil(stage_share * final_steps / (layers - 1))`` steps with the
        first k layers from the input binarized (k = 1 .. layers - 1); one phase otherwise."""
        if self.schedule != "progressive":
            return [(layers, final_steps)]
        return progressive_stages(final_steps, layers, self.stage_share)


@torch.no_grad()
def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 250,
          device: str | torch.device | None = None) -> float:
    """Top-1 accuracy (labels) or average endpoint error in px (flow) of ``model`` in eval mode, run on ``device``
    (default: where the model's parameters are)."""
    model.eval()
    dev = device if device is not None else next(model.parameters()).device
    total = torch.zeros((), dtype=torch.float64, device=dev)
    for i in range(0, len(y), batch_size):
        total += batch_score_sum(model(x[i:i + batch_size].to(dev)), y[i:i + batch_size].to(dev))
    return float(total) / max(len(y), 1)


def _set_binarized(layers: list[nn.Module], k: int) -> None:
    """The first ``k`` layers (from the input) read through the sense amps, the others exact."""
    for i, m in enumerate(layers):
        m.fraction = 1.0 if i < k else 0.0


def finetune(model: nn.Module, cfg: SAConfig, data, recipe: SnnFinetuneRecipe = SnnFinetuneRecipe(), seed: int = 0,
             limit: int | None = None, test_limit: int | None = None, progress: bool | None = None,
             device: str = "cpu"):
    """Fine-tune a trained SNN for the sense-amp readout; returns (model on the CPU, metadata with the history and
    the final test score on the first ``test_limit`` test examples). On ``device`` the data go there once and
    nothing is read back per step (the loss adds up on the device, read once per epoch-length chunk)."""
    import time
    from dataclasses import asdict

    from cimsim.progress import progress as progress_bar

    dev = torch.device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = data.x_train[:limit], data.y_train[:limit]
    x_test, y_test = data.x_test[:test_limit], data.y_test[:test_limit]
    cal = [x_train[i:i + 64] for i in range(0, min(recipe.calibration_examples, len(x_train)), 64)]
    started = time.perf_counter()
    work = prepare(model, cfg, cal, seed=seed).to(dev)
    layers = list(sa_layers(work).values())      # registration order: from the input for the zoo's networks
    for m in layers:
        m.noise_frac = recipe.noise_frac
    scales = [p for n, p in work.named_parameters() if n.endswith("sa_scale")]
    others = [p for n, p in work.named_parameters() if not n.endswith("sa_scale")]
    opt = torch.optim.Adam([{"params": others, "lr": recipe.lr}, {"params": scales, "lr": recipe.scale_lr}])
    per_epoch = math.ceil(len(y_train) / recipe.batch_size)
    final = recipe.epochs * per_epoch
    stages = recipe.stages(final, len(layers))
    steps = sum(n for _, n in stages)
    flow = is_flow(y_train[:1])   # a flow network: trained on the endpoint error, scored by AEE (cimsim.metrics)
    _set_binarized(layers, 0)
    exact = score(work, x_test, y_test)        # quantized weights and inputs, exact partial sums
    _set_binarized(layers, len(layers))
    before = score(work, x_test, y_test)       # sense amps with calibrated scales, before any training
    xd, yd = x_train.to(dev), y_train.to(dev)

    def batches():
        while True:
            order = torch.randperm(len(y_train), generator=gen).to(dev)
            for i in range(0, len(y_train), recipe.batch_size):
                yield order[i:i + recipe.batch_size]

    history, step, it = [], 0, batches()
    loss_sum, seen = torch.zeros((), dtype=torch.float64, device=dev), 0
    bar = progress_bar(desc=f"sense-amp fine-tune ({recipe.schedule})", total=steps, unit="steps", enabled=progress)
    work.train()
    for k, n in stages:
        last = k == len(layers) and n == final
        _set_binarized(layers, k)
        for i in range(n):
            # progressive stages train at the peak rate; the final phase (every schedule) decays it by a cosine
            decay = 0.5 * (1 + math.cos(math.pi * i / max(n, 1))) if last else 1.0
            opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = recipe.lr * decay, recipe.scale_lr * decay
            if recipe.schedule == "fraction":
                set_fraction(work, recipe.fraction(i, n))
            idx = next(it)
            out = work(xd[idx])
            loss = endpoint_error(out, yd[idx]).mean() if flow else F.cross_entropy(out, yd[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for s in scales:
                    s.clamp_(min=1e-3)
            loss_sum += loss.detach() * len(idx)
            seen += len(idx)
            step += 1
            bar.update(1)
            if step % per_epoch == 0 or step == steps:
                history.append({"epoch": round(step / per_epoch, 3), "loss": float(loss_sum) / seen,
                                "binarized_layers": k})
                loss_sum, seen = torch.zeros((), dtype=torch.float64, device=dev), 0
    bar.close()
    set_fraction(work, 1.0)
    for m in layers:
        m.noise_frac = 0.0
    work.eval()
    acc = score(work, x_test, y_test)
    work = work.cpu()
    scores = ({"metric": "aee", "test_aee_exact_psum": exact, "test_aee_before": before, "test_aee": acc,
               "test_accuracy": None} if flow else
              {"test_accuracy_exact_psum": exact, "test_accuracy_before": before, "test_accuracy": acc})
    meta = {"sa": asdict(cfg), "recipe": asdict(recipe), "seed": seed, "train_examples": len(y_train),
            "test_examples": len(y_test), "steps": steps, "final_phase_steps": final,
            "stages": [list(st) for st in stages], **scores, "history": history,
            "train_seconds": round(time.perf_counter() - started, 1), "batchnorm_folded": work.sa_folded,
            "device": str(dev)}
    return work, meta
