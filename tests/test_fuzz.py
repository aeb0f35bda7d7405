"""Property-based fuzzing (hypothesis) of everything a hostile user controls: command-line arguments, every
file format cimsim reads (bit flips, truncation, wrong types), and Python API inputs. The contract, for every
input: success, or exit status 2 with one line and no traceback (a CimsimError from Python), and no file
touched outside the path the user named.

The default run draws a fast subset (fixed seed: the same examples every run); ``-m slow`` draws many more.
Work that valid arguments would start (mapping, training, sweeps) is replaced by a stub: the contract under
test is the boundary, which must refuse bad input before any work."""

import contextlib
import io
import json
import os
import pickle
import stat
import struct

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cimsim.cli import main
from cimsim.errors import CimsimError, ConfigError

FAST, SLOW = 20, 600


def runs(n):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


SIZES = [pytest.param(FAST, id="fast"), pytest.param(SLOW, id="long", marks=pytest.mark.slow)]


# --------------------------------------------------------------------------------------------------
# the command line

class WorkStarted(Exception):
    """Raised by the stubs: the arguments passed every check and work would start now."""


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A scratch folder as cwd and $CIMSIM_HOME, with a FIFO and (as root) a device node in it, and every entry
    point of real work stubbed."""
    import cimsim.mappers
    from cimsim import bench, networks, sweep
    from cimsim.mappers import psq_finetune
    from cimsim.workloads import onchip, train

    def stub(*a, **k):
        raise WorkStarted

    for mod, name in ((cimsim.mappers, "evaluate"), (train, "train"), (networks, "load_model_and_data"),
                      (sweep, "load_model_and_data"), (sweep, "run_sweep"), (psq_finetune, "finetune"), (onchip, "run"),
                      (bench, "run")):
        monkeypatch.setattr(mod, name, stub)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path / "home"))
    os.mkfifo(tmp_path / "fifo")
    with contextlib.suppress(OSError):
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (tmp_path / "dir").mkdir()
    (tmp_path / "file.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)   # an HDF5 signature, then garbage
    return tmp_path


HOSTILE = ["", " ", "0", "-1", "1", "2", "64", "1e9", "nan", "inf", "-inf", "1.5", str(2 ** 70), "x", "é",
           "a" * 300, "fifo", "null", "dir", "dir/", "file.h5", "/", "/proc/x.h5", "missing/x.h5", "out.h5",
           "out.png", "out.xyz", "--json", "=", "k=", "=v", "rows=", "rows=1e9", "adc_bits=nan", "cell=ideal",
           "name=x", "1-8", "8-1", "4,6,x", "digital", "isaac,isaac", "hcim", "mlp", "iris", "synthetic"]
OPTIONS = {
    "run": ["--arch", "--model", "--dataset", "--data-dir", "--limit", "--checkpoint", "--batch-size", "--set",
            "--adc-bits", "--seed", "--calibration", "--backend", "--device", "--out", "--float-network"],
    "sweep": ["--arch", "--adc-bits", "--grid", "--seeds", "--model", "--dataset", "--limit", "--out",
              "--workers", "--scheduler", "--set", "--calibration", "--batch-size"],
    "train": ["--model", "--dataset", "--epochs", "--seed", "--batch-size", "--lr", "--device", "--out", "--limit"],
    "finetune": ["--arch", "--model", "--dataset", "--epochs", "--lr", "--batch-size", "--noise", "--out",
                 "--test-limit", "--set", "--device"],
    "onchip": ["--synapse", "--dataset", "--states", "--epochs", "--lr", "--batch-size", "--adc-bits", "--out",
               "--limit", "--test-limit"],
    "plot": ["-o", "--x", "--hue", "--kind"],
    "bench": ["--backend", "--device", "--batch", "--repeat"],
    "archs": ["show", "--set", "--json"],
    "devices": ["show", "--json"],
}


@st.composite
def command_lines(draw):
    cmd = draw(st.sampled_from(sorted(OPTIONS)))
    argv = [cmd]
    if cmd == "plot":
        argv.append(draw(st.sampled_from(HOSTILE)))
    for _ in range(draw(st.integers(0, 4))):
        opt = draw(st.sampled_from(OPTIONS[cmd]))
        argv.append(opt)
        if opt not in ("--json", "show", "--float-network") or draw(st.booleans()):
            argv.append(draw(st.sampled_from(HOSTILE) | st.text(min_size=0, max_size=12)))
    if cmd == "sweep" and "--out" not in argv and draw(st.booleans()):
        argv += ["--out", draw(st.sampled_from(HOSTILE))]
    return [a for a in argv if "\0" not in a]


def _snapshot(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st_ = os.lstat(p)
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st_.st_mode), st_.st_size, st_.st_mtime_ns)
    return out


def _call(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:   # --help, --version
            code = exc.code
        except WorkStarted:
            code = "work"
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("examples", SIZES)
def test_fuzzed_command_lines_exit_0_or_2_with_one_line_and_touch_nothing(sandbox, examples):
    @runs(examples)
    @given(command_lines())
    def check(argv):
        before = _snapshot(sandbox)
        code, out, err = _call(argv)
        assert "Traceback" not in err, (argv, err)
        assert code in (0, 2, "work"), (argv, code, err)
        if code == 2:
            lines = [l for l in err.splitlines() if l.strip() and not l.startswith("cimsim: warning:")]
            assert len(lines) <= 1 or "usage:" in err, (argv, err)   # a bare subcommand prints its usage
        after = _snapshot(sandbox)
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        named = {os.path.normpath(a) for a in argv}
        assert all(any(k == n or k.startswith(n + os.sep) or n.startswith(k) for n in named) for k in changed), \
            (argv, changed)
        for k in changed - set(before):   # a folder a command made for its named output: clean it for the next
            p = sandbox / k
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
    check()


# --------------------------------------------------------------------------------------------------
# files: every format cimsim reads, corrupted

@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """One intact file of each format, written by cimsim itself (no network, no dataset needed)."""
    from cimsim import sweepfile
    from cimsim.report import Report
    from cimsim.sweepfile import Point
    from cimsim.workloads import onchip, train

    d = tmp_path_factory.mktemp("originals")
    report = Report(accuracy=0.9, digital_accuracy=0.91, energy_j=1e-6, latency_s=1e-5, throughput_inf_per_s=1e5,
                    area_m2=1e-6, layers=[{"name": "fc", "kind": "Linear", "macs": 10, "energy_j": 1e-6,
                                           "rel_error": 0.01}], components={"adc": 5e-7, "dac": 5e-7},
                    config={"model": "mlp", "dataset": "digits"}, n_examples=10)
    files = {"report": report.to_hdf5(d / "report.h5")}
    files["sweep"] = sweepfile.create(d / "sweep.h5", {"model": "mlp", "dataset": "digits"})
    sweepfile.append(files["sweep"], Point.make("isaac", {"adc.bits": 4}, 0), report)
    sweepfile.fold(files["sweep"])   # the point into the file itself (appends wait in the journal beside it)
    hist = [{"epoch": 1, "train_accuracy": 0.5, "test_accuracy": 0.5, "float_train_accuracy": 0.6,
             "float_test_accuracy": 0.6, "energy_j": 1e-9, "write_energy_j": 1e-10}]
    files["onchip"] = onchip.OnChipResult(
        config={"synapse": "mosfet"}, history=hist, train_accuracy=0.5, test_accuracy=0.5, float_train_accuracy=0.6,
        float_test_accuracy=0.6, energy_j=1e-9, time_s=1e-6, write_energy_j=1e-10, write_pulses=3.0,
        weight_updates=2.0, energy_per_update_j=1e-11, energy_by_component_j={"adc": 1e-9}, topology=[4, 3],
        wall_s=0.1).to_hdf5(d / "onchip.h5")
    model, meta = train.load_checkpoint(train.SHIPPED_DIR / "mlp-digits.pt")
    files["checkpoint"] = train.save_checkpoint(d / "mlp-digits.pt", model, meta)
    labels = np.array([1, 2, 3], dtype=np.uint8)
    files["idx"] = d / "t10k-labels-idx1-ubyte"
    files["idx"].write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 3) + labels.tobytes())
    files["cifar"] = d / "test_batch"
    with open(files["cifar"], "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [1, 2]}, f, protocol=2)
    from cimsim.workloads import events
    ev = events.Events(np.array([1, 2, 3]), np.array([4, 5, 6]), np.array([10, 20, 30]), np.array([0, 1, 1]))
    files["aedat"] = d / "user01_led.aedat"
    events.write_aedat31(files["aedat"], ev, packet_events=2)
    files["gesture_labels"] = d / "user01_led_labels.csv"
    files["gesture_labels"].write_text("class,startTime_usec,endTime_usec\n3,10,20\n11,20,40\n")
    import h5py
    files["mvsec_events"] = d / "x_data.hdf5"
    with h5py.File(files["mvsec_events"], "w") as f:
        f.create_dataset("davis/left/events", data=np.array([[1.0, 2.0, 0.5, -1.0], [3.0, 4.0, 0.6, 1.0]]))
    files["mvsec_flow"] = d / "x_gt_flow_dist.npz"
    np.savez(files["mvsec_flow"], timestamps=np.array([0.5, 0.6]), x_flow_dist=np.zeros((2, 3, 4)),
             y_flow_dist=np.ones((2, 3, 4)))
    return files


def _readers():
    from cimsim import sweepfile
    from cimsim.report import Report
    from cimsim.workloads import datasets, events, onchip, train
    return {
        "report": [Report.from_hdf5],
        "sweep": [sweepfile.read_settings, sweepfile.read_points, sweepfile.finished_keys],
        "onchip": [onchip.OnChipResult.from_hdf5],
        "checkpoint": [train.load_checkpoint],
        "idx": [datasets.read_idx],
        "cifar": [datasets._read_cifar_batch],
        "aedat": [events.read_aedat31],
        "gesture_labels": [events.read_gesture_labels],
        "mvsec_events": [events.read_mvsec_events],
        "mvsec_flow": [events.read_mvsec_flow],
    }


@st.composite
def corruptions(draw, size):
    kind = draw(st.sampled_from(["flip", "truncate", "overwrite", "append"]))
    if kind == "flip":
        return kind, draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 7)), min_size=1, max_size=8))
    if kind == "truncate":
        return kind, draw(st.integers(0, size - 1))
    if kind == "overwrite":
        return kind, (draw(st.integers(0, size - 1)), draw(st.binary(min_size=1, max_size=64)))
    return kind, draw(st.binary(min_size=1, max_size=64))


def _corrupt(raw: bytes, how) -> bytes:
    kind, arg = how
    data = bytearray(raw)
    if kind == "flip":
        for i, bit in arg:
            data[i] ^= 1 << bit
    elif kind == "truncate":
        data = data[:arg]
    elif kind == "overwrite":
        i, chunk = arg
        data[i:i + len(chunk)] = chunk
    else:
        data += arg
    return bytes(data)


def _one_line_or_result(read, path) -> str:
    """'read' or 'refused' (in one line naming the file); anything else fails."""
    try:
        read(path)
    except CimsimError as exc:
        msg = str(exc)
        assert "\n" not in msg and str(path) in msg, msg
        return "refused"
    return "read"


@pytest.mark.parametrize("fmt", ["report", "sweep", "onchip", "checkpoint", "idx", "cifar", "aedat", "gesture_labels",
                                 "mvsec_events", "mvsec_flow"])
@pytest.mark.parametrize("examples", SIZES)
def test_corrupted_files_are_read_or_refused_in_one_line(originals, tmp_path, fmt, examples):
    raw = originals[fmt].read_bytes()
    readers = _readers()[fmt]
    target = tmp_path / originals[fmt].name

    @runs(examples)
    @given(corruptions(len(raw)))
    def check(how):
        target.write_bytes(_corrupt(raw, how))
        outcomes.extend(_one_line_or_result(read, target) for read in readers)
    outcomes: list[str] = []
    check()
    assert outcomes and set(outcomes) <= {"read", "refused"}   # every corrupted file went through every reader


@pytest.mark.parametrize("examples", SIZES)
def test_a_corrupted_sweep_journal_file_is_read_or_refused_in_one_line_naming_it(tmp_path, examples):
    """A point waiting in the sweep's journal (issue 14, 8c) is read with the file: corrupted, it is either read
    or refused in one line that names the journal file."""
    from cimsim import sweepfile
    from cimsim.report import Report
    from cimsim.sweepfile import Point

    path = sweepfile.create(tmp_path / "s.h5", {"model": "mlp", "dataset": "digits"})
    report = Report(accuracy=0.5, digital_accuracy=0.6, energy_j=1e-6, latency_s=1e-6, throughput_inf_per_s=1e6,
                    area_m2=1e-6, layers=[{"name": "fc", "kind": "Linear", "macs": 10}], components={"adc": 1e-6},
                    config={"model": "mlp"}, n_examples=10)
    sweepfile.append(path, Point.make("isaac", {"adc.bits": 4}, 0), report)
    (journal,) = sweepfile.journal_dir(path).glob("*.h5")
    raw = journal.read_bytes()

    @runs(examples)
    @given(corruptions(len(raw)))
    def check(how):
        journal.write_bytes(_corrupt(raw, how))
        for read in (sweepfile.read_points, sweepfile.finished_keys):
            try:
                read(path)
            except CimsimError as exc:
                msg = str(exc)
                assert "\n" not in msg and journal.name in msg, msg
    check()


H5_VALUES = st.sampled_from([np.nan, "x", b"\xff", -1, 2 ** 62, "[]", "{}", "null", "[1, 2]", '{"a": 1}',
                             np.arange(3), np.array(["a", "b"], dtype="S")])


@pytest.mark.parametrize("fmt", ["report", "sweep", "onchip"])
@pytest.mark.parametrize("examples", SIZES)
def test_hdf5_files_with_wrong_types_or_missing_parts_are_one_line(originals, tmp_path, capsys, fmt, examples):
    target = tmp_path / originals[fmt].name
    readers = _readers()[fmt]

    @runs(examples)
    @given(st.data())
    def check(data):
        target.write_bytes(originals[fmt].read_bytes())
        with h5py.File(target, "a") as f:
            names = [""]
            f.visit(names.append)
            for _ in range(data.draw(st.integers(1, 3))):
                name = data.draw(st.sampled_from(names))
                if name and name not in f:
                    continue
                obj = f[name] if name else f
                action = data.draw(st.sampled_from(["set", "delete-attr", "delete", "replace"]))
                keys = list(obj.attrs)
                if action == "set" and keys:
                    obj.attrs[data.draw(st.sampled_from(keys))] = data.draw(H5_VALUES)
                elif action == "delete-attr" and keys:
                    del obj.attrs[data.draw(st.sampled_from(keys))]
                elif action == "delete" and name:
                    del f[name]
                elif action == "replace" and name and isinstance(obj, h5py.Dataset):
                    del f[name]
                    f[name] = data.draw(st.sampled_from([np.array([]), np.full(3, np.nan), np.zeros((2, 2)),
                                                         np.array([b"q", b"r"])]))
        for read in readers:
            _one_line_or_result(read, target)
        if data.draw(st.integers(0, 3)) == 0:   # drawing costs a second: 'plot' reads one file in four
            code, out, err = _call(["plot", str(target), "-o", str(tmp_path / "fig.png")])
            assert code in (0, 2) and "Traceback" not in err, err
            if code == 2:
                assert len(err.strip().splitlines()) == 1, err
    check()


# --------------------------------------------------------------------------------------------------
# Python API inputs

ARRAYS = st.sampled_from(["int", "float", "nan", "complex", "object", "bool", "str", "empty", "3d"])


def _array(kind, shape):
    return {"int": lambda: np.ones(shape, dtype=np.int64), "float": lambda: np.full(shape, 0.5),
            "nan": lambda: np.full(shape, np.nan), "complex": lambda: np.ones(shape) + 1j,
            "object": lambda: np.full(shape, None, dtype=object), "bool": lambda: np.ones(shape, dtype=bool),
            "str": lambda: np.full(shape, "a"), "empty": lambda: np.zeros((0, shape[1])),
            "3d": lambda: np.ones((2, *shape))}[kind]()


@pytest.mark.parametrize("examples", SIZES)
def test_fuzzed_crossbar_api_calls_are_config_errors_or_results(examples):
    from cimsim import Crossbar, CrossbarSpec

    @runs(examples)
    @given(w=ARRAYS, x=ARRAYS, seed=st.sampled_from([0, 1, -1, 1.5, "s", None, 2 ** 70, True]),
           adc_range=st.sampled_from(["full", "calibrated", (0.0, 1.0), (1.0, 0.0), (0.0, float("inf")),
                                      float("nan"), "wide", None]),
           rows=st.sampled_from([4, 0, -1, 3.5, 10 ** 9]), bits=st.sampled_from([1, 2, 8, 0, 64, "8"]))
    def check(w, x, seed, adc_range, rows, bits):
        try:
            spec = CrossbarSpec(adc_range=adc_range, rows=rows, weight_bits=bits)
            xb = Crossbar(_array(w, (3, 5)), spec, seed=seed)
            if adc_range == "calibrated":
                xb.calibrate(_array(x, (4, 5)))
            y = xb(_array(x, (4, 5)))
            assert np.all(np.isfinite(y))
        except ConfigError as exc:
            assert "\n" not in str(exc)
    check()


@pytest.mark.parametrize("examples", SIZES)
def test_fuzzed_architecture_parameters_are_config_errors_or_valid(examples):
    import cimsim

    @runs(examples)
    @given(arch=st.sampled_from(["isaac", "hcim", "digital"]),
           key=st.sampled_from(["rows", "cols", "adc_bits", "weight_bits", "input_bits", "cell_bits", "name",
                                "cell", "adc.bits", "cell.read_sigma_frac", "clock_hz", "mac_units", "tiles",
                                "learn_thresholds", "threshold_bits", "reference_hold_s"]),
           value=st.sampled_from([0, 1, 2, 64, -1, 1e9, float("nan"), float("inf"), "x", "", None, [1], 2 ** 70,
                                  "ideal", True, 0.5]))
    def check(arch, key, value):
        try:
            spec = cimsim.arch.get(arch, **{key: value})
            json.dumps(spec.params(), default=str)
        except ConfigError as exc:
            assert "\n" not in str(exc)
    check()
