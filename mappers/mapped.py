"""Mapped layers and networks: what :func:`cimsim.mappers.map_model` builds.

A :class:`MappedLayer` computes one Linear / Conv1d / Conv2d with the crossbars the mapper programmed (or, in
``digital`` mode, in exact integer arithmetic; in ``float`` mode with the folded float layer), and keeps each
layer's output error against its exact integer product; a :class:`MappedModel` is the whole network with
them in place, evaluated into a :class:`cimsim.Report`. The mapping itself (folding, calibration,
programming) is in :mod:`cimsim.mappers.mapper`.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from concurrent.futures import ThreadPoolExecutor, wait as futures_wait
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cimsim.blas import one_thread, torch_one_thread
from cimsim.cost import LayerPlan
from cimsim.crossbar import Crossbar
from cimsim.engine_threads import threads
from cimsim.errors import ConfigError
from cimsim.kernels_host import one_column_products, patch_codes
from cimsim.ledger import EventLedger
from cimsim.mappers import sme, snn
from cimsim.mappers.layer_quality import add_layer_quality, sum_of_squares
from cimsim.mappers import mapped_checks as checks
from cimsim.mappers.mapped_attrs import SourceAttributes
from cimsim.metrics import batch_score, is_flow
from cimsim.packed import PackedTile
from cimsim.progress import progress as progress_bar
from cimsim.provenance import describe
from cimsim.readouts import readout_op
from cimsim.report import SELF_REFERENCE, Report, cost_report
from cimsim.stopwatch import Stopwatch

MODES = ("analog", "digital", "float")


def quantize_weights(w: torch.Tensor, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel quantization: (integer weights (O, ...), scale per channel (O,))."""
    qmax = 2 ** (bits - 1) - 1
    flat = w.detach().double().reshape(w.shape[0], -1)
    amax = flat.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    q = torch.clamp(torch.round(flat / scale[:, None]), -qmax, qmax)
    return q.numpy().astype(np.int64).reshape(w.shape), scale.numpy()


# ------------------------------------------------------------------------------------------------ layer

def _window_count(n: int, k: int, s: int, d: int) -> int:
    """Positions of a kernel of ``k`` taps, dilation ``d`` and stride ``s`` along a padded extent ``n``."""
    return (n - d * (k - 1) - 1) // s + 1


class MappedLayer(SourceAttributes, nn.Module):
    """A Linear / Conv1d / Conv2d computed by crossbars (or, in ``digital`` mode, by exact integers). It answers the
    replaced layer's ``weight`` (the programmed weights, dequantized), ``bias`` and shape attributes, read-only
    (:mod:`cimsim.mappers.mapped_attrs`)."""

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
        self._bias64 = None if source.bias is None else source.bias.detach().double().numpy().copy()   # (O,): added
        self.crossbars: list[Crossbar] = []   # one tile per group: a Crossbar, or a PackedTile (cimsim.packed)
        self.layout_counts: dict[str, int] = {}   # crossbars after each step of a weight layout (cimsim.mappers.sme)
        self.positions_seen = 0
        self.error_sq = 0.0       # sum of (s * (analog - exact))**2 over the outputs since the last reset
        self.reference_sq = 0.0   # sum of (s * exact)**2
        self.exact_device = "cpu"  # where the exact product runs: the engine's GPU when it has one (map_model)
        self.engine_time = Stopwatch()   # seconds in the crossbars since the last reset (cimsim bench --model)
        self.exact_time = Stopwatch()    # seconds of the exact product that measures the layer's error
        self._dev: dict | None = None    # the device path's weights, scales and error sums (_device_consts)
        self._exact_seen: dict = {}      # group -> a crossbar's exact weights found equal to the layer's, and
        #                                  "bounded" -> whether the exact product's sums stay exact (_exact_from)

    @property
    def engine_s(self) -> float:
        return self.engine_time.seconds

    @property
    def exact_s(self) -> float:
        return self.exact_time.seconds

    def reset_counts(self) -> None:
        """Forget the positions, output errors and timings counted so far."""
        self.positions_seen = 0
        self.error_sq = self.reference_sq = 0.0
        self.engine_time, self.exact_time = Stopwatch(), Stopwatch()
        if self._dev is not None:
            self._dev["err"].zero_()

    def set_integer_weights(self, q: np.ndarray, scale: np.ndarray) -> None:
        """Replace the quantized weights (O, ...) and their per-channel scales (a layout's own quantizer): ``weight``
        follows, the crossbars do not (programmed after it)."""
        self.w_int = np.asarray(q, dtype=np.int64).reshape(q.shape[0], -1)
        self.w_exact_t = np.ascontiguousarray(self.w_int.T, dtype=np.float64)
        self.w_scale = np.asarray(scale, dtype=np.float64)
        self._dev = self._w_exact_dev = None
        self._exact_seen = {}

    def engine_device(self) -> torch.device | None:
        """The device of this layer's crossbars when every tile (a :class:`Crossbar` or a packed tile,
        :class:`cimsim.packed.PackedTile`) runs on one torch device (then the layer runs there without a host round
        trip: :meth:`_forward_device`), else None."""
        devices = {t.torch_device for t in self.crossbars}
        return devices.pop() if len(devices) == 1 else None

    def _device_consts(self, dev: torch.device) -> dict:
        """The device path's constants (the exact product's weights (K, O) float64, the output scale and bias) and
        its error sums (error, reference), made once per device."""
        if self._dev is None or self._dev["device"] != dev:
            scale = (self.plan.input_scale * self.w_scale)[None, :]
            self._dev = {"device": dev, "w": torch.from_numpy(self.w_exact_t).to(dev),
                         "scale": torch.from_numpy(scale).to(dev),
                         "bias": None if self._bias64 is None else torch.from_numpy(self._bias64[None, :]).to(dev),
                         "err": torch.zeros(2, dtype=torch.float64, device=dev)}
        return self._dev

    # geometry ----------------------------------------------------------------
    def _patches(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """(batch * positions, C_in * k) patches of x (already integer valued) and the output shape."""
        view, shape = self._patch_view(x)
        if not self.conv:
            return view, shape
        B, Ho, Wo, C, kh, kw = view.shape
        return view.reshape(B * Ho * Wo, C * kh * kw), shape

    def _patch_view(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """The patches of :meth:`_patches` before they are copied: a strided view (batch, Ho, Wo, C_in, kh, kw) of
        the padded input for a convolution, (rows, in_features) for a linear layer; and the output shape."""
        m = self.source
        if not self.conv:
            lead = x.shape[:-1]
            return x.reshape(-1, x.shape[-1]), (*lead, m.out_features)
        one_d, k, s, d, pad = self.geometry()
        if one_d:
            x = x.unsqueeze(2)
        # integer codes are exact in float32 up to 24 bits (|code| < 2**24), and im2col is ~10x faster than in
        # float64; wider codes are cut in float64 (exact to 53 bits)
        x = F.pad(x.double() if self._wide_codes() else x.float(), pad).contiguous()
        B, C, H, W = x.shape
        Ho, Wo = _window_count(H, k[0], s[0], d[0]), _window_count(W, k[1], s[1], d[1])
        # the patches as a strided view (B, Ho, Wo, C, kh, kw) copied once: F.unfold's values in its order
        # (channel, kernel row, kernel column), without its per-example kernel launches on a GPU
        sb, sc, sh, sw = x.stride()
        view = x.as_strided((B, Ho, Wo, C, k[0], k[1]), (sb, s[0] * sh, s[1] * sw, sc, d[0] * sh, d[1] * sw))
        shape = (B, m.out_channels, Wo) if one_d else (B, m.out_channels, Ho, Wo)
        return view, shape

    def _wide_codes(self) -> bool:
        """Whether this layer's input codes may reach 2**24 (more than 24 input bits), which float32 does not hold."""
        return (self.plan.input_bits or self.arch.input_bits) > 24

    def geometry(self) -> tuple:
        """A convolution's (one_d, kernel, stride, dilation, padding), two-dimensional (a Conv1d as 1 x k)."""
        m = self.source
        one_d = isinstance(m, nn.Conv1d)
        k = (1, m.kernel_size[0]) if one_d else tuple(m.kernel_size)
        s = (1, m.stride[0]) if one_d else tuple(m.stride)
        d = (1, m.dilation[0]) if one_d else tuple(m.dilation)
        return one_d, k, s, d, self._padding(one_d, k, d)

    def _integer_patches(self, xq: torch.Tensor, grouped: bool = False) -> tuple[np.ndarray, tuple]:
        """``_patches(xq)`` as int64 (the host path): a convolution's cut in one pass by
        :func:`cimsim.kernels_host.patch_codes`, the numbers of ``_patches(xq)[0].numpy().astype(np.int64)`` (with
        ``grouped``, a grouped convolution's as (groups, rows, K): each group's inputs contiguous)."""
        if not self.conv:
            patches, shape = self._patches(xq)
            return patches.numpy().astype(np.int64), shape
        one_d, k, s, d, pad = self.geometry()
        x = xq.detach().unsqueeze(2) if one_d else xq.detach()
        ints = patch_codes(x.numpy(), k, s, d, pad, through_float32=not self._wide_codes(),
                           groups=self.plan.groups if grouped else 1)
        B = x.shape[0]
        Ho = _window_count(x.shape[2] + pad[2] + pad[3], k[0], s[0], d[0])
        Wo = _window_count(x.shape[3] + pad[0] + pad[1], k[1], s[1], d[1])
        m = self.source
        return ints, (B, m.out_channels, Wo) if one_d else (B, m.out_channels, Ho, Wo)

    def _padding(self, one_d: bool, k, d) -> tuple:
        m = self.source
        if isinstance(m.padding, str):
            if m.padding == "valid":
                return (0, 0, 0, 0)
            tot = [d[i] * (k[i] - 1) for i in range(2)]            # 'same' (stride 1)
            return (tot[1] // 2, tot[1] - tot[1] // 2, tot[0] // 2, tot[0] - tot[0] // 2)
        p = (0, m.padding[0]) if one_d else tuple(m.padding)
        return (p[1], p[1], p[0], p[0])

    def code_range(self) -> tuple[int, int]:
        """(lowest, highest) input code: the layer's input bits, signed or not (split signed inputs: symmetric,
        :func:`cimsim.encoding.check_inputs`)."""
        bits = self.plan.input_bits or self.arch.input_bits
        if not self.plan.input_signed:
            return (0, 2 ** bits - 1)
        split = getattr(self.arch, "input_encoding", "twos") == "split"   # no -2**(bits-1): its magnitude needs bits
        return (-(2 ** (bits - 1)) + (1 if split else 0), 2 ** (bits - 1) - 1)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.code_range()
        if x.device.type == "cpu":   # the device path's input is checked on the host (MappedModel.forward): no sync
            checks.check_finite(self.name, x, self.plan.input_scale)
        return torch.clamp(torch.round(x.double() / self.plan.input_scale), lo, hi)

    # forward -----------------------------------------------------------------
    def exact_product(self, patches: np.ndarray) -> np.ndarray:
        """patches (rows, groups * K) or group-major (groups, rows, K) -> (rows, O) float64: the exact product."""
        G, K = self.plan.groups, self.plan.in_features
        og = self.w_int.shape[0] // G
        major = patches.ndim == 3
        if self.exact_device != "cpu":   # float64 on the GPU: the same exact sums, without a CPU GEMM per batch
            if getattr(self, "_w_exact_dev", None) is None:
                self._w_exact_dev = torch.from_numpy(self.w_exact_t).to(self.exact_device)
            p = torch.from_numpy(patches).to(self.exact_device, torch.float64)
            w = self._w_exact_dev
            return torch.cat([(p[g] if major else p[:, g * K:(g + 1) * K]) @ w[:, g * og:(g + 1) * og]
                              for g in range(G)], 1).cpu().numpy()
        if major and G > 1 and og == 1 and self._sums_exact():   # depthwise: one pass, the same integers
            return one_column_products(patches, self.w_exact_t)
        out = np.empty((patches.shape[-2], self.w_int.shape[0]))
        for g in range(G):
            out[:, g * og:(g + 1) * og] = ((patches[g] if major else patches[:, g * K:(g + 1) * K]).astype(np.float64)
                                           @ self.w_exact_t[:, g * og:(g + 1) * og])
        return out

    def _sums_exact(self) -> bool:
        """Whether every partial sum of an input (|x| < 2**input_bits) times ``w_exact_t`` is an integer below 2**53
        (then its float64 products are exact in any order)."""
        bounded = self._exact_seen.get("bounded")
        if bounded is None:
            bits = self.plan.input_bits or self.arch.input_bits
            bounded = self._exact_seen["bounded"] = (
                float(np.abs(self.w_exact_t).sum(axis=0).max(initial=0.0)) * 2.0 ** bits < 2.0 ** 53)
        return bounded

    def integer_product(self, patches: np.ndarray) -> np.ndarray:
        """patches (rows, groups * K) or group-major (groups, rows, K) -> (rows, O) float64 integers, by crossbar."""
        if self.mode == "digital":
            return self.exact_product(patches)
        G = self.plan.groups
        og = self.w_int.shape[0] // G
        out = np.empty((patches.shape[-2], self.w_int.shape[0]))
        if G > 1 and patches.ndim == 2:   # each group's inputs contiguous: a crossbar bounds and sums them in one pass
            patches = np.ascontiguousarray(patches.reshape(patches.shape[0], G, -1).transpose(1, 0, 2))
        for g in range(G):
            out[:, g * og:(g + 1) * og] = self.crossbars[g](patches[g] if G > 1 else patches)
        return out

    def _exact_from(self, acc: np.ndarray) -> np.ndarray | None:
        """``acc`` when it already is this batch's exact product (:meth:`exact_product`), else None: every crossbar's
        last call took the lossless path (its outputs are the exact integers x @ W: :meth:`Crossbar.exact_weights`,
        :meth:`PackedTile.exact_weights`) with W the layer's integer weights (checked once per crossbar), and every
        partial sum of the exact product an integer below 2**53 (then its float64 GEMM is exact too: the same numbers)."""
        if not self.crossbars or any(type(xb) not in (Crossbar, PackedTile) for xb in self.crossbars):
            return None
        G = self.plan.groups
        og = self.w_int.shape[0] // G
        for g, xb in enumerate(self.crossbars):
            w = xb.exact_weights()
            if w is None:
                return None
            if self._exact_seen.get(g) is not w:
                mine = self.w_exact_t[:, g * og:(g + 1) * og]
                if w.shape != mine.shape or not np.array_equal(w, mine):
                    return None
                self._exact_seen[g] = w
        return acc if self._sums_exact() else None

    def record_error(self, analog: np.ndarray, exact: np.ndarray) -> None:
        """Add one batch's output error against the exact product to the layer's totals (see the module doc)."""
        scale = (self.plan.input_scale * self.w_scale)[None, :]
        if exact is not analog:   # the same array: every error is 0.0, and so is their sum
            self.error_sq += sum_of_squares(analog - exact, scale)
        self.reference_sq += sum_of_squares(exact * scale)

    def rel_error(self) -> float:
        """Relative RMS error of the outputs since the last reset against the exact integer product (NaN
        before any analog output; 0 when every output was exact)."""
        if self._dev is not None:   # the device path's sums: read once, here
            err, ref = (float(v) for v in self._dev["err"].cpu())
            self._dev["err"].zero_()
            self.error_sq += err
            self.reference_sq += ref
        if self.reference_sq > 0:
            return math.sqrt(self.error_sq / self.reference_sq)
        if self.error_sq > 0:
            return math.inf
        return 0.0 if self.positions_seen else math.nan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        checks.check_layer_input(self.name, self.source, x)
        if self.mode == "float":
            return self.source(x)
        dev = self.engine_device()
        if dev is not None:
            return self._forward_device(x, dev)
        dtype, where = x.dtype, x.device
        ints, shape = self._integer_patches(self.quantize_input(x.cpu()), grouped=True)
        t0 = self.engine_time.start(None)
        acc = self.integer_product(ints)
        self.engine_time.stop(t0)
        t1 = self.exact_time.start(None)
        if self.mode == "analog":
            exact = self._exact_from(acc)   # a lossless call's outputs are the exact product: not formed again
            with one_thread():   # a small GEMM per batch: one BLAS thread is several times cheaper (cimsim.blas)
                self.record_error(acc, self.exact_product(ints) if exact is None else exact)
        self.exact_time.stop(t1)
        y = acc * (self.plan.input_scale * self.w_scale)[None, :]
        y = y if self._bias64 is None else y + self._bias64[None, :]
        self.positions_seen += ints.shape[-2]
        return self._output(torch.from_numpy(y), shape).to(device=where, dtype=dtype)

    def _forward_device(self, x: torch.Tensor, dev: torch.device) -> torch.Tensor:
        """The forward pass on the crossbars' device (the torch backend): quantization, patches, the crossbars,
        the exact product and the error sums, scales and bias all stay there, and nothing waits for the device.
        The same arithmetic as the host path: every intermediate is an exact integer or the same float64
        operation, so the outputs are the same numbers."""
        dtype = x.dtype
        k = self._device_consts(dev)
        patches, shape = self._patches(self.quantize_input(x.to(dev)))   # integers in float32 (or float64)
        K = self.plan.in_features
        t0 = self.engine_time.start(dev)
        if self.mode == "digital":
            acc = self._exact_device(patches, k["w"])
        else:
            parts = [xb.call_device(patches[:, g * K:(g + 1) * K]) for g, xb in enumerate(self.crossbars)]
            acc = parts[0] if len(parts) == 1 else torch.cat(parts, 1)     # one crossbar: no copy
        self.engine_time.stop(t0)
        if self.mode == "analog":
            t1 = self.exact_time.start(dev)
            from cimsim import kernels_triton   # here: Triton loads only where the torch backend runs

            # one kernel on a GPU (the same integers, the sums to their order's last bits); else in torch
            if dev.type != "cuda" or self.plan.groups != 1 or \
                    not kernels_triton.exact_error_sums(patches, k["w"], acc, k["scale"], k["err"]):
                exact = self._exact_device(patches, k["w"])
                k["err"][0] += ((acc - exact) * k["scale"]).square().sum()
                k["err"][1] += (exact * k["scale"]).square().sum()
            self.exact_time.stop(t1)
        y = acc * k["scale"]
        if k["bias"] is not None:
            y = y + k["bias"]
        self.positions_seen += patches.shape[0]
        return self._output(y.to(dtype), shape)     # cast first: the layout's copy moves half the bytes

    def _exact_device(self, patches: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The exact integer product on the device, float64 (integer sums below 2**53: exact in any order)."""
        G, K = self.plan.groups, self.plan.in_features
        og = w.shape[1] // G
        p = patches.to(torch.float64)
        if G == 1:
            return p @ w
        return torch.cat([p[:, g * K:(g + 1) * K] @ w[:, g * og:(g + 1) * og] for g in range(G)], 1)

    def _output(self, y: torch.Tensor, shape) -> torch.Tensor:
        """(rows, O) outputs back in the layer's output shape."""
        if self.conv:
            B = shape[0]
            y = y.reshape(B, -1, shape[1]).transpose(1, 2).reshape(shape)
        else:
            y = y.reshape(shape)
        return y

    def extra_repr(self) -> str:
        p = self.plan
        return (f"{self.kind} {p.in_features * p.groups}->{p.out_features}, groups={p.groups}, "
                f"{p.arrays} arrays, input {'signed' if p.input_signed else 'unsigned'} "
                f"{p.input_bits or self.arch.input_bits}b, weights {self.arch.weight_bits}b, mode={self.mode}")


# ------------------------------------------------------------------------------------------------ model
class MappedModel(nn.Module):
    """A network whose matrix layers run on simulated crossbars; ``forward`` is the original model's."""

    # on the host engine, run the float reference of a batch in a thread beside the mapped network (see
    # :meth:`evaluate`); False: after it, on the calling thread (the tests compare both)
    REFERENCE_BESIDE = True

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

    @property
    def input_shape(self) -> tuple | None:
        """One example's shape, as calibration gave it (None where the mapping did not record it)."""
        shape = self.calibration_info.get("input_shape")
        return None if shape is None else tuple(shape)

    def set_mode(self, mode: str) -> "MappedModel":
        """"analog" (crossbars), "digital" (the quantized model in exact integer arithmetic) or "float"."""
        if mode not in MODES:
            raise ConfigError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
        for layer in self.mapped_layers.values():
            layer.mode = mode
        return self

    def engine_device(self) -> torch.device | None:
        """The device a torch-backend network runs on, activations included (None: the host path)."""
        devs = {l.engine_device() for l in self.mapped_layers.values()} - {None}
        return next(iter(devs)) if len(devs) == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output (on the host). On the torch backend the whole network (its digital layers too)
        runs on the engine's device, from the input batch's one upload to the output's one download."""
        checks.check_network_input(x, self.input_shape, self.calibration_info.get("input_floating", True))
        with torch.no_grad():
            dev = self.engine_device()
            if dev is not None and x.device.type == "cpu":   # the layers check theirs on the host only
                checks.check_finite(None, x)
            if dev is None:   # the host engine: torch's small operations on one thread (cimsim.blas)
                with torch_one_thread():
                    return self.model(x)
            if getattr(self, "_model_device", None) != dev:
                self.model.to(dev)
                self._model_device = dev
            return self.model(x.to(dev)).cpu()

    def _reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The float reference's output: on a GPU engine, a copy of it on the GPU (the caller's network stays
        where it is) in full float32 (TF32 off), on the host otherwise."""
        dev = self.engine_device()
        if dev is None:
            with torch_one_thread():   # beside the host engine, as its forward (cimsim.blas)
                return self.reference(x)
        if dev.type != "cuda":
            return self.reference(x)
        ref = getattr(self, "_reference_dev", None)
        if ref is None or ref[0] is not self.reference:
            ref = self._reference_dev = (self.reference, copy.deepcopy(self.reference).to(dev))
        ref[1].train(self.reference.training)
        conv, mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            return ref[1](x.to(dev)).cpu()
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, mm

    def _reference_no_grad(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`_reference_forward` without autograd, for a thread of its own (``torch.no_grad`` holds per thread)."""
        with torch.no_grad():
            return self._reference_forward(x)

    def retarget(self, arch) -> bool:
        """Put this mapped network, as :func:`map_model` built it, on ``arch`` when ``arch`` differs from its
        architecture only in the converters' settings (ADC bits, the converter's own noise): the programmed
        arrays, the activation ranges and the calibrated value ranges stay, every crossbar gets the new converter
        (:meth:`cimsim.Crossbar.with_readout`: its read noise starts again at the first call) and the costs come
        from ``arch``. The result equals a fresh ``map_model(model, arch, calibration, seed=...)`` bit for bit.
        Returns False, changing nothing, where it would not (other arrays, cells, input or weight bits, a
        decision readout whose scales come from calibration, learned scales, packed tiles)."""
        old = self.arch
        if type(arch) is not type(old) or not arch.maps_to_crossbars:
            return False
        if (arch.learned_column_scales or arch.learned_sense_amp_scales or arch.weight_layout() is not None
                or old.weight_layout() is not None or arch.input_bits != old.input_bits
                or arch.weight_bits != old.weight_bits):
            return False
        for signed in (False, True):
            a, b = old.crossbar_spec(input_signed=signed), arch.crossbar_spec(input_signed=signed)
            if type(a.readout) is not type(b.readout) or replace(a, readout=b.readout) != b:
                return False
            if not readout_op(b.readout).quantizes or readout_op(b.readout).decides:
                return False
        if any(type(xb) is not Crossbar for layer in self.mapped_layers.values() for xb in layer.crossbars):
            return False
        readouts = {s: arch.crossbar_spec(input_signed=s).readout for s in (False, True)}
        for layer in self.mapped_layers.values():
            layer.arch = arch
            layer.crossbars = [xb.with_readout(readouts[xb.spec.input_signed]) for xb in layer.crossbars]
        self.arch = arch
        self.reset_events()
        self.map_timings = {"prepare_s": 0.0, "program_s": 0.0, "calibrate_s": 0.0}   # nothing mapped again
        return True


    def reset_events(self) -> None:
        """Forget the events and the per-layer output errors counted so far."""
        for layer in self.mapped_layers.values():
            layer.reset_counts()
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
        checks.check_evaluable({l.mode for l in self.mapped_layers.values()}, config)
        checks.check_loader(loader)
        started = time.perf_counter()
        self.reset_events()
        self.eval()
        # the reference may be the caller's own model: evaluate it in eval mode, then give back its modes
        modes = [(m, m.training) for m in self.reference.modules()]
        self.reference.eval()
        correct = ref_correct = total = 0
        flow = False
        counter = snn.SpikeCounter(self.model)
        on_host = self.engine_device() is None
        host = torch_one_thread() if on_host else contextlib.nullcontext()
        # on the host engine the float reference of a batch runs in a thread of its own while the mapped network
        # runs that batch: the mapped network's host work (patches, pooling, the error sums) is mostly serial, and a
        # core would wait beside it. The reference is another module (see map_model), on one torch thread either way,
        # so its outputs are the same numbers.
        beside = ThreadPoolExecutor(max_workers=1) if on_host and self.REFERENCE_BESIDE and threads() > 1 else None
        try:
            with torch.no_grad(), host:   # the loader's batches too: torch on one thread beside the host engine
                for item in progress_bar(loader, desc=f"{self.arch.name} simulate", unit="batches", enabled=progress):
                    x, y = checks.check_batch(item, self.input_shape, self.calibration_info.get("input_floating", True))
                    ref = beside.submit(self._reference_no_grad, x) if beside is not None else None
                    try:
                        with counter:
                            out = self(x)
                        checks.check_output(out, y)
                        correct += batch_score(out, y)
                    finally:
                        if ref is not None:   # finished before anything goes on, also after an error
                            futures_wait([ref])
                    ref_correct += batch_score(self._reference_forward(x) if ref is None else ref.result(), y)
                    total += len(y)
                    flow = is_flow(y)
        finally:
            if beside is not None:
                beside.shutdown(wait=True)
            for m, training in modes:
                m.training = training
        if total == 0:
            raise ConfigError("the evaluation loader gave no examples")
        per_inf = self.crossbar_events().scaled(1.0 / total)
        ledger = per_inf + self.digital_events
        plans = {n: l.plan for n, l in self.mapped_layers.items()}
        report = cost_report(self.arch, ledger, plans, self.kinds)
        report.accuracy, report.digital_accuracy, report.n_examples = correct / total, ref_correct / total, total
        if flow:   # a flow network: scored by its average endpoint error (cimsim.metrics), not by accuracy
            report.accuracy = report.digital_accuracy = float("nan")
            report.config["aee_px"], report.config["digital_aee_px"] = correct / total, ref_correct / total
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


