"""The catalog behind ``cimsim devices``: every cell, converter and peripheral model by kind."""

from __future__ import annotations

import math
from dataclasses import fields
from importlib import import_module

from cimsim.devices.base import describe
from cimsim.errors import ConfigError

# (module, class) per category; a model's ``kind`` ClassVar names it in the CLI.
_MODELS = {
    "cell": [("cell", "IdealCell"), ("reram", "ReRAM"), ("mosfet", "MOSFETSynapse"),
             ("domain_wall", "DomainWallSynapse")],
    "converter": [("converters", "IdealReadout"), ("converters", "SarADC"), ("converters", "FlashADC"),
                  ("converters", "SenseAmp"), ("converters", "TernaryReadout"), ("converters", "DAC"),
                  ("analog_accumulators", "NeuralADC"), ("analog_accumulators", "NeuralShiftAdd"),
                  ("analog_accumulators", "TransimpedanceAmplifier"), ("analog_accumulators", "BufferArray"),
                  ("analog_accumulators", "BufferedADC")],
    "peripheral": [],  # filled from cimsim.devices.peripherals.PERIPHERALS when present
}

# Figures a model may expose (properties or zero-argument methods), shown by 'cimsim devices show'.
FIGURES = ("energy_j", "latency_s", "area_m2", "power_w", "g_min_s", "g_max_s", "read_latency_s",
           "write_pulse_latency_s", "energy_per_op_j", "leakage_w", "cycles", "comparators")


def _classes() -> dict[str, tuple[str, type]]:
    out: dict[str, tuple[str, type]] = {}
    for category, entries in _MODELS.items():
        for module, name in entries:
            cls = getattr(import_module(f"cimsim.devices.{module}"), name)
            out[cls.kind] = (category, cls)
    try:
        periph = import_module("cimsim.devices.peripherals")
    except ImportError:
        periph = None
    for cls in getattr(periph, "PERIPHERALS", ()):
        out[cls.kind] = ("peripheral", cls)
    return out


def kinds() -> list[str]:
    return list(_classes())


def _coerce(kind: str, cls: type, key: str, value):
    defaults = {f.name: f.default for f in fields(cls)}
    if key not in defaults:
        raise ConfigError(f"{kind} has no parameter {key!r}; its parameters are {', '.join(defaults)}")
    default = defaults[key]
    if not isinstance(value, str):
        return value
    try:
        return int(value) if isinstance(default, int) and not isinstance(default, bool) else float(value)
    except ValueError:
        raise ConfigError(f"{kind}: {key}={value!r} is not a number") from None


def get(kind: str, **overrides):
    """Build the model ``kind`` (e.g. 'sar-adc') with parameters replaced by ``overrides``."""
    table = _classes()
    key = kind.strip().lower().replace("_", "-")
    if key not in table:
        raise ConfigError(f"unknown device {kind!r}: choose one of {', '.join(table)} (see 'cimsim devices')")
    _, cls = table[key]
    return cls(**{k: _coerce(key, cls, k, v) for k, v in overrides.items()})


def role(cls) -> str:
    """The part a model plays in an architecture: 'cell', 'converter' (an ADC or other column readout),
    'DAC', 'register', else its own kind ('bus', 'router', ...). A component slot takes kinds of its role only."""
    from cimsim.devices.cell import MemoryCell
    from cimsim.devices.converters import DAC, Readout
    from cimsim.devices.peripherals import Register
    cls = cls if isinstance(cls, type) else type(cls)
    for base, name in ((MemoryCell, "cell"), (DAC, "DAC"), (Readout, "converter"), (Register, "register")):
        if issubclass(cls, base):
            return name
    return getattr(cls, "kind", "model")


def kinds_of(role_name: str) -> list[str]:
    """Every catalog kind that plays ``role_name`` (see :func:`role`)."""
    return [kind for kind, (_, cls) in _classes().items() if role(cls) == role_name]


def a_role(role_name: str) -> str:
    """``role_name`` with its article: 'a cell', 'an activation'."""
    return ("an " if role_name[:1].lower() in "aeio" else "a ") + role_name


def figures(model) -> dict[str, float]:
    out = {}
    for name in FIGURES:
        try:
            v = getattr(model, name)
        except (AttributeError, NotImplementedError):
            continue
        if callable(v):
            continue
        if isinstance(v, (int, float)) and math.isfinite(v):  # the ideal cell's window is unbounded
            out[name] = v
    if hasattr(model, "write_pulse_energy_j"):
        try:
            e = float(model.write_pulse_energy_j(model.g_max_s))
            if math.isfinite(e):
                out["write_pulse_energy_j_at_g_max"] = e
        except (NotImplementedError, TypeError, ValueError, OverflowError):
            pass
    if hasattr(model, "read_energy_j") and hasattr(model, "g_max_s"):
        try:
            e = float(model.read_energy_j(model.g_max_s))
            if math.isfinite(e):
                out["read_energy_j_at_g_max"] = e
        except (TypeError, ValueError, OverflowError):
            pass
    return out


def listing() -> list[dict]:
    """Every model with its defaults: kind, category, class, summary, parameters (unit, source, range)."""
    rows = []
    for kind, (category, cls) in _classes().items():
        model = cls()
        d = describe(model)
        d["category"] = category
        d["figures"] = figures(model)
        rows.append(d)
    return rows
