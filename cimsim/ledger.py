"""The event ledger: what the hardware did, counted per layer and per event kind.

A ledger holds plain counts (MACs, cell reads, conversions, bytes moved, cycles ...), never energies:
costs come from applying an architecture's component table to the counts (:mod:`cimsim.cost`), so the
same run can be costed under several technology assumptions. Ledgers add up and scale.
"""

from __future__ import annotations

from typing import Iterable, Mapping


class EventLedger:
    """Counts of events per layer; layers keep the order in which they first appear."""

    def __init__(self, counts: Mapping[str, Mapping[str, float]] | None = None):
        self._counts: dict[str, dict[str, float]] = {}
        for layer, events in (counts or {}).items():
            self.touch(layer)  # keep layers without events (touch()ed ones) and their order
            for event, n in events.items():
                self.add(layer, event, n)

    def add(self, layer: str, event: str, count: float = 1) -> None:
        if count < 0:
            raise ValueError(f"event counts are non-negative, got {count} for {layer}/{event}")
        row = self._counts.setdefault(layer, {})
        row[event] = row.get(event, 0) + count

    def touch(self, layer: str) -> None:
        """Register a layer that caused no event (so it still appears in per-layer tables)."""
        self._counts.setdefault(layer, {})

    def layers(self) -> list[str]:
        return list(self._counts)

    def events(self) -> list[str]:
        return sorted({e for row in self._counts.values() for e in row})

    def layer(self, layer: str) -> dict[str, float]:
        return dict(self._counts.get(layer, {}))

    def count(self, event: str, layer: str | None = None) -> float:
        if layer is not None:
            return self._counts.get(layer, {}).get(event, 0)
        return sum(row.get(event, 0) for row in self._counts.values())

    def totals(self) -> dict[str, float]:
        return {e: self.count(e) for e in self.events()}

    def scaled(self, factor: float) -> "EventLedger":
        """A new ledger with every count multiplied by ``factor`` (e.g. 1/N for per-inference counts)."""
        return EventLedger({l: {e: n * factor for e, n in row.items()} for l, row in self._counts.items()})

    def __add__(self, other: "EventLedger") -> "EventLedger":
        out = EventLedger(self._counts)
        out += other
        return out

    def __iadd__(self, other: "EventLedger") -> "EventLedger":
        for layer in other.layers():
            self.touch(layer)
            for event, n in other.layer(layer).items():
                self.add(layer, event, n)
        return self

    def __eq__(self, other) -> bool:
        return isinstance(other, EventLedger) and self.to_dict() == other.to_dict()

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {l: dict(row) for l, row in self._counts.items()}

    @classmethod
    def merge(cls, ledgers: Iterable["EventLedger"]) -> "EventLedger":
        out = cls()
        for led in ledgers:
            out += led
        return out

    def __repr__(self) -> str:
        return f"EventLedger({len(self._counts)} layers, totals={self.totals()})"
