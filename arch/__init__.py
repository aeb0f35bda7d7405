"""Architecture templates (``cimsim.arch``): declarative specs plus the dataflows that differ.

``get(name, **overrides)`` builds one; ``names()`` lists them. Overrides may be given as strings (from
the CLI's ``--set key=value``); they are converted to the type of the parameter's default.
"""

from __future__ import annotations

from dataclasses import fields

from cimsim.arch.digital import DigitalReference
from cimsim.arch.hcim import Hcim
from cimsim.arch.isaac import ISAAC_TABLE, Component, Isaac
from cimsim.errors import ConfigError

_REGISTRY = {"digital": DigitalReference, "isaac": Isaac, "hcim": Hcim}


def names() -> list[str]:
    return list(_REGISTRY)


def _coerce(name: str, key: str, value, default):
    if not isinstance(value, str) or isinstance(default, str):
        return value
    try:
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(float(value)) if float(value).is_integer() else int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise ConfigError(f"{name}: {key}={value!r} is not a valid {type(default).__name__}") from None
    return value


def get(name: str, **overrides):
    """The architecture ``name`` with parameters replaced by ``overrides``."""
    key = name.strip().lower()
    if key not in _REGISTRY:
        raise ConfigError(f"unknown architecture {name!r}: choose one of {', '.join(_REGISTRY)} "
                          "(see 'cimsim archs')")
    cls = _REGISTRY[key]
    # only scalar parameters can be overridden by name (tables and nested specs are built in Python)
    defaults = {f.name: f.default for f in fields(cls) if isinstance(f.default, (int, float, str, bool))}
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ConfigError(f"{key} has no parameter {', '.join(unknown)}; its parameters are "
                          f"{', '.join(defaults)}")
    values = {k: _coerce(key, k, v, defaults[k]) for k, v in overrides.items()}
    try:
        return cls(**values)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


__all__ = ["get", "names", "DigitalReference", "Isaac", "Hcim", "Component", "ISAAC_TABLE"]
