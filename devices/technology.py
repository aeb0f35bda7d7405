"""Technology-node scaling of energy, area and delay between CMOS nodes.

First-order (constant-field style) scaling with each node's nominal supply voltage:

* area scales with the square of the feature size: ``(to / from)**2``;
* switching energy ``C * V**2`` scales with capacitance (proportional to feature size) and the square of
  the nominal supply: ``(to / from) * (Vdd(to) / Vdd(from))**2``;
* gate delay ``C * V / I`` scales roughly with feature size: ``to / from``.

Nominal supplies per node are the typical values tabulated by Stillmaker & Baas, "Scaling equations for
the accurate prediction of CMOS device performance from 180 nm to 7 nm", Integration 58 (2017), Table 2
(est.: values recalled, not re-read; they match the usual foundry nominal supplies). Nodes between table
entries are interpolated linearly in log(node).
"""

from __future__ import annotations

import math

from cimsim.errors import ConfigError

# node (nm) -> nominal Vdd (V); Stillmaker & Baas 2017, Table 2 (est., see module docstring)
NOMINAL_VDD_V: dict[float, float] = {
    180: 1.8, 130: 1.3, 90: 1.2, 65: 1.1, 45: 1.0, 32: 0.9, 28: 0.9, 22: 0.8, 16: 0.8, 14: 0.8, 10: 0.75, 7: 0.7,
}
MIN_NODE_NM, MAX_NODE_NM = 7.0, 180.0


def _check(node_nm: float) -> float:
    try:
        n = float(node_nm)
    except (TypeError, ValueError):
        raise ConfigError(f"technology node must be a number of nanometres, got {node_nm!r}") from None
    if not (MIN_NODE_NM <= n <= MAX_NODE_NM):
        raise ConfigError(f"technology node {node_nm} nm is outside the modelled range "
                          f"{MIN_NODE_NM:g}-{MAX_NODE_NM:g} nm")
    return n


def nominal_vdd_v(node_nm: float) -> float:
    """Nominal supply voltage (V) of a node, interpolated in log(node) between table entries."""
    n = _check(node_nm)
    nodes = sorted(NOMINAL_VDD_V)
    if n in NOMINAL_VDD_V:
        return NOMINAL_VDD_V[n]
    for a, b in zip(nodes, nodes[1:]):
        if a <= n <= b:
            w = (math.log(n) - math.log(a)) / (math.log(b) - math.log(a))
            return NOMINAL_VDD_V[a] + w * (NOMINAL_VDD_V[b] - NOMINAL_VDD_V[a])
    raise AssertionError("unreachable")  # pragma: no cover


def area_scale(from_nm: float, to_nm: float) -> float:
    """Factor that takes an area at ``from_nm`` to ``to_nm``."""
    return (_check(to_nm) / _check(from_nm)) ** 2


def energy_scale(from_nm: float, to_nm: float) -> float:
    """Factor that takes a switching energy at ``from_nm`` to ``to_nm`` (C ~ node, E = C V^2)."""
    return (_check(to_nm) / _check(from_nm)) * (nominal_vdd_v(to_nm) / nominal_vdd_v(from_nm)) ** 2


def delay_scale(from_nm: float, to_nm: float) -> float:
    """Factor that takes a gate delay at ``from_nm`` to ``to_nm``."""
    return _check(to_nm) / _check(from_nm)
