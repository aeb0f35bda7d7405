"""Where the offline datasets' files are, and the IDX files read ahead (no torch, no numpy: the CLI imports this
before the heavy modules).

:mod:`cimsim.workloads.datasets` loads the sets; the search order of their folders (the ``data_dir`` argument,
``$CIMSIM_DATA``, ``/usr/share/datasets``, each with or without a folder named after the set) and the IDX file names
are defined here, once, for it and for :func:`read_ahead`.

:func:`read_ahead` starts one thread that reads (and un-gzips) an MNIST-style set's four IDX files while the
process imports torch and numba: those imports hold the interpreter for seconds on one core, while zlib
decompresses without it (the README job on the 2-core AMD EPYC, 2026-12-03: Fashion-MNIST's 26 MB of gzip, about
0.3 s of CPU, off the serial path). :func:`take` hands :func:`cimsim.workloads.datasets.read_idx` the same bytes it
would read itself, only when the file is the one read ahead (same real path, size and modification time), else
None; any error in the thread is dropped (the reader then reads the file itself and reports it).
"""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path

ENV_VAR = "CIMSIM_DATA"
SYSTEM_ROOT = Path("/usr/share/datasets")

IDX_STEMS = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
# the MNIST-style sets and the folder names each may sit in
IDX_FOLDERS = {"fashion-mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST"), "mnist": ("mnist", "MNIST")}
IDX_MAX_BYTES = 4 << 30   # 4 GiB: 60 000 images of 28x28 take 47 MB; anything near this is not an MNIST set


# the sets that take no files (generated, or bundled with scikit-learn): a --data-dir given for one is a mistake
NO_FILES = {"iris": "ships with scikit-learn", "digits": "ships with scikit-learn", "synthetic": "is generated",
            "gesture-synth": "is generated", "flow-synth": "is generated"}


def check_data_dir(dataset: str, data_dir: str | os.PathLike | None) -> None:
    """Refuse (DatasetError, one line) a ``data_dir`` given for a set that takes no files, or that is no folder."""
    if data_dir is None:
        return
    from cimsim.errors import DatasetError   # no torch, no numpy

    if dataset in NO_FILES:
        raise DatasetError(f"--data-dir {data_dir}: {dataset} {NO_FILES[dataset]} and needs no files; "
                           "leave --data-dir out")
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise DatasetError(f"--data-dir {data_dir} does not exist; give the folder that holds the {dataset} files")
    if not path.is_dir():
        raise DatasetError(f"--data-dir {data_dir} is not a folder; give the folder that holds the {dataset} files, "
                           "not a file")


def candidate_dirs(data_dir: str | os.PathLike | None, folder_names: tuple[str, ...], env_var: str = ENV_VAR,
                   system_root: Path = SYSTEM_ROOT) -> list[Path]:
    """The folders searched for a set, in order (``env_var``, ``system_root``: as the datasets module holds them).
    A ``data_dir`` given is the only place searched: the folder a user named is never replaced by another."""
    roots: list[Path] = []
    if data_dir is not None:
        roots.append(Path(data_dir).expanduser())
    else:
        env = os.environ.get(env_var)
        if env:
            roots.append(Path(env).expanduser())
        roots.append(Path(system_root))
    dirs: list[Path] = []
    for root in roots:
        dirs.append(root)
        dirs.extend(root / f for f in folder_names)
    return dirs


def idx_path(d: Path, key: str) -> Path | None:
    """The IDX file of ``key`` (see :data:`IDX_STEMS`) in folder ``d``, plain or gzipped, or None."""
    for stem in IDX_STEMS[key]:
        for suffix in ("", ".gz"):
            p = d / (stem + suffix)
            if p.is_file():
                return p
    return None


def idx_dir(data_dir, folder_names: tuple[str, ...]) -> Path | None:
    """The first searched folder that holds all four IDX files, or None."""
    for d in candidate_dirs(data_dir, folder_names):
        if d.is_dir() and all(idx_path(d, k) is not None for k in IDX_STEMS):
            return d
    return None


def read_raw(path: Path) -> bytes:
    """At most :data:`IDX_MAX_BYTES` + 1 bytes of an IDX file, un-gzipped when its name ends in .gz."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return f.read(IDX_MAX_BYTES + 1)


_AHEAD: dict[tuple, dict] = {}   # (real path, size, mtime) -> {"raw": bytes} once read
_THREAD: threading.Thread | None = None


def _key(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns)


def _read_all(jobs: list[tuple[Path, dict]]) -> None:
    for path, box in jobs:
        try:
            box["raw"] = read_raw(path)
        except Exception:   # noqa: BLE001 - the reader reads the file again and reports what is wrong
            pass


def read_ahead(dataset: str, data_dir=None) -> bool:
    """Start reading the IDX files of ``dataset`` (a name of :data:`IDX_FOLDERS`; others are ignored) in a thread;
    True when it started."""
    global _THREAD
    folders = IDX_FOLDERS.get(dataset)
    d = idx_dir(data_dir, folders) if folders else None
    if d is None or _THREAD is not None:
        return False
    jobs = []
    for k in ("train_images", "test_images", "train_labels", "test_labels"):
        path = idx_path(d, k)
        key = _key(path)
        if key is not None:
            jobs.append((path, _AHEAD.setdefault(key, {})))
    _THREAD = threading.Thread(target=_read_all, args=(jobs,), name="cimsim-read-ahead", daemon=True)
    _THREAD.start()
    return True


def take(path: Path) -> bytes | None:
    """The bytes :func:`read_raw` gives for ``path`` when it was read ahead (waiting for the thread), else None; each
    read-ahead file is handed out once."""
    if not _AHEAD:
        return None
    key = _key(path)
    box = _AHEAD.get(key) if key is not None else None
    if box is None:
        return None
    if _THREAD is not None:
        _THREAD.join()
    _AHEAD.pop(key, None)
    return box.get("raw")


def forget() -> None:
    """Drop whatever was read ahead and not taken (after the data loaded)."""
    global _THREAD
    if _THREAD is not None:
        _THREAD.join()
        _THREAD = None
    _AHEAD.clear()
