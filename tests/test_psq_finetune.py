"""PSQ fine-tuning options (cimsim.mappers.psq_finetune, 'cimsim finetune'): knowledge distillation from the
float network, continuing from an earlier PSQ network, frozen leading parts computed once, weight averaging."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from _cli_helpers import assert_one_line_user_error, run_cli
import cimsim
from cimsim import networks
from cimsim.errors import ConfigError
from cimsim.mappers import psq_finetune as ft
from cimsim.mappers import qat

FMNIST = Path("/usr/share/datasets/fashion-mnist")
SHIPPED_PSQ = Path(__file__).resolve().parent.parent / "workloads" / "checkpoints" / \
    "lenet5-fashion-mnist-psq-ternary-w4a4c1d1r128t0.5.pt"
CFG = qat.PSQConfig(rows=16)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 12), nn.ReLU(), nn.Linear(12, 3))

    def forward(self, x):
        return self.classifier(self.features(x))


def tiny():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(96, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean(dim=(1, 2)) * 3).long().clamp(0, 2)
    data = SimpleNamespace(x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:])
    return Net().eval(), data


# ------------------------------------------------------------------------------------------------ distillation
def test_distillation_loss_is_hintons():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    y = torch.tensor([0, 1, 2, 3, 0])
    ce = torch.nn.functional.cross_entropy(s, y)
    assert ft.distillation_loss(s, t, y, 0.0, 4.0) == ce                        # weight 0: cross-entropy only
    assert float(ft.distillation_loss(s, s, y, 1.0, 4.0)) == pytest.approx(0.0, abs=1e-6)   # student = teacher
    # by hand: (1 - w) CE + w T^2 mean_n sum_k p_t (log p_t - log p_s), softmax at temperature T
    w, T = 0.7, 3.0
    sn, tn = s.double().numpy() / T, t.double().numpy() / T
    log_ps = sn - np.log(np.exp(sn).sum(1, keepdims=True))
    log_pt = tn - np.log(np.exp(tn).sum(1, keepdims=True))
    kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(1).mean()
    want = (1 - w) * float(ce) + w * T * T * kl
    assert float(ft.distillation_loss(s, t, y, w, T)) == pytest.approx(want, rel=1e-6)


def test_label_smoothing_is_szegedys():
    """CE with smoothing e = (1 - e) CE + e mean_n (-mean_k log p_k); distillation adds to it unchanged."""
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    logp = torch.log_softmax(s.double(), 1).numpy()
    e = 0.1
    want = (1 - e) * -logp[np.arange(6), y.numpy()].mean() + e * -logp.mean(1).mean()
    assert float(ft.distillation_loss(s, t, y, 0.0, 4.0, label_smoothing=e)) == pytest.approx(want, rel=1e-6)
    kd = float(ft.distillation_loss(s, t, y, 0.5, 2.0)) - 0.5 * float(ft.distillation_loss(s, t, y, 0.0, 2.0))
    assert float(ft.distillation_loss(s, t, y, 0.5, 2.0, label_smoothing=e)) == pytest.approx(0.5 * want + kd, rel=1e-6)


@pytest.mark.parametrize("bad, match", [({"distill": 1.5}, "distill"), ({"temperature": 0.0}, "temperature"),
                                        ({"freeze": -1}, "freeze"), ({"lr": 0.0}, "lr must be a finite number > 0"),
                                        ({"label_smoothing": 1.5}, "label_smoothing"), ({"crop_pad": -1}, "crop_pad"),
                                        ({"freeze": 1, "flip": True}, "augmentation"),
                                        ({"validation": -1}, "validation")])
def test_recipe_refuses_bad_values(bad, match):
    with pytest.raises(ConfigError, match=match):
        ft.FinetuneRecipe(**bad)


@pytest.mark.parametrize("augment", [{}, {"crop_pad": 1, "flip": True}])
def test_distillation_pulls_the_student_towards_the_teacher(augment):
    """Fine-tuned on the teacher's outputs only (distill 1), the PSQ network's logits move towards the float
    network's; fine-tuned on the labels only, they need not (fixed seeds; the KD run ends at least 30 % closer).
    With augmentation the teacher sees the same cropped and flipped batches as the student."""
    model, data = tiny()
    with torch.no_grad():
        teacher = model(data.x_train)
    gap = {}
    for w in (0.0, 1.0):
        psq, meta = ft.finetune(model, CFG, data, ft.FinetuneRecipe(epochs=30, batch_size=16, lr=3e-3, distill=w,
                                                                    **augment), progress=False)
        with torch.no_grad():
            gap[w] = float(((psq(data.x_train) - teacher) ** 2).mean())
        assert meta["recipe"]["distill"] == w and all(math.isfinite(h["loss"]) for h in meta["history"])
    assert gap[1.0] < 0.7 * gap[0.0]


# ------------------------------------------------------------------------------------------------ input steps
def test_lsq_step_gradient():
    """d/ds sum(s * q(x / s)) is LSQ's: round(x/s) - x/s inside the range, the top code above it, 0 below 0."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(400, generator=g, dtype=torch.float64) * 2.0 - 0.2
    s = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    (s * qat.quantize_activation(x, s, 4, False)).sum().backward()
    v = (x / 0.1).numpy()
    want = np.where(v > 15, 15.0, np.where(v < 0, 0.0, np.round(v) - v)).sum()
    assert float(s.grad) == pytest.approx(want, rel=1e-9)


def ideal_hcim_psq():
    """The tiny network in float64, prepared for HCiM on ideal 16-row arrays: (PSQ network, 8 inputs, arch)."""
    model, data = tiny()
    x = data.x_train[:8].double()
    arch = cimsim.arch.get("hcim", cell="ideal", rows=16)
    return qat.prepare(model.double(), qat.PSQConfig.from_arch(arch), [x]), x, arch


def test_learned_input_steps_are_written_back_exactly():
    """On: a parameter log(input_scale) drives the forward; off: its exp becomes input_scale, the forward is
    unchanged bit for bit and the engine computes it (ideal cells)."""
    psq, x, arch = ideal_hcim_psq()
    with torch.no_grad():
        before = psq(x)
    qat.learn_input_steps(psq, True)
    steps = [m.psq_log_step for m in psq.modules() if qat.is_psq(m)]
    assert len(steps) == 3 and all(float(p.detach()) == math.log(float(m.input_scale))
                                   for p, m in zip(steps, [m for m in psq.modules() if qat.is_psq(m)]))
    with torch.no_grad():
        torch.testing.assert_close(psq(x), before, rtol=1e-12, atol=0)
        for p in steps:
            p.add_(0.3)                               # steps 35 % larger
        moved = psq(x)
    assert not torch.allclose(moved, before)
    qat.learn_input_steps(psq, False)
    assert not any(n.endswith("psq_log_step") for n, _ in psq.named_parameters())
    assert [float(m.input_scale) for m in psq.modules() if qat.is_psq(m)] == \
        [math.exp(float(p.detach())) for p in steps]
    with torch.no_grad():
        assert torch.equal(psq(x), moved)
        mapped = cimsim.map(psq, arch, calibration=x)(x)
    np.testing.assert_allclose(mapped.numpy(), moved.numpy(), rtol=0, atol=1e-12 * float(moved.abs().max()))


def test_lsq_weight_step_gradient():
    """The weight step's gradient is LSQ's: d/ds sum(s * q(w / s)) = round(w/s) - w/s inside +-qmax, +-qmax outside
    (the clipped weights); a step above the max-scaling one is capped there (no gradient reaches it)."""
    g = torch.Generator().manual_seed(6)
    w = torch.randn(2, 50, generator=g, dtype=torch.float64)
    amax = w.abs().amax(dim=1)
    s = (amax / 7 * torch.tensor([0.6, 1.5], dtype=torch.float64)).requires_grad_(True)
    q, scale = qat.quantize_weight_ste(w, 4, s)
    (q * scale[:, None]).sum().backward()
    v = (w[0] / s[0]).detach().numpy()
    want = np.where(v > 7, 7.0, np.where(v < -7, -7.0, np.round(v) - v)).sum()
    assert float(s.grad[0]) == pytest.approx(want, rel=1e-9) and (np.abs(v) > 7).sum() > 0
    assert float(s.grad[1]) == 0 and torch.equal(scale[1].detach(), amax[1] / 7)
    assert torch.equal(q[1].detach(), torch.round(w[1] / (amax[1] / 7)))


def test_learned_weight_steps_are_written_back_as_clipped_weights():
    """On: log(amax / qmax) per channel drives the forward (unchanged); smaller steps clip each channel's outliers;
    off: the weights are clipped to +-qmax x step, the parameter is gone, the forward is unchanged (to rounding of
    the step) and the engine (ideal cells, max-scaling quantization of the clipped weights) computes it."""
    psq, x, arch = ideal_hcim_psq()
    with torch.no_grad():
        before = psq(x)
    qat.learn_weight_steps(psq, True)
    layers = [m for m in psq.modules() if qat.is_psq(m)]
    assert len(layers) == 3 and all(m.psq_log_wstep.shape == (m.weight.shape[0],) for m in layers)
    with torch.no_grad():
        torch.testing.assert_close(psq(x), before, rtol=1e-12, atol=0)
        for m in layers:
            m.psq_log_wstep.sub_(0.25)                # steps 22 % smaller: the largest weights clipped
        moved = psq(x)
        steps = [torch.exp(m.psq_log_wstep) for m in layers]
    assert not torch.allclose(moved, before)
    qat.learn_weight_steps(psq, False)
    assert not any(n.endswith("psq_log_wstep") for n, _ in psq.named_parameters())
    for m, st in zip(layers, steps):
        amax = m.weight.detach().reshape(m.weight.shape[0], -1).abs().amax(dim=1)
        torch.testing.assert_close(amax / 7, st, rtol=1e-15, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(psq(x), moved, rtol=1e-12, atol=1e-12 * float(moved.abs().max()))
        mapped = cimsim.map(psq, arch, calibration=x)(x)
    np.testing.assert_allclose(mapped.numpy(), moved.numpy(), rtol=0, atol=1e-12 * float(moved.abs().max()))


def test_finetune_learns_the_weight_steps_when_asked():
    """--learn-weight-steps: the returned network's weights are clipped (some channel's step moved below its
    max-scaling step), no step parameter is left, and the recorded accuracy is the returned network's."""
    model, data = tiny()
    recipe = ft.FinetuneRecipe(epochs=3, batch_size=16, lr=3e-3, calibration_examples=64, learn_weight_steps=True)
    psq, meta = ft.finetune(model, CFG, data, recipe, progress=False)
    assert not any(n.endswith("psq_log_wstep") for n, _ in psq.named_parameters())
    assert meta["recipe"]["learn_weight_steps"] is True
    assert meta["test_accuracy"] == ft.evaluate_accuracy(psq, data.x_test, data.y_test)
    # clipped channels hold several weights at exactly their largest magnitude (float weights never tie else)
    ties = [int(((f := m.weight.detach().reshape(m.weight.shape[0], -1).abs()) == f.amax(1, keepdim=True)).sum(1).max())
            for m in psq.modules() if qat.is_psq(m)]
    assert max(ties) >= 3


def test_finetune_learns_the_input_steps_only_when_asked():
    model, data = tiny()
    calibrated = [float(m.input_scale) for m in qat.prepare(model, CFG, [data.x_train]).modules() if qat.is_psq(m)]
    got = {}
    for on in (False, True):
        psq, meta = ft.finetune(model, CFG, data, ft.FinetuneRecipe(epochs=3, batch_size=16, lr=3e-3,
                                                                    calibration_examples=64, learn_input_steps=on),
                                progress=False)
        got[on] = [float(m.input_scale) for m in psq.modules() if qat.is_psq(m)]
        assert not any(n.endswith("psq_log_step") for n, _ in psq.named_parameters())
        # the returned network (steps written back) is the one whose accuracy the metadata records
        assert meta["test_accuracy"] == ft.evaluate_accuracy(psq, data.x_test, data.y_test)
    assert got[False] == calibrated
    assert all(abs(a / b - 1) > 1e-4 for a, b in zip(got[True], calibrated))


def three_classes():
    """160 8x8 images in three balanced classes (which third of the rows is brightest): 128 to train, 32 to test."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(160, 1, 8, 8, generator=g)
    y = torch.stack([x[:, 0, :3].mean((1, 2)), x[:, 0, 3:5].mean((1, 2)), x[:, 0, 5:].mean((1, 2))], 1).argmax(1)
    return SimpleNamespace(x_train=x[:128], y_train=y[:128], x_test=x[128:], y_test=y[128:])


def test_validation_keeps_the_best_epoch_on_held_out_training_examples():
    """--validation N: the last N training examples are held out, measured after every epoch, and the epoch best
    there is the network returned (its held-out accuracy recomputed equals the recorded one); the test set plays
    no part in the choice. Three balanced classes and a high learning rate (fixed seeds) make the epochs differ,
    and the best one (6 of 8) is not the last, so the kept state really is restored."""
    data = three_classes()
    torch.manual_seed(0)
    recipe = ft.FinetuneRecipe(epochs=8, batch_size=16, lr=3e-2, alpha_lr=3e-2, calibration_examples=64,
                               validation=32)
    psq, meta = ft.finetune(Net().eval(), CFG, data, recipe, progress=False)
    vals = [h["validation_accuracy"] for h in meta["history"]]
    assert len(vals) == 8 and meta["validation_examples"] == 32 and meta["train_examples"] == 96
    assert meta["validation_accuracy"] == max(vals) and meta["kept_epoch"] == vals.index(max(vals)) + 1
    assert meta["kept_epoch"] < 8 and vals[-1] < max(vals)
    assert ft.evaluate_accuracy(psq, data.x_train[96:], data.y_train[96:]) == meta["validation_accuracy"]
    assert meta["test_accuracy"] == ft.evaluate_accuracy(psq, data.x_test, data.y_test)
    with pytest.raises(ConfigError, match="hold out fewer"):
        ft.finetune(Net().eval(), CFG, data, ft.FinetuneRecipe(epochs=1, validation=128), progress=False)


def test_pinned_scalars_give_the_same_forward():
    model, data = tiny()
    psq = qat.prepare(model, CFG, [data.x_train])
    x = data.x_test
    with torch.no_grad():
        ref = psq(x)
        qat.pin_host_scalars(psq, True)
        assert all(m.host_scalars == (float(m.input_scale), bool(m.input_signed))
                   for m in psq.modules() if qat.is_psq(m))
        assert torch.equal(psq(x), ref)
        qat.pin_host_scalars(psq, False)
        psq.features[0].input_scale.mul_(2)           # unpinned: the buffer is read again
        assert not torch.equal(psq(x), ref)


# ------------------------------------------------------------------------------------------------ averaging (SWA)
def test_running_mean_is_the_mean_of_the_iterates_and_swaps_back():
    g = torch.Generator().manual_seed(5)
    p = [nn.Parameter(torch.zeros(3, 4)), nn.Parameter(torch.zeros(2))]
    mean = ft.RunningMean(p)
    seen = []
    for _ in range(7):
        with torch.no_grad():
            for q in p:
                q.copy_(torch.randn(q.shape, generator=g))
        seen.append([q.detach().double().clone() for q in p])
        mean.update()
    assert mean.count == 7
    last = [q.detach().clone() for q in p]
    for i, m in enumerate(mean.mean):
        want = torch.stack([s[i] for s in seen]).mean(0)
        assert torch.allclose(m.double(), want, rtol=0, atol=1e-6)
    held = [m.clone() for m in mean.mean]
    mean.swap()
    assert all(torch.equal(q, m) for q, m in zip(p, held))            # the parameters hold the mean
    mean.swap()
    assert all(torch.equal(q, v) for q, v in zip(p, last))            # and back, bit for bit


def test_learning_rate_factor_decays_to_the_averaging_rate_and_stays():
    steps = 40
    # no averaging: the cosine from 1 to 0 over every step (the schedule before the option, unchanged)
    assert [ft.learning_rate_factor(s, steps, 0, 0.2) for s in range(steps + 1)] == \
        [0.5 * (1 + math.cos(math.pi * s / steps)) for s in range(steps + 1)]
    f = [ft.learning_rate_factor(s, steps, 10, 0.2) for s in range(steps)]
    assert f[0] == 1.0 and f[15] == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 15 / 30)))
    assert all(a > b for a, b in zip(f[:30], f[1:31])) and f[30:] == [pytest.approx(0.2)] * 10


def recorded_iterates(monkeypatch) -> list[list[torch.Tensor]]:
    """The parameters at every RunningMean update (in the order it holds them), recorded as they happen."""
    snaps = []
    update = ft.RunningMean.update

    def recording(self):
        snaps.append([q.detach().double().clone() for q in self.params])
        update(self)

    monkeypatch.setattr(ft.RunningMean, "update", recording)
    return snaps


def assert_holds_the_mean(psq: nn.Module, snaps: list[list[torch.Tensor]]):
    got = list(psq.parameters())
    assert len(got) == len(snaps[0])
    for i, q in enumerate(got):
        want = torch.stack([s[i] for s in snaps]).mean(0)
        assert torch.allclose(q.detach().double(), want, rtol=0, atol=1e-6)
        assert not torch.allclose(q.detach().double(), snaps[-1][i], rtol=0, atol=1e-6)   # not the last step


def test_average_returns_the_mean_of_the_last_epochs_steps(monkeypatch):
    """average = 1 of 3 epochs: the network returned holds the mean of the parameters after each of the last
    epoch's 4 steps, and its test accuracy is the averaged network's."""
    snaps = recorded_iterates(monkeypatch)
    factors = []
    factor = ft.learning_rate_factor
    monkeypatch.setattr(ft, "learning_rate_factor", lambda *a: factors.append(a) or factor(*a))
    model, data = tiny()
    recipe = ft.FinetuneRecipe(epochs=3, batch_size=16, lr=3e-3, calibration_examples=64, average=1)
    psq, meta = ft.finetune(model, CFG, data, recipe, progress=False)
    assert len(snaps) == 4 and meta["averaged_steps"] == 4
    # the optimizer's schedule (both parameter groups, every step): 12 steps, the last 4 at 0.2 of the first rate
    assert {a[1:] for a in factors} == {(12, 4, 0.2)} and sorted({a[0] for a in factors}) == list(range(13))
    assert_holds_the_mean(psq, snaps)
    assert meta["test_accuracy"] == ft.evaluate_accuracy(psq, data.x_test, data.y_test)


def test_average_with_validation_scores_the_averaged_network(monkeypatch):
    """With --validation, each averaging epoch is scored as the average of the steps so far, and the epoch kept
    (here the seventh of eight: 3 averaged epochs of 6 steps, not the last) is returned as that average."""
    snaps = recorded_iterates(monkeypatch)
    data = three_classes()
    torch.manual_seed(0)
    recipe = ft.FinetuneRecipe(epochs=8, batch_size=16, lr=3e-3, alpha_lr=3e-3, calibration_examples=64,
                               validation=32, average=4)
    psq, meta = ft.finetune(Net().eval(), CFG, data, recipe, progress=False)
    vals = [h["validation_accuracy"] for h in meta["history"]]
    assert meta["validation_accuracy"] == max(vals) and meta["averaged_steps"] == 3 * 6     # in the kept network
    assert [h.get("averaged_steps") for h in meta["history"]] == [None] * 4 + [6, 12, 18, 24]
    assert ft.evaluate_accuracy(psq, data.x_train[96:], data.y_train[96:]) == meta["validation_accuracy"]
    assert meta["kept_epoch"] == 7
    assert_holds_the_mean(psq, snaps[:18])


@pytest.mark.parametrize("bad, match", [({"average": 3}, "average fewer than the epochs"),
                                        ({"average": 1, "average_lr_scale": 0.0}, "average_lr_scale"),
                                        ({"average": -1}, "average must be")])
def test_average_refuses_bad_values(bad, match):
    with pytest.raises(ConfigError, match=match):
        ft.FinetuneRecipe(epochs=3, **bad)


# ------------------------------------------------------------------------------------------------ freeze, init
def test_frozen_parts_stay_bit_identical_and_the_rest_trains():
    model, data = tiny()
    start = qat.prepare(model, CFG, [data.x_train[:32]])
    psq, _ = ft.finetune(model, CFG, data, ft.FinetuneRecipe(epochs=2, batch_size=16, freeze=1), progress=False,
                         init=start)
    before, after = dict(start.named_parameters()), dict(psq.named_parameters())
    assert before.keys() == after.keys()
    for k in before:
        same = torch.equal(before[k].detach(), after[k].detach())
        assert same == k.startswith("features."), k
    # the initial network is not modified by the fine-tune that starts from it
    assert torch.equal(start.classifier[1].weight, qat.prepare(model, CFG, [data.x_train[:32]]).classifier[1].weight)


def test_freeze_refuses_what_it_cannot_split():
    model, data = tiny()
    psq = qat.prepare(model, CFG, [data.x_train[:32]])
    with pytest.raises(ConfigError, match="freeze 1 to 1"):
        ft.split_frozen(psq, 2, data.x_train[:4])

    class Skip(Net):
        def forward(self, x):
            return self.classifier(self.features(x) + 1.0)

    with pytest.raises(ConfigError, match="not its top-level parts applied in order"):
        ft.split_frozen(Skip().eval(), 1, data.x_train[:4])


def test_init_must_match_the_configuration():
    model, data = tiny()
    other = qat.prepare(model, qat.PSQConfig(rows=16, readout="binary"), [data.x_train[:32]])
    with pytest.raises(ConfigError, match="psq-binary"):
        ft.finetune(model, CFG, data, ft.FinetuneRecipe(epochs=1), progress=False, init=other)


# ------------------------------------------------------------------------------------------------ CLI
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed")


@needs_fmnist
def test_cli_records_the_recipe_and_the_network_it_continued_from(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path))
    out_path = tmp_path / "ft.pt"
    code, out, err = run_cli(capsys, "finetune", "--model", "lenet5", "--dataset", "fashion-mnist", "--epochs", "1",
                             "--limit", "64", "--test-limit", "20", "--init", SHIPPED_PSQ, "--distill", "0.5",
                             "--temperature", "2", "--freeze", "1", "--lr", "1e-4", "--alpha-lr", "1e-3",
                             "--out", out_path, "--json")
    assert code == 0, err
    meta = json.loads(out)
    assert meta["recipe"] | {"distill": 0.5, "temperature": 2.0, "freeze": 1, "lr": 1e-4, "alpha_lr": 1e-3} \
        == meta["recipe"]
    assert meta["init_checkpoint"] == SHIPPED_PSQ.name and meta["base_checkpoint"] == "lenet5-fashion-mnist.pt"
    assert meta["init_command"].startswith("cimsim finetune")
    for flag in ("--init " + SHIPPED_PSQ.name, "--distill 0.5 --temperature 2.0", "--freeze 1", "--alpha-lr 0.001"):
        assert flag in meta["command"], flag
    # the frozen convolutions are the initial network's, bit for bit
    new, _ = networks.load_psq_checkpoint(out_path)
    old, _ = networks.load_psq_checkpoint(SHIPPED_PSQ)
    assert torch.equal(new.features[0].weight, old.features[0].weight)
    assert not torch.equal(new.classifier[1].weight, old.classifier[1].weight)


@needs_fmnist
def test_cli_augment_label_smoothing_and_learned_steps(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path))
    out_path = tmp_path / "ft.pt"
    code, out, err = run_cli(capsys, "finetune", "--model", "lenet5", "--dataset", "fashion-mnist", "--epochs", "1",
                             "--limit", "64", "--test-limit", "20", "--init", SHIPPED_PSQ, "--augment",
                             "--label-smoothing", "0.1", "--learn-input-steps", "--out", out_path, "--json")
    assert code == 0, err
    meta = json.loads(out)
    # Fashion-MNIST's augmentation is cimsim train's: 2-pixel crops and flips
    assert meta["recipe"] | {"crop_pad": 2, "flip": True, "label_smoothing": 0.1, "learn_input_steps": True} \
        == meta["recipe"]
    for flag in ("--augment", "--label-smoothing 0.1", "--learn-input-steps"):
        assert flag in meta["command"], flag
    new, _ = networks.load_psq_checkpoint(out_path)
    old, _ = networks.load_psq_checkpoint(SHIPPED_PSQ)
    assert all(float(a.input_scale) != float(b.input_scale)
               for a, b in zip(new.modules(), old.modules()) if qat.is_psq(a))


@needs_fmnist
@pytest.mark.parametrize("extra, needle", [(["--distill", "2"], "distill"), (["--freeze", "9"], "freeze"),
                                           (["--init", "nowhere.pt"], "nowhere.pt"),
                                           (["--checkpoint", SHIPPED_PSQ], "as --init"),
                                           (["--augment", "--freeze", "1"], "--augment changes the frozen parts"),
                                           (["--label-smoothing", "1.5"], "label-smoothing"),
                                           (["--average", "1"], "give --average below --epochs"),
                                           (["--average-lr-scale", "2"], "average-lr-scale")])
def test_cli_bad_options_are_one_line_errors(capsys, extra, needle):
    code, out, err = run_cli(capsys, "finetune", "--model", "lenet5", "--dataset", "fashion-mnist", "--epochs", "1",
                             "--limit", "8", "--test-limit", "8", *extra)
    assert_one_line_user_error(code, err, needle)


@needs_fmnist
def test_cli_first_layer_bits_and_cycle_scales_find_their_own_checkpoint(capsys, tmp_path, monkeypatch):
    """finetune --set first_input_bits=8 --set cycle_scales=true saves under its own name, run with the same --set
    finds it and computes what the fine-tune computed; the default setting does not take it, and --init of
    the default setting into this one is refused."""
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path))
    sets = ("--set", "first_input_bits=8", "--set", "cycle_scales=true")
    code, out, err = run_cli(capsys, "finetune", "--model", "lenet5", "--dataset", "fashion-mnist", "--epochs", "1",
                             "--limit", "64", "--test-limit", "40", *sets, "--json")
    assert code == 0, err
    meta = json.loads(out)
    assert meta["psq"]["first_input_bits"] == 8 and meta["psq"]["cycle_scales"] is True
    assert meta["input_bits_per_layer"]["features.0"] == 8 and meta["input_bits_per_layer"]["features.3"] == 4
    saved = tmp_path / "checkpoints" / "lenet5-fashion-mnist-psq-ternary-w4a4f8c1d1r128t0.5-percycle.pt"
    assert saved.is_file()
    code, out, err = run_cli(capsys, "run", "--arch", "hcim", "--model", "lenet5", "--dataset", "fashion-mnist",
                             *sets, "--limit", "40", "--calibration", "64", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["config"]["checkpoint"].endswith(saved.name)
    assert rep["accuracy"] == pytest.approx(meta["test_accuracy"], abs=1 / 40 + 1e-9)   # float32 vs float64 ties
    code, out, err = run_cli(capsys, "finetune", "--model", "lenet5", "--dataset", "fashion-mnist", "--epochs", "1",
                             "--limit", "8", "--test-limit", "8", *sets, "--init", SHIPPED_PSQ)
    assert_one_line_user_error(code, err, "fine-tuned for psq-ternary-w4a4c1d1r128t0.5")


def test_two_backward_passes_accumulate_the_sum_of_the_single_pass_gradients():
    """Gradient accumulation over two batches (no optimizer step between them) through the PSQ layers, with learned
    input and weight steps, adds the two single-pass gradients (nothing of one pass's graph is reused by the next);
    a forward without gradients before one with them changes nothing."""
    psq, x, _ = ideal_hcim_psq()
    qat.learn_input_steps(psq, True)
    qat.learn_weight_steps(psq, True)
    psq.train()
    y = torch.tensor([0, 1, 2, 1, 0, 2, 1, 0])
    halves = [(x[:4], y[:4]), (x[4:], y[4:])]

    def grads():
        return {n: p.grad.clone() for n, p in psq.named_parameters() if p.grad is not None}

    singles = []
    for xb, yb in halves:
        psq.zero_grad(set_to_none=True)
        with torch.no_grad():
            psq(xb)
        torch.nn.functional.cross_entropy(psq(xb), yb).backward()
        singles.append(grads())
    psq.zero_grad(set_to_none=True)
    for xb, yb in halves:
        torch.nn.functional.cross_entropy(psq(xb), yb).backward()
    both = grads()
    assert set(both) == set(singles[0]) and any("log_step" in n for n in both) and any("wstep" in n for n in both)
    for name, g in both.items():
        torch.testing.assert_close(g, singles[0][name] + singles[1][name], rtol=1e-12, atol=1e-12, msg=name)
