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

Every append copies the file to a temporary file in the same folder, adds the group there, flushes it
to disk and renames it over the original (:func:`cimsim.fileio.atomic_output`). A crash or ``kill -9``
at any moment therefore leaves either the old file or the new one, never a half-written one: only the
point being written is lost.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cimsim._version import __version__
from cimsim.errors import CimsimError
from cimsim.fileio import CORRUPT_FILE_ERRORS, atomic_output, reading
from cimsim.report import Report, json_default

FORMAT = "cimsim.sweep"
FORMAT_VERSION = 1


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

def _check_format(f, path: Path) -> None:
    fmt = f.attrs.get("format")
    if fmt != FORMAT:
        raise SweepFileError(f"{path} is not a cimsim sweep file (format {fmt or 'missing'}); "
                             "give another --out or remove the file")
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
                             "give another --out or remove the file") from None


def finished_keys(path: str | os.PathLike) -> set[str]:
    """Group names of the points already in the file (empty when it does not exist)."""
    import h5py

    path = Path(path)
    if not path.exists():
        return set()
    with reading(path, SweepFileError, "cimsim sweep file", "give another --out or remove the file"):
        with h5py.File(path, "r") as f:
            _check_format(f, path)
            return {k for k in f.keys() if isinstance(f[k], h5py.Group) and "point_json" in f[k].attrs}


def read_points(path: str | os.PathLike, keys=None) -> dict[Point, Report]:
    """Every finished point in the sweep file (or only those named by ``keys``), with its report."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise SweepFileError(f"{path} does not exist; give a file written by 'cimsim sweep --out'")
    out: dict[Point, Report] = {}
    try:
        with h5py.File(path, "r") as f:
            _check_format(f, path)
            for k in sorted(f.keys()):
                g = f[k]
                if "point_json" not in g.attrs or (keys is not None and k not in keys):
                    continue
                point = Point.from_dict(json.loads(g.attrs["point_json"]))
                out[point] = Report.read_hdf5_group(g, where=f"{path}:{k}")
    except CimsimError:
        raise
    except CORRUPT_FILE_ERRORS as exc:
        raise SweepFileError(f"{path} is not a readable cimsim sweep file ({type(exc).__name__}: {exc})") from None
    return dict(sorted(out.items(), key=lambda kv: kv[0].sort_key()))


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
        with h5py.File(tmp, "w") as f:
            _write_root(f, settings)
        _fsync(tmp)
    return path


def append(path: str | os.PathLike, point: Point, report: Report, arch_params: dict | None = None) -> None:
    """Add one finished point to the sweep file at ``path``, atomically (copy, add, flush, rename).

    A point already in the file is never overwritten: appending it again raises SweepFileError.
    """
    import h5py

    path = Path(path)
    with atomic_output(path) as tmp:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a") as f:
            if point.key in f:
                raise SweepFileError(f"{path} already holds point {point.key}; it is never overwritten")
            g = f.create_group(point.key)
            report.write_hdf5_group(g)
            g.attrs["point_arch"] = point.arch
            if point.adc_bits is not None:
                g.attrs["point_adc_bits"] = point.adc_bits
            g.attrs["point_params_json"] = json.dumps(point.param_dict, sort_keys=True)
            g.attrs["point_seed"] = point.seed
            g.attrs["point_json"] = json.dumps(point.to_dict())
            g.attrs["point_arch_params_json"] = json.dumps(arch_params or {}, sort_keys=True,
                                                           default=json_default)
        _fsync(tmp)


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
    swept)."""
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
        rows.append(row)
    return rows
