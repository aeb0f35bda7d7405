"""The names the command line checks before it imports anything heavy.

A typo (``--arch isac``, ``--model lenet``, ``--dataset fashoin-mnist``, ``--set readout=ternery``) must be
refused at once, not after torch and numba have loaded (seconds, tens of seconds on a busy machine). The
registries that own these names (:func:`cimsim.arch.names`, :func:`cimsim.workloads.zoo.model_names`,
:func:`cimsim.workloads.datasets.dataset_names`, ``cimsim.arch.hcim.READOUTS``) import torch or numba, so the
command line keeps this copy of them; ``tests/test_cli_names.py`` asserts that it equals the registries, so
a name added there and not here fails the tests. The messages are the registries' own.
"""

from __future__ import annotations

from cimsim.errors import ConfigError

ARCHITECTURES = ("digital", "isaac", "hcim")
MODELS = ("mlp", "lenet5", "vgg_small", "resnet20", "mobilenetv2_small")
MODEL_ALIASES = {"lenet": "lenet5", "lenet_5": "lenet5", "vgg": "vgg_small", "resnet_20": "resnet20",
                 "mobilenetv2": "mobilenetv2_small", "mobilenet": "mobilenetv2_small"}
DATASETS = ("fashion-mnist", "mnist", "cifar10", "iris", "digits", "synthetic")
DATASET_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
                   "cifar-10": "cifar10", "cifar_10": "cifar10"}
# string-valued architecture parameters that name a readout: --set readout=NAME (hcim)
READOUTS = ("ternary", "binary")


def _known(what: str, name: str, key: str, choices: tuple[str, ...], aliases: dict[str, str], hint: str = "") -> str:
    key = aliases.get(key, key)
    if key not in choices:
        raise ConfigError(f"unknown {what} {name!r}: choose one of {', '.join(choices)}{hint}")
    return key


def check_arch(name: str) -> str:
    return _known("architecture", name, name.strip().lower(), ARCHITECTURES, {}, " (see 'cimsim archs')")


def check_model(name: str) -> str:
    return _known("model", name, name.strip().lower().replace("-", "_"), MODELS, MODEL_ALIASES)


def check_dataset(name: str) -> str:
    return _known("dataset", name, name.strip().lower(), DATASETS, DATASET_ALIASES)


def check_sets(sets: list[tuple[str, str]] | None) -> None:
    for key, value in sets or []:
        if key == "readout" and value not in READOUTS:
            raise ConfigError(f"readout must be one of {', '.join(READOUTS)}, got {value!r}")


def check(*, archs: str | None = None, model: str | None = None, dataset: str | None = None,
          sets: list[tuple[str, str]] | None = None) -> None:
    """Refuse unknown names at once. ``archs``: one name or a comma list (``cimsim sweep --arch``); an empty
    item is left to the subcommand, which names the fix."""
    for item in (archs or "").split(","):
        if item.strip():
            check_arch(item)
    if model is not None:
        check_model(model)
    if dataset is not None:
        check_dataset(dataset)
    check_sets(sets)
