"""Architecture parameters: declared, cited, validated, and reachable by dotted paths.

An architecture is a frozen dataclass. Its fields are either

* scalar parameters declared with :func:`param` (a unit, the source of the default, an allowed range or a
  set of choices), e.g. ``rows``, ``weight_bits``, ``signed``; or
* device models declared with :func:`component` (a cell, a converter, a peripheral from
  :mod:`cimsim.devices`), whose own cited parameters are reached as ``field.parameter``, e.g.
  ``adc.bits``, ``cell.read_sigma_frac``, ``edram.power_w``. A component's kind can be swapped by naming
  it: ``cell=ideal``.

:func:`parameters` lists every path with value, unit, range and source (``cimsim archs show NAME``);
:func:`apply` returns the architecture with overrides given as ``{"adc.bits": 6}`` or as strings from the
CLI's ``--set adc.bits=6``. Each architecture may declare shorthands (``aliases``: ``adc_bits`` for
``adc.bits``) and component parameters that follow one of its own (``derived``: ``adc.node_nm`` follows
``node_nm``; setting it directly is refused with a message naming what to set instead) and the old names of
renamed parameters (``renamed``: CASCADE's ``adcs_per_array`` is ``adcs_per_block``; an old name is refused with
a message naming the new one). Every refusal is a one-line :class:`~cimsim.errors.ConfigError` naming the path
and its allowed range; an unknown name gets the closest known one as a suggestion (:func:`difflib.get_close_matches`).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from typing import Any

from cimsim.devices import catalog
from cimsim.devices.base import default_of, describe
from cimsim.errors import ConfigError


def param(default: Any, unit: str, source: str, *, lo: float | None = None, hi: float | None = None,
          choices: tuple | None = None, doc: str = "") -> Any:
    """A scalar architecture parameter: int, float, bool or str (with ``choices``), in ``[lo, hi]``."""
    return field(default=default, metadata={"arch_param": True, "unit": unit, "source": source, "lo": lo,
                                            "hi": hi, "choices": choices, "doc": doc})


def component(factory, source: str, doc: str = "") -> Any:
    """A device model held by the architecture (its parameters become ``name.parameter`` paths)."""
    return field(default_factory=factory, metadata={"arch_component": True, "source": source, "doc": doc})


@dataclass(frozen=True)
class ParamInfo:
    """One reachable parameter: its dotted path, value, unit, allowed range and the source of its default."""

    path: str
    value: Any
    unit: str
    range: str
    source: str
    doc: str = ""
    derived_from: str | None = None   # the architecture parameter it follows, if any


def _range_text(md: dict) -> str:
    if md.get("choices"):
        return " | ".join(map(str, md["choices"]))
    lo, hi = md.get("lo"), md.get("hi")
    if lo is not None and hi is not None:
        return f"[{lo:g}, {hi:g}]"
    if lo is not None:
        return f">= {lo:g}"
    if hi is not None:
        return f"<= {hi:g}"
    return "any"


def _is_component(f) -> bool:
    return bool(f.metadata.get("arch_component"))


def _is_param(f) -> bool:
    return bool(f.metadata.get("arch_param"))


def check_scalar(arch_name: str, path: str, value: Any, md: dict) -> None:
    """Type and range of one scalar parameter (ConfigError naming the path otherwise)."""
    choices, lo, hi = md.get("choices"), md.get("lo"), md.get("hi")
    unit = "" if md.get("unit") in ("1", "", None) else f" {md['unit']}"
    if choices:
        if value not in choices:
            raise ConfigError(f"{arch_name}: {path} = {value!r}: choose one of {', '.join(map(str, choices))}")
        return
    if isinstance(value, bool) != isinstance(md.get("default"), bool) and md.get("default") is not None:
        raise ConfigError(f"{arch_name}: {path} must be {'true or false' if isinstance(md['default'], bool) else 'a number'}, "
                          f"got {value!r}")
    if isinstance(value, bool):
        return
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{arch_name}: {path} must be a finite number{unit}, got {value!r}")
    if isinstance(md.get("default"), int) and not float(value).is_integer():
        raise ConfigError(f"{arch_name}: {path} must be a whole number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{arch_name}: {path} = {value:g}{unit} is out of range: it must be {_range_text(md)}")


def validate(arch) -> None:
    """Check every scalar parameter of ``arch`` (called by the base class after construction)."""
    for f in fields(arch):
        if _is_param(f):
            check_scalar(arch.name, f.name, getattr(arch, f.name), {**f.metadata, "default": f.default})


def parameters(arch) -> list[ParamInfo]:
    """Every parameter path of ``arch``: its own scalars, then each component's parameters (and its kind)."""
    derived = arch.derived
    out = []
    for f in fields(arch):
        if _is_param(f):
            md = f.metadata
            out.append(ParamInfo(f.name, getattr(arch, f.name), md["unit"], _range_text(md), md["source"], md["doc"]))
        elif _is_component(f):
            model = getattr(arch, f.name)
            d = describe(model)
            out.append(ParamInfo(f.name, d["kind"], "kind", "a device kind of 'cimsim devices'", f.metadata["source"],
                                 f.metadata.get("doc", "")))
            # a value the architecture's own model sets (not the device class's default) cites the architecture's
            # source of that model, not the device default's
            own = f.default_factory() if f.default_factory is not MISSING else None
            for p in d["params"]:
                path = f"{f.name}.{p['name']}"
                source = p["source"]
                if own is not None and type(own) is type(model):
                    set_here = getattr(own, p["name"])
                    if set_here != default_of(type(model), p["name"]) and p["value"] == set_here:   # not a user's
                        source = f"{f.metadata['source']} (the {type(model).__name__} default, {source}, not used here)"
                out.append(ParamInfo(path, p["value"], p["unit"], p["range"], source, p["doc"], derived.get(path)))
    return out


def flat(arch) -> dict[str, Any]:
    """``{path: value}`` of every parameter that may be set (derived ones left out): enough to rebuild ``arch``
    with :func:`apply` on a default instance."""
    return {p.path: p.value for p in parameters(arch) if p.derived_from is None}


def _coerce(arch_name: str, path: str, value: Any, default: Any) -> Any:
    """A CLI string turned into the type of the parameter's default."""
    if not isinstance(value, str) or isinstance(default, str):
        return value
    text = value.strip()
    try:
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            f = float(text)
            if not math.isfinite(f) or not f.is_integer() or abs(f) > 2 ** 62:
                raise ConfigError(f"{arch_name}: {path} must be a whole number, got {value!r}")
            return int(f)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        kind = "true/false" if isinstance(default, bool) else type(default).__name__
        raise ConfigError(f"{arch_name}: {path}={value!r} is not a valid {kind}") from None
    return value


_MODEL_NAME = re.compile(r"\b[A-Z][A-Za-z0-9]*\.([a-z_][a-z0-9_]*)\b")


# our choice: difflib's default similarity cutoff (0.6) for a suggestion; below it, none is made
SUGGEST_CUTOFF = 0.6


def closest(name: str, known) -> str | None:
    """The known name closest to ``name`` (difflib's ratio, at least :data:`SUGGEST_CUTOFF`), or None."""
    hits = difflib.get_close_matches(str(name), list(known), n=1, cutoff=SUGGEST_CUTOFF)
    return hits[0] if hits else None


def _did_you_mean(name: str, known, prefix: str = "") -> str:
    hit = closest(name, known)
    return f" (did you mean {prefix + hit!r}?)" if hit else ""


def _settable(arch) -> list[str]:
    """Every path of ``arch`` that may be set (derived ones left out) and its shorthands."""
    return [p.path for p in parameters(arch) if p.derived_from is None] + list(arch.aliases)


def hint(key: str, archs) -> str:
    """Why none of ``archs`` has parameter ``key``, where that can be told: a rename (``cascade: renamed to
    adcs_per_block``) or the closest settable path of any of them (``isaac: did you mean 'adc_bits'?``); else ""."""
    archs, key = list(archs), str(key).strip()
    new = next(((arch.name, arch.renamed[key]) for arch in archs if key in arch.renamed), None)
    if new:
        return f"{new[0]}: renamed to {new[1]}"
    owners: dict[str, str] = {}
    for arch in archs:
        for path in _settable(arch):
            owners.setdefault(path, arch.name)
    hit = closest(key, owners)
    return f"{owners[hit]}: did you mean {hit!r}?" if hit else ""


def hinted(keys, archs) -> str:
    """``keys`` joined by commas, each followed by its :func:`hint` in parentheses where it has one."""
    archs = list(archs)
    return ", ".join(f"{k} ({h})" if (h := hint(k, archs)) else str(k) for k in keys)


def _rebuild_component(arch_name: str, name: str, model, changes: dict[str, Any]):
    """``model`` with ``changes`` (parameter -> value), validated; errors name ``name.parameter``."""
    known = {p["name"]: p for p in describe(model)["params"]}
    defaults = {f.name: f.default for f in fields(model)}
    values = {}
    for key, value in changes.items():
        if key not in known:
            raise ConfigError(f"{arch_name}: {name} ({describe(model)['kind']}) has no parameter {key!r}"
                              f"{_did_you_mean(key, known, name + '.')}; its parameters are {', '.join(known) or 'none'}")
        default = defaults[key] if defaults[key] is not MISSING else known[key]["value"]
        values[key] = _coerce(arch_name, f"{name}.{key}", value, default)
    try:
        return replace(model, **values)
    except ConfigError as exc:
        raise ConfigError(f"{arch_name}: " + _MODEL_NAME.sub(lambda m: f"{name}.{m.group(1)}", str(exc),
                                                              count=1)) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{arch_name}: {name}: {exc}") from None


def apply(arch, overrides: dict[str, Any]):
    """``arch`` with ``overrides`` ({path: value}; strings are coerced) applied, validated."""
    name = arch.name
    aliases: dict[str, str] = arch.aliases
    derived: dict[str, str] = arch.derived
    by_name = {f.name: f for f in fields(arch)}
    scalars: dict[str, Any] = {}
    kinds: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for raw, value in overrides.items():
        if str(raw).strip() in arch.renamed:
            new = arch.renamed[str(raw).strip()]
            raise ConfigError(f"{name}: parameter {str(raw).strip()!r} was renamed to {new!r}; set {new} instead "
                              f"(see 'cimsim archs show {name}')")
        path = aliases.get(str(raw).strip(), str(raw).strip())
        head, dot, tail = path.partition(".")
        f = by_name.get(head)
        if (f is None or not (_is_param(f) or _is_component(f))) and (head == "adc" or raw == "adc_bits"):
            raise ConfigError(f"{name} has no ADC, so {raw} does not apply (see 'cimsim archs show {name}')")
        if f is None or not (_is_param(f) or _is_component(f)):
            known = [x.name for x in fields(arch) if _is_param(x) or _is_component(x)] + sorted(aliases)
            hint = _did_you_mean(raw, _settable(arch))
            raise ConfigError(f"{name} has no parameter {raw!r}{hint}; its parameters are {', '.join(known)} and the "
                              f"components' NAME.PARAM paths (see 'cimsim archs show {name}')")
        if path in derived:
            raise ConfigError(f"{name}: {path} follows the architecture's {derived[path]}; set {derived[path]} instead")
        if _is_param(f):
            if dot:
                raise ConfigError(f"{name}: {head} is a number, not a component: it has no parameter {tail!r}")
            scalars[head] = _coerce(name, head, value, f.default)
        elif not dot:
            kinds[head] = value
        else:
            nested.setdefault(head, {})[tail] = value
    values: dict[str, Any] = dict(scalars)
    for head in set(kinds) | set(nested):
        model = getattr(arch, head)
        if head in kinds:
            kind = kinds[head]
            if not isinstance(kind, str):
                if not is_dataclass(kind):
                    raise ConfigError(f"{name}: {head} must be a device kind (see 'cimsim devices') or a model")
                model = kind
            elif kind.strip().lower().replace("_", "-") != describe(model)["kind"]:   # the same kind: kept as set
                try:
                    model = catalog.get(kind)
                except ConfigError as exc:
                    raise ConfigError(f"{name}: {head}: {exc}") from None
            _check_role(arch, by_name[head], model)
        values[head] = _rebuild_component(name, head, model, nested.get(head, {}))
    try:
        return replace(arch, **values) if values else arch
    except ConfigError:
        raise
    except (TypeError, AttributeError):
        # a kind of the right role that lacks a parameter the architecture sets on it (an ideal readout has no
        # node_nm; CASCADE's adc needs the buffered SAR's analog noise; Neural-PIM's a trained NNADC): name the
        # kinds that fit this slot
        for head in kinds:
            if not _fits(arch, head, values[head]):
                kind = describe(values[head])["kind"]
                raise ConfigError(f"{name}: {head} = {kind} does not fit {name}: its {head} takes "
                                  f"{_one_of(_fitting(arch, head))} (see 'cimsim archs show {name}')") from None
        raise ConfigError(f"{name}: these settings do not go together ({', '.join(sorted(values))}); "
                          f"see 'cimsim archs show {name}'") from None
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _one_of(kinds: list[str]) -> str:
    return kinds[0] if len(kinds) == 1 else "one of " + ", ".join(kinds)


def _fits(arch, head: str, model) -> bool:
    try:
        replace(arch, **{head: model})
    except (TypeError, AttributeError):
        return False
    except ValueError:   # a cross-parameter check: the kind fits, this setting of it may not
        pass
    return True


def _fitting(arch, head: str) -> list[str]:
    """The catalog kinds of ``head``'s role that ``arch`` can hold there."""
    want = catalog.role(type(getattr(arch, head)))
    return [k for k in catalog.kinds_of(want) if _fits(arch, head, catalog.get(k))] or [describe(getattr(arch, head))["kind"]]


def _check_role(arch, f, model) -> None:
    """Refuse a model of another role than the slot's default (a cell in the adc slot), naming the kinds it takes."""
    default = f.default_factory() if f.default_factory is not MISSING else getattr(arch, f.name)
    want, got = catalog.role(type(default)), catalog.role(type(model))
    allowed = arch.component_types.get(f.name)
    if want != got or (allowed is not None and not isinstance(model, allowed)):
        kind = describe(model)["kind"]
        raise ConfigError(f"{arch.name}: {f.name} takes {catalog.a_role(want)} kind ({', '.join(_fitting(arch, f.name))}), "
                          f"not {kind!r} ({catalog.a_role(got)})")
