"""The model and dataset names cimsim knows, checked without importing torch.

The model and dataset registries (:func:`cimsim.workloads.zoo.model_names`,
:func:`cimsim.workloads.datasets.dataset_names`) import torch, so this module keeps a copy of those names for the
checks that must be quick (the command line's, :class:`cimsim.sweep.Settings`'); ``tests/test_cli_names.py``
asserts that it equals the registries. The messages are the registries' own.
"""

from __future__ import annotations

from cimsim.errors import ConfigError

MODELS = ("mlp", "lenet5", "lenet5_caffe", "vgg_small", "resnet20", "mobilenetv2_small", "vit_mini", "snn_vgg",
          "snn_resnet20", "snn_dvsnet", "snn_flownet")
MODEL_ALIASES = {"lenet": "lenet5", "lenet_5": "lenet5", "vgg": "vgg_small", "resnet_20": "resnet20",
                 "mobilenetv2": "mobilenetv2_small", "mobilenet": "mobilenetv2_small", "vit": "vit_mini"}
# ImageNet-size definitions for cost-only runs (cimsim.workloads.zoo_imagenet.model_names())
IMAGENET_MODELS = ("alexnet", "vgg16", "resnet50", "mobilenetv2_imagenet", "vit_b16")
DATASETS = ("fashion-mnist", "mnist", "cifar10", "iris", "digits", "synthetic", "nmnist-fashion", "gesture-synth",
            "flow-synth", "dvs-gesture", "mvsec")
EVENT_DATASETS = DATASETS[6:]   # event frames (T, 2, H, W): the event networks' data
DATASET_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
                   "cifar-10": "cifar10", "cifar_10": "cifar10",
                   "nmnist_fashion": "nmnist-fashion", "gesture_synth": "gesture-synth", "flow_synth": "flow-synth",
                   "dvs_gesture": "dvs-gesture", "dvsgesture": "dvs-gesture"}


def _known(what: str, name: str, key: str, choices: tuple[str, ...], aliases: dict[str, str], hint: str = "") -> str:
    key = aliases.get(key, key)
    if key not in choices:
        raise ConfigError(f"unknown {what} {name!r}: choose one of {', '.join(choices)}{hint}")
    return key


def check_model(name: str) -> str:
    return _known("model", name, name.strip().lower().replace("-", "_"), MODELS, MODEL_ALIASES)


def check_dataset(name: str) -> str:
    return _known("dataset", name, name.strip().lower(), DATASETS, DATASET_ALIASES)
