"""Checkpoints never silently change the answer: reports name the network, the data and the checkpoint with its
recorded accuracy; a user checkpoint that shadows a shipped one is announced in one line; ``train`` and
``finetune`` say where they saved and what now shadows what."""

import json
import shutil

import h5py
import pytest
import torch
from torch import nn

import cimsim
from _cli_helpers import run_cli
from cimsim import networks, provenance
from cimsim.mappers import qat
from cimsim.workloads import datasets, train

FMNIST = datasets.SYSTEM_ROOT / "fashion-mnist"
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed")
SHIPPED_MLP = train.SHIPPED_DIR / "mlp-digits.pt"


@pytest.fixture
def home(monkeypatch, tmp_path):
    """An empty user checkpoint folder ($CIMSIM_HOME/checkpoints)."""
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path))
    return tmp_path / "checkpoints"


@needs_fmnist
def test_the_readme_python_snippet_names_network_data_and_checkpoint(home, tmp_path):
    data = datasets.load("fashion-mnist")
    model, meta = train.load_checkpoint(train.find_checkpoint("lenet5", "fashion-mnist"))
    mapped = cimsim.map(model, cimsim.arch.get("isaac", adc_bits=6), calibration=data.loader("train", limit=64),
                        progress=False)
    report = mapped.evaluate(data.loader("test", batch_size=32, limit=32), progress=False)
    lines = report.table().splitlines()
    shipped = train.SHIPPED_DIR / "lenet5-fashion-mnist.pt"
    assert lines[0] == "cimsim report: lenet5 on fashion-mnist, architecture isaac"
    assert lines[3] == (f"  checkpoint            {shipped} (shipped with cimsim, recorded test accuracy "
                        f"{100 * meta['test_accuracy']:.2f} %)")
    assert meta["test_accuracy"] == pytest.approx(0.9065)
    cfg = json.loads(report.to_json())["config"]
    assert (cfg["model"], cfg["dataset"], cfg["checkpoint"]) == ("lenet5", "fashion-mnist", str(shipped))
    assert cfg["checkpoint_test_accuracy"] == meta["test_accuracy"] and cfg["checkpoint_origin"] == "shipped"
    with h5py.File(report.to_hdf5(tmp_path / "r.h5")) as f:
        assert f["config"].attrs["checkpoint"] == str(shipped)
        assert f["config"].attrs["checkpoint_test_accuracy"] == meta["test_accuracy"]


def test_a_network_built_in_python_is_named_by_its_class_or_by_what_it_is_given():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    x, y = torch.rand(6, 1, 4, 4), torch.zeros(6, dtype=torch.long)
    mapped = cimsim.map(model, cimsim.arch.get("isaac", cell="ideal"), calibration=x, progress=False)
    rep = mapped.evaluate([(x, y)], progress=False)
    assert rep.table().splitlines()[0] == "cimsim report: Sequential on unnamed data, architecture isaac"
    assert "checkpoint            none (a network given in Python" in rep.table()
    assert rep.config["checkpoint"] is None
    named = mapped.evaluate([(x, y)], progress=False, model_name="probe", dataset="my sensors")
    assert named.table().splitlines()[0] == "cimsim report: probe on my sensors, architecture isaac"
    given = cimsim.map(model, cimsim.arch.get("isaac", cell="ideal"), calibration=x, progress=False,
                       model_name="probe-2").evaluate([(x, y)], progress=False)
    assert given.config["model"] == "probe-2"


def test_loaders_and_checkpoint_models_carry_their_names():
    data = datasets.load("digits")
    assert provenance.dataset_of(data.loader("test")) == "digits"
    model, meta = train.load_checkpoint(SHIPPED_MLP)
    info = provenance.checkpoint_of(model)
    assert info == provenance.CheckpointInfo(str(SHIPPED_MLP), "mlp", "digits", meta["test_accuracy"], "shipped", "")
    rep = cimsim.mappers.evaluate(model, cimsim.arch.get("digital"), data.loader("test"), progress=False)
    assert (rep.config["model"], rep.config["dataset"], rep.config["checkpoint"]) == ("mlp", "digits", str(SHIPPED_MLP))


def _trial_mlp(home):
    """A 1-epoch trial saved where 'cimsim train' saves: it shadows the shipped mlp-digits."""
    res = train.train("mlp", "digits", epochs=1, seed=0, progress=False)
    return train.save_checkpoint(home / "mlp-digits.pt", res.model, res.metadata), res.metadata["test_accuracy"]


def test_a_user_checkpoint_shadowing_a_shipped_one_is_announced(home, capsys):
    mine, acc = _trial_mlp(home)
    with pytest.warns(train.CheckpointShadowWarning) as caught:
        assert train.find_checkpoint("mlp", "digits") == mine
    msg = str(caught[0].message)
    assert msg == (f"using your checkpoint {mine} (test accuracy {100 * acc:.2f} %), which shadows the shipped "
                   f"mlp-digits.pt (test accuracy 97.78 %); to use the shipped one pass --checkpoint {SHIPPED_MLP} "
                   "or delete yours")
    code, out, err = run_cli(capsys, "run", "--arch", "digital", "--model", "mlp", "--dataset", "digits")
    assert code == 0, err
    assert [line for line in err.splitlines() if "shadows" in line] == [f"cimsim: warning: {msg}"]
    assert (f"  checkpoint            {mine} (yours, from the user checkpoint folder, recorded test accuracy "
            f"{100 * acc:.2f} %; it shadows the shipped mlp-digits.pt)") in out.splitlines()
    code, out, err = run_cli(capsys, "run", "--arch", "digital", "--model", "mlp", "--dataset", "digits", "--json")
    cfg = json.loads(out)["config"]
    assert (cfg["checkpoint"], cfg["checkpoint_origin"], cfg["checkpoint_shadows"]) == (str(mine), "user",
                                                                                         str(SHIPPED_MLP))
    # the shipped one, asked for by path: no announcement
    code, out, err = run_cli(capsys, "run", "--arch", "digital", "--model", "mlp", "--dataset", "digits",
                             "--checkpoint", SHIPPED_MLP)
    assert code == 0 and "shadows" not in err and "shipped with cimsim, recorded test accuracy 97.78 %" in out


def test_a_user_psq_checkpoint_shadowing_the_shipped_one_is_announced(home):
    cfg = qat.PSQConfig.from_arch(cimsim.arch.get("hcim"))
    name = networks.psq_checkpoint_name("lenet5", "fashion-mnist", cfg)
    home.mkdir(parents=True)
    for suffix in (".pt", ".json"):
        shutil.copy(train.SHIPPED_DIR / name.replace(".pt", suffix), home / name.replace(".pt", suffix))
    with pytest.warns(train.CheckpointShadowWarning, match=f"which shadows the shipped {name}"):
        assert networks.find_psq_checkpoint("lenet5", "fashion-mnist", cfg) == home / name


def test_train_says_where_it_saved_and_what_it_now_shadows(home, capsys, tmp_path):
    code, out, err = run_cli(capsys, "train", "--model", "mlp", "--dataset", "digits", "--epochs", "1")
    assert code == 0, err
    saved = home / "mlp-digits.pt"
    acc = json.loads(saved.with_suffix(".json").read_text())["test_accuracy"]
    assert out.splitlines()[-1] == (
        f"checkpoint saved to {saved}; it now shadows the shipped mlp-digits.pt (test accuracy 97.78 %): runs that "
        f"find the checkpoint by model and dataset use yours (test accuracy {100 * acc:.2f} %); delete {saved} and "
        "mlp-digits.json to use the shipped one again")
    code, out, err = run_cli(capsys, "train", "--model", "mlp", "--dataset", "iris", "--epochs", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["checkpoint_shadows"] is None
    assert err.splitlines()[-1] == (f"cimsim train: checkpoint saved to {home / 'mlp-iris.pt'}; runs that find the "
                                    "checkpoint by model and dataset now use it")
    code, out, err = run_cli(capsys, "train", "--model", "mlp", "--dataset", "iris", "--epochs", "1",
                             "--out", tmp_path / "elsewhere.pt")
    assert out.splitlines()[-1].endswith(f"it is outside the checkpoint search path ({home}, then the shipped "
                                         f"checkpoints): pass --checkpoint {tmp_path / 'elsewhere.pt'} to use it")


@needs_fmnist
def test_finetune_says_how_many_test_images_it_measured_before_and_what_it_shadows(home, capsys):
    code, out, err = run_cli(capsys, "finetune", "--arch", "hcim", "--model", "lenet5", "--epochs", "1",
                             "--limit", "64", "--test-limit", "50")
    assert code == 0, err
    assert "% before (first 50), " in out
    cfg = qat.PSQConfig.from_arch(cimsim.arch.get("hcim"))
    name = networks.psq_checkpoint_name("lenet5", "fashion-mnist", cfg)
    assert out.splitlines()[-1].startswith(f"checkpoint saved to {home / name}; it now shadows the shipped {name} "
                                           "(test accuracy 89.79 %)")
