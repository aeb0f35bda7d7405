"""Tests for cimsim.workloads.datasets: offline loaders, corrupt-file handling, splits and loaders.

The image sets are tested on tiny files written in their real on-disk formats (IDX for MNIST and
Fashion-MNIST; CIFAR-10's pickle batches are in test_datasets_cifar.py); one test reads the real
Fashion-MNIST when the system copy is installed.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from cimsim.errors import ConfigError, DatasetError
from cimsim.workloads import datasets as ds

IDX_NAMES = {  # standard names
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_ALT_NAMES = {  # the dotted naming some mirrors use
    "train_images": "train-images.idx3-ubyte",
    "train_labels": "train-labels.idx1-ubyte",
    "test_images": "t10k-images.idx3-ubyte",
    "test_labels": "t10k-labels.idx1-ubyte",
}

REAL_FMNIST = Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------------------------------
# Helpers and fixtures

pytestmark = pytest.mark.usefixtures("isolated_data")   # tests/conftest.py


def idx_bytes(arr: np.ndarray, type_byte: int = 0x08, dims=None) -> bytes:
    """An IDX file: 0, 0, type byte, ndim, big-endian uint32 dims, then the big-endian data."""
    dims = arr.shape if dims is None else dims
    header = bytes([0, 0, type_byte, len(dims)]) + b"".join(struct.pack(">I", n) for n in dims)
    return header + arr.tobytes()


def write_file(path: Path, data: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def fake_idx_arrays(seed: int = 0, n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tr = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    te = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    tr[0, 0, 0], tr[0, 0, 1], tr[1, 27, 27] = 0, 255, 128  # pin a few known pixels
    return {
        "train_images": tr,
        "train_labels": np.array([0, 3, 9, 1, 7, 4, 2, 6, 5, 8][:n_train], dtype=np.uint8),
        "test_images": te,
        "test_labels": np.array([2, 8, 5, 0, 9][:n_test], dtype=np.uint8),
    }


def write_idx_set(d: Path, arrays=None, names=IDX_NAMES, gz: bool = False) -> dict[str, Path]:
    arrays = fake_idx_arrays() if arrays is None else arrays
    return {k: write_file(d / names[k], idx_bytes(arrays[k]), gz=gz) for k in names}


def expected_images(a: np.ndarray) -> np.ndarray:
    return (a.astype(np.float32) / np.float32(255.0))[:, None]


def check_idx_dataset(data: ds.Dataset, arrays: dict[str, np.ndarray]) -> None:
    assert data.x_train.shape == (len(arrays["train_images"]), 1, 28, 28)
    assert data.x_test.shape == (len(arrays["test_images"]), 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and data.x_test.dtype == torch.float32
    assert data.y_train.dtype == torch.int64 and data.y_test.dtype == torch.int64
    assert np.array_equal(data.x_train.numpy(), expected_images(arrays["train_images"]))
    assert np.array_equal(data.x_test.numpy(), expected_images(arrays["test_images"]))
    assert data.y_train.tolist() == arrays["train_labels"].tolist()
    assert data.y_test.tolist() == arrays["test_labels"].tolist()
    # a few pixels by hand: 0 -> 0.0, 255 -> 1.0, 128 -> 128/255
    assert data.x_train[0, 0, 0, 0].item() == 0.0
    assert data.x_train[0, 0, 0, 1].item() == 1.0
    assert data.x_train[1, 0, 27, 27].item() == pytest.approx(128 / 255, abs=1e-7)
    assert data.num_classes == 10 and data.input_shape == (1, 28, 28)


# --------------------------------------------------------------------------------------------------
# 1. IDX loaders

@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_fashion_mnist_from_idx_files(tmp_path, gz):
    arrays = fake_idx_arrays()
    paths = write_idx_set(tmp_path / "fm", arrays, gz=gz)
    assert all(p.name.endswith(".gz") == gz for p in paths.values())
    data = ds.load_fashion_mnist(data_dir=tmp_path / "fm")
    check_idx_dataset(data, arrays)
    assert data.name == "fashion-mnist"
    assert data.classes == ds.FASHION_MNIST_CLASSES
    assert data.source == str(tmp_path / "fm")


def test_idx_pixels_are_the_float32_quotients_bit_for_bit(tmp_path):
    """Every byte value 0..255 becomes what ``a.astype(np.float32) / 255.0`` gives, to the last bit (the loader
    divides in place)."""
    arrays = fake_idx_arrays()
    arrays["train_images"][0].flat[:256] = np.arange(256, dtype=np.uint8)
    write_idx_set(tmp_path / "fm", arrays, gz=False)
    data = ds.load_fashion_mnist(data_dir=tmp_path / "fm")
    want = arrays["train_images"].astype(np.float32) / 255.0
    assert want.dtype == np.float32
    assert np.array_equal(data.x_train[:, 0].numpy().view(np.int32), want.view(np.int32))


def test_idx_loader_scales_only_the_batches_it_serves_with_the_same_numbers(tmp_path):
    """The IDX sets keep their pixels as bytes: a loader scales each batch as it serves it (the training images a
    run calibrates on are all it converts), with the same float32 numbers bit for bit as the whole split scaled
    at once (x_test, made on first read); the shape needs no conversion."""
    arrays = fake_idx_arrays(n_train=9, n_test=5)
    arrays["test_images"][0].flat[:256] = np.arange(256, dtype=np.uint8)
    write_idx_set(tmp_path / "fm", arrays, gz=True)
    data = ds.load_fashion_mnist(data_dir=tmp_path / "fm")
    assert data.input_shape == (1, 28, 28) and "x_train" not in vars(data) and "x_test" not in vars(data)
    served = [(x.clone(), y.clone()) for x, y in data.loader("test", batch_size=2)]
    shuffled = [x for x, _ in data.loader("train", batch_size=4, shuffle=True, seed=3, limit=7)]
    assert "x_train" not in vars(data) and "x_test" not in vars(data)
    assert all(x.dtype == torch.float32 for x, _ in served)
    whole = data.x_test                                      # made now, once
    assert "x_test" in vars(data) and data.x_test is whole
    assert torch.equal(torch.cat([x for x, _ in served]), whole)
    assert torch.cat([y for _, y in served]).tolist() == arrays["test_labels"].tolist()
    after = [x for x, _ in data.loader("test", batch_size=2)]   # from the made tensor now: the same batches
    assert all(torch.equal(a, b) for a, b in zip(after, (x for x, _ in served)))
    gen = torch.Generator().manual_seed(3)
    order = list(torch.utils.data.RandomSampler(range(7), generator=gen))
    assert torch.equal(torch.cat(shuffled), data.x_train[order])


def test_scaled_bytes_are_numpys_float32_quotients():
    """scale_bytes (torch's float32 division) gives numpy's float32 quotients for every byte value, to the bit
    (a multiplication by 1/255 would not: 0.003921... is not exact)."""
    b = np.arange(256, dtype=np.uint8)
    want = b.astype(np.float32) / np.float32(255.0)
    got = ds.scale_bytes(torch.from_numpy(b)).numpy()
    assert np.array_equal(got.view(np.int32), want.view(np.int32))
    assert not np.array_equal((b.astype(np.float32) * np.float32(1 / 255.0)).view(np.int32), want.view(np.int32))


def test_dataset_without_images_needs_its_tensors():
    with pytest.raises(ConfigError, match="x_train is None"):
        ds.Dataset("t", None, torch.zeros(2), torch.zeros(2, 3), torch.zeros(2), ("a",), "here")


def test_a_datasets_own_byte_tensors_are_served_as_they_are():
    """Only the bytes a loader keeps for itself (``images``) are scaled as served: a dataset made with uint8
    tensors gets them back unchanged."""
    x = torch.arange(12, dtype=torch.uint8).reshape(4, 3)
    data = ds.Dataset("t", x, torch.arange(4), x, torch.arange(4), ("a",), "here")
    (xb, yb), = list(data.loader("test", batch_size=4))
    assert xb.dtype == torch.uint8 and torch.equal(xb, x) and yb.tolist() == [0, 1, 2, 3]


def test_read_idx_big_endian_multibyte_types(tmp_path):
    a = np.array([[1, -2, 300], [-32768, 32767, 0]], dtype=">i2")
    out = ds.read_idx(write_file(tmp_path / "a.idx", idx_bytes(a, 0x0B)))
    assert out.shape == (2, 3) and out.tolist() == a.tolist()
    f = np.array([0.5, -1.25, 3.0e9], dtype=">f4")
    out = ds.read_idx(write_file(tmp_path / "f.idx", idx_bytes(f, 0x0D), gz=True))
    assert out.tolist() == [0.5, -1.25, 3.0e9]


def test_mnist_alt_names_and_subfolder(tmp_path):
    arrays = fake_idx_arrays(seed=1, n_train=4, n_test=2)
    write_idx_set(tmp_path / "root" / "mnist", arrays, names=IDX_ALT_NAMES)
    data = ds.load_mnist(data_dir=tmp_path / "root")
    check_idx_dataset(data, arrays)
    assert data.name == "mnist"
    assert data.classes == tuple(str(i) for i in range(10))
    assert data.source == str(tmp_path / "root" / "mnist")


def test_mnist_alt_names_gz_direct(tmp_path):
    arrays = fake_idx_arrays(seed=2)
    write_idx_set(tmp_path / "m", arrays, names=IDX_ALT_NAMES, gz=True)
    data = ds.load_mnist(tmp_path / "m")
    check_idx_dataset(data, arrays)
    assert data.source == str(tmp_path / "m")


def test_fashion_mnist_in_subfolder_via_load(tmp_path):
    arrays = fake_idx_arrays(seed=3)
    write_idx_set(tmp_path / "root" / "fashion-mnist", arrays)
    data = ds.load("fashion-mnist", data_dir=tmp_path / "root")
    check_idx_dataset(data, arrays)
    assert data.source == str(tmp_path / "root" / "fashion-mnist")
    # cached per process: the same object comes back, also through an alias
    assert ds.load("fashion-mnist", data_dir=tmp_path / "root") is data
    assert ds.load("FMNIST", data_dir=tmp_path / "root") is data


def test_files_directly_in_dir_win_over_subfolder(tmp_path):
    direct, sub = fake_idx_arrays(seed=4), fake_idx_arrays(seed=5)
    write_idx_set(tmp_path / "r", direct)
    write_idx_set(tmp_path / "r" / "fashion-mnist", sub)
    data = ds.load_fashion_mnist(tmp_path / "r")
    check_idx_dataset(data, direct)
    assert data.source == str(tmp_path / "r")


def test_env_var_override(tmp_path, monkeypatch):
    a_env, a_arg = fake_idx_arrays(seed=6), fake_idx_arrays(seed=7)
    write_idx_set(tmp_path / "env" / "fashion-mnist", a_env)
    write_idx_set(tmp_path / "arg", a_arg)
    monkeypatch.setenv(ds.ENV_VAR, str(tmp_path / "env"))
    data = ds.load("fashion-mnist")
    check_idx_dataset(data, a_env)
    assert data.source == str(tmp_path / "env" / "fashion-mnist")
    # an explicit data_dir comes before the environment variable
    check_idx_dataset(ds.load("fashion-mnist", data_dir=tmp_path / "arg"), a_arg)
    # a data_dir without the files is refused, not replaced by the environment variable's folder
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DatasetError, match=f"fashion-mnist not found \\(looked in {tmp_path / 'nothing'}, "):
        ds.load_fashion_mnist(tmp_path / "nothing")
    with pytest.raises(DatasetError, match="missing does not exist; give the folder"):
        ds.load_fashion_mnist(tmp_path / "missing")
    # the cache is keyed on the variable: pointing it elsewhere loads the other copy
    a_env2 = fake_idx_arrays(seed=8)
    write_idx_set(tmp_path / "env2", a_env2, gz=True)
    monkeypatch.setenv(ds.ENV_VAR, str(tmp_path / "env2"))
    data2 = ds.load("fashion-mnist")
    assert data2 is not data
    check_idx_dataset(data2, a_env2)


def test_system_root_is_last_resort(tmp_path, monkeypatch):
    arrays = fake_idx_arrays(seed=9)
    write_idx_set(tmp_path / "sys" / "fashion-mnist", arrays)
    monkeypatch.setattr(ds, "SYSTEM_ROOT", tmp_path / "sys")
    data = ds.load_fashion_mnist()
    check_idx_dataset(data, arrays)
    assert data.source == str(tmp_path / "sys" / "fashion-mnist")


# --------------------------------------------------------------------------------------------------
# 2. Corrupt and missing files

def _corrupt_one(tmp_path, key: str, content: bytes, gz: bool = False) -> tuple[Path, Path]:
    d = tmp_path / "bad"
    paths = write_idx_set(d)
    paths[key].unlink()
    bad = write_file(d / IDX_NAMES[key], content, gz=gz)
    return d, bad


def _good(key: str) -> np.ndarray:
    return fake_idx_arrays()[key]


CORRUPTIONS = {
    # name: (file, content)
    "bad-magic-first-byte": ("train_images", b"\x01" + idx_bytes(_good("train_images"))[1:]),
    "bad-magic-type-byte": ("train_labels", b"\x00\x00\x07" + idx_bytes(_good("train_labels"))[3:]),
    "little-endian-header": ("test_images", struct.pack("<I", 0x0803) + idx_bytes(_good("test_images"))[4:]),
    "too-short-for-magic": ("test_labels", b"\x00\x00"),
    "header-cut-short": ("train_images", bytes([0, 0, 8, 3]) + struct.pack(">I", 5) + b"\x00\x00"),
    "data-truncated": ("train_images", idx_bytes(_good("train_images"))[:-10]),
    "header-promises-more": ("test_images", idx_bytes(_good("test_images"), dims=(4, 28, 28))),
    "trailing-bytes": ("train_labels", idx_bytes(_good("train_labels")) + b"\x00"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupt_idx_file_raises_naming_file(tmp_path, name):
    key, content = CORRUPTIONS[name]
    d, bad = _corrupt_one(tmp_path, key, content)
    with pytest.raises(DatasetError) as exc:
        ds.load_fashion_mnist(data_dir=d)
    assert str(bad) in str(exc.value)


def test_truncated_gzip_raises_naming_file(tmp_path):
    d = tmp_path / "bad"
    paths = write_idx_set(d, gz=True)
    raw = paths["train_images"].read_bytes()
    paths["train_images"].write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError) as exc:
        ds.load_fashion_mnist(d)
    assert str(paths["train_images"]) in str(exc.value)


def test_not_gzip_with_gz_suffix_raises(tmp_path):
    d = tmp_path / "bad"
    paths = write_idx_set(d, gz=True)
    paths["test_labels"].write_bytes(idx_bytes(_good("test_labels")))  # plain bytes under a .gz name
    with pytest.raises(DatasetError) as exc:
        ds.load_fashion_mnist(d)
    assert str(paths["test_labels"]) in str(exc.value)


def test_image_label_count_mismatch(tmp_path):
    arrays = fake_idx_arrays()
    arrays["train_labels"] = arrays["train_labels"][:4]  # 5 images, 4 labels
    paths = write_idx_set(tmp_path / "bad", arrays)
    with pytest.raises(DatasetError) as exc:
        ds.load_fashion_mnist(tmp_path / "bad")
    msg = str(exc.value)
    assert str(paths["train_images"]) in msg and str(paths["train_labels"]) in msg
    assert "(5, 28, 28)" in msg and "(4,)" in msg


def test_labels_wrong_ndim(tmp_path):
    arrays = fake_idx_arrays()
    arrays["test_labels"] = arrays["test_labels"].reshape(3, 1)
    paths = write_idx_set(tmp_path / "bad", arrays)
    with pytest.raises(DatasetError) as exc:
        ds.load_fashion_mnist(tmp_path / "bad")
    assert str(paths["test_labels"]) in str(exc.value)


def test_label_out_of_range(tmp_path):
    arrays = fake_idx_arrays()
    arrays["test_labels"] = np.array([2, 10, 5], dtype=np.uint8)
    paths = write_idx_set(tmp_path / "bad", arrays)
    with pytest.raises(DatasetError) as exc:
        ds.load_mnist(tmp_path / "bad")
    msg = str(exc.value)
    assert str(paths["test_labels"]) in msg and "0..9" in msg
    # 9 is the largest valid label: the same files with 9 load
    arrays["test_labels"] = np.array([2, 9, 5], dtype=np.uint8)
    write_idx_set(tmp_path / "ok", arrays)
    assert ds.load_mnist(tmp_path / "ok").y_test.tolist() == [2, 9, 5]


def test_missing_dataset_lists_dirs_and_data_dir_flag(tmp_path, monkeypatch):
    sys_root = tmp_path / "system"
    sys_root.mkdir()
    monkeypatch.setattr(ds, "SYSTEM_ROOT", sys_root)
    monkeypatch.delenv(ds.ENV_VAR, raising=False)
    given = tmp_path / "given"
    given.mkdir()
    with pytest.raises(DatasetError) as exc:
        ds.load("fashion-mnist", data_dir=given)
    msg = str(exc.value)
    for d in (given, given / "fashion-mnist"):
        assert str(d) in msg
    assert str(sys_root) not in msg   # a --data-dir given is the only folder searched
    assert "--data-dir" in msg and ds.ENV_VAR in msg
    assert "/usr/share/datasets" not in msg
    with pytest.raises(DatasetError) as exc:
        ds.load("fashion-mnist")
    assert f"looked in {sys_root}, {sys_root / 'fashion-mnist'}, " in str(exc.value)


def test_missing_dataset_mentions_env_dir_and_needs_all_four_files(tmp_path, monkeypatch):
    env = tmp_path / "envdir"
    paths = write_idx_set(env / "mnist")
    paths["test_labels"].unlink()  # three of four files is not a dataset
    monkeypatch.setenv(ds.ENV_VAR, str(env))
    with pytest.raises(DatasetError) as exc:
        ds.load_mnist()
    msg = str(exc.value)
    assert str(env) in msg and str(env / "mnist") in msg and "--data-dir" in msg


# --------------------------------------------------------------------------------------------------
# 4. Iris and digits

def _class_counts(y: torch.Tensor, k: int) -> list[int]:
    return torch.bincount(y, minlength=k).tolist()


def test_iris_split_and_scaling():
    data = ds.load_iris()
    assert data.x_train.shape == (105, 4) and data.x_test.shape == (45, 4)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.num_classes == 3 and data.classes == ("setosa", "versicolor", "virginica")
    # stratified: 35/15 of each class
    assert _class_counts(data.y_train, 3) == [35, 35, 35]
    assert _class_counts(data.y_test, 3) == [15, 15, 15]
    # min-max with the training range: each training feature spans exactly [0, 1]
    assert data.x_train.min(dim=0).values.tolist() == [0.0] * 4
    assert data.x_train.max(dim=0).values.tolist() == [1.0] * 4
    assert data.x_test.min().item() >= 0.0 and data.x_test.max().item() <= 1.0
    assert data.info["split_seed"] == 0 and data.info["test_fraction"] == 0.3


def test_iris_split_deterministic_per_seed():
    a, b, c = ds.load_iris(seed=5), ds.load_iris(seed=5), ds.load_iris(seed=6)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.y_train, c.y_train) or not torch.equal(a.x_train, c.x_train)
    assert not torch.equal(a.x_test, c.x_test)
    assert ds.load_iris(test_fraction=0.2).x_test.shape == (30, 4)


def test_digits_split_and_scaling():
    data = ds.load_digits()
    assert data.input_shape == (1, 8, 8)
    assert len(data.y_train) + len(data.y_test) == 1797
    assert len(data.y_test) == 450 and len(data.y_train) == 1347
    assert data.x_train.dtype == torch.float32
    for x in (data.x_train, data.x_test):
        assert x.min().item() == 0.0 and x.max().item() == 1.0
        # pixel values were integers 0..16 scaled by 1/16
        assert torch.equal(x * 16, torch.round(x * 16))
    tr, te = _class_counts(data.y_train, 10), _class_counts(data.y_test, 10)
    assert all(n > 0 for n in tr) and all(n > 0 for n in te)
    # stratified: each class's test share is within one example of 25%
    for n_tr, n_te in zip(tr, te):
        assert abs(n_te - 0.25 * (n_tr + n_te)) <= 1


def test_digits_split_deterministic_per_seed():
    a, b, c = ds.load_digits(seed=1), ds.load_digits(seed=1), ds.load_digits(seed=2)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.x_test, c.x_test)
    # a different seed reshuffles the same examples: the pixel sums over both splits agree
    assert torch.cat([a.x_train, a.x_test]).sum().item() == pytest.approx(
        torch.cat([c.x_train, c.x_test]).sum().item())


# --------------------------------------------------------------------------------------------------
# 5. Synthetic

def test_synthetic_deterministic_shapes_range():
    a = ds.make_synthetic(n_train=300, n_test=100, shape=(3, 6, 6), num_classes=4, seed=11)
    b = ds.make_synthetic(n_train=300, n_test=100, shape=(3, 6, 6), num_classes=4, seed=11)
    c = ds.make_synthetic(n_train=300, n_test=100, shape=(3, 6, 6), num_classes=4, seed=12)
    assert a.x_train.shape == (300, 3, 6, 6) and a.x_test.shape == (100, 3, 6, 6)
    assert a.y_train.shape == (300,) and a.num_classes == 4
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.x_train, c.x_train)
    for x in (a.x_train, a.x_test):
        assert x.min().item() >= 0.0 and x.max().item() <= 1.0
    assert set(a.y_train.tolist()) == {0, 1, 2, 3}


def test_synthetic_default_via_load():
    data = ds.load("synthetic")
    assert data.x_train.shape == (2048, 1, 28, 28) and data.x_test.shape == (512, 1, 28, 28)
    assert data.num_classes == 10


def test_synthetic_is_learnable_by_nearest_class_mean():
    data = ds.make_synthetic(n_train=1000, n_test=400, seed=3)
    xtr = data.x_train.flatten(1)
    xte = data.x_test.flatten(1)
    means = torch.stack([xtr[data.y_train == k].mean(0) for k in range(data.num_classes)])
    pred = torch.cdist(xte, means).argmin(1)
    acc = (pred == data.y_test).float().mean().item()
    assert acc > 0.9
    # and it is not trivially solved by chance labels: shuffled labels give ~chance accuracy
    perm = data.y_test[torch.randperm(len(data.y_test), generator=torch.Generator().manual_seed(0))]
    assert (pred == perm).float().mean().item() < 0.3


@pytest.mark.parametrize("kwargs", [{"n_train": 0}, {"n_test": 0}, {"num_classes": 1}, {"noise": -0.1}])
def test_synthetic_bad_args(kwargs):
    with pytest.raises(ConfigError):
        ds.make_synthetic(**kwargs)


# --------------------------------------------------------------------------------------------------
# 6. Dataset.loader

def _toy(n: int = 23) -> ds.Dataset:
    x = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)
    y = torch.arange(n, dtype=torch.int64)
    return ds.Dataset("toy", x[:10], y[:10], x, y, tuple("ab"), "test")


def _collect(loader):
    xs, ys = zip(*loader)
    return [len(b) for b in ys], torch.cat(xs), torch.cat(ys)


def test_loader_sequential_covers_split_once_in_order():
    data = _toy()
    sizes, x, y = _collect(data.loader("test", batch_size=5))
    assert sizes == [5, 5, 5, 5, 3]
    assert torch.equal(x, data.x_test) and torch.equal(y, data.y_test)
    sizes, x, y = _collect(data.loader("train", batch_size=4))
    assert sizes == [4, 4, 2] and torch.equal(x, data.x_train) and torch.equal(y, data.y_train)


def test_loader_limit():
    data = _toy()
    sizes, x, y = _collect(data.loader("test", batch_size=5, limit=7))
    assert sizes == [5, 2] and y.tolist() == list(range(7)) and torch.equal(x, data.x_test[:7])
    sizes, _, y = _collect(data.loader("test", batch_size=100, limit=1000))
    assert sizes == [23] and y.tolist() == list(range(23))


def test_loader_shuffle_seeded_permutation():
    data = _toy()
    _, x1, y1 = _collect(data.loader("test", batch_size=6, shuffle=True, seed=3))
    _, x2, y2 = _collect(data.loader("test", batch_size=6, shuffle=True, seed=3))
    _, _, y3 = _collect(data.loader("test", batch_size=6, shuffle=True, seed=4))
    assert torch.equal(y1, y2) and torch.equal(x1, x2)
    assert sorted(y1.tolist()) == list(range(23))  # every example exactly once
    assert y1.tolist() != list(range(23))  # actually shuffled
    assert not torch.equal(y1, y3)
    assert torch.equal(x1, data.x_test[y1])  # x and y stay paired
    # shuffle with a limit permutes only the first `limit` examples
    _, _, y4 = _collect(data.loader("test", batch_size=4, shuffle=True, seed=3, limit=9))
    assert sorted(y4.tolist()) == list(range(9))


@pytest.mark.parametrize("limit", [0, -3])
def test_loader_bad_limit(limit):
    with pytest.raises(ConfigError):
        _toy().loader(limit=limit)


def test_loader_bad_split():
    with pytest.raises(ConfigError):
        _toy().loader("validation")


# --------------------------------------------------------------------------------------------------
# 7. Names

@pytest.mark.parametrize("alias,canon", [
    ("fashion_mnist", "fashion-mnist"), ("FMNIST", "fashion-mnist"), ("FashionMNIST", "fashion-mnist"),
    (" Fashion-MNIST ", "fashion-mnist"), ("cifar-10", "cifar10"), ("CIFAR_10", "cifar10"),
    ("mnist", "mnist"), ("Iris", "iris"), ("digits", "digits"), ("synthetic", "synthetic"),
])
def test_canonical_name_aliases(alias, canon):
    assert ds.canonical_name(alias) == canon


def test_dataset_names():
    assert ds.dataset_names() == ["fashion-mnist", "mnist", "cifar10", "iris", "digits", "synthetic", "nmnist-fashion",
                                 "gesture-synth", "flow-synth", "dvs-gesture", "mvsec"]


@pytest.mark.parametrize("bad", ["imagenet", "", "mnist2"])
def test_unknown_name_lists_valid_names(bad):
    with pytest.raises(ConfigError) as exc:
        ds.canonical_name(bad)
    for name in ds.dataset_names():
        assert name in str(exc.value)
    with pytest.raises(ConfigError):
        ds.load(bad)


# --------------------------------------------------------------------------------------------------
# 8. The real Fashion-MNIST, when installed

@pytest.mark.skipif(not REAL_FMNIST.is_dir(), reason=f"{REAL_FMNIST} not installed")
def test_real_fashion_mnist():
    data = ds.load_fashion_mnist(data_dir=REAL_FMNIST)
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert data.num_classes == 10
    assert _class_counts(data.y_train, 10) == [6000] * 10
    assert _class_counts(data.y_test, 10) == [1000] * 10
    assert data.x_train.min().item() == 0.0 and data.x_train.max().item() == 1.0
