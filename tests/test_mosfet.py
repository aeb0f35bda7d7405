"""Tests for cimsim.devices.mosfet.MOSFETSynapse: the triode law, pulse updates, leakage, noise, energy.

Expected numbers are computed here from the stated laws and the default parameters
(k' = 3e-4 A/V^2, W/L = 0.25, V_T = 0.45 V, V_DS = 0.05 V, window [0.55, 1.8] V, C = 100 fF,
I = 100 nA, dt = 5 ns, tau = 1 s, V_rest = 0 V), not read back from the model.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from cimsim.devices.base import describe
from cimsim.devices.mosfet import MOSFETSynapse
from cimsim.errors import ConfigError


def approx(expected, rel=1e-12):
    """pytest.approx with no absolute floor (its default 1e-12 would swallow uS and fJ values)."""
    return pytest.approx(expected, rel=rel, abs=0)

BETA = 3e-4 * 0.5e-6 / 2e-6  # k' W / L = 7.5e-5 A/V^2
VT, VDS = 0.45, 0.05
DV = 100e-9 * 5e-9 / 100e-15  # I dt / C = 5 mV


def quiet(**kw) -> MOSFETSynapse:
    """Default device without cycle-to-cycle noise."""
    return MOSFETSynapse(c2c_sigma_rel=0.0, **kw)


# ------------------------------------------------------------------------------------------ the law
def test_triode_law_exact_at_several_gate_voltages():
    m = MOSFETSynapse()
    v = np.array([0.55, 0.7, 1.0, 1.234, 1.8])
    expected = BETA * (v - VT - VDS / 2)
    np.testing.assert_allclose(m.g_from_v_g(v), expected, rtol=1e-12, atol=0)
    assert m.g_from_v_g(1.0) == approx(3.9375e-5, rel=1e-12)  # 7.5e-5 * 0.525
    np.testing.assert_allclose(m.v_g_from_g(expected), v, rtol=1e-12)


def test_window_ends_and_step():
    m = MOSFETSynapse()
    assert m.g_min_s == approx(BETA * (0.55 - VT - VDS / 2), rel=1e-12)  # 5.625 uS
    assert m.g_max_s == approx(BETA * (1.8 - VT - VDS / 2), rel=1e-12)  # 99.375 uS
    assert m.g_min_s == approx(5.625e-6, rel=1e-12)
    assert m.g_max_s == approx(99.375e-6, rel=1e-12)
    assert m.dv_per_pulse_v == approx(5e-3, rel=1e-12)
    assert m.pulse_steps == approx(250.0, rel=1e-12)
    assert m.dg_per_pulse_s == approx(BETA * DV, rel=1e-12)
    assert m.read_voltage_v == VDS and m.write_pulse_time_s == 5e-9


def test_below_window_saturation_and_cutoff_branches():
    m = MOSFETSynapse()
    # 0 < V_ov < V_DS: saturation, chord G = beta V_ov^2 / (2 V_DS); continuous with triode at V_ov = V_DS.
    assert m.g_from_v_g(VT + 0.02) == approx(BETA * 0.02 ** 2 / (2 * VDS), rel=1e-12)
    assert m.g_from_v_g(VT + VDS) == approx(BETA * VDS / 2, rel=1e-12)
    assert m.g_from_v_g(VT + VDS - 1e-12) == approx(BETA * VDS / 2, rel=1e-9)
    assert m.g_from_v_g(VT) == 0.0 and m.g_from_v_g(0.1) == 0.0
    assert m.v_g_from_g(BETA * 0.02 ** 2 / (2 * VDS)) == approx(VT + 0.02, rel=1e-12)
    assert m.v_g_from_g(0.0) == approx(VT)


def test_levels_monotonic_and_linear_in_gate_voltage():
    m = MOSFETSynapse()
    g = m.program(np.arange(16), 4)  # no rng: exact targets
    assert np.all(np.diff(g) > 0)
    np.testing.assert_allclose(np.diff(g), (m.g_max_s - m.g_min_s) / 15, rtol=1e-9)
    v = m.v_g_from_g(g)
    np.testing.assert_allclose(v, np.linspace(0.55, 1.8, 16), rtol=1e-12)


# ------------------------------------------------------------------------------------------ pulses
@pytest.mark.parametrize("k", [1, 7, 40, -1, -13])
def test_k_pulses_move_gate_by_k_steps(k):
    m = quiet()
    v0 = 1.2
    g0 = m.g_from_v_g(v0)
    g1 = m.pulse(np.array([g0]), np.array([k]), rng=np.random.default_rng(0))
    assert m.v_g_from_g(g1)[0] == approx(v0 + k * DV, rel=1e-12)
    assert g1[0] - g0 == approx(k * BETA * DV, rel=1e-9)


def test_update_is_linear_and_symmetric():
    m = quiet()
    rng = np.random.default_rng(1)
    g0 = m.g_from_v_g(np.linspace(0.7, 1.6, 10))
    up = np.full(10, 23)
    g_up = m.pulse(g0, up, rng)
    np.testing.assert_allclose(g_up - g0, 23 * BETA * DV, rtol=1e-9)  # same step everywhere: linear
    g_back = m.pulse(g_up, -up, rng)
    np.testing.assert_allclose(g_back, g0, rtol=1e-12, atol=0)  # symmetric: exact to float rounding
    # one pulse at a time equals all at once
    g = g0.copy()
    for _ in range(23):
        g = m.pulse(g, np.ones(10), rng)
    np.testing.assert_allclose(g, g_up, rtol=1e-12)


def test_bounded_at_window():
    m = quiet()
    g_top = m.pulse(np.array([m.g_from_v_g(1.8 - 3 * DV)]), np.array([10]))
    assert g_top[0] == approx(m.g_max_s, rel=1e-12)
    g_bot = m.pulse(np.array([m.g_from_v_g(0.55 + 2 * DV)]), np.array([-10]))
    assert g_bot[0] == approx(m.g_min_s, rel=1e-12)
    g = m.pulse(np.array([m.g_min_s, m.g_max_s]), np.array([10_000, -10_000]))
    np.testing.assert_allclose(g, [m.g_max_s, m.g_min_s], rtol=1e-12)
    assert m.pulse(np.array([m.g_max_s]), np.array([5]))[0] == approx(m.g_max_s, rel=1e-12)


def test_leaked_gate_is_not_pulled_into_window():
    m = quiet()
    g_low = m.g_from_v_g(0.5)  # below the window after leakage
    g = m.pulse(np.array([g_low]), np.array([1]))
    assert m.v_g_from_g(g)[0] == approx(0.5 + DV, rel=1e-12)


# ------------------------------------------------------------------------------------------ retention
def test_leakage_law_closed_form():
    m = MOSFETSynapse()
    v0 = np.array([0.6, 1.0, 1.5, 1.8])
    g0 = m.g_from_v_g(v0)
    np.testing.assert_array_equal(m.at_time(g0, 0.0), g0)  # t = 0: identity
    for t in (1e-3, 0.05, 0.2):
        v_t = 0.0 + (v0 - 0.0) * math.exp(-t / 1.0)
        v_ov = v_t - VT
        expected = np.where(v_ov >= VDS, BETA * (v_ov - VDS / 2), BETA * np.maximum(v_ov, 0) ** 2 / (2 * VDS))
        np.testing.assert_allclose(m.at_time(g0, t), expected, rtol=1e-9)
    # after 10 tau every gate is below V_T: cut off
    np.testing.assert_array_equal(m.at_time(g0, 10.0), 0.0)
    # with V_rest = v_g_min the weight relaxes to g_min instead
    r = replace(m, v_rest_v=0.55)
    np.testing.assert_allclose(r.at_time(g0, 50.0), r.g_min_s, rtol=1e-12)
    v_half = 0.55 + (1.5 - 0.55) * math.exp(-0.3)
    assert r.at_time(np.array([m.g_from_v_g(1.5)]), 0.3)[0] == approx(BETA * (v_half - VT - VDS / 2), rel=1e-12)
    with pytest.raises(ConfigError):
        m.at_time(g0, -1.0)


# ------------------------------------------------------------------------------------------ noise
def test_programming_noise_statistics():
    m = MOSFETSynapse()
    n = 20_000
    g = m.program(np.full(n, 8), 4, rng=np.random.default_rng(7))
    target_v = 0.55 + 8 * (1.25 / 15)
    err = m.v_g_from_g(g) - target_v
    assert abs(err.mean()) < 4 * 2e-3 / math.sqrt(n)
    assert err.std() == approx(2e-3, rel=0.03)  # sd of the sample sd ~0.5 %
    assert g.min() >= m.g_min_s and g.max() <= m.g_max_s


def test_cycle_to_cycle_noise_statistics():
    m = MOSFETSynapse()
    n = 20_000
    g0 = np.full(n, m.g_from_v_g(1.0))
    g1 = m.pulse(g0, np.full(n, 16), rng=np.random.default_rng(11))
    dv = m.v_g_from_g(g1) - 1.0
    sigma = math.sqrt(16) * 0.01 * DV  # 0.2 mV
    assert abs(dv.mean() - 16 * DV) < 4 * sigma / math.sqrt(n)
    assert dv.std() == approx(sigma, rel=0.03)
    # zero pulses: no change, no noise
    np.testing.assert_allclose(m.pulse(g0[:5], np.zeros(5), np.random.default_rng(0)), g0[:5], rtol=1e-12)


def test_read_noise_statistics():
    m = MOSFETSynapse()
    g = np.full(20_000, 50e-6)
    r = m.read(g, np.random.default_rng(3))
    assert m.read_sigma_s(g)[0] == approx(0.003 * 50e-6, rel=1e-12)
    assert r.std() == approx(0.003 * 50e-6, rel=0.03)
    assert abs(r.mean() - 50e-6) < 4 * 0.003 * 50e-6 / math.sqrt(g.size)
    np.testing.assert_array_equal(m.read(g[:3]), g[:3])  # no rng: no noise


# ------------------------------------------------------------------------------------------ energy
def test_write_and_read_energy():
    m = MOSFETSynapse()
    assert m.write_pulse_energy_j() == approx(1.8 * 100e-9 * 5e-9, rel=1e-12)  # 0.9 fJ
    assert m.write_pulse_energy_j(np.array([1e-5])) == approx(9e-16, rel=1e-12)
    r = replace(m, i_update_a=200e-9, pulse_width_s=2e-9, v_supply_v=2.5, v_g_max_v=2.0)
    assert r.write_pulse_energy_j() == approx(2.5 * 200e-9 * 2e-9, rel=1e-12)
    assert m.read_energy_j(np.array([4e-5]))[0] == approx(0.05 ** 2 * 4e-5 * 1e-8, rel=1e-12)


# ------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("kw, field_name", [
    ({"v_g_min_v": 0.3}, "v_g_min_v"),            # window below V_T
    ({"v_g_min_v": 0.48}, "v_g_min_v"),           # above V_T but V_G - V_T < V_DS: not triode
    ({"c_store_f": -1e-15}, "c_store_f"),
    ({"c_store_f": 0.0}, "c_store_f"),
    ({"v_g_max_v": 0.5}, "v_g_max_v"),
    ({"i_update_a": float("nan")}, "i_update_a"),
    ({"tau_leak_s": 0.0}, "tau_leak_s"),
    ({"v_supply_v": 1.5}, "v_supply_v"),
    ({"c2c_sigma_rel": -0.1}, "c2c_sigma_rel"),
])
def test_validation_names_the_field(kw, field_name):
    with pytest.raises(ConfigError, match=field_name):
        MOSFETSynapse(**kw)


def test_describe_lists_every_parameter_with_unit_and_source():
    d = describe(MOSFETSynapse())
    assert d["kind"] == "mosfet" and d["class"] == "MOSFETSynapse"
    names = {p["name"] for p in d["params"]}
    assert {"width_m", "length_m", "k_prime_a_per_v2", "v_t_v", "v_ds_v", "v_g_min_v", "v_g_max_v",
            "c_store_f", "i_update_a", "pulse_width_s", "tau_leak_s", "read_time_s", "c2c_sigma_rel",
            "program_sigma_v", "read_noise_rel", "v_supply_v", "v_rest_v"} <= names
    assert len(d["params"]) == 17
    for p in d["params"]:
        assert p["unit"] and p["source"].strip(), p
