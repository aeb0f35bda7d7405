"""Tests for cimsim.devices.domain_wall.DomainWallSynapse: position law, pinning sites, threshold motion.

Expected numbers are computed here from the stated laws and the default parameters
(L = 620 nm, 32 sites, pitch 20 nm, G_AP = 40 uS, G_P = 100 uS, J_dep = 5e10 A/m^2,
mobility 2e-10 m^3/(A s), J = 1.5e11 A/m^2, t_p = 1 ns, p_pin = 0.05), not read back from the model.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from cimsim.devices.base import describe
from cimsim.devices.domain_wall import DomainWallSynapse
from cimsim.errors import ConfigError


def approx(expected, rel=1e-12):
    """pytest.approx with no absolute floor (its default 1e-12 would swallow uS and fJ values)."""
    return pytest.approx(expected, rel=rel, abs=0)

L, N = 620e-9, 32
PITCH = L / (N - 1)  # 20 nm
GAP, GP = 40e-6, 100e-6
MOB, JDEP, TP = 2e-10, 5e10, 1e-9


def site_g(k):
    return GAP + (GP - GAP) * np.asarray(k, dtype=float) / (N - 1)


def on_sites(d: DomainWallSynapse, g) -> bool:
    return bool(np.all(np.isin(np.asarray(g), d.states)))


# ------------------------------------------------------------------------------------------ the law
def test_conductance_linear_in_position():
    d = DomainWallSynapse()
    x = np.array([0.0, L / 4, L / 2, 0.9 * L, L])
    np.testing.assert_allclose(d.g_from_position(x), GAP + (GP - GAP) * x / L, rtol=1e-12)
    assert d.g_from_position(L / 2) == approx(70e-6, rel=1e-12)
    xs = np.linspace(0, L, 11)
    np.testing.assert_allclose(np.diff(d.g_from_position(xs), 2), 0.0, atol=1e-18)
    np.testing.assert_allclose(d.position_m(d.g_from_position(x)), x, rtol=1e-12, atol=1e-21)
    assert d.g_min_s == GAP and d.g_max_s == GP
    assert d.tmr == approx(1.5, rel=1e-12)


def test_states_are_the_pinning_sites():
    d = DomainWallSynapse()
    assert d.pitch_m == approx(20e-9, rel=1e-12)
    assert d.states.shape == (N,)
    np.testing.assert_allclose(d.states, site_g(np.arange(N)), rtol=1e-12)
    np.testing.assert_allclose(d.position_m(d.states), np.arange(N) * PITCH, rtol=1e-9, atol=1e-20)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5])
def test_programmed_levels_on_sites(bits):
    d = DomainWallSynapse()
    n = 2 ** bits
    g = d.program(np.arange(n), bits, rng=np.random.default_rng(0))
    assert on_sites(d, g)
    assert np.all(np.diff(g) > 0)
    expected_sites = np.floor(np.arange(n) * (N - 1) / (n - 1) + 0.5)
    np.testing.assert_allclose(g, site_g(expected_sites), rtol=1e-12)
    assert g[0] == GAP and g[-1] == approx(GP, rel=1e-12)


def test_two_bit_levels_snap_to_sites_0_10_21_31():
    d = DomainWallSynapse()
    np.testing.assert_array_equal(d.site_index(d.level_conductances(2)), [0, 10, 21, 31])


def test_too_many_levels_raise_naming_n_states():
    d = DomainWallSynapse()
    with pytest.raises(ConfigError, match="n_states"):
        d.level_conductances(6)  # 64 levels > 32 sites
    with pytest.raises(ConfigError, match="n_states"):
        replace(d, n_states=8).program(np.arange(16), 4)
    assert replace(d, n_states=8).level_conductances(3).size == 8


# ------------------------------------------------------------------------------------------ motion
def test_positions_stay_on_sites_after_any_pulse_sequence():
    d = DomainWallSynapse()
    rng = np.random.default_rng(5)
    g = d.program(rng.integers(0, 16, 500), 4)
    for _ in range(200):
        g = d.pulse(g, rng.integers(-6, 7, g.size), rng)
        assert on_sites(d, g)
    # an off-site input is snapped first
    g = d.pulse(np.array([site_g(4) + 0.3 * (GP - GAP) / (N - 1)]), np.array([1]))
    np.testing.assert_allclose(g, site_g(5), rtol=1e-12)


@pytest.mark.parametrize("j", [0.0, 2e10, JDEP])
def test_subthreshold_current_never_moves_the_wall(j):
    d = replace(DomainWallSynapse(), j_write_a_per_m2=j)
    assert d.velocity_m_per_s() == 0.0 and d.sites_per_pulse() == 0
    g0 = d.states
    for n in (1, 100, -100):
        np.testing.assert_array_equal(d.pulse(g0, np.full(N, n), np.random.default_rng(0)), g0)


@pytest.mark.parametrize("j, k0, n", [
    (1.5e11, 5, 3),     # default: d = 20 nm = 1.0 site -> 1 per pulse
    (2.8e11, 5, 3),     # d = 46 nm = 2.3 sites -> 2 per pulse
    (3.1e11, 20, -2),   # d = 52 nm = 2.6 sites -> 3 per pulse, backwards
    (9.0e10, 7, 4),     # d = 8 nm = 0.4 site -> falls back into the notch: 0
    (1.0e11, 7, 4),     # d = 10 nm = 0.5 site -> half-way rounds up: 1
])
def test_displacement_per_pulse_snapped_to_sites(j, k0, n):
    d = replace(DomainWallSynapse(), j_write_a_per_m2=j, p_pin=0.0)
    disp = MOB * (j - JDEP) * TP
    assert d.velocity_m_per_s() * d.t_pulse_s == approx(disp, rel=1e-12)
    step = math.floor(disp / PITCH + 0.5)
    assert d.sites_per_pulse() == step
    g = d.pulse(np.array([site_g(k0)]), np.array([n]), np.random.default_rng(0))
    np.testing.assert_allclose(g, site_g(k0 + n * step), rtol=1e-12)


def test_saturation_at_both_ends():
    d = replace(DomainWallSynapse(), p_pin=0.0)
    g = d.pulse(site_g([30, 1, 0, 31, 15]), np.array([5, -5, -1, 1, 1000]))
    np.testing.assert_allclose(g, [GP, GAP, GAP, GP, GP], rtol=1e-12)
    g = d.pulse(np.array([GP]), np.array([-1000]))
    assert g[0] == GAP


def test_stochastic_pinning_rate_within_binomial_tolerance():
    d = DomainWallSynapse()  # p_pin = 0.05
    n_cells = 20_000
    g0 = np.full(n_cells, site_g(10))
    moved = d.site_index(d.pulse(g0, np.ones(n_cells), np.random.default_rng(42))) - 10
    assert set(np.unique(moved)) <= {0, 1}
    p_fail = 1.0 - moved.mean()
    sd = math.sqrt(0.05 * 0.95 / n_cells)
    assert abs(p_fail - 0.05) < 4 * sd
    # 10 pulses each: moves ~ Binomial(10, 0.95)
    moved10 = d.site_index(d.pulse(g0, np.full(n_cells, 10), np.random.default_rng(43))) - 10
    assert abs(moved10.mean() - 9.5) < 4 * math.sqrt(10 * 0.05 * 0.95 / n_cells)
    assert moved10.var() == approx(10 * 0.05 * 0.95, rel=0.06)
    # without rng no pulse fails
    np.testing.assert_array_equal(d.site_index(d.pulse(g0[:10], np.full(10, 3))), 13)


def test_distinct_reachable_conductances_equal_n_states():
    d = replace(DomainWallSynapse(), p_pin=0.0)
    g = np.array([GAP])
    seen = {float(g[0])}
    for _ in range(2 * N):
        g = d.pulse(g, np.array([1]))
        seen.add(float(g[0]))
    assert len(seen) == N
    np.testing.assert_allclose(sorted(seen), d.states, rtol=1e-12)
    # a long random walk with stochastic pinning reaches exactly the same set
    rng = np.random.default_rng(9)
    d2 = DomainWallSynapse()
    g = np.full(64, site_g(16))
    visited = set()
    for _ in range(400):
        g = d2.pulse(g, rng.integers(-3, 4, g.size), rng)
        visited.update(g.tolist())
    assert len(visited) == N
    # 9 sites on a 160 nm track (pitch still 20 nm): 0..39 pulses from G_AP reach exactly 9 values
    d9 = replace(d, n_states=9, length_m=160e-9)
    assert d9.sites_per_pulse() == 1
    reached = d9.pulse(np.full(40, GAP), np.arange(40))
    assert len(np.unique(reached)) == 9 and on_sites(d9, reached)


# ------------------------------------------------------------------------------------------ energy, retention
def test_write_energy_formula():
    d = DomainWallSynapse()
    vol = 620e-9 * 100e-9 * 5e-9
    assert d.volume_m3 == approx(vol, rel=1e-12)
    e = 1.5e11 ** 2 * 2e-7 * vol * 1e-9
    assert d.write_pulse_energy_j() == approx(e, rel=1e-12)
    assert e == approx(1.395e-15, rel=1e-12)
    # same as I^2 R t_p with I = J w t, R = rho L / (w t)
    i = 1.5e11 * 100e-9 * 5e-9
    assert d.write_current_a == approx(75e-6, rel=1e-12)
    assert d.write_pulse_energy_j() == approx(i ** 2 * (2e-7 * L / (100e-9 * 5e-9)) * 1e-9, rel=1e-12)
    r = replace(d, j_write_a_per_m2=3e11, t_pulse_s=2e-9, rho_hm_ohm_m=1e-6)
    assert r.write_pulse_energy_j() == approx(3e11 ** 2 * 1e-6 * vol * 2e-9, rel=1e-12)
    assert d.read_energy_j(np.array([GP]))[0] == approx(0.1 ** 2 * GP * 1e-8, rel=1e-12)


def test_non_volatile():
    d = DomainWallSynapse()
    g = d.states
    np.testing.assert_array_equal(d.at_time(g, 1e6), g)
    with pytest.raises(ConfigError):
        d.at_time(g, -1.0)


# ------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("kw, field_name", [
    ({"g_p_s": 3e-5}, "g_p_s"),          # G_P below G_AP
    ({"g_p_s": 4e-5}, "g_p_s"),          # equal
    ({"n_states": 1}, "n_states"),
    ({"n_states": 2.5}, "n_states"),
    ({"width_m": -1e-9}, "width_m"),
    ({"length_m": 0.0}, "length_m"),
    ({"p_pin": 1.5}, "p_pin"),
    ({"rho_hm_ohm_m": float("inf")}, "rho_hm_ohm_m"),
    ({"j_write_a_per_m2": -1e11}, "j_write_a_per_m2"),
])
def test_validation_names_the_field(kw, field_name):
    with pytest.raises(ConfigError, match=field_name):
        DomainWallSynapse(**kw)


def test_describe_lists_every_parameter_with_unit_and_source():
    d = describe(DomainWallSynapse())
    assert d["kind"] == "domain-wall" and d["class"] == "DomainWallSynapse"
    names = {p["name"] for p in d["params"]}
    assert {"length_m", "width_m", "hm_thickness_m", "rho_hm_ohm_m", "n_states", "g_p_s", "g_ap_s",
            "j_dep_a_per_m2", "mobility_m3_per_a_s", "j_write_a_per_m2", "t_pulse_s", "p_pin",
            "read_voltage_v", "read_time_s", "read_noise_rel"} == names
    for p in d["params"]:
        assert p["unit"] and p["source"].strip(), p
