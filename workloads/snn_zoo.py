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
* ``snn_resnet20``: ResNet-20-style (He et al. 2016: a 3x3 stem, three stages of three basic blocks, widths
  16-32-64, stride-2 at the start of stages 2 and 3, global average pooling, a linear readout), LIF neurons in
  place of ReLUs, T = 10 (the paper's time steps for ResNet), direct encoding. **Residual adds are of currents**:
  a block computes ``s1 = LIF(conv1(s))`` and ``LIF(conv2(s1) + shortcut(s))``, the shortcut's spikes (identity)
  or current (a 1x1 stride-2 conv of the spikes, where the shape changes) added to the second conv's current
  before the neuron, as in Hu et al.'s spiking ResNet (arXiv 1805.01352) and the tdBN ResNet (Zheng et al., AAAI
  2021). We did not take SEW-ResNet's spike-level ADD (Fang et al., NeurIPS 2021), ``LIF(conv2(s1)) + s``: its
  sums take the values 0, 1, 2, ... so the next crossbar's rows would need multi-bit, bit-serial inputs, which
  is what the ADC-less chip avoids (every crossbar after the first is driven by 1-bit spikes in one read
  cycle); adding in the current costs one digital add per neuron and step, in the LIF's accumulator. The
  average pool's spike rates feed the readout as multi-bit inputs (64 rows, 8-bit, like the first layer).

* ``snn_dvsnet``: DVSNet-like classifier of event frames (arXiv 2211.02167's gesture network: input 64x64x2,
  11 conv 3x3 layers of 32 channels with LIF neurons, 5 max-pools, a linear readout 128 -> 11 classes);
  ``encoding="events"`` (the data are binned event frames (T, 2, H, W)), T = 5 (the paper's 5..10; our
  choice of the low end: training time on a CPU). Any input size that is a multiple of 32.
* ``snn_flownet``: a small Spike-FlowNet-like encoder-decoder (Lee et al., ECCV 2020; the paper's flow net)
  for optical flow, a regression: four stride-2 3x3 conv encoders with LIF neurons, one spiking residual
  block, a decoder of nearest-neighbour 2x upsampling + 3x3 conv (the mapper has no transposed convolution)
  with the encoder's spikes concatenated at each scale (skip connections), and a 3x3 flow head without a
  neuron: its output (2, H, W) averaged over the T = 5 steps is the flow in pixels. The paper's widths
  64-128-256-512 are scaled to ``width`` = (16, 32, 64, 128) (est.: a CPU-trainable size).

The LIF constants (beta 0.9, threshold 1, reset by subtraction, arctan surrogate) are snnTorch's tutorial
values (our choice). No BatchNorm: a BN layer called once per time step normalises each step by its own batch
statistics in training but by running averages over all steps in inference, which differ a lot at the first
steps (sparse spikes), so the trained network loses most of its accuracy in eval mode (we measured 56 % -> 44 %
test accuracy after two epochs); the mapper still folds BN across time steps for networks that have it.
"""

from __future__ import annotations

import torch
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
    if model.encoding == "events" and int(time_steps) != model.time_steps:
        raise ConfigError(f"{type(model).__name__} takes the data's {model.time_steps} event frames per example; "
                          "--time-steps cannot change them: bin the events into another number of frames and "
                          "train the network on those")
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


EVENT_TIME_STEPS = 5   # ADC-less SNN paper: 5 time steps for the flow networks (DVSNet: 5..10)
# our choice, measured: with PyTorch's default conv init the sparse event inputs die out after two or three LIF layers
# (layers 3-11 of snn_dvsnet and 2-10 of snn_flownet fire nothing on gesture-synth / flow-synth, so nothing trains);
# weights 3x larger keep every layer firing at 1-8 % (no BatchNorm, see above)
EVENT_INIT_GAIN = 3.0


def _scale_init(convs, gain: float = EVENT_INIT_GAIN) -> None:
    with torch.no_grad():
        for conv in convs:
            conv.weight.mul_(gain)


class SpikingDVSNet(SpikingNet):
    def __init__(self, in_channels: int = 2, image_size: int = 64, num_classes: int = 11,
                 time_steps: int = EVENT_TIME_STEPS, encoding: str = "events", width: int = 32):
        if image_size % 32:
            raise ConfigError(f"snn_dvsnet takes frames whose size is a multiple of 32, got {image_size}")
        layers, c = [], in_channels
        for i in range(11):                       # pools after the 2nd, 4th, ... 10th conv: /32 in all
            layers += [nn.Conv2d(c, width, 3, padding=1), _lif()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            c = width
        layers += [nn.Flatten(), nn.Linear(width * (image_size // 32) ** 2, num_classes)]
        _scale_init(m for m in layers if isinstance(m, nn.Conv2d))
        super().__init__(nn.Sequential(*layers), time_steps, encoding)


class _FlowStep(nn.Module):
    """One time step of :class:`SpikingFlowNet` (module docstring)."""

    def __init__(self, in_channels: int, width: tuple[int, int, int, int]):
        super().__init__()
        a, b, c, d = width
        conv = lambda i, o, s=1: nn.Conv2d(i, o, 3, stride=s, padding=1)   # noqa: E731
        self.enc1, self.enc2, self.enc3, self.enc4 = conv(in_channels, a, 2), conv(a, b, 2), conv(b, c, 2), conv(c, d, 2)
        self.res1, self.res2 = conv(d, d), conv(d, d)
        self.dec3, self.dec2, self.dec1, self.dec0 = conv(d + c, c), conv(c + b, b), conv(b + a, a), conv(a, a)
        self.flow = conv(a, 2)
        self.lifs = nn.ModuleList(_lif() for _ in range(10))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        _scale_init(m for m in self.modules() if isinstance(m, nn.Conv2d) and m is not self.flow)

    def forward(self, x):
        n = iter(self.lifs)
        e1 = next(n)(self.enc1(x))
        e2 = next(n)(self.enc2(e1))
        e3 = next(n)(self.enc3(e2))
        e4 = next(n)(self.enc4(e3))
        r = next(n)(self.res2(next(n)(self.res1(e4))) + e4)          # spiking residual block
        d3 = next(n)(self.dec3(torch.cat([self.up(r), e3], 1)))
        d2 = next(n)(self.dec2(torch.cat([self.up(d3), e2], 1)))
        d1 = next(n)(self.dec1(torch.cat([self.up(d2), e1], 1)))
        d0 = next(n)(self.dec0(self.up(d1)))
        return self.flow(d0)


class SpikingFlowNet(SpikingNet):
    def __init__(self, in_channels: int = 2, image_size: int = 64, num_classes: int = 2,
                 time_steps: int = EVENT_TIME_STEPS, encoding: str = "events",
                 width: tuple[int, int, int, int] = (16, 32, 64, 128)):
        if image_size % 16:
            raise ConfigError(f"snn_flownet takes frames whose size is a multiple of 16, got {image_size}")
        super().__init__(_FlowStep(in_channels, width), time_steps, encoding)


class _SpikingBlock(nn.Module):
    """A basic block with LIF neurons, the residual added to the second neuron's input current (docstring)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.lif1 = _lif()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.lif2 = _lif()
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride=stride) if stride != 1 or cin != cout else nn.Identity())

    def forward(self, s):
        return self.lif2(self.conv2(self.lif1(self.conv1(s))) + self.shortcut(s))


class _ResNetStep(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int, widths: tuple[int, int, int],
                 blocks_per_stage: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.lif1 = _lif()
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            for j in range(blocks_per_stage):
                blocks.append(_SpikingBlock(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        # a fixed-size average pool (not adaptive: CUDA has no deterministic backward for the adaptive one)
        self.pool = nn.AvgPool2d(-(-image_size // 4))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        s = self.blocks(self.lif1(self.conv1(x)))
        return self.fc(torch.flatten(self.pool(s), 1))


class SpikingResNet20(SpikingNet):
    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10,
                 time_steps: int = VGG_TIME_STEPS, encoding: str = "direct", widths: tuple[int, int, int] = (16, 32, 64),
                 blocks_per_stage: int = 3):
        if image_size % 4:
            raise ConfigError(f"snn_resnet20 takes images whose size is a multiple of 4, got {image_size}")
        step = _ResNetStep(in_channels, image_size, num_classes, tuple(widths), blocks_per_stage)
        # measured: with PyTorch's default init the branch neurons of blocks 4-9 fire nothing on Fashion-MNIST
        # (rates 0.000-0.002); 3x larger conv weights (EVENT_INIT_GAIN) keep all 19 LIF layers at 10-22 %
        _scale_init(m for m in step.modules() if isinstance(m, nn.Conv2d))
        super().__init__(step, time_steps, encoding)


BUILDERS = {"snn_vgg": SpikingVGG, "snn_resnet20": SpikingResNet20, "snn_dvsnet": SpikingDVSNet,
            "snn_flownet": SpikingFlowNet}
EVENT_MODELS = ("snn_dvsnet", "snn_flownet")   # take event frames (T, C, H, W)
REGRESSION_MODELS = ("snn_flownet",)           # output per-pixel flow, not class scores


def build_events(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """An event network for frames of shape (T, C, H, W): its time steps are the data's T."""
    t, c, h, w = input_shape
    if h != w:
        raise ConfigError(f"{name} takes square frames, got {h}x{w}")
    return BUILDERS[name](in_channels=c, image_size=h, num_classes=num_classes, time_steps=t)
