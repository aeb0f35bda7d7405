"""The checks a mapped network runs on what it is given: one :class:`~cimsim.errors.ConfigError` naming the expected
form, instead of a bare torch or numpy exception from deep inside a layer (or a silently wrong result).

Each check reads shapes, dtypes and types only (and, once per layer call on the host, whether the values are
finite): nothing that costs in proportion to the batch beyond one pass over it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from cimsim.errors import ConfigError


def _what(v) -> str:
    """A value as the messages name it: a tensor's dtype and shape, else its type."""
    if isinstance(v, torch.Tensor):
        return f"a {v.dtype} tensor of shape {tuple(v.shape)}"
    if hasattr(v, "shape") and hasattr(v, "dtype"):   # numpy and the like
        return f"a {type(v).__module__.split('.')[0]}.{type(v).__name__} of shape {tuple(v.shape)}"
    return f"a {type(v).__name__}"


def _expected(input_shape) -> str:
    return f"(B, {', '.join(str(d) for d in input_shape)})" if input_shape else "(B, ...)"


def check_network_input(x, input_shape=None, floating: bool = True) -> None:
    """``x`` is a non-empty tensor, floating where the calibration batches were (``floating``: a network fed token
    ids or raw bytes calibrates on those), with the calibration batches' number of dimensions and channels (or
    features) (``input_shape``: what calibration gave; None where unknown: the layers then check their own inputs,
    :func:`check_layer_input`). Other sizes (images, time steps) may differ: a network may take them."""
    shape = _expected(input_shape)
    if not isinstance(x, torch.Tensor):
        fix = "torch.from_numpy(x).float()" if hasattr(x, "__array__") else "torch.as_tensor(x, dtype=torch.float32)"
        raise ConfigError(f"inputs must be a floating torch tensor of shape {shape}, got {_what(x)}: pass {fix}")
    if floating and not x.is_floating_point():
        raise ConfigError(f"inputs must be a floating tensor, got {x.dtype}: pass x.float()")
    if x.ndim == 0 or x.shape[0] == 0:
        raise ConfigError(f"inputs must hold at least one example, of shape {shape}, got shape {tuple(x.shape)}")
    channel = -3 if len(input_shape or ()) >= 3 else -1   # (.., C, H, W) or (.., features)
    if input_shape and (x.ndim != len(input_shape) + 1 or x.shape[channel] != input_shape[channel]):
        raise ConfigError(f"inputs must have shape {shape} (the calibration batches' shape), got {tuple(x.shape)}"
                          + (": add the batch dimension, x.unsqueeze(0)" if tuple(x.shape) == tuple(input_shape)
                             else ""))


def check_layer_input(name: str, source: nn.Module, x) -> None:
    """A mapped layer's input: a floating tensor whose channels (a convolution) or features (a linear layer) are the
    layer's. Shapes and dtype only."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ConfigError(f"layer {name!r}: inputs must be a floating tensor, got {_what(x)}: pass x.float()")
    if isinstance(source, nn.Linear):
        if x.ndim < 1 or x.shape[-1] != source.in_features:
            n = source.in_features
            raise ConfigError(f"layer {name!r} (Linear) takes inputs of shape (B, {n}) ({n} feature"
                              f"{'s' if n != 1 else ''}), got {tuple(x.shape)}")
        return
    dims = 3 if isinstance(source, nn.Conv1d) else 4
    if x.ndim != dims or x.shape[1] != source.in_channels:
        c = source.in_channels
        form = f"(B, {c}, L)" if dims == 3 else f"(B, {c}, H, W)"
        raise ConfigError(f"layer {name!r} ({type(source).__name__}) takes inputs of shape {form} ({c} input "
                          f"channel{'s' if c != 1 else ''}), got {tuple(x.shape)}")


def check_finite(name: str | None, x: torch.Tensor, scale: float = 1.0) -> None:
    """The values a layer quantizes (and its input scale) are finite: NaN or infinity has no input code (``name``
    None: the network's input)."""
    if not torch.isfinite(x).all():
        what = "NaN" if torch.isnan(x).any() else "infinite values"
        where = f"layer {name!r}: " if name else ""
        raise ConfigError(f"{where}the inputs hold {what}; give the network finite inputs (torch.isfinite(x).all()), "
                          "calibration batches too")
    if not math.isfinite(scale):
        raise ConfigError(f"layer {name!r}: its input scale is {scale} (calibration batches held NaN or infinite "
                          "values); map the network again with finite calibration inputs")


def check_loader(loader) -> None:
    """``evaluate``'s loader is an iterable of batches, not one batch."""
    if isinstance(loader, torch.Tensor) or hasattr(loader, "__array__"):
        raise ConfigError(f"evaluate takes an iterable of (x, y) batches, got {_what(loader)}: pass [(x, y)]")
    if isinstance(loader, Mapping) or not hasattr(loader, "__iter__"):
        raise ConfigError(f"evaluate takes an iterable of (x, y) batches (a DataLoader, or [(x, y)]), "
                          f"got {_what(loader)}")


def check_batch(item, input_shape=None, floating: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One of ``evaluate``'s batches: a pair (x, y), x as :func:`check_network_input`, y integer class labels (B,) or
    floating per-pixel flow (B, 2, H, W) (:mod:`cimsim.metrics`). Returns (x, y)."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        hint = (": pass [(x, y)], not (x, y)" if isinstance(item, torch.Tensor)
                else f" (a {len(item)}-item batch)" if isinstance(item, (tuple, list)) else "")
        raise ConfigError(f"evaluate's batches must be pairs (x, y), x of shape {_expected(input_shape)} and y "
                          f"the labels (B,), got {_what(item)}{hint}")
    x, y = item
    check_network_input(x, input_shape, floating)
    B = x.shape[0]
    if not isinstance(y, torch.Tensor):
        raise ConfigError(f"y must be a tensor of integer class labels of shape ({B},), got {_what(y)}: "
                          "pass torch.as_tensor(y)")
    if y.is_floating_point() and y.ndim == 4 and y.shape[1] == 2:   # flow targets (cimsim.metrics)
        if y.shape[0] != B:
            raise ConfigError(f"flow targets y must have shape ({B}, 2, H, W), one per example of x, "
                              f"got {tuple(y.shape)}")
        return x, y
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or tuple(y.shape) != (B,):
        raise ConfigError(f"y must be integer class labels of shape ({B},) (one per example of x; not one-hot: "
                          f"y.argmax(1)), or flow targets (B, 2, H, W), got {_what(y)}")
    return x, y


def check_output(out, y: torch.Tensor) -> None:
    """The network's output is one tensor the batch's targets can score."""
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"the network must return one tensor (the logits), got {_what(out)}: wrap it in a module "
                          "whose forward returns the output evaluate scores")
    if y.is_floating_point():
        if tuple(out.shape) != tuple(y.shape):
            raise ConfigError(f"the network's flow output has shape {tuple(out.shape)}, the targets y "
                              f"{tuple(y.shape)}: give targets of the output's shape")
    elif out.ndim != 2 or out.shape[0] != y.shape[0]:
        raise ConfigError(f"the network's output must be logits of shape ({y.shape[0]}, classes), got "
                          f"{tuple(out.shape)}")


def check_evaluable(modes, config) -> None:
    """``evaluate`` runs the analog network and takes ``config`` as a dict."""
    if set(modes) - {"analog"}:
        raise ConfigError("evaluate simulates and costs the analog run; call set_mode('analog') first (the digital "
                          "mode is the exact integer network, for comparison: call the model)")
    if config is not None and not isinstance(config, Mapping):
        raise ConfigError(f"config must be a dict of report keys (or None), got {_what(config)}")
