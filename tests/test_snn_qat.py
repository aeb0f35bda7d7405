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
    code, out, err = run_cli(capsys, "run", "--arch", "snn-hpadc", "--model", "snn_vgg", "--dataset", "fashion-mnist",
                             "--checkpoint", str(path), "--limit", "8")   # not "damaged": named, with the fix
    assert_one_line_user_error(code, err, "was fine-tuned for sense amps ('cimsim finetune --arch adcless-snn'): run "
                               "it with --arch adcless-snn, or leave --checkpoint out for snn-hpadc")
    code, out, err = run_cli(capsys, "finetune", "--arch", "hcim", "--model", "lenet5", "--dataset", "fashion-mnist",
                             "--schedule", "fraction")
    assert_one_line_user_error(code, err, "--schedule fraction is a schedule of the spiking networks' fine-tune")
    # and the partial-sum fine-tune's options are refused on a spiking network rather than ignored
    code, out, err = run_cli(capsys, "finetune", "--arch", "adcless-snn", "--model", "snn_vgg", "--dataset",
                             "fashion-mnist", "--validation", "100", "--average", "2")
    assert_one_line_user_error(code, err, "--validation, --average: options of the partial-sum fine-tune (hcim), "
                               "not of the spiking networks' sense-amp fine-tune (adcless-snn); leave them out")


# ------------------------------------------------------------------------------------- the lean product (issue 17)
class _PlainDecision(torch.autograd.Function):
    """The plain composition's LSQ decision (what autograd kept before: ``PS / s`` and the decision per block)."""

    @staticmethod
    def forward(ctx, ps, s, threshold, grad_scale):
        u = ps / s
        d = (u > threshold).to(ps.dtype)
        ctx.save_for_backward(u, d)
        ctx.grad_scale = grad_scale
        return d * s

    @staticmethod
    def backward(ctx, g):
        u, d = ctx.saved_tensors
        inside = (u >= 0) & (u <= 1)
        return g * inside, (g * torch.where(inside, d - u, d)).sum(0, keepdim=True) * ctx.grad_scale, None, None


def plain_product(mod, patches, w_int):
    """The sense-amp product as plain torch operations, block by block (the reference)."""
    cfg = mod.sa_config
    planes, pw = mod.planes(patches)
    levels, coef = mod.columns(w_int)
    O, M, P = w_int.shape[0], patches.shape[0], torch.cat(planes)
    y = patches.new_zeros(M, O)
    for r, (k0, k1) in enumerate(cfg.row_blocks(patches.shape[1])):
        ps = P[:, k0:k1] @ levels[:, k0:k1].T
        q = _PlainDecision.apply(ps, mod.sa_scale[r][None, :], cfg.threshold, 1.0 / np.sqrt(ps.shape[0]))
        if mod.fraction < 1:
            q = torch.where((mod.column_rank[r] < mod.fraction)[None, :], q, ps)
        q = (q * coef[None, :]).reshape(len(planes), M, -1, O).sum(dim=2)
        y = y + sum(w * q[t] for t, w in enumerate(pw))
    return y


def _layer_inputs(mod, M, seed):
    K = mod.weight[0].numel()
    rng = np.random.default_rng(seed)
    x = (rng.random((M, K)) < 0.3) if bool(mod.spike_input) else rng.integers(0, 256, (M, K))
    return torch.from_numpy(x.astype(np.float64))


@pytest.mark.parametrize("fraction", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("chunk", [None, 7])   # None: one chunk per block; 7: 7 rows of partial sums at a time
def test_the_lean_product_equals_the_plain_composition(monkeypatch, fraction, chunk):
    from cimsim.mappers import snn_qat_ops

    net = prepared(cimsim.arch.get("adcless-snn")).train()
    g = torch.Generator().manual_seed(3)
    for i, (name, mod) in enumerate(snn_qat.sa_layers(net).items()):
        C = mod.sa_scale.shape[1]
        if chunk is not None:
            monkeypatch.setattr(snn_qat_ops, "CHUNK_ELEMENTS", chunk * C + 3)
        mod.fraction = fraction
        mod.sa_scale.data = mod.sa_scale.data * (0.5 + torch.rand(mod.sa_scale.shape, generator=g, dtype=torch.float64))
        x = _layer_inputs(mod, 45, seed=i)
        upstream = torch.randn(45, mod.weight.shape[0], generator=g, dtype=torch.float64)
        results = []
        for f in (lambda xx, w: mod.sa_product(xx, w, mod.sa_scale), lambda xx, w: plain_product(mod, xx, w)):
            xx = x.clone().requires_grad_(bool(mod.spike_input))
            mod.zero_grad(set_to_none=True)
            w_int, _ = snn_qat.qat.quantize_weight_ste(mod.weight, 4)
            y = f(xx, w_int)
            (y * upstream).sum().backward()
            results.append((y.detach(), xx.grad, mod.weight.grad.clone(), mod.sa_scale.grad.clone()))
        (y1, gx1, gw1, gs1), (y2, gx2, gw2, gs2) = results
        assert torch.equal(y1, y2), name                               # the forward: bit for bit
        if gx2 is not None:
            torch.testing.assert_close(gx1, gx2, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gw1, gw2, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gs1, gs2, rtol=1e-12, atol=1e-12)
        assert float(gw1.abs().sum()) > 0, name
        assert (float(gs1.abs().sum()) > 0) == (fraction > 0), name    # exact columns: no gradient to the scales


def test_the_product_keeps_only_its_inputs_for_backward():
    """Autograd keeps the planes, levels, scales and column weights, not the partial sums (per block and plane)."""
    net = prepared(cimsim.arch.get("adcless-snn")).train()
    for mod in snn_qat.sa_layers(net).values():
        x = _layer_inputs(mod, 400, seed=1).requires_grad_(bool(mod.spike_input))
        w_int, _ = snn_qat.qat.quantize_weight_ste(mod.weight, 4)
        levels, coef = mod.columns(w_int)
        planes, _ = mod.planes(x)
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            mod.sa_product(x, w_int, mod.sa_scale, (levels, coef))
        allowed = len(planes) * x.numel() + levels.numel() + mod.sa_scale.numel() + coef.numel()
        plain = 2 * len(planes) * x.shape[0] * mod.sa_scale.numel()   # PS / s and the decision, every block
        assert sum(saved) <= allowed < plain


def _grads(net) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("noise_frac", [0.0, 0.05])
def test_two_backward_passes_accumulate_the_sum_of_the_single_pass_gradients(noise_frac):
    """Gradient accumulation (two forward/backward passes, no optimizer step between them) works and adds up:
    the weights' cached integers and cell levels must not tie the second pass to the first pass's freed graph."""
    net = prepared(cimsim.arch.get("adcless-snn")).train()
    for m in snn_qat.sa_layers(net).values():
        m.noise_frac = noise_frac
    x, y = data()
    halves = [(x[:6].double(), y[:6]), (x[6:].double(), y[6:])]

    def step(xb, yb):
        torch.manual_seed(11)                      # the same draw of programming noise in both runs
        torch.nn.functional.cross_entropy(net(xb), yb).backward()

    singles = []
    for xb, yb in halves:
        net.zero_grad(set_to_none=True)
        step(xb, yb)
        singles.append(_grads(net))
    net.zero_grad(set_to_none=True)
    for xb, yb in halves:
        step(xb, yb)                               # raised "backward through the graph a second time" before
    both = _grads(net)
    assert set(both) == set(singles[0]) and len(both) >= 6
    for name, g in both.items():
        torch.testing.assert_close(g, singles[0][name] + singles[1][name], rtol=1e-12, atol=1e-12, msg=name)
        assert float(g.abs().sum()) > 0, name
    # the same batch twice (the direct encoding's input memo must not hand back the first pass's output)
    net.zero_grad(set_to_none=True)
    step(*halves[0])
    step(*halves[0])
    for name, g in _grads(net).items():
        torch.testing.assert_close(g, 2 * singles[0][name], rtol=1e-12, atol=1e-12, msg=name)


def test_a_forward_without_grad_then_one_with_grad_trains_as_a_fresh_one():
    net = prepared(cimsim.arch.get("adcless-snn")).train()
    x, y = data()
    xb = x.double()
    torch.nn.functional.cross_entropy(net(xb), y).backward()
    fresh = _grads(net)
    net.zero_grad(set_to_none=True)
    with torch.no_grad():
        out0 = net(xb)
    out = net(xb)
    assert torch.equal(out.detach(), out0)         # the forward: bit for bit, with or without grad
    torch.nn.functional.cross_entropy(out, y).backward()
    got = _grads(net)
    assert set(got) == set(fresh)
    for name, g in got.items():
        torch.testing.assert_close(g, fresh[name], rtol=1e-12, atol=1e-12, msg=name)
