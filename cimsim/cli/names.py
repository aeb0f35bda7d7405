"""The names the command line checks before it imports anything heavy.

A typo (``--arch isac``, ``--model lenet``, ``--dataset fashoin-mnist``, ``--set readout=ternery``) must be
refused at once, not after torch and numba have loaded (seconds, tens of seconds on a busy machine).
Architectures and their parameters are checked against the architecture registry itself (``cimsim.arch``
loads neither torch nor numba): every ``--set`` is applied to the architecture it names, with its range. The
model and dataset registries (:func:`cimsim.workloads.zoo.model_names`,
:func:`cimsim.workloads.datasets.dataset_names`) import torch, so the command line checks the copy of those names in
:mod:`cimsim.zoo_names`; ``tests/test_cli_names.py`` asserts that it equals the registries. The messages are the
registries' own.
"""

from __future__ import annotations

from cimsim.errors import ConfigError
from cimsim.zoo_names import (DATASET_ALIASES, DATASETS, EVENT_DATASETS, IMAGENET_MODELS,  # noqa: F401
                               MODEL_ALIASES, MODELS, _known, check_dataset, check_model)


def check_arch(name: str):
    """The architecture ``name`` (the registry's own error for an unknown one)."""
    from cimsim import arch

    return arch.get(name)


def check_cost_only_model(name: str) -> str:
    """A model for cost-only runs on synthetic inputs: an ImageNet-size definition or any zoo model."""
    key = name.strip().lower().replace("-", "_")
    if key in IMAGENET_MODELS:
        return key
    key = MODEL_ALIASES.get(key, key)
    if key not in MODELS:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(IMAGENET_MODELS + MODELS)}")
    return key


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
