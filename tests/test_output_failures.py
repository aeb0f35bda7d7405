"""A result that cannot be written after the work (a full disk, a file that cannot be replaced, a full stdout) is
one line and exit 2, and an --out that holds another kind of file, or an input, is refused before any work."""

from __future__ import annotations

import errno
import io

import h5py
import pytest

from cimsim import outkind
from cimsim.cli import main
from cimsim.cli.saving import save_keeping_previous
from cimsim.errors import ConfigError
from cimsim.fileio import OutputError, atomic_output, save_figure


def _full(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_refused_write_is_one_output_error_and_leaves_the_earlier_file(tmp_path):
    target = tmp_path / "r.h5"
    target.write_bytes(b"earlier")
    with pytest.raises(OutputError, match=r"could not write .*r\.h5 \(No space left on device\).*free some space"):
        with atomic_output(target):
            _full()
    assert target.read_bytes() == b"earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["r.h5"]


def test_a_library_runtime_error_of_a_full_disk_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="could not write"):
        with atomic_output(tmp_path / "m.pt"):
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    with pytest.raises(RuntimeError, match="a bug"):   # no write failure: a bug keeps its traceback
        with atomic_output(tmp_path / "m.pt"):
            raise RuntimeError("a bug")


def test_a_figure_on_a_full_disk_is_an_output_error(tmp_path, monkeypatch):
    import matplotlib.figure

    fig = matplotlib.figure.Figure()
    monkeypatch.setattr(fig, "savefig", _full)
    with pytest.raises(OutputError, match="a.png"):
        save_figure(fig, tmp_path / "a.png")


class _FullStdout(io.StringIO):
    def write(self, text):
        _full()


def test_a_full_stdout_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdout", _FullStdout())
    assert main(["archs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cimsim archs: error: cannot write to standard output (No space left on device); send it where "
                   "there is room, e.g. another file"]


def _h5(path, fmt):
    with h5py.File(path, "w") as f:
        f.attrs["format"] = fmt
    return path


def test_an_out_of_another_kind_or_an_input_is_refused(tmp_path):
    sweep = _h5(tmp_path / "s.h5", outkind.SWEEP)
    report = _h5(tmp_path / "r.h5", outkind.REPORT)
    notes = tmp_path / "notes.h5"
    notes.write_text("mine")
    with pytest.raises(ConfigError, match="is a cimsim sweep file"):
        outkind.refuse_replacing(sweep, outkind.REPORT)
    with pytest.raises(ConfigError, match="not cimsim's"):
        outkind.refuse_replacing(notes, outkind.REPORT)
    with pytest.raises(ConfigError, match="given as --checkpoint"):
        outkind.refuse_replacing(report, outkind.REPORT, inputs=[("--checkpoint", str(report))])
    outkind.refuse_replacing(report, outkind.REPORT)   # a report by a report: allowed
    outkind.refuse_replacing(tmp_path / "new.h5", outkind.REPORT)
    assert outkind.file_kind(sweep) == outkind.SWEEP


def test_run_refuses_a_sweep_file_as_out_before_any_work(tmp_path, capsys):
    sweep = _h5(tmp_path / "s.h5", outkind.SWEEP)
    before = sweep.read_bytes()
    assert main(["run", "--limit", "1", "--out", str(sweep)]) == 2
    assert "is a cimsim sweep file" in capsys.readouterr().err
    assert sweep.read_bytes() == before


def test_run_refuses_adc_bits_given_twice(capsys):
    assert main(["run", "--set", "adc_bits=4", "--adc-bits", "6", "--limit", "1"]) == 2
    assert "give ADC bits once" in capsys.readouterr().err


def _saver(model, meta=None):
    from cimsim.workloads import train
    return lambda p: train.save_checkpoint(p, model, meta or {"model": "mlp", "command": "cimsim train"})


def test_an_earlier_checkpoint_at_the_default_path_is_kept_once_the_new_one_is_saved(tmp_path):
    import torch

    ckpt = tmp_path / "mlp-digits.pt"
    ckpt.write_bytes(b"first")
    ckpt.with_suffix(".json").write_text("{}")
    (tmp_path / "mlp-digits.prev.pt").write_bytes(b"older")
    saved, kept = save_keeping_previous(ckpt, _saver(torch.nn.Linear(2, 2)))
    assert saved == ckpt and kept.name == "mlp-digits.prev.pt" and kept.read_bytes() == b"first"
    assert (tmp_path / "mlp-digits.prev.json").read_text() == "{}"
    assert ckpt.read_bytes()[:2] == b"PK" and '"mlp"' in ckpt.with_suffix(".json").read_text()
    assert save_keeping_previous(tmp_path / "none.pt", _saver(torch.nn.Linear(2, 2)))[1] is None
    assert {p.name for p in tmp_path.iterdir()} == {"mlp-digits.json", "mlp-digits.pt", "mlp-digits.prev.json",
                                                    "mlp-digits.prev.pt", "none.json", "none.pt"}


def test_a_diverged_or_failed_save_leaves_the_earlier_checkpoints_as_they_were(tmp_path):
    import torch
    from cimsim.errors import CheckpointError

    ckpt = tmp_path / "m.pt"
    files = {"m.pt": b"first", "m.json": b"{}", "m.prev.pt": b"older", "m.prev.json": b"[]"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    diverged = torch.nn.Linear(2, 2)
    with torch.no_grad():
        diverged.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="diverged"):
        save_keeping_previous(ckpt, _saver(diverged))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files

    def full(p):
        _full()
    with pytest.raises(OSError):
        save_keeping_previous(ckpt, full)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files


def test_a_save_that_replaced_the_checkpoint_before_failing_still_keeps_the_earlier_one(tmp_path):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"first")
    (tmp_path / "m.prev.pt").write_bytes(b"older")

    def half(p):
        p.unlink()
        p.write_bytes(b"new")
        _full()
    with pytest.raises(OSError):
        save_keeping_previous(ckpt, half)
    assert (tmp_path / "m.prev.pt").read_bytes() == b"first" and ckpt.read_bytes() == b"new"


def test_keeping_is_best_effort_a_warning_and_the_new_checkpoint_is_saved(tmp_path):
    import torch

    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"first")
    (tmp_path / "m.prev.pt").mkdir()
    with pytest.warns(UserWarning, match=r"the earlier checkpoint m\.pt could not be kept as m\.prev\.pt \(it is a "
                                         r"folder\); the new one replaced it"):
        saved, kept = save_keeping_previous(ckpt, _saver(torch.nn.Linear(2, 2)))
    assert kept is None and saved.read_bytes()[:2] == b"PK" and (tmp_path / "m.prev.pt").is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_stale_prev_json_is_removed_when_the_earlier_checkpoint_had_none(tmp_path):
    import torch

    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"first")
    (tmp_path / "m.prev.json").write_text('{"model": "older"}')
    _, kept = save_keeping_previous(ckpt, _saver(torch.nn.Linear(2, 2)))
    assert kept.read_bytes() == b"first" and not (tmp_path / "m.prev.json").exists()


def test_a_json_beside_out_that_is_no_checkpoint_metadata_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    from cimsim.workloads import train

    monkeypatch.setattr(train, "train", lambda *a, **k: pytest.fail("work started before the --out check"))
    notes = tmp_path / "notes.json"
    notes.write_text('{"todo": "mine"}')
    assert main(["train", "--model", "mlp", "--dataset", "synthetic", "--out", str(tmp_path / "notes.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"writes its metadata to {notes}, which is a file that is not a cimsim checkpoint's " \
        "metadata; it is kept as it is" in err[0]
    assert notes.read_text() == '{"todo": "mine"}'
    shipped = sorted(train.SHIPPED_DIR.glob("*.json"))
    assert shipped and all(outkind.is_checkpoint_metadata(p) for p in shipped)
    outkind.refuse_replacing_metadata(shipped[0])   # a checkpoint's metadata may be replaced with its checkpoint
    assert not outkind.is_checkpoint_metadata(notes)


@pytest.mark.parametrize("method", [[], ["--method", "admm", "--compression", "4"]])
def test_finetune_never_writes_over_the_network_it_finds_and_starts_from(tmp_path, capsys, monkeypatch, method):
    import shutil

    from cimsim import networks
    from cimsim.workloads import train

    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path))
    monkeypatch.setattr(networks, "load_model_and_data", lambda *a, **k: pytest.fail("work started"))
    mine = train.user_dir() / "lenet5-fashion-mnist.pt"
    mine.parent.mkdir(parents=True)
    shutil.copy(train.SHIPPED_DIR / "lenet5-fashion-mnist.pt", mine)
    before = mine.read_bytes()
    assert main(["finetune", *method, "--out", str(mine)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is the trained network this fine-tune starts from (found for lenet5 on fashion-mnist " \
        "without --checkpoint), an input of this command" in err[0], err
    assert mine.read_bytes() == before and sorted(p.name for p in mine.parent.iterdir()) == [mine.name]


def test_every_shipped_checkpoint_is_a_checkpoint_to_the_output_check():
    """Trained networks and the PSQ and sense-amp fine-tunes alike: a fine-tune may replace its own earlier --out."""
    from pathlib import Path
    from cimsim import outkind
    shipped = sorted((Path(__file__).resolve().parent.parent / "workloads" / "checkpoints").glob("*.pt"))
    kinds = {p.name: outkind.file_kind(p) for p in shipped}
    assert any("psq" in n for n in kinds) and any("-sa-" in n for n in kinds)
    assert set(kinds.values()) == {outkind.CHECKPOINT}, kinds


def test_an_output_error_crosses_processes_whole():
    """A sweep worker's refused write reaches the parent as the same one-line error, not a broken pool."""
    import pickle
    from pathlib import Path
    from cimsim.fileio import OutputError
    e = pickle.loads(pickle.dumps(OutputError("could not write /x/y.h5 (No space left on device)", Path("/x/y.h5"))))
    assert isinstance(e, OutputError) and str(e).startswith("could not write /x/y.h5") and e.path == Path("/x/y.h5")


def test_a_library_error_is_a_refused_write_only_by_its_words(tmp_path, monkeypatch):
    """h5py's and torch's refused writes say so ('file write failed', 'errno = 28'); a bug's message that merely
    holds 'written' keeps its traceback; a file system without inode counts (f_files 0) is not taken for full."""
    import os
    from cimsim import fileio
    big = os.statvfs_result((4096, 4096, 10**6, 10**6, 10**6, 0, 0, 0, 0, 255))   # f_files = f_favail = 0
    monkeypatch.setattr(fileio.os, "statvfs", lambda folder: big)
    assert fileio._is_write_failure(RuntimeError("Can't write data (file write failed: errno = 28)"), tmp_path)
    assert fileio._is_write_failure(RuntimeError("PytorchStreamWriter failed writing file data/0"), tmp_path)
    assert not fileio._is_write_failure(RuntimeError("the written-to tensor refers to a single memory location"),
                                        tmp_path)
    assert fileio.write_failure_reason(RuntimeError("odd"), tmp_path) == "odd"


def test_a_closed_standard_output_is_no_error(tmp_path):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "cimsim", "archs"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, timeout=120, preexec_fn=lambda: __import__("os").close(1))
    assert out.returncode == 0 and "Traceback" not in out.stderr


def test_a_sweep_that_could_not_write_says_once_there_is_room_only_for_a_full_disk(tmp_path):
    import os

    from cimsim.cli.sweep import _kept
    out = tmp_path / "s.h5"
    for code in (errno.ENOSPC, errno.EDQUOT):
        assert "once there is room" in _kept(out, f"could not write {out} ({os.strerror(code)}); nothing was written")
    for code in (errno.EACCES, errno.EISDIR):
        said = _kept(out, f"could not write {out} ({os.strerror(code)}); nothing was written there")
        assert "room" not in said and f"once it can write {out}: it resumes where it stopped" in said
