"""Cost roll-up: an event ledger, an architecture's event costs, static power and timing give energy per layer
and per component, latency, throughput and area (:func:`rollup`, the one roll-up every architecture uses).

Technology-node scaling (:func:`area_scale`, :func:`energy_scale`, :func:`delay_scale`) lives with the
device models in :mod:`cimsim.devices.technology` and is re-exported here for cost tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass
class EnergyRollup:
    per_layer: dict[str, float]                  # layer -> J
    per_component: dict[str, float]              # component -> J
    per_layer_component: dict[str, dict[str, float]]

    @property
    def total_j(self) -> float:
        return sum(self.per_layer.values())


@dataclass
class LayerPlan:
    """What the cost model knows of one mapped layer (the mapper decides it; reports keep it)."""

    name: str
    kind: str
    in_features: int            # reduction length per group (C_in/groups * kernel)
    out_features: int
    groups: int
    positions: int = 1          # output positions (matrix-vector products) per inference
    input_signed: bool = False
    input_scale: float = 1.0
    arrays: int = 0             # crossbar arrays holding one copy of the layer
    row_blocks: int = 0
    input_bits: int = 0         # bits of the layer's inputs when not the architecture's (1: spikes); 0 = the arch's
    time_steps: int = 1         # calls per inference (a spiking network's time steps); positions include them
    input_values: int = 0       # the layer's input tensor's elements per inference (time steps included); 0 = unknown

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: Mapping) -> "LayerPlan":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Timing:
    """An architecture's timing of one inference.

    ``latency_per_layer`` (s) adds up to the latency; ``period_s`` is the time between inferences when the
    chip streams them (1 / throughput: the slowest pipeline stage, or the latency without a pipeline);
    ``occupancy`` is the fraction of the chip's hardware each layer holds (its share of the static power;
    hardware no layer holds is taken as power-gated); ``copies`` the copies of each mapped layer; ``config``
    anything else worth reporting."""

    latency_per_layer: dict[str, float]
    period_s: float
    occupancy: dict[str, float] = field(default_factory=dict)
    copies: dict[str, int] = field(default_factory=dict)
    config: dict = field(default_factory=dict)


@dataclass
class Cost:
    """Energy (J), latency (s), throughput and area of one inference, per layer and per component."""

    energy_per_layer: dict[str, float]
    energy_per_component: dict[str, float]
    energy_per_layer_component: dict[str, dict[str, float]]
    leakage_per_component: dict[str, float]
    latency_per_layer: dict[str, float]
    throughput_inf_per_s: float
    area_m2: float
    copies: dict[str, int] = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    @property
    def energy_j(self) -> float:
        return sum(self.energy_per_layer.values())

    @property
    def latency_s(self) -> float:
        return sum(self.latency_per_layer.values())


def rollup(ledger: EventLedger, events: Mapping[str, EventCost], leakage_w: Mapping[str, float], timing: Timing,
           area_m2: float) -> Cost:
    """The one cost roll-up every architecture uses.

    * Dynamic energy: every event count times its energy (:func:`rollup_energy`; an uncosted event raises).
    * Static energy: the chip's static power per component (``leakage_w``, W, summed over the hierarchy) over
      one inference's share of time, ``period_s``, for the hardware each layer occupies:
      ``occupancy[layer] * leakage_w[c] * period_s``, booked to the layer and to component c.
    * Latency, throughput (``1 / period_s``) and area as the architecture's timing and inventory give them.
    """
    dyn = rollup_energy(ledger, events)
    cross = {l: dict(row) for l, row in dyn.per_layer_component.items()}
    leak: dict[str, float] = {}
    total_occ = sum(timing.occupancy.values())
    scale = 1.0 / total_occ if total_occ > 1 else 1.0       # more layers than the chip holds: all of it leaks
    for layer, occ in timing.occupancy.items():
        for comp, watts in leakage_w.items():
            e = occ * scale * watts * timing.period_s
            if e:
                row = cross.setdefault(layer, {})
                row[comp] = row.get(comp, 0.0) + e
                leak[comp] = leak.get(comp, 0.0) + e
    per_layer = {l: float(sum(row.values())) for l, row in cross.items()}
    per_component: dict[str, float] = {}
    for row in cross.values():
        for comp, e in row.items():
            per_component[comp] = per_component.get(comp, 0.0) + e
    throughput = 1.0 / timing.period_s if timing.period_s > 0 else float("inf")
    return Cost(per_layer, per_component, cross, leak, dict(timing.latency_per_layer), throughput, area_m2,
                dict(timing.copies), dict(timing.config))


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
