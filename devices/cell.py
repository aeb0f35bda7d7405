"""The memory-cell interface every synapse model implements, and the exact :class:`IdealCell`.

Conventions (SI units throughout):

* A cell stores one of ``2**cell_bits`` levels. Level ``k`` targets the conductance
  ``g_min_s + k * (g_max_s - g_min_s) / (2**cell_bits - 1)`` (:meth:`MemoryCell.level_conductances`).
* :meth:`MemoryCell.program` maps an integer level array to programmed conductances: target, plus
  programming noise sampled once, plus stuck-at faults (a stuck cell ignores its target).
* :meth:`MemoryCell.read` returns one noisy read of a conductance array; :meth:`read_sigma_s` gives the
  per-read standard deviation, so an engine can sum per-cell noise analytically per column.
* :meth:`MemoryCell.at_time` applies drift / relaxation / retention loss after ``t_s`` seconds.
* :meth:`MemoryCell.pulse` applies signed pulse counts in place of SGD updates: ``n > 0`` potentiates
  (raises G), ``n < 0`` depresses; the change per pulse depends on the present state, saturates at the
  window bounds, and carries cycle-to-cycle noise.
* Read energy is data dependent: ``V_read**2 * G * t_read`` per cell read (:meth:`read_energy_j`);
  write energy and time are per pulse.

Every random draw takes a ``numpy.random.Generator`` so a seed fixes the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cimsim.devices.base import param, validate_fields


class MemoryCell:
    """Base class of the cell models (each a frozen dataclass using :func:`~cimsim.devices.base.param`).

    Subclasses provide the fields or properties ``g_min_s``, ``g_max_s``, ``read_voltage_v``,
    ``read_time_s``, ``write_pulse_time_s`` and override what their physics changes.
    """

    kind: ClassVar[str] = "cell"

    def __post_init__(self):
        validate_fields(self)
        self._check()

    def _check(self) -> None:
        """Cross-field checks of a subclass (raise ConfigError)."""

    # ------------------------------------------------------------------ levels and programming
    @property
    def g_range_s(self) -> float:
        return self.g_max_s - self.g_min_s

    def level_conductances(self, cell_bits: int) -> np.ndarray:
        """The ``2**cell_bits`` target conductances (S), equally spaced from g_min_s to g_max_s."""
        n = 2 ** int(cell_bits)
        if n < 2:
            raise ValueError("cell_bits must be at least 1")
        return np.linspace(self.g_min_s, self.g_max_s, n)  # end levels exactly g_min_s and g_max_s

    @staticmethod
    def _check_levels(levels: np.ndarray, cell_bits: int) -> np.ndarray:
        levels = np.asarray(levels)
        top = 2 ** int(cell_bits) - 1
        if levels.size and (not np.issubdtype(levels.dtype, np.integer) or levels.min() < 0 or levels.max() > top):
            raise ValueError(f"cell levels must be integers in 0..{top} for {cell_bits}-bit cells")
        return levels

    def program(self, levels: np.ndarray, cell_bits: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Programmed conductances (S) for integer ``levels``; noise and faults sampled from ``rng``."""
        levels = self._check_levels(levels, cell_bits)
        return self.level_conductances(cell_bits)[levels]

    def programs_on_levels(self) -> bool:
        """Whether :meth:`program` gives every cell exactly its level's conductance and draws nothing from its
        generator (no programming noise, no faults): an engine may then look the conductances up from the levels
        instead of programming them. True for this base :meth:`program`; a subclass that programs otherwise says
        when (False by default)."""
        return type(self).program is MemoryCell.program

    # ------------------------------------------------------------------ reading
    def read_sigma_s(self, g: np.ndarray) -> np.ndarray:
        """Standard deviation (S) of one read of a cell at conductance ``g``."""
        return np.zeros_like(np.asarray(g, dtype=np.float64))

    def read(self, g: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """One read of every cell: ``g`` plus independent read noise."""
        g = np.asarray(g, dtype=np.float64)
        sigma = self.read_sigma_s(g)
        if rng is None or not np.any(sigma):
            return g.copy()
        return np.maximum(g + sigma * rng.standard_normal(g.shape), 0.0)

    def at_time(self, g: np.ndarray, t_s: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """Conductances ``t_s`` seconds after programming (drift, relaxation, retention loss)."""
        return np.asarray(g, dtype=np.float64).copy()

    def read_energy_j(self, g: np.ndarray, v: float | np.ndarray | None = None) -> np.ndarray:
        """Energy of reading cells at conductance ``g`` with voltage ``v`` (default ``read_voltage_v``)."""
        v = self.read_voltage_v if v is None else v
        return np.square(v) * np.asarray(g, dtype=np.float64) * self.read_time_s

    @property
    def read_latency_s(self) -> float:
        return self.read_time_s

    # ------------------------------------------------------------------ in-place updates
    def pulse(self, g: np.ndarray, n_pulses: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Conductances after applying signed pulse counts (``> 0`` potentiate, ``< 0`` depress)."""
        raise NotImplementedError(f"{type(self).__name__} does not model in-place updates")

    def write_pulse_energy_j(self, g: np.ndarray | None = None) -> float | np.ndarray:
        """Energy of one write pulse (J), optionally as a function of the present state."""
        raise NotImplementedError(f"{type(self).__name__} does not model write pulses")

    @property
    def write_pulse_latency_s(self) -> float:
        return self.write_pulse_time_s

    @property
    def window_pulses(self) -> float:
        """Nominal number of identical pulses that move a cell across its whole window (g_min to g_max).

        An update circuit divides the window by it to know what one pulse is worth; models with in-place
        updates override it (``inf`` where one pulse has no fixed size)."""
        raise NotImplementedError(f"{type(self).__name__} does not model in-place updates")


@dataclass(frozen=True)
class IdealCell(MemoryCell):
    """Exact levels, no noise, no faults, no drift: the cell of the exactness tests.

    Conductances are in units of one level step (g_min 0 S, one step 1 S) so a column sum of
    programmed levels is the exact integer dot product.
    """

    kind: ClassVar[str] = "ideal"

    levels_step_s: float = param(1.0, "S", "exactness convention: one conductance unit per level", lo=0, lo_open=True)
    read_voltage_v: float = param(1.0, "V", "exactness convention: unit read voltage", lo=0, lo_open=True)
    read_time_s: float = param(1e-8, "s", "10 ns read pulse, as the ADC-less SNN paper's NeuroSim evaluation "
                               "(arXiv 2211.02167; docs/references.md#adc-less-snn)", lo=0, lo_open=True)
    write_pulse_time_s: float = param(1e-8, "s", "same as the read pulse", lo=0, lo_open=True)

    @property
    def g_min_s(self) -> float:
        return 0.0

    @property
    def g_max_s(self) -> float:  # the top level of any cell_bits maps to exactly its level index
        return float("inf")

    def level_conductances(self, cell_bits: int) -> np.ndarray:
        n = 2 ** int(cell_bits)
        if n < 2:
            raise ValueError("cell_bits must be at least 1")
        return np.arange(n, dtype=np.float64) * self.levels_step_s

    def pulse(self, g, n_pulses, rng=None):
        """One level step per pulse, no bounds, no noise."""
        return np.asarray(g, dtype=np.float64) + np.asarray(n_pulses) * self.levels_step_s

    def write_pulse_energy_j(self, g=None):
        return 0.0

    @property
    def window_pulses(self) -> float:
        return math.inf  # unbounded levels: no pulse count crosses the window
