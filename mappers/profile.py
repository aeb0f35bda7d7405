"""Count the work a ``torch.nn.Module`` does for one inference, from its actual layer shapes.

:func:`profile` runs one example through the model with hooks on every module and returns an
:class:`~cimsim.ledger.EventLedger` of per-layer events:

* ``mac``: multiply-accumulates of Linear / Conv layers (grouped and depthwise convs included), and of products
  computed at run time (``q @ k.transpose(-2, -1)``, ``F.linear(x, self.w)``);
* ``add``, ``mul``, ``compare``, ``nonlinear``: element-wise work (bias, batch-norm, activations, pooling,
  softmax, normalisation; ``nonlinear`` counts evaluations of transcendental functions: sigmoid, tanh, exp ...);
* ``weight_read``: weight and bias values read; ``act_read`` / ``act_write``: activation values read
  and written by matrix layers;
* spiking neurons (:class:`cimsim.spiking.SpikingNeuron`, which returns ``(spikes, membrane)``) count the
  work of one update per call (:meth:`~cimsim.spiking.SpikingNeuron.profile_events`): a network run over
  ``T`` time steps calls them ``T`` times, so the profile of one inference holds every step.

Layers of known types are counted in closed form. Work a ``forward`` does with torch functions outside such a
layer is counted call by call (:mod:`cimsim.mappers.profile_ops`): additions (residual shortcuts) in the row of
the module that performs them, every other function in a row ``"<module>.<function>()"`` (``"Net.relu()"``: the
``F.relu`` calls of ``Net``'s own forward, of kind ``"relu()"``); a leaf module of unknown type is costed by the
functions it calls when every one of them is known.

Modules and functions the profiler does not know are listed in ``Profile.uncosted`` rather than silently
treated as free; so is a parameter used outside its own (costed, leaf) module's forward in such a function
(``Profile.unowned`` says which and where). A parameter used outside its layer in a known function (a bare
``nn.Parameter`` used with ``@``, ``F.linear(x, self.fc.weight)``) is costed as digital work and named in
``Profile.digital``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from cimsim.ledger import EventLedger
from cimsim.mappers import profile_ops
from cimsim.spiking import Encoder, SpikingNeuron

_FREE = (nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity)
_RELU_LIKE = (nn.ReLU,)
_CLAMPS = (nn.ReLU6, nn.Hardtanh)
_MATRIX = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
          nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
# leaf modules counted in closed form by _count_module (the torch functions their forward calls are not counted again)
_CLOSED_FORM = (SpikingNeuron, Encoder, *_MATRIX, nn.modules.batchnorm._BatchNorm, *_RELU_LIKE, *_CLAMPS, *_POOLS,
                *_FREE, nn.Sequential, nn.ModuleList, nn.ModuleDict, *profile_ops.MODULE_TYPES)


def _closed_form(mod: nn.Module) -> bool:
    return isinstance(mod, _CLOSED_FORM) or (isinstance(mod, nn.Upsample) and mod.mode == "nearest")


@dataclass
class Profile:
    ledger: EventLedger
    kinds: dict[str, str] = field(default_factory=dict)      # layer name -> module class name
    uncosted: list[str] = field(default_factory=list)        # layers whose work is not modelled
    # work on parameters outside their leaf module's forward that no rule counts: uncosted name (the leaf module,
    # else the parameter) -> where it was used (a module's name)
    unowned: dict[str, str] = field(default_factory=dict)
    # the same for work a rule counts (F.linear(x, self.fc.weight), x @ self.w): computed digitally, costed
    digital: dict[str, str] = field(default_factory=dict)
    # rows of torch functions called in a module's own forward: row -> (function, the module's name)
    functions: dict[str, tuple[str, str]] = field(default_factory=dict)


def _pool_window(mod: nn.Module) -> int:
    """Elements in one pooling window; an int kernel_size is the side of a 1-, 2- or 3-d window."""
    k = mod.kernel_size
    if isinstance(k, (tuple, list)):
        return math.prod(k)
    dims = 1 if isinstance(mod, (nn.MaxPool1d, nn.AvgPool1d)) else 3 if isinstance(mod, (nn.MaxPool3d, nn.AvgPool3d)) else 2
    return int(k) ** dims


def _count_module(mod: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float] | None:
    """Events of one call of a leaf module; None when the module is not recognised."""
    n_out = y.numel()
    if isinstance(mod, SpikingNeuron):
        return mod.profile_events(x)
    if isinstance(mod, Encoder):
        return mod.profile_events(x, y)
    if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        k = math.prod(mod.kernel_size)
        ev = {"mac": n_out * (mod.in_channels // mod.groups) * k, "weight_read": mod.weight.numel(),
              "act_read": x.numel(), "act_write": n_out}
        if mod.bias is not None:
            ev["add"] = n_out
            ev["weight_read"] += mod.bias.numel()
        return ev
    if isinstance(mod, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        # every input element is multiplied by a (C_out/groups x kernel) slice of the weights
        ev = {"mac": x.numel() * (mod.out_channels // mod.groups) * math.prod(mod.kernel_size),
              "weight_read": mod.weight.numel(), "act_read": x.numel(), "act_write": n_out}
        if mod.bias is not None:
            ev["add"] = n_out
            ev["weight_read"] += mod.bias.numel()
        return ev
    if isinstance(mod, nn.Linear):
        ev = {"mac": n_out * mod.in_features, "weight_read": mod.weight.numel(),
              "act_read": x.numel(), "act_write": n_out}
        if mod.bias is not None:
            ev["add"] = n_out
            ev["weight_read"] += mod.bias.numel()
        return ev
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        return {"mul": n_out, "add": n_out}  # inference: y = x * a + b per channel
    if isinstance(mod, _RELU_LIKE):
        return {"compare": n_out}
    if isinstance(mod, _CLAMPS):
        return {"compare": 2 * n_out}
    if isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        return {"compare": n_out * (_pool_window(mod) - 1)}
    if isinstance(mod, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        return {"add": n_out * (_pool_window(mod) - 1), "mul": n_out}
    if isinstance(mod, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                        nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        return profile_ops.adaptive_pool_events(x, y, int(type(mod).__name__[-2]), "Max" in type(mod).__name__)
    if isinstance(mod, profile_ops.MODULE_TYPES):
        return profile_ops.module_events(mod, x, y)
    if isinstance(mod, nn.Upsample) and mod.mode == "nearest":
        return {"act_read": x.numel(), "act_write": n_out}   # copies: each input read once, each output written
    if isinstance(mod, _FREE) or isinstance(mod, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        return {}  # reshapes, inference-time dropout, identities and empty containers (identity shortcuts)
    return None


# the kind of the row that holds a network's own operations (outside its layers), in reports and their files
OWN_OPS = "network's own ops"


def _parameters_in(args) -> list[nn.Parameter]:
    """The parameters among a call's arguments, one level into lists and tuples (an LSTM's flat weights)."""
    found = []
    for a in args:
        if isinstance(a, nn.Parameter):
            found.append(a)
        elif isinstance(a, (list, tuple)):
            found += [b for b in a if isinstance(b, nn.Parameter)]
    return found


_METADATA = {"__get__", "size", "dim", "numel", "to", "type", "detach", "cpu", "cuda", "float", "double", "half",
             "contiguous", "clone", "element_size", "data_ptr", "requires_grad_"}


def _arithmetic(func, out, args) -> bool:
    """Whether a torch call computes with its tensors (not a getter, a shape query or a copy/conversion)."""
    return getattr(func, "__name__", "") not in _METADATA


class _FunctionCounter(TorchFunctionMode):
    """Counts the torch functions a forward calls outside the layers counted in closed form
    (:mod:`cimsim.mappers.profile_ops`), and notes each parameter used outside a forward of the leaf module that
    owns it (``owners``: id -> (parameter name, {owning leaf modules' names})).

    ``frames`` is the stack of the modules being run: (name, leaf, counted in closed form). Inside a closed-form
    layer nothing is counted again. In a leaf module no rule covers, its calls are booked to its own row (it is
    costed when every call was known). In a module with children (a block, the network) additions are booked to
    its own row (residual shortcuts) and every other function to a row ``"<module>.<function>()"``; a function no
    rule knows makes that row not costed."""

    def __init__(self, frames: list, prof: Profile, owners: dict):
        super().__init__()
        self.frames, self.prof, self.owners = frames, prof, owners
        self.paused = False   # True while a hook counts a call (its reads of weight.numel() are no use)
        self.leaf_calls: dict[str, bool] = {}   # leaf without a closed form -> whether every call was known

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.paused:
            return out
        where, leaf, closed = self.frames[-1] if self.frames else ("", False, False)
        # a use is arithmetic that returns a tensor: reading a parameter's metadata (.dtype, .shape, .numel(), a
        # getter) or converting it is no work done outside its layer
        used = isinstance(out, torch.Tensor) and _arithmetic(func, out, args)
        foreign = []
        for p in _parameters_in((*args, *kwargs.values())) if used else []:
            pname, leaves = self.owners.get(id(p), (None, ()))
            if pname is not None and where not in leaves:
                foreign.append(min(leaves) if leaves else pname)
        events = None if closed or not self.frames else profile_ops.function_events(func, args, kwargs, out)
        for name in foreign if events != {} else []:   # copied or reshaped (a class token concatenated): no work
            (self.prof.unowned if events is None else self.prof.digital).setdefault(name, where)
        if closed or not self.frames:
            return out
        fname = profile_ops.canonical(func)
        row = where if leaf or fname in ("add", "sub", "rsub", "neg") else f"{where}.{fname}()"
        if leaf:
            self.leaf_calls[where] = self.leaf_calls.get(where, True) and events is not None
        elif events is None or events:
            self.prof.functions.setdefault(row, (fname, where))
            self.prof.kinds.setdefault(row, f"{fname}()")
            self.prof.ledger.touch(row)
            if events is None and row not in self.prof.uncosted:
                self.prof.uncosted.append(row)
        for k, v in (events or {}).items():
            if v:
                self.prof.ledger.add(row, k, v)
        return out


def _input(args, kwargs) -> torch.Tensor | None:
    """A layer call's input: its first positional argument, else its ``input`` keyword (``self.fc(input=x)``), else
    its first tensor keyword."""
    if args:
        return args[0] if isinstance(args[0], torch.Tensor) else None
    if isinstance(kwargs.get("input"), torch.Tensor):
        return kwargs["input"]
    return next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)


@torch.no_grad()
def profile(model: nn.Module, example: torch.Tensor) -> Profile:
    """Events of one inference of ``model``; ``example`` is a batch, of which the first example is used."""
    example = example[:1]
    ledger = EventLedger()
    prof = Profile(ledger)
    stack: list[tuple[str, bool, bool]] = []   # the modules being run: (name, leaf, counted in closed form)
    handles = []
    was_training = {m: m.training for m in model.modules()}  # per module: sub-modules may differ
    model.eval()

    def pre(name, leaf):
        def hook(mod, inputs, kwargs):
            stack.append((name, leaf, leaf and _closed_form(mod)))
            # the network itself, where it holds layers: the row of its own forward's operations (a spiking
            # network's average over time steps), named after its class, of kind OWN_OPS, not a layer of that kind;
            # a block's row holds its own forward's operations too (a residual add), not the block's total
            own = mod is model and any(True for _ in mod.children())
            kind = type(mod).__name__ if leaf else f"{type(mod).__name__}'s own ops"
            prof.kinds.setdefault(name, OWN_OPS if own else kind)
        return hook

    def post(name, leaf):
        def hook(mod, inputs, kwargs, output):
            stack.pop()
            if not leaf:
                return
            x = _input(inputs, kwargs)
            if isinstance(output, tuple) and output and isinstance(mod, (SpikingNeuron, nn.RNNBase)):
                output = output[0]   # (spikes, membrane), (outputs, hidden state)
            y = output if isinstance(output, torch.Tensor) else None
            counter.paused = True
            ev = _count_module(mod, x, y) if (x is not None and y is not None) else None
            counter.paused = False
            if ev is None and counter.leaf_calls.get(name):   # no closed form, but every call it made is known
                ev = {}                                        # (booked as they ran)
            if ev is None and name not in counter.leaf_calls and output is x and x is not None:
                ev = {}       # it returned its input untouched (stochastic depth, drop-path in inference)
            if ev is None:
                ledger.touch(name)
                if name not in prof.uncosted:
                    prof.uncosted.append(name)
                return
            ledger.touch(name)
            for k, v in ev.items():
                if v:
                    ledger.add(name, k, v)
        return hook

    owners: dict[int, tuple[str, set]] = {}   # every parameter: its name, the leaf modules that hold it
    for mname, mod in model.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            name, leaves = owners.setdefault(id(p), (f"{mname}.{pname}" if mname else pname, set()))
            if not any(True for _ in mod.children()):
                leaves.add(mname or type(model).__name__)
    counter = _FunctionCounter(stack, prof, owners)
    for name, mod in model.named_modules():
        leaf = len(list(mod.children())) == 0
        handles.append(mod.register_forward_pre_hook(pre(name or type(model).__name__, leaf), with_kwargs=True))
        handles.append(mod.register_forward_hook(post(name or type(model).__name__, leaf), with_kwargs=True))
    try:
        with counter:
            model(example)
        prof.uncosted += [n for n in prof.unowned if n not in prof.uncosted]
        prof.digital = {n: w for n, w in prof.digital.items() if n not in prof.unowned}
    finally:
        for h in handles:
            h.remove()
        model.train(was_training[model])
        for m, mode in was_training.items():
            m.training = mode
    return prof
