"""Tests of the ReRAM cell (cimsim.devices.reram): window, programming noise, faults, read noise,
relaxation, the NeuroSim pulse law, energies, validation and self-description.

Statistical tests use fixed seeds and many cells; each states its tolerance. Expected numbers are
written out from the laws in ReRAM's docstring and from NeuroSim's tabulated nonlinearity constants.
"""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pytest

from cimsim.devices.base import describe
from cimsim.devices.cell import MemoryCell
from cimsim.devices.reram import ReRAM, nl_efolds
from cimsim.errors import ConfigError

N_CELLS = 200_000
STD_RTOL = 0.03  # relative tolerance on a measured standard deviation (its sampling error here is ~0.2 %)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------- window and levels
def test_defaults_window_from_the_adcless_setup():
    c = ReRAM()
    assert isinstance(c, MemoryCell) and c.kind == "reram"
    assert c.g_max_s == pytest.approx(1 / 6e3, rel=1e-15)
    assert c.g_min_s == pytest.approx(1 / 6e3 / 150, rel=1e-15)
    assert c.g_range_s == pytest.approx(1 / 6e3 * (1 - 1 / 150), rel=1e-14)
    assert (c.read_voltage_v, c.read_time_s, c.read_latency_s) == (0.5, 10e-9, 10e-9)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("r_on, ratio", [(6e3, 150.0), (7.3e3, 17.0), (1e5, 3.3)])
def test_levels_monotonic_with_exact_endpoints(bits, r_on, ratio):
    c = ReRAM(r_on_ohm=r_on, on_off_ratio=ratio)
    lv = c.level_conductances(bits)
    assert lv.shape == (2 ** bits,)
    assert np.all(np.diff(lv) > 0)
    assert lv[0] == c.g_min_s and lv[-1] == c.g_max_s
    np.testing.assert_allclose(np.diff(lv), c.g_range_s / (2 ** bits - 1), rtol=1e-12)


# ---------------------------------------------------------------------------- programming
def test_program_without_noise_is_exact():
    c = ReRAM()
    levels = np.arange(16).reshape(4, 4)
    np.testing.assert_array_equal(c.program(levels, 4, rng=None), c.level_conductances(4)[levels])
    np.testing.assert_array_equal(c.program(levels, 4, rng=_rng()), c.level_conductances(4)[levels])


@pytest.mark.parametrize("level", [1, 2])
def test_program_noise_mean_and_std(level):
    sigma = 0.05
    c = ReRAM(prog_sigma_frac=sigma)
    levels = np.full(N_CELLS, level)
    g = c.program(levels, 2, rng=_rng(1))
    err = g - c.level_conductances(2)[level]
    sd = sigma * c.g_range_s  # the middle levels sit 6.7 sigma from the window edges: no clipping
    assert abs(err.mean()) < 4 * sd / math.sqrt(N_CELLS)
    assert err.std() == pytest.approx(sd, rel=STD_RTOL)


def test_program_noise_is_clipped_into_the_window():
    c = ReRAM(prog_sigma_frac=0.05)
    g = c.program(np.tile([0, 3], N_CELLS // 2), 2, rng=_rng(2))
    assert g.min() == c.g_min_s and g.max() == c.g_max_s
    # about half the cells at each end are clipped onto the edge
    assert np.mean(g == c.g_min_s) == pytest.approx(0.25, abs=0.01)
    assert np.mean(g == c.g_max_s) == pytest.approx(0.25, abs=0.01)


def test_program_same_seed_same_result():
    c = ReRAM(prog_sigma_frac=0.05, p_stuck_off=0.01, p_stuck_on=0.02)
    levels = _rng(3).integers(0, 4, size=(64, 64))
    a = c.program(levels, 2, rng=_rng(7))
    b = c.program(levels, 2, rng=_rng(7))
    d = c.program(levels, 2, rng=_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, d)


def test_program_rejects_bad_levels():
    with pytest.raises(ValueError, match="levels"):
        ReRAM().program(np.array([0, 4]), 2)
    with pytest.raises(ValueError, match="levels"):
        ReRAM().program(np.array([-1]), 2)


def test_stuck_at_fault_rates():
    p_off, p_on = 0.02, 0.01
    c = ReRAM(p_stuck_off=p_off, p_stuck_on=p_on)
    mid = c.level_conductances(2)[1]
    g = c.program(np.ones(N_CELLS, dtype=int), 2, rng=_rng(4))
    off, on, ok = g == c.g_min_s, g == c.g_max_s, g == mid
    assert np.all(off | on | ok)  # a cell is either exact, or exactly at an edge
    for frac, p in ((off.mean(), p_off), (on.mean(), p_on)):
        assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / N_CELLS)


def test_faults_override_the_noisy_target():
    c = ReRAM(prog_sigma_frac=0.05, p_stuck_off=0.3, p_stuck_on=0.3)
    g = c.program(np.ones(20_000, dtype=int), 2, rng=_rng(5))
    assert np.mean(g == c.g_min_s) == pytest.approx(0.3, abs=0.02)
    assert np.mean(g == c.g_max_s) == pytest.approx(0.3, abs=0.02)


# ---------------------------------------------------------------------------- read noise
def test_read_noise_std_and_exact_read_without_rng():
    sigma = 0.02
    c = ReRAM(read_sigma_frac=sigma)
    g = np.full(N_CELLS, c.level_conductances(2)[1])
    np.testing.assert_array_equal(c.read_sigma_s(g), np.full(N_CELLS, sigma * c.g_range_s))
    assert c.read_sigma_s(np.zeros((3, 5))).shape == (3, 5)
    r = c.read(g, rng=_rng(6))
    assert abs((r - g).mean()) < 4 * sigma * c.g_range_s / math.sqrt(N_CELLS)
    assert (r - g).std() == pytest.approx(sigma * c.g_range_s, rel=STD_RTOL)
    exact = c.read(g, rng=None)
    np.testing.assert_array_equal(exact, g)
    assert exact is not g
    np.testing.assert_array_equal(c.read(g, rng=_rng(9)), c.read(g, rng=_rng(9)))


def test_default_read_is_noise_free():
    c = ReRAM()
    g = c.level_conductances(3)
    np.testing.assert_array_equal(c.read(g, rng=_rng()), g)


# ---------------------------------------------------------------------------- relaxation
def test_relaxation_zero_time_is_exact():
    c = ReRAM(relax_sigma_frac=0.01)
    g = c.program(_rng(1).integers(0, 4, 1000), 2, rng=None)
    np.testing.assert_array_equal(c.at_time(g, 0.0, rng=_rng()), g)
    np.testing.assert_array_equal(c.at_time(g, 1e5, rng=None), g)


def test_relaxation_spread_follows_log_time_law():
    c = ReRAM(relax_sigma_frac=0.005, relax_t0_s=1.0)
    g = np.full(N_CELLS, c.level_conductances(2)[1])
    stds = {}
    for t in (10.0, 1e4):
        expected = 0.005 * c.g_range_s * math.log10(1 + t / 1.0)
        assert c.relax_sigma_s(t) == pytest.approx(expected, rel=1e-15)
        dev = c.at_time(g, t, rng=_rng(11)) - g
        assert abs(dev.mean()) < 4 * expected / math.sqrt(N_CELLS)
        assert dev.std() == pytest.approx(expected, rel=STD_RTOL)
        stds[t] = dev.std()
    # same seed at two times: one trajectory per cell, deviations scale by the law's ratio
    ratio = math.log10(1 + 1e4) / math.log10(1 + 10.0)
    assert stds[1e4] / stds[10.0] == pytest.approx(ratio, rel=1e-9)
    d1 = c.at_time(g, 10.0, rng=_rng(11)) - g
    d2 = c.at_time(g, 1e4, rng=_rng(11)) - g
    np.testing.assert_allclose(d2, d1 * ratio, rtol=1e-9, atol=1e-22)


def test_relaxation_rejects_negative_time():
    with pytest.raises(ValueError, match="t_s"):
        ReRAM().at_time(np.ones(3) * 1e-5, -1.0, rng=_rng())


# ---------------------------------------------------------------------------- pulse law
def _closed_potentiation(c: ReRAM, p):
    a = c.a_ltp_pulses
    b = c.g_range_s / (1 - math.exp(-c.max_pulses / a))
    return c.g_min_s + b * (1 - np.exp(-np.asarray(p, dtype=float) / a))


def _closed_depression(c: ReRAM, q):
    a = c.a_ltd_pulses
    b = c.g_range_s / (1 - math.exp(-c.max_pulses / a))
    return c.g_max_s - b * (1 - np.exp(-np.asarray(q, dtype=float) / a))


def test_nl_label_matches_neurosim_normalised_a_table():
    # NeuroSim's normalised A (A / max_pulses) for labels 0.01, 0.1, 0.5 and 0.6
    for nl, a_norm in ((0.01, 126.268958), (0.1, 12.625807), (0.5, 2.519877), (0.6, 2.097877)):
        assert 1 / nl_efolds(nl) == pytest.approx(a_norm, rel=2e-6)
        assert 1 / nl_efolds(-nl) == pytest.approx(-a_norm, rel=2e-6)
    assert nl_efolds(0.0) == 0.0


@pytest.mark.parametrize("nl", [0.3, 2.4, 4.88, 8.0])
def test_nl_label_is_the_max_gap_to_the_straight_line(nl):
    c = ReRAM(nl_ltp=nl, max_pulses=100_000, c2c_sigma_frac=0.0)
    x = np.linspace(0, 1, 100_001)
    y = (c.potentiation_curve(x * c.max_pulses) - c.g_min_s) / c.g_range_s
    assert (y - x).max() == pytest.approx(0.07 * math.sqrt(2) * nl, rel=1e-6)


def test_default_a_values():
    c = ReRAM()
    assert c.a_ltp_pulses == pytest.approx(100 * 0.49918, rel=1e-4)  # NL 2.4
    assert c.a_ltd_pulses == pytest.approx(100 * 0.20030, rel=1e-4)  # NL -4.88


@pytest.mark.parametrize("k", [1, 5, 17, 50, 99])
def test_potentiation_from_gmin_matches_closed_form(k):
    c = ReRAM(c2c_sigma_frac=0.0)
    g = c.pulse(np.array([c.g_min_s]), k)
    assert g[0] == pytest.approx(_closed_potentiation(c, k), rel=1e-12)
    assert g[0] == pytest.approx(c.potentiation_curve(k), rel=1e-12)
    # k single pulses land where one call of k pulses does
    g1 = np.array([c.g_min_s])
    for _ in range(k):
        g1 = c.pulse(g1, 1)
    assert g1[0] == pytest.approx(g[0], rel=1e-10)


@pytest.mark.parametrize("k", [1, 5, 17, 50, 99])
def test_depression_from_gmax_matches_closed_form(k):
    c = ReRAM(c2c_sigma_frac=0.0)
    g = c.pulse(np.array([c.g_max_s]), -k)
    assert g[0] == pytest.approx(_closed_depression(c, k), rel=1e-12)
    assert g[0] == pytest.approx(c.depression_curve(k), rel=1e-12)


def _trajectory(c: ReRAM, start: float, sign: int) -> np.ndarray:
    gs = [np.array([start])]
    for _ in range(c.max_pulses):
        gs.append(c.pulse(gs[-1], sign))
    return np.concatenate(gs)


def test_nonlinear_steps_shrink_along_both_curves():
    c = ReRAM(c2c_sigma_frac=0.0)
    up = np.diff(_trajectory(c, c.g_min_s, +1))
    down = -np.diff(_trajectory(c, c.g_max_s, -1))
    assert np.all(up > 0) and np.all(down > 0)
    # step k is proportional to exp(-k / A): first / last = exp((N - 1) / A) (e^1.98 for NL 2.4, e^4.94 for -4.88)
    assert up[0] > 5 * up[-1]
    assert up[0] / up[-1] == pytest.approx(math.exp((c.max_pulses - 1) / c.a_ltp_pulses), rel=1e-9)
    assert down[0] / down[-1] == pytest.approx(math.exp((c.max_pulses - 1) / c.a_ltd_pulses), rel=1e-9)
    assert np.all(np.diff(up) < 0) and np.all(np.diff(down) < 0)


def test_positive_ltd_label_reverses_curvature():
    c = ReRAM(nl_ltd=4.88, c2c_sigma_frac=0.0)
    down = -np.diff(_trajectory(c, c.g_max_s, -1))
    assert down[0] < down[-1]


def test_asymmetry_at_the_same_state():
    c = ReRAM(c2c_sigma_frac=0.0)
    g = np.array([c.g_min_s + 0.5 * c.g_range_s])
    up = c.pulse(g, 1)[0] - g[0]
    down = g[0] - c.pulse(g, -1)[0]
    assert up > 0 and down > 0
    assert abs(up - down) > 0.1 * max(up, down)
    # the same by the closed forms: slope of each curve at the state
    x_p = -c.a_ltp_pulses * math.log(1 - 0.5 * c.g_range_s / (c.g_range_s / (1 - math.exp(-100 / c.a_ltp_pulses))))
    assert c.g_min_s + 0.5 * c.g_range_s == pytest.approx(_closed_potentiation(c, x_p), rel=1e-12)
    assert up == pytest.approx(_closed_potentiation(c, x_p + 1) - _closed_potentiation(c, x_p), rel=1e-9)


def test_many_pulses_saturate_exactly():
    c = ReRAM(c2c_sigma_frac=0.0)
    g = c.level_conductances(3)
    np.testing.assert_array_equal(c.pulse(g, 1000), np.full(8, c.g_max_s))
    np.testing.assert_array_equal(c.pulse(g, -1000), np.full(8, c.g_min_s))
    np.testing.assert_array_equal(c.pulse(g, c.max_pulses)[0], c.g_max_s)
    np.testing.assert_array_equal(c.pulse(g, -c.max_pulses)[-1], c.g_min_s)
    # further pulses at a bound change nothing
    np.testing.assert_array_equal(c.pulse(np.array([c.g_max_s]), 3), [c.g_max_s])
    # with cycle-to-cycle noise, the result still stays inside the window
    noisy = ReRAM().pulse(np.full(10_000, c.g_max_s), _rng(2).integers(-5, 6, 10_000), rng=_rng(3))
    assert noisy.min() >= c.g_min_s and noisy.max() <= c.g_max_s


def test_linear_law_for_zero_nonlinearity():
    c = ReRAM(nl_ltp=0.0, nl_ltd=0.0, c2c_sigma_frac=0.0)
    assert c.a_ltp_pulses == math.inf and c.a_ltd_pulses == math.inf
    step = c.g_range_s / c.max_pulses
    np.testing.assert_allclose(np.diff(_trajectory(c, c.g_min_s, +1)), step, rtol=1e-9)
    np.testing.assert_allclose(np.diff(_trajectory(c, c.g_max_s, -1)), -step, rtol=1e-9)


def test_tiny_nonlinearity_approaches_linear():
    c = ReRAM(nl_ltp=1e-6, c2c_sigma_frac=0.0)
    step = c.g_range_s / c.max_pulses
    np.testing.assert_allclose(np.diff(_trajectory(c, c.g_min_s, +1)), step, rtol=1e-5)


def test_pulse_zero_and_broadcasting():
    c = ReRAM()
    g = c.program(_rng(1).integers(0, 4, (8, 8)), 2, rng=None) * 1.0
    np.testing.assert_array_equal(c.pulse(g, 0, rng=_rng()), g)
    outside = np.array([c.g_min_s * 0.5, c.g_max_s * 1.01])     # e.g. a noisy read: n = 0 leaves it alone
    np.testing.assert_array_equal(c.pulse(outside, 0, rng=_rng()), outside)
    assert c.pulse(outside, [1, -1])[1] < c.g_max_s and c.pulse(outside, [1, -1])[0] > c.g_min_s * 0.5
    n = _rng(2).integers(-3, 4, (8, 8))
    out = c.pulse(g, n, rng=_rng(5))
    assert out.shape == (8, 8)
    np.testing.assert_array_equal(out[n == 0], g[n == 0])
    det = c.pulse(g, n, rng=None)
    up, down = (n > 0) & (g < c.g_max_s), (n < 0) & (g > c.g_min_s)
    assert np.all(det[up] > g[up]) and np.all(det[down] < g[down])
    assert np.all(det[(n > 0) & ~up] == c.g_max_s) and np.all(det[(n < 0) & ~down] == c.g_min_s)
    assert np.mean(out[n != 0] != det[n != 0]) > 0.6   # noise moves cells (edge cells may clip back)
    np.testing.assert_array_equal(out, c.pulse(g, n, rng=_rng(5)))   # same seed, same result
    col = c.pulse(g[:, :1], np.array([1, -1]), rng=None)             # (8, 1) x (2,) -> (8, 2)
    assert col.shape == (8, 2)
    assert np.all(col[:, 0] >= g[:, 0]) and np.all(col[:, 1] <= g[:, 0])


def test_c2c_noise_grows_with_sqrt_of_pulses():
    sigma = 0.01
    c = ReRAM(c2c_sigma_frac=sigma)
    g = np.full(N_CELLS, c.g_min_s + 0.5 * c.g_range_s)
    for k in (1, 4, 9):
        for sign in (+1, -1):
            det = c.pulse(g[:1], sign * k)[0]              # rng=None: the noise-free step
            dev = c.pulse(g, sign * k, rng=_rng(k)) - det
            expected = sigma * c.g_range_s * math.sqrt(k)  # <= 3 % of range, 16 sigma from the edges
            assert abs(dev.mean()) < 4 * expected / math.sqrt(N_CELLS)
            assert dev.std() == pytest.approx(expected, rel=STD_RTOL)


# ---------------------------------------------------------------------------- energy
def test_read_energy_is_v2_g_t():
    c = ReRAM()
    g = c.level_conductances(2)
    np.testing.assert_array_equal(c.read_energy_j(g), 0.5 ** 2 * g * 10e-9)
    assert c.read_energy_j(np.array([c.g_max_s]))[0] == pytest.approx(0.25 / 6e3 * 1e-8, rel=1e-15)
    np.testing.assert_array_equal(c.read_energy_j(g, v=0.2), 0.2 ** 2 * g * 10e-9)


def test_write_pulse_energy_and_latency():
    c = ReRAM()
    g = c.level_conductances(2)
    np.testing.assert_array_equal(c.write_pulse_energy_j(g), 2.0 ** 2 * g * 100e-9)
    assert c.write_pulse_energy_j() == pytest.approx(4.0 / 6e3 * 1e-7, rel=1e-15)  # 66.7 pJ at g_max
    assert c.write_pulse_latency_s == 100e-9
    c2 = ReRAM(write_voltage_v=3.2, write_pulse_time_s=300e-6)
    assert c2.write_pulse_energy_j(1e-6) == pytest.approx(3.2 ** 2 * 1e-6 * 300e-6, rel=1e-15)


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs, name", [
    ({"r_on_ohm": -6e3}, "r_on_ohm"),
    ({"r_on_ohm": 0.0}, "r_on_ohm"),
    ({"on_off_ratio": 1.0}, "on_off_ratio"),
    ({"on_off_ratio": 0.5}, "on_off_ratio"),
    ({"p_stuck_off": 1.5}, "p_stuck_off"),
    ({"p_stuck_on": -0.1}, "p_stuck_on"),
    ({"p_stuck_off": 0.6, "p_stuck_on": 0.6}, "p_stuck_on"),
    ({"prog_sigma_frac": -0.01}, "prog_sigma_frac"),
    ({"read_sigma_frac": float("nan")}, "read_sigma_frac"),
    ({"max_pulses": 0}, "max_pulses"),
    ({"max_pulses": 10.5}, "max_pulses"),
    ({"nl_ltp": 12.0}, "nl_ltp"),
    ({"nl_ltd": -9.5}, "nl_ltd"),
    ({"read_time_s": 0.0}, "read_time_s"),
    ({"relax_t0_s": -1.0}, "relax_t0_s"),
    ({"write_voltage_v": "2"}, "write_voltage_v"),
])
def test_bad_values_raise_config_error_naming_the_field(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        ReRAM(**kwargs)


def test_is_frozen():
    with pytest.raises(AttributeError):
        ReRAM().r_on_ohm = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------------------- describe
def test_describe_lists_every_param_with_unit_and_source():
    d = describe(ReRAM())
    assert d["kind"] == "reram" and d["class"] == "ReRAM" and d["summary"]
    names = [p["name"] for p in d["params"]]
    assert names == [f.name for f in fields(ReRAM)]
    expected = {"r_on_ohm", "on_off_ratio", "read_voltage_v", "read_time_s", "prog_sigma_frac",
                "read_sigma_frac", "p_stuck_off", "p_stuck_on", "relax_sigma_frac", "relax_t0_s",
                "max_pulses", "nl_ltp", "nl_ltd", "c2c_sigma_frac", "write_voltage_v", "write_pulse_time_s"}
    assert expected <= set(names)
    for p in d["params"]:
        assert p["unit"].strip() and p["source"].strip(), p["name"]
    by = {p["name"]: p for p in d["params"]}
    assert by["r_on_ohm"]["value"] == 6e3 and by["r_on_ohm"]["unit"] == "Ohm"
    assert "2211.02167" in by["on_off_ratio"]["source"]
    assert "(est.)" in by["write_voltage_v"]["source"] and "(est.)" in by["relax_sigma_frac"]["source"]
