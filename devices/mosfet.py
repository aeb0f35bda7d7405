"""One conventional MOSFET as a synapse: conductance set by a gate voltage held on a capacitor.

The device of arXiv 1907.00625 (docs/references.md#mosfet-synapse): a single silicon MOSFET (no floating gate)
whose gate node is a storage capacitor; a weight-update circuit charges or discharges that capacitor
with current pulses, and the channel conductance read at a small drain-source voltage stores the weight.
The numbers below are estimates (marked "(est.)" with their reasoning) unless a source says otherwise.

Laws (SI units):

* Drain current of the long-channel square-law transistor at gate overdrive ``V_ov = V_G - V_T``::

      cut-off     V_ov <= 0          I_D = 0
      saturation  0 < V_ov < V_DS    I_D = beta * V_ov**2 / 2
      triode      V_ov >= V_DS       I_D = beta * (V_ov * V_DS - V_DS**2 / 2)

  with ``beta = k' * W / L`` and ``k' = mu * Cox``. The conductance is the chord ``G = I_D / V_DS``,
  so in triode ``G(V_G) = beta * (V_G - V_T - V_DS / 2)``. The ``V_DS / 2`` term is kept: it makes
  ``I = G * V_DS`` exact at the read voltage (which is what a crossbar sums), and G stays linear in V_G.
  The configured gate window ``[v_g_min_v, v_g_max_v]`` lies wholly in triode (checked), so inside the
  window only the linear branch applies; the other two branches matter only for a gate that leaked
  below the window (:meth:`MOSFETSynapse.at_time`). ``g_min_s`` / ``g_max_s`` are G at the window ends.
* Update: ``n`` current pulses of ``I`` for ``dt`` move the gate by ``n * I * dt / C`` (sign of ``n`` =
  charge or discharge), so the change is linear and symmetric; the update circuit cannot drive the gate
  beyond its window, so the result is clipped there. Cycle-to-cycle noise: the charge of each pulse has
  a relative Gaussian spread ``c2c_sigma_rel``, so ``n`` pulses add a Gaussian gate error of standard
  deviation ``sqrt(|n|) * c2c_sigma_rel * I * dt / C``.
* Retention: the storage node leaks through the off switch and its junction to ground, an RC discharge
  ``V_G(t) = V_rest + (V_G(0) - V_rest) * exp(-t / tau)`` with ``V_rest = v_rest_v`` (default 0 V, the
  ground the charge leaks to). The gate may thus leave the window from below and the transistor cut off
  (G -> 0): a weight that is not refreshed is lost, which is what the physics says.
* Energy: a write pulse draws ``V_supply * I * dt`` from the update circuit's supply; a read costs
  ``V_DS**2 * G * t_read`` (base class).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cimsim.devices.base import param
from cimsim.devices.cell import MemoryCell
from cimsim.errors import ConfigError


@dataclass(frozen=True)
class MOSFETSynapse(MemoryCell):
    """Single-MOSFET synapse: gate voltage on a capacitor, linear symmetric pulse updates (arXiv 1907.00625)."""

    kind: ClassVar[str] = "mosfet"

    # --- transistor -------------------------------------------------------------------------------
    # (est.) W/L = 0.25 (W 0.5 um, L 2 um): a long, narrow channel keeps the square law valid and puts
    # the conductance window at ~5-100 uS with the k' below; arXiv 1907.00625 uses one such transistor.
    width_m: float = param(0.5e-6, "m", "(est.) W = 0.5 um, long-channel device so that W/L = 0.25 gives a "
                           "~5-100 uS window; single-transistor synapse of arXiv 1907.00625", lo=0, lo_open=True)
    length_m: float = param(2e-6, "m", "(est.) L = 2 um, long channel: square-law triode model holds, "
                            "short-channel effects negligible", lo=0, lo_open=True)
    # (est.) k' = mu_n * Cox for a 180 nm-class NMOS: mu_n ~ 0.035 m^2/(V s) (inversion-layer mobility),
    # Cox = eps_ox / t_ox = 3.45e-11 / 4e-9 ~ 8.6e-3 F/m^2  ->  ~3e-4 A/V^2.
    k_prime_a_per_v2: float = param(3e-4, "A/V^2", "(est.) mu*Cox of a 180 nm-class NMOS: mu_n ~0.035 m^2/Vs, "
                                    "t_ox ~4 nm -> Cox ~8.6e-3 F/m^2", lo=0, lo_open=True)
    # (est.) typical NMOS threshold of a 180 nm process, 0.4-0.5 V.
    v_t_v: float = param(0.45, "V", "(est.) NMOS threshold voltage of a 180 nm-class process (0.4-0.5 V)",
                         lo=0)
    # (est.) small read bias keeps the channel in triode across the window (V_DS <= V_G - V_T).
    v_ds_v: float = param(0.05, "V", "(est.) small drain-source read voltage: triode operation, arXiv "
                          "1907.00625 reads the synapse in its linear region", lo=0, lo_open=True)
    # --- gate-voltage window ----------------------------------------------------------------------
    # (est.) lower end 0.1 V above V_T so V_G - V_T >= V_DS (triode) and G ~ 5.6 uS;
    # upper end = 1.8 V supply of a 180 nm process, G ~ 99 uS.
    v_g_min_v: float = param(0.55, "V", "(est.) V_T + 0.1 V: lowest gate voltage keeping V_G - V_T >= V_DS "
                             "(triode), G ~5.6 uS", lo=0)
    v_g_max_v: float = param(1.8, "V", "(est.) 1.8 V supply of a 180 nm-class process bounds the gate; "
                             "G ~99 uS", lo=0)
    # --- storage capacitor and update pulses ------------------------------------------------------
    # (est.) 100 fF: a MIM capacitor of ~50-100 um^2 at 1-2 fF/um^2; large enough that kT/C noise
    # (sqrt(kT/C) ~ 0.2 mV) is far below one pulse step.
    c_store_f: float = param(100e-15, "F", "(est.) 100 fF MIM storage capacitor (~50-100 um^2 at 1-2 fF/um^2); "
                             "gate-on-capacitor storage of arXiv 1907.00625", lo=0, lo_open=True)
    # (est.) I = 100 nA for dt = 5 ns gives dV = I*dt/C = 5 mV per pulse: 250 steps across the 1.25 V window.
    i_update_a: float = param(100e-9, "A", "(est.) 100 nA update current: with 5 ns and 100 fF, 5 mV per "
                              "pulse, 250 steps across the window; current-pulse update of arXiv 1907.00625",
                              lo=0, lo_open=True)
    pulse_width_s: float = param(5e-9, "s", "(est.) 5 ns update pulse, a few clock cycles of the update "
                                 "circuit", lo=0, lo_open=True)
    # (est.) supply of the charging current source: 1.8 V, the 180 nm-class VDD (also the window top).
    v_supply_v: float = param(1.8, "V", "(est.) 1.8 V VDD of a 180 nm-class process powering the update "
                              "current source", lo=0, lo_open=True)
    # (est.) 1 % spread of the charge per pulse: current-source mismatch and pulse-width jitter.
    c2c_sigma_rel: float = param(0.01, "1", "(est.) 1 % relative spread of the charge per pulse (current "
                                 "mismatch, pulse-width jitter)", lo=0)
    # --- retention ----------------------------------------------------------------------------------
    # (est.) tau = R_leak * C ~ 1e13 ohm * 100 fF = 1 s: off-state subthreshold + junction leakage of the
    # switch holding the node, ~0.1 pA at 1 V (DRAM-like storage node, refresh needed).
    tau_leak_s: float = param(1.0, "s", "(est.) RC of the leaking storage node: ~1e13 ohm (sub-threshold + "
                              "junction leakage of the off switch, ~0.1 pA at 1 V) x 100 fF", lo=0, lo_open=True)
    # (est.) the charge leaks to ground (source / substrate of the off switch), so V_G decays toward 0 V.
    v_rest_v: float = param(0.0, "V", "(est.) the storage node leaks through the off switch and its "
                            "junction to ground, so V_G decays toward 0 V")
    # --- programming and reading --------------------------------------------------------------------
    # (est.) write-and-verify with 5 mV pulse steps leaves a gate error well under one step: sigma 2 mV.
    program_sigma_v: float = param(2e-3, "V", "(est.) gate-voltage error after write-and-verify with 5 mV "
                                   "steps (< one step)", lo=0)
    # (est.) channel thermal noise over a 10 ns read: sigma_I = sqrt(4kT G B), B = 1/(2 t_read); at
    # G = 50 uS, V_DS = 50 mV that is ~0.26 % of G; 0.3 % rounds it up.
    read_noise_rel: float = param(3e-3, "1", "(est.) channel thermal noise sqrt(2kT G / t_read) / V_DS ~0.26 % "
                                  "of G at 50 uS, 50 mV, 10 ns", lo=0)
    read_time_s: float = param(1e-8, "s", "(est.) 10 ns read pulse, as the ADC-less SNN paper's NeuroSim "
                               "evaluation (arXiv 2211.02167; docs/references.md#adc-less-snn)", lo=0, lo_open=True)

    def _check(self) -> None:
        name = type(self).__name__
        if self.v_g_min_v - self.v_t_v < self.v_ds_v:
            raise ConfigError(
                f"{name}.v_g_min_v = {self.v_g_min_v!r} V is out of range: it must be >= v_t_v + v_ds_v = "
                f"{self.v_t_v + self.v_ds_v:g} V so the transistor conducts in triode across the window")
        if self.v_g_max_v <= self.v_g_min_v:
            raise ConfigError(f"{name}.v_g_max_v = {self.v_g_max_v!r} V is out of range: it must be > "
                              f"v_g_min_v = {self.v_g_min_v:g} V")
        if self.v_supply_v < self.v_g_max_v:
            raise ConfigError(f"{name}.v_supply_v = {self.v_supply_v!r} V is out of range: it must be >= "
                              f"v_g_max_v = {self.v_g_max_v:g} V to charge the gate to the top of the window")

    # ------------------------------------------------------------------ derived quantities
    @property
    def beta_a_per_v2(self) -> float:
        """``k' * W / L`` (A/V^2): the triode slope dG/dV_G."""
        return self.k_prime_a_per_v2 * self.width_m / self.length_m

    @property
    def read_voltage_v(self) -> float:
        return self.v_ds_v

    @property
    def write_pulse_time_s(self) -> float:
        return self.pulse_width_s

    @property
    def dv_per_pulse_v(self) -> float:
        """Gate-voltage change of one update pulse, ``I * dt / C`` (V)."""
        return self.i_update_a * self.pulse_width_s / self.c_store_f

    @property
    def dg_per_pulse_s(self) -> float:
        """Conductance change of one pulse inside the window, ``beta * I * dt / C`` (S)."""
        return self.beta_a_per_v2 * self.dv_per_pulse_v

    @property
    def pulse_steps(self) -> float:
        """Number of pulses that cross the whole gate window."""
        return (self.v_g_max_v - self.v_g_min_v) / self.dv_per_pulse_v

    @property
    def window_pulses(self) -> float:
        """Pulses across the gate window (:attr:`pulse_steps`); a pulse of fractional width moves the gate
        by that fraction of one step, so a width-modulating update circuit is not bound to whole pulses."""
        return self.pulse_steps

    @property
    def g_min_s(self) -> float:
        return float(self.g_from_v_g(self.v_g_min_v))

    @property
    def g_max_s(self) -> float:
        return float(self.g_from_v_g(self.v_g_max_v))

    # ------------------------------------------------------------------ the transfer law
    def g_from_v_g(self, v_g):
        """Chord conductance ``I_D / V_DS`` (S) at gate voltage ``v_g`` (V): cut-off, saturation, triode."""
        v_ov = np.asarray(v_g, dtype=np.float64) - self.v_t_v
        vds, beta = self.v_ds_v, self.beta_a_per_v2
        triode = beta * (v_ov - 0.5 * vds)
        sat = beta * np.square(np.maximum(v_ov, 0.0)) / (2.0 * vds)
        return np.where(v_ov >= vds, triode, np.where(v_ov > 0.0, sat, 0.0))

    def v_g_from_g(self, g):
        """Gate voltage (V) that gives conductance ``g`` (S); the inverse of :meth:`g_from_v_g`.

        ``g <= 0`` maps to ``V_T`` (a cut-off transistor does not reveal how far below V_T its gate is).
        """
        g = np.asarray(g, dtype=np.float64)
        vds, beta = self.v_ds_v, self.beta_a_per_v2
        g_edge = 0.5 * beta * vds  # conductance at the triode / saturation boundary V_ov = V_DS
        triode = g / beta + self.v_t_v + 0.5 * vds
        sat = self.v_t_v + np.sqrt(2.0 * vds * np.maximum(g, 0.0) / beta)
        return np.where(g >= g_edge, triode, sat)

    # ------------------------------------------------------------------ programming and reading
    def program(self, levels, cell_bits, rng=None):
        """Set V_G to each level's target plus a Gaussian error ``program_sigma_v``, clipped to the window."""
        target = self.level_conductances(cell_bits)[self._check_levels(levels, cell_bits)]
        if rng is None or self.program_sigma_v == 0.0:
            return target
        v = self.v_g_from_g(target) + self.program_sigma_v * rng.standard_normal(target.shape)
        return self.g_from_v_g(np.clip(v, self.v_g_min_v, self.v_g_max_v))

    def programs_on_levels(self) -> bool:
        """No gate-voltage error: :meth:`program` returns the targets and draws nothing."""
        return type(self).program is MOSFETSynapse.program and self.program_sigma_v == 0.0

    def read_sigma_s(self, g):
        return self.read_noise_rel * np.abs(np.asarray(g, dtype=np.float64))

    def at_time(self, g, t_s, rng=None):
        """Capacitor leakage: ``V_G(t) = v_rest + (V_G(0) - v_rest) * exp(-t / tau)``, then G(V_G)."""
        if not t_s >= 0:
            raise ConfigError(f"{type(self).__name__}.at_time: t_s = {t_s!r} s must be >= 0")
        v0 = self.v_g_from_g(g)
        v = self.v_rest_v + (v0 - self.v_rest_v) * math.exp(-t_s / self.tau_leak_s)
        return self.g_from_v_g(v)

    # ------------------------------------------------------------------ in-place updates
    def pulse(self, g, n_pulses, rng=None):
        """Add ``n * I * dt / C`` (plus c2c noise) to the gate, clip to the window, convert back.

        A gate already outside the window (after leakage) is not pulled into it: the bounds only stop a
        pulse from pushing the gate past the end it is moving toward.
        """
        v = self.v_g_from_g(g)
        n = np.asarray(n_pulses, dtype=np.float64)
        dv = n * self.dv_per_pulse_v
        if rng is not None and self.c2c_sigma_rel > 0.0:
            sigma = np.sqrt(np.abs(n)) * (self.c2c_sigma_rel * self.dv_per_pulse_v)
            dv = dv + sigma * rng.standard_normal(np.broadcast(v, n).shape)
        lo = np.minimum(v, self.v_g_min_v)
        hi = np.maximum(v, self.v_g_max_v)
        return self.g_from_v_g(np.clip(v + dv, lo, hi))

    def write_pulse_energy_j(self, g=None):
        """Energy drawn from the supply by one update pulse, ``V_supply * I * dt`` (J), state independent."""
        return self.v_supply_v * self.i_update_a * self.pulse_width_s
