"""Design-point sweeps: grid parsing, the sweep file, resume after kill -9, refusal on other settings, CLI (the
plots: test_sweep_plots.py)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
from _cli_helpers import assert_one_line_user_error, run_cli

from _sweep_fakes import SETTINGS, fake_evaluate, fake_report, grid
from cimsim import sweep, sweepfile
from cimsim.errors import ConfigError
from cimsim.report import Report
from cimsim.sweepfile import Point, SweepFileError
from cimsim.workloads import datasets

ROOT = Path(__file__).resolve().parent.parent
FMNIST = datasets.SYSTEM_ROOT / "fashion-mnist"
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed")




def d(report):
    """A report as a dict, without its creation time."""
    out = report.to_dict()
    out.pop("created")
    return out


class Recorder:
    """An evaluate_point that records which points it ran."""

    def __init__(self, fail_on=None):
        self.ran = []
        self.fail_on = fail_on

    def __call__(self, point, settings):
        assert settings == SETTINGS
        if point.key == self.fail_on:
            raise ConfigError("the device model has no such cell")
        self.ran.append(point.key)
        return fake_report(point)


# --------------------------------------------------------------------------------------------------
# grid


@pytest.mark.parametrize("text,bits", [
    ("1-8", [1, 2, 3, 4, 5, 6, 7, 8]), ("4,6,8", [4, 6, 8]), ("6", [6]), ("1-3,8", [1, 2, 3, 8]),
    ("8,4,4", [4, 8]), (" 2 - 3 ", [2, 3]), ("16", [16]), ("3-3", [3]),
])
def test_adc_bits_forms(text, bits):
    assert sweep.parse_adc_bits(text) == bits


@pytest.mark.parametrize("text,needle", [
    ("0", "0 bits is out of range"), ("17", "17 bits is out of range"), ("1-20", "20 bits"),
    ("8-1", "runs backwards; write 1-8"), ("x", "'x' is not a number"), ("4,,6", "empty item"),
    ("", "empty item"), ("-3", "is not a number"), ("2.5", "is not a number"),
])
def test_adc_bits_rejects_bad_values(text, needle):
    with pytest.raises(ConfigError, match="--adc-bits") as exc:
        sweep.parse_adc_bits(text)
    assert needle in str(exc.value)


def test_archs_are_checked_deduplicated_and_lowercased():
    assert sweep.parse_archs("ISAAC, digital,isaac") == ["isaac", "digital"]
    with pytest.raises(ConfigError, match="unknown architecture 'tpu'.*digital, isaac"):
        sweep.parse_archs("isaac,tpu")
    with pytest.raises(ConfigError, match="empty name"):
        sweep.parse_archs("isaac,")


def test_grid_sweeps_adc_bits_only_where_the_arch_has_them():
    points = sweep.make_points(["isaac", "digital"], [4, 6], 3)
    assert [p.key for p in points] == [
        "isaac_adc4_seed0", "isaac_adc4_seed1", "isaac_adc4_seed2",
        "isaac_adc6_seed0", "isaac_adc6_seed1", "isaac_adc6_seed2",
        "digital_adcnone_seed0", "digital_adcnone_seed1", "digital_adcnone_seed2"]
    assert sweep.has_adc_bits("isaac") and not sweep.has_adc_bits("digital")
    # without --adc-bits an architecture keeps its own resolution (ISAAC: 8 bits)
    assert [p.key for p in sweep.make_points(["isaac"], None, 1)] == ["isaac_adc8_seed0"]


def test_overrides_apply_to_the_archs_that_have_them():
    assert sweep.point_params(Point("digital", None, 0), {"mac_units": "1024", "read_cycle_s": "1e-7"}) == \
        {"mac_units": "1024"}
    assert sweep.point_params(Point("isaac", 4, 1), {"mac_units": "1024", "read_cycle_s": "1e-7"}) == \
        {"read_cycle_s": "1e-7", "adc.bits": 4}
    with pytest.raises(ConfigError, match="no architecture in the sweep \\(isaac, digital\\) has parameter warp"):
        sweep.make_points(["isaac", "digital"], [4], 1, {"warp": "9"})
    with pytest.raises(ConfigError, match="--adc-bits, not --set adc_bits"):
        sweep.make_points(["isaac"], [4], 1, {"adc_bits": "6"})
    with pytest.raises(ConfigError, match="mac_units='many'"):  # every point's architecture is built up front
        sweep.make_points(["digital"], None, 1, {"mac_units": "many"})
    with pytest.raises(ConfigError, match="^seeds must be a positive whole number of seeds, e.g. 3, got 0$"):
        sweep.make_points(["digital"], None, 0)   # the Python argument's name (the CLI's --seeds refuses 0 itself)


# --------------------------------------------------------------------------------------------------
# the file


def test_sweep_file_holds_settings_and_one_group_per_point(tmp_path):
    path = tmp_path / "s.h5"
    points = grid()
    seen = []
    results = sweep.run_sweep(path, points, SETTINGS, evaluate_point=Recorder(),
                              on_point=lambda p, r, cached: seen.append((p.key, cached)))
    assert seen == [(p.key, False) for p in points]
    assert list(results) == sorted(points, key=Point.sort_key)
    for p, r in results.items():
        assert d(r) == d(fake_report(p))
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "cimsim.sweep" and f.attrs["format_version"] == 1
        assert json.loads(f.attrs["settings_json"]) == SETTINGS.fixed()
        assert "data_dir" not in json.loads(f.attrs["settings_json"])
        assert f.attrs["setting_model"] == "lenet5" and f.attrs["setting_limit"] == 100
        assert f.attrs["setting_calibration"] == 64 and f.attrs["setting_batch_size"] == 50
        assert json.loads(f.attrs["setting_overrides"]) == {"mac_units": "1024"}
        assert f.attrs["setting_cimsim_version"] == f.attrs["cimsim_version"]
        assert sorted(f.keys()) == sorted(p.key for p in points)
        g = f["isaac_adc2_seed1"]
        assert (g.attrs["point_arch"], g.attrs["point_adc_bits"], g.attrs["point_seed"]) == ("isaac", 2, 1)
        assert json.loads(g.attrs["point_json"]) == {"arch": "isaac", "params": {"adc.bits": 2}, "adc_bits": 2,
                                                     "seed": 1}
        assert json.loads(g.attrs["point_params_json"]) == {"adc.bits": 2}
        assert json.loads(g.attrs["point_arch_params_json"]) == {"adc_bits": 2}
        assert g.attrs["format"] == "cimsim.report"
        assert g.attrs["accuracy"] == pytest.approx(fake_report(Point("isaac", 2, 1)).accuracy)
        g = f["digital_adcnone_seed0"]
        assert "point_adc_bits" not in g.attrs and json.loads(g.attrs["point_json"])["adc_bits"] is None
    assert not [p for p in tmp_path.iterdir() if p.name != "s.h5"]  # no temporary or lock file left


def test_rerun_skips_finished_points_and_extends_the_grid(tmp_path):
    path = tmp_path / "s.h5"
    first = Recorder()
    sweep.run_sweep(path, grid(bits=(1, 2), seeds=1), SETTINGS, evaluate_point=first)
    assert first.ran == ["isaac_adc1_seed0", "isaac_adc2_seed0", "digital_adcnone_seed0"]
    again = Recorder()
    seen = []
    results = sweep.run_sweep(path, grid(bits=(1, 2, 3), seeds=2), SETTINGS, evaluate_point=again,
                              on_point=lambda p, r, cached: seen.append((p.key, cached)))
    assert again.ran == ["isaac_adc1_seed1", "isaac_adc2_seed1", "isaac_adc3_seed0", "isaac_adc3_seed1",
                         "digital_adcnone_seed1"]
    assert [k for k, cached in seen if cached] == first.ran
    assert len(results) == 8
    third = Recorder()
    sweep.run_sweep(path, grid(bits=(1, 2, 3), seeds=2), SETTINGS, evaluate_point=third)
    assert third.ran == []
    # a smaller grid returns only its own points; the file keeps them all
    assert len(sweep.run_sweep(path, grid(bits=(1,), seeds=1), SETTINGS, evaluate_point=third)) == 2
    assert len(sweepfile.read_points(path)) == 8


@pytest.mark.parametrize("change,needle", [
    ({"limit": 200}, "limit: file 100, now 200"),
    ({"overrides": {}}, "overrides: file {'mac_units': '1024'}, now {}"),
    ({"calibration": 128}, "calibration: file 64, now 128"),
    ({"checkpoint_sha256": "cd" * 32}, "checkpoint_sha256"),
    ({"cimsim_version": "9.9"}, "cimsim_version"),
])
def test_other_settings_are_refused_and_the_file_is_untouched(tmp_path, change, needle):
    path = tmp_path / "s.h5"
    sweep.run_sweep(path, grid(bits=(1,), seeds=1), SETTINGS, evaluate_point=Recorder())
    before = path.read_bytes()
    other = sweep.Settings(**{**SETTINGS.__dict__, **change})
    rec = Recorder()
    with pytest.raises(SweepFileError, match="other settings") as exc:
        sweep.run_sweep(path, grid(bits=(1, 2), seeds=1), other, evaluate_point=rec)
    assert needle in str(exc.value) and "choose another --out" in str(exc.value)
    assert rec.ran == [] and path.read_bytes() == before


def test_same_content_at_another_path_or_data_dir_resumes(tmp_path):
    path = tmp_path / "s.h5"
    sweep.run_sweep(path, grid(bits=(1,), seeds=1), SETTINGS, evaluate_point=Recorder())
    moved = sweep.Settings(**{**SETTINGS.__dict__, "checkpoint": "/elsewhere/lenet5.pt", "data_dir": "/data"})
    rec = Recorder()
    sweep.run_sweep(path, grid(bits=(1,), seeds=1), moved, evaluate_point=lambda p, s: rec(p, SETTINGS))
    assert rec.ran == []


def test_a_file_that_is_not_a_sweep_is_refused(tmp_path):
    report = tmp_path / "r.h5"
    fake_report(Point("isaac", 4, 0)).to_hdf5(report)
    before = report.read_bytes()
    with pytest.raises(SweepFileError, match="not a cimsim sweep file \\(format cimsim.report\\)") as err:
        sweep.run_sweep(report, grid(), SETTINGS, evaluate_point=Recorder())
    assert str(err.value).endswith("give another --out: a sweep adds points only to a file it wrote")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(SweepFileError, match="not a readable cimsim sweep file") as err:
        sweep.run_sweep(junk, grid(), SETTINGS, evaluate_point=Recorder())
    assert str(err.value).endswith("give another --out (if a sweep wrote it and it is damaged, remove it to start "
                                   "the sweep again)")
    assert report.read_bytes() == before and junk.read_bytes() == b"not hdf5 at all"   # neither file touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.h5", "r.h5"]           # nothing written beside


def test_a_point_is_never_overwritten(tmp_path):
    path = tmp_path / "s.h5"
    sweep.run_sweep(path, grid(bits=(1,), seeds=1), SETTINGS, evaluate_point=Recorder())
    with pytest.raises(SweepFileError, match="already holds point isaac_adc1_seed0"):
        sweepfile.append(path, Point("isaac", 1, 0), fake_report(Point("isaac", 8, 0)))
    assert d(sweepfile.read_points(path)[Point("isaac", 1, 0)]) == d(fake_report(Point("isaac", 1, 0)))


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_a_write_that_dies_midway_leaves_the_file_as_it_was(tmp_path, monkeypatch, exc_type):
    path = tmp_path / "s.h5"
    sweep.run_sweep(path, grid(bits=(1,), seeds=1), SETTINGS, evaluate_point=Recorder())
    before = path.read_bytes()

    def half_write(self, group):
        group.attrs["format"] = "cimsim.report"
        raise exc_type("disk on fire")

    monkeypatch.setattr(Report, "write_hdf5_group", half_write)
    with pytest.raises(exc_type):
        sweep.run_sweep(path, grid(bits=(1, 2), seeds=1), SETTINGS, evaluate_point=Recorder())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def test_a_failing_point_keeps_the_finished_ones_and_says_how_to_resume(tmp_path):
    path = tmp_path / "s.h5"
    rec = Recorder(fail_on="isaac_adc2_seed0")
    with pytest.raises(sweep.SweepPointError) as exc:
        sweep.run_sweep(path, grid(bits=(1, 2, 3), seeds=1), SETTINGS, evaluate_point=rec)
    msg = str(exc.value)
    assert msg.startswith("point isaac_adc2_seed0: the device model has no such cell")
    assert "1 of 4 points are in" in msg and "re-run the same command to resume" in msg
    assert set(sweepfile.finished_keys(path)) == {"isaac_adc1_seed0"}


def test_one_sweep_writes_a_file_at_a_time(tmp_path):
    path = tmp_path / "s.h5"
    with sweepfile.exclusive(path):
        with pytest.raises(SweepFileError, match="another cimsim sweep is writing"):
            sweep.run_sweep(path, grid(), SETTINGS, evaluate_point=Recorder())
    sweep.run_sweep(path, grid(bits=(1,), seeds=1), SETTINGS, evaluate_point=Recorder())  # free again


def test_kill_9_mid_sweep_loses_only_the_running_point(tmp_path):
    path = tmp_path / "s.h5"
    gate = tmp_path / "gate"
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]\n"
        "from _sweep_fakes import gated_evaluate\n"
        "from cimsim import sweep\n"
        "from test_sweep import SETTINGS, grid\n"
        f"sweep.run_sweep({str(path)!r}, grid(), SETTINGS, evaluate_point=gated_evaluate, progress=False)\n")
    proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "SWEEP_GATE": str(gate)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    waiting = Path(str(gate) + ".waiting")
    deadline = time.monotonic() + 120
    while not waiting.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert waiting.exists(), proc.communicate(timeout=5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert sweepfile.finished_keys(path) == {"isaac_adc1_seed0"}
    assert d(sweepfile.read_points(path)[Point("isaac", 1, 0)]) == d(fake_report(Point("isaac", 1, 0)))

    rec = Recorder()
    results = sweep.run_sweep(path, grid(), SETTINGS, evaluate_point=rec)
    assert rec.ran == [p.key for p in grid()][1:]
    assert set(results) == set(grid())
    assert {k for k in os.listdir(tmp_path) if k.endswith(".h5")} == {"s.h5"}
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == sorted(p.key for p in grid())


def test_local_worker_processes_write_every_point(tmp_path):
    path = tmp_path / "s.h5"
    results = sweep.run_sweep(path, grid(bits=(1, 2), seeds=1), SETTINGS, evaluate_point=fake_evaluate, workers=2)
    assert {p:d( r) for p, r in results.items()} == {p:d( fake_report(p)) for p in grid(bits=(1, 2), seeds=1)}


def test_dask_cluster_runs_the_points(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, processes=False, dashboard_address=None) as cluster:
        path = tmp_path / "s.h5"
        results = sweep.run_sweep(path, grid(bits=(1, 2), seeds=1), SETTINGS, evaluate_point=fake_evaluate,
                                  scheduler=cluster.scheduler_address)
    assert {p:d( r) for p, r in results.items()} == {p:d( fake_report(p)) for p in grid(bits=(1, 2), seeds=1)}


def test_a_missing_dask_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"--scheduler needs dask.distributed.*pip install 'cimsim\[dist\]'"):
        sweep.require_dask()


# --------------------------------------------------------------------------------------------------
# the real evaluation (digital reference), once per process


@needs_fmnist
def test_model_and_data_load_once_per_process(tmp_path, monkeypatch):
    calls = []
    real = sweep.load_model_and_data

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "load_model_and_data", counting)
    monkeypatch.setattr(sweep, "_CONTEXT", {})
    settings = sweep.Settings(model="lenet5", dataset="fashion-mnist", limit=50, calibration=20, batch_size=25)
    results = sweep.run_sweep(tmp_path / "s.h5", sweep.make_points(["digital"], None, 3), settings, progress=False)
    assert len(calls) == 1
    accs = {r.accuracy for r in results.values()}
    assert len(accs) == 1 and all(r.n_examples == 50 for r in results.values())
    r = results[Point("digital", None, 2)]
    assert r.config["sweep_point"] == {"arch": "digital", "params": {}, "adc_bits": None, "seed": 2}
    assert r.config["calibration"] == 20 and r.config["limit"] == 50


# --------------------------------------------------------------------------------------------------
# the command line


@needs_fmnist
def test_cli_sweep_json_lines_and_resume(tmp_path, capsys):
    out_file = tmp_path / "s.h5"
    common = ["sweep", "--arch", "digital", "--limit", "60", "--batch-size", "30", "--calibration", "30",
              "--out", out_file, "--json"]
    code, out, err = run_cli(capsys, *common, "--seeds", "2")
    assert code == 0, err
    rows = [json.loads(l) for l in out.splitlines()]
    assert [(r["key"], r["from_file"]) for r in rows] == [("digital_adcnone_seed0", False), ("digital_adcnone_seed1", False)]
    assert set(rows[0]) >= {"arch", "adc_bits", "seed", "accuracy", "digital_accuracy", "energy_j", "latency_s"}
    assert rows[0]["adc_bits"] is None and rows[0]["n_examples"] == 60
    code, out, err = run_cli(capsys, *common, "--seeds", "3")
    assert code == 0, err
    rows = [json.loads(l) for l in out.splitlines()]
    assert [(r["seed"], r["from_file"]) for r in rows] == [(0, True), (1, True), (2, False)]
    assert "3 points, 2 already in" in err
    with h5py.File(out_file, "r") as f:
        s = json.loads(f.attrs["settings_json"])
        assert (s["model"], s["dataset"], s["limit"], s["batch_size"], s["calibration"]) == \
            ("lenet5", "fashion-mnist", 60, 30, 30)
        assert len(s["checkpoint_sha256"]) == 64 and s["checkpoint"].endswith(".pt")
    # the table form, all points from the file
    code, out, err = run_cli(capsys, *common[:-1], "--seeds", "3")
    assert code == 0, err
    assert out.splitlines()[0].split()[:3] == ["arch", "seeds", "accuracy"]   # nothing swept but seeds
    assert out.splitlines()[2].split()[:2] == ["digital", "3"]
    # other fixed settings: refused in one line, nothing run
    code, out, err = run_cli(capsys, *common[:-1], "--seeds", "3", "--limit", "70")
    assert_one_line_user_error(code, err, "holds a sweep with other settings", "limit: file 60, now 70",
                               "choose another --out")


@pytest.mark.parametrize("argv,needles", [
    (["--adc-bits", "0"], ["--adc-bits '0'", "out of range", "1 to 16"]),
    (["--adc-bits", "17"], ["17 bits is out of range"]),
    (["--adc-bits", "8-1"], ["runs backwards"]),
    (["--adc-bits", "six"], ["'six' is not a number"]),
    (["--arch", "tpu"], ["unknown architecture 'tpu'", "digital, isaac"]),
    (["--arch", "isaac,,digital"], ["empty name"]),
    (["--set", "warp=9"], ["has parameter warp"]),
    (["--set", "adc_bits=4"], ["--adc-bits, not --set adc_bits"]),
    (["--seeds", "0"], ["--seeds", "positive integer"]),
    (["--workers", "0"], ["--workers", "positive integer"]),
    (["--workers", "2", "--scheduler", "tcp://h:1"], ["either --workers", "or --scheduler"]),
    (["--limit", "-3"], ["--limit", "positive integer"]),
])
def test_cli_bad_inputs_exit_2_with_one_line(capsys, tmp_path, argv, needles):
    code, out, err = run_cli(capsys, "sweep", "--out", tmp_path / "s.h5", *argv)
    assert_one_line_user_error(code, err, *needles)
    assert not (tmp_path / "s.h5").exists()


def test_cli_output_checks_come_first(capsys, tmp_path):
    code, out, err = run_cli(capsys, "sweep", "--arch", "digital")
    assert_one_line_user_error(code, err, "--out", "required")
    code, out, err = run_cli(capsys, "sweep", "--arch", "digital", "--out", "/nonexistent/dir/s.h5")
    assert_one_line_user_error(code, err, "/nonexistent/dir", "--out")
    code, out, err = run_cli(capsys, "sweep", "--arch", "digital", "--out", tmp_path)
    assert_one_line_user_error(code, err, "is a folder")


def test_cli_scheduler_without_dask_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    code, out, err = run_cli(capsys, "sweep", "--arch", "digital", "--scheduler", "tcp://h:8786",
                             "--out", tmp_path / "s.h5")
    assert_one_line_user_error(code, err, "pip install 'cimsim[dist]'")
    assert not (tmp_path / "s.h5").exists()


# --------------------------------------------------------------------------------------------------
# sweeps over any parameter

def test_grid_is_the_cartesian_product_of_every_parameter_each_architecture_has():
    notes = []
    grid = sweep.parse_grid(["adc_bits=2-3", ("rows", "64,128"), "cell.read_sigma_frac=0,0.02"])
    assert grid == {"adc_bits": ["2", "3"], "rows": ["64", "128"], "cell.read_sigma_frac": ["0", "0.02"]}
    points = sweep.make_points(["isaac", "hcim", "digital"], None, 2, {}, grid, notes)
    isaac = [p for p in points if p.arch == "isaac"]
    hcim = [p for p in points if p.arch == "hcim"]
    assert len(isaac) == 2 * 2 * 2 * 2 and len(hcim) == 2 * 2 * 2        # hcim has no ADC bits
    assert [p.key for p in points if p.arch == "digital"] == ["digital_adcnone_seed0", "digital_adcnone_seed1"]
    assert Point("isaac", {"adc.bits": 3, "rows": 128, "cell.read_sigma_frac": 0.02}, 1) in isaac
    assert Point("isaac", {"adc.bits": 3, "rows": 128, "cell.read_sigma_frac": 0.02}, 1).key == \
        "isaac__adc.bits=3__cell.read_sigma_frac=0.02__rows=128_seed1"
    assert "hcim has no parameter adc_bits: it is not swept there" in notes
    assert "digital has no parameter rows: it is not swept there" in notes
    # an architecture with an ADC records its own bits when they are not swept; keys round-trip through JSON
    only_rows = sweep.make_points(["isaac"], None, 1, {}, {"rows": ["64"]})
    assert only_rows == [Point("isaac", {"adc.bits": 8, "rows": 64}, 0)]
    assert Point.from_dict(json.loads(json.dumps(only_rows[0].to_dict()))) == only_rows[0]
    # the first sweep files' points read back as ADC-bit points
    assert Point.from_dict({"arch": "isaac", "adc_bits": 6, "seed": 0}).key == "isaac_adc6_seed0"


@pytest.mark.parametrize("grid,needle", [
    (["rows"], "write KEY=VALUES"), (["rows=64,,128"], "empty value"), (["rows=8-2"], "runs backwards"),
    (["rows=64", "rows=128"], "given twice"), (["warp=1,2"], "has parameter warp"),
    (["rows=64,100000"], "rows = 100000 is out of range"), (["cell.read_sigma_frac=0,x"], "not a valid float"),
])
def test_bad_grids_are_refused_before_any_work(grid, needle):
    with pytest.raises(ConfigError, match=needle):
        sweep.make_points(["isaac", "digital"], None, 1, {}, sweep.parse_grid(grid))


def test_a_grid_too_large_is_refused_with_its_size_before_anything_is_built():
    grid = sweep.parse_grid(["rows=2-4000", "cols=2-4000"])
    with pytest.raises(ConfigError, match="15,992,001 points, more than 100,000"):
        sweep.make_points(["isaac"], None, 1, {}, grid)
    with pytest.raises(ConfigError, match="--set rows"):
        sweep.make_points(["isaac"], None, 1, {"rows": "64"}, sweep.parse_grid(["rows=64,128"]))


def test_cli_sweep_over_rows_and_a_nested_parameter(tmp_path, capsys):
    out_file = tmp_path / "g.h5"
    code, out, err = run_cli(capsys, "sweep", "--arch", "isaac", "--model", "mlp", "--dataset", "digits",
                             "--limit", "40", "--calibration", "40", "--set", "weight_bits=8", "--set",
                             "input_bits=8", "--grid", "rows=32,64", "--grid", "cell.prog_sigma_frac=0,0.05",
                             "--out", str(out_file), "--json")
    assert code == 0, err
    rows = [json.loads(l) for l in out.splitlines()]
    assert sorted((r["params"]["rows"], r["params"]["cell.prog_sigma_frac"]) for r in rows) == \
        [(32, 0.0), (32, 0.05), (64, 0.0), (64, 0.05)]
    assert all(r["params"]["adc.bits"] == 8 for r in rows)
    results = sweepfile.read_points(out_file)
    assert {p.param_dict["rows"] for p in results} == {32, 64}
    # smaller arrays need more of them: the area moves with the swept parameter
    area = {p.param_dict["rows"]: r.area_m2 for p, r in results.items()}
    assert area[32] < area[64]


def test_a_grid_whose_hcim_points_lack_a_fine_tune_is_refused_before_any_point(tmp_path, monkeypatch):
    """hcim runs the network fine-tuned for its array and bits: a grid over rows=64,128 needs one for 64 rows, which
    is not shipped; refused before the first point, naming the setting (not the parameters that don't change the
    fine-tune) and the command that makes it. Grids whose settings all have one are not refused."""
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path / "home"))   # no user checkpoints
    grid_values = sweep.parse_grid([("rows", "64,128"), ("cell.read_sigma_frac", "0,0.02")])
    points = sweep.make_points(["isaac", "hcim"], None, 2, {}, grid_values, [])
    with pytest.raises(ConfigError) as exc:
        sweep.missing_fine_tunes(points, "lenet5", "fashion-mnist", {})
    msg = str(exc.value)
    assert msg.startswith("4 point(s) of this grid need a network fine-tuned for hcim")   # 2 sigmas x 2 seeds
    assert "the first rows=64:" in msg and "read_sigma" not in msg.split("make it")[0].split("the first")[1]
    assert "'cimsim finetune --arch hcim --model lenet5 --dataset fashion-mnist --set rows=64'" in msg
    ok = sweep.make_points(["isaac", "hcim"], None, 1, {}, sweep.parse_grid([("rows", "128")]), [])
    assert sweep.missing_fine_tunes(ok, "lenet5", "fashion-mnist", {}) is None
    only_isaac = sweep.make_points(["isaac"], None, 1, {}, grid_values, [])
    assert sweep.missing_fine_tunes(only_isaac, "lenet5", "fashion-mnist", {}) is None


@needs_fmnist
def test_the_cli_refuses_such_a_grid_without_writing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CIMSIM_DATA", str(FMNIST))
    code, out, err = run_cli(capsys, "sweep", "--arch", "isaac,hcim", "--grid", "rows=64,128", "--limit", "10",
                             "--out", str(tmp_path / "g.h5"))
    assert_one_line_user_error(code, err, "need a network fine-tuned for hcim", "--set rows=64")
    assert not (tmp_path / "g.h5").exists() and not any(p.name.startswith(".g.h5") for p in tmp_path.iterdir())


def test_a_grid_range_without_an_end_is_named_as_such():
    with pytest.raises(ConfigError, match=r"range '1-' has no end; write a range as rows=1-8 or a list as rows=64,128"):
        sweep.parse_grid([("rows", "1-")])
    assert sweep.parse_grid([("cell.read_sigma_frac", "-0.5,0")]) == {"cell.read_sigma_frac": ["-0.5", "0"]}


def test_the_refusal_names_every_parameter_of_the_missing_setting_and_skips_finished_points(tmp_path, monkeypatch):
    """adc_layer_bits moves the fine-tune's setting only beside adc_layers: the command given must carry both (else
    it makes another checkpoint); points the sweep file already holds need no fine-tune (a resume is not refused)."""
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path / "home"))
    over = {"adc_layers": "last"}
    points = sweep.make_points(["hcim"], None, 1, over, sweep.parse_grid([("adc_layer_bits", "5,6"),
                                                                         ("cell.read_sigma_frac", "0,0.02")]), [])
    with pytest.raises(ConfigError) as exc:
        sweep.missing_fine_tunes(points, "lenet5", "fashion-mnist", over)
    assert "--set adc_layers=last --set adc_layer_bits=5'" in str(exc.value) and "4 point(s)" in str(exc.value)
    assert "read_sigma" not in str(exc.value)
    assert sweep.missing_fine_tunes(points, "lenet5", "fashion-mnist", over, done={p.key for p in points}) is None
