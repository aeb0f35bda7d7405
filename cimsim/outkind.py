"""What an existing output path holds, so that a command replaces only a file of the kind it writes.

``cimsim sweep --out`` adds points only to a sweep file (:func:`cimsim.sweepfile.read_settings` refuses a report,
a checkpoint or a foreign file). :func:`refuse_replacing` gives every other command that writes a file the same
rule before any work: an existing ``--out`` is replaced only by a result of its own kind (a report by a report, a
checkpoint by a checkpoint), never when it is another kind of file (a sweep file, a checkpoint, a file that is not
cimsim's) or one of the command's own inputs.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Iterable

from cimsim import h5seal
from cimsim.errors import CimsimError, ConfigError

REPORT, SWEEP, ONCHIP, CHECKPOINT = "cimsim.report", "cimsim.sweep", "cimsim.onchip", "cimsim.checkpoint"
KIND_NAMES = {REPORT: "a cimsim report ('cimsim run --out')", SWEEP: "a cimsim sweep file ('cimsim sweep --out')",
              ONCHIP: "an on-chip learning run ('cimsim onchip --out')",
              CHECKPOINT: "a cimsim checkpoint ('cimsim train' or 'cimsim finetune')"}
_ZIP = b"PK\x03\x04"
_NOUNS = {REPORT: "report", SWEEP: "sweep", ONCHIP: "run", CHECKPOINT: "checkpoint"}


class _Unreadable(CimsimError):
    pass


def _hdf5_format(path: Path) -> str:
    """The root attribute ``format`` of an HDF5 file ('' when it has none)."""
    import h5py

    h5seal.check(path, _Unreadable, "HDF5 file", "")   # a damaged file never reaches the HDF5 library
    with h5py.File(path, "r") as f:
        return str(f.attrs.get("format", ""))


# the payload formats of cimsim's checkpoints: trained networks (workloads/train.py), PSQ fine-tunes
# (mappers/qat.py), sense-amp fine-tunes (cimsim/networks.py)
_CHECKPOINT_FORMATS = re.compile(rb"cimsim\.(?:psq-|sa-)?checkpoint")


def _checkpoint_format(path: Path) -> str:
    """'cimsim.checkpoint' for a file torch.save wrote from any cimsim checkpoint's payload (a trained network or a
    PSQ or sense-amp fine-tune: its pickle names the format; read without torch), else ''."""
    with zipfile.ZipFile(path) as z:
        pickles = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        return CHECKPOINT if pickles and _CHECKPOINT_FORMATS.search(z.read(pickles[0])) else ""


def file_kind(path: str | os.PathLike) -> str | None:
    """The kind of the file at ``path``: None where there is none (or it is empty: nothing to lose), one of
    :data:`KIND_NAMES`' keys for cimsim's files, else a phrase saying what it is ('a file that is not cimsim's')."""
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return None
        with open(path, "rb") as f:
            head = f.read(h5seal.SEAL_BYTES + len(h5seal.HDF5_SIGNATURE))
    except OSError:
        return None   # what cannot be read here is refused by the output check or the write itself
    try:
        if head.startswith((h5seal.MAGIC, h5seal.HDF5_SIGNATURE)):
            fmt = _hdf5_format(path)
            return fmt if fmt in KIND_NAMES else f"an HDF5 file that is not cimsim's (format {fmt or 'missing'})"
        if head.startswith(_ZIP):
            return _checkpoint_format(path) or "a zip file that is not a cimsim checkpoint"
    except (_Unreadable, OSError, KeyError, ValueError, RuntimeError, zipfile.BadZipFile):
        return "a damaged or unreadable file"
    return "a file that is not cimsim's"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_replacing(out: Path | None, kind: str, option: str = "--out",
                     inputs: Iterable[tuple[str, str | os.PathLike | None]] = ()) -> None:
    """ConfigError (one line) when ``out`` exists and is one of ``inputs`` ((option, path) pairs; an input no option
    names is a phrase saying what it is instead) or a file of another kind than ``kind``; a file of the same kind may
    be replaced. Call it before any work. An ``option`` without a leading '-' (e.g. 'path', for the Python API)
    words the refusal without command-line terms."""
    if out is None:
        return
    for name, given in inputs:
        if given is not None and _same_file(Path(given), out):
            what = f"the file given as {name}" if name.startswith("-") else name
            raise ConfigError(f"{option} {out} is {what}, an input of this command; "
                              f"writing it would destroy the input: choose another {option}")
    found = file_kind(out)
    if found is None or found == kind:
        return
    what = KIND_NAMES.get(found, found)
    if not option.startswith("-"):   # the Python API (option 'path'): no command-line terms
        what = what.split(" ('")[0]
        raise ConfigError(f"{option} {out} is {what}; it is kept as it is: write the {_NOUNS[kind]} elsewhere "
                          "(or remove the file)")
    raise ConfigError(f"{option} {out} is {what}, not {KIND_NAMES[kind].split(' (')[0]}; it is kept as it is: "
                      f"choose another {option} (or remove the file to replace it)")


_METADATA_MAX_BYTES = 64 << 20


def is_checkpoint_metadata(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds the metadata a cimsim checkpoint's save writes beside it as NAME.json (the metadata
    dict of 'cimsim train' or 'cimsim finetune' as JSON): an object with the network's model, dataset, input_shape
    and num_classes and the cimsim command that made it."""
    import json

    try:
        if Path(path).stat().st_size > _METADATA_MAX_BYTES:
            return False
        meta = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return False
    return (isinstance(meta, dict) and isinstance(meta.get("model"), str) and isinstance(meta.get("dataset"), str)
            and isinstance(meta.get("input_shape"), list) and isinstance(meta.get("num_classes"), int)
            and isinstance(meta.get("command"), str) and meta["command"].startswith("cimsim "))


def refuse_replacing_metadata(meta: Path, option: str = "--out") -> None:
    """ConfigError (one line) when ``meta``, the NAME.json a checkpoint's save writes beside NAME.pt, exists and is
    not a cimsim checkpoint's metadata (which may be replaced along with its checkpoint). Call it before any work."""
    if file_kind(meta) is None or is_checkpoint_metadata(meta):
        return
    found = file_kind(meta)
    what = KIND_NAMES.get(found, found).replace("a file that is not cimsim's", "a file that is not a cimsim "
                                                 "checkpoint's metadata")
    raise ConfigError(f"{option} writes its metadata to {meta}, which is {what}; it is kept as it is: choose another "
                      f"{option} (or remove {meta.name} to replace it)")
