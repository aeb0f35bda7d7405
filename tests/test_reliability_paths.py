"""Output paths (issue 14, defects 1-2): only a regular file is ever replaced, and every output path is checked
before any work. Device nodes and FIFOs are scratch ones the test makes in tmp_path, never real ones."""

import os
import stat

import pytest

from _cli_helpers import assert_one_line_user_error, run_cli
from cimsim.errors import ConfigError
from cimsim.fileio import atomic_output, check_output_path, stale_temporaries
from cimsim.report import Report


def _scratch(tmp_path):
    """{kind: path} of non-regular files made in tmp_path (a device node only where mknod is allowed)."""
    made = {}
    folder = tmp_path / "folder"
    folder.mkdir()
    made["folder"] = folder
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    made["FIFO"] = fifo
    dev = tmp_path / "null"
    try:
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))   # a private copy of /dev/null's node
        made["character device"] = dev
    except (PermissionError, OSError):
        pass
    return made


def _listing(tmp_path):
    return sorted((str(p.relative_to(tmp_path)), os.lstat(p).st_mode, os.lstat(p).st_size)
                  for p in tmp_path.rglob("*"))


@pytest.fixture
def no_work(monkeypatch):
    """Any command that starts work fails the test: the output path must be refused first."""
    import cimsim.mappers
    from cimsim import networks, sweep
    from cimsim.mappers import psq_finetune
    from cimsim.workloads import onchip, train

    def boom(*a, **k):
        raise AssertionError("work started before the output path was checked")

    for mod, name in ((cimsim.mappers, "evaluate"), (train, "train"), (networks, "load_model_and_data"),
                      (sweep, "load_model_and_data"), (psq_finetune, "finetune"), (onchip, "run")):
        monkeypatch.setattr(mod, name, boom)


COMMANDS = {
    "run": ["run", "--arch", "digital", "--limit", "2", "--out"],
    "train": ["train", "--model", "mlp", "--dataset", "synthetic", "--out"],
    "finetune": ["finetune", "--arch", "hcim", "--out"],
    "onchip": ["onchip", "--out"],
    "sweep": ["sweep", "--arch", "digital", "--out"],
}


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_a_device_fifo_or_folder_as_out_is_refused_before_any_work(capsys, tmp_path, no_work, cmd):
    scratch = _scratch(tmp_path)
    before = _listing(tmp_path)
    for kind, path in scratch.items():
        if cmd == "train" and kind == "folder":
            continue   # train --out FOLDER saves the default file name inside it (tested below)
        code, out, err = run_cli(capsys, *COMMANDS[cmd], path)
        assert_one_line_user_error(code, err, str(path), kind)
    assert _listing(tmp_path) == before   # nothing replaced, nothing left behind


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
@pytest.mark.parametrize("bad,needle", [
    ("", "--out is empty"),
    ("/", "names a folder"),
    ("/proc/cimsim-test.h5", "takes no new file"),
    ("{tmp}/" + "n" * 300 + ".h5", "too long"),
    ("{tmp}/missing/r.h5", "does not exist"),
    ("{tmp}/afile/r.h5", "is not a folder"),
])
def test_bad_out_paths_are_refused_before_any_work(capsys, tmp_path, no_work, cmd, bad, needle):
    (tmp_path / "afile").write_text("x")
    if cmd == "train" and bad == "/":
        pytest.skip("train --out FOLDER saves inside the folder")
    code, out, err = run_cli(capsys, *COMMANDS[cmd], bad.format(tmp=tmp_path))
    assert_one_line_user_error(code, err, needle)


def test_train_out_folder_takes_the_default_name_and_checks_the_metadata_file(capsys, tmp_path, no_work):
    os.mkfifo(tmp_path / "mlp-synthetic.json")
    code, out, err = run_cli(capsys, "train", "--model", "mlp", "--dataset", "synthetic", "--out", tmp_path)
    assert_one_line_user_error(code, err, "mlp-synthetic.json", "FIFO")
    code, out, err = run_cli(capsys, "train", "--model", "mlp", "--dataset", "synthetic", "--out",
                             tmp_path / "m.json")
    assert_one_line_user_error(code, err, ".json", ".pt")


def test_plot_output_is_checked_before_reading(capsys, tmp_path):
    scratch = _scratch(tmp_path)
    src = tmp_path / "r.h5"
    src.write_bytes(b"not read: the output is refused first")
    for kind, path in scratch.items():
        code, out, err = run_cli(capsys, "plot", src, "-o", path)
        assert_one_line_user_error(code, err, kind)
    for bad, needle in (("x.xyz", "unknown image type '.xyz'"), ("", "-o is empty"),
                        ("/proc/x.png", "takes no new file"), ("nodir/x.png", "does not exist")):
        code, out, err = run_cli(capsys, "plot", src, "-o", bad if bad in ("", "/proc/x.png") else tmp_path / bad)
        assert_one_line_user_error(code, err, needle)


def test_report_to_hdf5_never_replaces_a_device_or_fifo(tmp_path):
    report = Report(accuracy=1.0, digital_accuracy=1.0, energy_j=1e-9, latency_s=1e-6, throughput_inf_per_s=1e6,
                    area_m2=1e-6)
    for kind, path in _scratch(tmp_path).items():
        mode = os.lstat(path).st_mode
        with pytest.raises(ConfigError, match=kind):
            report.to_hdf5(path)
        assert os.lstat(path).st_mode == mode
    assert not list(tmp_path.glob(".*.tmp"))
    assert Report.from_hdf5(report.to_hdf5(tmp_path / "ok.h5")).energy_j == 1e-9


def test_check_output_path_contract(tmp_path):
    ok = tmp_path / "new.h5"
    assert check_output_path(str(ok)) == ok and not ok.exists()        # nothing created
    ok.write_text("old")
    assert check_output_path(ok) == ok                                 # a regular file may be replaced
    link = tmp_path / "link.h5"
    os.symlink(_scratch(tmp_path)["FIFO"], link)
    with pytest.raises(ConfigError, match="FIFO"):                     # a link counts as what it points to
        check_output_path(link)
    with pytest.raises(ConfigError, match="NUL"):
        check_output_path("a\0b")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".probe")]   # the probe is removed


def test_atomic_output_leaves_no_temporary_and_finds_stale_ones(tmp_path):
    target = tmp_path / "s.h5"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []
    stale = tmp_path / ".s.h5.ab12cd34.tmp"
    stale.write_text("left by kill -9")
    (tmp_path / ".other.h5.ab12cd34.tmp").write_text("another file's")
    assert stale_temporaries(target) == [stale]


@pytest.mark.parametrize("cmd,example", [("run", "result.h5"), ("finetune", "model.pt")])
def test_a_folder_as_out_is_answered_with_a_file_name_of_the_commands_kind(capsys, tmp_path, no_work, cmd, example):
    """A report's --out suggests an HDF5 name, a checkpoint's a .pt name (a finetune writes a checkpoint)."""
    code, out, err = run_cli(capsys, *COMMANDS[cmd], str(tmp_path))
    assert_one_line_user_error(code, err, f"--out {tmp_path} is a folder; give a file name such as {tmp_path / example}")
