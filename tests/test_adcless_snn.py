"""Spiking networks on crossbars: the ADC-less SNN architecture and its HP-ADC baseline (arXiv 2211.02167)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim import events as ev
from cimsim.encoding import slice_weights
from cimsim.spiking import LIF, DirectEncoder, TimeLoop
from cimsim.workloads.snn_zoo import SpikingNet

T = 3


def tiny_snn(time_steps: int = T) -> SpikingNet:
    """Conv -> BN -> LIF -> pool -> Linear (96 inputs: two 64-row blocks) -> LIF -> Linear readout."""
    torch.manual_seed(0)
    step = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6),
                         LIF(beta=0.9, threshold=0.5, init_hidden=True), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(96, 40), LIF(beta=0.9, threshold=0.3, init_hidden=True), nn.Linear(40, 5))
    bn = step[1]
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 1.5)
    bn.weight.data.uniform_(0.5, 1.5)
    return SpikingNet(step, time_steps, "direct").eval()


def data(n=12):
    g = torch.Generator().manual_seed(2)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 5, (n,), generator=g)


def mapped(arch, net=None, **kw):
    x, _ = data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cimsim.map(net or tiny_snn(), arch, calibration=x, seed=1, progress=False, **kw)


def traces(model, x) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(neuron, spikes, membrane) of every LIF call, in order (every time step)."""
    out = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: out.append((n, o[0].clone(), o[1].clone())))
             for n, m in model.named_modules() if isinstance(m, LIF)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return out


def count(rep, event, layer=None) -> float:
    """Events per inference in a report's ledger; LIF updates are the neuron layers' comparisons (one per
    neuron per step, which the architecture books as ``lif_updates``)."""
    led, kinds = rep.config["ledger"], rep.config["layer_kinds"]
    if event == ev.LIF_UPDATES:
        return sum(row.get(ev.COMPARE, 0) for n, row in led.items() if kinds.get(n) == "LIF")
    return sum(row.get(event, 0) for n, row in led.items() if layer in (None, n))


def lossless_baseline():
    """The HP-ADC chip with ideal cells and an 8-bit full-range ADC: a column sums at most 64 one-bit products."""
    return cimsim.arch.get("snn-hpadc", cell="ideal", adc_bits=8, adc_range="full")


def test_ideal_crossbars_with_a_lossless_readout_equal_the_quantized_snn_every_time_step():
    m = mapped(lossless_baseline())
    x, _ = data()
    analog = traces(m.set_mode("analog"), x)
    digital = traces(m.set_mode("digital"), x)
    assert len(analog) == 2 * T
    for (n, s1, u1), (_, s2, u2) in zip(analog, digital):
        assert torch.equal(s1, s2) and torch.equal(u1, u2), n
    fired = {n: float(s.sum()) for n, s, _ in analog}
    assert all(v > 0 for v in fired.values()), fired       # both neuron layers fire: the test sees spikes
    rep = m.set_mode("analog").evaluate([data()], progress=False)
    assert [r["rel_error"] for r in rep.layers if r["name"] in m.mapped_layers] == [0.0, 0.0, 0.0]


def test_layers_fed_spikes_take_one_bit_inputs_and_count_every_time_step():
    m = mapped(cimsim.arch.get("adcless-snn"))
    plans = {n: l.plan for n, l in m.mapped_layers.items()}
    assert m.folded == [("step.0", "step.1")]                  # BN folds although the conv runs every step
    assert [(p.input_bits, p.time_steps) for p in plans.values()] == [(0, T), (1, T), (1, T)]
    assert plans["step.0"].positions == T * 64 and plans["step.5"].positions == T
    specs = {n: l.crossbars[0].spec for n, l in m.mapped_layers.items()}
    assert specs["step.0"].input_bits == 8 and specs["step.5"].input_bits == 1


def test_energy_and_latency_include_every_time_step():
    """Read cycles, conversions and LIF updates per inference grow exactly with the time steps."""
    arch = cimsim.arch.get("adcless-snn")
    reps = {t: mapped(arch, tiny_snn(t)).evaluate([data()], progress=False) for t in (2, 4)}
    for event in (ev.ARRAY_READ_CYCLES, ev.conversion("sense-amp"), ev.LIF_UPDATES):
        n2, n4 = (count(reps[t], event) for t in (2, 4))
        assert n2 > 0 and n4 == pytest.approx(2 * n2, rel=1e-12), event
    lat = {t: {r["name"]: r["latency_s"] for r in reps[t].layers} for t in (2, 4)}
    assert lat[4]["step.5"] == pytest.approx(2 * lat[2]["step.5"], rel=1e-12)
    spk = reps[4].config["spiking"]
    assert spk["time_steps"] == 4
    updates = count(reps[4], ev.LIF_UPDATES)   # from the profile
    assert spk["spikes_per_inference"] == pytest.approx(spk["firing_rate"] * updates, rel=1e-12)


def test_sense_amp_readout_binarizes_each_column_partial_sum_with_its_scale():
    """adcless-snn on ideal cells: y = sum_r,j,p 2**j sign_p s * H(PS / s - 0.5), from the slices themselves."""
    m = mapped(cimsim.arch.get("adcless-snn", cell="ideal"))
    layer = m.mapped_layers["step.5"]
    xb = layer.crossbars[0]
    rng = np.random.default_rng(3)
    x = (rng.random((50, 96)) < 0.3).astype(np.int64)
    y = xb(x)
    sl = slice_weights(layer.w_int, 4, 1, "differential")
    lv = sl.levels.astype(np.float64)                              # (S, P, O, K)
    S, P, O, K = lv.shape
    s = xb.column_scales.reshape(2, S, P, O)
    ref = np.zeros((50, O))
    for r, (k0, k1) in enumerate([(0, 64), (64, 96)]):
        for j in range(S):
            for p, sign in enumerate((1, -1)):
                ps = x[:, k0:k1] @ lv[j, p][:, k0:k1].T
                ref += sign * 2.0 ** j * s[r, j, p] * (ps / s[r, j, p] > 0.5)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-9)
    assert np.all(xb.column_scales >= 1)


def test_adcless_against_hpadc_readout_cycle_and_costs():
    """Same network, same crossbars: one conversion per column and cycle in both; the HP-ADC chip reads the 8
    columns of an ADC one after another (8 x 10 ns reads against one 10 ns read), so spike layers take 8x longer."""
    a, b = cimsim.arch.get("adcless-snn"), cimsim.arch.get("snn-hpadc")
    assert a.cycle_s == pytest.approx(10e-9) and b.cycle_s == pytest.approx(80e-9)
    ra = mapped(a).evaluate([data()], progress=False)
    rb = mapped(b).evaluate([data()], progress=False)
    la, lb = ({r["name"]: r for r in rep.layers} for rep in (ra, rb))
    assert count(ra, ev.conversion("sense-amp"), "step.5") == count(rb, ev.conversion("flash-adc", 5), "step.5") > 0
    assert lb["step.5"]["latency_s"] == pytest.approx(8 * la["step.5"]["latency_s"], rel=1e-12)
    assert ra.components["sense_amp"] < rb.components["adc"]
    assert ra.energy_j < rb.energy_j and ra.latency_s < rb.latency_s


def test_plain_snntorch_models_map_as_they_are():
    snntorch = pytest.importorskip("snntorch")
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), snntorch.Leaky(beta=0.8, threshold=0.5, init_hidden=True),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 5),
                        snntorch.Leaky(beta=0.8, threshold=0.5, init_hidden=True))
    loop = TimeLoop(net, DirectEncoder(T)).eval()
    x, y = data()
    with torch.no_grad():
        expect = loop(x)
    m = mapped(cimsim.arch.get("adcless-snn"), loop)
    assert [type(mod).__name__ for mod in m.model.modules() if "Leaky" in type(mod).__name__ or isinstance(mod, LIF)] \
        == ["LIF", "LIF"]
    with torch.no_grad():
        assert torch.equal(m.set_mode("float")(x), expect)    # the converted neurons behave as snnTorch's
    rep = m.set_mode("analog").evaluate([(x, y)], progress=False)
    assert rep.config["spiking"]["time_steps"] == T
    assert count(rep, ev.LIF_UPDATES) == T * (4 * 8 * 8 + 5)


def test_cimsim_run_takes_a_spiking_network_and_its_time_steps(capsys, tmp_path):
    import json

    from _cli_helpers import assert_one_line_user_error, run_cli
    from cimsim.errors import DatasetError
    from cimsim.workloads import datasets, train, zoo

    try:
        datasets.load("fashion-mnist")
    except DatasetError:
        pytest.skip("Fashion-MNIST is not installed")
    torch.manual_seed(0)
    meta = {"model": "snn_vgg", "dataset": "fashion-mnist", "input_shape": [1, 28, 28], "num_classes": 10,
            "test_accuracy": 0.1}
    ckpt = train.save_checkpoint(tmp_path / "snn_vgg-fashion-mnist.pt", zoo.build("snn_vgg"), meta)
    code, out, err = run_cli(capsys, "run", "--arch", "adcless-snn", "--model", "snn_vgg", "--dataset",
                             "fashion-mnist", "--checkpoint", ckpt, "--time-steps", "2", "--limit", "4",
                             "--calibration", "8", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["config"]["spiking"]["time_steps"] == 2 and rep["config"]["time_steps"] == 2
    assert all(p["time_steps"] == 2 for p in rep["config"]["mapped_layers"].values())
    code, out, err = run_cli(capsys, "run", "--arch", "snn-hpadc", "--model", "lenet5", "--dataset",
                             "fashion-mnist", "--time-steps", "2", "--limit", "4", "--calibration", "8")
    assert_one_line_user_error(code, err, "--time-steps applies to the zoo's spiking networks")
