"""Time steps of a spiking network as a sweep axis (cimsim.sweep_snn): ``--grid time_steps=...`` / ``--set time_steps``.

Small: snn_vgg on Fashion-MNIST, 8 test and 8 calibration examples, T of 2 and 4 (the network's own is 10).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch
from torch import nn

from cimsim import arch as arch_mod
from cimsim import sweep, sweep_snn
from cimsim.errors import ConfigError
from cimsim.mappers import evaluate
from cimsim.networks import load_model_and_data, reference_kwargs
from cimsim.sweepfile import Point
from cimsim.workloads import snn_zoo
from cimsim.workloads.snn_zoo import with_time_steps

ROOT = Path(__file__).resolve().parents[1]
LIMIT, CAL = 8, 8


def settings(model="snn_vgg", dataset="fashion-mnist", **kw):
    return sweep.Settings(model=model, dataset=dataset, limit=LIMIT, calibration=CAL, batch_size=8, **kw)


def direct(arch_name, params, steps, seed=0):
    """What 'cimsim run --arch ARCH --set ... --time-steps T --limit 8 --calibration 8' computes."""
    spec = arch_mod.get(arch_name, **params)
    model, meta, data, ckpt = load_model_and_data("snn_vgg", "fashion-mnist", arch=spec, overrides=params)
    if steps is not None:
        with_time_steps(model, steps)
    loader = data.loader("test", batch_size=8, limit=LIMIT)
    calibration = data.loader("train", batch_size=8, limit=CAL, shuffle=False)
    return evaluate(model, spec, loader, calibration=calibration, seed=seed,
                    **(reference_kwargs(meta, ckpt) if spec.maps_to_crossbars else {}))


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("snn") / "snn.h5"
    points = sweep.make_points(["adcless-snn"], grid={"rows": ["32", "64"], "time_steps": ["2", "4"]})
    return points, sweep.run_sweep(out, points, settings(), progress=False), out


def test_grid_of_rows_and_time_steps_has_four_points_with_integer_time_steps(grid_sweep):
    points, results, _ = grid_sweep
    assert sorted(p.key for p in points) == [f"adcless-snn__rows={r}__time_steps={t}_seed0"
                                              for r in (32, 64) for t in (2, 4)]
    assert all(isinstance(p.param_dict["time_steps"], int) for p in points)
    assert set(results) == set(points)
    for p, rep in results.items():
        assert rep.config["time_steps"] == p.param_dict["time_steps"]


@pytest.mark.parametrize("rows,steps", [(32, 2), (32, 4), (64, 2), (64, 4)])
def test_each_point_equals_a_run_of_the_network_at_its_time_steps(grid_sweep, rows, steps):
    _, results, _ = grid_sweep
    rep = results[Point.make("adcless-snn", {"rows": rows, "time_steps": steps}, 0)]
    ref = direct("adcless-snn", {"rows": rows}, steps)
    assert rep.accuracy == ref.accuracy
    assert rep.digital_accuracy == ref.digital_accuracy
    assert rep.energy_j == ref.energy_j
    assert rep.latency_s == ref.latency_s
    assert rep.n_examples == ref.n_examples == LIMIT


@pytest.mark.parametrize("rows", [32, 64])
def test_energy_and_latency_grow_with_time_steps(grid_sweep, rows):
    _, results, _ = grid_sweep
    r2, r4 = (results[Point.make("adcless-snn", {"rows": rows, "time_steps": t}, 0)] for t in (2, 4))
    assert r4.energy_j > 1.5 * r2.energy_j       # per-step crossbar reads and LIF updates: ~linear in T
    assert r4.latency_s > 1.5 * r2.latency_s
    assert r2.area_m2 == r4.area_m2              # the same chip


def test_table_shows_time_steps_as_a_swept_column(grid_sweep):
    _, results, _ = grid_sweep
    lines = sweep.table(results).splitlines()
    assert lines[0].split()[:3] == ["arch", "rows", "time_steps"]
    assert [l.split()[1:3] for l in lines[2:]] == [["32", "2"], ["32", "4"], ["64", "2"], ["64", "4"]]


def test_cached_network_keeps_its_own_time_steps_and_points_without_the_knob_run_it():
    """A point at T=2 then a point without the knob on the same architecture: the second runs the network's own T
    (10), mapped anew, not the programmed network of the first (the reuse cache keys on the time steps)."""
    s = settings()
    sweep._PROGRAMMED.clear()
    try:
        at2 = sweep.evaluate_point(Point.make("snn-hpadc", {"time_steps": 2}, 0), s)
        own = sweep.evaluate_point(Point.make("snn-hpadc", {}, 0), s)
        model = sweep._context(s)[0]
        assert model.time_steps == snn_zoo.VGG_TIME_STEPS == 10 and model.encoder.time_steps == 10
        assert "time_steps" not in own.config and at2.config["time_steps"] == 2
        assert own.energy_j == direct("snn-hpadc", {}, None).energy_j
        assert at2.energy_j == direct("snn-hpadc", {}, 2).energy_j
        assert own.energy_j > 4 * at2.energy_j
    finally:
        sweep._PROGRAMMED.clear()


def test_set_time_steps_applies_to_every_architecture():
    notes = []
    points = sweep.make_points(["adcless-snn", "isaac"], overrides={"time_steps": "3"}, notes=notes)
    assert notes == []      # no ADMM note, no 'not swept there'
    sweep.make_points(["adcless-snn", "isaac"], grid={"time_steps": ["2", "3"]}, notes=notes)
    assert notes == []
    assert all("time_steps" not in p.param_dict for p in points)
    for p in points:
        assert sweep_snn.split(sweep.point_params(p, {"time_steps": "3"}))[1] == 3


@pytest.mark.parametrize("value,needle", [("0", "out of range"), ("-2", "out of range"), ("2.5", "not a whole"),
                                          ("x", "not a whole")])
def test_bad_time_steps_are_refused_before_any_point(value, needle):
    with pytest.raises(ConfigError, match=needle):
        sweep.make_points(["adcless-snn"], grid={"time_steps": ["4", value]})
    with pytest.raises(ConfigError, match=needle):
        sweep.make_points(["adcless-snn"], overrides={"time_steps": value})
    with pytest.raises(ConfigError, match="twice"):
        sweep.make_points(["adcless-snn"], grid={"time_steps": ["4", "04"]})
    with pytest.raises(ConfigError, match="--grid, not --set"):
        sweep.make_points(["adcless-snn"], overrides={"time_steps": "4"}, grid={"time_steps": ["2", "4"]})


def test_time_steps_of_a_network_that_does_not_spike_are_refused_before_the_file(tmp_path):
    s = settings(model="lenet5")
    sweep.prime_context(s, nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), {"model": "lenet5"}, None)
    points = sweep.make_points(["isaac"], grid={"time_steps": ["2", "4"]})
    with pytest.raises(ConfigError, match=r"spiking networks \(snn_vgg, snn_resnet20, snn_dvsnet, snn_flownet\), "
                                          "not to lenet5"):
        sweep.run_sweep(tmp_path / "x.h5", points, s, progress=False)
    assert not (tmp_path / "x.h5").exists()


def test_event_networks_take_only_their_data_frames(tmp_path):
    s = settings(model="snn_dvsnet", dataset="gesture-synth")
    net = snn_zoo.build_events("snn_dvsnet", (5, 2, 32, 32), 11)
    sweep.prime_context(s, net, {"model": "snn_dvsnet"}, None)
    with pytest.raises(ConfigError, match="5 event frames per example; time_steps=10 cannot change them"):
        sweep.run_sweep(tmp_path / "x.h5", sweep.make_points(["adcless-snn"], grid={"time_steps": ["5", "10"]}), s,
                        progress=False)
    assert not (tmp_path / "x.h5").exists()
    sweep_snn.check_model(net, "snn_dvsnet", [5])    # its own T is fine
    sweep._CONTEXT.clear()


def test_at_time_steps_copies_and_leaves_the_network_alone():
    torch.manual_seed(0)
    net = snn_zoo.BUILDERS["snn_vgg"]()
    x = torch.rand(2, 1, 28, 28)
    before = net(x)
    short = sweep_snn.at_time_steps(net, 3)
    assert short is not net and short.time_steps == 3 and net.time_steps == 10
    assert sweep_snn.at_time_steps(net, None) is net and sweep_snn.at_time_steps(net, 10) is net
    assert torch.equal(net(x), before)
    same = with_time_steps(snn_zoo.BUILDERS["snn_vgg"](), 3)
    same.load_state_dict(net.state_dict())
    assert torch.equal(short(x), same(x)) and not torch.equal(short(x), before)


def cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cimsim", *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def test_cli_sweeps_time_steps_and_plots_them(tmp_path):
    out = tmp_path / "snn.h5"
    r = cli("sweep", "--arch", "adcless-snn", "--model", "snn_vgg", "--dataset", "fashion-mnist", "--grid",
            "rows=32,64", "--grid", "time_steps=2,4", "--limit", LIMIT, "--calibration", CAL, "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in r.stdout.splitlines()]
    assert sorted((d["params"]["rows"], d["params"]["time_steps"]) for d in rows) == [(32, 2), (32, 4), (64, 2),
                                                                                       (64, 4)]
    ref = direct("adcless-snn", {"rows": 64}, 4)
    (d64,) = [d for d in rows if d["params"] == {"rows": 64, "time_steps": 4}]
    assert d64["energy_j"] == ref.energy_j and d64["accuracy"] == ref.accuracy
    with h5py.File(out, "r") as f:
        assert sorted(f) == sorted(d["key"] for d in rows)
    png = tmp_path / "snn.png"
    r = cli("plot", out, "--x", "time_steps", "--hue", "rows", "-o", png)
    assert r.returncode == 0, r.stderr
    assert png.stat().st_size > 10_000
    # bad input: one line, exit 2, no file
    for args, needle in [(["--model", "snn_vgg", "--grid", "time_steps=0,4"], "out of range"),
                         (["--model", "lenet5", "--grid", "time_steps=2,4"], "applies to spiking networks")]:
        bad = tmp_path / "bad.h5"
        r = cli("sweep", "--arch", "isaac", "--dataset", "fashion-mnist", *args, "--limit", LIMIT, "--out", bad)
        lines = [l for l in r.stderr.strip().splitlines() if l.strip() and "warn" not in l.lower()]
        assert r.returncode == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr
        assert not bad.exists()
