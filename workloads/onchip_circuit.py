"""On-chip learning, the update circuit: SGD weight updates to per-synapse write pulses."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cimsim.devices.cell import MemoryCell
from cimsim.errors import ConfigError


@dataclass(frozen=True)
class UpdateCircuit:
    """Turns SGD weight updates into per-synapse pulses.

    ``mode="count"``: identical pulses, the count ``n = round(dw / dw_pulse)`` (``rounding`` nearest, half
    away from zero, or stochastic), clipped to ``max_pulses``; each pulse is applied through the device
    law one at a time, so its energy is taken at the state it starts from. ``mode="width"``: one pulse per
    synapse whose width is ``|dw| / dw_pulse`` nominal pulses, resolved to ``width_resolution`` of a pulse
    (the update circuit's timer) and clipped to ``max_pulses``; its energy is ``width x`` that of one
    nominal pulse. ``dw_pulse`` is the weight change of one nominal pulse on the pair.
    """

    mode: str = "count"
    rounding: str = "nearest"
    # (est.) a 4-bit pulse-width counter: 1/16 of the nominal pulse is the finest width the timer resolves
    width_resolution: float = 1.0 / 16
    # (est.) per-update saturation of the pulse generator: 16 nominal pulses (a 4-bit counter)
    max_pulses: int = 16

    def __post_init__(self):
        if self.mode not in ("count", "width"):
            raise ConfigError(f"UpdateCircuit.mode = {self.mode!r}: choose 'count' or 'width'")
        if self.rounding not in ("nearest", "stochastic"):
            raise ConfigError(f"UpdateCircuit.rounding = {self.rounding!r}: choose 'nearest' or 'stochastic'")
        if not 0 < self.width_resolution <= 1:
            raise ConfigError("UpdateCircuit.width_resolution must lie in (0, 1] (a fraction of one pulse)")
        if int(self.max_pulses) != self.max_pulses or self.max_pulses < 1:
            raise ConfigError("UpdateCircuit.max_pulses must be a positive whole number")

    @property
    def quantum(self) -> float:
        """The smallest pulse amount the circuit issues: one pulse, or ``width_resolution`` of one."""
        return 1.0 if self.mode == "count" else float(self.width_resolution)

    def pulses(self, dw: np.ndarray, dw_per_pulse: float, rng: np.random.Generator | None = None,
               uniforms: np.ndarray | None = None) -> np.ndarray:
        """Signed pulse amounts (in nominal pulses) for the weight updates ``dw``.

        Sign of the result = sign of ``dw`` (or 0); size non-decreasing in ``|dw|`` (nearest rounding).
        Stochastic rounding ``floor(u + r)`` (``u = dw / quantum``, ``E = u``) takes ``r`` from ``uniforms``
        (same shape as ``dw``, in [0, 1): counter-based draws, as the compiled kernel's) or else from ``rng``;
        with neither it rounds to nearest.
        """
        u = np.asarray(dw, dtype=np.float64) / (dw_per_pulse * self.quantum)
        if self.rounding == "nearest" or (rng is None and uniforms is None):
            k = np.sign(u) * np.floor(np.abs(u) + 0.5)
        else:
            r = np.asarray(uniforms, dtype=np.float64).reshape(u.shape) if uniforms is not None else rng.random(u.shape)
            k = np.floor(u + r)
        top = math.floor(self.max_pulses / self.quantum)
        return np.clip(k, -top, top) * self.quantum

    def apply(self, cell: MemoryCell, g: np.ndarray, n: np.ndarray, rng: np.random.Generator | None = None):
        """Apply signed pulse amounts ``n`` to conductances ``g`` (same shape, last axis = rows/inputs).

        Returns ``(g_new, pulses, energy_j, slots)``: the number of write pulses issued, their summed
        energy (each pulse at the state it starts from) and the write time in nominal pulse widths when
        the rows (last axis) are written one after the other and the cells of a row in parallel.
        """
        g = np.array(g, dtype=np.float64)
        n = np.asarray(n, dtype=np.float64)
        amount = np.abs(n)
        rows_axis = tuple(range(n.ndim - 1))
        slots = float(amount.max(axis=rows_axis).sum()) if n.size else 0.0
        energy = 0.0
        if self.mode == "width":
            m = amount > 0
            pulses = int(m.sum())
            if pulses:
                e = np.broadcast_to(cell.write_pulse_energy_j(g[m]), (pulses,))
                energy = float(np.sum(e * amount[m]))
                g[m] = cell.pulse(g[m], n[m], rng)
            return g, pulses, energy, slots
        count = np.rint(amount).astype(np.int64)
        sign = np.sign(n)
        pulses = int(count.sum())
        for i in range(int(count.max()) if count.size else 0):
            m = count > i
            gm = g[m]
            energy += float(np.sum(np.broadcast_to(cell.write_pulse_energy_j(gm), gm.shape)))
            g[m] = cell.pulse(gm, sign[m], rng)
        return g, pulses, energy, slots


