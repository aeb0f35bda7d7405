"""MNIST and Fashion-MNIST told apart by their files' mean pixel, and the --data-dir a user names checked.

The two sets share their IDX file names, so a folder of one is found under the other's name; the loader refuses a
split whose mean pixel lies within ``IDX_MEAN_BAND`` of the other set's. The files here are written in the standard
IDX format: mostly zero, with enough full-scale pixels to give each set's mean.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from _cli_helpers import assert_one_line_user_error, run_cli
from cimsim.errors import DatasetError
from cimsim.workloads import datasets as ds

REAL_FMNIST = Path("/usr/share/datasets/fashion-mnist")
NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}

pytestmark = pytest.mark.usefixtures("isolated_data")   # tests/conftest.py


@pytest.fixture(autouse=True)
def small_full_sets(monkeypatch):
    """The files here are the sets' 'whole' splits (20 and 10 images), as if they were 60,000 and 10,000."""
    monkeypatch.setattr(ds, "IDX_FULL_SIZE", {"train": 20, "test": 10})


def test_a_subset_is_not_judged_by_its_mean(tmp_path, monkeypatch):
    """A user's subset of Fashion-MNIST (say, only sandals: mean 0.137) is not refused as MNIST."""
    monkeypatch.setattr(ds, "IDX_FULL_SIZE", {"train": 60_000, "test": 10_000})
    d = write_set(tmp_path / "fm", 0.1307, 0.1325)
    assert ds.load_fashion_mnist(d).source == str(d)   # loaded, not refused


def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", n) for n in arr.shape) + arr.tobytes()


def _images(mean: float | None, n: int, seed: int) -> np.ndarray:
    """n 28x28 images: mostly zero with round(mean * 784) full-scale pixels each (mean ``mean`` of full scale), or
    uniformly random bytes (mean about 0.5) for None."""
    rng = np.random.default_rng(seed)
    if mean is None:
        return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    a = np.zeros((n, 28 * 28), dtype=np.uint8)
    k = round(mean * 28 * 28)
    for row in a:
        row[rng.choice(28 * 28, size=k, replace=False)] = 255
    return a.reshape(n, 28, 28)


def write_set(d: Path, train_mean: float | None, test_mean: float | None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    arrays = {"train_images": _images(train_mean, 20, 1), "test_images": _images(test_mean, 10, 2),
              "train_labels": np.arange(20, dtype=np.uint8) % 10, "test_labels": np.arange(10, dtype=np.uint8)}
    for k, name in NAMES.items():
        (d / name).write_bytes(_idx(arrays[k]))
    return d


MNIST = (0.1307, 0.1325)      # the means the loader holds (datasets.IDX_MEAN_PIXEL)
FASHION = (0.2860, 0.2868)


def test_the_reference_means_and_band():
    assert ds.IDX_MEAN_PIXEL == {"mnist": {"train": 0.1307, "test": 0.1325},
                                 "fashion-mnist": {"train": 0.2860, "test": 0.2868}}
    assert ds.IDX_MEAN_BAND == 0.04


def test_mnist_files_are_refused_as_fashion_mnist(tmp_path):
    d = write_set(tmp_path / "m", *MNIST)
    with pytest.raises(DatasetError) as exc:
        ds.load_fashion_mnist(d)
    assert str(exc.value) == (
        f"the IDX files in {d} seem to hold MNIST, not Fashion-MNIST: the train images' mean pixel is 0.1301 of full "
        "scale (MNIST: 0.1307, Fashion-MNIST: 0.2860); point --data-dir or $CIMSIM_DATA at the Fashion-MNIST files, "
        "or pass --dataset mnist")
    data = ds.load_mnist(d)   # accepted under its own name
    assert data.name == "mnist" and len(data.y_train) == 20 and data.source == str(d)
    assert float(data.x_train.mean()) == pytest.approx(102 / 784, abs=1e-6)   # round(0.1307 * 784) = 102 pixels


def test_fashion_files_are_refused_as_mnist(tmp_path):
    d = write_set(tmp_path / "f", *FASHION)
    with pytest.raises(DatasetError, match=r"seem to hold Fashion-MNIST, not MNIST: the train images' mean pixel is "
                                           r"0\.2857 .*or pass --dataset fashion-mnist$"):
        ds.load_mnist(d)
    assert ds.load_fashion_mnist(d).name == "fashion-mnist"


def test_one_split_of_the_other_set_is_enough_to_refuse(tmp_path):
    d = write_set(tmp_path / "mixed", None, FASHION[1])   # random training images, Fashion-MNIST-like test images
    with pytest.raises(DatasetError, match="the test images' mean pixel is 0.2870 "):
        ds.load_mnist(d)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_random_files_are_accepted_under_either_name(tmp_path, name):
    d = write_set(tmp_path / "r", None, None)
    data = ds.load(name, data_dir=d)
    assert data.name == name and len(data.y_test) == 10
    assert 0.45 < float(data.x_train.mean()) < 0.55


@pytest.mark.parametrize("offset, refused", [(0.035, True), (-0.035, True), (0.045, False), (-0.045, False)])
def test_the_band_edge(tmp_path, offset, refused):
    """Within 0.04 of MNIST's train mean is refused as Fashion-MNIST; 0.045 away passes (784 pixels: 1/784 steps)."""
    d = write_set(tmp_path / "e", MNIST[0] + offset, 0.5)
    if refused:
        with pytest.raises(DatasetError, match="seem to hold MNIST"):
            ds.load_fashion_mnist(d)
    else:
        assert ds.load_fashion_mnist(d).name == "fashion-mnist"


@pytest.mark.skipif(not REAL_FMNIST.is_dir(), reason=f"{REAL_FMNIST} not installed")
def test_the_debian_fashion_mnist_files(monkeypatch):
    monkeypatch.setattr(ds, "IDX_FULL_SIZE", {"train": 60_000, "test": 10_000})   # the real, whole splits
    assert ds.load_fashion_mnist(REAL_FMNIST).source == str(REAL_FMNIST)
    with pytest.raises(DatasetError, match=r"mean pixel is 0\.2860 of full scale \(Fashion-MNIST: 0\.2860, MNIST: "
                                           r"0\.1307\)"):
        ds.load_mnist(REAL_FMNIST)


@pytest.mark.parametrize("command", [("run",), ("train", "--epochs", "1"),
                                     ("onchip", "--synapse", "domain-wall", "--epochs", "1")])
def test_cli_refuses_fashion_files_as_mnist(tmp_path, capsys, command):
    d = write_set(tmp_path / "f", *FASHION)
    code, out, err = run_cli(capsys, *command, "--dataset", "mnist", "--data-dir", d, "--limit", "5")
    assert_one_line_user_error(code, err, f"the IDX files in {d} seem to hold Fashion-MNIST, not MNIST")
    assert out == ""


# ------------------------------------------------------------------------------------------------ --data-dir

def test_cli_data_dir_that_is_missing_or_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "run", "--data-dir", tmp_path / "nope", "--limit", "5")
    assert_one_line_user_error(code, err, f"--data-dir {tmp_path / 'nope'} does not exist; give the folder that "
                                          "holds the fashion-mnist files")
    code, _, err = run_cli(capsys, "run", "--data-dir", tmp_path / "file", "--limit", "5")
    assert_one_line_user_error(code, err, f"--data-dir {tmp_path / 'file'} is not a folder")
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "train", "--data-dir", tmp_path / "empty", "--limit", "5")
    assert_one_line_user_error(code, err, f"fashion-mnist not found (looked in {tmp_path / 'empty'}, ")


@pytest.mark.parametrize("command", [("run", "--model", "mlp", "--dataset", "digits"),
                                     ("train", "--model", "mlp", "--dataset", "iris"),
                                     ("onchip", "--dataset", "iris")])
def test_cli_data_dir_for_a_set_without_files(tmp_path, capsys, command):
    code, out, err = run_cli(capsys, *command, "--data-dir", tmp_path, "--limit", "5")
    name = command[command.index("--dataset") + 1]
    assert_one_line_user_error(code, err, f"--data-dir {tmp_path}: {name} ships with scikit-learn and needs no files; "
                                          "leave --data-dir out")
    assert out == ""


def test_a_bad_data_dir_is_refused_before_torch_loads(tmp_path):
    """The command line checks a --data-dir (missing, a file, given to a set without files) before the seconds of
    importing torch and numba."""
    import subprocess
    import sys
    code = ("import sys; from cimsim.cli import main; rc = main(['run', '--data-dir', %r, '--limit', '5']); "
            "print('torch' in sys.modules, rc)" % str(tmp_path / "missing"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "2"], out.stderr[-1000:]
    assert "does not exist" in out.stderr
