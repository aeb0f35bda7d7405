"""The sweep results file: one HDF5 file, one group per finished design point, appended atomically.

Layout (``format`` = ``cimsim.sweep``, ``format_version`` = 1)::

    /                              attrs: format, format_version, description, created, cimsim_version,
                                          settings_json (the fixed settings, compared on resume) and a
                                          readable copy of each setting as ``setting_<name>``
    /<point key>                   one finished point (:attr:`Point.key`: ``isaac_adc6_seed0`` when only ADC
                                   bits are swept, ``digital_adcnone_seed0`` when nothing is,
                                   ``isaac__adc.bits=6__rows=64_seed0`` otherwise): a full cimsim report
                                   (:meth:`cimsim.report.Report.write_hdf5_group`) plus the point's
                                   attrs ``point_arch``, ``point_adc_bits`` (absent when none),
                                   ``point_params_json`` (the swept parameters), ``point_seed``,
                                   ``point_json`` and ``point_arch_params_json``

Every file (the sweep file and each journal file) carries a checksum of its bytes in its first 512 bytes, HDF5's
user block, and is read only when they match it (:mod:`cimsim.h5seal`): a damaged file is refused in one line,
never handed to the HDF5 library, which can crash on one. Files written before seals are opened in a child process
first.

Appending a point costs the same whatever the file holds: the point is written to a small file of its own
in the sweep's journal, a hidden folder beside it (``.NAME.points/``), through a temporary file that is
flushed to disk and renamed into place (:func:`cimsim.fileio.atomic_output`). From time to time (when the
journal holds as many points as the file, and at least :data:`FOLD_MIN`) and when the sweep ends, the journal
is folded into the file: one copy of the file with every journaled point added, flushed and renamed over the
original, then the journal files are removed. The copies a sweep makes therefore add up to about twice the
final file, not to the square of its points. A crash or ``kill -9`` at any moment leaves the file (old or
new, never half-written) and whole journal files: only the point being written is lost. Readers here
(:func:`finished_keys`, :func:`read_points`) see the file and its journal together; a fold that a kill cut
short between the rename and the clean-up is finished on resume (a point already in the file is not added
twice).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cimsim import h5seal
from cimsim._version import __version__
from cimsim.errors import CimsimError
from cimsim.fileio import CORRUPT_FILE_ERRORS, TMP_SUFFIX, atomic_output, reading
from cimsim.report import Report, json_default

FORMAT = "cimsim.sweep"
FORMAT_VERSION = 1
JOURNAL_SUFFIX = ".points"   # the journal of NAME is the folder .NAME.points beside it
FOLD_MIN = 64                # fold when the journal holds max(FOLD_MIN, points in the file) points (amortised O(1))


class SweepFileError(CimsimError):
    """A sweep file is missing, unreadable, or holds results of other settings."""


ADC_BITS = "adc.bits"   # the swept parameter of the original sweep files (keys isaac_adc6_seed0)


def format_value(v: Any) -> str:
    """A parameter value as it appears in a point's key: ints and strings as they are, floats in their shortest
    round-trip form (0.01, 1e-05)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v).replace("/", "_")


@dataclass(frozen=True)
class Point:
    """One design point: an architecture, the values of its swept parameters (dotted paths, kept sorted) and a
    seed. ``params`` may be given as a dict, as (path, value) pairs, or, as in the first sweep files, as the ADC
    bits alone (an int, or None for none): ``Point("isaac", 6, 0)`` is ``Point("isaac", {"adc.bits": 6}, 0)``."""

    arch: str
    params: tuple[tuple[str, Any], ...] = ()
    seed: int = 0

    def __post_init__(self):
        p = self.params
        if p is None:
            p = ()
        elif isinstance(p, bool) or not isinstance(p, (tuple, list, dict)):
            p = ((ADC_BITS, int(p)),)
        elif isinstance(p, dict):
            p = tuple(p.items())
        object.__setattr__(self, "params", tuple(sorted((str(k), v) for k, v in p)))
        object.__setattr__(self, "seed", int(self.seed))

    @classmethod
    def make(cls, arch: str, params: dict[str, Any] | None = None, seed: int = 0) -> "Point":
        return cls(arch, params or {}, seed)

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def adc_bits(self) -> int | None:
        """The ADC resolution of the point, when it is swept (None otherwise)."""
        return self.param_dict.get(ADC_BITS)

    @property
    def key(self) -> str:
        """The point's group name in a sweep file: ``isaac_adc6_seed0`` when only ADC bits are swept (and
        ``digital_adcnone_seed0`` when nothing is: the first sweep files' names), else
        ``isaac__adc.bits=6__rows=64_seed0``."""
        names = [k for k, _ in self.params]
        if names in ([], [ADC_BITS]):
            return f"{self.arch}_adc{'none' if self.adc_bits is None else self.adc_bits}_seed{self.seed}"
        return f"{self.arch}__" + "__".join(f"{k}={format_value(v)}" for k, v in self.params) + f"_seed{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "params": dict(self.params), "adc_bits": self.adc_bits, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict) -> "Point":
        """Also reads the first format, ``{"arch", "adc_bits", "seed"}``."""
        params = dict(d.get("params") or {})
        if "params" not in d and d.get("adc_bits") is not None:
            params[ADC_BITS] = int(d["adc_bits"])
        return cls.make(str(d["arch"]), params, int(d["seed"]))

    def sort_key(self):
        return (self.arch, tuple((k, (0, v) if isinstance(v, (int, float)) else (1, str(v))) for k, v in self.params),
                self.seed)


# --------------------------------------------------------------------------------------------------
# reading

# What to do about an --out that cannot be read as a sweep file: it may be the user's own file of another kind,
# so the first advice is another name; removing it is for a sweep file of cimsim's that was damaged.
DAMAGED_FIX = "give another --out (if a sweep wrote it and it is damaged, remove it to start the sweep again)"


def _check_format(f, path: Path) -> None:
    fmt = f.attrs.get("format")
    if fmt != FORMAT:
        raise SweepFileError(f"{path} is not a cimsim sweep file (format {fmt or 'missing'}); "
                             "give another --out: a sweep adds points only to a file it wrote")
    version = int(f.attrs.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise SweepFileError(f"{path} was written by a newer cimsim (sweep format {version}); upgrade cimsim")


def read_settings(path: str | os.PathLike) -> dict[str, Any] | None:
    """The fixed settings stored in the sweep file at ``path``; None when the file does not exist."""
    import h5py

    path = Path(path)
    if not path.exists():
        return None
    try:
        h5seal.check(path, SweepFileError, "cimsim sweep file", DAMAGED_FIX)
        with h5py.File(path, "r") as f:
            _check_format(f, path)
            settings = json.loads(f.attrs["settings_json"])
        if not isinstance(settings, dict):
            raise ValueError(f"settings_json holds a {type(settings).__name__}, not an object")
        return settings
    except SweepFileError:
        raise
    except CORRUPT_FILE_ERRORS as exc:
        raise SweepFileError(f"{path} is not a readable cimsim sweep file ({type(exc).__name__}: {exc}); "
                             + DAMAGED_FIX) from None


def finished_keys(path: str | os.PathLike) -> set[str]:
    """Group names of the points already finished: in the file and in its journal (empty when neither exists)."""
    import h5py

    path = Path(path)
    keys: set[str] = set()
    if path.exists():
        with reading(path, SweepFileError, "cimsim sweep file", DAMAGED_FIX):
            h5seal.check(path, SweepFileError, "cimsim sweep file", DAMAGED_FIX)
            with h5py.File(path, "r") as f:
                _check_format(f, path)
                keys = {k for k in f.keys() if isinstance(f[k], h5py.Group) and "point_json" in f[k].attrs}
    return keys | set(_journal_keys(path))


def read_points(path: str | os.PathLike, keys=None) -> dict[Point, Report]:
    """Every finished point of the sweep file (or only those named by ``keys``), with its report: the file's and
    its journal's."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise SweepFileError(f"{path} does not exist; give a file written by 'cimsim sweep --out'")
    out: dict[Point, Report] = {}
    try:
        h5seal.check(path, SweepFileError, "cimsim sweep file", "give another file or write it again")
        with h5py.File(path, "r") as f:
            _check_format(f, path)
            _read_groups(f, path, keys, out)
    except CimsimError:
        raise
    except CORRUPT_FILE_ERRORS as exc:
        raise SweepFileError(f"{path} is not a readable cimsim sweep file ({type(exc).__name__}: {exc})") from None
    for jf, jkeys in _journal_files(path).items():
        if all(k in {p.key for p in out} or (keys is not None and k not in keys) for k in jkeys):
            continue
        try:
            with reading(jf, SweepFileError, f"journal file of {path}", "remove it to run its point again"):
                h5seal.check(jf, SweepFileError, f"journal file of {path}", "remove it to run its point again")
                with h5py.File(jf, "r") as f:
                    _read_groups(f, jf, keys, out)
        except SweepFileError:
            if jf.exists():
                raise
            return read_points(path, keys)   # a fold moved the journal into the file meanwhile: read it again
    return dict(sorted(out.items(), key=lambda kv: kv[0].sort_key()))


def _read_groups(f, where: Path, keys, out: dict) -> None:
    """Add the finished points of the open file ``f`` to ``out`` (those named by ``keys``; a point already in
    ``out`` is kept as it is)."""
    have = {p.key for p in out}
    for k in sorted(f.keys()):
        g = f[k]
        if "point_json" not in g.attrs or (keys is not None and k not in keys) or k in have:
            continue
        point = Point.from_dict(json.loads(g.attrs["point_json"]))
        out[point] = Report.read_hdf5_group(g, where=f"{where}:{k}")


# --------------------------------------------------------------------------------------------------
# the journal

def journal_dir(path: str | os.PathLike) -> Path:
    """The hidden folder beside the sweep file where finished points wait to be folded into it."""
    path = Path(path)
    return path.parent / f".{path.name}{JOURNAL_SUFFIX}"


def _journal_name(key: str) -> str:
    # point keys may be long or hold any character a swept string value has: the file is named by a hash
    return hashlib.sha256(key.encode()).hexdigest()[:32] + ".h5"


def _journal_files(path: Path) -> dict[Path, list[str]]:
    """Each journal file of the sweep file ``path`` with the point keys it holds (one each)."""
    import h5py

    d = journal_dir(path)
    if not d.is_dir():
        return {}
    out = {}
    for jf in sorted(d.glob("*.h5")):
        try:
            with reading(jf, SweepFileError, f"journal file of {path}", "remove it to run its point again"):
                h5seal.check(jf, SweepFileError, f"journal file of {path}", "remove it to run its point again")
                with h5py.File(jf, "r") as f:
                    out[jf] = [k for k in f.keys() if "point_json" in f[k].attrs]
        except SweepFileError:
            if jf.exists():
                raise
            # folded into the file and removed by the sweep writing it, meanwhile: the file holds the point
    return out


def _journal_keys(path: Path) -> list[str]:
    return [k for keys in _journal_files(path).values() for k in keys]


def journal_size(path: str | os.PathLike) -> int:
    """Points waiting in the journal of the sweep file ``path``."""
    d = journal_dir(path)
    return len(list(d.glob("*.h5"))) if d.is_dir() else 0


def clean_journal(path: str | os.PathLike, *, drop_points: bool = False) -> None:
    """Remove what a killed write left in the journal (temporaries); with ``drop_points``, the journaled points
    too (they belonged to a sweep file that no longer exists). Call it only while holding the sweep's lock."""
    d = journal_dir(path)
    if not d.is_dir():
        return
    for q in d.iterdir():
        if q.name.endswith(TMP_SUFFIX) or (drop_points and q.suffix == ".h5"):
            with contextlib.suppress(OSError):
                q.unlink()
    with contextlib.suppress(OSError):
        d.rmdir()   # only when empty


# --------------------------------------------------------------------------------------------------
# writing

def _write_root(f, settings: dict[str, Any]) -> None:
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["description"] = ("cimsim design-point sweep: one group per finished point (architecture, swept "
                              "parameter values, seed), each a full cimsim report; root attrs hold the fixed "
                              "settings")
    f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    f.attrs["cimsim_version"] = __version__
    f.attrs["settings_json"] = json.dumps(settings, sort_keys=True, default=json_default)
    for k, v in settings.items():
        if v is None:
            v = "None"
        elif isinstance(v, (dict, list, tuple)):
            v = json.dumps(v, sort_keys=True, default=json_default)
        f.attrs[f"setting_{k}"] = v


def create(path: str | os.PathLike, settings: dict[str, Any]) -> Path:
    """Start an empty sweep file holding ``settings`` (atomically; refuses to replace an existing file)."""
    import h5py

    path = Path(path)
    if path.exists():
        raise SweepFileError(f"{path} already exists")
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w", **h5seal.create_options()) as f:
            _write_root(f, settings)
        h5seal.seal(tmp)
        _fsync(tmp)
    return path


def append(path: str | os.PathLike, point: Point, report: Report, arch_params: dict | None = None) -> None:
    """Add one finished point to the sweep file at ``path``: written atomically to the sweep's journal (its own
    small file, flushed and renamed into place), at a cost that does not grow with the file. The journal is
    folded into the file when it holds as many points as the file (at least :data:`FOLD_MIN`); call
    :func:`fold` to fold it now.

    A point already in the file or its journal is never overwritten: appending it again raises SweepFileError.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise SweepFileError(f"{path} does not exist; create it with sweepfile.create first")
    target = journal_dir(path) / _journal_name(point.key)
    with reading(path, SweepFileError, "cimsim sweep file", DAMAGED_FIX):
        h5seal.check(path, SweepFileError, "cimsim sweep file", DAMAGED_FIX)
        with h5py.File(path, "r") as f:
            _check_format(f, path)
            in_file = point.key in f
            n_file = len(f.keys())
    if in_file or target.exists():
        raise SweepFileError(f"{path} already holds point {point.key}; it is never overwritten")
    target.parent.mkdir(exist_ok=True)
    with atomic_output(target) as tmp:
        with h5py.File(tmp, "w", **h5seal.create_options()) as f:
            _write_point(f.create_group(point.key), point, report, arch_params)
        h5seal.seal(tmp)
        _fsync(tmp)
    _fsync(target.parent)
    if journal_size(path) >= max(FOLD_MIN, n_file):
        fold(path)


def _write_point(g, point: Point, report: Report, arch_params: dict | None) -> None:
    report.write_hdf5_group(g)
    g.attrs["point_arch"] = point.arch
    if point.adc_bits is not None:
        g.attrs["point_adc_bits"] = point.adc_bits
    g.attrs["point_params_json"] = json.dumps(point.param_dict, sort_keys=True)
    g.attrs["point_seed"] = point.seed
    g.attrs["point_json"] = json.dumps(point.to_dict())
    g.attrs["point_arch_params_json"] = json.dumps(arch_params or {}, sort_keys=True, default=json_default)


def fold(path: str | os.PathLike) -> int:
    """Move every journaled point into the sweep file at ``path`` (one atomic copy-add-rename of the file, then
    the journal files are removed); return how many points were added. A point the file already holds (a fold
    killed before its clean-up) is not added again."""
    import h5py

    path = Path(path)
    files = _journal_files(path)
    added = 0
    if files:
        h5seal.check(path, SweepFileError, "cimsim sweep file", DAMAGED_FIX)
        with atomic_output(path) as tmp:
            shutil.copyfile(path, tmp)
            with h5py.File(tmp, "a") as f:
                for jf, keys in files.items():
                    with reading(jf, SweepFileError, f"journal file of {path}", "remove it to run its point again"):
                        h5seal.check(jf, SweepFileError, f"journal file of {path}", "remove it to run its point again")
                        with h5py.File(jf, "r") as src:
                            for k in keys:
                                if k not in f:
                                    src.copy(src[k], f, name=k)
                                    added += 1
            if h5seal.sealed(tmp):   # a file written before seals stays without one
                h5seal.seal(tmp)
            _fsync(tmp)
        for jf in files:
            with contextlib.suppress(FileNotFoundError):
                jf.unlink()
    clean_journal(path)
    return added


@contextlib.contextmanager
def exclusive(path: Path):
    """Only one sweep writes a file at a time: an advisory lock on a hidden file beside it."""
    import fcntl

    lock = path.parent / f".{path.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SweepFileError(f"another cimsim sweep is writing {path}; wait for it or choose another --out") \
                from None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break  # still the lock file on disk, not one a finishing sweep just removed
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


@contextlib.contextmanager
def folding(path: Path):
    """Fold the journal into the sweep file when the block ends; when it ends by an exception, a fold that fails
    too (a full disk, say) leaves the journal for the resume and does not hide the first exception."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(CimsimError, OSError):
            fold(path)
        raise
    fold(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------------
# summaries (the CLI's table and the plot)

def aggregate(results: dict[Point, Report]) -> list[dict[str, Any]]:
    """One row per (architecture, swept values): mean, min and max over seeds of accuracy, energy, latency, area
    and crossbars allocated; ``params`` holds the swept values and ``adc_bits`` the ADC resolution (None where not
    swept); ``weight_compression`` the weights / non-zero weights of an ADMM sweep's network (None elsewhere)."""
    groups: dict[tuple[str, tuple], list[Report]] = {}
    for p in sorted(results, key=Point.sort_key):
        groups.setdefault((p.arch, p.params), []).append(results[p])
    rows = []
    for (arch, params), reps in groups.items():
        row: dict[str, Any] = {"arch": arch, "params": dict(params), "adc_bits": dict(params).get(ADC_BITS),
                               "seeds": len(reps)}
        for k in ("accuracy", "digital_accuracy", "energy_j", "latency_s", "area_m2", "throughput_inf_per_s",
                  "crossbars"):
            # crossbars: the arrays the mapped layers occupy (one copy each), which compression knobs move
            vals = [float(sum(l.get("arrays", 0) for l in r.layers)) if k == "crossbars" else float(getattr(r, k))
                    for r in reps]
            row[k] = sum(vals) / len(vals)
            row[f"{k}_min"] = min(vals)
            row[f"{k}_max"] = max(vals)
        # the weight compression an ADMM point reached (cimsim.sweep_admm: config['admm']), None elsewhere
        reached = [r.config["admm"]["compression"] for r in reps if "compression" in (r.config.get("admm") or {})]
        row["weight_compression"] = sum(reached) / len(reached) if len(reached) == len(reps) else None
        rows.append(row)
    return rows
