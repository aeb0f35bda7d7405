"""ImageNet-size network definitions for cost-only runs: plain ``torch.nn``, no weights (none are downloaded).

The papers that compare CiM architectures (ISAAC, CASCADE, Neural-PIM) benchmark ImageNet CNNs. Energy and
throughput depend on the layer shapes and the activation statistics, not on the labels, so these
definitions run on synthetic inputs (``cimsim compare --input-shape 3,224,224``) with their random
initialisation: costs only, no accuracy. Every builder takes ``in_channels``, ``image_size`` (at least 32;
global pooling makes any size work) and ``num_classes`` (1000 for ImageNet).

* ``alexnet``: Krizhevsky et al. 2012 in its one-tower form (5 convs 64-192-384-256-256, 3 max-pools,
  classifier 4096-4096-classes).
* ``vgg16``: Simonyan & Zisserman 2015, configuration D (13 3x3 convs 64...512, 5 max-pools, 4096-4096-classes).
* ``resnet50``: He et al. 2016, bottleneck blocks [3, 4, 6, 3], widths 64-128-256-512 (x4 expansion),
  projection shortcuts at each stage's first block, batch-norm after every conv.
* ``mobilenetv2_imagenet``: Sandler et al. 2018, Table 2 (inverted residuals, t/c/n/s as published, width 1.0).
* ``vit_b16``: ViT-B/16, Dosovitskiy et al., ICLR 2021, Table 1 (16x16 patches, 12 layers, width 768, MLP 3072,
  12 heads, a class token; 86.6 M weights): the zoo's :class:`~cimsim.workloads.zoo.ViT` at that size. Its
  ``nn.MultiheadAttention`` projections go onto crossbars (:mod:`cimsim.mappers.unfuse`); an image size that is no
  multiple of 16 loses its last partial row and column of patches, as the strided patch embedding does.
"""

from __future__ import annotations

from torch import nn

from cimsim.errors import ConfigError
from cimsim.workloads.zoo import ViT


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, relu: str | None = "relu") -> list:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if relu == "relu":
        layers.append(nn.ReLU(inplace=True))
    elif relu == "relu6":
        layers.append(nn.ReLU6(inplace=True))
    return layers


class AlexNet(nn.Module):
    def __init__(self, in_channels: int = 3, image_size: int = 224, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(6))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(256 * 36, 4096), nn.ReLU(inplace=True),
                                        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


VGG16_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    def __init__(self, in_channels: int = 3, image_size: int = 224, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in VGG16_D:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(7))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(512 * 49, 4096), nn.ReLU(inplace=True),
                                        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = 4 * width
        self.body = nn.Sequential(*_conv_bn(cin, width, 1), *_conv_bn(width, width, 3, stride),
                                  *_conv_bn(width, cout, 1, relu=None))
        self.shortcut = (nn.Sequential(*_conv_bn(cin, cout, 1, stride, relu=None)) if stride != 1 or cin != cout
                         else nn.Identity())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet50(nn.Module):
    def __init__(self, in_channels: int = 3, image_size: int = 224, num_classes: int = 1000):
        super().__init__()
        blocks: list[nn.Module] = [*_conv_bn(in_channels, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
        c = 64
        for i, (width, n) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
            for j in range(n):
                blocks.append(Bottleneck(c, width, 2 if (j == 0 and i > 0) else 1))
                c = 4 * width
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else _conv_bn(cin, hidden, 1, relu="relu6")
        layers += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden, relu="relu6"),
                   *_conv_bn(hidden, cout, 1, relu=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


# Sandler et al. 2018, Table 2: expansion t, channels c, repeats n, first stride s
MOBILENETV2_T2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                  (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    def __init__(self, in_channels: int = 3, image_size: int = 224, num_classes: int = 1000):
        super().__init__()
        blocks: list[nn.Module] = [*_conv_bn(in_channels, 32, 3, 2, relu="relu6")]
        c = 32
        for t, cout, n, s in MOBILENETV2_T2:
            for j in range(n):
                blocks.append(InvertedResidual(c, cout, s if j == 0 else 1, t))
                c = cout
        blocks += [*_conv_bn(c, 1280, 1, relu="relu6"), nn.AdaptiveAvgPool2d(1)]
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def vit_b16(in_channels: int = 3, image_size: int = 224, num_classes: int = 1000) -> ViT:
    return ViT(in_channels, image_size, num_classes, patch=16, dim=768, depth=12, heads=12, mlp=3072)


_BUILDERS = {"alexnet": AlexNet, "vgg16": VGG16, "resnet50": ResNet50, "mobilenetv2_imagenet": MobileNetV2,
             "vit_b16": vit_b16}
MIN_IMAGE_SIZE = 32


def model_names() -> list[str]:
    return list(_BUILDERS)


def build(name: str, input_shape: tuple[int, int, int] = (3, 224, 224), num_classes: int = 1000) -> nn.Module:
    """An ImageNet-size network by name for (C, H, W) inputs, randomly initialised (no weights)."""
    key = name.strip().lower().replace("-", "_")
    if key not in _BUILDERS:
        raise ConfigError(f"unknown ImageNet-size model {name!r}: choose one of {', '.join(_BUILDERS)}")
    if len(input_shape) != 3 or input_shape[1] != input_shape[2] or input_shape[1] < MIN_IMAGE_SIZE:
        raise ConfigError(f"{key} takes square images (C, H, H) with H >= {MIN_IMAGE_SIZE}, got {tuple(input_shape)}")
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
    return _BUILDERS[key](in_channels=input_shape[0], image_size=input_shape[1], num_classes=num_classes)
