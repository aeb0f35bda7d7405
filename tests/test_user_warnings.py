"""Warnings about the user's input point at the user's line (cimsim.errors.warn_user), however deep in cimsim they
are raised: a network without its fine-tune (cimsim.networks), a user checkpoint shadowing a shipped one
(workloads/train.py), an earlier checkpoint that could not be kept (cimsim/cli/saving.py). A fixed stacklevel named
a cimsim frame or pytest's wherever the depth differed (load_network called directly, find_psq_checkpoint two calls
below the user)."""

import shutil
import warnings
from types import SimpleNamespace

import pytest
import torch

import cimsim
from cimsim import networks
from cimsim.cli.saving import save_keeping_previous
from cimsim.mappers import qat
from cimsim.workloads import train

DIGITS = SimpleNamespace(name="digits", input_shape=(1, 8, 8))             # what load_network reads of a dataset
FASHION = SimpleNamespace(name="fashion-mnist", input_shape=(1, 28, 28))


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path))
    return train.user_dir()


def _record():
    """Every warning, recorded (the calls below stand right in the tests: a helper frame between them and the
    warning would hide a stacklevel one too deep)."""
    return warnings.catch_warnings(record=True)


def _only(caught, category=UserWarning):
    return [w for w in caught if issubclass(w.category, category)]


def test_a_network_without_its_sense_amp_fine_tune_is_warned_at_the_callers_line(home):
    snn = cimsim.arch.get("adcless-snn")
    with _record() as caught:
        warnings.simplefilter("always")
        networks.load_network("mlp", DIGITS, arch=snn)
        networks.load_model_and_data("mlp", "digits", arch=snn)
    assert [(str(w.message)[:55], w.filename) for w in _only(caught)] == \
        [("no network fine-tuned for adcless-snn (mlp-digits-sa-w4", __file__)] * 2


def test_a_user_checkpoint_shadowing_a_shipped_one_is_warned_at_the_callers_line(home):
    name = networks.psq_checkpoint_name("lenet5", "fashion-mnist", qat.PSQConfig.from_arch(cimsim.arch.get("hcim")))
    home.mkdir(parents=True)
    for suffix in (".pt", ".json"):
        shutil.copy(train.SHIPPED_DIR / name.replace(".pt", suffix), home / name.replace(".pt", suffix))
    shutil.copy(train.SHIPPED_DIR / "mlp-digits.pt", home / "mlp-digits.pt")
    shutil.copy(train.SHIPPED_DIR / "mlp-digits.json", home / "mlp-digits.json")
    with _record() as caught:
        warnings.simplefilter("always")
        networks.load_network("lenet5", FASHION, arch=cimsim.arch.get("hcim"))   # raised 3 calls down
        train.find_checkpoint("mlp", "digits")                                    # 1 call down
    shadows = _only(caught, train.CheckpointShadowWarning)
    assert [(name in str(w.message), w.filename) for w in shadows] == [(True, __file__), (False, __file__)]
    assert all("which shadows the shipped" in str(w.message) for w in shadows)


def _saver(model):
    return lambda p: train.save_checkpoint(p, model, {"model": "x"})


def test_an_earlier_checkpoint_not_kept_is_warned_at_the_callers_line(tmp_path):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"first")
    (tmp_path / "m.prev.pt").mkdir()                    # NAME.prev.pt cannot be replaced
    with _record() as caught:
        warnings.simplefilter("always")
        save_keeping_previous(ckpt, _saver(torch.nn.Linear(2, 2)))
    (w,) = _only(caught)
    assert str(w.message).startswith("the earlier checkpoint m.pt could not be kept as m.prev.pt")
    assert w.filename == __file__
    (tmp_path / "m.prev.pt").rmdir()
    (tmp_path / "m.prev.json").mkdir()                  # NAME.prev.json cannot be replaced
    with _record() as caught:
        warnings.simplefilter("always")
        save_keeping_previous(ckpt, _saver(torch.nn.Linear(2, 2)))
    (w,) = _only(caught)
    assert str(w.message).startswith("the earlier checkpoint's metadata m.json could not be kept as m.prev.json")
    assert w.filename == __file__
