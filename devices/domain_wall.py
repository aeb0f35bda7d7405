"""Spin-orbit-torque (SOT) driven domain-wall synapse with a finite number of pinning sites.

The device of arXiv 1811.09966 (docs/references.md#domain-wall-synapse): a ferromagnetic track on a heavy-metal (HM)
layer; a write current through the HM exerts a spin-orbit torque that moves a domain wall along the
track, and a magnetic tunnel junction on top reads a conductance set by the wall position. The numbers
below are estimates (marked "(est.)" with their reasoning) unless a source says otherwise.

Laws (SI units):

* Conductance: the MTJ is two parallel parts, the stretch of length ``x`` parallel to the reference
  layer and the rest antiparallel, so ``G(x) = G_AP + (G_P - G_AP) * x / L``. ``x = 0`` is all-AP
  (``g_min_s = G_AP``), ``x = L`` all-P (``g_max_s = G_P``).
* Pinning: the wall rests only at ``n_states`` sites ``x_k = k * L / (n_states - 1)``, ``k = 0 ..
  n_states - 1`` (notches), so the cell has exactly ``n_states`` conductances (:attr:`states`).
* Motion: during one pulse of current density ``J`` and width ``t_p`` the wall moves
  ``d = v(J) * t_p`` with ``v = mobility * (J - J_dep)`` for ``J > J_dep`` and ``v = 0`` otherwise
  (depinning threshold). At the end of the pulse it relaxes into the nearest site, so each pulse moves
  it ``s = floor(d / pitch + 1/2)`` sites (nearest, half-way rounds up; ``d < pitch / 2`` falls back
  into the same notch). The sign of the pulse count is the current direction: ``n > 0`` moves toward
  ``x = L`` (higher G), ``n < 0`` toward 0; the wall stops at the track ends.
* Stochastic pinning: each pulse that should move the wall fails (the wall stays pinned) with
  probability ``p_pin``, independently (thermally activated depinning), so ``|n|`` pulses move it
  ``s * Binomial(|n|, 1 - p_pin)`` sites. Without an ``rng`` no pulse fails.
* Write energy: the write current flows along the whole HM strip under the track (length ``L``, width
  ``w``, thickness ``t_HM``); Joule heat ``I^2 R t_p`` with ``I = J w t_HM`` and ``R = rho L / (w t_HM)``
  is ``J^2 * rho * (L * w * t_HM) * t_p`` per pulse. Read energy ``V_read^2 * G * t_read`` (base class).
* Retention: a pinned wall is thermally stable (non-volatile); :meth:`at_time` is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from cimsim.devices.base import param
from cimsim.devices.cell import MemoryCell
from cimsim.errors import ConfigError


@dataclass(frozen=True)
class DomainWallSynapse(MemoryCell):
    """SOT domain-wall synapse: G linear in wall position, pinning sites, threshold motion (arXiv 1811.09966)."""

    kind: ClassVar[str] = "domain-wall"

    # --- geometry of the track and of the heavy-metal write path --------------------------------------
    # (est.) 620 nm = 31 gaps of 20 nm between 32 notches; 20 nm exceeds the ~5-10 nm width of a wall in a
    # perpendicular-anisotropy film, so neighbouring sites are distinct.
    length_m: float = param(620e-9, "m", "(est.) track length: 31 gaps of 20 nm between 32 pinning sites "
                            "(pitch > ~5-10 nm wall width); DW track of arXiv 1811.09966", lo=0, lo_open=True)
    width_m: float = param(100e-9, "m", "(est.) 100 nm track width, typical of lithographed SOT nanotracks",
                           lo=0, lo_open=True)
    # (est.) heavy-metal (e.g. Pt) layers in SOT stacks are a few nm thick, near the spin-diffusion length.
    hm_thickness_m: float = param(5e-9, "m", "(est.) 5 nm heavy-metal layer (a few nm, ~spin-diffusion "
                                  "length of Pt)", lo=0, lo_open=True)
    # (est.) thin-film Pt ~20 uOhm*cm (bulk 10.6 uOhm*cm, higher in nm films).
    rho_hm_ohm_m: float = param(2e-7, "ohm*m", "(est.) thin-film Pt resistivity ~20 uOhm*cm (bulk 10.6)",
                                lo=0, lo_open=True)
    # --- states ---------------------------------------------------------------------------------------
    # (est.) 32 notches = 5-bit synapse; enough for SGD updates of a few-bit weight.
    n_states: int = param(32, "1", "(est.) 32 pinning sites (5-bit synapse); finite pinning positions = "
                          "finite states, arXiv 1811.09966 (docs/references.md#domain-wall-synapse)", lo=2)
    # (est.) MTJ with R_P = 10 kOhm and TMR = 150 % (CoFeB/MgO junctions reach 100-200 % at room
    # temperature): G_P = 100 uS, G_AP = 1 / (2.5 * 10 kOhm) = 40 uS.
    g_p_s: float = param(1e-4, "S", "(est.) parallel-state MTJ conductance, R_P = 10 kOhm", lo=0, lo_open=True)
    g_ap_s: float = param(4e-5, "S", "(est.) antiparallel conductance, R_AP = R_P * (1 + TMR), TMR = 150 % "
                          "(CoFeB/MgO, 100-200 % at room temperature)", lo=0, lo_open=True)
    # --- wall motion --------------------------------------------------------------------------------
    # (est.) micromagnetic and experimental SOT depinning thresholds from notches are ~1e10-1e11 A/m^2.
    j_dep_a_per_m2: float = param(5e10, "A/m^2", "(est.) depinning current density from a notch, "
                                  "~1e10-1e11 A/m^2 for SOT-driven walls; threshold motion per arXiv 1811.09966",
                                  lo=0)
    # (est.) SOT-driven walls in Pt/Co(Fe) stacks reach a few hundred m/s near 1e12 A/m^2:
    # ~2e-10 (m/s) per (A/m^2).
    mobility_m3_per_a_s: float = param(2e-10, "m^3/(A*s)", "(est.) wall velocity per (J - J_dep): a few hundred "
                                       "m/s at ~1e12 A/m^2 in Pt/Co(Fe) SOT stacks", lo=0)
    # (est.) J_write = 1.5e11 A/m^2: v = 2e-10 * 1e11 = 20 m/s, so a 1 ns pulse moves one 20 nm site.
    j_write_a_per_m2: float = param(1.5e11, "A/m^2", "(est.) write current density: v = 20 m/s, one 20 nm site "
                                    "per 1 ns pulse (I = J*w*t_HM = 75 uA)", lo=0)
    t_pulse_s: float = param(1e-9, "s", "(est.) 1 ns write pulse (sub-ns to ns pulses drive SOT wall motion)",
                             lo=0, lo_open=True)
    # (est.) thermally activated depinning makes a few % of pulses fail at 3x the threshold drive.
    p_pin: float = param(0.05, "1", "(est.) probability that a pulse which should move the wall leaves it "
                         "pinned (thermal stochasticity of depinning, a few %)", lo=0, hi=1)
    # --- reading ------------------------------------------------------------------------------------
    read_voltage_v: float = param(0.1, "V", "(est.) 0.1 V MTJ read bias, far below barrier breakdown; the "
                                  "read path bypasses the HM so it cannot move the wall", lo=0, lo_open=True)
    read_time_s: float = param(1e-8, "s", "(est.) 10 ns read pulse, as the ADC-less SNN paper's NeuroSim "
                               "evaluation (arXiv 2211.02167; docs/references.md#adc-less-snn)", lo=0, lo_open=True)
    # (est.) MTJ read noise (shot + thermal) over 10 ns at 0.1 V: a few 0.1 % of G.
    read_noise_rel: float = param(2e-3, "1", "(est.) MTJ thermal + shot noise over a 10 ns read at 0.1 V, "
                                  "~0.2 % of G", lo=0)

    def _check(self) -> None:
        name = type(self).__name__
        if int(self.n_states) != self.n_states:
            raise ConfigError(f"{name}.n_states = {self.n_states!r} is out of range: it must be a whole "
                              "number >= 2")
        if self.g_p_s <= self.g_ap_s:
            raise ConfigError(f"{name}.g_p_s = {self.g_p_s!r} S is out of range: it must be > g_ap_s = "
                              f"{self.g_ap_s:g} S (the parallel state conducts more)")

    # ------------------------------------------------------------------ derived quantities
    @property
    def g_min_s(self) -> float:
        return float(self.g_ap_s)

    @property
    def g_max_s(self) -> float:
        return float(self.g_p_s)

    @property
    def tmr(self) -> float:
        """Tunnel magnetoresistance ratio ``(R_AP - R_P) / R_P = G_P / G_AP - 1``."""
        return self.g_p_s / self.g_ap_s - 1.0

    @property
    def write_pulse_time_s(self) -> float:
        return self.t_pulse_s

    @property
    def pitch_m(self) -> float:
        """Distance between neighbouring pinning sites, ``L / (n_states - 1)`` (m)."""
        return self.length_m / (int(self.n_states) - 1)

    @property
    def states(self) -> np.ndarray:
        """The ``n_states`` conductances (S) of the pinning sites, ascending."""
        return self.g_from_site(np.arange(int(self.n_states)))

    @property
    def volume_m3(self) -> float:
        """Volume of the heavy-metal write path, ``L * w * t_HM`` (m^3)."""
        return self.length_m * self.width_m * self.hm_thickness_m

    @property
    def write_current_a(self) -> float:
        """Write current ``J * w * t_HM`` (A)."""
        return self.j_write_a_per_m2 * self.width_m * self.hm_thickness_m

    def velocity_m_per_s(self, j_a_per_m2=None):
        """Wall velocity ``mobility * (J - J_dep)`` above the depinning threshold, 0 at or below it."""
        j = self.j_write_a_per_m2 if j_a_per_m2 is None else j_a_per_m2
        return self.mobility_m3_per_a_s * np.maximum(np.asarray(j, dtype=np.float64) - self.j_dep_a_per_m2, 0.0)

    @property
    def window_pulses(self) -> float:
        """Pulses that move the wall from one end of the track to the other: ``(n_states - 1) / s``."""
        return (int(self.n_states) - 1) / self.sites_per_pulse()

    def one_site_pulse_s(self, j_a_per_m2=None) -> float:
        """Pulse width (s) that moves the wall exactly one pitch at current density ``J``: ``pitch / v(J)``."""
        v = float(self.velocity_m_per_s(j_a_per_m2))
        if v <= 0:
            raise ConfigError(f"{type(self).__name__}: the write current density is at or below the depinning "
                              "threshold, so no pulse width moves the wall; raise j_write_a_per_m2")
        return self.pitch_m / v

    def with_pinning_sites(self, n_states: int) -> "DomainWallSynapse":
        """The same track with ``n_states`` pinning sites and the update pulse narrowed (or widened) to move
        the wall one site, as the update circuit of a finer track would: the write current density stays,
        so a pulse's energy scales with its width and crossing the track costs the same at any count."""
        d = replace(self, n_states=int(n_states))
        return replace(d, t_pulse_s=d.one_site_pulse_s())

    def sites_per_pulse(self, j_a_per_m2=None) -> int:
        """Sites one pulse moves the wall: ``floor(v(J) * t_p / pitch + 1/2)``."""
        d = float(self.velocity_m_per_s(j_a_per_m2)) * self.t_pulse_s
        return int(np.floor(d / self.pitch_m + 0.5))

    # ------------------------------------------------------------------ position <-> conductance
    def g_from_position(self, x_m):
        """``G_AP + (G_P - G_AP) * x / L`` (S) for wall position ``x_m`` (m), not snapped."""
        x = np.asarray(x_m, dtype=np.float64)
        return self.g_ap_s + (self.g_p_s - self.g_ap_s) * (x / self.length_m)

    def position_m(self, g):
        """Wall position (m) of conductance ``g`` (S), the inverse of :meth:`g_from_position`, not snapped."""
        g = np.asarray(g, dtype=np.float64)
        return (g - self.g_ap_s) / (self.g_p_s - self.g_ap_s) * self.length_m

    def g_from_site(self, k):
        """Conductance (S) of pinning site ``k``."""
        k = np.asarray(k, dtype=np.float64)
        return self.g_ap_s + (self.g_p_s - self.g_ap_s) * (k / (int(self.n_states) - 1))

    def site_index(self, g):
        """Nearest pinning site of conductance ``g``, clipped to ``[0, n_states - 1]`` (half-way rounds up)."""
        u = (np.asarray(g, dtype=np.float64) - self.g_ap_s) / (self.g_p_s - self.g_ap_s) * (int(self.n_states) - 1)
        return np.clip(np.floor(u + 0.5), 0, int(self.n_states) - 1).astype(np.int64)

    # ------------------------------------------------------------------ levels and programming
    def level_conductances(self, cell_bits: int) -> np.ndarray:
        """The ``2**cell_bits`` equally spaced targets, each snapped to its nearest pinning site.

        Raises ConfigError when ``2**cell_bits > n_states``: the track has fewer sites than levels.
        Snapped levels are distinct and ascending; they are exactly equally spaced when
        ``2**cell_bits - 1`` divides ``n_states - 1``.
        """
        n = 2 ** int(cell_bits)
        if n < 2:
            raise ValueError("cell_bits must be at least 1")
        m = int(self.n_states)
        if n > m:
            raise ConfigError(f"{type(self).__name__}.n_states = {m} pinning sites cannot hold "
                              f"2**{int(cell_bits)} = {n} levels: use cell_bits <= {m.bit_length() - 1} "
                              "or raise n_states")
        sites = np.floor(np.arange(n) * ((m - 1) / (n - 1)) + 0.5)
        return self.g_from_site(sites)

    def program(self, levels, cell_bits, rng=None):
        """Programmed conductances: the snapped level sites exactly (write-and-verify lands on the notch)."""
        return self.level_conductances(cell_bits)[self._check_levels(levels, cell_bits)]

    def programs_on_levels(self) -> bool:
        """Write-and-verify lands on the snapped site: always (unless a subclass programs otherwise)."""
        return type(self).program is DomainWallSynapse.program

    def read_sigma_s(self, g):
        return self.read_noise_rel * np.abs(np.asarray(g, dtype=np.float64))

    def at_time(self, g, t_s, rng=None):
        """Non-volatile: a pinned wall does not move, so G is unchanged."""
        if not t_s >= 0:
            raise ConfigError(f"{type(self).__name__}.at_time: t_s = {t_s!r} s must be >= 0")
        return np.asarray(g, dtype=np.float64).copy()

    # ------------------------------------------------------------------ in-place updates
    def pulse(self, g, n_pulses, rng=None):
        """Move each wall by its signed pulse count (``n > 0`` toward G_P), snapped to sites, stopped at the ends.

        ``g`` is first snapped to its nearest site; non-integer pulse counts are rounded to the nearest
        integer. With ``rng``, each pulse independently fails with probability ``p_pin``.
        """
        k = self.site_index(g)
        n = np.rint(np.asarray(n_pulses, dtype=np.float64)).astype(np.int64)
        k, n = np.broadcast_arrays(k, n)
        count = np.abs(n)
        if rng is not None and self.p_pin > 0.0:
            count = rng.binomial(count, 1.0 - self.p_pin)
        k_new = np.clip(k + np.sign(n) * count * self.sites_per_pulse(), 0, int(self.n_states) - 1)
        return self.g_from_site(k_new)

    def write_pulse_energy_j(self, g=None):
        """Joule heat of one write pulse in the heavy-metal strip, ``J^2 * rho * L * w * t_HM * t_p`` (J)."""
        return self.j_write_a_per_m2 ** 2 * self.rho_hm_ohm_m * self.volume_m3 * self.t_pulse_s
