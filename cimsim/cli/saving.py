"""How ``cimsim train`` and ``cimsim finetune`` save a checkpoint: the --out checked before any work (never
another kind of file, never an input), the summary shown before the file is written, and an earlier checkpoint
at the default path kept as ``NAME.prev.pt`` rather than lost."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from cimsim import outkind
from cimsim.cli.common import checkpoint_output, show_then_write
from cimsim.fileio import TMP_SUFFIX, output_failed

PREV = ".prev"   # the earlier checkpoint at a default path: NAME.prev.pt and NAME.prev.json


def checkpoint_out(args, option: str = "--out") -> Path | None:
    """``args.out`` checked before any work: a place that takes a file, and no file there but a checkpoint that is
    none of the command's inputs (--checkpoint, --init)."""
    out = checkpoint_output(args.out, option)
    outkind.refuse_replacing(out, outkind.CHECKPOINT, option,
                             inputs=[(o, getattr(args, a, None)) for o, a in (("--checkpoint", "checkpoint"),
                                                                             ("--init", "init"))])
    return out


def previous_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}{PREV}{path.suffix}")


def _keep(src: Path, dst: Path) -> None:
    """``dst`` becomes a copy of ``src`` (a hard link where the file system has them: no space, and atomic)."""
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        os.unlink(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise output_failed(dst, exc) from None


def keep_previous(path: Path) -> Path | None:
    """Keep the checkpoint at ``path`` (and its .json) as NAME.prev.pt (.prev.json) before it is replaced; the
    path kept, or None where there was none."""
    if not path.is_file():
        return None
    prev = previous_path(path)
    _keep(path, prev)
    meta = path.with_suffix(".json")
    if meta.is_file():
        _keep(meta, prev.with_suffix(".json"))
    return prev


def save_after_summary(command: str, as_json: bool, show: Callable[[], None], save: Callable[[Path], Path],
                       path: Path, default: bool, note: Callable[[Path], str] | None = None) -> None:
    """Show the summary (``show``), then save the checkpoint (``save(path)``) and say where, on stdout (stderr
    with --json): a save that fails is one line after the summary, which is not lost. At a ``default`` path an
    earlier checkpoint is kept as NAME.prev.pt; at a path the user named it is replaced, and the line says so."""
    def write() -> None:
        earlier = path.is_file()
        kept = keep_previous(path) if default else None
        saved = save(path)
        line = f"checkpoint saved to {saved}"
        if kept is not None:
            line += f" (the earlier checkpoint there is kept as {kept.name})"
        elif earlier:
            line += " (it replaced the earlier checkpoint there)"
        if note is not None:
            line += f"; {note(saved)}"
        print(f"cimsim {command}: {line}" if as_json else line, file=sys.stderr if as_json else sys.stdout)

    show_then_write(show, write)
