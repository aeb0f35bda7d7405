"""The progressive schedule of the partial-sum fine-tune (cimsim.mappers.psq_finetune, 'cimsim finetune --schedule
progressive'): a layer with exact partial sums is the quantized network's integer product, the readout enters layer by
layer from the input at the first learning rate, then the direct schedule's epochs run as before."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _cli_helpers import assert_one_line_user_error, run_cli
from cimsim.errors import ConfigError
from cimsim.mappers import psq_finetune as ft
from cimsim.mappers import qat
from cimsim.mappers.qat_ops import quantize_activation, quantize_weight_ste

FMNIST = Path("/usr/share/datasets/fashion-mnist")
CFG = qat.PSQConfig(rows=16)   # 4-bit weights and inputs, 1-bit cells: 3 slices, 4 cycles; 16-row blocks


class Late(nn.Module):
    """Registered classifier first, called last: the stages must follow the order of the calls."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(12, 3)
        self.fc = nn.Linear(4 * 4 * 4, 12)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.head(F.relu(self.fc(x.flatten(1))))


def tiny():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(96, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean(dim=(1, 2)) * 3).long().clamp(0, 2)
    return Late().eval(), SimpleNamespace(x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:])


def prepared():
    model, data = tiny()
    return qat.prepare(model, CFG, [data.x_train]), data


# ------------------------------------------------------------------------------------------------ exact layers
def test_exact_partial_sums_are_the_integer_product_bit_for_bit():
    net, data = prepared()
    g = torch.Generator().manual_seed(5)
    for name, x in (("fc", torch.rand(7, 64, generator=g) * 2), ("conv", torch.rand(3, 1, 8, 8, generator=g))):
        m = getattr(net, name)
        step = float(m.input_scale)
        x_int = torch.clamp(torch.round(x / step), 0, 15)             # 4-bit unsigned inputs
        w_int, w_scale = quantize_weight_ste(m.weight.detach(), 4)    # per output channel, max scaling
        w_int = w_int.reshape(m.weight.shape)
        if name == "fc":
            want = (x_int @ w_int.T) * (m.input_scale.float() * w_scale)[None, :] + m.bias.detach()
        else:
            want = F.conv2d(x_int, w_int, padding=1) * (m.input_scale.float() * w_scale)[None, :, None, None] \
                + m.bias.detach()[None, :, None, None]
        with torch.no_grad():
            read = m(x)
            m.psq_exact = True
            got = m(x)
            m.psq_exact = False
        assert torch.equal(got, want), name            # integers < 2**24: every float32 sum is exact
        assert not torch.equal(read, want), name       # the ternary readout is not (the flag is what changed it)


def test_exact_partial_sums_pass_the_integer_products_gradients():
    net, _ = prepared()
    m = net.fc
    x = torch.rand(5, 64, generator=torch.Generator().manual_seed(2)) * 2
    m.psq_exact = True
    x1 = x.clone().requires_grad_(True)
    m(x1).square().sum().backward()
    gw, gx = m.weight.grad.clone(), x1.grad.clone()
    m.weight.grad = None
    # the same straight-through estimators (rounding passes the gradient) on the plain product
    x2 = x.clone().requires_grad_(True)
    x_int = quantize_activation(x2, float(m.input_scale), 4, False)
    w_int, w_scale = quantize_weight_ste(m.weight, 4)
    y = (x_int @ w_int.T) * (float(m.input_scale) * w_scale)[None, :] + m.bias
    y.square().sum().backward()
    assert torch.allclose(gw, m.weight.grad, rtol=1e-5, atol=1e-6)
    assert torch.allclose(gx, x2.grad, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------ the schedule
def test_progressive_stages():
    assert ft.progressive_stages(100, 5, 0.5) == [(1, 13), (2, 13), (3, 13), (4, 13), (5, 100)]   # ceil(50 / 4)
    assert ft.progressive_stages(100, 5, 1.0) == [(1, 25), (2, 25), (3, 25), (4, 25), (5, 100)]
    assert ft.progressive_stages(100, 5, 0.0) == [(5, 100)]
    assert ft.progressive_stages(100, 1, 0.5) == [(1, 100)]      # one layer: nothing to stage


def test_progressive_fine_tune_reads_the_layers_in_stages(monkeypatch):
    model, data = tiny()
    seen, lrs = [], []
    hooks = []

    def record(mod, args):
        if mod.training:
            seen.append((mod.psq_exact, mod))

    real_prepare = ft.prepare

    def prepare_and_watch(*a, **k):
        net = real_prepare(*a, **k)
        hooks.extend(m.register_forward_pre_hook(record) for m in (net.conv, net.fc, net.head))
        return net

    real_step = torch.optim.Adam.step

    def step(self, *a, **k):
        lrs.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    monkeypatch.setattr(ft, "prepare", prepare_and_watch)
    monkeypatch.setattr(torch.optim.Adam, "step", step)
    recipe = ft.FinetuneRecipe(epochs=2, batch_size=16, lr=1e-3, schedule="progressive", stage_share=0.5)
    net, meta = ft.finetune(model, CFG, data, recipe, progress=False)
    # 4 steps an epoch, 8 in the final phase; stages of ceil(0.5 * 8 / 2) = 2 steps: conv read, then conv and fc
    flags = [[e for e, _ in seen[i:i + 3]] for i in range(0, len(seen), 3)]
    order = [type(m).__name__ for _, m in seen[:3]]
    assert order == ["PSQConv2d", "PSQLinear", "PSQLinear"] and seen[2][1] is not seen[1][1]
    assert [id(m) for _, m in seen[:3]] == [id(m) for _, m in seen[3:6]]
    assert flags == [[False, True, True]] * 2 + [[False, False, True]] * 2 + [[False, False, False]] * 8
    assert [(s["stage"], s["layers_read"], s["steps"]) for s in meta["stages"]] == [(1, 1, 2), (2, 2, 2)]
    assert all(math.isfinite(s["loss"]) for s in meta["stages"])
    # the stages at the first learning rate; the final phase's cosine as in the direct schedule
    want = [1e-3] * 4 + [1e-3 * ft.learning_rate_factor(s, 8, 0, 0.2) for s in range(8)]
    assert lrs == pytest.approx(want, rel=1e-12)
    assert len(meta["history"]) == 2 and meta["recipe"]["schedule"] == "progressive"
    assert not any(m.psq_exact for m in net.modules() if qat.is_psq(m))   # the network returned reads every layer
    for h in hooks:
        h.remove()


def test_exact_accuracy_before_training_is_reported():
    model, data = tiny()
    with torch.no_grad():          # labels of all classes that the float network gets right: the readout's errors show
        model.head.bias -= model(data.x_train).mean(0)
        data.y_train, data.y_test = model(data.x_train).argmax(1), model(data.x_test).argmax(1)
    _, meta = ft.finetune(model, CFG, data, ft.FinetuneRecipe(epochs=1, batch_size=32), progress=False)
    net = qat.prepare(model, CFG, [data.x_train])     # the same calibration (all 64 training examples)
    before = ft.evaluate_accuracy(net, data.x_test, data.y_test)
    exact = ft.exact_accuracy(net, data.x_test, data.y_test)
    assert meta["test_accuracy_exact_first_1000"] == exact and meta["test_accuracy_before_first_1000"] == before
    assert exact > before + 0.25       # 4-bit weights and inputs cost little here, the untrained readout much more
    assert not any(m.psq_exact for m in net.modules() if qat.is_psq(m))
    assert "stages" not in meta


@pytest.mark.parametrize("kw, needle", [({"schedule": "fraction"}, "choose one of direct, progressive"),
                                        ({"stage_share": -1}, "stage_share"),
                                        ({"stage_share": float("nan")}, "stage_share"),
                                        ({"stage_share": True}, "stage_share"),
                                        ({"schedule": "progressive", "freeze": 1}, "freeze 0")])
def test_bad_schedules_are_refused(kw, needle):
    with pytest.raises(ConfigError, match=needle):
        ft.FinetuneRecipe(**kw)


# ------------------------------------------------------------------------------------------------ CLI
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed")


@needs_fmnist
def test_cli_progressive_schedule(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path))
    out_path = tmp_path / "ft.pt"
    args = ("finetune", "--model", "lenet5", "--dataset", "fashion-mnist", "--epochs", "1", "--limit", "64",
            "--batch-size", "16", "--test-limit", "20", "--schedule", "progressive", "--stage-share", "1",
            "--out", out_path)
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    meta = json.loads(out)
    # LeNet-5's five mapped layers: four stages of ceil(1 * 4 / 4) = 1 step, then the epoch's 4 steps
    assert [(s["layers_read"], s["steps"]) for s in meta["stages"]] == [(1, 1), (2, 1), (3, 1), (4, 1)]
    assert meta["recipe"]["schedule"] == "progressive" and meta["recipe"]["stage_share"] == 1.0
    assert "--schedule progressive --stage-share 1.0" in meta["command"]
    assert 0 < meta["test_accuracy_exact_first_1000"] <= 1
    code, out, err = run_cli(capsys, *args)          # the table names the stages
    assert code == 0, err
    assert "stage   1" in out and "layer 1 read, the rest exact" in out and "layers 1-4 read" in out
    assert "with exact partial sums before" in out


@needs_fmnist
def test_cli_fraction_schedule_is_the_spiking_fine_tunes(capsys):
    code, out, err = run_cli(capsys, "finetune", "--model", "lenet5", "--dataset", "fashion-mnist",
                             "--schedule", "fraction")
    assert_one_line_user_error(code, err, "--schedule fraction is a schedule of the spiking networks' fine-tune "
                               "(adcless-snn); choose direct or progressive for hcim")


@needs_fmnist
@pytest.mark.parametrize("args, schedule", [((), "direct"), (("--schedule", "direct"), "direct"),
                                            (("--arch", "adcless-snn", "--model", "snn_vgg", "--schedule", "fraction"),
                                             "fraction"),
                                            (("--arch", "adcless-snn", "--model", "snn_vgg", "--schedule", "direct"),
                                             "direct")])
def test_cli_stage_share_without_stages_is_refused(capsys, args, schedule):
    """--stage-share sets the progressive schedule's stages: on a run without them it is one line, not ignored."""
    base = ("finetune", "--model", "lenet5", "--dataset", "fashion-mnist")
    code, out, err = run_cli(capsys, *base, *args, "--stage-share", "2")
    assert_one_line_user_error(code, err, f"--stage-share 2 sets the progressive schedule's stages, and this run's "
                               f"schedule is {schedule}: add --schedule progressive, or leave --stage-share out")
