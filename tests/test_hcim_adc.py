"""HCiM's adc_layers: the network's first and/or last layer read by the baselines' SAR ADC instead of the comparators
(arch/hcim.py): the fine-tuning forward equals the engine, the costs come from the events, the default is unchanged."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim import events as ev
from cimsim import networks
from cimsim.cli import main
from cimsim.errors import ConfigError
from cimsim.mappers import qat
from tests._hcim_nets import inputs, small_model


def test_the_default_has_no_adc_and_keeps_its_names():
    a = cimsim.arch.get("hcim")
    assert a.adc_layers == "none" and not a.has_adc
    assert not {"adc", "sample_hold", "shift_add"} & set(a.summary()["breakdown"])
    assert a.adc_read_spec(False, True, True) is None
    assert a.event_costs()[ev.SHIFT_ADDS].energy_j == 0.0
    cfg = qat.PSQConfig.from_arch(a)
    assert cfg.tag == "psq-ternary-w4a4c1d1r128t0.5"
    # the bits of an unused ADC are not part of the configuration (one configuration, one checkpoint name)
    assert qat.PSQConfig(adc_bits=7) == qat.PSQConfig() == cfg
    assert qat.PSQConfig(adc_layers="last", adc_bits=7).tag == "psq-ternary-w4a4c1d1r128t0.5-adc7last"
    assert qat.PSQConfig(adc_layers="first,last").tag == "psq-ternary-w4a4c1d1r128t0.5-adc4firstlast"
    for bad, match in (({"adc_layers": "middle"}, "adc_layers"), ({"adc_layer_bits": 0}, "adc_layer_bits")):
        with pytest.raises(ConfigError, match=match):
            cimsim.arch.get("hcim", **bad)
    with pytest.raises(ConfigError, match="adc_layers"):
        qat.PSQConfig(adc_layers="all")


def test_adc_quantizer_is_the_engines():
    lo, lsb = qat.adc_lo_lsb(-4.985, 4.985, 4)
    assert (lo, lsb) == (-5.0, 1.0)                      # 10 levels fit 15 codes: one level per code
    assert qat.adc_lo_lsb(-20.0, 20.0, 4) == (-20.0, 4.0)   # 40 / 15 = 2.67 -> the next power of two
    assert qat.adc_lo_lsb(-20.0, 20.0, 7) == (-20.0, 1.0)
    ps = torch.arange(-30.0, 31.0, requires_grad=True)
    q = qat.adc_quantize(ps, -20.0, 4.0, 4)              # codes 0..15: values -20, -16, ..., 40
    assert torch.equal(q[ps.detach() == -30.0], torch.tensor([-20.0]))
    assert torch.equal(q[ps.detach() == 30.0], torch.tensor([32.0]))            # half up: (30 + 20) / 4 = 12.5 -> 13
    assert torch.equal(q[ps.detach() == 1.0], torch.tensor([0.0]))
    assert set(((q.detach() + 20) / 4).tolist()) <= set(range(16))
    q.sum().backward()                                   # straight through inside the range, zero beyond it
    assert torch.equal(ps.grad, ((ps.detach() >= -20) & (ps.detach() <= 40)).double().float())
    # at 7 bits a range of integer values is converted exactly
    v = torch.arange(-20.0, 21.0)
    assert torch.equal(qat.adc_quantize(v, -20.0, 1.0, 7), v)
    # the range rule of the engine's calibration: [-p, max(p, 1 - p)], p the 99.9th percentile of |PS|
    vals = torch.arange(-1000.0, 1001.0)
    p = float(np.percentile(np.abs(vals.double().numpy()), 99.9))
    assert qat.adc_range(vals) == (-p, p)
    assert qat.adc_range(torch.zeros(10)) == (0.0, 1.0)


@pytest.mark.parametrize("layers, bits, backend", [("last", 4, "numba"), ("last", 7, "torch"),
                                                    ("first,last", 4, "torch"), ("first", 4, "numba")])
def test_adc_layers_equal_the_mapped_crossbars(layers, bits, backend):
    """The layers adc_layers names are fine-tuned and mapped with the ADC (pairs converted once per cycle and row block
    over the layer's range, kept in the network); the fine-tuning forward equals the engine (ideal cells) exactly."""
    model, x = small_model(), inputs()
    arch = cimsim.arch.get("hcim", cell="ideal", rows=16, adc_layers=layers, adc_layer_bits=bits)
    cfg = qat.PSQConfig.from_arch(arch)
    assert (cfg.adc_layers, cfg.adc_bits) == (layers, bits)
    psq = qat.prepare(model, cfg, [x])
    roles = {"0": "first" in layers, "3": False, "6": "last" in layers}
    assert {n: psq[int(n)].psq_adc for n in roles} == roles
    for n, adc in roles.items():
        assert hasattr(psq[int(n)], "psq_adc_range") == adc and hasattr(psq[int(n)], "psq_alpha") != adc
    with torch.no_grad():
        ref = psq(x)
    mapped = cimsim.map(psq, arch, calibration=x, backend=backend, progress=False)
    np.testing.assert_allclose(mapped(x).numpy(), ref.numpy(), rtol=0, atol=1e-12 * float(ref.abs().max()))
    # the ledger of the evaluation (its 6 examples) counts the conversions
    mapped.evaluate([(x, torch.zeros(6, dtype=torch.long))], progress=False)
    adc_event = ev.conversion("sar-adc", bits)
    for n, adc in roles.items():
        layer = mapped.mapped_layers[n]
        spec = layer.crossbars[0].spec
        events = mapped.crossbar_events().layer(n)
        if adc:
            assert spec.pair_readout and spec.readout.bits == bits and layer.crossbars[0].column_scales is None
            assert spec.adc_range == tuple(psq[int(n)].psq_adc_range.tolist())
            xb = layer.crossbars[0]   # one conversion per (example, position, input cycle, row block, pair)
            assert events[adc_event] == 6 * layer.plan.positions * xb.cycles * len(xb.row_blocks) * xb.readout_columns
            assert "ternary_conversion" not in events and ev.NONZERO_DECISIONS not in events
        else:
            assert adc_event not in events and events["ternary_conversion"] > 0
    # the mapping must be the fine-tuned one: the same network on the default architecture is refused
    with pytest.raises(ConfigError, match="fine-tuned for"):
        cimsim.map(psq, cimsim.arch.get("hcim", cell="ideal", rows=16), calibration=x, progress=False)


def test_adc_layer_costs_come_from_their_events():
    """ADC, sample-and-hold and shift-and-add energies of the ADC-read layers are their events times the baselines'
    unit energies (the 4-bit ISAAC baseline's conversion); the comparator layers' shift-adds stay free (DCiM adds)."""
    model, x = small_model(), inputs()
    arch = cimsim.arch.get("hcim", rows=16, adc_layers="last")
    isaac4 = cimsim.arch.get("isaac", adc_bits=4, weight_bits=4, input_bits=4, cell_bits=1, rows=16,
                             signed="differential")
    assert arch.layer_adc_energy_j() == pytest.approx(isaac4.adc_energy_j(), rel=1e-12)
    costs = arch.event_costs()
    assert costs[ev.SHIFT_ADDS].energy_j == pytest.approx(isaac4.event_costs()[ev.SHIFT_ADDS].energy_j, rel=1e-12)
    assert costs[ev.SAMPLE_HOLDS].energy_j == pytest.approx(isaac4.event_costs()[ev.SAMPLE_HOLDS].energy_j,
                                                            rel=1e-12)
    assert {"adc", "sample_hold", "shift_add", "comparator", "dcim", "crossbar"} == set(arch.macro_kinds())
    assert ev.conversion("sar-adc", 4) in arch.emitted_events() and ev.SAMPLE_HOLDS in arch.emitted_events()
    psq = qat.prepare(model, qat.PSQConfig.from_arch(arch), [x])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapped = cimsim.map(psq, arch, calibration=x, progress=False)
    rep = mapped.evaluate([(x, torch.zeros(6, dtype=torch.long))], progress=False)
    led = mapped.crossbar_events()
    conv = led.layer("6")[ev.conversion("sar-adc", 4)] / 6            # per inference
    sa = led.layer("6")[ev.SHIFT_ADDS] / 6
    leak = rep.config["leakage_j"]
    assert rep.components["adc"] == pytest.approx(conv * arch.layer_adc_energy_j() + leak.get("adc", 0), rel=1e-12)
    assert rep.components["sample_hold"] == pytest.approx(conv * costs[ev.SAMPLE_HOLDS].energy_j
                                                          + leak.get("sample_hold", 0), rel=1e-12)
    assert rep.components["shift_add"] == pytest.approx(sa * costs[ev.SHIFT_ADDS].energy_j
                                                        + leak.get("shift_add", 0), rel=1e-12)
    assert sum(rep.components.values()) == pytest.approx(rep.energy_j, rel=1e-12)
    # the report's per-layer rows: the ADC layer has no comparator decisions, the others no ADC conversions
    default = cimsim.arch.get("hcim", rows=16)
    psq0 = qat.prepare(model, qat.PSQConfig.from_arch(default), [x])
    rep0 = cimsim.map(psq0, default, calibration=x, progress=False).evaluate(
        [(x, torch.zeros(6, dtype=torch.long))], progress=False)
    assert "adc" not in rep0.components and rep0.components["comparator"] > rep.components["comparator"]


def test_adc_layers_train_and_round_trip(tmp_path):
    from cimsim.workloads import zoo

    torch.manual_seed(0)
    model = zoo.build_for("lenet5", (1, 28, 28), 10).eval()
    x = torch.rand(8, 1, 28, 28)
    cfg = qat.PSQConfig(adc_layers="first,last", adc_bits=7)
    psq = qat.prepare(model, cfg, [x])
    assert {n for n, m in psq.named_modules() if qat.is_psq(m) and m.psq_adc} == {"features.0", "classifier.5"}
    # the gradient reaches the ADC layers' weights and input steps
    psq.train()
    qat.learn_input_steps(psq, True)
    nn.functional.cross_entropy(psq(x), torch.arange(8) % 10).backward()
    assert float(psq.classifier[5].weight.grad.abs().sum()) > 0 and float(psq.features[0].weight.grad.abs().sum()) > 0
    qat.learn_input_steps(psq, False)
    psq.eval()
    meta = {"model": "lenet5", "dataset": "fashion-mnist", "test_accuracy": 0.9, "input_shape": [1, 28, 28],
            "num_classes": 10, "psq": {**cfg.__dict__}, "batchnorm_folded": psq.psq_folded}
    path = networks.save_psq_checkpoint(tmp_path / "m.pt", psq, meta)
    back, _ = networks.load_psq_checkpoint(path)
    assert torch.equal(back.classifier[5].psq_adc_range, psq.classifier[5].psq_adc_range)
    with torch.no_grad():
        assert torch.equal(back(x), psq(x))
    assert networks.psq_checkpoint_name("lenet5", "fashion-mnist", cfg) == \
        "lenet5-fashion-mnist-psq-ternary-w4a4c1d1r128t0.5-adc7firstlast.pt"


def test_bad_adc_layers_on_the_cli(capsys):
    assert main(["archs", "show", "hcim", "--set", "adc_layers=middle"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "adc_layers" in err and "first,last" in err
