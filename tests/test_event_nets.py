"""The event-stream networks of the zoo (snn_dvsnet, snn_flownet): shapes, exact mapping, AEE, training, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import cimsim
from cimsim.errors import ConfigError
from cimsim.metrics import endpoint_error
from cimsim.spiking import EventEncoder
from cimsim.workloads import event_synth, train, zoo
from cimsim.workloads.snn_zoo import SpikingDVSNet, SpikingFlowNet

sys.path.insert(0, str(Path(__file__).parent))
from test_adcless_snn import lossless_baseline, traces   # noqa: E402  the SNN exactness checker's helpers
from test_events import write_gesture_release            # noqa: E402

pytestmark = pytest.mark.usefixtures("isolated_data")   # tests/conftest.py
ROOT = Path(__file__).resolve().parents[1]


def excited(net, gain=3.0, mean=1.0):
    """Seeded conv weights N(mean, gain^2) / sqrt(fan-in), zero bias: every neuron layer fires, few saturate."""
    g = torch.Generator().manual_seed(3)
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            fan = m.weight[0].numel()
            m.weight.data = (torch.randn(m.weight.shape, generator=g) * gain + mean) / fan ** 0.5
            m.bias.data.zero_()
    return net.eval()


def frames(n, t, size, seed=1):
    return torch.poisson(torch.full((n, t, 2, size, size), 0.5), generator=torch.Generator().manual_seed(seed))


def test_shapes_follow_the_paper():
    net = zoo.build_for("snn_dvsnet", (5, 2, 64, 64), 11)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in net.modules() if isinstance(m, torch.nn.MaxPool2d)]
    fc = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) == 11 and {c.out_channels for c in convs} == {32} and len(pools) == 5
    assert [(f.in_features, f.out_features) for f in fc] == [(128, 11)]       # FC 128 -> 11 (papers.md)
    assert net.time_steps == 5 and net(torch.zeros(2, 5, 2, 64, 64)).shape == (2, 11)
    flow = zoo.build_for("snn_flownet", (5, 2, 64, 64), 2)
    enc = [flow.step.enc1, flow.step.enc2, flow.step.enc3, flow.step.enc4]
    assert [c.stride for c in enc] == [(2, 2)] * 4 and [c.out_channels for c in enc] == [16, 32, 64, 128]
    assert flow(torch.zeros(2, 5, 2, 64, 64)).shape == (2, 2, 64, 64)


def test_wrong_inputs_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="need an event network"):
        zoo.build_for("lenet5", (5, 2, 32, 32), 10)
    with pytest.raises(ConfigError, match="takes event frames"):
        zoo.build_for("snn_dvsnet", (1, 28, 28), 10)
    with pytest.raises(ConfigError, match="does not hold 5 time bins"):
        EventEncoder(5)(torch.zeros(2, 4, 2, 8, 8))
    assert torch.equal(EventEncoder(3)(torch.arange(12.).reshape(2, 3, 2))[1], torch.tensor([[2., 3.], [8., 9.]]))
    from cimsim.workloads.snn_zoo import with_time_steps
    with pytest.raises(ConfigError, match="cannot change them"):
        with_time_steps(zoo.build_for("snn_dvsnet", (5, 2, 32, 32), 10), 10)
    assert with_time_steps(zoo.build_for("snn_dvsnet", (5, 2, 32, 32), 10), 5).time_steps == 5


@pytest.mark.parametrize("which", ["dvsnet", "flownet"])
def test_ideal_crossbars_equal_the_quantized_event_snn_every_time_step(which):
    """The root test on the event networks (tiny inputs): with ideal cells and a lossless readout, every LIF's
    spikes and membrane at every step equal the quantized network's in integer arithmetic."""
    if which == "dvsnet":
        net, x = excited(SpikingDVSNet(2, 32, 11, time_steps=2, width=4)), frames(4, 2, 32)
    else:
        net, x = excited(SpikingFlowNet(2, 16, time_steps=2, width=(3, 3, 3, 3))), frames(3, 2, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = cimsim.map(net, lossless_baseline(), calibration=x, seed=1, progress=False)
    analog, digital = traces(m.set_mode("analog"), x), traces(m.set_mode("digital"), x)
    n_lif = sum(isinstance(mod, cimsim.spiking.LIF) for mod in net.modules())
    assert len(analog) == 2 * n_lif
    for (n, s1, u1), (_, s2, u2) in zip(analog, digital):
        assert torch.equal(s1, s2) and torch.equal(u1, u2), n
    rates = {n: float(s.mean()) for n, s, _ in analog}
    assert all(r > 0 for r in rates.values()) and sum(r < 1 for r in rates.values()) >= len(rates) // 2, rates
    layers = list(m.mapped_layers.values())   # event counts drive the first layer (8-bit, bit-serial), spikes the rest
    assert [layer.crossbars[0].spec.input_bits for layer in layers] == [8] + [1] * (len(layers) - 1)


def test_flow_report_gives_the_average_endpoint_error():
    net = excited(SpikingFlowNet(2, 16, time_steps=2, width=(3, 3, 3, 3)))
    x, y = frames(3, 2, 16), torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = cimsim.map(net, cimsim.arch.get("adcless-snn"), calibration=x, seed=1, progress=False)
    rep = m.evaluate([(x[:2], y[:2]), (x[2:], y[2:])], progress=False)
    with torch.no_grad():
        want = float(endpoint_error(m(x), y).mean())
        want_ref = float(endpoint_error(net(x), y).mean())
    assert rep.config["aee_px"] == pytest.approx(want, rel=1e-6)
    assert rep.config["digital_aee_px"] == pytest.approx(want_ref, rel=1e-6)
    assert np.isnan(rep.accuracy) and f"AEE                   {want:.4f} px" in rep.table()
    # AEE by hand for one sample: mean over pixels of the Euclidean distance
    p, t = torch.zeros(1, 2, 2, 2), torch.tensor([[[[3., 0.], [0., 0.]], [[4., 0.], [0., 1.]]]])
    assert float(endpoint_error(p, t)) == pytest.approx((5 + 1) / 4)


def test_train_flownet_records_aee_and_reloads(tmp_path):
    data = event_synth.make_flow_synth(6, 2, seed=0)
    r = train.train("snn_flownet", data, epochs=1, batch_size=3, progress=False)
    meta = r.metadata
    assert meta["metric"] == "aee" and meta["test_accuracy"] is None and meta["test_aee"] > 0
    assert meta["test_aee"] == pytest.approx(train.score(r.model, data.x_test, data.y_test), rel=1e-6)
    path = train.save_checkpoint(tmp_path / "f.pt", r.model, meta)
    model, back = train.load_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(model(data.x_test), r.model(data.x_test))
    assert back["test_aee"] == meta["test_aee"]


def cli(*args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "cimsim", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def test_cli_trains_and_runs_dvsnet_on_a_dvs_gesture_release(tmp_path):
    write_gesture_release(tmp_path / "DvsGesture", np.random.default_rng(0), per_split=1)
    home = {"CIMSIM_HOME": str(tmp_path / "home")}
    r = cli("train", "--model", "snn_dvsnet", "--dataset", "dvs-gesture", "--data-dir", str(tmp_path),
            "--epochs", "1", "--batch-size", "3", "--json", env_extra=home)
    assert r.returncode == 0, r.stderr
    ckpt = json.loads(r.stdout)["checkpoint"]
    r = cli("run", "--arch", "adcless-snn", "--model", "snn_dvsnet", "--dataset", "dvs-gesture", "--data-dir",
            str(tmp_path), "--checkpoint", ckpt, "--limit", "2", "--calibration", "2", "--json", env_extra=home)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["config"]["spiking"]["time_steps"] == 10 and rep["energy_j"] > 0 and 0 <= rep["accuracy"] <= 1
    # a corrupt recording: one line, exit 2
    (tmp_path / "DvsGesture" / "user01_led.aedat").write_bytes(b"#!AER-DAT3.1\r\n#!END-HEADER\r\n\x01\x00")
    r = cli("train", "--model", "snn_dvsnet", "--dataset", "dvs-gesture", "--data-dir", str(tmp_path), env_extra=home)
    assert r.returncode == 2 and "user01_led.aedat is truncated" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_sense_amp_finetune_of_the_flow_net_scores_aee():
    from cimsim.mappers import snn_qat

    data = event_synth.make_flow_synth(4, 2, seed=1)
    torch.manual_seed(0)
    net = SpikingFlowNet(2, 64, time_steps=5, width=(4, 4, 4, 4)).eval()
    cfg = snn_qat.SAConfig.from_arch(cimsim.arch.get("adcless-snn"))
    work, meta = snn_qat.finetune(net, cfg, data, snn_qat.SnnFinetuneRecipe(epochs=1, batch_size=2), progress=False)
    assert meta["metric"] == "aee" and meta["test_accuracy"] is None
    with torch.no_grad():
        assert meta["test_aee"] == pytest.approx(float(endpoint_error(work.eval()(data.x_test), data.y_test).mean()),
                                                 rel=1e-6)


@pytest.mark.parametrize("name,make", [("snn_dvsnet", lambda: event_synth.make_gesture_synth(11, 11)),
                                       ("snn_flownet", lambda: event_synth.make_flow_synth(1, 4))])
def test_every_layer_fires_at_initialisation(name, make):
    """Without the init gain the event inputs die out after two or three LIF layers and nothing trains; with it
    every layer fires 0.5-20 % of the time on the synthetic data (measured 1-8 %)."""
    data = make()
    torch.manual_seed(0)
    net = zoo.build_for(name, data.input_shape, data.num_classes).eval()
    rates = {}
    for n, s, _ in traces(net, data.x_test[:4]):
        rates.setdefault(n, []).append(float(s.mean()))
    assert len(rates) == (11 if name == "snn_dvsnet" else 10)
    assert all(0.005 < np.mean(r) < 0.2 for r in rates.values()), rates
