"""What a mapped layer answers of the layer it replaces: ``weight``, ``bias`` and the shape attributes, read-only.

A network's own ``forward`` (or analysis code) reads its layers' attributes: ``x.to(self.fc.weight.dtype)``,
``self.fc.weight.device``, ``self.conv.out_channels``, ``self.fc.bias.shape``. :class:`SourceAttributes` gives a
:class:`cimsim.mappers.MappedLayer` those attributes, so the mapped network runs the same code:

* ``weight``: the weights the crossbars are programmed with, the dequantized integer weights
  ``w_int * w_scale[o]`` in the source layer's weight shape, dtype and device (not the float weights, which stay on
  ``source``); it follows :meth:`~cimsim.mappers.MappedLayer.set_integer_weights` (a weight layout's own
  quantizer, SME's shaping);
* ``bias``: the (BatchNorm-folded) bias the layer adds, in the same dtype and device, or None;
* the source layer's shape attributes (``in_features`` ... ``padding_mode``): those of an ``nn.Linear`` on a mapped
  Linear, those of an ``nn.Conv1d`` / ``nn.Conv2d`` on a mapped convolution, and no others (``hasattr`` answers as
  on the layer it replaces).

Each is a plain tensor or value computed from what the layer holds, never an ``nn.Parameter`` or a buffer: a mapped
network's ``parameters()`` and ``state_dict()`` stay the source layers' (``<layer>.source.weight``), and nothing
trains through them. Reads share one tensor until it is changed: changing it in place changes neither the layer
nor the next read (made again from the layer). Assigning (or deleting) any of them is refused with a :class:`~cimsim.errors.ConfigError`: the crossbars
hold the programmed weights, so new weights take a new mapping (:func:`cimsim.map`).

A forward that computes with a layer's weight itself (``F.linear(x, self.fc.weight)``) computes, on a mapped
network, with the programmed weights in floating point on the host (or the engine's device), outside the crossbars:
that work is costed as digital work, and :func:`cimsim.map` names it in its ``KeptDigitalWarning``
(:mod:`cimsim.mappers.profile` finds it on the network before mapping, where ``weight`` is the layer's parameter).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cimsim.errors import ConfigError

_LINEAR = ("in_features", "out_features")                     # nn.Linear's constructor arguments (torch docs)
_CONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode")
SHAPE_ATTRIBUTES = _LINEAR + _CONV                            # nn.Conv1d / nn.Conv2d's (torch docs)
READ_ONLY = frozenset(("weight", "bias", *SHAPE_ATTRIBUTES))


def _kind_attributes(source: nn.Module) -> tuple[str, ...]:
    """The shape attributes the source layer has: a Linear's, a convolution's."""
    if isinstance(source, nn.Linear):
        return _LINEAR
    if isinstance(source, (nn.Conv1d, nn.Conv2d)):
        return _CONV
    return ()


class SourceAttributes:
    """The standard attributes of the layer a :class:`cimsim.mappers.MappedLayer` replaces (see the module doc);
    a mixin before ``nn.Module``. The layer holds ``source`` (the folded float layer), ``w_int`` (O, K) and
    ``w_scale`` (O,) (the programmed integer weights and their scales) and ``_bias64`` (the bias it adds, (O,)
    float64, or None)."""

    @property
    def weight(self) -> torch.Tensor:
        """The weights the crossbars are programmed with: ``w_int * w_scale[o]``, the dequantized integer weights
        (after a weight layout's :meth:`set_integer_weights`, its integers), in the source layer's weight shape,
        dtype and device. Not the float weights (``source.weight``) and not an ``nn.Parameter``: read-only (a new
        weight takes a new :func:`cimsim.map`), not in ``parameters()`` or ``state_dict()``, not trained. A
        forward that computes with it (``F.linear(x, self.fc.weight)``) does so outside the crossbars, costed as
        digital work (``cimsim.map``'s ``KeptDigitalWarning`` names it)."""
        return self._programmed("weight", (self.w_int, self.w_scale),
                                lambda: (self.w_int * self.w_scale[:, None]).reshape(self.source.weight.shape))

    @property
    def bias(self) -> torch.Tensor | None:
        """The bias the layer adds to its outputs (the BatchNorm-folded one), in the source layer's weight dtype and
        device; None where it adds none. Read-only, as :attr:`weight`."""
        if self._bias64 is None:
            return None
        return self._programmed("bias", (self._bias64,), lambda: self._bias64)

    def _programmed(self, what: str, arrays: tuple, values) -> torch.Tensor:
        """``values()`` (a float64 array) as a tensor of the source weight's dtype and device, made again when the
        arrays it comes from, that dtype or device changed, or the tensor last handed out was changed in place
        (its version) or set to require gradients."""
        like = self.source.weight
        cache = self.__dict__.setdefault("_attribute_tensors", {})
        hit = cache.get(what)
        if hit is not None:
            held, tensor, version = hit
            if (len(held) == len(arrays) and all(a is b for a, b in zip(held, arrays)) and tensor.dtype == like.dtype
                    and tensor.device == like.device and tensor._version == version and not tensor.requires_grad):
                return tensor
        with torch.inference_mode(False):   # a normal tensor (its version is read above), also in inference mode
            # a copy always: a float64 tensor would otherwise share the layer's own array (the bias it adds)
            tensor = torch.from_numpy(np.ascontiguousarray(values(), dtype=np.float64)).to(like.device, like.dtype,
                                                                                           copy=True)
        cache[what] = (arrays, tensor, tensor._version)
        return tensor

    def __setattr__(self, name: str, value) -> None:
        if name in READ_ONLY:
            raise ConfigError(_refusal(self, name, "assigned"))
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if name in READ_ONLY:
            raise ConfigError(_refusal(self, name, "deleted"))
        super().__delattr__(name)


def _refusal(layer, name: str, done: str) -> str:
    """The one-line error for a read-only attribute of a mapped layer."""
    held = {"weight": "the crossbars hold the programmed weights",
            "bias": "the layer adds the bias it was mapped with"}.get(name, "it is the source layer's shape")
    return (f"{name} of mapped layer {layer.name} cannot be {done} ({held}); change the float network and map the "
            "network again with cimsim.map (a weight layout sets its integer weights with set_integer_weights)")


def _shape_attribute(name: str) -> property:
    def get(self):
        source = self.source
        if name not in _kind_attributes(source):   # AttributeError: as on the layer it replaces (hasattr: False)
            raise AttributeError(f"'{type(self).__name__}' object of a {type(source).__name__} has no attribute "
                                 f"'{name}'")
        return getattr(source, name)
    get.__name__ = name
    get.__doc__ = f"The source layer's ``{name}`` (read-only; a {'Linear' if name in _LINEAR else 'convolution'}'s)."
    return property(get)


for _name in SHAPE_ATTRIBUTES:
    setattr(SourceAttributes, _name, _shape_attribute(_name))
del _name
