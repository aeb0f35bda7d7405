"""How ``cimsim train`` and ``cimsim finetune`` save a checkpoint: the --out checked before any work (never
another kind of file, nor a NAME.json that is not a checkpoint's metadata, never an input, the checkpoint a fine-tune
finds by model and dataset included), the summary shown before the file is written, and an earlier checkpoint at the
default path kept as ``NAME.prev.pt`` rather than lost."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable

from cimsim import outkind
from cimsim.cli.common import checkpoint_output, model_to_check, show_then_write
from cimsim.errors import CimsimError, warn_user
from cimsim.fileio import TMP_SUFFIX

PREV = ".prev"   # the earlier checkpoint at a default path: NAME.prev.pt and NAME.prev.json


def found_checkpoint(args) -> Path | None:
    """The trained network a fine-tune reads where no --checkpoint is given (found by model and dataset, as
    :func:`cimsim.networks.load_model_and_data` finds it); None where --checkpoint is given or none is found (the
    fine-tune then says so)."""
    if getattr(args, "checkpoint", None):
        return None
    from cimsim.workloads import train

    with warnings.catch_warnings():   # a shadowing checkpoint is announced once, when it is loaded
        warnings.simplefilter("ignore")
        try:
            return train.find_checkpoint(model_to_check(args), args.dataset)
        except CimsimError:
            return None


def checkpoint_out(args, option: str = "--out", reads_found: bool = False) -> Path | None:
    """``args.out`` checked before any work: a place that takes a file, and no file there but a checkpoint that is
    none of the command's inputs (--checkpoint, --init, and with ``reads_found`` the trained network found by model
    and dataset where --checkpoint is left out); beside it no NAME.json but a checkpoint's metadata."""
    out = checkpoint_output(args.out, option)
    if out is None:
        return None
    inputs = [(o, getattr(args, a, None)) for o, a in (("--checkpoint", "checkpoint"), ("--init", "init"))]
    found = found_checkpoint(args) if reads_found else None
    if found is not None:
        inputs.append((f"the trained network this fine-tune starts from (found for {args.model} on {args.dataset} "
                       "without --checkpoint)", found))
    outkind.refuse_replacing(out, outkind.CHECKPOINT, option, inputs=inputs)
    outkind.refuse_replacing_metadata(out.with_suffix(".json"), option)
    return out


def previous_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}{PREV}{path.suffix}")


def _stage(src: Path) -> Path:
    """A hidden copy of ``src`` beside it (a hard link where the file system has them: no space, and it stays the
    earlier file when ``src`` is atomically replaced); OSError where none can be made."""
    fd, tmp = tempfile.mkstemp(dir=src.parent, prefix=f".{src.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        os.unlink(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def _discard(*tmps: Path | None) -> None:
    for tmp in tmps:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _not_kept(path: Path, prev: Path, why: str) -> None:
    warn_user(f"the earlier checkpoint {path.name} could not be kept as {prev.name} ({why}); the new one replaced it")


def save_keeping_previous(path: Path, save: Callable[[Path], Path]) -> tuple[Path, Path | None]:
    """``save(path)``, the checkpoint it replaces kept as NAME.prev.pt (its NAME.json as NAME.prev.json; an older
    NAME.prev.json is removed where it had none). The earlier files are set aside first and become NAME.prev.* only
    once the new checkpoint is written, so a save that fails (a diverged run, a full disk) leaves NAME.prev.* as
    they were. Keeping is best-effort: where it fails, a one-line warning, and the new checkpoint is saved anyway.
    Returns (the saved path, the kept path or None)."""
    prev, meta = previous_path(path), path.with_suffix(".json")
    staged = staged_meta = before = None
    if path.is_file() and os.path.lexists(prev) and not prev.is_file():
        _not_kept(path, prev, "it is a folder" if prev.is_dir() else "it is not a regular file")
    elif path.is_file():
        try:
            before = os.stat(path)
            staged = _stage(path)
            staged_meta = _stage(meta) if meta.is_file() else None
        except OSError as exc:
            _discard(staged)
            staged = staged_meta = None
            _not_kept(path, prev, _reason(exc))
    try:
        saved = save(path)
    except BaseException:
        if staged is not None and not _same_inode(path, before):
            _commit(path, staged, staged_meta)   # the new checkpoint replaced the earlier one, then its .json failed
        else:
            _discard(staged, staged_meta)
        raise
    return saved, _commit(path, staged, staged_meta) if staged is not None else None


def _same_inode(path: Path, st: os.stat_result) -> bool:
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _commit(path: Path, staged: Path, staged_meta: Path | None) -> Path | None:
    """The set-aside earlier checkpoint becomes NAME.prev.pt (its metadata NAME.prev.json, or an older one is
    removed); the kept path, or None (with a warning) where it could not be."""
    prev = previous_path(path)
    prev_meta = prev.with_suffix(".json")
    try:
        os.replace(staged, prev)
    except OSError as exc:
        _discard(staged, staged_meta)
        _not_kept(path, prev, _reason(exc))
        return None
    try:
        if staged_meta is not None:
            os.replace(staged_meta, prev_meta)
        elif os.path.lexists(prev_meta):
            os.unlink(prev_meta)   # an older NAME.prev.json would no longer match NAME.prev.pt
    except OSError as exc:
        _discard(staged_meta)
        with contextlib.suppress(OSError):
            os.unlink(prev_meta)
        warn_user(f"the earlier checkpoint's metadata {path.with_suffix('.json').name} could not be kept as "
                  f"{prev_meta.name} ({_reason(exc)}); {prev.name} is kept without it")
    return prev


def save_after_summary(command: str, as_json: bool, show: Callable[[], None], save: Callable[[Path], Path],
                       path: Path, default: bool, note: Callable[[Path], str] | None = None) -> None:
    """Show the summary (``show``), then save the checkpoint (``save(path)``) and say where, on stdout (stderr
    with --json): a save that fails is one line after the summary, which is not lost. At a ``default`` path an
    earlier checkpoint is kept as NAME.prev.pt (:func:`save_keeping_previous`); at a path the user named it is
    replaced, and the line says so."""
    def write() -> None:
        earlier = path.is_file()
        saved, kept = save_keeping_previous(path, save) if default else (save(path), None)
        line = f"checkpoint saved to {saved}"
        if kept is not None:
            line += f" (the earlier checkpoint there is kept as {kept.name})"
        elif earlier:
            line += " (it replaced the earlier checkpoint there)"
        if note is not None:
            line += f"; {note(saved)}"
        print(f"cimsim {command}: {line}" if as_json else line, file=sys.stderr if as_json else sys.stdout)

    show_then_write(show, write)
