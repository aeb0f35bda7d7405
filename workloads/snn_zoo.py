"""Spiking networks of the zoo: plain ``torch.nn`` layers and cimsim's LIF neurons (:mod:`cimsim.spiking`).

Every network runs its own time loop in ``forward``: the input is encoded over ``time_steps`` steps (direct
encoding by default: the first layer takes the analog image every step; ``encoding="rate"`` gives
Bernoulli spikes), every neuron layer is a :class:`~cimsim.spiking.LIF` with snnTorch's ``Leaky`` semantics,
and the output is the membrane-potential readout: the last linear layer's output averaged over the steps.
States are reset at the start of every ``forward``, so one call is one inference.

* ``snn_vgg``: VGG-style (Simonyan & Zisserman 2015) 3x3 conv pairs 8-16 with LIF neurons, max-pooling
  after each pair (spikes stay binary), a 128-neuron LIF hidden layer and a linear readout; T = 10, the
  ADC-less SNN paper's time steps for VGG (arXiv 2211.02167). Narrow (``width``) so that training through
  10 time steps stays within minutes per epoch on a CPU.

The LIF constants (beta 0.9, threshold 1, reset by subtraction, arctan surrogate) are snnTorch's tutorial
values (our choice). No BatchNorm: a BN layer called once per time step normalises each step by its own batch
statistics in training but by running averages over all steps in inference, which differ a lot at the first
steps (sparse spikes), so the trained network loses most of its accuracy in eval mode (we measured 56 % -> 44 %
test accuracy after two epochs); the mapper still folds BN across time steps for networks that have it.
"""

from __future__ import annotations

from torch import nn

from cimsim.errors import ConfigError
from cimsim.spiking import LIF, encoder, reset_states

# our choice: snnTorch's tutorial neuron (Eshraghian et al., Proc. IEEE 2023)
BETA, THRESHOLD = 0.9, 1.0
VGG_TIME_STEPS = 10   # ADC-less SNN paper: 10 time steps for VGG / ResNet


def _lif() -> LIF:
    return LIF(beta=BETA, threshold=THRESHOLD, init_hidden=True)


class SpikingNet(nn.Module):
    """A per-step network ``step`` run over the encoded input; output: the mean of its outputs over time."""

    def __init__(self, step: nn.Module, time_steps: int, encoding: str):
        super().__init__()
        self.step = step
        self.time_steps = int(time_steps)
        self.encoding = encoding
        self.encoder = encoder(encoding, self.time_steps)

    def forward(self, x):
        reset_states(self)
        total = None
        for xt in self.encoder(x):
            out = self.step(xt)
            total = out if total is None else total + out
        return total / self.time_steps


def with_time_steps(model: nn.Module, time_steps: int) -> nn.Module:
    """``model`` (a :class:`SpikingNet`) set to run ``time_steps`` steps, in place."""
    if not isinstance(model, SpikingNet):
        raise ConfigError(f"--time-steps applies to the zoo's spiking networks, not to {type(model).__name__}")
    model.encoder = encoder(model.encoding, int(time_steps))
    model.time_steps = model.encoder.time_steps
    return model


class SpikingVGG(SpikingNet):
    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10,
                 time_steps: int = VGG_TIME_STEPS, encoding: str = "direct", width: tuple[int, int] = (8, 16)):
        if image_size % 4:
            raise ConfigError(f"snn_vgg takes images whose size is a multiple of 4, got {image_size}")
        a, b = width
        step = nn.Sequential(
            nn.Conv2d(in_channels, a, 3, padding=1), _lif(),
            nn.Conv2d(a, a, 3, padding=1), _lif(), nn.MaxPool2d(2),
            nn.Conv2d(a, b, 3, padding=1), _lif(),
            nn.Conv2d(b, b, 3, padding=1), _lif(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(b * (image_size // 4) ** 2, 128), _lif(),
            nn.Linear(128, num_classes),
        )
        super().__init__(step, time_steps, encoding)


BUILDERS = {"snn_vgg": SpikingVGG}
