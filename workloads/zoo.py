"""The model zoo: plain ``torch.nn`` networks, nothing cimsim-specific inside.

Every builder takes ``in_channels`` (1 or 3), ``image_size`` (28 or 32; 8 for the MLP on digits) and
``num_classes``, so the same network runs on Fashion-MNIST/MNIST (1x28x28), CIFAR-10 (3x32x32) and the
8x8 digits (MLP only).

* ``mlp``: 2 hidden layers (256, 128) with ReLU on images; on tabular data (Iris) one hidden layer of 16.
* ``lenet5``: LeCun et al. 1998, with ReLU and max-pooling; 28x28 inputs get 2 pixels of padding in the
  first conv so both sizes reach the 16x5x5 feature map of the original.
* ``lenet5_caffe``: the LeNet-5 of Caffe's MNIST example (``lenet_train_test.prototxt``: 20 and 50 5x5
  convolutions, each followed by 2x2 max-pooling, a 500-unit ReLU layer and the classifier; 430,500 weights),
  the network of the ADMM crossbar-aware pruning paper's LeNet-5 point (arXiv 1908.11691, "about 431,000
  weights"); 32x32 inputs are cut to the 28x28 it was defined for by its first convolution's stride-1 valid
  window (a 5x5 feature map after the second pooling instead of 4x4).
* ``vgg_small``: VGG-style (Simonyan & Zisserman 2015) 3x3 conv pairs 32-64-128 with BatchNorm, max-pooling
  after each pair, global average pooling, one linear classifier.
* ``resnet20``: the CIFAR ResNet-20 of He et al. 2016 (sec. 4.2: 3 stages of 3 basic blocks, 16/32/64
  channels); downsampling shortcuts are 1x1 conv + BatchNorm (option B) so every branch is a matrix op.
* ``mobilenetv2_small``: MobileNetV2 (Sandler et al. 2018) inverted residual blocks (1x1 expand, 3x3
  depthwise, 1x1 linear projection), width and depth cut down for 28/32-pixel inputs.
* ``vit_mini``: a Vision Transformer (Dosovitskiy et al., ICLR 2021: patches embedded by one strided
  convolution, a class token, learned position embeddings, pre-norm encoder blocks of multi-head
  self-attention and a GELU MLP, the class token's final LayerNorm into the classifier) cut down for
  28/32-pixel inputs: 4x4 patches (49 or 64 tokens), width 64, 4 heads, MLP 128, depth 4; written with
  ``nn.TransformerEncoderLayer``, as users write theirs.
* spiking networks (``snn_vgg``, ...): :mod:`cimsim.workloads.snn_zoo`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from cimsim.errors import ConfigError
from cimsim.workloads import snn_zoo


class MLP(nn.Module):
    def __init__(self, in_channels: int = 1, image_size: int = 8, num_classes: int = 10,
                 hidden: tuple[int, ...] = (256, 128), in_features: int | None = None):
        super().__init__()
        width = in_features if in_features is not None else in_channels * image_size * image_size
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class LeNet5(nn.Module):
    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10):
        super().__init__()
        pad = (32 - image_size) // 2  # 28x28 -> padded to the original 32x32 receptive field
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True), nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class LeNet5Caffe(nn.Module):
    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 20, 5), nn.MaxPool2d(2),      # Caffe's example has no ReLU after the convs
            nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
        )
        side = ((image_size - 4) // 2 - 4) // 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(50 * side * side, 500), nn.ReLU(inplace=True), nn.Linear(500, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class VGGSmall(nn.Module):
    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10,
                 widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for w in widths:
            layers += _conv_bn_relu(cin, w) + _conv_bn_relu(w, w) + [nn.MaxPool2d(2)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10,
                 blocks_per_stage: int = 3, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        stages = []
        cin = widths[0]
        for i, w in enumerate(widths):
            blocks = []
            for j in range(blocks_per_stage):
                blocks.append(BasicBlock(cin, w, stride=2 if (i > 0 and j == 0) else 1))
                cin = w
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),  # depthwise
            nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),  # linear bottleneck
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x):
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2Small(nn.Module):
    # (expansion t, output channels c, repeats n, first stride s), as in Sandler et al. 2018 Table 2,
    # shortened to 4 stages for 28/32-pixel inputs (two stride-2 stages: 28 -> 14 -> 7).
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 3, 2))

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10,
                 stem: int = 32, last: int = 256):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, stem, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(stem), nn.ReLU6(inplace=True)]
        cin = stem
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x):
        return self.classifier(self.dropout(torch.flatten(self.pool(self.features(x)), 1)))


class Tokens(nn.Module):
    """The class token put in front of the patch tokens, and the learned position embeddings added (ViT eq. 1)."""

    def __init__(self, dim: int, patches: int):
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, patches + 1, dim) * 0.02)   # ViT's initialisation (std 0.02)

    def forward(self, x):    # (N, patches, dim) -> (N, patches + 1, dim)
        return torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos


class ViT(nn.Module):
    """A Vision Transformer (Dosovitskiy et al., ICLR 2021); the defaults are ``vit_mini``'s (ViT-B/16:
    :mod:`cimsim.workloads.zoo_imagenet`)."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10, patch: int = 4,
                 dim: int = 64, depth: int = 4, heads: int = 4, mlp: int = 128):
        super().__init__()
        self.patch = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.tokens = Tokens(dim, (image_size // patch) ** 2)
        block = nn.TransformerEncoderLayer(dim, heads, mlp, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(block, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        t = self.tokens(self.patch(x).flatten(2).transpose(1, 2))
        return self.head(self.norm(self.encoder(t)[:, 0]))


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "lenet5": LeNet5,
    "lenet5_caffe": LeNet5Caffe,
    "vgg_small": VGGSmall,
    "resnet20": ResNet20,
    "mobilenetv2_small": MobileNetV2Small,
    "vit_mini": ViT,
    **snn_zoo.BUILDERS,     # spiking networks (workloads/snn_zoo.py)
}
_ALIASES = {"lenet": "lenet5", "lenet_5": "lenet5", "vgg": "vgg_small", "resnet_20": "resnet20",
            "mobilenetv2": "mobilenetv2_small", "mobilenet": "mobilenetv2_small", "vit": "vit_mini"}


def model_names() -> list[str]:
    return list(_BUILDERS)


def canonical_name(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _BUILDERS:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(_BUILDERS)}")
    return key


def build(name: str, in_channels: int = 1, image_size: int = 28, num_classes: int = 10) -> nn.Module:
    """Build a zoo model by name for inputs of shape (in_channels, image_size, image_size)."""
    key = canonical_name(name)
    if in_channels not in (1, 3):
        raise ConfigError(f"in_channels must be 1 or 3, got {in_channels}")
    sizes = (8, 28, 32) if key == "mlp" else (28, 32)
    if image_size not in sizes:
        raise ConfigError(f"{key} takes images of size {' or '.join(map(str, sizes))}, got {image_size}")
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
    return _BUILDERS[key](in_channels=in_channels, image_size=image_size, num_classes=num_classes)


def build_for(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build a zoo model for a dataset's example shape: (C, H, W) images, or (F,) features (MLP only)."""
    key = canonical_name(name)
    if len(input_shape) == 4 or key in snn_zoo.EVENT_MODELS:   # event frames (T, C, H, W)
        if len(input_shape) != 4:
            raise ConfigError(f"{key} takes event frames (T, 2, H, W); pick an event dataset (nmnist-fashion, "
                              "gesture-synth, flow-synth, dvs-gesture, mvsec)")
        if key not in snn_zoo.EVENT_MODELS:
            raise ConfigError(f"event frames {tuple(input_shape)} need an event network: "
                              f"--model {' or '.join(snn_zoo.EVENT_MODELS)}")
        return snn_zoo.build_events(key, tuple(input_shape), num_classes)
    if len(input_shape) == 1:
        if key != "mlp":
            raise ConfigError(f"{key} needs image inputs; tabular data ({input_shape[0]} features) needs --model mlp")
        return MLP(in_features=input_shape[0], num_classes=num_classes, hidden=(16,))
    c, h, w = input_shape
    if h != w:
        raise ConfigError(f"zoo models take square images, got {h}x{w}")
    return build(key, in_channels=c, image_size=h, num_classes=num_classes)


def rebuild(meta: dict) -> nn.Module:
    """The zoo model a checkpoint's weights will fill (``meta``: its metadata), built without drawing from torch's
    global random generator: loading a network leaves a seeded script's random numbers as they were."""
    with torch.random.fork_rng(devices=[]):
        return build_for(meta["model"], tuple(meta["input_shape"]), int(meta["num_classes"]))
