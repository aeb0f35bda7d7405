"""The checks of the sweep's Python API (:mod:`cimsim.sweep`): a bad argument is one ConfigError naming the fix,
before any point is built or any file is created."""

from __future__ import annotations

import numbers
from typing import Any

from cimsim.errors import ConfigError
from cimsim.zoo_names import check_dataset, check_model


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(name: str, value, none_ok: bool = False) -> None:
    """``value`` is a whole number >= 1 (or None where ``none_ok``)."""
    if value is None and none_ok:
        return
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{name} must be a positive whole number{' (or None)' if none_ok else ''}, got {value!r}")


def check_settings(s) -> None:
    """The fields of a :class:`cimsim.sweep.Settings`: known model and dataset names, positive sizes, overrides
    as a dict of str to str."""
    for name in ("model", "dataset", "checkpoint", "checkpoint_sha256", "backend", "device"):
        if not isinstance(getattr(s, name), str):
            raise ConfigError(f"Settings.{name} must be a str, got {getattr(s, name)!r}")
    check_model(s.model)
    check_dataset(s.dataset)
    positive_int("Settings.limit", s.limit, none_ok=True)
    positive_int("Settings.calibration", s.calibration)
    positive_int("Settings.batch_size", s.batch_size)
    if not isinstance(s.overrides, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in s.overrides.items()):
        raise ConfigError(f"Settings.overrides is a dict of parameter names to values as str, e.g. "
                          f"{{'adc_bits': '6'}}, got {s.overrides!r}")


def check_grid_args(archs, adc_bits, seeds, grid: Any) -> None:
    """The arguments of :func:`cimsim.sweep.make_points`: lists where lists are expected (a str is refused, not
    taken apart character by character), a positive whole number of seeds."""
    if isinstance(archs, (str, bytes)):
        raise ConfigError(f"archs is a list of names, e.g. [{archs!r}], got the str {archs!r}")
    if adc_bits is not None and (isinstance(adc_bits, (str, bytes)) or not _iterable(adc_bits)):
        raise ConfigError(f"adc_bits is a list of whole numbers, e.g. [4, 6, 8], got {adc_bits!r}")
    if not _is_int(seeds):
        raise ConfigError(f"seeds must be a whole number of seeds, e.g. 3, got {seeds!r}")
    if seeds < 1:   # the CLI's --seeds is a positive integer by its type: this is a Python caller's argument
        raise ConfigError(f"seeds must be a positive whole number of seeds, e.g. 3, got {seeds!r}")
    if grid is not None and not isinstance(grid, dict):
        raise ConfigError(f"grid is a dict of parameter names to lists of values, e.g. {{'rows': ['64', '128']}}, "
                          f"got {grid!r}")
    for key, values in (grid or {}).items():
        if isinstance(values, (str, bytes)) or not _iterable(values):
            raise ConfigError(f"grid[{key!r}] is a list of values, e.g. {{{key!r}: [{str(values)!r}]}}, got "
                              f"{values!r}")


def check_points(points) -> list:
    """``points`` as a list of :class:`cimsim.sweepfile.Point` (each from :func:`cimsim.sweep.make_points`)."""
    from cimsim.sweepfile import Point

    if isinstance(points, (str, bytes)) or not _iterable(points):
        raise ConfigError(f"points come from sweep.make_points (a list of Point), got {points!r}")
    points = list(points)
    bad = [p for p in points if not isinstance(p, Point)]
    if bad:
        raise ConfigError(f"points come from sweep.make_points (a list of Point), got {bad[0]!r}")
    return points


def _iterable(value) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return True
