"""Corrupt and hostile input files (issue 14, defects 3-5 and 7): every one gives one line naming the file and
the fix (a CimsimError, exit 2 on the command line), never a traceback and never a silent wrong result."""

import gzip
import json
import os
import pickle
import struct

import h5py
import numpy as np
import pytest
import torch

from _cli_helpers import assert_one_line_user_error, run_cli
from cimsim.errors import CheckpointError, CimsimError, DatasetError
from cimsim.report import Report
from cimsim.workloads import datasets as ds
from cimsim.workloads import train

pytestmark = pytest.mark.usefixtures("isolated_data")   # tests/conftest.py

SHIPPED_MLP = train.SHIPPED_DIR / "mlp-digits.pt"


# --------------------------------------------------------------------------------------------------
# IDX and CIFAR-10 dataset files (defect 5)

def _idx(arr, type_byte=0x08, dims=None):
    dims = arr.shape if dims is None else dims
    return bytes([0, 0, type_byte, len(dims)]) + b"".join(struct.pack(">I", n) for n in dims) + arr.tobytes()


def _idx_set(d, **replace):
    rng = np.random.default_rng(0)
    files = {"train-images-idx3-ubyte": _idx(rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)),
             "train-labels-idx1-ubyte": _idx(np.array([0, 1, 2, 3, 4], dtype=np.uint8)),
             "t10k-images-idx3-ubyte": _idx(rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)),
             "t10k-labels-idx1-ubyte": _idx(np.array([5, 6, 7], dtype=np.uint8))}
    files.update(replace)
    d.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d


F32 = 0x0D
IDX_DEFECTS = {
    "gzip-stream-broken": ("t10k-labels-idx1-ubyte.gz", None),
    "size-product-overflows": ("train-images-idx3-ubyte", bytes([0, 0, 8, 4]) + struct.pack(">IIII", *[2**32 - 1] * 4)),
    "255-dimensions": ("train-labels-idx1-ubyte", bytes([0, 0, 8, 255]) + b"\x00\x00\x00\x01" * 255 + b"\x00"),
    "test-32x32-train-28x28": ("t10k-images-idx3-ubyte", _idx(np.zeros((3, 32, 32), dtype=np.uint8))),
    "empty-test-set": ("t10k-images-idx3-ubyte", _idx(np.zeros((0, 28, 28), dtype=np.uint8))),
    "float-images-with-nan": ("train-images-idx3-ubyte",
                              _idx(np.full((5, 28, 28), np.nan, dtype=">f4"), type_byte=F32)),
    "negative-float-images": ("train-images-idx3-ubyte",
                              _idx(np.full((5, 28, 28), -3.0, dtype=">f4"), type_byte=F32)),
    "fractional-labels": ("train-labels-idx1-ubyte", _idx(np.array([0.5, 1, 2, 3, 4], dtype=">f4"), type_byte=F32)),
    "nan-labels": ("train-labels-idx1-ubyte", _idx(np.array([np.nan] * 5, dtype=">f8"), type_byte=0x0E)),
}


@pytest.mark.parametrize("defect", sorted(IDX_DEFECTS))
def test_malformed_idx_files_are_refused_naming_the_file(tmp_path, defect):
    name, content = IDX_DEFECTS[defect]
    extra = {}
    if defect == "empty-test-set":
        extra["t10k-labels-idx1-ubyte"] = _idx(np.zeros(0, dtype=np.uint8))
    d = _idx_set(tmp_path / "d", **extra)
    if name.endswith(".gz"):
        os.unlink(d / name[:-3])
        raw = gzip.compress(_idx(np.array([5, 6, 7], dtype=np.uint8)))
        content = raw[:12] + bytes(b ^ 0x5A for b in raw[12:-8]) + raw[-8:]   # header intact, deflate stream broken
    (d / name).write_bytes(content)
    with pytest.raises(DatasetError) as exc:
        ds.load_fashion_mnist(d)
    msg = str(exc.value)
    assert name.replace(".gz", "") in msg and "\n" not in msg and "intact copy" in msg


def _cifar(root, data=None, labels=None, test_only=False):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    good = (np.zeros((2, 3072), dtype=np.uint8), [1, 2])
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        obj = {b"data": good[0], b"labels": good[1]}
        if name == "test_batch":
            obj = {b"data": good[0] if data is None else data, b"labels": good[1] if labels is None else labels}
        with open(d / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    return d


@pytest.mark.parametrize("data,labels", [
    (None, ["a", "b"]), (None, {"x": 1}), (None, [float("nan"), 1.0]), (None, [2**70, 1]), (None, [0.5, 1.5]),
    ("pixels", None), ([[1, 2], [3]], None), (np.array([object(), 1], dtype=object) if False else
                                             np.full((2, 3072), 300, dtype=np.int64), None),
    (np.full((2, 3072), 0.5), None), (np.zeros((0, 3072), dtype=np.uint8), []),
])
def test_malformed_cifar_batches_are_refused(tmp_path, data, labels):
    d = _cifar(tmp_path, data, labels)
    with pytest.raises(DatasetError) as exc:
        ds.load_cifar10(tmp_path)
    assert str(d / "test_batch") in str(exc.value) and "\n" not in str(exc.value)


def test_a_data_dir_without_the_set_is_not_silently_replaced(tmp_path, monkeypatch):
    """A --data-dir that is missing, a file or a folder without the set is refused, though the set is elsewhere."""
    system = tmp_path / "system"
    _idx_set(system / "fashion-mnist")
    monkeypatch.setattr(ds, "SYSTEM_ROOT", system)
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "empty").mkdir()
    for where, what in (("nope", "does not exist; give the folder that holds the fashion-mnist files"),
                        ("a-file", "is not a folder; give the folder"),
                        ("empty", None)):
        with pytest.raises(DatasetError) as exc:
            ds.load_fashion_mnist(tmp_path / where)
        msg = str(exc.value)
        assert "\n" not in msg and str(system) not in msg
        if what:
            assert msg == f"--data-dir {tmp_path / where} {what}" + msg.split(what)[1]
        else:
            assert msg.startswith(f"fashion-mnist not found (looked in {tmp_path / 'empty'}, ")
    assert ds.load_fashion_mnist().source == str(system / "fashion-mnist")   # without --data-dir it is found


# --------------------------------------------------------------------------------------------------
# Checkpoints (defects 3 and 7)

def _resave(src, dst, edit_meta=None, edit_state=None):
    payload = torch.load(src, map_location="cpu", weights_only=True)
    meta = json.loads(payload["metadata"])
    if edit_meta:
        edit_meta(meta)
    if edit_state:
        edit_state(payload["state_dict"])
    payload["metadata"] = json.dumps(meta)
    torch.save(payload, dst)
    return dst


@pytest.mark.parametrize("missing", ["dataset", "test_accuracy", "input_shape"])
def test_checkpoint_metadata_lacking_a_field_is_one_line(capsys, tmp_path, missing):
    bad = _resave(SHIPPED_MLP, tmp_path / "m.pt", edit_meta=lambda m: m.pop(missing))
    with pytest.raises(CheckpointError, match=f"lacks {missing}"):
        train.load_checkpoint(bad)
    code, out, err = run_cli(capsys, "run", "--arch", "digital", "--model", "mlp", "--dataset", "digits",
                             "--checkpoint", bad, "--limit", "2")
    assert_one_line_user_error(code, err, str(bad), f"lacks {missing}")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/cimsim-pwned",))


def test_a_malicious_checkpoint_is_refused_in_one_line(capsys, tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"format": train.FORMAT, "metadata": "{}", "state_dict": {}, "x": _Evil()}, bad)
    code, out, err = run_cli(capsys, "run", "--arch", "digital", "--model", "mlp", "--dataset", "digits",
                             "--checkpoint", bad, "--limit", "2")
    assert_one_line_user_error(code, err, str(bad), "weights_only")
    assert not os.path.exists("/tmp/cimsim-pwned")


def test_diverged_weights_are_never_saved_or_loaded(tmp_path):
    model, meta = train.load_checkpoint(SHIPPED_MLP)
    good = train.save_checkpoint(tmp_path / "m.pt", model, meta)
    before = good.read_bytes()
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="NaN or infinite.*was not written: lower the learning rate"):
        train.save_checkpoint(good, model, meta)
    assert good.read_bytes() == before   # the good checkpoint is untouched

    from cimsim import networks   # the sense-amp fine-tune's writer refuses the same (it once saved them)
    sa_model, sa_meta = networks.load_sa_checkpoint(networks.train.SHIPPED_DIR
                                                    / "snn_vgg-fashion-mnist-sa-w4a8c1r64t0.5.pt")
    with torch.no_grad():
        next(sa_model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        networks.save_sa_checkpoint(tmp_path / "sa.pt", sa_model, sa_meta)
    assert not (tmp_path / "sa.pt").exists() and not (tmp_path / "sa.json").exists()

    def poison(state):
        next(iter(state.values()))[0] = float("inf")
    bad = _resave(SHIPPED_MLP, tmp_path / "bad.pt", edit_state=poison)
    with pytest.raises(CheckpointError, match="NaN or infinite weights"):
        train.load_checkpoint(bad)


@pytest.mark.parametrize("argv,needle", [
    (["finetune", "--lr", "nan"], "--lr"), (["finetune", "--lr", "inf"], "not finite"), (["finetune", "--lr", "-1"], "> 0"),
    (["finetune", "--lr", "0"], "> 0"), (["finetune", "--noise", "2"], "[0, 1]"), (["finetune", "--noise", "nan"], "--noise"),
    (["onchip", "--lr", "inf"], "not finite"), (["onchip", "--lr", "-0.1"], "> 0"), (["train", "--lr", "nan"], "--lr"),
])
def test_non_finite_or_negative_hyper_parameters_are_refused(capsys, argv, needle):
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_user_error(code, err, needle)


def test_recipes_refuse_non_finite_values_from_python():
    from cimsim.errors import ConfigError
    from cimsim.mappers import psq_finetune
    from cimsim.workloads import onchip

    for kw in ({"lr": float("nan")}, {"lr": -1.0}, {"alpha_lr": float("inf")}, {"noise_frac": 2.0}, {"epochs": 0}):
        with pytest.raises(ConfigError):
            psq_finetune.FinetuneRecipe(**kw)
    for kw in ({"lr": float("inf")}, {"lr": 0}, {"w_max": float("nan")}, {"epochs": 10**9}):
        with pytest.raises(ConfigError):
            onchip.default_config("mosfet", "iris", **kw)


# --------------------------------------------------------------------------------------------------
# Corrupt HDF5 results (defect 4)

def _report():
    return Report(accuracy=0.5, digital_accuracy=0.6, energy_j=1e-9, latency_s=1e-6, throughput_inf_per_s=1e6,
                  area_m2=1e-6, layers=[{"name": "fc", "energy_j": 1e-9}], components={"adc": 1e-9},
                  config={"model": "mlp"})


REPORT_EDITS = {
    "columns-not-json": lambda f: f["layers"].attrs.__setitem__("columns", "[oops"),
    "columns-a-number": lambda f: f["layers"].attrs.__setitem__("columns", "7"),
    "column-missing": lambda f: f["layers"].__delitem__("energy_j"),
    "components-a-dataset": lambda f: (f.__delitem__("components"), f.__setitem__("components", np.arange(3))),
    "scalar-a-string": lambda f: f.attrs.__setitem__("energy_j", "lots"),
    "scalar-missing": lambda f: f.attrs.__delattr__("accuracy") if False else f.attrs.__delitem__("accuracy"),
    "config-json-a-list": lambda f: f.attrs.__setitem__("config_json", "[1, 2]"),
    "format-version-text": lambda f: f.attrs.__setitem__("format_version", "two"),
    "names-and-energies-differ": lambda f: (f["components"].__delitem__("name"),
                                            f["components"].__setitem__("name", np.arange(5))),
}


@pytest.mark.parametrize("edit", sorted(REPORT_EDITS))
def test_corrupt_report_files_are_one_line(capsys, tmp_path, edit):
    path = _report().to_hdf5(tmp_path / "r.h5")
    with h5py.File(path, "a") as f:
        REPORT_EDITS[edit](f)
    try:
        back = Report.from_hdf5(path)
    except CimsimError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:   # an edit a reader may tolerate must still give a well-formed report
        assert isinstance(back.config, dict) and isinstance(back.energy_j, float)
    code, out, err = run_cli(capsys, "plot", path, "-o", tmp_path / "r.png")
    assert code in (0, 2) and "Traceback" not in err
    if code == 2:
        assert_one_line_user_error(code, err, str(path))


def test_a_flipped_byte_in_an_onchip_file_is_one_line(capsys, tmp_path):
    from cimsim.workloads import onchip

    hist = [{"epoch": e, "train_accuracy": 0.5, "test_accuracy": 0.5, "float_train_accuracy": 0.6,
             "float_test_accuracy": 0.6, "energy_j": 1e-9 * e, "write_energy_j": 1e-10 * e} for e in (1, 2)]
    result = onchip.OnChipResult(config={"synapse": "mosfet", "dataset": "iris"}, history=hist, train_accuracy=0.5,
                                 test_accuracy=0.5, float_train_accuracy=0.6, float_test_accuracy=0.6, energy_j=2e-9,
                                 time_s=1e-6, write_energy_j=2e-10, write_pulses=10.0, weight_updates=5.0,
                                 energy_per_update_j=1e-11, energy_by_component_j={"adc": 1e-9}, topology=[4, 3],
                                 wall_s=0.1)
    path = result.to_hdf5(tmp_path / "o.h5")
    assert onchip.OnChipResult.from_hdf5(path).history == hist
    raw = bytearray(path.read_bytes())
    hits = 0
    for i, offset in enumerate(range(96, len(raw), max(1, len(raw) // 40))):   # 40 one-byte corruptions
        bad = tmp_path / f"o{offset}.h5"
        flipped = raw.copy()
        flipped[offset] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        readers = [lambda: onchip.OnChipResult.from_hdf5(bad)]
        if i % 10 == 0:   # drawing costs a second: 'plot' reads every tenth
            readers.append(lambda: run_cli(capsys, "plot", bad, "-o", tmp_path / "o.png"))
        for read in readers:
            try:
                res = read()
            except CimsimError as exc:
                assert "\n" not in str(exc) and str(bad) in str(exc)
                hits += 1
            else:
                if isinstance(res, tuple):
                    code, out, err = res
                    assert code in (0, 2) and "Traceback" not in err
                    if code == 2:
                        assert_one_line_user_error(code, err, str(bad))
                        hits += 1
    assert hits > 0   # some flips do land in structures the readers need


@pytest.mark.parametrize("settings", [None, "[1, 2]", "{not json", "3"])
def test_sweep_file_with_missing_or_odd_settings_is_one_line(capsys, tmp_path, settings):
    from cimsim import sweepfile

    path = sweepfile.create(tmp_path / "s.h5", {"model": "mlp"})
    with h5py.File(path, "a") as f:
        if settings is None:
            del f.attrs["settings_json"]
        else:
            f.attrs["settings_json"] = settings
    with pytest.raises(sweepfile.SweepFileError) as exc:
        sweepfile.read_settings(path)
    assert str(path) in str(exc.value)
    code, out, err = run_cli(capsys, "sweep", "--arch", "digital", "--model", "mlp", "--dataset", "digits",
                             "--limit", "2", "--out", path)
    assert_one_line_user_error(code, err, str(path))


def test_cifar_unpickler_refusals_and_memory_errors_are_one_line(tmp_path, monkeypatch):
    """Found by the long fuzz run: a flipped bit made a persistent-id opcode (a two-line message from pickle) or
    a huge length field (MemoryError)."""
    bad = tmp_path / "test_batch"
    bad.write_bytes(b"\x80\x02P1\n.")   # PERSID: pickle's refusal spans two lines
    with pytest.raises(DatasetError) as exc:
        ds._read_cifar_batch(bad)
    assert str(bad) in str(exc.value) and "\n" not in str(exc.value)

    def huge(self):
        raise MemoryError
    monkeypatch.setattr(ds._ArrayUnpickler, "load", huge)
    with pytest.raises(DatasetError, match="a size inside it is corrupt"):
        ds._read_cifar_batch(bad)
