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
5. **Replace** each ``Linear`` / ``Conv1d`` / ``Conv2d`` by a :class:`MappedLayer` (an ``nn.MultiheadAttention``'s
   projections too: it is first split into four ``Linear`` layers, :mod:`cimsim.mappers.unfuse`; the attention's
   scores and weighted values, products of two activations, stay digital). Everything else
   (activations, pooling, adds, un-foldable normalisation) stays digital and is costed with the
   architecture's digital components. A matrix layer the mapper does not support (transposed or 3-d
   convolutions, recurrent layers, non-zero padding modes) is named in one warning and
   kept digital; the warning says NOT costed where no cost model covers its work. Work the network's own
   ``forward`` does with torch functions (``F.relu``, ``x @ y``, ``softmax``, ``F.linear(x, self.w)``) is costed as
   digital work (:mod:`cimsim.mappers.profile_ops`); a parameter used that way is named in the same warning. Work
   no cost model covers (modules and torch functions the profiler does not know) is named in one
   :class:`UncostedWorkWarning`; whatever is not costed is listed in ``calibration_info["uncosted_layers"]``.
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
import functools
import time

import numpy as np
import torch
from torch import nn

from cimsim.arch.base import Architecture
from cimsim.blas import torch_one_thread
from cimsim.calibration import kept_buffers
from cimsim.cost import LayerPlan
from cimsim.crossbar import Crossbar
from cimsim.crossbar_count import CountingCrossbar
from cimsim.errors import ConfigError, check_seed, warn_user
from cimsim.kernels_host import drawn_patch_codes
from cimsim.ledger import EventLedger
from cimsim.mappers import admm, qat, sme, snn, snn_qat
from cimsim.mappers.mapped import MODES, MappedLayer, MappedModel, quantize_weights  # noqa: F401 (re-exported)
from cimsim.mappers.profile import profile
from cimsim.mappers.unfuse import unfuse, why_not_split
from cimsim.progress import progress as progress_bar
from cimsim.readouts import readout_op
from cimsim.report import SELF_REFERENCE
from cimsim.spec import CrossbarSpec
from cimsim.spiking import convert_snntorch, is_spiking

MAPPED_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)
# matrix layers that exist in torch but that the mapper does not (yet) place on crossbars
UNSUPPORTED_TYPES = (nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Bilinear,
                     nn.RNNBase)
# the 99.99th percentile of |activation| sets the input range (our choice, see cimsim.mappers.qat, which
# fine-tunes with the same rule)
ACTIVATION_PERCENTILE = qat.ACTIVATION_PERCENTILE
# our choice: at most this many input vectors per layer calibrate the ADC ranges (a uniform sample)
ADC_CALIBRATION_ROWS = 16384
# our choice: a layer's calibration patches are cut this many bytes of groups at a time (a depthwise layer's 384
# groups of 16,384 x 9 codes would hold 453 MB at once)
PATCH_CHUNK_BYTES = 1 << 24


# ------------------------------------------------------------------------------------------------ helpers
def _parent(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    parts = name.split(".")
    mod = root
    for p in parts[:-1]:
        mod = getattr(mod, p)
    return mod, parts[-1]


def replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` in place of the sub-module ``name`` (a dotted path) of ``root``."""
    parent, attr = _parent(root, name)
    setattr(parent, attr, new)


def _fused(mod: nn.Module) -> bool:
    """Whether torch may run ``mod`` as one fused kernel that reads its sub-layers' weights without calling them:
    an ``nn.MultiheadAttention`` left packed (:func:`cimsim.mappers.unfuse.why_not_split`), an
    ``nn.TransformerEncoderLayer`` around one (its fast path)."""
    return isinstance(mod, nn.MultiheadAttention) or (isinstance(mod, nn.TransformerEncoderLayer)
                                                       and isinstance(mod.self_attn, nn.MultiheadAttention))


class KeptDigitalWarning(UserWarning):
    """Layers the mapper cannot place on crossbars run digitally; the warning names each and why, and says "not
    costed" for those whose work the energy and latency figures leave out."""


class UncostedWorkWarning(UserWarning):
    """Work of the network that no cost model covers (left out of the energy and latency figures): modules and torch
    functions the profiler does not recognise (:mod:`cimsim.mappers.profile_ops`), parameters used in them."""


def _warn_uncosted(kept: dict, prof, uncosted: list, mapped=()) -> None:
    """One KeptDigitalWarning for the kept layers and parameters used outside a layer ("not costed" where so), one
    UncostedWorkWarning for the rest (``mapped``: the layers placed on crossbars, whose weight a forward may also
    use outside the layer: the mapped network computes that with the programmed weights, MappedLayer.weight)."""
    def covers(k, n):   # the kept layer k is, or holds, the uncosted n (nn.MultiheadAttention's in_proj_weight)
        return n == k or n.startswith(k + ".")
    note = "; NOT costed: its work is left out of the energy and latency"
    digital = {n: w for n, w in prof.digital.items() if not any(covers(k, n) for k in kept)}
    if kept or digital:
        warn_user(KeptDigitalWarning("kept digital (not mapped to crossbars): " + "; ".join(
            [f"{k} ({r}{note if any(covers(k, n) for n in uncosted) else ''})" for k, r in kept.items()]
            + [f"{n} ({'its weight also' if n in mapped else 'a parameter'} used in {w or 'code outside any module'}'s "
               f"forward, not by {'the' if n in mapped else 'a'} layer: computed and costed as digital work)"
               for n, w in digital.items()])))
    rest = [n for n in uncosted if not any(covers(k, n) for k in kept)]
    if rest:
        def why(n):
            if n in mapped:   # the mapped network computes it with the programmed weights (MappedLayer.weight)
                where = prof.unowned[n] or "code outside any module"
                return f"its weight used in {where}'s forward outside the layer, computed digitally"
            if n in prof.unowned:
                return f"a parameter used in {prof.unowned[n] or 'code outside any module'}'s forward, not by a layer"
            if n in prof.functions:
                fname, where = prof.functions[n]
                return f"torch function {fname} called in {where}'s forward: no cost model"
            return f"{prof.kinds.get(n, 'module')}: no cost model"
        warn_user(UncostedWorkWarning("NOT costed (left out of the energy and latency): "
                                      + "; ".join(f"{n} ({why(n)})" for n in rest)))


def _check_finite_weights(targets: dict) -> None:
    for name, mod in targets.items():
        for pname, p in mod.named_parameters(recurse=False):
            if not bool(torch.isfinite(p).all()):
                bad = int((~torch.isfinite(p)).sum())
                raise ConfigError(f"layer {name}: {bad} of {p.numel()} {pname} values are NaN or infinite; "
                                  "the network cannot be mapped (retrain it or load an intact checkpoint)")


def _unsupported_reason(mod: nn.Module) -> str | None:
    if isinstance(mod, nn.MultiheadAttention):   # one unfuse() left packed
        return f"MultiheadAttention with {why_not_split(mod)}"
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
        replace_module(model, bn_name, nn.Identity())
        folded.append((layer, bn_name))
    return folded


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


def _check_psq(name: str, mod: nn.Module, cfg, input_bits: int) -> None:
    if cfg is None:
        return
    if mod.psq_config != cfg:
        raise ConfigError(f"layer {name} was fine-tuned for {mod.psq_config.tag} but the architecture reads "
                          f"{cfg.tag}: fine-tune it for this architecture ('cimsim finetune' with the same --set)")
    if mod.psq_input_bits != input_bits:
        raise ConfigError(f"layer {name} was fine-tuned with {mod.psq_input_bits}-bit inputs but is mapped with "
                          f"{input_bits}-bit ones (first_input_bits applies to the first layer the network calls): "
                          "fine-tune the network as it is mapped")


def _check_sa(name: str, mod: nn.Module, spec: CrossbarSpec) -> None:
    c = mod.sa_config
    if (c.rows, c.cell_bits, c.weight_bits, c.threshold) != (spec.rows, spec.cell_bits, spec.weight_bits,
                                                              float(spec.readout.threshold)):
        raise ConfigError(f"layer {name} was trained for {c.rows}-row blocks, {c.cell_bits}-bit cells, "
                          f"{c.weight_bits}-bit weights and threshold {c.threshold:g}, but the architecture has "
                          f"{spec.rows}, {spec.cell_bits}, {spec.weight_bits} and {spec.readout.threshold:g}: "
                          "fine-tune it for this architecture")


def _calibration_groups(layer: "MappedLayer", activations: list, rng: np.random.Generator):
    """Each group's quantized input patches of a layer's calibration activations, int64 (rows, K), in group order: all
    of them, or, beyond ADC_CALIBRATION_ROWS, that many rows drawn without replacement (in their original order;
    drawn here, before the first group is asked for). Only the drawn rows are read and quantized
    (:func:`_drawn_codes`), PATCH_CHUNK_BYTES of groups at a time: the patches of 512 images can reach hundreds of
    MB."""
    counts = [_patch_count(layer, a) for a in activations]
    total = sum(counts)
    take = [np.arange(n, dtype=np.int64) for n in counts]
    if total > ADC_CALIBRATION_ROWS:
        rows = np.sort(rng.choice(total, ADC_CALIBRATION_ROWS, replace=False))
        starts = np.cumsum([0] + counts)
        edges = np.searchsorted(rows, starts)
        take = [rows[i0:i1] - s0 for s0, i0, i1 in zip(starts, edges[:-1], edges[1:])]
    n, groups, k = sum(len(t) for t in take), layer.plan.groups, layer.plan.in_features
    step = max(1, PATCH_CHUNK_BYTES // max(1, n * k * 8))

    def chunks():
        for g0 in range(0, groups, step):
            out = np.empty((min(step, groups - g0), n, k), dtype=np.int64)
            r0 = 0
            for a, t in zip(activations, take):
                _drawn_codes(layer, a, t, out[:, r0:r0 + len(t)], g0)
                r0 += len(t)
            yield from out
    return chunks()


def _drawn_codes(layer: "MappedLayer", x: torch.Tensor, rows: np.ndarray, out: np.ndarray, first: int = 0) -> None:
    """Groups ``first`` .. ``first`` + len(out) of ``layer._patches(layer.quantize_input(x))[0][rows]`` (rows: int64,
    ascending) group-major into ``out`` (len(out), len(rows), K) int64, the same numbers read from ``x`` itself: a
    convolution's by :func:`cimsim.kernels_host.drawn_patch_codes` (no quantized or padded copy of the activation)."""
    if not len(rows):
        return
    x = x.detach()
    if not layer.conv:
        out[0] = layer.quantize_input(x.reshape(-1, x.shape[-1])[torch.from_numpy(rows)]).numpy()
        return
    one_d, k, s, d, pad = layer.geometry()
    x = x.unsqueeze(2) if one_d else x
    if x.dtype not in (torch.float32, torch.float64):
        x = x.double()   # exact: quantize_input divides in float64
    lo, hi = layer.code_range()
    drawn_patch_codes(np.ascontiguousarray(x.numpy()), rows, k, s, d, pad, layer.plan.input_scale, lo, hi, out,
                      layer.plan.groups, first)


def _patch_count(layer: "MappedLayer", activation: torch.Tensor) -> int:
    """The rows of ``layer._patches`` for this activation batch (its first example's, times the batch)."""
    if not layer.conv:
        return int(activation[..., 0].numel())
    return int(layer._patch_view(activation[:1])[0].shape[1:3].numel()) * int(activation.shape[0])


def _host_threads(fn):
    """Run ``fn`` (map_model) with torch on one thread when the numba engine does the products: the calibration
    pass and the patches are many small torch operations beside it (:func:`cimsim.blas.torch_one_thread`); and with
    the ADC calibration's buffers kept from one crossbar to the next (:func:`cimsim.calibration.kept_buffers`)."""
    @functools.wraps(fn)
    def wrapped(*args, backend: str = "numba", **kwargs):
        with torch_one_thread() if backend == "numba" else contextlib.nullcontext(), kept_buffers():
            return fn(*args, backend=backend, **kwargs)
    return wrapped


@_host_threads
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
    ``backend="count"`` builds counting tiles (:class:`cimsim.crossbar_count.CountingCrossbar`) for cost-only
    runs: the engine's events from the inputs' digits, the exact integer product, no cell programmed.
    """
    if backend == "count" and str(device) != "cpu":
        raise ConfigError(f"backend 'count' runs on the CPU; got device={device!r}")
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
    unfuse(work)    # nn.MultiheadAttention -> SplitAttention: its projections become layers (cimsim.mappers.unfuse)
    spiking = is_spiking(work)
    for p in work.parameters():
        p.requires_grad_(False)
    with _model_takes(batches[0]):
        folded = fold_batchnorm(work, batches[0])

    targets, kept = {}, {}
    # PyTorch's attention and transformer blocks left packed may run fused kernels that read their sub-layers'
    # weights without calling them (the fast path of nn.TransformerEncoderLayer, out_proj of nn.MultiheadAttention)
    fused = [n for n, m in work.named_modules() if n and _fused(m)]
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
    order: list[str] = []     # the targets in the order of their first call: order[0] is the network's first layer
    handles = [m.register_forward_pre_hook(lambda mod, inp, n=n: qat._record(seen, order, n, inp))
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
    if not targets:
        raise ConfigError("the model has no Linear or Conv1d/Conv2d layer that runs through its forward to map "
                          "onto crossbars")
    _check_finite_weights(targets)

    prof = profile(work, batches[0])
    digital = EventLedger({l: prof.ledger.layer(l) for l in prof.ledger.layers() if l not in targets})
    kinds = dict(prof.kinds)
    kinds.update({bn: "BatchNorm (folded)" for _, bn in folded if bn in kinds})   # into its layer; now an Identity
    # a mapped layer's own work is costed; its weight used outside its forward (F.linear(x, self.fc.weight)) is not
    cal_uncosted = [n for n in prof.uncosted if n not in targets or n in prof.unowned]
    _warn_uncosted(kept, prof, cal_uncosted, targets)

    layers: dict[str, MappedLayer] = {}
    rng = np.random.default_rng(seed)
    cal_info = {"batches": len(batches), "examples": int(sum(len(b) for b in batches)),
                "activation_percentile": ACTIVATION_PERCENTILE, "adc_rows_per_layer": ADC_CALIBRATION_ROWS,
                "uncosted_layers": cal_uncosted,
                "input_shape": [int(d) for d in batches[0].shape[1:]] if batches else None,   # the inputs' checks
                "input_floating": bool(batches[0].is_floating_point()) if batches else True}
    unscaled = []
    # the first layer's input bits when the architecture sets them apart (hcim first_input_bits; 0: input_bits)
    first_bits = {order[0]: arch.first_layer_input_bits()} if order and arch.first_layer_input_bits() else {}
    timings["prepare_s"] = time.perf_counter() - started
    for index, (name, mod) in enumerate(progress_bar(list(targets.items()), desc=f"{arch.name} map: program and "
                                                     "calibrate", unit="layers", enabled=progress)):
        t0 = time.perf_counter()   # the activation range too (calibrate_s)
        sa_trained = snn_qat.is_sa(mod)   # trained for a sense amp per column (cimsim.mappers.snn_qat)
        spike_in = (bool(mod.spike_input) if sa_trained else
                    spiking and not qat.is_psq(mod) and snn.binary_inputs(seen[name]))
        bits = first_bits.get(name, 0)   # 0: the architecture's input_bits
        # the network's first / last layer read by an ADC where the architecture says so (hcim adc_layers)
        adc_spec = arch.adc_read_spec(False, name == order[0], name == order[-1])
        if qat.is_psq(mod):   # fine-tuned with PSQ: its input range (and bits) are part of what it learned
            _check_psq(name, mod, psq_cfg, bits or arch.input_bits)
            if psq_cfg is not None and mod.psq_adc != (adc_spec is not None):
                raise ConfigError(f"layer {name} was fine-tuned {'for' if mod.psq_adc else 'without'} an ADC "
                                  f"readout but is mapped {'with' if adc_spec is not None else 'without'} one "
                                  f"({psq_cfg.tag}): fine-tune the network as it is mapped")
            if psq_cfg is None and mod.psq_input_bits != arch.input_bits:   # on a baseline: as fine-tuned
                bits = mod.psq_input_bits
            signed, input_scale = bool(mod.input_signed), float(mod.input_scale)
        elif sa_trained and not spike_in:
            signed, input_scale = bool(mod.input_signed), float(mod.input_scale)
        elif spike_in:        # spikes: 1-bit inputs
            input_scale, signed = 1.0, False
        else:
            input_scale, signed = qat.activation_range(torch.cat([a.reshape(-1) for a in seen[name]]),
                                                       bits or arch.input_bits)
        groups = getattr(mod, "groups", 1)
        k_per_group = mod.weight[0].numel()
        calls = len(seen[name]) // len(batches) if spiking else 1     # time steps
        plan = LayerPlan(name, type(mod).__name__, k_per_group, mod.weight.shape[0], groups,
                         input_signed=signed, input_scale=input_scale, input_bits=1 if spike_in else bits,
                         time_steps=max(calls, 1))
        layer = MappedLayer(name, mod, arch, plan)
        if backend == "torch" and str(device).startswith("cuda"):
            layer.exact_device = device
        spec = arch.crossbar_spec(input_signed=signed)
        if adc_spec is not None:   # its ADC's range: the fine-tuned one, else calibrated below
            adc_range = tuple(float(v) for v in mod.psq_adc_range) if qat.is_psq(mod) and mod.psq_adc else "calibrated"
            spec = CrossbarSpec(**{**adc_spec.__dict__, "input_signed": signed, "adc_range": adc_range})
        if spike_in:   # one read cycle per time step
            spec = CrossbarSpec(**{**spec.__dict__, "input_bits": 1, "dac_bits": 1})
        elif bits:     # the first layer's own input bits: more bit planes through the same readout
            spec = CrossbarSpec(**{**spec.__dict__, "input_bits": bits})
        og = plan.out_features // groups
        scales = thresholds = None
        if psq_cfg is not None and adc_spec is None:
            if qat.is_psq(mod):
                scales = mod.psq_alpha.detach().double().numpy()
                thresholds = qat.column_thresholds(mod)
            else:
                unscaled.append(name)
                lcfg = psq_cfg.for_layer(bits or psq_cfg.input_bits)
                scales = np.concatenate([qat.lsq_scales(p, layer.w_int[g * og:(g + 1) * og], lcfg, signed)
                                         for g, p in enumerate(_calibration_groups(layer, seen[name], rng))], axis=2)
            if psq_cfg.learn_thresholds and thresholds is None:   # a layer mapped without PSQ: where training starts
                thresholds = np.full_like(scales, psq_cfg.initial_threshold)
        elif readout_op(spec.readout).decides and not spec.pair_readout and sa_trained:
            _check_sa(name, mod, spec)
            scales = snn_qat.column_scales(mod)
        elif readout_op(spec.readout).decides and not spec.pair_readout:   # one sense amp per column
            scales = np.concatenate([snn.sense_amp_scales(p, layer.w_int[g * og:(g + 1) * og], spec)
                                     for g, p in enumerate(_calibration_groups(layer, seen[name], rng))], axis=3)
        t1 = time.perf_counter()
        seeds = [_seed_for(seed, index, g) for g in range(groups)]
        if backend == "count":    # cost only: counting tiles (cimsim.crossbar_count), no cell programmed
            if layout is not None or scales is not None:
                raise ConfigError(f"backend 'count' counts plain crossbar tiles; {arch.name} maps "
                                  f"{'packed tiles' if layout is not None else 'learned column scales'}: "
                                  "use backend='numba'")
            layer.crossbars += [CountingCrossbar(layer.w_int[g * og:(g + 1) * og], spec, name=name)
                                for g in range(groups)]
        elif layout is not None:    # SME: shaped, spliced and squeezed packed tiles
            sme.program_layer(layer, mod, spec, layout, seeds, backend=backend, device=device)
        elif scales is None and admm.program_masked(layer, spec, seeds, backend=backend, device=device):
            pass                  # masked mapping: arrays of all-zero (pruned) blocks are not allocated
        else:
            layer.crossbars += [Crossbar(layer.w_int[g * og:(g + 1) * og], spec, seed=seeds[g], backend=backend,
                                         device=device, name=name,
                                         column_scales=None if scales is None else scales[..., g * og:(g + 1) * og],
                                         column_thresholds=None if thresholds is None
                                         else thresholds[..., g * og:(g + 1) * og])
                                for g in range(groups)]
        t2 = time.perf_counter()
        # positions per inference and ADC calibration from the quantized calibration inputs
        patches, shape = layer._patches(layer.quantize_input(seen[name][0][:1]))
        plan.positions = int(patches.shape[0]) * plan.time_steps
        plan.input_values = int(seen[name][0][:1].numel()) * plan.time_steps
        plan.arrays = sum(xb.arrays for xb in layer.crossbars)
        plan.row_blocks = len(layer.crossbars[0].row_blocks)
        if spec.adc_range == "calibrated":
            for xb, p in zip(layer.crossbars, _calibration_groups(layer, seen[name], rng), strict=True):
                xb.calibrate(p)
        layers[name] = layer
        replace_module(work, name, layer)
        seen[name] = []  # free the calibration activations
        timings["program_s"] += t2 - t1                    # the crossbars built, their cells programmed
        timings["calibrate_s"] += time.perf_counter() - t2 + (t1 - t0)   # ranges, scales, ADC calibration
    if unscaled:
        warn_user(f"{arch.name}: no learned partial-sum scale factors for {', '.join(unscaled)}; using calibrated "
                  "initial scales (expect an accuracy loss: fine-tune with cimsim.mappers.qat, 'cimsim finetune')")
    mapped = MappedModel(work, reference, arch, layers, digital, kinds, kept, folded, cal_info, seed, backend, device,
                         reference_note=note, model_name=model_name)
    mapped.map_timings = timings
    return mapped
