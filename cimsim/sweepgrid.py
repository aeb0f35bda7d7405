"""Parsing a sweep's grid from the command line: ``--adc-bits 1-8`` and ``--grid key=values`` into value lists.

The values stay strings here; each architecture converts them to its parameter's type (and
:mod:`cimsim.sweep_admm` the ADMM knobs), when :func:`cimsim.sweep.make_points` builds the points.
"""

from __future__ import annotations

from typing import Iterable

from cimsim.errors import ConfigError

MAX_ADC_BITS = 16
MAX_GRID_VALUES = 4096       # values of one --grid key (our bound)


def parse_adc_bits(text: str) -> list[int]:
    """``'1-8'``, ``'4,6,8'``, ``'6'`` or a mix (``'1-4,8'``) -> sorted distinct bits, each in 1..16."""
    bits: set[int] = set()
    for item in str(text).replace(" ", "").split(","):
        if not item:
            raise ConfigError(f"--adc-bits {text!r} has an empty item; write e.g. 1-8, 4,6,8 or 6")
        lo_text, sep, hi_text = item.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if sep else lo
        except ValueError:
            raise ConfigError(f"--adc-bits {text!r}: {item!r} is not a number or a range; "
                              "write e.g. 1-8, 4,6,8 or 6") from None
        if lo > hi:
            raise ConfigError(f"--adc-bits {text!r}: range {item!r} runs backwards; write {hi}-{lo}")
        for b in (lo, hi):
            if not 1 <= b <= MAX_ADC_BITS:
                raise ConfigError(f"--adc-bits {text!r}: {b} bits is out of range; ADC bits run from 1 to "
                                  f"{MAX_ADC_BITS}")
        bits.update(range(lo, hi + 1))
    return sorted(bits)


def parse_values(key: str, text: str) -> list[str]:
    """``'2-8'`` (an integer range), ``'64,128'``, ``'0,0.01,0.02'``, ``'offset,twos'`` or a mix: the values of
    one ``--grid`` key, as strings (each architecture converts them to the parameter's type)."""
    out: list[str] = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            raise ConfigError(f"--grid {key}={text!r} has an empty value; write e.g. {key}=2-8 or {key}=64,128")
        lo, sep, hi = item.partition("-")
        if sep and lo.strip().isdigit() and not hi.strip():
            raise ConfigError(f"--grid {key}={text!r}: range {item!r} has no end; write a range as "
                              f"{key}={lo.strip()}-8 or a list as {key}=64,128")
        if sep and lo.strip().isdigit() and hi.strip().isdigit():
            a, b = int(lo), int(hi)
            if a > b:
                raise ConfigError(f"--grid {key}={text!r}: range {item!r} runs backwards; write {b}-{a}")
            if b - a > MAX_GRID_VALUES:
                raise ConfigError(f"--grid {key}={text!r}: {b - a + 1} values is more than {MAX_GRID_VALUES}")
            out.extend(str(v) for v in range(a, b + 1))
        else:
            out.append(item)
    return list(dict.fromkeys(out))


def parse_grid(items: Iterable[str | tuple[str, str]]) -> dict[str, list[str]]:
    """``--grid key=values`` options (repeatable; strings or (key, values) pairs) -> {key: values}; a key given
    twice is refused."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = (item[0], "=", item[1]) if isinstance(item, tuple) else str(item).partition("=")
        key = key.strip()
        if not key or not sep:
            raise ConfigError(f"--grid {item!r}: write KEY=VALUES, e.g. --grid adc_bits=2-8 or --grid rows=64,128")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; give all its values in one --grid {key}=...")
        grid[key] = parse_values(key, values)
    return grid
