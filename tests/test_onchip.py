"""On-chip learning (issue 6): the engine reading learned conductances, the update circuit, the device
laws under pulses, the ledger of write pulses, and the two papers' experiments at a small size."""

from __future__ import annotations

import json
from dataclasses import replace

import h5py
import numpy as np
import pytest

from cimsim.cli import main
from cimsim.crossbar import Crossbar, CrossbarSpec
from cimsim.devices import DomainWallSynapse, IdealReadout, MOSFETSynapse, ReRAM
from cimsim.errors import ConfigError
from cimsim.ledger import EventLedger
from cimsim.plots import plot_file
from cimsim.workloads import onchip

QUIET_RERAM = ReRAM(c2c_sigma_frac=0.0)


# ------------------------------------------------------------------------------ the engine
def _ideal_spec(cell, cell_bits=2, **kw):
    return CrossbarSpec(rows=16, cols=16, cell=cell, cell_bits=cell_bits, weight_bits=cell_bits + 1,
                        input_bits=4, dac_bits=1, signed="differential", readout=IdealReadout(), **kw)


def test_from_conductances_on_levels_is_the_integer_matmul():
    rng = np.random.default_rng(0)
    W = rng.integers(-3, 4, size=(5, 37))
    x = rng.integers(0, 16, size=(8, 37))
    spec = _ideal_spec(QUIET_RERAM)
    levels = QUIET_RERAM.level_conductances(2)
    g = np.stack([levels[np.maximum(W, 0)], levels[np.maximum(-W, 0)]])
    xb = Crossbar.from_conductances(g, spec, seed=1)
    y = xb(x)
    np.testing.assert_allclose(y, x @ W.T, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y, Crossbar(W, spec, seed=1)(x), rtol=0, atol=1e-6)
    assert xb.ledger.count("cell_reads") > 0


def test_set_conductances_reads_the_new_state_and_keeps_the_ledger():
    cell = MOSFETSynapse(read_noise_rel=0.0)
    spec = _ideal_spec(cell, cell_bits=8)
    g = np.full((2, 3, 20), cell.g_min_s)
    xb = Crossbar.from_conductances(g, spec)
    x = np.full((2, 20), 15)
    np.testing.assert_allclose(xb(x), 0.0, atol=1e-9)
    g[0, 1, :] = cell.g_max_s                      # weight +1 window on output 1
    xb.set_conductances(g)
    y = xb(x)
    np.testing.assert_allclose(y[:, 1], 20 * 15 * 255, rtol=1e-9)
    np.testing.assert_allclose(y[:, [0, 2]], 0.0, atol=1e-6)
    assert xb.ledger.count("cell_reads") > 0
    with pytest.raises(ConfigError):
        xb.set_conductances(g[:, :2])
    with pytest.raises(ConfigError):
        Crossbar.from_conductances(g, replace(spec, weight_bits=4))


def test_domain_wall_track_with_any_number_of_sites_reads_through_the_engine():
    cell = DomainWallSynapse(read_noise_rel=0.0).with_pinning_sites(8)
    spec = _ideal_spec(cell, cell_bits=8)
    g = np.stack([cell.states[[7, 3]][:, None], cell.states[[0, 3]][:, None]])   # (2, 2 outputs, 1 input)
    y = Crossbar.from_conductances(g, spec)(np.array([[15]]))
    np.testing.assert_allclose(y, [[15 * 255, 0.0]], atol=1e-6)


# ------------------------------------------------------------------------------ device laws under pulses
def test_window_pulses_of_each_synapse():
    assert MOSFETSynapse().window_pulses == pytest.approx(250.0)      # 1.25 V / 5 mV
    assert ReRAM().window_pulses == 100.0
    d = DomainWallSynapse()
    assert d.window_pulses == 31.0 and d.one_site_pulse_s() == pytest.approx(1e-9)
    for n in (8, 16, 64, 256):
        e = d.with_pinning_sites(n)
        assert e.sites_per_pulse() == 1 and e.window_pulses == n - 1
        # same current density: crossing the whole track costs the same energy at any number of sites
        assert e.write_pulse_energy_j() * e.window_pulses == pytest.approx(d.write_pulse_energy_j() * 31, rel=1e-12)


@pytest.mark.parametrize("cell,mode", [
    (MOSFETSynapse(c2c_sigma_rel=0.0), "count"), (MOSFETSynapse(c2c_sigma_rel=0.0), "width"),
    (DomainWallSynapse(p_pin=0.0).with_pinning_sites(16), "count"), (QUIET_RERAM, "count")])
def test_k_pulses_move_a_synapse_as_its_law_says(cell, mode):
    """The update circuit's pulse train gives what the device law gives for k pulses at once, and for
    the linear devices exactly k steps of the nominal size, stopped at the window edge."""
    k = np.array([-40, -7, -1, 0, 1, 3, 12, 40])
    g0 = np.full(k.shape, float(cell.pulse(np.array([cell.g_min_s]), np.array([cell.window_pulses // 2]))[0]))
    circuit = onchip.UpdateCircuit(mode=mode, max_pulses=64)
    g, pulses, energy, slots = circuit.apply(cell, g0, k.astype(float))
    np.testing.assert_allclose(g, cell.pulse(g0, k), rtol=1e-12, atol=1e-18)
    if not isinstance(cell, ReRAM):
        step = cell.g_range_s / cell.window_pulses
        np.testing.assert_allclose(g, np.clip(g0 + k * step, cell.g_min_s, cell.g_max_s), rtol=1e-9)
    assert pulses == (np.abs(k).sum() if mode == "count" else np.count_nonzero(k))
    assert slots == np.abs(k).sum()          # a 1-D array is one column: its rows are written in turn


def test_reram_pulses_are_nonlinear_and_asymmetric():
    r = QUIET_RERAM
    up = r.pulse(np.full(10, r.g_min_s), np.arange(10) * 10)
    steps = np.diff(up)
    assert np.all(steps[:-1] > steps[1:])                 # saturating potentiation
    down = r.pulse(np.full(1, r.g_max_s), -10)[0]
    assert r.g_max_s - down != pytest.approx(up[1] - r.g_min_s, rel=0.05)   # LTD differs from LTP


def test_domain_wall_stochastic_pinning_statistics():
    d = DomainWallSynapse().with_pinning_sites(256)         # p_pin = 0.05
    g0 = np.full(20000, d.states[10])
    g, *_ = onchip.UpdateCircuit(max_pulses=64).apply(d, g0, np.full(20000, 20.0), np.random.default_rng(3))
    moved = d.site_index(g) - 10
    assert moved.mean() == pytest.approx(20 * 0.95, abs=0.02)               # E = k (1 - p)
    assert moved.var() == pytest.approx(20 * 0.95 * 0.05, rel=0.06)         # binomial variance


def test_mosfet_cycle_to_cycle_noise_statistics():
    m = MOSFETSynapse()                                       # 1 % charge spread per pulse
    g0 = np.full(20000, 0.5 * (m.g_min_s + m.g_max_s))
    g, *_ = onchip.UpdateCircuit(max_pulses=64).apply(m, g0, np.full(20000, 16.0), np.random.default_rng(4))
    dv = (g - g0) / m.dg_per_pulse_s
    assert dv.mean() == pytest.approx(16.0, abs=0.002)
    assert dv.std() == pytest.approx(0.01 * 4.0, rel=0.03)    # sqrt(16) pulses x 1 %


# ------------------------------------------------------------------------------ the update circuit
def test_pulse_counts_follow_sign_and_size_of_the_update():
    c = onchip.UpdateCircuit(max_pulses=16)
    dw = np.array([-5.0, -1.26, -0.74, -0.5, -0.49, 0.0, 0.2, 0.5, 0.76, 1.49, 2.51, 100.0]) * 0.1
    n = c.pulses(dw, 0.1)
    np.testing.assert_array_equal(n, [-5, -1, -1, -1, 0, 0, 0, 1, 1, 1, 3, 16])
    assert np.all(np.sign(n[n != 0]) == np.sign(dw[n != 0]))
    u = np.linspace(-3, 3, 601)
    assert np.all(np.diff(c.pulses(u, 0.1)) >= 0)              # monotone in the update
    w = onchip.UpdateCircuit(mode="width", width_resolution=0.25, max_pulses=2).pulses(dw, 0.1)
    np.testing.assert_array_equal(w, [-2, -1.25, -0.75, -0.5, -0.5, 0, 0.25, 0.5, 0.75, 1.5, 2, 2])
    s = onchip.UpdateCircuit(rounding="stochastic").pulses(np.full(40000, 0.037), 0.1, np.random.default_rng(5))
    assert set(np.unique(s)) == {0.0, 1.0} and s.mean() == pytest.approx(0.37, abs=0.01)   # unbiased


@pytest.mark.parametrize("name", ["reram", "mosfet", "domain-wall"])
def test_ledger_write_energy_is_the_sum_over_pulses(name):
    """A layer update's ledger energy equals the device energy of every pulse, each at its start state."""
    cell = onchip.make_synapse(name, 64)
    cfg = onchip.OnChipConfig(synapse=name, init_scale=0.5, w_max=1.0)
    spec = CrossbarSpec(cell=cell, cell_bits=8, weight_bits=9, signed="differential", readout=IdealReadout())
    layer = onchip.SynapticLayer("fc1", 6, 3, cell, spec, cfg.w_max, cfg.init_scale, np.random.default_rng(0), 0)
    dw = np.random.default_rng(1).normal(0, 0.1, size=(3, 7))
    circuit = onchip.UpdateCircuit(mode="count", max_pulses=16)
    n = circuit.pulses(dw, layer.dw_per_pulse)
    assert np.count_nonzero(n) > 5
    # independent count: walk each synapse through its pulses one by one (no noise: same path)
    expect_e, expect_pulses = 0.0, 0
    for pol, sign in ((0, 1), (1, -1)):
        for (j, k), nk in np.ndenumerate(sign * n):
            g = layer.g[pol, j, k]
            for _ in range(int(abs(nk))):
                expect_e += float(cell.write_pulse_energy_j(np.array(g)))
                g = float(cell.pulse(np.array(g), np.sign(nk)))
                expect_pulses += 1
    led = EventLedger()
    layer.update(dw, circuit, None, led)
    assert led.count("write_pulses", "fc1") == expect_pulses == 2 * np.abs(n).sum()
    assert led.count("cell_write_energy_j", "fc1") == pytest.approx(expect_e, rel=1e-12)
    assert led.count("write_pulse_slots", "fc1") == np.abs(n).max(axis=0).sum()   # rows written in turn
    if name == "reram":   # state dependent: not simply pulses x one energy
        assert expect_e != pytest.approx(expect_pulses * cell.write_pulse_energy_j(cell.g_max_s), rel=1e-3)


def test_make_synapse_rejects_bad_input():
    with pytest.raises(ConfigError, match="unknown synapse"):
        onchip.make_synapse("pcm")
    with pytest.raises(ConfigError, match="at least 2 states"):
        onchip.make_synapse("domain-wall", 1)
    assert onchip.make_synapse("mosfet", 101).window_pulses == pytest.approx(100.0)
    assert onchip.make_synapse("reram", 33).max_pulses == 32


# ------------------------------------------------------------------------------ the experiments (small)
def test_mosfet_iris_reaches_90_percent_and_counts_its_cost():
    cfg = onchip.default_config("mosfet", "iris")
    assert cfg.hidden == (8,) and cfg.batch_size == 1
    r = onchip.run(cfg, progress=False)
    assert r.topology == [4, 8, 3] and r.epochs == 30
    assert r.test_accuracy >= 0.90 and r.float_test_accuracy >= 0.90
    assert r.energy_j > r.write_energy_j > 0 and r.time_s > 0
    led = r.ledger
    writes = sum(row.get("cell_write_energy_j", 0.0) for row in led.values())
    assert r.write_energy_j == pytest.approx(writes, rel=1e-12)
    assert r.weight_updates == 2 * 30 * 105                    # two layers, per-example updates
    assert any("backward" in k for k in led)                    # the hidden error is read through fc2
    # per-epoch energy grows, and the last epoch's total is the run's
    e = [h["energy_j"] for h in r.history]
    assert all(b > a for a, b in zip(e, e[1:])) and e[-1] == pytest.approx(r.energy_j, rel=1e-12)


def test_domain_wall_accuracy_rises_with_pinning_sites():
    acc = {}
    for n in (4, 128):
        cfg = onchip.default_config("domain-wall", "digits", states=n, epochs=2, train_limit=600, test_limit=300)
        acc[n] = onchip.run(cfg, progress=False)
    assert acc[128].test_accuracy > acc[4].test_accuracy + 0.2
    assert acc[128].test_accuracy >= acc[128].float_test_accuracy - 0.1


def test_reram_learns_through_the_same_path():
    cfg = onchip.default_config("reram", "iris", epochs=15)
    r = onchip.run(cfg, progress=False)
    assert r.test_accuracy >= 0.6 and r.write_pulses > 0


# ------------------------------------------------------------------------------ CLI and files
def test_cli_onchip_json_file_and_plot(capsys, tmp_path):
    out = tmp_path / "run.h5"
    code = main(["onchip", "--synapse", "mosfet", "--dataset", "iris", "--epochs", "2", "--out", str(out), "--json"])
    stdout, _ = capsys.readouterr()
    assert code == 0
    d = json.loads(stdout)
    for k in ("train_accuracy", "test_accuracy", "float_test_accuracy", "energy_j", "time_s", "epochs"):
        assert k in d
    assert d["epochs"] == 2 and len(d["history"]) == 2
    with h5py.File(out) as f:
        assert f.attrs["format"] == "cimsim.onchip" and f.attrs["kind"] == "onchip"
        assert len(f["history/test_accuracy"]) == 2
    back = onchip.OnChipResult.from_hdf5(out)
    assert back.test_accuracy == d["test_accuracy"] and back.epochs == 2
    png = plot_file(out)
    assert png.is_file() and png.stat().st_size > 10_000


@pytest.mark.parametrize("argv,needle", [
    (["--synapse", "pcm"], "invalid choice: 'pcm'"),
    (["--synapse", "mosfet", "--dataset", "fashion-mnist"], "--synapse domain-wall"),
    (["--synapse", "domain-wall", "--dataset", "iris"], "--synapse mosfet"),
    (["--dataset", "cifar10"], "not supported for on-chip learning"),
    (["--states", "1"], "states >= 2"),
    (["--out", "/nonexistent/dir/r.h5"], "/nonexistent/dir"),
])
def test_cli_onchip_user_errors(capsys, argv, needle):
    code = main(["onchip", *argv])
    _, err = capsys.readouterr()
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in err
