"""A result that cannot be written after the work (a full disk, a file that cannot be replaced, a full stdout) is
one line and exit 2, and an --out that holds another kind of file, or an input, is refused before any work."""

from __future__ import annotations

import errno
import io

import h5py
import pytest

from cimsim import outkind
from cimsim.cli import main
from cimsim.cli.saving import keep_previous
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


def test_an_earlier_checkpoint_at_the_default_path_is_kept(tmp_path):
    ckpt = tmp_path / "mlp-digits.pt"
    ckpt.write_bytes(b"first")
    ckpt.with_suffix(".json").write_text("{}")
    kept = keep_previous(ckpt)
    assert kept.name == "mlp-digits.prev.pt" and kept.read_bytes() == b"first"
    assert (tmp_path / "mlp-digits.prev.json").read_text() == "{}"
    assert keep_previous(tmp_path / "none.pt") is None


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
