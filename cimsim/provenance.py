"""Where a network and its data came from, so that every report can name them.

A report must say which network it simulated and on what data, and, when the network came from a
checkpoint, which file and the test accuracy recorded in it (a checkpoint the user trained for one
epoch must never pass silently for the shipped one). The objects carry that themselves:

* the checkpoint loaders (:func:`cimsim.workloads.train.load_checkpoint`,
  :func:`cimsim.networks.load_psq_checkpoint`) tag the model they rebuild with a :class:`CheckpointInfo`
  (:func:`tag_model`);
* :meth:`cimsim.workloads.Dataset.loader` tags its loaders with the dataset's name (:func:`tag_loader`).

:func:`describe` turns them into the report's configuration keys (``model``, ``dataset``, ``checkpoint``,
``checkpoint_test_accuracy``, ``checkpoint_origin``, ``checkpoint_shadows``); names given explicitly
(``model_name=`` / ``dataset=`` of ``cimsim.map`` and ``MappedModel.evaluate``) win over the tags. Only the
standard library is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# the attribute names of the tags (declared here; read and written only through this module's functions)
MODEL_TAG = "cimsim_checkpoint"
LOADER_TAG = "cimsim_dataset"

ORIGINS = ("shipped", "user", "file")   # shipped with cimsim, in the user's checkpoint folder, or a path given
# the checkpoint keys of a report on a network built in Python
NO_CHECKPOINT = {"checkpoint": None, "checkpoint_test_accuracy": None, "checkpoint_origin": None,
                 "checkpoint_shadows": None}


@dataclass(frozen=True)
class CheckpointInfo:
    """The checkpoint a model was loaded from.

    ``origin``: ``shipped`` (inside the package), ``user`` (``$CIMSIM_HOME/checkpoints``, searched first) or
    ``file`` (any other path). ``shadows``: the shipped checkpoint of the same name that a user checkpoint
    hides from the search by name ('' when it hides none)."""

    path: str
    model: str
    dataset: str
    test_accuracy: float | None
    origin: str = "file"
    shadows: str = ""

    def __post_init__(self):
        if self.origin not in ORIGINS:
            raise ValueError(f"origin must be one of {', '.join(ORIGINS)}, got {self.origin!r}")

    def config(self) -> dict[str, Any]:
        """The report configuration keys this checkpoint fills."""
        return {"checkpoint": self.path, "checkpoint_test_accuracy": self.test_accuracy,
                "checkpoint_origin": self.origin, "checkpoint_shadows": self.shadows or None}


def tag_model(model, info: CheckpointInfo):
    """Record on ``model`` (any object with attributes, e.g. a ``torch.nn.Module``) the checkpoint it came from."""
    if not isinstance(info, CheckpointInfo):
        raise TypeError(f"info must be a CheckpointInfo, got {type(info).__name__}")
    setattr(model, MODEL_TAG, info)
    return model


def checkpoint_of(model) -> CheckpointInfo | None:
    """The checkpoint ``model`` was loaded from, or None (a network built in Python)."""
    info = getattr(model, MODEL_TAG, None)
    return info if isinstance(info, CheckpointInfo) else None


def tag_loader(loader, dataset: str):
    """Record on ``loader`` the name of the dataset it iterates."""
    setattr(loader, LOADER_TAG, str(dataset))
    return loader


def dataset_of(loader) -> str | None:
    """The dataset name a loader was tagged with, or None."""
    name = getattr(loader, LOADER_TAG, None)
    return name if isinstance(name, str) else None


def describe(model, loader=None, *, model_name: str | None = None, dataset: str | None = None) -> dict[str, Any]:
    """The report's naming keys for ``model`` evaluated over ``loader``.

    ``model``: the name given, else the checkpoint's model name, else the network's class name.
    ``dataset``: the name given, else the loader's tag, else the dataset the checkpoint was trained on
    (marked as such), else ``"unnamed data"``. The checkpoint keys are None for a network built in Python."""
    info = checkpoint_of(model)
    name = model_name or (info.model if info else type(model).__name__)
    data = dataset or (dataset_of(loader) if loader is not None else None)
    if data is None:
        data = f"{info.dataset} (the checkpoint's training set)" if info else "unnamed data"
    out: dict[str, Any] = {"model": name, "dataset": data}
    out.update(info.config() if info else dict(NO_CHECKPOINT))
    return out
