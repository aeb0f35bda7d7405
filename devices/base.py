"""Shared machinery of the device models: cited, unit-carrying, validated parameters.

Every model is a frozen dataclass whose fields are declared with :func:`param`, which records the SI
unit, the source of the default value and the allowed range. Construction validates every field and
raises :class:`cimsim.errors.ConfigError` with a one-line message naming the field and its range.
:func:`describe` turns any model into a plain dict (name, doc, parameters with value, unit and source)
for ``cimsim devices``.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, field, fields, is_dataclass
from typing import Any

import numpy as np

from cimsim.errors import ConfigError


def param(default: Any, unit: str, source: str, *, lo: float | None = None, hi: float | None = None,
          lo_open: bool = False, doc: str = "") -> Any:
    """A dataclass field carrying its unit, the source of its default and its allowed range.

    ``lo`` / ``hi`` bound the value (inclusive; ``lo_open=True`` makes the lower bound exclusive).
    ``unit`` is an SI unit string ("S", "V", "s", "J", "m", "m^2", "A/m^2", "1" for dimensionless).
    """
    return field(default=default, metadata={"unit": unit, "source": source, "lo": lo, "hi": hi,
                                            "lo_open": lo_open, "doc": doc})


def _range_text(md: dict) -> str:
    lo, hi = md.get("lo"), md.get("hi")
    if lo is not None and hi is not None:
        return f"{'(' if md.get('lo_open') else '['}{lo}, {hi}]"
    if lo is not None:
        return f"{'>' if md.get('lo_open') else '>='} {lo}"
    if hi is not None:
        return f"<= {hi}"
    return "finite"


def validate_fields(obj: Any) -> None:
    """Check every :func:`param` field of ``obj`` against its declared range."""
    name = type(obj).__name__
    for f in fields(obj):
        md = f.metadata
        if "unit" not in md:
            continue
        v = getattr(obj, f.name)
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ConfigError(f"{name}.{f.name} must be a number ({md['unit']}), got {v!r}")
        unit = "" if md["unit"] == "1" else f" {md['unit']}"
        if not math.isfinite(float(v)):   # inf and nan: not a bound's fault, whatever the bounds are
            bounds = _range_text(md)
            raise ConfigError(f"{name}.{f.name} = {v!r}{unit} is not a finite number: it must be finite"
                              + ("" if bounds == "finite" else f" and {bounds}"))
        bad = False
        lo, hi = md.get("lo"), md.get("hi")
        if lo is not None:
            bad |= v <= lo if md.get("lo_open") else v < lo
        if hi is not None:
            bad |= v > hi
        if bad:
            raise ConfigError(f"{name}.{f.name} = {v!r}{unit} is out of range: it must be {_range_text(md)}")


def describe(obj: Any) -> dict:
    """Plain-dict description of a device model: kind, class, summary line and every parameter."""
    doc = (type(obj).__doc__ or "").strip().splitlines()
    params = []
    for f in fields(obj):
        md = f.metadata
        if "unit" not in md:
            continue
        params.append({"name": f.name, "value": getattr(obj, f.name), "unit": md["unit"],
                       "source": md["source"], "range": _range_text(md), "doc": md.get("doc", "")})
    return {"kind": getattr(obj, "kind", type(obj).__name__.lower()), "class": type(obj).__name__,
            "summary": doc[0] if doc else "", "params": params}


def default_of(cls: type, name: str) -> Any:
    """The default value of field ``name`` of dataclass ``cls``."""
    assert is_dataclass(cls)
    for f in fields(cls):
        if f.name == name:
            return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
    raise KeyError(name)
