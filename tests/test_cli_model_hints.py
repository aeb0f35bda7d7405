"""--model held against a --checkpoint, and the fix a missing checkpoint's error names.

A --checkpoint of another model than the --model given is refused (one line, exit 2); --model left out takes the
checkpoint's own. Where no checkpoint is found, the command the error suggests must itself work: for a model that
does not take the dataset's examples it names one that does (cimsim.workloads.train.models_for).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from _cli_helpers import assert_one_line_user_error, run_cli
from cimsim.cli import build_parser
from cimsim.cli.common import model_to_check, resolve_model
from cimsim.errors import CheckpointError, ConfigError
from cimsim.networks import load_model_and_data
from cimsim.workloads import train, zoo

LENET = train.SHIPPED_DIR / "lenet5-fashion-mnist.pt"


@pytest.fixture
def home(monkeypatch, tmp_path):
    """No user checkpoints: only the shipped ones are found."""
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path / "home"))


@pytest.fixture
def fake_fashion(isolated_data, tmp_path):
    """A folder of random 28x28 IDX files (accepted as Fashion-MNIST: mean pixel about 0.5)."""
    d = tmp_path / "fm"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name, arr in (("train-images-idx3-ubyte", rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)),
                      ("t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)),
                      ("train-labels-idx1-ubyte", np.arange(20, dtype=np.uint8) % 10),
                      ("t10k-labels-idx1-ubyte", np.arange(10, dtype=np.uint8))):
        (d / name).write_bytes(bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", n) for n in arr.shape)
                               + arr.tobytes())
    return d


def _args(*argv):
    args = build_parser().parse_args(list(argv))
    resolve_model(args)
    return args


def test_model_left_out_is_the_default_or_the_checkpoints_own():
    a = _args("run")
    assert (a.model, a.model_given, model_to_check(a)) == ("lenet5", False, "lenet5")
    a = _args("run", "--checkpoint", "x.pt")
    assert (a.model, a.model_given, model_to_check(a)) == ("lenet5", False, None)
    a = _args("run", "--model", "lenet", "--checkpoint", "x.pt")
    assert (a.model, a.model_given, model_to_check(a)) == ("lenet", True, "lenet")
    a = _args("train")
    assert (a.model, a.model_given) == ("lenet5", False)


def test_a_checkpoint_of_another_model_is_refused(fake_fashion):
    with pytest.raises(ConfigError) as exc:
        load_model_and_data("resnet20", "fashion-mnist", fake_fashion, LENET)
    assert str(exc.value) == (f"checkpoint {LENET} holds lenet5, not resnet20: pass --model lenet5 (or leave --model "
                              "out) or another --checkpoint")
    model, meta, data, ckpt = load_model_and_data(None, "fashion-mnist", fake_fashion, LENET)
    assert meta["model"] == "lenet5" and ckpt == LENET and len(data.y_test) == 10
    assert load_model_and_data("lenet", "fashion-mnist", fake_fashion, LENET)[1]["model"] == "lenet5"   # an alias
    with pytest.raises(ConfigError, match="name a model or a checkpoint"):
        load_model_and_data(None, "fashion-mnist", fake_fashion)


@pytest.mark.parametrize("command", ["run", "sweep", "finetune"])
def test_cli_refuses_a_model_mismatch(capsys, fake_fashion, tmp_path, command):
    extra = ("--out", tmp_path / "out.h5") if command == "sweep" else ()
    code, out, err = run_cli(capsys, command, "--model", "resnet20", "--checkpoint", LENET, "--data-dir", fake_fashion,
                             "--limit", "5", *extra)
    assert_one_line_user_error(code, err, f"checkpoint {LENET} holds lenet5, not resnet20: pass --model lenet5")
    assert out == ""


# ------------------------------------------------------------------------------------ the fix a missing one names

@pytest.mark.parametrize("model, dataset, fix", [
    ("lenet5", "mnist", "make one with 'cimsim train --model lenet5 --dataset mnist'"),
    ("lenet5", "iris", "lenet5 does not take the tabular data, 4 features of iris (mlp does): make a checkpoint with "
                       "'cimsim train --model mlp --dataset iris', then pass --model mlp"),
    ("lenet5", "digits", "lenet5 does not take the 8x8 images of digits (mlp does): pass --model mlp"),
    ("lenet5", "nmnist-fashion", "lenet5 does not take the event frames of nmnist-fashion (snn_dvsnet does): make a "
                                 "checkpoint with 'cimsim train --model snn_dvsnet --dataset nmnist-fashion', then "
                                 "pass --model snn_dvsnet"),
    ("snn_vgg", "nmnist-fashion", "snn_vgg does not take the event frames of nmnist-fashion (snn_dvsnet does): make"),
    ("snn_dvsnet", "flow-synth", "snn_dvsnet does not take the event frames with flow targets of flow-synth "
                                 "(snn_flownet does): pass --model snn_flownet"),
    ("snn_dvsnet", "cifar10", "snn_dvsnet does not take the images of cifar10 (lenet5, mlp, lenet5_caffe, vgg_small, "
                              "resnet20, mobilenetv2_small, vit_mini, snn_vgg, snn_resnet20 do): make a checkpoint "
                              "with 'cimsim train --model lenet5 --dataset cifar10', then pass --model lenet5"),
])
def test_the_fix_a_missing_checkpoint_names(home, model, dataset, fix):
    with pytest.raises(CheckpointError) as exc:
        train.find_checkpoint(model, dataset)
    msg = str(exc.value)
    assert msg.startswith(f"no trained checkpoint for {model} on {dataset} (shipped: ")
    assert msg.split("); ", 1)[1].startswith(fix)


@pytest.mark.parametrize("dataset, shape", [("iris", (4,)), ("digits", (1, 8, 8)), ("fashion-mnist", (1, 28, 28)),
                                            ("cifar10", (3, 32, 32))])
def test_models_for_agrees_with_the_zoo(dataset, shape):
    """The models the hint names are those zoo.build_for builds for the set's examples."""
    built = []
    for m in zoo.model_names():
        try:
            zoo.build_for(m, shape, 10)
            built.append(m)
        except ConfigError:
            pass
    assert sorted(train.models_for(dataset)) == sorted(built)
    assert len(built) == (1 if len(shape) < 3 or shape[1] == 8 else 9)


def test_the_suggested_command_works(home, capsys, tmp_path):
    code, out, err = run_cli(capsys, "run", "--dataset", "iris", "--limit", "5")
    assert_one_line_user_error(code, err, "make a checkpoint with 'cimsim train --model mlp --dataset iris'")
    code, out, err = run_cli(capsys, "train", "--model", "mlp", "--dataset", "iris", "--epochs", "1",
                             "--out", f"{tmp_path / 'ck'}/")
    assert code == 0, err
    assert (tmp_path / "ck" / "mlp-iris.pt").is_file()


@pytest.mark.parametrize("model, dataset, needle", [
    ("snn_dvsnet", "flow-synth", "snn_dvsnet classifies, and flow-synth holds flow targets: use --model snn_flownet"),
    ("snn_flownet", "gesture-synth", "snn_flownet regresses optical flow, and gesture-synth holds class labels: use "
                                     "--model snn_dvsnet"),
])
def test_train_refuses_an_event_network_for_the_other_task(capsys, tmp_path, model, dataset, needle):
    code, out, err = run_cli(capsys, "train", "--model", model, "--dataset", dataset, "--epochs", "1", "--limit", "4",
                             "--out", f"{tmp_path / 'ck'}/")
    assert_one_line_user_error(code, err, needle)
