"""Hardware-aware training for the sense-amp readout (cimsim.mappers.snn_qat): the trained layers compute what the
ADC-less crossbar computes, bit for bit on ideal cells, and the progressive schedule does what it says."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import cimsim
from cimsim.mappers import snn_qat
from cimsim.spec import CrossbarSpec

from test_adcless_snn import T, data, tiny_snn, traces


def prepared(arch):
    x, _ = data()
    net = snn_qat.prepare(tiny_snn(), snn_qat.SAConfig.from_arch(arch), [x], seed=0)
    return net.double().eval()


def test_each_trained_layer_equals_the_crossbar_read_by_sense_amps():
    arch = cimsim.arch.get("adcless-snn", cell="ideal")
    net = prepared(arch)
    layers = snn_qat.sa_layers(net)
    assert [bool(m.spike_input) for m in layers.values()] == [False, True, True]
    rng = np.random.default_rng(5)
    for name, mod in layers.items():
        K = mod.weight[0].numel()
        spikes = bool(mod.spike_input)
        x = (rng.random((40, K)) < 0.3).astype(np.int64) if spikes else rng.integers(0, 256, (40, K))
        w_int, _ = snn_qat.qat.quantize_weight_ste(mod.weight.detach(), 4)
        with torch.no_grad():
            ours = mod.sa_product(torch.from_numpy(x).double(), w_int, mod.sa_scale).numpy()
        spec = CrossbarSpec(**{**arch.crossbar_spec().__dict__, "input_bits": 1 if spikes else 8,
                               "dac_bits": 1})
        xb = cimsim.Crossbar(w_int.numpy().astype(np.int64), spec, column_scales=snn_qat.column_scales(mod))
        np.testing.assert_allclose(ours, xb(x), rtol=1e-12, atol=1e-9, err_msg=name)
        assert np.any(ours != (x @ w_int.numpy().T))               # the readout is lossy: the test can tell


def test_a_trained_network_maps_onto_the_chip_with_the_same_spikes_every_step():
    arch = cimsim.arch.get("adcless-snn", cell="ideal")
    net = prepared(arch)
    x, _ = data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # learned scales: no "calibrated initial scales" warning
        m = cimsim.map(net, arch, calibration=x, seed=1, progress=False)
    ours = traces(net, x.double())
    chip = traces(m, x.double())
    assert len(ours) == len(chip) == 2 * T
    for (n, s1, _), (_, s2, _) in zip(ours, chip):
        assert torch.equal(s1, s2), n
    assert sum(float(s.sum()) for _, s, _ in chip) > 0


def test_a_layer_trained_for_other_arrays_is_refused():
    net = prepared(cimsim.arch.get("adcless-snn"))
    with pytest.raises(cimsim.ConfigError, match="fine-tune it for this architecture"):
        cimsim.map(net, cimsim.arch.get("adcless-snn", rows=32), calibration=data()[0], progress=False)


def test_fraction_zero_is_the_exact_product_and_the_schedule_ramps():
    net = prepared(cimsim.arch.get("adcless-snn", cell="ideal"))
    mod = snn_qat.sa_layers(net)["step.5"]
    x = torch.from_numpy((np.random.default_rng(1).random((30, 96)) < 0.3).astype(np.float64))
    w_int, _ = snn_qat.qat.quantize_weight_ste(mod.weight.detach(), 4)
    mod.fraction = 0.0
    with torch.no_grad():
        np.testing.assert_array_equal(mod.sa_product(x, w_int, mod.sa_scale).numpy(), (x @ w_int.T).numpy())
    r = snn_qat.SnnFinetuneRecipe(schedule="fraction", start_fraction=0.2, ramp=0.5)
    assert [r.fraction(s, 100) for s in (0, 25, 50, 90)] == pytest.approx([0.2, 0.6, 1.0, 1.0])
    assert snn_qat.SnnFinetuneRecipe(schedule="direct").fraction(0, 100) == 1.0
    assert snn_qat.SnnFinetuneRecipe(schedule="progressive").fraction(0, 100) == 1.0   # layer stages instead
    with pytest.raises(cimsim.ConfigError, match="schedule"):
        snn_qat.SnnFinetuneRecipe(schedule="sometimes")


def test_gradients_reach_weights_scales_and_earlier_layers():
    net = prepared(cimsim.arch.get("adcless-snn")).train()
    x, y = data()
    loss = torch.nn.functional.cross_entropy(net(x.double()), y)
    loss.backward()
    for name, mod in snn_qat.sa_layers(net).items():
        assert float(mod.weight.grad.abs().sum()) > 0, name
        assert float(mod.sa_scale.grad.abs().sum()) > 0, name


def test_finetune_cli_saves_a_checkpoint_that_run_finds_and_rebuilds(capsys, tmp_path, monkeypatch):
    import json

    from _cli_helpers import assert_one_line_user_error, run_cli
    from cimsim import networks
    from cimsim.errors import DatasetError
    from cimsim.workloads import datasets, train, zoo

    try:
        data = datasets.load("fashion-mnist")
    except DatasetError:
        pytest.skip("Fashion-MNIST is not installed")
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    meta = {"model": "snn_vgg", "dataset": "fashion-mnist", "input_shape": [1, 28, 28], "num_classes": 10,
            "test_accuracy": 0.1}
    base = train.save_checkpoint(tmp_path / "home" / "checkpoints" / "snn_vgg-fashion-mnist.pt", zoo.build("snn_vgg"),
                                 meta)
    code, out, err = run_cli(capsys, "finetune", "--arch", "adcless-snn", "--model", "snn_vgg", "--dataset",
                             "fashion-mnist", "--epochs", "1", "--limit", "16", "--test-limit", "8", "--batch-size",
                             "8", "--schedule", "direct", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["recipe"]["schedule"] == "direct" and info["train_examples"] == 16 and info["base_checkpoint"] == base.name
    with pytest.warns(train.CheckpointShadowWarning, match="shadows the shipped"):   # the shipped fine-tune
        path = networks.find_sa_checkpoint("snn_vgg", "fashion-mnist",
                                           snn_qat.SAConfig.from_arch(cimsim.arch.get("adcless-snn")))
    assert path is not None and str(path) == info["checkpoint"]
    net, m = networks.load_sa_checkpoint(path)
    with torch.no_grad():
        acc = snn_qat.score(net, data.x_test[:8], data.y_test[:8])
    assert acc == info["test_accuracy"]                        # the rebuilt network is the fine-tuned one
    code, out, err = run_cli(capsys, "run", "--arch", "adcless-snn", "--model", "snn_vgg", "--dataset",
                             "fashion-mnist", "--limit", "8", "--calibration", "8", "--time-steps", "10", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["config"]["checkpoint"] == str(path) and rep["accuracy"] == acc   # ideal-read chip = emulation
    code, out, err = run_cli(capsys, "finetune", "--arch", "hcim", "--model", "lenet5", "--dataset", "fashion-mnist",
                             "--schedule", "direct")
    assert_one_line_user_error(code, err, "--schedule and --stage-share apply to spiking networks")
