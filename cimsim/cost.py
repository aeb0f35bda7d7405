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
    """What one event costs: the component that performs it, its energy, and the time it keeps one
    instance of that component busy (0 for events that do not limit throughput)."""

    component: str
    energy_j: float
    time_s: float = 0.0


@dataclass(frozen=True)
class ComponentCost:
    """A hardware component as the roll-up sees it: how many instances work in parallel, the area and
    the static (leakage) power of one instance."""

    count: float
    area_m2: float
    leakage_w: float = 0.0


@dataclass
class EnergyRollup:
    per_layer: dict[str, float]                  # layer -> J
    per_component: dict[str, float]              # component -> J
    per_layer_component: dict[str, dict[str, float]]

    @property
    def total_j(self) -> float:
        return sum(self.per_layer.values())


@dataclass
class Rollup:
    """Energy (J), latency (s) and area (m^2) of a ledger, per layer and per component."""

    energy_per_layer: dict[str, float]
    energy_per_component: dict[str, float]
    energy_per_layer_component: dict[str, dict[str, float]]
    latency_per_layer: dict[str, float]
    bottleneck_per_layer: dict[str, str]
    area_per_component: dict[str, float]

    @property
    def energy_j(self) -> float:
        return sum(self.energy_per_layer.values())

    @property
    def latency_s(self) -> float:
        return sum(self.latency_per_layer.values())

    @property
    def area_m2(self) -> float:
        return sum(self.area_per_component.values())


def rollup(ledger: EventLedger, events: Mapping[str, EventCost], components: Mapping[str, ComponentCost]) -> Rollup:
    """Cost a ledger with an event table and a component table.

    * Dynamic energy: every event count times its energy (:func:`rollup_energy`).
    * Latency of a layer: its layers run one after another; within a layer all components work in
      parallel, so the layer takes as long as its busiest component:
      ``max_c sum_{events e of c} n_e * time_e / count_c``.
    * Leakage: every instance of every component leaks for the whole latency of every layer:
      ``count_c * leakage_c * latency_layer``, booked to component c.
    * Area: ``sum_c count_c * area_c``.
    """
    unknown = sorted({c.component for c in events.values()} - set(components))
    if unknown:
        raise KeyError(f"event table names component(s) {', '.join(unknown)} missing from the component table")
    dyn = rollup_energy(ledger, events)
    latency, bottleneck = {}, {}
    cross = {l: dict(row) for l, row in dyn.per_layer_component.items()}
    for layer in ledger.layers():
        busy: dict[str, float] = {}
        for event, n in ledger.layer(layer).items():
            cost = events[event]
            busy[cost.component] = busy.get(cost.component, 0.0) + n * cost.time_s / components[cost.component].count
        name, t = max(busy.items(), key=lambda kv: kv[1], default=("", 0.0))
        latency[layer], bottleneck[layer] = t, name
        for comp, spec in components.items():
            leak = spec.count * spec.leakage_w * t
            if leak:
                cross[layer][comp] = cross[layer].get(comp, 0.0) + leak
    per_layer = {l: sum(row.values()) for l, row in cross.items()}
    per_component: dict[str, float] = {}
    for row in cross.values():
        for comp, e in row.items():
            per_component[comp] = per_component.get(comp, 0.0) + e
    area = {c: spec.count * spec.area_m2 for c, spec in components.items()}
    return Rollup(per_layer, per_component, cross, latency, bottleneck, area)


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
