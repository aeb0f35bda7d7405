"""Offline datasets: Fashion-MNIST, MNIST, CIFAR-10, Iris, 8x8 digits, a synthetic generator and event data.

Event data (frames ``(T, 2, H, W)`` per example) come from :mod:`cimsim.workloads.events` (the DVS128 Gesture
release, ``dvs-gesture``, and MVSEC-style HDF5 flow, ``mvsec``, read from files) and
:mod:`cimsim.workloads.event_synth` (``nmnist-fashion``, ``gesture-synth``, ``flow-synth``, generated). A flow
set's ``y`` is per-pixel flow (``Dataset.task == "flow"``).

Nothing is downloaded. The image sets are read from their standard files in a directory:

* Fashion-MNIST and MNIST: the four IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), plain or ``.gz``;
* CIFAR-10: the python pickle batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``), as in
  ``cifar-10-batches-py/``.

The directory is the ``data_dir`` argument (the CLI's ``--data-dir``) where one is given, else the first of the
``CIMSIM_DATA`` environment variable and the system default (``/usr/share/datasets/<name>``, where the Debian package
``dataset-fashion-mnist`` installs Fashion-MNIST) that holds the set. Each of those may hold the files itself or a
sub-folder named after the dataset. MNIST and Fashion-MNIST share their file names, so the files found are told
apart by their mean pixel (:func:`check_idx_identity`) and refused under the other set's name. Iris and the 8x8 digits ship with scikit-learn.

Pixels are scaled to [0, 1] (not mean-centred): the first layer of a network then sees unsigned inputs,
which is what a crossbar with unsigned DACs expects. Tabular features are min-max scaled to [0, 1] with
the training split's range.
"""

from __future__ import annotations

import math
import os
import pickle
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from cimsim import datafiles
from cimsim.datafiles import ENV_VAR, IDX_FOLDERS, SYSTEM_ROOT, candidate_dirs
from cimsim.errors import ConfigError, DatasetError
from cimsim.provenance import tag_loader


FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


def scale_bytes(a: torch.Tensor) -> torch.Tensor:
    """Pixel bytes (uint8) as float32 in [0, 1]: ``a / 255`` divided in float32 (the same quotients as numpy's
    float32 division; tested for all 256 values)."""
    return a.to(torch.float32).div_(255.0)


@dataclass
class Dataset:
    """A dataset held in memory as float32 tensors.

    ``x_*`` has shape (N, C, H, W) for images and (N, F) for tabular data; ``y_*`` holds int64 labels.
    ``images`` (optional): a split's pixels as uint8 (N, C, H, W), for sets stored as bytes (the IDX sets); such a
    split's ``x_*`` may be given as None and is then made from them (:func:`scale_bytes`) when first read, while
    :meth:`loader` scales only the batches it serves: a run that calibrates on 512 training images never converts
    the other 59,488 (0.3-1.4 s and 188 MB of a command on a 2-core machine).
    """

    name: str
    x_train: torch.Tensor | None
    y_train: torch.Tensor
    x_test: torch.Tensor | None
    y_test: torch.Tensor
    classes: tuple[str, ...]
    source: str
    info: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        for split in ("train", "test"):
            if getattr(self, f"x_{split}") is None:
                if split not in self.images:
                    raise ConfigError(f"Dataset {self.name!r}: x_{split} is None and no {split} images were given")
                delattr(self, f"x_{split}")      # made on first read (__getattr__)

    def __getattr__(self, name: str):
        # only reached when the attribute is missing: a split's float32 images not made yet
        split = {"x_train": "train", "x_test": "test"}.get(name)
        if split is None or split not in self.__dict__.get("images", {}):
            raise AttributeError(name)
        x = scale_bytes(self.images[split])
        setattr(self, name, x)
        return x

    def _made(self, split: str) -> bool:
        return f"x_{split}" in self.__dict__

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def task(self) -> str:
        """"classify" (labels ``y``) or "flow" (``y``: per-pixel optical flow (N, 2, H, W) in pixels)."""
        return self.info.get("task", "classify")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, without the batch dimension."""
        return tuple((self.x_train if self._made("train") else self.images["train"]).shape[1:])

    def split(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        if which == "train":
            return self.x_train, self.y_train
        if which == "test":
            return self.x_test, self.y_test
        raise ConfigError(f"unknown split {which!r}: use 'train' or 'test'")

    def loader(self, split: str = "test", batch_size: int = 256, shuffle: bool = False,
               seed: int = 0, limit: int | None = None) -> torch.utils.data.DataLoader:
        """A ``torch.utils.data.DataLoader`` of (x, y) batches over the first ``limit`` examples.

        Batches are sliced from the in-memory tensors (no per-example collation), so iterating the
        10 000-image test set costs milliseconds.
        """
        raw = split in ("train", "test") and not self._made(split) and split in self.images
        if raw:
            x, y = self.images[split], getattr(self, f"y_{split}")     # bytes: scaled batch by batch
        else:
            x, y = self.split(split)
        if limit is not None:
            if limit < 1:
                raise ConfigError(f"limit must be a positive number of examples, got {limit}")
            x, y = x[:limit], y[:limit]
        tensors = _ScaledBytes(x, y) if raw else torch.utils.data.TensorDataset(x, y)
        if shuffle:
            gen = torch.Generator().manual_seed(seed)
            sampler = torch.utils.data.RandomSampler(tensors, generator=gen)
        else:
            sampler = torch.utils.data.SequentialSampler(tensors)
        batches = torch.utils.data.BatchSampler(sampler, batch_size=batch_size, drop_last=False)
        # batch_size=None + a BatchSampler as sampler: TensorDataset is indexed with a list of indices
        # and returns whole batches.
        # tagged with the dataset's name, which reports print (cimsim.provenance)
        return tag_loader(torch.utils.data.DataLoader(tensors, batch_size=None, sampler=batches), self.name)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
                f"input_shape={self.input_shape}, classes={self.num_classes}, source={self.source!r})")


class _ScaledBytes(torch.utils.data.Dataset):
    """(x, y) batches of pixel bytes scaled to float32 as they are served (:meth:`Dataset.loader`); indexed, like a
    ``TensorDataset``, by a list of indices."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index):
        return scale_bytes(self.x[index]), self.y[index]


# --------------------------------------------------------------------------------------------------
# Finding files

def _candidate_dirs(name: str, data_dir: str | os.PathLike | None, folder_names: tuple[str, ...]) -> list[Path]:
    return candidate_dirs(data_dir, folder_names, ENV_VAR, SYSTEM_ROOT)   # this module's (tests replace them)


def find_dir(name: str, data_dir, folder_names: tuple[str, ...], has_files: Callable[[Path], bool],
              how_to_get: str) -> Path:
    """The first searched folder (:func:`cimsim.datafiles.candidate_dirs`) that holds the set; a ``data_dir`` given
    is the only one searched, and must be a folder."""
    datafiles.check_data_dir(name, data_dir)
    tried = _candidate_dirs(name, data_dir, folder_names)
    for d in tried:
        if d.is_dir() and has_files(d):
            return d
    looked = ", ".join(str(d) for d in dict.fromkeys(tried))
    raise DatasetError(f"{name} not found (looked in {looked}); {how_to_get}, "
                       f"then pass --data-dir DIR or set {ENV_VAR}=DIR")


# --------------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

_IDX_MAX_BYTES = datafiles.IDX_MAX_BYTES
_IDX_STEMS = datafiles.IDX_STEMS
_idx_path = datafiles.idx_path


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a numpy array.

    The format (LeCun et al., the MNIST database page): two zero bytes, a type byte, a byte giving the
    number of dimensions, one big-endian uint32 per dimension, then the data, big-endian, row-major.
    """
    path = Path(path)
    raw = datafiles.take(path)   # read ahead while the modules loaded (cimsim.datafiles), else read here
    try:
        if raw is None:
            raw = datafiles.read_raw(path)
    except (OSError, EOFError, zlib.error) as exc:   # a broken gzip stream raises zlib.error
        raise DatasetError(f"cannot read IDX file {path}: {' '.join(str(exc).split())[:160]}; replace the file with "
                           "an intact copy") from None
    if len(raw) > _IDX_MAX_BYTES:
        raise DatasetError(f"{path} holds more than {_IDX_MAX_BYTES >> 30} GiB; not an MNIST-style IDX file")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number); replace it with an intact copy")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    if not 1 <= ndim <= 4:
        raise DatasetError(f"{path} declares {ndim} dimensions; IDX files of images and labels have 1 to 4: "
                           "replace it with an intact copy")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated (header cut short); replace it with an intact copy")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape) * dtype.itemsize   # Python ints: a product of four uint32 sizes cannot overflow
    if len(raw) - header != expected:
        raise DatasetError(f"{path} holds {len(raw) - header} data bytes but its header promises {expected} "
                           f"for shape {shape}; replace it with an intact copy")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _load_idx_set(name: str, data_dir, folder_names: tuple[str, ...], classes: tuple[str, ...],
                  how_to_get: str) -> Dataset:
    d = find_dir(name, data_dir, folder_names,
                  lambda p: all(_idx_path(p, k) is not None for k in _IDX_STEMS), how_to_get)
    paths = {k: _idx_path(d, k) for k in _IDX_STEMS}
    arrays = {k: read_idx(paths[k]) for k in _IDX_STEMS}
    for split in ("train", "test"):
        xi, yi = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        xp, yp = paths[f"{split}_images"], paths[f"{split}_labels"]
        for a, p, what in ((xi, xp, "images"), (yi, yp, "labels")):
            if a.dtype != np.uint8:
                raise DatasetError(f"{name} {split} {what} in {p} are stored as {a.dtype}, not unsigned bytes "
                                   "(IDX type 0x08) as MNIST-style files are; replace the file with an intact copy")
        if xi.ndim != 3 or yi.ndim != 1 or len(xi) != len(yi):
            raise DatasetError(f"{name} {split} files disagree: images {xi.shape} in {xp}, labels {yi.shape} "
                               f"in {yp}; replace them with an intact copy")
        if len(yi) == 0:
            raise DatasetError(f"{name} {split} set in {xp} is empty; replace the files with an intact copy")
        if xi.shape[1:] != arrays["train_images"].shape[1:]:
            raise DatasetError(f"{name} test images in {xp} are {xi.shape[1]}x{xi.shape[2]}, the training images "
                               f"{arrays['train_images'].shape[1]}x{arrays['train_images'].shape[2]}; "
                               "replace them with an intact copy")
        if yi.size and (yi.min() < 0 or yi.max() >= len(classes)):
            raise DatasetError(f"{name} {split} labels in {yp} fall outside 0..{len(classes) - 1}; "
                               "replace the label file with an intact copy")

    check_idx_identity(name, d, {split: arrays[f"{split}_images"] for split in ("train", "test")})

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    # the pixels stay bytes until read: x_train / x_test are scaled on first use, a loader's batches as served
    pixels = {split: torch.from_numpy(arrays[f"{split}_images"]).unsqueeze(1) for split in ("train", "test")}
    return Dataset(name, None, labels(arrays["train_labels"]), None, labels(arrays["test_labels"]), classes, str(d),
                   images=pixels)


# Mean pixel of each split as a fraction of full scale (255): MNIST's 0.1307 is the normalisation constant of
# pytorch/examples mnist/main.py (Normalize((0.1307,), (0.3081,))), 0.1325 its test split's; Fashion-MNIST's
# 0.2860 / 0.2868, the constants quoted for it, are what the Debian dataset-fashion-mnist files give (measured here:
# 0.28604 / 0.28685).
IDX_MEAN_PIXEL = {"mnist": {"train": 0.1307, "test": 0.1325}, "fashion-mnist": {"train": 0.2860, "test": 0.2868}}
IDX_MEAN_BAND = 0.04   # our choice: half the 0.155 gap between the sets would be 0.077; random files lie far from both
IDX_DISPLAY = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
# the sets' standard split sizes (both: 60,000 training and 10,000 test images): only whole splits are told apart, since
# a subset's mean may lie anywhere (Fashion-MNIST's sandals alone: 0.137, MNIST's band)
IDX_FULL_SIZE = {"train": 60_000, "test": 10_000}


def check_idx_identity(name: str, folder: Path, images: dict[str, np.ndarray]) -> None:
    """Refuse (DatasetError) IDX images that hold the other MNIST-style set: the two share their file names, so a
    folder of one is found under the other's name. A split whose mean pixel lies within :data:`IDX_MEAN_BAND` of the
    other set's (:data:`IDX_MEAN_PIXEL`) is the other set; anything else (one's own, synthetic files) passes."""
    other = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}.get(name)
    if other is None:
        return
    for split, a in images.items():
        if len(a) != IDX_FULL_SIZE[split]:
            continue   # a subset (of either set) says nothing
        mean = float(np.add.reduce(a.reshape(-1), dtype=np.uint64)) / (255.0 * max(a.size, 1))   # exact; 17 ms for 60,000 images
        if abs(mean - IDX_MEAN_PIXEL[other][split]) <= IDX_MEAN_BAND:
            raise DatasetError(
                f"the IDX files in {folder} seem to hold {IDX_DISPLAY[other]}, not {IDX_DISPLAY[name]}: the {split} "
                f"images' mean pixel is {mean:.4f} of full scale ({IDX_DISPLAY[other]}: "
                f"{IDX_MEAN_PIXEL[other][split]:.4f}, {IDX_DISPLAY[name]}: {IDX_MEAN_PIXEL[name][split]:.4f}); point --data-dir "
                f"or ${ENV_VAR} at the {IDX_DISPLAY[name]} files, or pass --dataset {other}")


def load_fashion_mnist(data_dir=None) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017): 60 000 + 10 000 grey 28x28 images of 10 clothing classes."""
    return _load_idx_set("fashion-mnist", data_dir, IDX_FOLDERS["fashion-mnist"],
                         FASHION_MNIST_CLASSES,
                         "install it with 'apt-get install dataset-fashion-mnist' or copy the four IDX files")


def load_mnist(data_dir=None) -> Dataset:
    """MNIST (LeCun et al. 1998): 60 000 + 10 000 grey 28x28 handwritten digits."""
    return _load_idx_set("mnist", data_dir, IDX_FOLDERS["mnist"], tuple(str(i) for i in range(10)),
                         "copy the four MNIST IDX files (train-images-idx3-ubyte[.gz], ...) into a directory")


# --------------------------------------------------------------------------------------------------
# CIFAR-10 (python pickle batches)

class _ArrayUnpickler(pickle.Unpickler):
    """Loads the CIFAR batch dictionaries and refuses any other object (a pickle can run code)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except MemoryError:   # a corrupt length field asks for more memory than there is
        raise DatasetError(f"cannot read CIFAR-10 batch {path}: a size inside it is corrupt (more memory than "
                           "there is); replace it with an intact copy") from None
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            LookupError, OverflowError) as exc:
        raise DatasetError(f"cannot read CIFAR-10 batch {path}: {' '.join(str(exc).split())[:160]}; replace it with "
                           "an intact copy") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{path} is not a CIFAR-10 batch (no dictionary inside); replace it with an intact copy")
    batch = {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DatasetError(f"{path} lacks 'data' or 'labels'; replace it with an intact copy")
    try:   # what the unpickler let through is plain data, but of any kind: strings, dicts, ragged lists, 2**70
        data = np.asarray(batch["data"])
        raw_labels = np.asarray(batch["labels"])
        if data.dtype.kind not in "iu" or (data.size and (data.min() < 0 or data.max() > 255)):
            raise ValueError(f"data of type {data.dtype} is not pixel bytes 0..255")
        if raw_labels.dtype.kind not in "iu" or raw_labels.ndim != 1:
            raise ValueError(f"labels of type {raw_labels.dtype}, shape {raw_labels.shape} are not class numbers")
        labels = raw_labels.astype(np.int64)
        if len(labels) == 0:
            raise ValueError("the batch holds no examples")
    except (ValueError, TypeError, OverflowError) as exc:
        raise DatasetError(f"{path}: {' '.join(str(exc).split())[:120]}; replace it with an intact copy") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DatasetError(f"{path}: data has shape {data.shape} for {len(labels)} labels, expected (N, 3072); "
                           "replace it with an intact copy")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"{path}: labels outside 0..9; replace it with an intact copy")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(data_dir=None) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009): 50 000 + 10 000 colour 32x32 images, from the python pickle batches."""
    d = find_dir("cifar10", data_dir, ("cifar-10-batches-py", "cifar10", "cifar-10"),
                  lambda p: all((p / b).is_file() for b in _CIFAR_TRAIN + (_CIFAR_TEST,)),
                  "download the 'CIFAR-10 python version' archive (cifar-10-python.tar.gz) and unpack it into a "
                  "directory DIR, so that DIR/cifar-10-batches-py/ holds data_batch_1 .. data_batch_5 and test_batch "
                  f"(DIR {SYSTEM_ROOT} is searched by default)")
    parts = [_read_cifar_batch(d / b) for b in _CIFAR_TRAIN]
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    xte, yte = _read_cifar_batch(d / _CIFAR_TEST)

    def images(a):
        return torch.from_numpy(a.astype(np.float32) / 255.0)

    return Dataset("cifar10", images(xtr), torch.from_numpy(ytr), images(xte), torch.from_numpy(yte),
                   CIFAR10_CLASSES, str(d))


# --------------------------------------------------------------------------------------------------
# scikit-learn's bundled sets

def _minmax(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = train.min(axis=0), train.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (train - lo) / span, np.clip((test - lo) / span, 0.0, 1.0)


def _sklearn_split(x, y, test_fraction: float, seed: int):
    from sklearn.model_selection import train_test_split
    return train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)


def load_iris(data_dir=None, seed: int = 0, test_fraction: float = 0.3) -> Dataset:
    """Fisher's Iris (150 examples, 4 features, 3 classes), a stratified train/test split, features in [0, 1].

    The split (70/30 by default) is fixed by ``seed`` so results are comparable between runs.
    """
    from sklearn.datasets import load_iris as sk_iris
    raw = sk_iris()
    xtr, xte, ytr, yte = _sklearn_split(raw.data, raw.target, test_fraction, seed)
    xtr, xte = _minmax(xtr, xte)
    return Dataset("iris", torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr, dtype=torch.int64),
                   torch.tensor(xte, dtype=torch.float32), torch.tensor(yte, dtype=torch.int64),
                   tuple(raw.target_names), "scikit-learn (bundled)",
                   {"split_seed": seed, "test_fraction": test_fraction, "features": list(raw.feature_names)})


def load_digits(data_dir=None, seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """The UCI 8x8 handwritten digits bundled with scikit-learn (1797 images, pixel values 0..16).

    Images are (1, 8, 8), scaled to [0, 1] by 16; a stratified split (75/25 by default) fixed by ``seed``.
    """
    from sklearn.datasets import load_digits as sk_digits
    raw = sk_digits()
    xtr, xte, ytr, yte = _sklearn_split(raw.images, raw.target, test_fraction, seed)

    def images(a):
        return torch.tensor(a / 16.0, dtype=torch.float32).unsqueeze(1)

    return Dataset("digits", images(xtr), torch.tensor(ytr, dtype=torch.int64), images(xte),
                   torch.tensor(yte, dtype=torch.int64), tuple(str(i) for i in range(10)),
                   "scikit-learn (bundled)", {"split_seed": seed, "test_fraction": test_fraction})


# --------------------------------------------------------------------------------------------------
# Synthetic

def make_synthetic(n_train: int = 2048, n_test: int = 512, shape: tuple[int, ...] = (1, 28, 28),
                   num_classes: int = 10, noise: float = 0.15, seed: int = 0) -> Dataset:
    """A learnable synthetic image set: one random prototype in [0, 1] per class plus Gaussian noise.

    Examples are ``clip(prototype[label] + noise * N(0, 1), 0, 1)``. With the default noise a linear
    classifier separates the classes almost perfectly, so it is a fast, offline stand-in for tests and
    benchmarks. Deterministic for a seed.
    """
    if n_train < 1 or n_test < 1 or num_classes < 2 or noise < 0:
        raise ConfigError("synthetic dataset needs n_train >= 1, n_test >= 1, num_classes >= 2 and noise >= 0")
    rng = np.random.default_rng(seed)
    protos = rng.random((num_classes,) + tuple(shape))

    def draw(n):
        y = rng.integers(0, num_classes, size=n)
        x = np.clip(protos[y] + noise * rng.standard_normal((n,) + tuple(shape)), 0.0, 1.0)
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    return Dataset("synthetic", xtr, ytr, xte, yte, tuple(f"class{i}" for i in range(num_classes)),
                   f"generated (seed {seed})",
                   {"seed": seed, "noise": noise, "n_train": n_train, "n_test": n_test})


# --------------------------------------------------------------------------------------------------
# Registry

_LOADERS: dict[str, Callable[..., Dataset]] = {
    "fashion-mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "iris": load_iris,
    "digits": load_digits,
    "synthetic": lambda data_dir=None: make_synthetic(),
    # event data (workloads/events.py: real formats; workloads/event_synth.py: generated, seed 0)
    "nmnist-fashion": lambda data_dir=None: _event_synth().make_nmnist_fashion(data_dir=data_dir),
    "gesture-synth": lambda data_dir=None: _event_synth().make_gesture_synth(),
    "flow-synth": lambda data_dir=None: _event_synth().make_flow_synth(),
    "dvs-gesture": lambda data_dir=None: _events().load_dvs_gesture(data_dir),
    "mvsec": lambda data_dir=None: _events().load_mvsec(data_dir),
}
def _events():
    from cimsim.workloads import events   # imports this module: loaded on first use
    return events


def _event_synth():
    from cimsim.workloads import event_synth
    return event_synth


_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
            "cifar-10": "cifar10", "cifar_10": "cifar10",
            "nmnist_fashion": "nmnist-fashion", "gesture_synth": "gesture-synth", "flow_synth": "flow-synth",
            "dvs_gesture": "dvs-gesture", "dvsgesture": "dvs-gesture"}


def dataset_names() -> list[str]:
    return list(_LOADERS)


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _LOADERS:
        raise ConfigError(f"unknown dataset {name!r}: choose one of {', '.join(_LOADERS)}")
    return key


_CACHE: dict[tuple[str, str | None], Dataset] = {}


def load(name: str, data_dir=None) -> Dataset:
    """Load a dataset by name (see :func:`dataset_names`); results are cached per process."""
    key = canonical_name(name)
    datafiles.check_data_dir(key, data_dir)   # a set that takes no files, a folder that is not there: one line
    cache_key = (key, None if data_dir is None else str(data_dir), os.environ.get(ENV_VAR))
    if cache_key not in _CACHE:
        _CACHE[cache_key] = _LOADERS[key](data_dir=data_dir)
    return _CACHE[cache_key]


def iter_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) mini-batches; shuffled with ``generator`` when one is given."""
    n = len(y)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]
