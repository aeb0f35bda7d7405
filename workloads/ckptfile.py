"""Reading a checkpoint file: what torch's safe loader finds in it (:func:`read_payload`), or one line saying what
the file is instead; why its contents could not be used (:func:`unreadable_detail`); and what a checkpoint of another
cimsim format is, where a trained network of 'cimsim train' was wanted (:func:`not_a_trained_network`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from cimsim.errors import CheckpointError

# the formats of cimsim's fine-tuned networks (mappers/qat.py, cimsim/networks.py): what each is, the architecture
# that runs it, and where it continues
_FINE_TUNES = {"cimsim.psq-checkpoint": ("a network fine-tuned for {arch}'s partial sums by 'cimsim finetune'", "hcim",
                                         "; 'cimsim finetune --init' continues its fine-tune"),
               "cimsim.sa-checkpoint": ("a spiking network fine-tuned for {arch}'s sense amps by 'cimsim finetune'",
                                        "adcless-snn", "")}


def not_a_trained_network(path: Path, payload) -> str:
    """The one-line error for a torch file at ``path`` whose ``payload`` is no trained network of 'cimsim train': the
    format it records, and the command and architecture that take it."""
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if fmt in _FINE_TUNES:
        what, arch, more = _FINE_TUNES[fmt]
        try:
            arch = str(json.loads(payload["metadata"]).get("arch") or arch)
        except Exception:   # the metadata is checked where the file is loaded: here it only names the architecture
            pass
        return (f"{path} records the format {fmt}: {what.format(arch=arch)}, not a trained network of 'cimsim train'; "
                f"map it with 'cimsim run --arch {arch} --checkpoint {path}'{more}, or give a .pt file written by "
                "'cimsim train'")
    if isinstance(fmt, str) and fmt:
        return (f"{path} records the format {fmt[:60]!r}, not cimsim.checkpoint (a trained network of 'cimsim "
                "train'); give a .pt file written by 'cimsim train'")
    return (f"{path} is a torch file but not a checkpoint of 'cimsim train' (it records no cimsim format); give a .pt "
            "file written by 'cimsim train'")


def unreadable_detail(exc: BaseException) -> str:
    """Why a checkpoint's contents could not be used, in one short line without Python's exception names."""
    import pickle

    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc).lower():
        return "it holds Python objects beyond tensors, which torch's safe loader (weights_only=True) refuses"
    if isinstance(exc, KeyError):
        return f"it has no entry {exc.args[0]!r}" if exc.args else "an entry is missing"
    text = " ".join(str(exc).split())[:160]
    return f"its contents do not match: {text}" if text else "its contents do not match"


def read_payload(path: str | os.PathLike, made_by: str = "'cimsim train'") -> dict:
    """What torch's safe loader reads from checkpoint ``path``, or one CheckpointError saying what the file is
    instead: missing, a folder, not a regular file, the .json beside a checkpoint, not a torch zip archive (what
    torch.save writes), truncated or otherwise damaged. ``made_by`` names the command that writes such files."""
    import pickle
    import zipfile

    path = Path(path)
    fix = f"give a .pt file written by {made_by}"
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file; {fix}")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; make one with {made_by} or fix the path")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a regular file (a device, pipe or socket); {fix}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read ({exc.strerror or 'read error'}); check its "
                              "permissions or give another file") from None
    if not zipfile.is_zipfile(path):
        if head == b"PK\x03\x04":
            raise CheckpointError(f"checkpoint {path} is damaged (truncated: the archive stops before its end); "
                                  f"re-create it with {made_by} or copy it again")
        if path.suffix == ".json" and path.with_suffix(".pt").is_file():
            raise CheckpointError(f"{path} is the metadata written beside a checkpoint, not the checkpoint; "
                                  f"give {path.with_suffix('.pt')}")
        raise CheckpointError(f"{path} is not a checkpoint (not a torch zip archive, which torch.save writes); {fix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # a zip archive torch cannot read: damaged inside, or pickled Python objects
        if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc).lower():
            raise CheckpointError(f"checkpoint {path} holds Python objects beyond tensors, which torch's safe loader "
                                  f"(weights_only=True) refuses; {fix}") from None
        raise CheckpointError(f"checkpoint {path} is damaged (torch cannot read its archive); re-create it with "
                              f"{made_by} or copy it again") from None
