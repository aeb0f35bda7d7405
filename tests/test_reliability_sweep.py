"""Sweep reliability (issue 14, defect 8, and Dask in CI): stale temporaries of a killed write are cleaned on
resume, local workers die with a killed sweep, a Dask LocalCluster whose worker is killed mid-point loses and
duplicates no point, and a huge grid is refused with its size before anything is built."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from _cli_helpers import assert_one_line_user_error, run_cli
from _sweep_fakes import fake_evaluate, fake_report
from cimsim import sweep, sweepfile
from cimsim.sweepfile import SweepFileError

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = sweep.Settings(model="lenet5", dataset="fashion-mnist", checkpoint="/ckpt/lenet5.pt",
                          checkpoint_sha256="ab" * 32, limit=100, overrides={}, calibration=64, batch_size=50)


def _grid(bits=(1, 2, 3), seeds=1):
    return sweep.make_points(["isaac"], list(bits), seeds)


def _same(a, b):
    a, b = a.to_dict(), b.to_dict()
    a.pop("created"), b.pop("created")
    return a == b


def test_a_resumed_sweep_removes_the_temporaries_of_a_killed_write(tmp_path):
    path = tmp_path / "s.h5"
    sweep.run_sweep(path, _grid(bits=(1,)), SETTINGS, evaluate_point=fake_evaluate, progress=False)
    stale = [tmp_path / f".s.h5.{tag}.tmp" for tag in ("k1ll3d00", "abcd1234")]
    for s in stale:
        s.write_bytes(path.read_bytes())   # a full-size copy, as a kill during append leaves behind
    keep = tmp_path / ".other.h5.abcd1234.tmp"
    keep.write_text("another file's temporary")
    results = sweep.run_sweep(path, _grid(), SETTINGS, evaluate_point=fake_evaluate, progress=False)
    assert len(results) == 3 and not any(s.exists() for s in stale) and keep.exists()


def test_local_workers_die_with_a_killed_sweep(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]\n"
        "from _reliability_fakes import pid_then_wait\n"
        "from cimsim import sweep\n"
        "from test_reliability_sweep import SETTINGS, _grid\n"
        "if __name__ == '__main__':   # spawned workers import this file\n"
        f"    sweep.run_sweep({str(tmp_path / 's.h5')!r}, _grid(), SETTINGS, evaluate_point=pid_then_wait, "
        "workers=2, progress=False)\n")
    proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "SWEEP_PIDS": str(pids)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300   # two spawned workers import torch: slow on a loaded 2-core machine
    while len(os.listdir(pids)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = [int(p) for p in os.listdir(pids)]
    if len(workers) != 2:   # never leave the sweep (and what it started) behind when the test fails
        proc.kill()
        _, err = proc.communicate()
        for p in workers:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        pytest.fail(f"{len(workers)} of 2 workers started: {err.decode(errors='replace')[-500:]}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in workers if _alive(p)]
    for p in alive:   # do not leave them behind if the test fails
        os.kill(p, signal.SIGKILL)
    assert alive == [], "worker processes outlived the killed sweep"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"   # a zombie has ended
    except FileNotFoundError:
        return False


def test_dask_local_cluster_with_a_worker_killed_mid_point_loses_and_duplicates_nothing(tmp_path, monkeypatch):
    distributed = pytest.importorskip("dask.distributed")   # in the test extra: runs in CI
    from _reliability_fakes import die_once

    monkeypatch.setenv("SWEEP_MARK", str(tmp_path / "killed"))
    path = tmp_path / "s.h5"
    points = _grid(bits=(1, 2, 3, 4))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  worker_dashboard_address=None) as cluster:
        results = sweep.run_sweep(path, points, SETTINGS, evaluate_point=die_once,
                                  scheduler=cluster.scheduler_address, progress=False)
    assert (tmp_path / "killed").exists()   # a worker did die mid-point
    assert sorted(p.key for p in results) == sorted(p.key for p in points)
    assert all(_same(results[p], fake_report(p)) for p in points)
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == sorted(p.key for p in points)   # each exactly once


def test_a_huge_grid_is_refused_with_its_size_before_anything_is_built(capsys, tmp_path):
    code, out, err = run_cli(capsys, "sweep", "--arch", "isaac,digital", "--seeds", "100000000", "--out",
                             tmp_path / "s.h5")
    assert_one_line_user_error(code, err, "200,000,000 points", "more than 100,000")   # counted, not built
    assert os.listdir(tmp_path) == []


# ---- defect 8c: an append costs the same whatever the file holds (the journal), and stays crash-safe ----------

def _points(n):
    return [sweepfile.Point.make("isaac", {"adc.bits": 1 + i % 8, "rows": 64 + i}, 0) for i in range(n)]


def test_appends_never_copy_the_file_until_a_fold_and_folds_add_up_to_about_twice_the_file(tmp_path, monkeypatch):
    path = sweepfile.create(tmp_path / "s.h5", {"model": "mlp"})
    copied = []
    real_copy = sweepfile.shutil.copyfile
    monkeypatch.setattr(sweepfile.shutil, "copyfile",
                        lambda a, b: (copied.append(os.path.getsize(a)), real_copy(a, b))[1])
    monkeypatch.setattr(sweepfile, "FOLD_MIN", 4)
    points = _points(200)
    for i, p in enumerate(points):
        sweepfile.append(path, p, fake_report(p))
        if i < 3:
            assert copied == []   # below FOLD_MIN: the file is not touched, the point waits in the journal
    sweepfile.fold(path)
    # geometric folds (journal >= file): 4, 8, 16, ... points; never one copy per append
    assert len(copied) <= 8, copied
    assert sum(copied) <= 2.2 * os.path.getsize(path)
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == sorted(p.key for p in points)
    assert not sweepfile.journal_dir(path).exists()
    got = sweepfile.read_points(path)
    assert all(_same(got[p], fake_report(p)) for p in points)


def test_journaled_points_are_read_with_the_file_and_never_appended_twice(tmp_path):
    path = sweepfile.create(tmp_path / "s.h5", {"model": "mlp"})
    a, b = _points(2)
    sweepfile.append(path, a, fake_report(a))
    assert sweepfile.journal_size(path) == 1 and sweepfile.finished_keys(path) == {a.key}
    with h5py.File(path, "r") as f:
        assert list(f.keys()) == []   # not yet in the file itself
    assert _same(sweepfile.read_points(path)[a], fake_report(a))
    with pytest.raises(SweepFileError, match="already holds point"):
        sweepfile.append(path, a, fake_report(b))
    assert sweepfile.fold(path) == 1 and sweepfile.fold(path) == 0
    with pytest.raises(SweepFileError, match="already holds point"):
        sweepfile.append(path, a, fake_report(b))


def test_a_fold_killed_before_its_clean_up_adds_no_point_twice_on_resume(tmp_path):
    path = tmp_path / "s.h5"
    points = _grid(bits=(1, 2, 3))
    sweep.run_sweep(path, points[:2], SETTINGS, evaluate_point=fake_evaluate, progress=False)
    # a kill between the fold's rename and the removal of the journal files leaves both
    jdir = sweepfile.journal_dir(path)
    jdir.mkdir()
    for p in points[:2]:
        with h5py.File(jdir / f"{p.key}.h5", "w") as f:
            sweepfile._write_point(f.create_group(p.key), p, fake_report(p), None)
    (jdir / ".x.h5.abcd1234.tmp").write_bytes(b"half a point")   # and a write the kill cut short
    assert sweepfile.finished_keys(path) == {p.key for p in points[:2]}
    results = sweep.run_sweep(path, points, SETTINGS, evaluate_point=fake_evaluate, progress=False)
    assert sorted(p.key for p in results) == sorted(p.key for p in points)
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == sorted(p.key for p in points)   # each exactly once
    assert sorted(os.listdir(tmp_path)) == ["s.h5"]


def test_a_corrupt_journal_file_is_one_line_naming_it(tmp_path):
    path = sweepfile.create(tmp_path / "s.h5", {"model": "mlp"})
    (a,) = _points(1)
    sweepfile.append(path, a, fake_report(a))
    (jf,) = sweepfile.journal_dir(path).glob("*.h5")
    data = bytearray(jf.read_bytes())
    jf.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(SweepFileError) as exc:
        sweepfile.read_points(path)
    msg = str(exc.value)
    assert "\n" not in msg and jf.name in msg and "remove it to run its point again" in msg


def test_a_new_sweep_file_drops_the_journal_of_a_removed_one(tmp_path):
    path = tmp_path / "s.h5"
    sweepfile.create(path, {"model": "other"})
    (a,) = _points(1)
    sweepfile.append(path, a, fake_report(a))
    path.unlink()   # the user removed the file; its journal is not this sweep's
    results = sweep.run_sweep(path, _grid(bits=(1,)), SETTINGS, evaluate_point=fake_evaluate, progress=False)
    assert sorted(p.key for p in results) == ["isaac_adc1_seed0"]
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == ["isaac_adc1_seed0"]
    assert sorted(os.listdir(tmp_path)) == ["s.h5"]
