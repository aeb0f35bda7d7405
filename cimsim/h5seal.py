"""A checksum that cimsim's HDF5 writers store in the file, checked before the HDF5 library reads it.

The HDF5 library is not written to read damaged files: a flipped bit in an object header or an attribute's
heap can crash the process inside ``H5Aread`` (a segfault, no exception to catch), which a one-line refusal
cannot follow. So the writer reserves HDF5's *user block* (the first :data:`SEAL_BYTES` bytes, which the
library skips: the file stays an ordinary HDF5 file for h5py, HDFView or h5dump) and, once the file is
complete, writes there the length and the SHA-256 of everything after it (:func:`seal`). A reader
(:func:`check`) compares both before it opens the file: any change of the bytes the writer wrote (a flipped
bit, a truncation, bytes appended or overwritten, in the data or in the seal) is refused in one line, and the
HDF5 library only ever reads files that are byte for byte what cimsim wrote.

Why a checksum and not opening the file first in a child process: the check is deterministic (a crash of the
library depends on heap layout and need not repeat in a child), costs a hash (about 1 ms a MB) instead of a
process start (0.2-0.5 s with h5py), and says what is wrong. Files without a seal (written by cimsim before it,
or by another program) have no checksum to compare: they are opened once in a child process first
(:func:`_probe`), and refused in one line when that crashes.

A verified file is remembered by (device, inode, size, modification time) for the life of the process, so a
sweep that appends point after point does not hash the file again at every append (issue 14, 8c: an append's
cost must not grow with the file).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from cimsim.errors import CimsimError

# the HDF5 user block reserved for the seal: 512 bytes, the smallest the format allows (a power of two >= 512)
SEAL_BYTES = 512
MAGIC = b"cimsim-seal 1 sha256 "
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CHUNK = 1 << 20
_verified: dict[tuple[int, int, int, int], bool] = {}


def create_options() -> dict:
    """The keyword arguments of ``h5py.File(path, "w", ...)`` that leave room for the seal."""
    return {"userblock_size": SEAL_BYTES}


def _digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        f.seek(SEAL_BYTES)
        while True:
            block = f.read(_CHUNK)
            if not block:
                break
            h.update(block)
            n += len(block)
    return n, h.hexdigest()


def _block(n: int, hexdigest: str) -> bytes:
    """The seal of ``n`` bytes of SHA-256 ``hexdigest``: ``MAGIC n hexdigest`` and a newline, zeros to SEAL_BYTES."""
    head = MAGIC + f"{n} {hexdigest}\n".encode()
    return head + bytes(SEAL_BYTES - len(head))


def _stat_key(path: Path) -> tuple[int, int, int, int]:
    s = os.stat(path)
    return s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns


def sealed(path: str | os.PathLike) -> bool:
    """Whether the file starts with a seal (it was written with :func:`create_options` and sealed)."""
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def seal(path: str | os.PathLike) -> None:
    """Write the seal of the complete HDF5 file ``path`` (created with :func:`create_options`) into its user block:
    ``MAGIC length sha256`` of the bytes after the block, then zeros."""
    path = Path(path)
    with open(path, "rb") as f:
        f.seek(SEAL_BYTES - len(HDF5_SIGNATURE))
        before = f.read(len(HDF5_SIGNATURE) * 2)
    if before[len(HDF5_SIGNATURE):] != HDF5_SIGNATURE:
        raise ValueError(f"{path} has no {SEAL_BYTES}-byte user block to hold a seal (create it with "
                         "h5seal.create_options())")
    block = _block(*_digest(path))
    with open(path, "r+b") as f:
        f.write(block)
    _verified[_stat_key(path)] = True


def check(path: str | os.PathLike, error: type[CimsimError], what: str, fix: str) -> None:
    """Refuse ``path`` in one line (raise ``error``: '{path} is not a readable {what} (why); {fix}') unless the HDF5
    library can safely read it: its seal matches its bytes, or, without a seal, opening it in a child process did not
    crash. A missing file is left to the reader's own message."""
    path = Path(path)
    try:
        key = _stat_key(path)
        if key in _verified:
            return
        with open(path, "rb") as f:
            head = f.read(SEAL_BYTES + len(HDF5_SIGNATURE))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise error(f"{path} is not a readable {what} ({type(exc).__name__}: {exc.strerror}); {fix}") from None
    if head.startswith(MAGIC):
        if head[:SEAL_BYTES] != _block(*_digest(path)):   # the whole block: length, digest and zero padding
            raise error(f"{path} is not a readable {what} (damaged: its bytes do not match the checksum cimsim "
                        f"wrote into it); {fix}")
    elif head[SEAL_BYTES:] != HDF5_SIGNATURE:
        _probe(path, error, what, fix)   # no seal: written before seals, by another program, or not HDF5 at all
    else:
        raise error(f"{path} is not a readable {what} (its first {SEAL_BYTES} bytes are not the checksum cimsim "
                    f"writes there: damaged, or not written by cimsim); {fix}")
    _verified[key] = True


# read everything an HDF5 reader may touch: every object, its attributes, every dataset's values
_PROBE = """
import sys, h5py
def visit(name, obj):
    for k in obj.attrs.keys():
        try:
            obj.attrs[k]
        except Exception:
            pass
    if isinstance(obj, h5py.Dataset):
        obj[()]
try:
    with h5py.File(sys.argv[1], "r") as f:
        visit("", f)
        f.visititems(visit)
except Exception:
    pass
"""


def _probe(path: Path, error: type[CimsimError], what: str, fix: str) -> None:
    """Open the unsealed file ``path`` in a child process first; refuse it when that crashes (an exception there
    is left to the reader in this process, which turns it into its own one-line message)."""
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, str(path)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    except subprocess.TimeoutExpired:
        raise error(f"{path} is not a readable {what} (reading it did not finish in 120 s); {fix}") from None
    if done.returncode < 0:
        raise error(f"{path} is not a readable {what} (damaged: reading it crashed the HDF5 library, signal "
                    f"{-done.returncode}); {fix}")
