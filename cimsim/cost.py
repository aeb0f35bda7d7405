"""Cost roll-up: an event ledger plus a component table gives energy per layer and per component.

Technology-node scaling (:func:`area_scale`, :func:`energy_scale`, :func:`delay_scale`) lives with the
device models in :mod:`cimsim.devices.technology` and is re-exported here for cost tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from cimsim.devices.technology import area_scale, delay_scale, energy_scale, nominal_vdd_v  # noqa: F401
from cimsim.ledger import EventLedger


@dataclass(frozen=True)
class EventCost:
    """The energy one event costs and the hardware component that spends it."""

    component: str
    energy_j: float


@dataclass
class EnergyRollup:
    per_layer: dict[str, float]                  # layer -> J
    per_component: dict[str, float]              # component -> J
    per_layer_component: dict[str, dict[str, float]]

    @property
    def total_j(self) -> float:
        return sum(self.per_layer.values())


def rollup_energy(ledger: EventLedger, table: Mapping[str, EventCost]) -> EnergyRollup:
    """Apply ``table`` (event kind -> EventCost) to every count in ``ledger``.

    Every event kind in the ledger must have a cost: an uncosted event would silently vanish from the
    totals, so it raises ``KeyError`` naming the event.
    """
    missing = [e for e in ledger.events() if e not in table]
    if missing:
        raise KeyError(f"no cost for event kind(s) {', '.join(missing)} in the component table")
    per_layer, per_component, cross = {}, {}, {}
    for layer in ledger.layers():
        row = {}
        for event, n in ledger.layer(layer).items():
            cost = table[event]
            row[cost.component] = row.get(cost.component, 0.0) + n * cost.energy_j
        cross[layer] = row
        per_layer[layer] = sum(row.values())
        for comp, e in row.items():
            per_component[comp] = per_component.get(comp, 0.0) + e
    return EnergyRollup(per_layer, per_component, cross)
