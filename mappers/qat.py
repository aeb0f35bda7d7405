"""Hardware-aware training: partial-sum quantization-aware training (PSQ) and noise injection.

ADC-less architectures (HCiM, arXiv 2403.13577) read every crossbar partial sum with one or two
comparators: a binary (+1 / -1) or ternary (-1 / 0 / +1) decision per column pair, multiplied by a
learned per-column scale factor ``alpha`` in a digital array. A network trained in floating point loses
most of its accuracy there; PSQ fine-tunes it with that readout in the loop.

:class:`PSQLinear` / :class:`PSQConv2d` are ``nn.Linear`` / ``nn.Conv2d`` whose forward computes exactly
what :class:`cimsim.Crossbar` computes with ``pair_readout`` and ``column_scales``:

* inputs quantized like the mapper does (``x_int = clamp(round(x / s_x))``, ``s_x`` from the calibration
  percentile, fixed during fine-tuning unless learned: :func:`learn_input_steps`), cut into the same bit
  planes as :func:`cimsim.encoding.input_planes`; ``input_bits`` per layer, except the network's first
  mapped layer (:func:`first_layer`) when ``first_input_bits`` is set (e.g. 8-bit image inputs: more bit
  planes, each read by the same comparators);
* weights quantized per output channel like :func:`cimsim.mappers.quantize_weights`, sliced like the
  engine's ``signed="differential"`` encoding (slice ``j`` of a weight is ``sign(w) * level_j(|w|)``, the
  G+ minus G- value its column pair holds);
* the reduction dimension cut into the same row blocks of ``rows`` (in ``F.unfold`` order, the order
  the mapper programs);
* per (row block, slice, output), and per input cycle too with ``cycle_scales`` (``alpha_t``):
  ``PS = plane_t . slice_j`` and ``q = alpha * D(PS / alpha)``,
  ``D`` = ternary ``(u > threshold) - (u < -threshold)`` or binary ``+1 if u > 0 else -1``;
* ``y = s_x * s_w * sum_{t, r, j} 2**(dac_bits t) * 2**shift_j * q + bias``;
* learned thresholds (``learn_thresholds``): ``D = (u > t) - (u < -t)`` with ``t`` per scale factor (its shape), a
  parameter ``psq_threshold`` read on its reference DAC's grid of ``2**-threshold_bits`` in [0, 1)
  (:func:`~cimsim.mappers.qat_ops.grid_thresholds`), projected back into [0, 1) after each step; its gradient:
  :class:`~cimsim.mappers.qat_ops.ThresholdDecision`;
* a layer an ADC reads instead (``adc_layers``: the network's first and/or last mapped layer) has no ``alpha``:
  ``q = lo + lsb * clamp(floor((PS - lo) / lsb + 0.5), 0, 2**adc_bits - 1)`` over its range ``psq_adc_range``
  (set by :func:`init_scales`; :func:`cimsim.mappers.qat_ops.adc_quantize`, the engine's quantizer);
* a layer with ``psq_exact`` set (the stages of a progressive fine-tune,
  :func:`cimsim.mappers.psq_finetune.finetune`) has no readout: ``y = s_x * s_w * x_int @ w_int.T + bias``, the same
  partial sums summed with their significances, exactly.

Gradients: straight-through estimators. Rounding passes the gradient through; each bit plane and weight
slice passes its share of the gradient of the integer it came from, weighted by its significance (our
choice: shares ``c_t = 2**t / sum 4**t`` so that ``sum_t 2**t c_t = 1``); the decision uses the LSQ
estimator of Esser et al. (ICLR 2020): ``q = alpha * clamp(u, -1, 1)`` in the backward pass, with the
gradient of ``alpha`` scaled by ``1 / sqrt(number of partial sums per alpha)``.

Noise injection (``noise_frac``): during training, every cell level of a slice gets Gaussian noise of
standard deviation ``noise_frac x (2**cell_bits - 1)`` per cell (two cells per pair), the conductance
variation ``ReRAM.prog_sigma_frac`` models, so the network learns margins around it.

:func:`prepare` makes a PSQ copy of a trained network (BN folded, input ranges calibrated, ``alpha``
initialised as the multiple of mean |PS| with the least squared error);
:func:`cimsim.mappers.psq_finetune.finetune` fine-tunes it (optionally distilling from the float network);
:func:`cimsim.networks.save_psq_checkpoint` / :func:`cimsim.networks.load_psq_checkpoint` store it and
:func:`cimsim.networks.find_psq_checkpoint` finds it (the user's directory first, then the shipped ones).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from cimsim.arch.hcim import ADC_LAYERS   # the layers an ADC may read instead of the comparators
from cimsim.encoding import plane_layout, plane_weights
from cimsim.errors import ConfigError
# the arithmetic pieces, here where callers find them (cimsim.mappers.qat.bit_planes, ...)
from cimsim.mappers.qat_ops import (ConvRows, LinearRows, ScaledDecision, ThresholdDecision, adc_lo_lsb,  # noqa: F401
                                    adc_quantize, adc_range, bit_planes, cached_constant, decide, decision_sum,
                                    grid_thresholds, quantize_activation, quantize_weight_ste, stacked_planes,
                                    weight_slices)
from cimsim.mappers import qat_calibrate
from cimsim.mappers.unfuse import unfuse

# the calibration helpers (cimsim.mappers.qat_calibrate), here where callers find them (qat.activation_range, ...)
ACTIVATION_PERCENTILE = qat_calibrate.ACTIVATION_PERCENTILE
_record, called_order, first_called = qat_calibrate._record, qat_calibrate.called_order, qat_calibrate.first_called
activation_range, lsq_scales = qat_calibrate.activation_range, qat_calibrate.lsq_scales

READOUTS = ("ternary", "binary")
FORMAT = "cimsim.psq-checkpoint"


@dataclass(frozen=True)
class PSQConfig:
    """What the crossbar does to a partial sum; must match the architecture the network is mapped onto."""

    # the defaults are arch "hcim"'s (arch/hcim.py, where each is cited): 128x128 arrays as ISAAC's baselines, 1-bit
    # cells, 4-bit weights and inputs, one input bit a cycle (all est.: HCiM, arXiv 2403.13577)
    rows: int = 128
    cell_bits: int = 1
    weight_bits: int = 4
    input_bits: int = 4
    dac_bits: int = 1
    readout: str = "ternary"
    threshold: float = 0.5
    first_input_bits: int = 0     # input bits of the network's first mapped layer (0: input_bits), :func:`first_layer`
    cycle_scales: bool = False    # one scale factor per (row block, slice, output) and input cycle
    adc_layers: str = "none"      # layers read by an ADC of adc_bits instead of the comparators (hcim adc_layers)
    adc_bits: int = 4             # that ADC's bits (unused with adc_layers "none")
    learn_thresholds: bool = False  # one learned comparator threshold per column scale (hcim learn_thresholds)
    threshold_bits: int = 5       # bits of the reference DAC setting those thresholds (unused when not learned)

    def __post_init__(self):
        for k in ("rows", "cell_bits", "weight_bits", "input_bits", "dac_bits"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"PSQConfig.{k} must be a positive integer, got {v!r}")
        v = self.first_input_bits
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"PSQConfig.first_input_bits must be 0 (as input_bits) or a positive integer, got {v!r}")
        if v == self.input_bits:      # one configuration, one name: the first layer at input_bits is the default
            object.__setattr__(self, "first_input_bits", 0)
        if not isinstance(self.cycle_scales, bool):
            raise ConfigError(f"PSQConfig.cycle_scales must be true or false, got {self.cycle_scales!r}")
        if self.adc_layers not in ADC_LAYERS:
            raise ConfigError(f"PSQConfig.adc_layers = {self.adc_layers!r}: choose one of {', '.join(ADC_LAYERS)}")
        if isinstance(self.adc_bits, bool) or not isinstance(self.adc_bits, int) or not 1 <= self.adc_bits <= 16:
            raise ConfigError(f"PSQConfig.adc_bits must be an integer in [1, 16], got {self.adc_bits!r}")
        if self.adc_layers == "none":    # one configuration, one name: the bits of an unused ADC do not count
            object.__setattr__(self, "adc_bits", 4)
        if not isinstance(self.learn_thresholds, bool):
            raise ConfigError(f"PSQConfig.learn_thresholds must be true or false, got {self.learn_thresholds!r}")
        v = self.threshold_bits
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 8:
            raise ConfigError(f"PSQConfig.threshold_bits must be an integer in [1, 8], got {v!r}")
        if not self.learn_thresholds:    # one configuration, one name: the bits of an unused reference DAC
            object.__setattr__(self, "threshold_bits", 5)
        elif self.readout != "ternary":
            raise ConfigError("PSQConfig.learn_thresholds needs the ternary readout (a binary one compares with 0)")
        if self.weight_bits < 2:
            raise ConfigError("PSQConfig.weight_bits must be at least 2 (signed weights)")
        if self.readout not in READOUTS:
            raise ConfigError(f"PSQConfig.readout = {self.readout!r}: choose 'ternary' or 'binary'")
        if not 0 <= self.threshold < 1:
            raise ConfigError(f"PSQConfig.threshold must lie in [0, 1), got {self.threshold!r}")

    @classmethod
    def from_arch(cls, arch) -> "PSQConfig":
        """The PSQ configuration of an architecture with learned column scales (its declared
        :meth:`cimsim.arch.base.Architecture.psq_fields`)."""
        return cls(**arch.psq_fields())

    @property
    def tag(self) -> str:
        """Short name of the configuration, used in checkpoint file names."""
        first = f"f{self.first_input_bits}" if self.first_input_bits else ""
        adc = "" if self.adc_layers == "none" else f"-adc{self.adc_bits}{self.adc_layers.replace(',', '')}"
        lt = f"-lt{self.threshold_bits}" if self.learn_thresholds else ""
        return (f"psq-{self.readout}-w{self.weight_bits}a{self.input_bits}{first}c{self.cell_bits}d{self.dac_bits}"
                f"r{self.rows}t{self.threshold:g}{'-percycle' if self.cycle_scales else ''}{adc}{lt}")

    @property
    def initial_threshold(self) -> float:
        """The comparators' threshold (units of alpha) where fine-tuning starts: ``threshold``, or with learned
        thresholds its nearest point of the reference DAC's grid (multiples of ``2**-threshold_bits`` below 1)."""
        if not self.learn_thresholds:
            return self.threshold
        n = 2 ** self.threshold_bits
        return min(round(self.threshold * n), n - 1) / n

    def reads_by_adc(self, first: bool, last: bool) -> bool:
        """Whether a layer (the network's first mapped layer and/or its last) is read by the ADC."""
        roles = self.adc_layers.split(",")
        return (first and "first" in roles) or (last and "last" in roles)

    def layer_input_bits(self, first: bool) -> int:
        """Input bits of a layer: ``first_input_bits`` for the network's first mapped layer when set."""
        return self.first_input_bits if first and self.first_input_bits else self.input_bits

    def for_layer(self, input_bits: int) -> "PSQConfig":
        """The configuration one layer computes with: its own input bits."""
        return self if input_bits == self.input_bits and not self.first_input_bits else \
            replace(self, input_bits=input_bits, first_input_bits=0)

    # geometry --------------------------------------------------------------
    def slice_shifts(self) -> list[tuple[int, int]]:
        """(shift, width) of each magnitude slice, LSB first (differential: weight_bits - 1 magnitude bits)."""
        out, shift, mag = [], 0, self.weight_bits - 1
        while shift < mag:
            out.append((shift, min(self.cell_bits, mag - shift)))
            shift += self.cell_bits
        return out

    def plane_shifts(self, signed: bool = False) -> list[tuple[int, int]]:
        """(shift, width) of each input cycle, LSB first: :func:`cimsim.encoding.plane_layout`'s (signed: the sign
        bit a cycle of its own, last)."""
        shifts, widths = plane_layout(self.input_bits, self.dac_bits, signed)
        return [(int(s), int(w)) for s, w in zip(shifts, widths)]

    def plane_places(self, signed: bool = False) -> tuple[float, ...]:
        """Each input cycle's place value (:func:`cimsim.encoding.plane_weights`: the sign cycle's negative)."""
        return tuple(float(v) for v in plane_weights(self.input_bits, self.dac_bits, signed))

    def row_blocks(self, k: int) -> list[tuple[int, int]]:
        return [(k0, min(k0 + self.rows, k)) for k0 in range(0, k, self.rows)]


# ------------------------------------------------------------------------------------------------ layers
class _PSQ:
    """Mixin of the PSQ layers: config, calibrated input scale, learned column scales ``psq_alpha``; the unfold
    (``_patches``/``_unpatch``) comes from :class:`~cimsim.mappers.qat_ops.LinearRows` or ``ConvRows``."""

    psq_config: PSQConfig
    psq_layer_config: PSQConfig
    psq_input_bits: int
    psq_enabled: bool = True
    noise_frac: float = 0.0
    host_scalars: tuple[float, bool] | None = None   # (input_scale, input_signed) read once: pin_host_scalars
    psq_adc: bool = False
    host_range: tuple[float, float] | None = None    # the ADC's (lo, hi) read once: pin_host_scalars
    psq_exact: bool = False   # partial sums summed exactly instead of read (a progressive fine-tune's stages)

    def _setup(self, cfg: PSQConfig, k: int, input_scale: float, input_signed: bool, input_bits: int = 0,
               adc: bool = False):
        self.psq_config = cfg                          # the network's (checked against the architecture)
        self.psq_input_bits = input_bits or cfg.input_bits
        self.psq_layer_config = cfg.for_layer(self.psq_input_bits)   # what this layer computes with
        self.psq_enabled = True
        self.noise_frac = 0.0
        self.psq_adc = bool(adc)   # read by the ADC (cfg.adc_layers): its (lo, hi) range, no scale factors
        lcfg = self.psq_layer_config
        if adc:
            self.register_buffer("psq_adc_range", torch.tensor([-1.0, 1.0], dtype=torch.float64))
        else:
            shape = (len(lcfg.row_blocks(k)), *((len(lcfg.plane_shifts(input_signed)),) if lcfg.cycle_scales else ()),
                     len(lcfg.slice_shifts()), self.weight.shape[0])
            self.psq_alpha = nn.Parameter(torch.ones(shape, dtype=self.weight.dtype))
            if lcfg.learn_thresholds:   # the latent thresholds; the forward reads them on the DAC's grid
                self.psq_threshold = nn.Parameter(torch.full(shape, lcfg.initial_threshold, dtype=self.weight.dtype))
        self.register_buffer("input_scale", torch.tensor(float(input_scale), dtype=torch.float64))
        self.register_buffer("input_signed", torch.tensor(bool(input_signed)))

    def partial_sums(self, patches: torch.Tensor, w_int: torch.Tensor, apart: bool = False) -> list:
        """Per row block: (cycles * positions, slices * outputs) partial sums of one group.

        The planes are exact integers; their STE gradient (share ``c_t`` of the gradient of ``x_int``) is
        carried by one extra product ``c_t * (x_int - x_int.detach()) @ W`` (zero in the forward pass). ``apart``:
        per row block ``(ps, ste)`` with that term not added, ``ste`` = ``(z, shares)`` (None without a gradient
        to carry), for :func:`cimsim.mappers.qat_ops.decision_sum` to add or carry."""
        cfg = self.psq_layer_config
        signed = self.signed()
        T = len(cfg.plane_shifts(signed))
        P = stacked_planes(patches.detach(), cfg, signed)      # (T * M, K)
        slices, _ = weight_slices(w_int, cfg)
        if self.training and self.noise_frac > 0:
            top = 2 ** cfg.cell_bits - 1
            slices = [s + math.sqrt(2) * self.noise_frac * top * torch.randn_like(s) for s in slices]
        Wm = torch.cat(slices)                     # (S * O, K)
        grad = patches.requires_grad
        if grad:
            raw = cfg.plane_places(signed)
            shares = cached_constant(tuple(v / sum(r * r for r in raw) for v in raw), patches)
            dx = patches - patches.detach()
        out = []
        for k0, k1 in cfg.row_blocks(patches.shape[1]):
            ps = P[:, k0:k1] @ Wm[:, k0:k1].T
            if grad:
                z = dx[:, k0:k1] @ Wm[:, k0:k1].T                     # (M, S * O), zero valued
                if apart:
                    out.append((ps, (z, shares)))
                    continue
                ps = (ps.reshape(T, -1, z.shape[1]) + shares[:, None, None] * z[None]).reshape(ps.shape)
            out.append((ps, None) if apart else ps)
        return out

    def psq_product(self, patches: torch.Tensor, w_int: torch.Tensor, alpha: torch.Tensor,
                    thresholds: torch.Tensor | None = None) -> torch.Tensor:
        """(M, O) sum over cycles, row blocks and slices of the scaled decisions (integer units of x @ W.T);
        ``thresholds``: learned ones on their grid (alpha's shape), else the configured one."""
        cfg = self.psq_layer_config
        T, S = len(cfg.plane_shifts(self.signed())), len(cfg.slice_shifts())
        M, O = patches.shape[0], w_int.shape[0]
        pw = cached_constant(cfg.plane_places(self.signed()), patches)
        sw = cached_constant(tuple(2.0 ** s for s, _ in cfg.slice_shifts()), patches)
        coef = (pw[:, None] * sw[None, :])[:, None, :, None]            # (T, 1, S, 1)
        y = patches.new_zeros(M, O)
        if self.psq_exact:  # no readout: the integer product x_int @ w_int.T (its STE gradients), as a sum of parts
            for ps in self.partial_sums(patches, w_int):
                y = y + (ps.reshape(T, M, S, O) * coef).sum(dim=(0, 2))
            return y
        if self.psq_adc:    # every pair value converted by the ADC over the layer's range (cimsim.readouts)
            lo, lsb = adc_lo_lsb(*self.host_adc_range(), cfg.adc_bits)
            for ps in self.partial_sums(patches, w_int):
                y = y + (adc_quantize(ps, lo, lsb, cfg.adc_bits).reshape(T, M, S, O) * coef).sum(dim=(0, 2))
            return y
        per_cycle = cfg.cycle_scales      # alpha (row blocks, [cycles,] slices, outputs)
        for r, (ps, ste) in enumerate(self.partial_sums(patches, w_int, apart=True)):
            a = alpha[r][:, None] if per_cycle else alpha[r][None, None]
            gs = 1.0 / math.sqrt(M if per_cycle else T * M)
            t = None if thresholds is None else thresholds[r][:, None] if per_cycle else thresholds[r][None, None]
            y = y + decision_sum(ps, a, coef, cfg.readout, cfg.threshold, gs, t,
                                 2.0 ** -(cfg.threshold_bits + 1), ste)   # at least half a grid step
        return y

    def host_adc_range(self) -> tuple[float, float]:
        """The ADC's (lo, hi) as Python values (read once while pinned: :func:`pin_host_scalars`)."""
        pinned = getattr(self, "host_range", None)
        return pinned if pinned is not None else tuple(float(v) for v in self.psq_adc_range)

    def step(self):
        """The input step: the calibrated ``input_scale``, or ``exp(psq_log_step)`` while it is learned
        (:func:`learn_input_steps`)."""
        log_step = getattr(self, "psq_log_step", None)
        if log_step is not None:
            return torch.exp(log_step)
        return self.host_scalars[0] if self.host_scalars else float(self.input_scale)

    def thresholds(self) -> torch.Tensor | None:
        """The learned comparator thresholds on the reference DAC's grid (alpha's shape), or None (not learned)."""
        t = getattr(self, "psq_threshold", None)
        return None if t is None else grid_thresholds(t, self.psq_layer_config.threshold_bits)

    def signed(self) -> bool:
        return self.host_scalars[1] if self.host_scalars else bool(self.input_signed)

    def psq_forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.psq_layer_config
        step = self.step()
        x_int = quantize_activation(x, step, cfg.input_bits, self.signed())
        patches, shape = self._patches(x_int)
        w_log_step = getattr(self, "psq_log_wstep", None)
        w_int, w_scale = quantize_weight_ste(self.weight, cfg.weight_bits,
                                             None if w_log_step is None else torch.exp(w_log_step))
        G = getattr(self, "groups", 1)
        K, O = patches.shape[1] // G, w_int.shape[0]
        og = O // G
        thr = self.thresholds()
        outs = [self.psq_product(patches[:, g * K:(g + 1) * K], w_int[g * og:(g + 1) * og],
                                 None if self.psq_adc else self.psq_alpha[..., g * og:(g + 1) * og],
                                 None if thr is None else thr[..., g * og:(g + 1) * og])
                for g in range(G)]
        acc = torch.cat(outs, dim=1)
        y = acc * ((self.input_scale.to(acc.dtype) if isinstance(step, float) else step) * w_scale)[None, :]
        if self.bias is not None:
            y = y + self.bias[None, :]
        return self._unpatch(y, shape)


class PSQLinear(_PSQ, LinearRows, nn.Linear):
    """``nn.Linear`` trained with partial-sum quantization (see the module docstring)."""

    def forward(self, x):
        return self.psq_forward(x) if self.psq_enabled else nn.Linear.forward(self, x)


class PSQConv2d(_PSQ, ConvRows, nn.Conv2d):
    """``nn.Conv2d`` (zero padding) trained with partial-sum quantization (see the module docstring)."""

    def forward(self, x):
        return self.psq_forward(x) if self.psq_enabled else nn.Conv2d.forward(self, x)


def is_psq(mod: nn.Module) -> bool:
    return isinstance(mod, _PSQ)


def set_psq(model: nn.Module, enabled: bool) -> nn.Module:
    """Turn the PSQ emulation of every PSQ layer on (default) or off (plain float layers)."""
    for m in model.modules():
        if is_psq(m):
            m.psq_enabled = enabled
    return model


def pin_host_scalars(model: nn.Module, on: bool) -> nn.Module:
    """``on``: every PSQ layer keeps its input scale and signedness as Python values, read now, so that its forward
    pass never copies them from an accelerator (each such copy waits for all queued work: a CUDA fine-tune runs
    faster without them); ``off``: read the buffers again. Pin only while the buffers do not change."""
    for m in model.modules():
        if is_psq(m):
            m.host_scalars = (float(m.input_scale), bool(m.input_signed)) if on else None
            m.host_range = None
            if on and m.psq_adc:
                m.host_range = m.host_adc_range()
    return model


def column_thresholds(mod: nn.Module):
    """A PSQ layer's learned comparator thresholds as the mapper programs them (float64, alpha's shape), or None."""
    t = mod.thresholds() if is_psq(mod) and not mod.psq_adc else None
    return None if t is None else t.detach().double().cpu().numpy()


def learn_input_steps(model: nn.Module, on: bool) -> nn.Module:
    """Learned input steps (LSQ, Esser et al., ICLR 2020): ``on`` gives every PSQ layer a parameter
    ``psq_log_step = log(input_scale)`` that the forward pass uses (the step's gradient is LSQ's, through the
    rounding's straight-through estimator; learned as a logarithm so that Adam's steps are relative); ``off``
    writes ``exp(psq_log_step)`` into ``input_scale`` (what the mapper programs) and removes the parameter."""
    for m in model.modules():
        if not is_psq(m):
            continue
        if on and getattr(m, "psq_log_step", None) is None:
            m.psq_log_step = nn.Parameter(torch.log(m.input_scale.detach().to(m.weight.dtype)))
        elif not on and getattr(m, "psq_log_step", None) is not None:
            with torch.no_grad():
                m.input_scale.copy_(torch.exp(m.psq_log_step.detach()).to(m.input_scale.dtype))
            del m.psq_log_step
    return model


def learn_weight_steps(model: nn.Module, on: bool) -> nn.Module:
    """Learned weight steps (LSQ for weights, Esser et al., ICLR 2020), per output channel: ``on`` gives every
    PSQ layer a parameter ``psq_log_wstep = log(amax / qmax)`` (the max-scaling step the mapper uses, so nothing
    changes until it learns); the forward pass quantizes with ``min(exp(psq_log_wstep), amax / qmax)``
    (:func:`quantize_weight_ste`): a smaller step clips the channel's outliers and gives its other weights finer
    levels. ``off`` clips every channel's weights to ``+-qmax x`` its step and removes the parameter: the clipped
    channel's largest magnitude is then ``qmax x step``, so the mapper's max-scaling quantization
    (:func:`cimsim.mappers.quantize_weights`) gives the integers and the scale the fine-tune used."""
    for m in model.modules():
        if not is_psq(m):
            continue
        qmax = 2 ** (m.psq_config.weight_bits - 1) - 1
        flat = m.weight.detach().reshape(m.weight.shape[0], -1)
        amax = flat.abs().amax(dim=1)
        top = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
        if on and getattr(m, "psq_log_wstep", None) is None:
            m.psq_log_wstep = nn.Parameter(torch.log(top))
        elif not on and getattr(m, "psq_log_wstep", None) is not None:
            with torch.no_grad():
                step = torch.minimum(torch.exp(m.psq_log_wstep.detach()), top)
                bound = (qmax * step)[:, None]
                m.weight.copy_(torch.maximum(torch.minimum(flat, bound), -bound).reshape(m.weight.shape))
            del m.psq_log_wstep
    return model


def set_noise(model: nn.Module, noise_frac: float) -> nn.Module:
    """Noise injection during training: per-cell Gaussian level noise of ``noise_frac`` of the level range."""
    if not 0 <= noise_frac < 1:
        raise ConfigError(f"noise_frac must lie in [0, 1), got {noise_frac!r}")
    for m in model.modules():
        if is_psq(m):
            m.noise_frac = float(noise_frac)
    return model


def _convertible(mod: nn.Module) -> bool:
    if type(mod) is nn.Linear:
        return True
    return type(mod) is nn.Conv2d and mod.padding_mode == "zeros" and mod.padding != "same"


def convert(model: nn.Module, cfg: PSQConfig, input_ranges: dict[str, tuple[float, bool]],
            first: str | None = None, last: str | None = None) -> list[str]:
    """Turn every ``nn.Linear`` / ``nn.Conv2d`` named in ``input_ranges`` (name -> (scale, signed)) into its
    PSQ layer, in place; returns the names converted. ``first``: the network's first mapped layer
    (:func:`first_layer`), which streams ``cfg.first_input_bits`` when that is set; ``first`` / ``last`` (the
    last, :func:`mapped_layers_in_order`) are read by the ADC where ``cfg.adc_layers`` names them."""
    if cfg.first_input_bits and first not in input_ranges:
        raise ConfigError(f"PSQ with first_input_bits={cfg.first_input_bits}: name the first layer "
                          f"(got {first!r}, not one of the layers converted)")
    for role, name in (("first", first), ("last", last)):
        if role in cfg.adc_layers.split(",") and name not in input_ranges:
            raise ConfigError(f"PSQ with adc_layers={cfg.adc_layers}: name the {role} layer "
                              f"(got {name!r}, not one of the layers converted)")
    done = []
    for name, mod in list(model.named_modules()):
        if name in input_ranges and _convertible(mod):
            scale, signed = input_ranges[name]
            k = mod.weight[0].numel()
            mod.__class__ = PSQLinear if isinstance(mod, nn.Linear) else PSQConv2d
            mod._setup(cfg, k, scale, signed, cfg.layer_input_bits(name == first),
                       adc=cfg.reads_by_adc(name == first, name == last))
            done.append(name)
    return done


# ------------------------------------------------------------------------------------------------ prepare
def mapped_layers_in_order(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The ``Linear`` / ``Conv2d`` layers in the order of their first call (the mapper's order: ``[0]`` is the first
    layer, the one fed the network's input, which ``first_input_bits`` applies to, here and in the mapper; ``[-1]``
    the last, a classifier's output layer)."""
    return called_order(model, [n for n, m in model.named_modules() if _convertible(m) or is_psq(m)], example)


def first_layer(model: nn.Module, example: torch.Tensor) -> str | None:
    """The network's first mapped layer (:func:`mapped_layers_in_order`)."""
    order = mapped_layers_in_order(model, example)
    return order[0] if order else None


# candidate multiples of mean |PS| searched by init_scales (our choice: covers LSQ's 2 x mean and the
# MSE optimum of a ternary quantizer on Laplacian-like partial sums, about 1.2-1.5 x mean)
INIT_MULTIPLES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)


@torch.no_grad()
def init_scales(model: nn.Module, x: torch.Tensor) -> None:
    """Initialise every ``psq_alpha``: per column, the multiple of mean |PS| (from :data:`INIT_MULTIPLES`)
    whose decisions reproduce the partial sums of the batch ``x`` with the least squared error (at least 1)."""
    psq = {n: m for n, m in model.named_modules() if is_psq(m)}
    seen = {}
    handles = [m.register_forward_pre_hook(lambda mod, inp, n=n: seen.__setitem__(n, inp[0]))
               for n, m in psq.items()]
    try:
        set_psq(model, False)
        model(x)
    finally:
        set_psq(model, True)
        for h in handles:
            h.remove()
    for n, m in psq.items():
        cfg = m.psq_layer_config
        if m.psq_adc:     # read by the ADC: its range from the batch's pair values, by the engine's rule
            x_int = quantize_activation(seen[n].to(m.weight.dtype), float(m.input_scale), cfg.input_bits,
                                        bool(m.input_signed))
            w_int, _ = quantize_weight_ste(m.weight, cfg.weight_bits)
            patches, G = m._patches(x_int)[0], getattr(m, "groups", 1)
            K, og = patches.shape[1] // G, w_int.shape[0] // G
            ps = torch.cat([p.reshape(-1) for g in range(G) for p in
                            m.partial_sums(patches[:, g * K:(g + 1) * K], w_int[g * og:(g + 1) * og])])
            m.psq_adc_range.copy_(torch.tensor(adc_range(ps), dtype=torch.float64))
            continue
        x_int = quantize_activation(seen[n].to(m.weight.dtype), float(m.input_scale), cfg.input_bits,
                                    bool(m.input_signed))
        patches, _ = m._patches(x_int)
        w_int, _ = quantize_weight_ste(m.weight, cfg.weight_bits)
        G = getattr(m, "groups", 1)
        K, O = patches.shape[1] // G, w_int.shape[0]
        og, S, T = O // G, len(cfg.slice_shifts()), len(cfg.plane_shifts(bool(m.input_signed)))
        for g in range(G):
            pss = m.partial_sums(patches[:, g * K:(g + 1) * K], w_int[g * og:(g + 1) * og])
            for r, ps in enumerate(pss):   # per cycle: the statistics of each cycle's partial sums apart
                ps = ps.reshape(T, -1, S, og).transpose(0, 1) if cfg.cycle_scales else ps.reshape(-1, S, og)
                mean = torch.clamp(ps.abs().mean(dim=0), min=0.5)
                best, err = None, None
                for c in INIT_MULTIPLES:
                    a = c * mean
                    e = ((decide(ps / a, cfg) * a - ps) ** 2).sum(dim=0)
                    best = a.clone() if best is None else torch.where(e < err, a, best)
                    err = e if err is None else torch.minimum(e, err)
                m.psq_alpha.data[r, ..., g * og:(g + 1) * og] = torch.clamp(best, min=1.0)


def prepare(model: nn.Module, cfg: PSQConfig, calibration: list[torch.Tensor]) -> nn.Module:
    """A PSQ copy of ``model``: BN folded, input ranges from ``calibration`` batches, scales initialised."""
    from cimsim.mappers.mapper import fold_batchnorm

    if not calibration:
        raise ConfigError("PSQ fine-tuning needs calibration batches (inputs from the training split)")
    work = copy.deepcopy(model).eval()
    unfuse(work)    # attention's projections as Linear layers, fine-tuned as the mapper maps them
    folded = fold_batchnorm(work, calibration[0])
    targets = {n: m for n, m in work.named_modules() if _convertible(m)}
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in targets}
    order: list[str] = []     # the targets in the order of their first call: order[0] is the first layer
    handles = [m.register_forward_pre_hook(lambda mod, inp, n=n: _record(seen, order, n, inp))
               for n, m in targets.items()]
    with torch.no_grad():
        try:
            for xb in calibration:
                work(xb)
        finally:
            for h in handles:
                h.remove()
    first = order[0] if order else None
    ranges = {n: activation_range(torch.cat([a.reshape(-1) for a in seen[n]]), cfg.layer_input_bits(n == first))
              for n in targets}
    converted = convert(work, cfg, ranges, first, order[-1] if order else None)
    if not converted:
        raise ConfigError("the model has no Linear or Conv2d layer to fine-tune with PSQ")
    work.psq_folded = [list(p) for p in folded]
    init_scales(work, calibration[0])
    return work
