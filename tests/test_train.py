import json

import pytest
import torch

from cimsim.errors import CheckpointError, ConfigError
from cimsim.workloads import datasets, train, zoo

FMNIST = datasets.SYSTEM_ROOT / "fashion-mnist"
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")

# The Foundation issue's accuracy floors for the shipped checkpoints.
FLOORS = {
    ("lenet5", "fashion-mnist"): 0.89,
    ("vgg_small", "fashion-mnist"): 0.91,
    ("resnet20", "fashion-mnist"): 0.91,
    ("mobilenetv2_small", "fashion-mnist"): 0.90,
    ("mlp", "digits"): 0.95,
    ("vit_mini", "fashion-mnist"): 0.89,   # ours: the shipped one reached 89.25 % (30 epochs on 2 CPU cores)
}


@pytest.fixture
def tiny():
    return datasets.make_synthetic(n_train=256, n_test=128, shape=(1, 28, 28), num_classes=4, seed=3)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_is_deterministic_for_a_seed(tiny):
    a = train.train("lenet5", tiny, epochs=2, seed=5, progress=False)
    b = train.train("lenet5", tiny, epochs=2, seed=5, progress=False)
    c = train.train("lenet5", tiny, epochs=2, seed=6, progress=False)
    for k, v in _state(a.model).items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert any(not torch.equal(v, c.model.state_dict()[k]) for k, v in _state(a.model).items())
    assert a.metadata["history"] == b.metadata["history"]


def test_training_learns_and_records_metadata(tiny):
    res = train.train("mlp", tiny, epochs=5, seed=0, progress=False)
    meta = res.metadata
    assert meta["test_accuracy"] > 0.9
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3, 4, 5]
    for key in ("dataset", "epochs", "seed", "test_accuracy", "torch_version", "recipe", "command"):
        assert key in meta
    assert meta["dataset"] == "synthetic" and meta["epochs"] == 5 and meta["torch_version"] == torch.__version__
    assert meta["command"].startswith("cimsim train --model mlp --dataset synthetic --epochs 5 --seed 0")


def test_training_continues_from_a_checkpoint(tmp_path, tiny):
    """init: the network starts from an earlier run's weights (a vanishing learning rate leaves them as they were),
    the continued run starts where that one ended (its first epoch's loss below the first run's), and the
    checkpoint records where it came from and the epochs in all; another model's checkpoint is refused."""
    first = train.train("mlp", tiny, epochs=2, seed=0, progress=False)
    path = train.save_checkpoint(tmp_path / "a.pt", first.model, first.metadata)
    still = train.train("mlp", tiny, epochs=1, seed=1, lr=1e-12, init=path, progress=False)
    for k, v in first.model.state_dict().items():
        torch.testing.assert_close(still.model.state_dict()[k], v, rtol=0, atol=1e-9)
    more = train.train("mlp", tiny, epochs=2, seed=0, init=path, progress=False)
    meta = more.metadata
    assert meta["history"][0]["loss"] < first.metadata["history"][0]["loss"]
    assert (meta["init_checkpoint"], meta["epochs_in_all"], meta["epochs"]) == ("a.pt", 4, 2)
    assert meta["init_command"] == first.metadata["command"] and meta["command"].endswith(" --init a.pt")
    again = train.save_checkpoint(tmp_path / "b.pt", more.model, meta)
    assert train.train("mlp", tiny, epochs=1, init=again, progress=False).metadata["epochs_in_all"] == 5
    with pytest.raises(ConfigError, match="same model and dataset"):
        train.train("lenet5", tiny, epochs=1, init=path, progress=False)


def test_augmentation_crops_and_flips_deterministically():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    r = train.Recipe(epochs=1, crop_pad=2, flip=True)
    a = train.augment(x, r, torch.Generator().manual_seed(0))
    b = train.augment(x, r, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    # every output row is a (possibly flipped) shifted window of the zero-padded input
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for n in range(2):
        windows = [padded[n, 0, i:i + 6, j:j + 6] for i in range(5) for j in range(5)]
        assert any(torch.equal(a[n, 0], w) or torch.equal(a[n, 0], w.flip(1)) for w in windows)


def test_recipe_validation():
    assert train.recipe_for("lenet5", "fashion-mnist").crop_pad == 2
    assert train.recipe_for("lenet5", "mnist").flip is False
    assert train.recipe_for("mlp", "iris").batch_size == 16
    assert train.recipe_for("lenet5", "fashion-mnist", epochs=3).epochs == 3
    with pytest.raises(ConfigError, match="epochs"):
        train.recipe_for("lenet5", "fashion-mnist", epochs=0)
    with pytest.raises(ConfigError, match="lr"):
        train.recipe_for("lenet5", "fashion-mnist", lr=-1.0)


def test_checkpoint_round_trip(tmp_path, tiny):
    res = train.train("lenet5", tiny, epochs=1, seed=0, progress=False)
    path = train.save_checkpoint(tmp_path / "sub" / "x.pt", res.model, res.metadata)
    model, meta = train.load_checkpoint(path)
    assert meta == json.loads(json.dumps(res.metadata))
    assert json.loads(path.with_suffix(".json").read_text()) == meta
    for k, v in res.model.state_dict().items():
        assert torch.equal(v, model.state_dict()[k])
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.json", "x.pt"]  # no temporary files left


def test_loading_a_checkpoint_leaves_the_global_random_numbers_as_they_were(tmp_path, tiny):
    res = train.train("lenet5", tiny, epochs=1, seed=0, progress=False)
    path = train.save_checkpoint(tmp_path / "x.pt", res.model, res.metadata)
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    train.load_checkpoint(path)
    assert torch.equal(torch.rand(4), expected)


def test_bad_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        train.load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as err:
        train.load_checkpoint(junk)
    assert str(err.value) == (f"{junk} is not a checkpoint (not a torch zip archive, which torch.save writes); "
                              "give a .pt file written by 'cimsim train'")
    assert "delete" not in str(err.value)   # the file may not be ours
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError) as err:
        train.load_checkpoint(foreign)
    assert str(err.value) == (f"{foreign} is a torch file but not a checkpoint of 'cimsim train' (it records no "
                              "cimsim format); give a .pt file written by 'cimsim train'")


def test_a_fine_tuned_network_where_a_trained_one_is_wanted_names_its_format_and_architecture(tmp_path, capsys):
    from _cli_helpers import assert_one_line_user_error, run_cli

    psq = train.SHIPPED_DIR / "lenet5-fashion-mnist-psq-ternary-w4a4c1d1r128t0.5.pt"
    with pytest.raises(CheckpointError) as err:
        train.load_checkpoint(psq)
    said = str(err.value)
    assert "records the format cimsim.psq-checkpoint" in said and "no cimsim format" not in said
    assert f"map it with 'cimsim run --arch hcim --checkpoint {psq}'" in said and "'cimsim finetune --init'" in said
    sa = train.SHIPPED_DIR / "snn_vgg-fashion-mnist-sa-w4a8c1r64t0.5.pt"
    with pytest.raises(CheckpointError, match=r"records the format cimsim\.sa-checkpoint: a spiking network fine-tuned "
                                              r"for adcless-snn's sense amps .* --arch adcless-snn --checkpoint"):
        train.load_checkpoint(sa)
    other = tmp_path / "other.pt"
    torch.save({"format": "cimsim.future-checkpoint"}, other)
    with pytest.raises(CheckpointError, match="records the format 'cimsim.future-checkpoint', not cimsim.checkpoint"):
        train.load_checkpoint(other)
    code, _, err = run_cli(capsys, "train", "--model", "lenet5", "--dataset", "synthetic", "--init", psq,
                           "--out", tmp_path / "t.pt")
    assert_one_line_user_error(code, err, "records the format cimsim.psq-checkpoint", "--arch hcim")
    assert not (tmp_path / "t.pt").exists()


@needs_fmnist
def test_run_adcless_snn_with_a_psq_checkpoint_names_its_architecture(capsys):
    from _cli_helpers import assert_one_line_user_error, run_cli

    psq = train.SHIPPED_DIR / "lenet5-fashion-mnist-psq-ternary-w4a4c1d1r128t0.5.pt"
    code, _, err = run_cli(capsys, "run", "--arch", "adcless-snn", "--checkpoint", psq, "--limit", "2")
    assert_one_line_user_error(code, err, "records the format cimsim.psq-checkpoint",
                               f"'cimsim run --arch hcim --checkpoint {psq}'")


def test_find_checkpoint_prefers_the_user_directory(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path))
    assert train.find_checkpoint("lenet5", "fashion-mnist").parent == train.SHIPPED_DIR
    res = train.train("lenet5", tiny, epochs=1, progress=False)
    mine = train.save_checkpoint(tmp_path / "checkpoints" / "lenet5-fashion-mnist.pt", res.model, res.metadata)
    with pytest.warns(train.CheckpointShadowWarning, match="shadows the shipped lenet5-fashion-mnist.pt"):
        assert train.find_checkpoint("LeNet-5", "fmnist") == mine
    with pytest.raises(CheckpointError, match="cimsim train --model resnet20 --dataset cifar10"):
        train.find_checkpoint("resnet20", "cifar10")


@pytest.mark.parametrize("model,dataset", sorted(FLOORS))
def test_shipped_checkpoint_metadata(model, dataset):
    path = train.SHIPPED_DIR / train.checkpoint_name(model, dataset)
    net, meta = train.load_checkpoint(path)
    assert (meta["model"], meta["dataset"]) == (model, dataset)
    assert meta["test_accuracy"] >= FLOORS[(model, dataset)]
    assert meta["command"].startswith(f"cimsim train --model {model} --dataset {dataset}")
    assert meta["test_examples"] == (10000 if dataset == "fashion-mnist" else 450)
    assert len(meta["history"]) == meta["epochs"]
    assert isinstance(net, type(zoo.build_for(model, tuple(meta["input_shape"]), meta["num_classes"])))


@needs_fmnist
@pytest.mark.parametrize("model", [
    "lenet5",
    # 13-70 s each on 2 CPU cores: full-size checks, run with -m slow
    pytest.param("vgg_small", marks=pytest.mark.slow),
    pytest.param("resnet20", marks=pytest.mark.slow),
    pytest.param("mobilenetv2_small", marks=pytest.mark.slow),
    "vit_mini",     # 2-4 s: a Vision Transformer's shipped weights in the CI suite
])
def test_shipped_checkpoint_accuracy_on_the_real_test_set(model):
    net, meta = train.load_checkpoint(train.SHIPPED_DIR / train.checkpoint_name(model, "fashion-mnist"))
    data = datasets.load("fashion-mnist")
    with torch.inference_mode():
        acc = train.accuracy(net, data.x_test, data.y_test)
    # Evaluated here on the CPU: equal to the recorded accuracy up to float rounding on a few borderline
    # images when the checkpoint was trained on a GPU (0.1 point = 10 images).
    assert acc == pytest.approx(meta["test_accuracy"], abs=0.001)
    assert acc >= FLOORS[(model, "fashion-mnist")]


def test_train_reproduces_the_shipped_mlp_on_digits():
    _, shipped = train.load_checkpoint(train.SHIPPED_DIR / "mlp-digits.pt")
    res = train.train("mlp", "digits", seed=shipped["seed"], epochs=shipped["epochs"], progress=False)
    assert abs(res.metadata["test_accuracy"] - shipped["test_accuracy"]) <= 0.01


@needs_fmnist
def test_short_lenet5_training_on_fashion_mnist_is_bit_identical():
    """The default run's determinism check on the real data (the full retrain below is marked slow): one epoch
    on the first 384 training images, twice, gives the same weights bit for bit and the same history."""
    runs = [train.train("lenet5", "fashion-mnist", epochs=1, seed=0, limit=384, progress=False) for _ in range(2)]
    a, b = (r.model.state_dict() for r in runs)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert runs[0].metadata["history"] == runs[1].metadata["history"]
    assert runs[0].metadata["train_examples"] == 384 and runs[0].metadata["test_examples"] == 10000
    data = datasets.load("fashion-mnist")   # the recorded accuracy is the returned model's, exactly
    assert train.accuracy(runs[0].model, data.x_test, data.y_test) == runs[0].metadata["test_accuracy"]


@needs_fmnist
@pytest.mark.slow   # 20 epochs on 60 000 images: about 2 min on 2 cores; the check above runs by default
def test_train_reproduces_the_shipped_lenet5_within_one_point():
    """The Foundation issue's check: `cimsim train` gives the shipped checkpoint's accuracy within 1 point."""
    _, shipped = train.load_checkpoint(train.SHIPPED_DIR / "lenet5-fashion-mnist.pt")
    res = train.train("lenet5", "fashion-mnist", seed=shipped["seed"], epochs=shipped["epochs"], progress=False)
    assert abs(res.metadata["test_accuracy"] - shipped["test_accuracy"]) <= 0.01
