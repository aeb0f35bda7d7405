"""CIFAR-10 from its python pickle batches (cimsim.workloads.datasets.load_cifar10), tested on tiny batches
written in the real format, including pickles that must be refused rather than executed."""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cimsim.errors import DatasetError
from cimsim.workloads import datasets as ds

pytestmark = pytest.mark.usefixtures("isolated_data")   # tests/conftest.py

# --------------------------------------------------------------------------------------------------
# 3. CIFAR-10

def cifar_arrays(seed: int = 0, per_batch: int = 4, n_test: int = 3):
    rng = np.random.default_rng(seed)
    batches = []
    for b in range(5):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        batches.append((data, labels))
    # first training row: pure red image
    batches[0][0][0] = 0
    batches[0][0][0, :1024] = 255
    test = (rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8),
            [int(v) for v in rng.integers(0, 10, size=n_test)])
    test[1][-1] = 9
    return batches, test


def write_cifar_batch(path: Path, data: np.ndarray, labels: list[int], label: bytes) -> None:
    obj = {b"batch_label": label, b"labels": labels, b"data": data,
           b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(labels))]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar(root: Path, seed: int = 0) -> tuple[Path, list, tuple]:
    d = root / "cifar-10-batches-py"
    batches, test = cifar_arrays(seed)
    for i, (data, labels) in enumerate(batches, 1):
        write_cifar_batch(d / f"data_batch_{i}", data, labels, f"training batch {i} of 5".encode())
    write_cifar_batch(d / "test_batch", *test, b"testing batch 1 of 1")
    return d, batches, test


def test_cifar10_loads_pickle_batches(tmp_path):
    d, batches, test = write_cifar(tmp_path)
    data = ds.load_cifar10(data_dir=tmp_path)
    assert data.source == str(d)
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (3, 3, 32, 32)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.classes == ds.CIFAR10_CLASSES and data.num_classes == 10
    assert data.y_train.tolist() == [v for _, labels in batches for v in labels]
    assert data.y_test.tolist() == test[1]
    # the first row is pure red: channel 0 all ones, channels 1 and 2 all zeros
    assert torch.all(data.x_train[0, 0] == 1.0) and torch.all(data.x_train[0, 1:] == 0.0)
    # layout, element by element: row[c*1024 + r*32 + col] -> x[c, r, col]; batches in order 1..5
    train_rows = np.concatenate([b[0] for b in batches])
    x = data.x_train.numpy()
    for n in (1, 5, 19):
        for c in range(3):
            for r in (0, 1, 17, 31):
                for col in (0, 2, 31):
                    assert x[n, c, r, col] == np.float32(train_rows[n, c * 1024 + r * 32 + col]) / np.float32(255)
    assert np.array_equal(x.reshape(20, 3072) * np.float32(255), train_rows.astype(np.float32))
    assert np.array_equal(data.x_test.numpy().reshape(3, 3072), test[0].astype(np.float32) / np.float32(255))


def test_cifar10_via_load_alias(tmp_path):
    write_cifar(tmp_path / "c", seed=1)
    data = ds.load("cifar-10", data_dir=tmp_path / "c")
    assert data.name == "cifar10" and len(data.y_train) == 20 and len(data.y_test) == 3


class _Payload:
    """Unpickling this would call print(...): harmless, but proves whether code ran."""

    def __reduce__(self):
        return (print, ("CIMSIM-PAYLOAD-EXECUTED",))


def _replace_batch(d: Path, name: str, obj) -> Path:
    p = d / name
    with open(p, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return p


@pytest.mark.parametrize("kind", ["reduce-payload", "ordered-dict", "payload-as-labels"])
def test_cifar10_refuses_foreign_objects(tmp_path, capsys, kind):
    d, batches, _ = write_cifar(tmp_path)
    data, labels = batches[2]
    if kind == "reduce-payload":
        obj = {b"data": _Payload(), b"labels": labels}
    elif kind == "ordered-dict":
        obj = {b"data": data, b"labels": labels, b"extra": collections.OrderedDict(a=1)}
    else:
        obj = {b"data": data, b"labels": [_Payload()]}
    bad = _replace_batch(d, "data_batch_3", obj)
    with pytest.raises(DatasetError) as exc:
        ds.load_cifar10(tmp_path)
    assert str(bad) in str(exc.value)
    assert "refusing" in str(exc.value)
    assert "CIMSIM-PAYLOAD-EXECUTED" not in capsys.readouterr().out


def test_payload_would_run_under_plain_pickle(capsys):
    """Control for the test above: the payload does execute under an unrestricted unpickler."""
    pickle.loads(pickle.dumps({b"data": _Payload()}, protocol=2))
    assert "CIMSIM-PAYLOAD-EXECUTED" in capsys.readouterr().out


def _cifar_bad(tmp_path, name, content: bytes) -> tuple[Path, Path]:
    d, _, _ = write_cifar(tmp_path)
    p = d / name
    p.write_bytes(content)
    return d, p


def _good_test_pickle(changes=None) -> bytes:
    _, test = cifar_arrays()
    obj = {b"batch_label": b"testing batch 1 of 1", b"data": test[0], b"labels": test[1],
           b"filenames": [b"a.png"] * len(test[1])}
    obj.update(changes or {})
    return pickle.dumps({k: v for k, v in obj.items() if v is not None}, protocol=2)


CIFAR_CORRUPTIONS = {
    "not-a-pickle": b"<html>404 Not Found</html>",
    "empty": b"",
    "truncated": _good_test_pickle()[:-500],
    "not-a-dict": pickle.dumps([1, 2, 3], protocol=2),
    "no-labels": _good_test_pickle({b"labels": None}),
    "wrong-row-length": _good_test_pickle({b"data": np.zeros((3, 3000), np.uint8)}),
    "count-mismatch": _good_test_pickle({b"labels": [1, 2]}),
    "label-out-of-range": _good_test_pickle({b"labels": [1, 10, 2]}),
    "negative-label": _good_test_pickle({b"labels": [1, -1, 2]}),
    "bad-codec-name": _good_test_pickle().replace(b"latin1", b"latinX"),
    "huge-length-field": b"\x80\x04\x8e" + b"\xff" * 8,
}


@pytest.mark.parametrize("name", list(CIFAR_CORRUPTIONS))
def test_cifar10_corrupt_batch(tmp_path, name):
    _, bad = _cifar_bad(tmp_path, "test_batch", CIFAR_CORRUPTIONS[name])
    with pytest.raises(DatasetError) as exc:
        ds.load_cifar10(tmp_path)
    assert str(bad) in str(exc.value)


def test_cifar10_missing_batch(tmp_path):
    d, _, _ = write_cifar(tmp_path)
    (d / "data_batch_5").unlink()
    with pytest.raises(DatasetError) as exc:
        ds.load_cifar10(tmp_path)
    assert str(d) in str(exc.value) and "--data-dir" in str(exc.value)
