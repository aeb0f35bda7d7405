"""The names the command line checks before it imports anything heavy.

A typo (``--arch isac``, ``--model lenet``, ``--dataset fashoin-mnist``, ``--set readout=ternery``) must be
refused at once, not after torch and numba have loaded (seconds, tens of seconds on a busy machine).
Architectures and their parameters are checked against the architecture registry itself (``cimsim.arch``
loads neither torch nor numba): every ``--set`` is applied to the architecture it names, with its range. The
model and dataset registries (:func:`cimsim.workloads.zoo.model_names`,
:func:`cimsim.workloads.datasets.dataset_names`) import torch, so the command line keeps a copy of those names;
``tests/test_cli_names.py`` asserts that it equals the registries. The messages are the registries' own.
"""

from __future__ import annotations

from cimsim.errors import ConfigError

MODELS = ("mlp", "lenet5", "lenet5_caffe", "vgg_small", "resnet20", "mobilenetv2_small", "snn_vgg", "snn_resnet20",
          "snn_dvsnet", "snn_flownet")
MODEL_ALIASES = {"lenet": "lenet5", "lenet_5": "lenet5", "vgg": "vgg_small", "resnet_20": "resnet20",
                 "mobilenetv2": "mobilenetv2_small", "mobilenet": "mobilenetv2_small"}
# ImageNet-size definitions for cost-only runs (cimsim.workloads.zoo_imagenet.model_names())
IMAGENET_MODELS = ("alexnet", "vgg16", "resnet50", "mobilenetv2_imagenet")
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


def check_arch(name: str):
    """The architecture ``name`` (the registry's own error for an unknown one)."""
    from cimsim import arch

    return arch.get(name)


def check_model(name: str) -> str:
    return _known("model", name, name.strip().lower().replace("-", "_"), MODELS, MODEL_ALIASES)


def check_cost_only_model(name: str) -> str:
    """A model for cost-only runs on synthetic inputs: an ImageNet-size definition or any zoo model."""
    key = name.strip().lower().replace("-", "_")
    if key in IMAGENET_MODELS:
        return key
    key = MODEL_ALIASES.get(key, key)
    if key not in MODELS:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(IMAGENET_MODELS + MODELS)}")
    return key


def check_dataset(name: str) -> str:
    return _known("dataset", name, name.strip().lower(), DATASETS, DATASET_ALIASES)


def check_sets(specs: list, sets: list[tuple[str, str]] | None, every: bool) -> None:
    """Apply ``sets`` to the architectures ``specs``: each to every one (``every``: a run) or to those that have
    it (a sweep), so a bad path or value is refused with the architecture's own message."""
    overrides = dict(sets or [])
    for spec in specs:
        spec.with_params(**(overrides if every else {k: v for k, v in overrides.items() if spec.has_param(k)}))


def check(*, archs: str | None = None, model: str | None = None, dataset: str | None = None,
          sets: list[tuple[str, str]] | None = None, sets_every: bool = True) -> None:
    """Refuse unknown names and bad parameters at once. ``archs``: one name or a comma list (``cimsim sweep
    --arch``; an empty item is left to the subcommand, which names the fix); ``sets_every``: every ``--set``
    must apply to every architecture (a run), else to those that have it (a sweep)."""
    specs = [check_arch(item) for item in (archs or "").split(",") if item.strip()]
    if model is not None:
        check_model(model)
    if dataset is not None:
        check_dataset(dataset)
    check_sets(specs, sets, every=sets_every)
