"""Equal-area scaling: an architecture with its tile count chosen so the chip matches a given area.

The papers that compare against ISAAC (CASCADE, Neural-PIM) compare at equal chip area: each design gets as
many tiles as fit in the baseline's area. A tiled chip's area is affine in its tile count (per-tile
components times the tiles, plus the chip-level ones), ``A(t) = A_chip + t * A_tile``, with every
component derived from the device models at the operating point (:mod:`cimsim.arch.tiled`); so
``t = round((A - A_chip) / A_tile)``, at least one tile. Tiles are a cost-only parameter: a finished run
can be re-costed at another tile count (:meth:`cimsim.report.Report.recost`).
"""

from __future__ import annotations

from cimsim.arch.base import Architecture
from cimsim.errors import ConfigError


def tile_area_m2(arch: Architecture) -> tuple[float, float]:
    """(area of one tile with its share of everything per tile, area of the chip-level components) in m^2."""
    if not arch.has_param("tiles"):
        raise ConfigError(f"{arch.name} has no tiles, so it cannot be scaled to a chip area; choose a tiled "
                          "architecture (see 'cimsim archs')")
    one, two = arch.with_params(tiles=1).area_m2, arch.with_params(tiles=2).area_m2
    return two - one, one - (two - one)


def scale_to_area(arch: Architecture, area_m2: float) -> Architecture:
    """``arch`` with the tile count whose chip area is closest to ``area_m2`` (at least one tile)."""
    if not (area_m2 > 0):
        raise ConfigError(f"a chip area must be positive, got {area_m2!r} m^2")
    per_tile, fixed = tile_area_m2(arch)
    tiles = max(1, round((area_m2 - fixed) / per_tile))
    return arch.with_params(tiles=tiles)
