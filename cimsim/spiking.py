"""Spiking neurons and input encoders as torch modules (used by the mappers and the workloads).

**LIF neuron** (:class:`LIF`), the semantics of snnTorch's ``Leaky`` (snntorch 1.0, ``reset_delay=True``),
so a network written for snnTorch behaves the same with it:

.. math::

    R_t = H(U_{t-1} - \\theta) \\quad\\text{(detached)}, \\qquad
    U_t = \\mathrm{clamp}(\\beta, 0, 1)\\, U_{t-1} + I_t - R_t\\, \\theta \\quad\\text{(reset by subtraction)},

    S_t = H(U_t - \\theta), \\qquad H(u) = 1 \\text{ if } u > 0 \\text{ else } 0

(reset to zero: :math:`U_{t-1}` is replaced by :math:`(1 - R_t)\\,U_{t-1}` before the update; ``"none"``:
no reset). The spike's gradient is a surrogate (:class:`Surrogate`): arctan,
:math:`\\partial S/\\partial U = (\\alpha/2) / (1 + (\\pi \\alpha U / 2)^2)` (snnTorch's default,
:math:`\\alpha = 2`; Fang et al., ICCV 2021), or fast sigmoid, :math:`1 / (1 + k|U|)^2` (:math:`k = 25`;
Zenke & Ganguli, Neural Computation 2018). ``beta`` and ``threshold`` may be learnable.

State is explicit, as in snnTorch: ``spk, mem = lif(cur, mem)``; called without ``mem`` the neuron carries
its own membrane from the previous call (``init_hidden=True`` then returns the spikes only, for
``nn.Sequential``). :func:`reset_states` zeroes every neuron of a network, cimsim's and snnTorch's, before
an inference. :func:`from_snntorch` turns an ``snntorch.Leaky`` into a :class:`LIF` with the same
parameters (the mapper does this, so snnTorch models map as they are); snnTorch itself is not needed.

**Encoders** turn a batch of images ``(B, ...)`` in ``[0, 1]`` into ``(T, B, ...)`` inputs:

* :class:`RateEncoder`: Bernoulli spikes with probability ``p = clamp(gain * x, 0, 1)`` per step, or a
  Poisson process of rate ``gain * x`` per step (``p = 1 - exp(-gain * x)``). Draws are counter-based: the
  uniform for (seed, step, example, element) is a hash of those numbers and of the example's content, so a
  seed gives the same spikes whatever the batch split, the device or the thread count;
* :class:`DirectEncoder`: the analog image at every step (the first layer then takes multi-bit inputs);
* :class:`LatencyEncoder`: one spike per element at step ``floor((1 - x) * T)`` (bright first), none
  below ``threshold``;
* :class:`EventEncoder`: event frames already binned in time, ``(B, T, ...)``: step ``t`` takes frame ``t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from cimsim.errors import ConfigError

RESETS = ("subtract", "zero", "none")
SURROGATES = ("atan", "fast_sigmoid")


# ---------------------------------------------------------------------------------------------- surrogates
@dataclass(frozen=True)
class Surrogate:
    """The Heaviside step forward, a smooth gradient backward (see the module docstring)."""

    kind: str = "atan"     # snnTorch's default surrogate
    slope: float = 2.0     # arctan alpha (snnTorch default 2); fast sigmoid k (snnTorch default 25)

    def __post_init__(self):
        if self.kind not in SURROGATES:
            raise ConfigError(f"surrogate kind {self.kind!r}: choose one of {', '.join(SURROGATES)}")
        if not (self.slope > 0 and math.isfinite(self.slope)):
            raise ConfigError(f"surrogate slope must be a positive number, got {self.slope!r}")

    @classmethod
    def fast_sigmoid(cls, slope: float = 25.0) -> "Surrogate":
        return cls("fast_sigmoid", slope)

    @classmethod
    def atan(cls, alpha: float = 2.0) -> "Surrogate":
        return cls("atan", alpha)

    def grad(self, u: torch.Tensor) -> torch.Tensor:
        """dS/dU of the surrogate at ``u = U - theta``."""
        if self.kind == "atan":
            return self.slope / 2 / (1 + (math.pi / 2 * self.slope * u) ** 2)
        return 1.0 / (self.slope * u.abs() + 1.0) ** 2

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return _Spike.apply(u, self)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, surrogate):
        ctx.save_for_backward(u)
        ctx.surrogate = surrogate
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        return g * ctx.surrogate.grad(u), None


# ---------------------------------------------------------------------------------------------- neuron
class SpikingNeuron(nn.Module):
    """Base of cimsim's spiking neurons: carries state between time steps; :meth:`reset_mem` clears it."""

    def reset_mem(self) -> torch.Tensor:
        raise NotImplementedError

    def __getstate__(self):
        """Copies and pickles start from rest (the membrane may hold an autograd graph, which cannot be copied)."""
        state = self.__dict__.copy()
        state["mem"] = torch.zeros(0)
        return state

    def profile_events(self, current: torch.Tensor) -> dict[str, float]:
        """Digital work of one update of ``current.numel()`` neurons (for :mod:`cimsim.mappers.profile`)."""
        raise NotImplementedError


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire neuron with snnTorch ``Leaky`` semantics (equations: module docstring)."""

    def __init__(self, beta: float = 0.9, threshold: float = 1.0, reset: str = "subtract",
                 surrogate: Surrogate | None = None, learn_beta: bool = False, learn_threshold: bool = False,
                 init_hidden: bool = False, output: bool = False):
        super().__init__()
        if reset not in RESETS:
            raise ConfigError(f"LIF reset {reset!r}: choose one of {', '.join(RESETS)}")
        beta_t, thr_t = torch.as_tensor(beta, dtype=torch.float32), torch.as_tensor(threshold, dtype=torch.float32)
        if not torch.all(torch.isfinite(thr_t)) or torch.any(thr_t <= 0):
            raise ConfigError(f"LIF threshold must be positive, got {threshold!r}")
        if learn_beta:
            self.beta = nn.Parameter(beta_t.clone())
        else:
            self.register_buffer("beta", beta_t.clone())
        if learn_threshold:
            self.threshold = nn.Parameter(thr_t.clone())
        else:
            self.register_buffer("threshold", thr_t.clone())
        self.reset = reset
        self.surrogate = surrogate or Surrogate()
        self.init_hidden, self.output = bool(init_hidden), bool(output)
        self.mem = torch.zeros(0)

    def reset_mem(self) -> torch.Tensor:
        self.mem = torch.zeros_like(self.mem)
        return self.mem

    init_leaky = reset_mem   # snnTorch's name

    def forward(self, current: torch.Tensor, mem: torch.Tensor | None = None):
        if mem is not None:
            if self.init_hidden:
                raise ConfigError("LIF(init_hidden=True) keeps its own membrane: call it without mem")
            self.mem = mem
        if self.mem.shape != current.shape:
            self.mem = torch.zeros_like(current)
        prev = self.mem
        r = self.surrogate(prev - self.threshold).detach()
        if self.reset == "zero":
            prev = (1 - r) * prev
        u = self.beta.clamp(0, 1) * prev + current
        if self.reset == "subtract":
            u = u - r * self.threshold
        spk = self.surrogate(u - self.threshold)
        self.mem = u
        if self.init_hidden and not self.output:
            return spk
        return spk, u

    def profile_events(self, current: torch.Tensor) -> dict[str, float]:
        """Per neuron and step: a multiply (leak), an add (input), a compare (fire) and, with subtractive reset,
        a subtract (counted as an add)."""
        n = current.numel()
        return {"mul": n, "add": n * (2 if self.reset == "subtract" else 1), "compare": n}

    def extra_repr(self) -> str:
        b = self.beta.detach().reshape(-1)[0].item() if self.beta.numel() else float("nan")
        t = self.threshold.detach().reshape(-1)[0].item() if self.threshold.numel() else float("nan")
        return f"beta={b:g}, threshold={t:g}, reset={self.reset}, surrogate={self.surrogate.kind}"


def neuron_kinds() -> frozenset[str]:
    """Class names of cimsim's spiking neurons (the layer kinds a profile gives them)."""
    out, todo = set(), [SpikingNeuron]
    while todo:
        for c in todo.pop().__subclasses__():
            out.add(c.__name__)
            todo.append(c)
    return frozenset(out)


def is_snntorch_leaky(mod: nn.Module) -> bool:
    """An ``snntorch.Leaky`` (recognised by its parameters, so snnTorch need not be installed)."""
    return (type(mod).__name__ == "Leaky" and all(hasattr(mod, a) for a in ("beta", "threshold", "reset_mechanism_val",
                                                                              "reset_mem", "spike_grad")))


def from_snntorch(leaky: nn.Module) -> LIF:
    """A :class:`LIF` with the parameters of an ``snntorch.Leaky`` (beta, threshold, reset, learnability,
    init_hidden/output; the surrogate's slope when it is snnTorch's arctan or fast sigmoid, else arctan 2)."""
    if not is_snntorch_leaky(leaky):
        raise ConfigError(f"from_snntorch needs an snntorch.Leaky, got {type(leaky).__name__}")
    if getattr(leaky, "inhibition", False) or getattr(leaky, "state_quant", False) \
            or not getattr(leaky, "reset_delay", True):
        raise ConfigError("snntorch.Leaky with inhibition, state_quant or reset_delay=False is not supported: "
                          "use the defaults for those options")
    if float(torch.as_tensor(leaky.graded_spikes_factor)) != 1.0:
        raise ConfigError("snntorch.Leaky with graded_spikes_factor != 1 is not supported (binary spikes)")
    reset = RESETS[int(leaky.reset_mechanism_val)]
    learn_beta = isinstance(leaky.beta, nn.Parameter)
    learn_thr = isinstance(leaky.threshold, nn.Parameter)
    lif = LIF(beta=leaky.beta.detach().clone(), threshold=leaky.threshold.detach().clone(), reset=reset,
              surrogate=_surrogate_of(leaky.spike_grad), learn_beta=learn_beta, learn_threshold=learn_thr,
              init_hidden=leaky.init_hidden, output=leaky.output)
    return lif


def _surrogate_of(fn) -> Surrogate:
    """snnTorch's surrogate closures keep their slope in the closure cell (``atan(alpha)``, ``fast_sigmoid(slope)``)."""
    name = getattr(fn, "__qualname__", "")
    cells = getattr(fn, "__closure__", None) or ()
    values = [c.cell_contents for c in cells if isinstance(c.cell_contents, (int, float))]
    if name.startswith("fast_sigmoid") and values:
        return Surrogate.fast_sigmoid(float(values[0]))
    if name.startswith("atan") and values:
        return Surrogate.atan(float(values[0]))
    return Surrogate()


def convert_snntorch(model: nn.Module) -> list[str]:
    """Replace every ``snntorch.Leaky`` in ``model`` (in place) by the equivalent :class:`LIF`; the names."""
    done = []
    for name, mod in list(model.named_modules()):
        if name and is_snntorch_leaky(mod):
            parent = model
            *path, attr = name.split(".")
            for p in path:
                parent = getattr(parent, p)
            setattr(parent, attr, from_snntorch(mod))
            done.append(name)
    return done


def is_spiking(model: nn.Module) -> bool:
    """Whether ``model`` holds spiking neurons (cimsim's or snnTorch's ``Leaky``)."""
    return any(isinstance(m, SpikingNeuron) or is_snntorch_leaky(m) for m in model.modules())


def reset_states(model: nn.Module) -> None:
    """Zero the membrane of every spiking neuron in ``model`` (cimsim's and snnTorch's): call before an inference."""
    for m in model.modules():
        if isinstance(m, SpikingNeuron) or is_snntorch_leaky(m):
            m.reset_mem()


# ---------------------------------------------------------------------------------------------- encoders
_M32 = 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (lowbias32, C. Wellons' hash-prospector) of int64 values in [0, 2**32)."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def counter_uniform(seed: int, step: int, x: torch.Tensor) -> torch.Tensor:
    """Uniforms in [0, 1), one per element of ``x`` (B, ...), keyed by (seed, step, element index, the example's
    content): the same numbers for an example whatever batch it sits in."""
    B = x.shape[0]
    flat = x.reshape(B, -1).double()
    n = flat.shape[1]
    idx = torch.arange(n, dtype=torch.int64, device=x.device)
    code = torch.round(flat.clamp(-1e6, 1e6) * 65536).to(torch.int64) & _M32
    content = _hash32((code * _hash32(idx + 0x9E37)[None, :]).sum(dim=1) & _M32)      # one key per example
    key = _hash32(torch.tensor((seed & _M32) ^ _hash32(torch.tensor(step + 0x51ED)).item(), dtype=torch.int64))
    h = _hash32(_hash32(idx[None, :] ^ key) ^ content[:, None])
    h = _hash32(h + idx[None, :])
    return (h.double() / 2.0 ** 32).reshape(x.shape)


class Encoder(nn.Module):
    """Turns images (B, ...) into per-step inputs (T, B, ...)."""

    def __init__(self, time_steps: int):
        super().__init__()
        if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
            raise ConfigError(f"time_steps must be a positive whole number, got {time_steps!r}")
        self.time_steps = time_steps

    def profile_events(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Digital work of encoding ``x`` into ``y`` (for :mod:`cimsim.mappers.profile`): none for the direct
        encoder (the first layer reads the image every step); one comparison per output element for a rate
        encoder (a random number against the intensity; drawing it is not counted) and per input element for
        the latency encoder."""
        return {}

    def extra_repr(self) -> str:
        return f"time_steps={self.time_steps}"


class RateEncoder(Encoder):
    """Bernoulli or Poisson rate coding with counter-based draws (module docstring)."""

    def __init__(self, time_steps: int, kind: str = "bernoulli", gain: float = 1.0, seed: int = 0):
        super().__init__(time_steps)
        if kind not in ("bernoulli", "poisson"):
            raise ConfigError(f"rate encoder kind {kind!r}: choose 'bernoulli' or 'poisson'")
        if not (gain > 0 and math.isfinite(gain)):
            raise ConfigError(f"rate encoder gain must be a positive number, got {gain!r}")
        self.kind, self.gain, self.seed = kind, float(gain), int(seed)

    def profile_events(self, x, y):
        return {"compare": y.numel()}

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "bernoulli":
            return (self.gain * x).clamp(0, 1)
        return -torch.expm1(-self.gain * x.clamp(min=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.probability(x)
        return torch.stack([(counter_uniform(self.seed, t, x) < p.double()).to(x.dtype)
                            for t in range(self.time_steps)])


class DirectEncoder(Encoder):
    """The analog input at every step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0).expand(self.time_steps, *x.shape)


class LatencyEncoder(Encoder):
    """One spike per element at step ``min(floor((1 - x) * T), T - 1)``; none where ``x < threshold``."""

    def __init__(self, time_steps: int, threshold: float = 0.01):
        super().__init__(time_steps)
        self.threshold = float(threshold)

    def profile_events(self, x, y):
        return {"compare": x.numel()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = self.time_steps
        when = torch.clamp(torch.floor((1 - x.clamp(0, 1)) * T), max=T - 1)
        steps = torch.arange(T, device=x.device, dtype=when.dtype).reshape(T, *([1] * x.dim()))
        return ((steps == when.unsqueeze(0)) & (x.unsqueeze(0) >= self.threshold)).to(x.dtype)


class EventEncoder(Encoder):
    """Event frames already binned in time: input (B, T, ...) (e.g. (B, T, 2, H, W) from
    :mod:`cimsim.workloads.events`), step ``t`` gets frame ``t``; ``T`` must equal ``time_steps``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3 or x.shape[1] != self.time_steps:
            raise ConfigError(f"event input of shape {tuple(x.shape)} does not hold {self.time_steps} time bins in "
                              "dimension 1: bin the events into as many frames as the network's time steps")
        return x.transpose(0, 1)


ENCODERS = {"rate": RateEncoder, "direct": DirectEncoder, "latency": LatencyEncoder, "events": EventEncoder}


def encoder(kind: str, time_steps: int, **kw) -> Encoder:
    if kind not in ENCODERS:
        raise ConfigError(f"encoder {kind!r}: choose one of {', '.join(ENCODERS)}")
    return ENCODERS[kind](time_steps, **kw)


class TimeLoop(nn.Module):
    """Runs a per-step network (e.g. an snnTorch ``nn.Sequential`` with ``init_hidden=True`` neurons) over
    ``encoder``'s time steps and decodes its outputs: ``"count"`` sums the outputs (spike counts), ``"mean"``
    averages them (membrane-potential readout when the last layer is not spiking). States are reset first."""

    def __init__(self, net: nn.Module, encoder: Encoder, decode: str = "count"):
        super().__init__()
        if decode not in ("count", "mean"):
            raise ConfigError(f"decode {decode!r}: choose 'count' or 'mean'")
        self.net, self.encoder, self.decode = net, encoder, decode

    @property
    def time_steps(self) -> int:
        return self.encoder.time_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reset_states(self.net)
        total = None
        for xt in self.encoder(x):
            out = self.net(xt)
            out = out[0] if isinstance(out, tuple) else out
            total = out if total is None else total + out
        return total if self.decode == "count" else total / self.time_steps
