"""ADMM block pruning as a sweep axis: ``cimsim sweep --grid admm.compression=1,2,4,8``.

ADMM crossbar-aware pruning (:mod:`cimsim.mappers.admm`, arXiv 1908.11691) is a training step, not an architecture
parameter, so its knobs live here under the prefix ``admm.``; a sweep takes them in ``--grid`` (swept) and in
``--set`` (fixed), beside the architecture's own parameters, for every architecture that maps a plain trained
network to crossbars (not ``digital``, and not ``hcim`` / ``adcless-snn``, whose networks are fine-tuned for their
readouts). The knobs are those of ``cimsim finetune --method admm``:

=====================  ===========================================================================================
``admm.compression``   target weight compression, weights / kept weights (1 or ``off``: the dense network, no
                       training: the point equals a plain run bit for bit)
``admm.epochs``        N: N ADMM epochs and N retraining epochs (unset: the recipe's 6 + 10,
                       :class:`cimsim.mappers.admm.ADMMRecipe`)
``admm.lr``            learning rate (default the recipe's 1e-2)
``admm.batch_size``    mini-batch size (default the recipe's 128)
``admm.limit``         training examples: the first N (default all)
``admm.seed``          the pruning's own seed (default 0; the sweep's ``--seeds`` draw devices and readouts over
                       the same pruned network)
=====================  ===========================================================================================

The block size is the point's array (its ``rows`` and the outputs its ``cols`` hold) and the weight grid its
``weight_bits`` (:meth:`cimsim.mappers.admm.ADMMConfig.from_arch`), so sweeping those architecture parameters
sweeps ADMM's other two knobs too. Per point the base network is pruned for the point's (blocks, target,
recipe, seed), on the sweep's ``--device`` (the CPU with torch on one thread otherwise), and the pruned network
is mapped as ``cimsim run --checkpoint`` maps it: only the arrays of non-zero blocks are allocated.

Pruned networks are cached in ``$CIMSIM_HOME/checkpoints/admm/`` (:func:`cache_dir`), one checkpoint per
:func:`cache_key` (model, dataset, base checkpoint by content, block shape, weight bits, target, recipe, training
examples, seed, device), so a resumed or repeated sweep does not train again, and points that differ only in
readout parameters (ADC bits, noise) share one pruned network. A lock per entry lets parallel workers train each
network once.

Like :mod:`cimsim.sweep`, this module stands on top of every layer (DESIGN.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cimsim.errors import CheckpointError, ConfigError

PREFIX = "admm."
CACHE_FORMAT = 1    # bump when what a cache entry holds changes: older entries are then trained again


def _number(key: str, text, kind, low: float, what: str):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} {text!r} is not {what}; write e.g. --grid admm.compression=1,2,4,8 or "
                          "--set admm.epochs=2") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} {text!r} is not finite; give {what}")
    if value < low:
        raise ConfigError(f"{key} {text!r} is out of range; give {what}")
    return value


def _compression(key: str, text) -> float:
    if str(text).strip().lower() in ("off", "none", "dense"):
        return 1.0
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} {text!r} is not a number; give a target weight compression of at least 1 "
                          "(weights / kept weights; 1 or off: dense), e.g. --grid admm.compression=1,2,4,8") from None
    if not math.isfinite(value) or value < 1:
        raise ConfigError(f"{key} {text!r} is out of range: the target weight compression (weights / kept weights) "
                          "is at least 1 (1 or off: dense)")
    return value


# knob -> (parser, what it is); the recipe's knobs are those of 'cimsim finetune --method admm'
KNOBS = {
    "compression": (_compression, "target weight compression, weights / kept weights (1 or off: dense)"),
    "epochs": (lambda k, t: _number(k, t, int, 1, "a positive whole number of epochs"),
               "N ADMM epochs and N retraining epochs (unset: the recipe's 6 + 10)"),
    "lr": (lambda k, t: _number(k, t, float, 1e-12, "a learning rate > 0"), "learning rate (default 1e-2)"),
    "batch_size": (lambda k, t: _number(k, t, int, 1, "a positive whole number of examples"),
                   "mini-batch size (default 128)"),
    "limit": (lambda k, t: _number(k, t, int, 1, "a positive whole number of training examples"),
              "training examples: the first N (default all)"),
    "seed": (lambda k, t: _number(k, t, int, 0, "a whole number >= 0"), "the pruning's seed (default 0)"),
}


def is_knob(key: str) -> bool:
    """Whether ``key`` names an ADMM knob (``admm.`` prefix; an unknown name is refused by :func:`parse`)."""
    return str(key).startswith(PREFIX)


def parse(key: str, text) -> Any:
    """The value of knob ``key`` (``admm.NAME``) from its text: a ConfigError naming the knob and the fix when bad."""
    name = key[len(PREFIX):]
    if name not in KNOBS:
        raise ConfigError(f"{key} is not an ADMM knob: choose one of "
                          f"{', '.join(PREFIX + k for k in KNOBS)} (see 'cimsim sweep --help')")
    return KNOBS[name][0](key, text)


def applies(spec) -> bool:
    """Whether ADMM pruning applies to the architecture ``spec``: it maps a plain trained network to crossbars."""
    return bool(spec.maps_to_crossbars and not spec.learned_column_scales and not spec.learned_sense_amp_scales)


def split(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``params`` as (architecture parameters, ADMM knobs)."""
    arch = {k: v for k, v in params.items() if not is_knob(k)}
    return arch, {k: v for k, v in params.items() if is_knob(k)}


@dataclass(frozen=True)
class Knobs:
    """The ADMM knobs of one point (None: the recipe's default)."""

    compression: float = 1.0
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    limit: int | None = None
    seed: int = 0

    @classmethod
    def from_params(cls, knobs: dict[str, Any]) -> "Knobs":
        """From ``{"admm.NAME": value or text}`` (checked by :func:`parse`)."""
        return cls(**{k[len(PREFIX):]: parse(k, v) for k, v in knobs.items()})

    @property
    def prunes(self) -> bool:
        return self.compression > 1

    def recipe(self):
        from cimsim.mappers.admm import ADMMRecipe

        given = {"admm_epochs": self.epochs, "retrain_epochs": self.epochs, "lr": self.lr,
                 "batch_size": self.batch_size}
        return ADMMRecipe(**{k: v for k, v in given.items() if v is not None})


def cache_dir() -> Path:
    """Where pruned networks are kept: ``$CIMSIM_HOME/checkpoints/admm`` (default ~/.cache/cimsim/...)."""
    from cimsim.workloads import train

    return train.user_dir() / "admm"


def cache_key(model: str, dataset: str, checkpoint_sha256: str, cfg, knobs: Knobs, device: str) -> dict[str, Any]:
    """Everything that determines a pruned network (and nothing that does not: no readout parameter)."""
    return {"format": CACHE_FORMAT, "model": model, "dataset": dataset, "base_checkpoint_sha256": checkpoint_sha256,
            "block_rows": cfg.block_rows, "block_outputs": cfg.block_outputs, "weight_bits": cfg.weight_bits,
            "compression": float(knobs.compression), "recipe": asdict(knobs.recipe()), "train_limit": knobs.limit,
            "seed": knobs.seed, "device": device}


def cache_path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = (f"{key['model']}-{key['dataset']}-admm-r{key['block_rows']}o{key['block_outputs']}w{key['weight_bits']}"
            f"-c{key['compression']:g}-{digest}.pt")
    return cache_dir() / name


@contextlib.contextmanager
def _locked(path: Path):
    """One process trains a cache entry at a time (an advisory lock beside it; others wait, then load it)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _load(path: Path, key: dict[str, Any]):
    """The cached network at ``path`` when it holds ``key`` (None when missing, unreadable or another key)."""
    from cimsim.workloads import train

    if not path.is_file():
        return None
    try:
        model, meta = train.load_checkpoint(path)
    except CheckpointError:
        return None   # a broken entry is trained again and replaced
    return (model, meta) if meta.get("admm_cache_key") == key else None


# pruned networks of this process, most recently used last (points that differ in readout parameters share them)
_MEMO: dict[str, tuple] = {}
MAX_MEMO = 4    # our bound on the networks held in memory
TRAINED: list[str] = []   # cache files this process trained (a timing-free record for tests and studies)


def pruned_network(base, meta: dict, data, spec, knobs: Knobs, *, checkpoint_sha256: str, device: str = "cpu",
                   test_limit: int | None = None, progress: bool | None = None):
    """The base network pruned by ADMM for the point (architecture ``spec``, ``knobs``): (model, record), from the
    cache or trained now (and cached). ``record`` is what the point's report keeps under ``config['admm']``:
    target and reached weight compression, per-layer compression, blocks, recipe, seed, the cache file and whether
    this call trained it (``trained``)."""
    from cimsim.blas import torch_one_thread
    from cimsim.mappers import admm
    from cimsim.workloads import train

    cfg = admm.ADMMConfig.from_arch(spec, knobs.compression)
    key = cache_key(meta["model"], data.name, checkpoint_sha256, cfg, knobs, device)
    path = cache_path(key)
    trained = False
    if str(path) in _MEMO:
        model, pmeta = _MEMO.pop(str(path))
    else:
        with _locked(path):
            hit = _load(path, key)
            if hit is None:
                with torch_one_thread() if device == "cpu" else contextlib.nullcontext():
                    net, info = admm.admm_prune(base, cfg, data, knobs.recipe(), seed=knobs.seed, limit=knobs.limit,
                                                test_limit=test_limit, device=device, progress=progress)
                out = {"model": meta["model"], "dataset": data.name, "input_shape": list(meta["input_shape"]),
                       "num_classes": meta["num_classes"], "base_test_accuracy": meta.get("test_accuracy"),
                       **info, "admm_cache_key": key}
                train.save_checkpoint(path, net, out)
                TRAINED.append(str(path))
                trained = True
                hit = _load(path, key)    # the saved network, so trained and cached points map the same weights
                if hit is None:
                    raise CheckpointError(f"the pruned network written to {path} does not read back; check the disk")
            model, pmeta = hit
    while len(_MEMO) >= MAX_MEMO:
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[str(path)] = (model, pmeta)
    record = {"target_compression": float(knobs.compression), "compression": pmeta["compression"],
              "layer_compression": {n: v["compression"] for n, v in pmeta["layers"].items()},
              "block_rows": cfg.block_rows, "block_outputs": cfg.block_outputs, "weight_bits": cfg.weight_bits,
              "recipe": pmeta["recipe"], "train_examples": pmeta["train_examples"], "seed": knobs.seed,
              "train_device": device, "float_test_accuracy": pmeta["test_accuracy"],
              "float_test_accuracy_before": pmeta["test_accuracy_before"], "test_examples": pmeta["test_examples"],
              "network": str(path), "trained": trained}
    return model, record


def dense_record(model, knobs: Knobs) -> dict[str, Any]:
    """The record of a point at compression 1 (the dense network, not trained): its own weight compression."""
    from torch import nn

    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    total = sum(m.weight.numel() for m in layers)
    kept = sum(int((m.weight != 0).sum()) for m in layers)
    return {"target_compression": float(knobs.compression), "compression": total / max(kept, 1), "trained": False,
            "network": "the dense network (compression 1: not pruned)"}


def knob_help() -> str:
    """One line per knob, for the command line's help."""
    return "; ".join(f"{PREFIX}{k}: {what}" for k, (_, what) in KNOBS.items())

