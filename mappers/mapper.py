"""Map a trained ``torch.nn.Module`` onto crossbars: ``cimsim.map(model, arch, calibration=loader)``.

What the mapper does, in order:

1. **Copy** the model (the caller's stays untouched) and put it in inference mode.
2. **Fold batch-norm** into the convolution or linear layer that feeds it. Which BN follows which layer
   is found by running one batch with hooks and checking that the BN's input *is* the layer's output
   tensor, so any graph (residual, branching, third-party) works and ``forward`` is never rewritten.
   The folded BN becomes ``nn.Identity``.
3. **Calibrate** on the calibration batches: every mapped layer's input range sets its activation
   scale (unsigned after ReLU-like layers, signed when the calibration saw negative inputs), and the
   crossbars' ADC ranges are calibrated on the quantized inputs they will see.
4. **Quantize and program**: weights per output channel, symmetric, to the architecture's weight bits;
   every convolution group and every linear layer becomes a :class:`~cimsim.Crossbar` programmed with
   the architecture's cell, slicing and readout.
5. **Replace** each ``Linear`` / ``Conv1d`` / ``Conv2d`` by a :class:`MappedLayer`. Everything else
   (activations, pooling, adds, un-foldable normalisation) stays digital and is costed with the
   architecture's digital components. A matrix layer the mapper does not support (transposed or 3-d
   convolutions, recurrent and attention layers, non-zero padding modes) is named in one warning and
   kept digital.
6. **Spiking networks** (LIF neurons, snnTorch ``Leaky`` turned into cimsim's ``LIF``): layers fed spikes take
   1-bit inputs, every time step counts (see :mod:`cimsim.mappers.snn`); a tile read by one sense amplifier
   per column gets per-column scale factors (learned, or set from the calibration partial sums).

A :class:`MappedLayer` computes ``y = s_x * s_w[o] * (x_int @ W_int.T) + bias`` where ``x_int @ W_int.T``
comes from the crossbars. ``mapped.set_mode("digital")`` swaps the crossbars for exact integer
arithmetic: the quantized digital model, which an ideal device with a lossless readout matches bit for bit.

In analog mode every mapped layer also computes the exact integer product of the same inputs (one more
product per layer) and accumulates the error of its output against it: the report's per-layer relative
RMS error, ``rel_error = ||s (A - D)|| / ||s D||`` over every output of the run, where ``A`` is the
crossbars' result, ``D`` the exact one and ``s = s_x * s_w[o]`` the layer's output scale. It isolates each
layer's own error (its inputs are the same for both), so it shows which layer breaks at low ADC bits.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cimsim.arch.base import Architecture
from cimsim.blas import one_thread
from cimsim.cost import LayerPlan
from cimsim.crossbar import Crossbar
from cimsim.errors import ConfigError, check_seed
from cimsim.ledger import EventLedger
from cimsim.mappers import admm, qat, sme, snn, snn_qat
from cimsim.mappers.layer_quality import add_layer_quality
from cimsim.mappers.profile import profile
from cimsim.progress import progress as progress_bar
from cimsim.provenance import describe
from cimsim.readouts import readout_op
from cimsim.report import SELF_REFERENCE, Report, cost_report
from cimsim.spec import CrossbarSpec
from cimsim.spiking import convert_snntorch, is_spiking

MAPPED_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)
# matrix layers that exist in torch but that the mapper does not (yet) place on crossbars
UNSUPPORTED_TYPES = (nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Bilinear,
                     nn.RNNBase, nn.MultiheadAttention, nn.Transformer)
# the 99.99th percentile of |activation| sets the input range (our choice, see cimsim.mappers.qat, which
# fine-tunes with the same rule)
ACTIVATION_PERCENTILE = qat.ACTIVATION_PERCENTILE
# our choice: at most this many input vectors per layer calibrate the ADC ranges (a uniform sample)
ADC_CALIBRATION_ROWS = 16384
MODES = ("analog", "digital", "float")


# ------------------------------------------------------------------------------------------------ helpers
def _parent(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    parts = name.split(".")
    mod = root
    for p in parts[:-1]:
        mod = getattr(mod, p)
    return mod, parts[-1]


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, attr = _parent(root, name)
    setattr(parent, attr, new)


FUSED_CONTAINERS = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer,
                    nn.TransformerEncoder, nn.TransformerDecoder, nn.Transformer)


class KeptDigitalWarning(UserWarning):
    """Layers the mapper cannot place on crossbars run digitally; the warning names each and why."""


def _check_finite_weights(targets: dict) -> None:
    for name, mod in targets.items():
        for pname, p in mod.named_parameters(recurse=False):
            if not bool(torch.isfinite(p).all()):
                bad = int((~torch.isfinite(p)).sum())
                raise ConfigError(f"layer {name}: {bad} of {p.numel()} {pname} values are NaN or infinite; "
                                  "the network cannot be mapped (retrain it or load an intact checkpoint)")


def _unsupported_reason(mod: nn.Module) -> str | None:
    if isinstance(mod, UNSUPPORTED_TYPES):
        return f"{type(mod).__name__} is not a layer the crossbar mapper places"
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)) and mod.padding_mode != "zeros":
        return f"padding_mode={mod.padding_mode!r} (only zero padding is mapped)"
    return None


def _seed_for(seed: int, index: int, group: int) -> int:
    return int(np.random.SeedSequence([seed, index, group]).generate_state(1)[0])


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """Fold every BatchNorm whose input is the output of a Conv/Linear into that layer (in place).

    Returns the (layer, batchnorm) pairs folded. A layer called more than once per forward folds only when
    every call fed the same BN (a spiking network's time steps); shared weights feeding different BNs never do.
    """
    outputs: dict[int, tuple[str, torch.Tensor]] = {}
    calls: dict[str, int] = {}
    pairs: list[tuple[str, str]] = []
    handles = []
    keep = []  # keeps traced tensors alive so their ids stay unique during the trace

    def on_layer(name):
        def hook(mod, inputs, output):
            calls[name] = calls.get(name, 0) + 1
            keep.append(output)
            outputs[id(output)] = (name, output)
        return hook

    def on_bn(name):
        def hook(mod, inputs):
            calls[name] = calls.get(name, 0) + 1
            hit = outputs.get(id(inputs[0]))
            if hit is not None and hit[1] is inputs[0]:
                pairs.append((hit[0], name))
        return hook

    mods = dict(model.named_modules())
    for name, mod in mods.items():
        if isinstance(mod, MAPPED_TYPES):
            handles.append(mod.register_forward_hook(on_layer(name)))
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            handles.append(mod.register_forward_pre_hook(on_bn(name)))
    try:
        model(example)
    finally:
        for h in handles:
            h.remove()
    folded = []
    # a layer called several times (a spiking network's time steps) folds when every call fed the same BN and
    # that BN was fed by nothing else
    fed: dict[str, set[str]] = {}
    for layer, bn_name in pairs:
        fed.setdefault(layer, set()).add(bn_name)
    for layer, bn_name in dict.fromkeys(pairs):
        lay, bn = mods[layer], mods[bn_name]
        if (fed[layer] != {bn_name} or pairs.count((layer, bn_name)) != calls.get(layer, 0)
                or calls.get(bn_name, 0) != calls[layer]
                or not bn.track_running_stats or bn.running_mean is None):
            continue
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0 / torch.sqrt(bn.running_var + bn.eps)
        shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
        w = lay.weight
        lay.weight = nn.Parameter(w * scale.reshape(-1, *([1] * (w.dim() - 1))))
        old_bias = lay.bias if lay.bias is not None else torch.zeros_like(bn.running_mean)
        lay.bias = nn.Parameter(old_bias * scale + shift)
        _replace(model, bn_name, nn.Identity())
        folded.append((layer, bn_name))
    return folded


def quantize_weights(w: torch.Tensor, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel quantization: (integer weights (O, ...), scale per channel (O,))."""
    qmax = 2 ** (bits - 1) - 1
    flat = w.detach().double().reshape(w.shape[0], -1)
    amax = flat.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    q = torch.clamp(torch.round(flat / scale[:, None]), -qmax, qmax)
    return q.numpy().astype(np.int64).reshape(w.shape), scale.numpy()


# ------------------------------------------------------------------------------------------------ layer
class MappedLayer(nn.Module):
    """A Linear / Conv1d / Conv2d computed by crossbars (or, in ``digital`` mode, by exact integers)."""

    def __init__(self, name: str, source: nn.Module, arch, plan: LayerPlan):
        super().__init__()
        self.name, self.arch, self.plan = name, arch, plan
        self.source = source              # the BN-folded float layer ("float" mode)
        self.kind = type(source).__name__
        self.conv = isinstance(source, (nn.Conv1d, nn.Conv2d))
        self.mode = "analog"
        q, scale = quantize_weights(source.weight, arch.weight_bits)
        self.w_int = q.reshape(q.shape[0], -1)          # (O, C_in/groups * k)
        self.w_exact_t = np.ascontiguousarray(self.w_int.T, dtype=np.float64)   # (K, O); sums < 2**53: exact
        self.w_scale = scale
        self.bias = None if source.bias is None else source.bias.detach().double().numpy().copy()
        self.crossbars: list[Crossbar] = []   # one tile per group: a Crossbar, or a PackedTile (cimsim.packed)
        self.layout_counts: dict[str, int] = {}   # crossbars after each step of a weight layout (cimsim.mappers.sme)
        self.positions_seen = 0
        self.error_sq = 0.0       # sum of (s * (analog - exact))**2 over the outputs since the last reset
        self.reference_sq = 0.0   # sum of (s * exact)**2
        self.exact_device = "cpu"  # where the exact product runs: the engine's GPU when it has one (map_model)
        self.engine_s = 0.0       # wall seconds in the crossbars since the last reset (cimsim bench --model)
        self.exact_s = 0.0        # wall seconds of the exact product that measures the layer's error

    def set_integer_weights(self, q: np.ndarray, scale: np.ndarray) -> None:
        """Replace the quantized weights (O, ...) and their per-channel scales (a layout's own quantizer)."""
        self.w_int = np.asarray(q, dtype=np.int64).reshape(q.shape[0], -1)
        self.w_exact_t = np.ascontiguousarray(self.w_int.T, dtype=np.float64)
        self.w_scale = np.asarray(scale, dtype=np.float64)

    # geometry ----------------------------------------------------------------
    def _patches(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """(batch * positions, C_in * k) patches of x (already integer valued) and the output shape."""
        m = self.source
        if not self.conv:
            lead = x.shape[:-1]
            return x.reshape(-1, x.shape[-1]), (*lead, m.out_features)
        one_d = isinstance(m, nn.Conv1d)
        if one_d:
            x = x.unsqueeze(2)
        k = (1, m.kernel_size[0]) if one_d else tuple(m.kernel_size)
        s = (1, m.stride[0]) if one_d else tuple(m.stride)
        d = (1, m.dilation[0]) if one_d else tuple(m.dilation)
        pad = self._padding(one_d, k, d)
        # integer codes are exact in float32 (|code| < 2**24), and im2col is ~10x faster than in float64
        x = F.pad(x.float(), pad)
        B, C, H, W = x.shape
        cols = F.unfold(x, k, dilation=d, stride=s)                  # (B, C*kh*kw, L)
        Ho = (H - d[0] * (k[0] - 1) - 1) // s[0] + 1
        Wo = (W - d[1] * (k[1] - 1) - 1) // s[1] + 1
        patches = cols.transpose(1, 2).reshape(B * Ho * Wo, -1)
        shape = (B, m.out_channels, Wo) if one_d else (B, m.out_channels, Ho, Wo)
        return patches, shape

    def _padding(self, one_d: bool, k, d) -> tuple:
        m = self.source
        if isinstance(m.padding, str):
            if m.padding == "valid":
                return (0, 0, 0, 0)
            tot = [d[i] * (k[i] - 1) for i in range(2)]            # 'same' (stride 1)
            return (tot[1] // 2, tot[1] - tot[1] // 2, tot[0] // 2, tot[0] - tot[0] // 2)
        p = (0, m.padding[0]) if one_d else tuple(m.padding)
        return (p[1], p[1], p[0], p[0])

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        p = self.plan
        bits = p.input_bits or self.arch.input_bits
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if p.input_signed else (0, 2 ** bits - 1)
        return torch.clamp(torch.round(x.double() / p.input_scale), lo, hi)

    # forward -----------------------------------------------------------------
    def exact_product(self, patches: np.ndarray) -> np.ndarray:
        """patches (rows, groups * K) int -> (rows, O) float64: the exact integer product (the digital layer)."""
        G, K = self.plan.groups, self.plan.in_features
        og = self.w_int.shape[0] // G
        if self.exact_device != "cpu":   # float64 on the GPU: the same exact sums, without a CPU GEMM per batch
            if getattr(self, "_w_exact_dev", None) is None:
                self._w_exact_dev = torch.from_numpy(self.w_exact_t).to(self.exact_device)
            p = torch.from_numpy(patches).to(self.exact_device, torch.float64)
            w = self._w_exact_dev
            return torch.cat([p[:, g * K:(g + 1) * K] @ w[:, g * og:(g + 1) * og] for g in range(G)], 1).cpu().numpy()
        out = np.empty((patches.shape[0], self.w_int.shape[0]))
        for g in range(G):
            out[:, g * og:(g + 1) * og] = (patches[:, g * K:(g + 1) * K].astype(np.float64)
                                           @ self.w_exact_t[:, g * og:(g + 1) * og])
        return out

    def integer_product(self, patches: np.ndarray) -> np.ndarray:
        """patches (rows, groups * K) int -> (rows, O) float64 integer units, by crossbar or exactly."""
        if self.mode == "digital":
            return self.exact_product(patches)
        G, K = self.plan.groups, self.plan.in_features
        og = self.w_int.shape[0] // G
        out = np.empty((patches.shape[0], self.w_int.shape[0]))
        for g in range(G):
            out[:, g * og:(g + 1) * og] = self.crossbars[g](patches[:, g * K:(g + 1) * K])
        return out

    def record_error(self, analog: np.ndarray, exact: np.ndarray) -> None:
        """Add one batch's output error against the exact product to the layer's totals (see the module doc)."""
        scale = (self.plan.input_scale * self.w_scale)[None, :]
        self.error_sq += float(np.square((analog - exact) * scale).sum())
        self.reference_sq += float(np.square(exact * scale).sum())

    def rel_error(self) -> float:
        """Relative RMS error of the outputs since the last reset against the exact integer product (NaN
        before any analog output; 0 when every output was exact)."""
        if self.reference_sq > 0:
            return math.sqrt(self.error_sq / self.reference_sq)
        if self.error_sq > 0:
            return math.inf
        return 0.0 if self.positions_seen else math.nan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "float":
            return self.source(x)
        dtype = x.dtype
        xq = self.quantize_input(x)
        patches, shape = self._patches(xq)
        ints = patches.numpy().astype(np.int64)
        t0 = time.perf_counter()
        acc = self.integer_product(ints)
        t1 = time.perf_counter()
        if self.mode == "analog":
            with one_thread():   # a small GEMM per batch: one BLAS thread is several times cheaper (cimsim.blas)
                self.record_error(acc, self.exact_product(ints))
        self.engine_s += t1 - t0
        self.exact_s += time.perf_counter() - t1
        y = acc * (self.plan.input_scale * self.w_scale)[None, :]
        if self.bias is not None:
            y = y + self.bias[None, :]
        self.positions_seen += patches.shape[0]
        y = torch.from_numpy(y)
        if self.conv:
            B = shape[0]
            y = y.reshape(B, -1, shape[1]).transpose(1, 2).reshape(shape)
        else:
            y = y.reshape(shape)
        return y.to(dtype)

    def extra_repr(self) -> str:
        p = self.plan
        return (f"{self.kind} {p.in_features * p.groups}->{p.out_features}, groups={p.groups}, "
                f"{p.arrays} arrays, input {'signed' if p.input_signed else 'unsigned'} "
                f"{p.input_bits or self.arch.input_bits}b, weights {self.arch.weight_bits}b, mode={self.mode}")


# ------------------------------------------------------------------------------------------------ model
class MappedModel(nn.Module):
    """A network whose matrix layers run on simulated crossbars; ``forward`` is the original model's."""

    def __init__(self, model: nn.Module, reference: nn.Module, arch, layers: dict[str, MappedLayer],
                 digital_events: EventLedger, kinds: dict[str, str], kept_digital: dict[str, str],
                 folded: list, calibration_info: dict, seed: int, backend: str, device: str,
                 reference_note: str = SELF_REFERENCE, model_name: str | None = None):
        super().__init__()
        self.model = model
        self.model_name = model_name           # the name reports give the network (None: from its checkpoint)
        self.arch = arch
        self.mapped_layers = layers            # name -> MappedLayer (also reachable inside self.model)
        self._reference = [reference]          # float model (a list: not registered as a sub-module)
        self.reference_note = reference_note   # what the reference is, for the report
        self.digital_events = digital_events   # per-inference events of the digital layers
        self.kinds = kinds
        self.kept_digital = kept_digital       # unsupported matrix layers: name -> reason
        self.folded = folded
        self.calibration_info = calibration_info
        self.seed, self.backend, self.device = seed, backend, device
        # wall seconds of map_model: "prepare_s" (copy, batch-norm folding, the calibration forward pass, the
        # digital layers' profile), "program_s" (crossbars built and programmed), "calibrate_s" (activation
        # ranges, PSQ scales, ADC ranges)
        self.map_timings: dict[str, float] = {}

    @property
    def reference(self) -> nn.Module:
        """The floating-point network (BN not folded) whose accuracy the report gives as the digital
        reference: the mapped network itself, or the one given to :func:`map_model` (``reference_note`` says
        which)."""
        return self._reference[0]

    def set_mode(self, mode: str) -> "MappedModel":
        """"analog" (crossbars), "digital" (the quantized model in exact integer arithmetic) or "float"."""
        if mode not in MODES:
            raise ConfigError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
        for layer in self.mapped_layers.values():
            layer.mode = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(x)

    def reset_events(self) -> None:
        """Forget the events and the per-layer output errors counted so far."""
        for layer in self.mapped_layers.values():
            layer.positions_seen = 0
            layer.error_sq = layer.reference_sq = 0.0
            layer.engine_s = layer.exact_s = 0.0
            for xb in layer.crossbars:
                xb.ledger = EventLedger()

    def crossbar_events(self) -> EventLedger:
        """Everything the crossbars did since the last reset, by layer."""
        return EventLedger.merge(xb.ledger for layer in self.mapped_layers.values() for xb in layer.crossbars)

    def evaluate(self, loader, progress: bool | None = None, config: dict | None = None, *,
                 model_name: str | None = None, dataset: str | None = None) -> Report:
        """Accuracy, the digital reference accuracy, energy, latency, throughput and area over ``loader``,
        and each mapped layer's output error against its exact integer product.

        The report names the network (``model_name``, else the one given to :func:`map_model`, else its
        checkpoint's, else its class), the data (``dataset``, else the loader's dataset name) and the checkpoint
        the network was loaded from (:mod:`cimsim.provenance`); ``config`` adds to or overrides those keys.
        ``progress=False`` silences the progress report on stderr."""
        started = time.perf_counter()
        self.reset_events()
        self.eval()
        # the reference may be the caller's own model: evaluate it in eval mode, then give back its modes
        modes = [(m, m.training) for m in self.reference.modules()]
        self.reference.eval()
        correct = ref_correct = total = 0
        counter = snn.SpikeCounter(self.model)
        try:
            with torch.no_grad():
                for x, y in progress_bar(loader, desc=f"{self.arch.name} simulate", unit="batches",
                                         enabled=progress):
                    with counter:
                        correct += int((self(x).argmax(1) == y).sum())
                    ref_correct += int((self.reference(x).argmax(1) == y).sum())
                    total += len(y)
        finally:
            for m, training in modes:
                m.training = training
        if total == 0:
            raise ConfigError("the evaluation loader gave no examples")
        per_inf = self.crossbar_events().scaled(1.0 / total)
        ledger = per_inf + self.digital_events
        plans = {n: l.plan for n, l in self.mapped_layers.items()}
        report = cost_report(self.arch, ledger, plans, self.kinds)
        report.accuracy, report.digital_accuracy, report.n_examples = correct / total, ref_correct / total, total
        report.config = {"arch": self.arch.name, "arch_params": self.arch.params(), "seed": self.seed,
                         "backend": self.backend, "device": self.device, "digital_reference": self.reference_note,
                         **(config or {}), **report.config,
                         "kept_digital": self.kept_digital,
                         "batchnorm_folded": [f"{a} <- {b}" for a, b in self.folded],
                         "calibration": self.calibration_info,
                         **({"spiking": counter.summary(total, max(p.time_steps for p in plans.values()))}
                            if counter.neurons else {}),
                         "wall_seconds": round(time.perf_counter() - started, 3)}
        names = describe(self.model, loader, model_name=model_name or self.model_name, dataset=dataset)
        report.config = {**names, **report.config}   # what config gives wins
        report = add_layer_quality(report, {n: l.rel_error() for n, l in self.mapped_layers.items()}, ledger)
        return sme.add_layout_counts(report, {n: l.layout_counts for n, l in self.mapped_layers.items()})


# ------------------------------------------------------------------------------------------------ map()
def _batches(calibration, limit_batches: int | None):
    if calibration is None:
        return []
    out = []
    for i, item in enumerate([calibration] if isinstance(calibration, torch.Tensor) else calibration):
        out.append(item[0] if isinstance(item, (tuple, list)) else item)
        if limit_batches is not None and i + 1 >= limit_batches:
            break
    for xb in out:
        if not isinstance(xb, torch.Tensor) or xb.is_complex() or xb.ndim == 0:
            raise ConfigError("calibration batches must be real tensors with a batch dimension, got "
                              + (f"a {xb.dtype} tensor of shape {tuple(xb.shape)}" if isinstance(xb, torch.Tensor)
                                 else type(xb).__name__))
    return [xb for xb in out if xb.shape[0] > 0]   # empty batches add nothing (all empty: refused by the caller)


@contextlib.contextmanager
def _model_takes(xb: torch.Tensor):
    """The model refusing a calibration batch (wrong shape, wrong dtype) is the caller's error: one line."""
    try:
        yield
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ConfigError(f"the model fails on a calibration batch of shape {tuple(xb.shape)} "
                          f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); give inputs of "
                          "the shape the model takes") from None


def _check_psq(name: str, mod: nn.Module, cfg) -> None:
    if cfg is not None and mod.psq_config != cfg:
        raise ConfigError(f"layer {name} was fine-tuned for {mod.psq_config.tag} but the architecture reads "
                          f"{cfg.tag}: fine-tune it for this architecture ('cimsim finetune' with the same --set)")


def _check_sa(name: str, mod: nn.Module, spec: CrossbarSpec) -> None:
    c = mod.sa_config
    if (c.rows, c.cell_bits, c.weight_bits, c.threshold) != (spec.rows, spec.cell_bits, spec.weight_bits,
                                                              float(spec.readout.threshold)):
        raise ConfigError(f"layer {name} was trained for {c.rows}-row blocks, {c.cell_bits}-bit cells, "
                          f"{c.weight_bits}-bit weights and threshold {c.threshold:g}, but the architecture has "
                          f"{spec.rows}, {spec.cell_bits}, {spec.weight_bits} and {spec.readout.threshold:g}: "
                          "fine-tune it for this architecture")


def _calibration_patches(layer: "MappedLayer", activations: list, rng: np.random.Generator) -> np.ndarray:
    """The quantized input patches of a layer's calibration activations as int64: all of them, or, beyond
    ADC_CALIBRATION_ROWS, that many rows drawn without replacement (in their original order). Only the drawn
    rows are gathered and converted (the patches of 512 images can reach hundreds of MB)."""
    parts = [layer._patches(layer.quantize_input(a))[0] for a in activations]
    total = sum(int(p.shape[0]) for p in parts)
    if total <= ADC_CALIBRATION_ROWS:
        return torch.cat(parts).numpy().astype(np.int64)
    rows = np.sort(rng.choice(total, ADC_CALIBRATION_ROWS, replace=False))
    starts = np.cumsum([0] + [int(p.shape[0]) for p in parts])
    picked = []
    for p, s0, s1 in zip(parts, starts[:-1], starts[1:]):
        i0, i1 = np.searchsorted(rows, [s0, s1])
        if i1 > i0:
            picked.append(p[torch.from_numpy(rows[i0:i1] - s0)])
    return torch.cat(picked).numpy().astype(np.int64)


@torch.no_grad()
def map_model(model: nn.Module, arch, calibration=None, *, seed: int = 0, backend: str = "numba",
              device: str = "cpu", calibration_batches: int | None = None, reference: nn.Module | None = None,
              reference_note: str | None = None, model_name: str | None = None,
              progress: bool | None = None) -> MappedModel:
    """Map ``model`` onto ``arch`` (see the module docstring); ``calibration``: batches (x, y) or a tensor.

    ``reference``: the floating-point network whose accuracy the report gives as the digital reference. By
    default the model itself, in floating point (for a PSQ network, its layers with partial-sum quantization
    off: the fine-tuned weights in float, which is not the network they were fine-tuned from: pass that one
    here, as ``cimsim run`` and ``cimsim sweep`` do). ``reference_note`` says in the report what it is.
    ``model_name``: the network's name in reports (default: its checkpoint's model, else its class name).
    ``progress=False`` silences the progress report on stderr (the calibration pass, then layer by layer).
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"cimsim.map needs a torch.nn.Module, got {type(model).__name__}")
    check_seed(seed)
    if reference is not None and not isinstance(reference, nn.Module):
        raise ConfigError(f"cimsim.map: reference must be a torch.nn.Module, got {type(reference).__name__}")
    if not isinstance(arch, Architecture):
        raise ConfigError(f"cimsim.map needs an architecture (cimsim.arch.get(NAME)), got {type(arch).__name__}")
    if not arch.maps_to_crossbars:
        raise ConfigError(f"architecture {arch.name!r} has no crossbars to map onto "
                          "(use cimsim.mappers.evaluate for the digital reference)")
    batches = _batches(calibration, calibration_batches)
    if not batches:
        raise ConfigError("cimsim.map needs calibration data (a loader of (x, y) batches or a tensor of inputs) "
                          "to set activation and ADC ranges; pass calibration=data.loader('train', limit=...)")
    psq_cfg = qat.PSQConfig.from_arch(arch) if arch.learned_column_scales else None
    started = time.perf_counter()
    timings = {"prepare_s": 0.0, "program_s": 0.0, "calibrate_s": 0.0}   # MappedModel.map_timings
    layout = arch.weight_layout()   # None: one Crossbar per group; else packed tiles (SME: cimsim.mappers.sme)
    if reference is not None:
        reference = copy.deepcopy(reference).eval()
        note = reference_note or "a floating-point network given to the mapper"
    elif any(qat.is_psq(m) for m in model.modules()):   # the float layers: PSQ off
        reference = qat.set_psq(copy.deepcopy(model), False).eval()
        note = reference_note or ("the PSQ network with partial-sum quantization off (its fine-tuned weights in "
                                  "floating point)")
    else:
        reference, note = model, reference_note or SELF_REFERENCE
    work = copy.deepcopy(model).eval()
    convert_snntorch(work)          # snnTorch Leaky -> cimsim LIF (same semantics; cimsim.spiking)
    spiking = is_spiking(work)
    for p in work.parameters():
        p.requires_grad_(False)
    with _model_takes(batches[0]):
        folded = fold_batchnorm(work, batches[0])

    targets, kept = {}, {}
    # PyTorch's attention and transformer blocks may run fused kernels that read their sub-layers' weights
    # without calling them (the fast path of nn.TransformerEncoderLayer, out_proj of nn.MultiheadAttention)
    fused = [n for n, m in work.named_modules() if n and isinstance(m, FUSED_CONTAINERS)]
    for name, mod in work.named_modules():
        inside = next((f for f in fused if name.startswith(f + ".")), None)
        if inside is not None and isinstance(mod, MAPPED_TYPES):
            kept[name] = f"inside {inside}, a {type(dict(work.named_modules())[inside]).__name__} whose fused path " \
                         "bypasses its sub-layers"
            continue
        reason = _unsupported_reason(mod)
        if reason is not None:
            kept[name] = reason
        elif isinstance(mod, MAPPED_TYPES):
            targets[name] = mod
    if not targets:
        raise ConfigError("the model has no Linear or Conv1d/Conv2d layer to map onto crossbars")

    # one pass over the calibration batches: every mapped layer's inputs
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in targets}
    handles = [m.register_forward_pre_hook(lambda mod, inp, n=n: seen[n].append(inp[0].detach()))
               for n, m in targets.items()]
    try:
        for xb in progress_bar(batches, desc=f"{arch.name} map: calibration pass", unit="batches", enabled=progress):
            with _model_takes(xb):
                work(xb)
    finally:
        for h in handles:
            h.remove()
    for name in [n for n in targets if not seen[n]]:   # its weight is used, its forward never called
        kept[name] = ("never called through its forward (its weight is used directly, as nn.MultiheadAttention "
                      "uses out_proj)")
        del targets[name], seen[name]
    if kept:
        warnings.warn(KeptDigitalWarning("kept digital (not mapped to crossbars): "
                                         + "; ".join(f"{n} ({r})" for n, r in kept.items())), stacklevel=2)
    if not targets:
        raise ConfigError("the model has no Linear or Conv1d/Conv2d layer that runs through its forward to map "
                          "onto crossbars")
    _check_finite_weights(targets)

    prof = profile(work, batches[0])
    digital = EventLedger({l: prof.ledger.layer(l) for l in prof.ledger.layers() if l not in targets})
    kinds = dict(prof.kinds)
    cal_uncosted = [n for n in prof.uncosted if n not in targets]

    layers: dict[str, MappedLayer] = {}
    rng = np.random.default_rng(seed)
    cal_info = {"batches": len(batches), "examples": int(sum(len(b) for b in batches)),
                "activation_percentile": ACTIVATION_PERCENTILE, "adc_rows_per_layer": ADC_CALIBRATION_ROWS,
                "uncosted_layers": cal_uncosted}
    unscaled = []
    timings["prepare_s"] = time.perf_counter() - started
    for index, (name, mod) in enumerate(progress_bar(list(targets.items()), desc=f"{arch.name} map: program and "
                                                     "calibrate", unit="layers", enabled=progress)):
        sa_trained = snn_qat.is_sa(mod)   # trained for a sense amp per column (cimsim.mappers.snn_qat)
        spike_in = (bool(mod.spike_input) if sa_trained else
                    spiking and not qat.is_psq(mod) and snn.binary_inputs(seen[name]))
        if qat.is_psq(mod):   # fine-tuned with PSQ: its input range is part of what it learned
            _check_psq(name, mod, psq_cfg)
            signed, input_scale = bool(mod.input_signed), float(mod.input_scale)
        elif sa_trained and not spike_in:
            signed, input_scale = bool(mod.input_signed), float(mod.input_scale)
        elif spike_in:        # spikes: 1-bit inputs
            input_scale, signed = 1.0, False
        else:
            input_scale, signed = qat.activation_range(torch.cat([a.reshape(-1) for a in seen[name]]),
                                                       arch.input_bits, rng)
        t0 = time.perf_counter()
        groups = getattr(mod, "groups", 1)
        k_per_group = mod.weight[0].numel()
        calls = len(seen[name]) // len(batches) if spiking else 1     # time steps
        plan = LayerPlan(name, type(mod).__name__, k_per_group, mod.weight.shape[0], groups,
                         input_signed=signed, input_scale=input_scale, input_bits=1 if spike_in else 0,
                         time_steps=max(calls, 1))
        layer = MappedLayer(name, mod, arch, plan)
        if backend == "torch" and str(device).startswith("cuda"):
            layer.exact_device = device
        spec = arch.crossbar_spec(input_signed=signed)
        if spike_in:   # one read cycle per time step
            spec = CrossbarSpec(**{**spec.__dict__, "input_bits": 1, "dac_bits": 1})
        og = plan.out_features // groups
        scales = None
        if psq_cfg is not None:
            if qat.is_psq(mod):
                scales = mod.psq_alpha.detach().double().numpy()
            else:
                unscaled.append(name)
                allp = _calibration_patches(layer, seen[name], rng)
                scales = np.concatenate([qat.lsq_scales(allp[:, g * k_per_group:(g + 1) * k_per_group],
                                                        layer.w_int[g * og:(g + 1) * og], psq_cfg, signed)
                                         for g in range(groups)], axis=2)
        elif readout_op(spec.readout).decides and not spec.pair_readout and sa_trained:
            _check_sa(name, mod, spec)
            scales = snn_qat.column_scales(mod)
        elif readout_op(spec.readout).decides and not spec.pair_readout:   # one sense amp per column
            allp = _calibration_patches(layer, seen[name], rng)
            scales = np.concatenate([snn.sense_amp_scales(allp[:, g * k_per_group:(g + 1) * k_per_group],
                                                          layer.w_int[g * og:(g + 1) * og], spec)
                                     for g in range(groups)], axis=3)
        t1 = time.perf_counter()
        seeds = [_seed_for(seed, index, g) for g in range(groups)]
        if layout is not None:    # SME: shaped, spliced and squeezed packed tiles
            sme.program_layer(layer, mod, spec, layout, seeds, backend=backend, device=device)
        elif scales is None and admm.program_masked(layer, spec, seeds, backend=backend, device=device):
            pass                  # masked mapping: arrays of all-zero (pruned) blocks are not allocated
        else:
            layer.crossbars += [Crossbar(layer.w_int[g * og:(g + 1) * og], spec, seed=seeds[g], backend=backend,
                                         device=device, name=name,
                                         column_scales=None if scales is None else scales[..., g * og:(g + 1) * og])
                                for g in range(groups)]
        t2 = time.perf_counter()
        # positions per inference and ADC calibration from the quantized calibration inputs
        patches, shape = layer._patches(layer.quantize_input(seen[name][0][:1]))
        plan.positions = int(patches.shape[0]) * plan.time_steps
        plan.arrays = sum(xb.arrays for xb in layer.crossbars)
        plan.row_blocks = len(layer.crossbars[0].row_blocks)
        if spec.adc_range == "calibrated":
            allp = _calibration_patches(layer, seen[name], rng)
            for g, xb in enumerate(layer.crossbars):
                xb.calibrate(allp[:, g * k_per_group:(g + 1) * k_per_group])
        layers[name] = layer
        _replace(work, name, layer)
        seen[name] = []  # free the calibration activations
        timings["program_s"] += t2 - t1                    # the crossbars built, their cells programmed
        timings["calibrate_s"] += time.perf_counter() - t2 + (t1 - t0)   # ranges, scales, ADC calibration
    if unscaled:
        warnings.warn(f"{arch.name}: no learned partial-sum scale factors for {', '.join(unscaled)}; using "
                      "calibrated initial scales (expect an accuracy loss: fine-tune with cimsim.mappers.qat, "
                      "'cimsim finetune')", stacklevel=2)
    mapped = MappedModel(work, reference, arch, layers, digital, kinds, kept, folded, cal_info, seed, backend, device,
                         reference_note=note, model_name=model_name)
    mapped.map_timings = timings
    return mapped
