"""Tests for the digital reference architecture (cimsim.arch), its registry and evaluate_reference.

Expected values are written out from Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm):
fp32 multiply 3.7 pJ, fp32 add 0.9 pJ, 64-bit SRAM read 100 pJ (1 MB) / 20 pJ (32 KB), fp32 multiplier
7700 um^2, fp32 adder 4184 um^2; and the Eyeriss v1 array: 168 MACs at 200 MHz.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import cimsim.arch
from cimsim.arch import DigitalReference
from cimsim.cost import EventCost
from cimsim.errors import ConfigError
from cimsim.ledger import EventLedger
from cimsim.mappers.profile import profile
from cimsim.mappers.reference import evaluate_reference
from cimsim.workloads.datasets import make_synthetic

PJ = 1e-12
UM2 = 1e-12  # m^2 per um^2


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one intra-op thread is fastest and immune to a busy shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

MAC_J = 3.7 * PJ + 0.9 * PJ
WEIGHT_J = 4 * 100 * PJ / 8   # 4 bytes from the 1 MB SRAM, 100 pJ per 8 bytes
ACT_J = 4 * 20 * PJ / 8       # 4 bytes from the 32 KB SRAM, 20 pJ per 8 bytes


# ---------------------------------------------------------------------------------------------- event costs
def test_event_costs_are_horowitz_numbers():
    costs = DigitalReference().event_costs()
    assert set(costs) == {"mac", "add", "mul", "compare", "nonlinear", "weight_read", "act_read", "act_write"}
    # a transcendental evaluation: 6 fp32 multiply-adds (est.)
    assert costs["nonlinear"] == EventCost("alu", pytest.approx(6 * 4.6 * PJ, rel=1e-12))
    assert costs["mac"] == EventCost("mac_array", pytest.approx(4.6 * PJ, rel=1e-12))
    assert costs["mac"].energy_j == pytest.approx(MAC_J, rel=1e-12)
    assert costs["add"] == EventCost("alu", pytest.approx(0.9 * PJ, rel=1e-12))
    assert costs["mul"] == EventCost("alu", pytest.approx(3.7 * PJ, rel=1e-12))
    assert costs["compare"] == EventCost("alu", pytest.approx(0.9 * PJ, rel=1e-12))
    assert costs["weight_read"].component == "weight_sram"
    assert costs["weight_read"].energy_j == pytest.approx(50 * PJ, rel=1e-12)
    assert costs["weight_read"].energy_j == pytest.approx(WEIGHT_J, rel=1e-12)
    for k in ("act_read", "act_write"):
        assert costs[k].component == "act_sram"
        assert costs[k].energy_j == pytest.approx(10 * PJ, rel=1e-12)
        assert costs[k].energy_j == pytest.approx(ACT_J, rel=1e-12)


def test_defaults():
    d = DigitalReference()
    assert d.mac_units == 168
    assert d.clock_hz == 200e6
    assert d.bytes_per_value == 4
    assert d.name == "digital"
    assert d.params()["mac_units"] == 168
    assert set(d.params()) == {"mac_units", "clock_hz", "mul_energy_j", "add_energy_j", "nonlinear_macs",
                               "weight_read_energy_j_per_byte", "act_access_energy_j_per_byte",
                               "mac_area_m2", "bytes_per_value"}


def test_bytes_per_value_scales_memory_costs():
    costs = DigitalReference(bytes_per_value=2).event_costs()
    assert costs["weight_read"].energy_j == pytest.approx(2 * 100 * PJ / 8, rel=1e-12)
    assert costs["act_read"].energy_j == pytest.approx(2 * 20 * PJ / 8, rel=1e-12)
    assert costs["mac"].energy_j == pytest.approx(MAC_J, rel=1e-12)


# ---------------------------------------------------------------------------------------------- cost()
def _hand_ledger() -> EventLedger:
    return EventLedger({
        "conv": {"mac": 1000, "weight_read": 10, "act_read": 20, "act_write": 30, "add": 8},
        "elementwise": {"add": 5, "mul": 7, "compare": 9},
        "big": {"mac": 168 * 3 + 1},
    })


def test_cost_matches_hand_arithmetic():
    led = _hand_ledger()
    led.touch("flatten")
    out = DigitalReference().cost(led)

    e_conv = 1000 * 4.6 * PJ + 10 * 50 * PJ + (20 + 30) * 10 * PJ + 8 * 0.9 * PJ
    e_elem = 5 * 0.9 * PJ + 7 * 3.7 * PJ + 9 * 0.9 * PJ
    e_big = (168 * 3 + 1) * 4.6 * PJ
    assert list(out.energy_per_layer) == ["conv", "elementwise", "big", "flatten"]
    assert out.energy_per_layer["conv"] == pytest.approx(e_conv, rel=1e-12)
    assert out.energy_per_layer["elementwise"] == pytest.approx(e_elem, rel=1e-12)
    assert out.energy_per_layer["big"] == pytest.approx(e_big, rel=1e-12)
    assert out.energy_per_layer["flatten"] == 0

    assert out.latency_per_layer["conv"] == pytest.approx(math.ceil(1008 / 168) / 200e6, rel=1e-12)   # 6 cycles
    assert out.latency_per_layer["conv"] == pytest.approx(6 / 200e6, rel=1e-12)
    assert out.latency_per_layer["elementwise"] == pytest.approx(1 / 200e6, rel=1e-12)   # 21 ops -> 1 cycle
    assert out.latency_per_layer["big"] == pytest.approx(4 / 200e6, rel=1e-12)           # 505 ops -> 4 cycles
    assert out.latency_per_layer["flatten"] == 0

    comp = out.energy_per_component
    assert comp["mac_array"] == pytest.approx((1000 + 505) * 4.6 * PJ, rel=1e-12)
    assert comp["weight_sram"] == pytest.approx(10 * 50 * PJ, rel=1e-12)
    assert comp["act_sram"] == pytest.approx(50 * 10 * PJ, rel=1e-12)
    assert comp["alu"] == pytest.approx((8 + 5 + 9) * 0.9 * PJ + 7 * 3.7 * PJ, rel=1e-12)
    assert sum(comp.values()) == pytest.approx(sum(out.energy_per_layer.values()), rel=1e-12)
    assert out.area_m2 == pytest.approx(168 * (7700 + 4184) * UM2, rel=1e-12)


def test_cost_with_overrides():
    spec = cimsim.arch.get("digital", mac_units="256", clock_hz="1e9")
    out = spec.cost(_hand_ledger())
    assert out.latency_per_layer["conv"] == pytest.approx(math.ceil(1008 / 256) / 1e9, rel=1e-12)
    assert out.latency_per_layer["big"] == pytest.approx(2 / 1e9, rel=1e-12)          # 505 ops -> 2 cycles
    assert out.area_m2 == pytest.approx(256 * 11884 * UM2, rel=1e-12)
    # energies per event do not depend on the array size or clock
    assert out.energy_per_layer == pytest.approx(DigitalReference().cost(_hand_ledger()).energy_per_layer, rel=1e-12)


def test_cost_rejects_unknown_event():
    led = EventLedger({"x": {"mac": 1, "teleport": 3}})
    with pytest.raises(KeyError, match="teleport"):
        DigitalReference().cost(led)


def test_cost_of_a_profiled_linear():
    led = profile(nn.Linear(100, 10), torch.randn(1, 100)).ledger
    out = DigitalReference().cost(led)
    expected = (1000 * MAC_J + 10 * 0.9 * PJ + (1000 + 10) * WEIGHT_J + (100 + 10) * ACT_J)
    assert out.energy_per_layer["Linear"] == pytest.approx(expected, rel=1e-12)
    assert out.latency_per_layer["Linear"] == pytest.approx(math.ceil(1010 / 168) / 200e6, rel=1e-12)


# ---------------------------------------------------------------------------------------------- area / summary
def test_area():
    assert DigitalReference().area_m2 == pytest.approx(168 * (7700 + 4184) * 1e-12, rel=1e-12)
    assert DigitalReference().area_m2 == pytest.approx(1.996512e-6, rel=1e-12)   # ~2.0 mm^2
    assert DigitalReference(mac_units=10).area_m2 == pytest.approx(10 * 11884e-12, rel=1e-12)


def test_summary():
    s = DigitalReference().summary()
    assert s["name"] == "digital"
    assert s["peak_ops_per_s"] == pytest.approx(2 * 168 * 200e6, rel=1e-12)       # 67.2 GOPS
    assert s["power_w"] == pytest.approx(168 * 200e6 * 4.6 * PJ, rel=1e-12)       # 0.15456 W
    assert s["area_m2"] == pytest.approx(168 * 11884 * UM2, rel=1e-12)
    assert s["ce_gops_per_s_per_mm2"] == pytest.approx(s["peak_ops_per_s"] / 1e9 / (s["area_m2"] * 1e6), rel=1e-12)
    assert s["ce_gops_per_s_per_mm2"] == pytest.approx(67.2 / 1.996512, rel=1e-9)
    assert s["pe_gops_per_w"] == pytest.approx(s["peak_ops_per_s"] / 1e9 / s["power_w"], rel=1e-12)
    assert s["pe_gops_per_w"] == pytest.approx(67.2 / 0.15456, rel=1e-9)
    # a MAC is 2 ops, so energy efficiency is 2 / (energy per MAC) regardless of array size and clock
    assert s["pe_gops_per_w"] == pytest.approx(2 / MAC_J / 1e9, rel=1e-12)
    bd = s["breakdown"]
    assert sum(v["power_w"] for v in bd.values()) == pytest.approx(s["power_w"], rel=1e-12)
    assert sum(v["area_m2"] for v in bd.values()) == pytest.approx(s["area_m2"], rel=1e-12)
    assert s["params"] == DigitalReference().params()


def test_summary_follows_overrides():
    s = cimsim.arch.get("digital", mac_units=256, clock_hz=1e9).summary()
    assert s["peak_ops_per_s"] == pytest.approx(2 * 256 * 1e9, rel=1e-12)
    assert s["power_w"] == pytest.approx(256 * 1e9 * MAC_J, rel=1e-12)
    # compute density depends only on the clock and the area of one MAC
    assert s["ce_gops_per_s_per_mm2"] == pytest.approx(2 * 1e9 / 1e9 / (11884 * UM2 * 1e6), rel=1e-12)


# ---------------------------------------------------------------------------------------------- cimsim.arch.get
def test_names():
    assert "digital" in cimsim.arch.names()


@pytest.mark.parametrize("name", ["digital", "Digital", "DIGITAL", "  digital "])
def test_get_is_case_insensitive(name):
    spec = cimsim.arch.get(name)
    assert isinstance(spec, DigitalReference)
    assert spec == DigitalReference()


def test_get_converts_string_overrides():
    spec = cimsim.arch.get("digital", mac_units="256", clock_hz="1e9")
    assert spec.mac_units == 256 and type(spec.mac_units) is int
    assert spec.clock_hz == 1e9 and type(spec.clock_hz) is float
    assert cimsim.arch.get("digital", bytes_per_value="2.0").bytes_per_value == 2
    assert type(cimsim.arch.get("digital", bytes_per_value="2.0").bytes_per_value) is int
    assert cimsim.arch.get("digital", mac_units="1e3").mac_units == 1000
    assert cimsim.arch.get("digital", mul_energy_j="1e-12").mul_energy_j == 1e-12


def test_get_accepts_native_overrides():
    spec = cimsim.arch.get("digital", mac_units=64, clock_hz=5e8)
    assert (spec.mac_units, spec.clock_hz) == (64, 5e8)


def test_get_unknown_parameter():
    with pytest.raises(ConfigError) as exc:
        cimsim.arch.get("digital", mac_unitz="256")
    msg = str(exc.value)
    assert "mac_unitz" in msg
    assert "mac_units" in msg and "clock_hz" in msg   # the valid parameters are listed


@pytest.mark.parametrize("key,value,kind", [("mac_units", "many", "int"), ("clock_hz", "fast", "float"),
                                            ("mac_units", "2.5", "int"), ("mac_units", "", "int")])
def test_get_non_numeric_value(key, value, kind):
    with pytest.raises(ConfigError) as exc:
        cimsim.arch.get("digital", **{key: value})
    msg = str(exc.value)
    assert key in msg and repr(value) in msg and kind in msg


@pytest.mark.parametrize("key,value", [("mac_units", "0"), ("mac_units", "-4"), ("clock_hz", "0"),
                                       ("clock_hz", "-1e6"), ("mul_energy_j", "0"), ("clock_hz", "nan"),
                                       ("clock_hz", "inf"), ("mac_units", 0), ("clock_hz", -2.0)])
def test_get_rejects_non_positive_or_non_finite(key, value):
    with pytest.raises(ConfigError) as exc:
        cimsim.arch.get("digital", **{key: value})
    msg = str(exc.value)
    assert key in msg
    assert "must be" in msg


def test_direct_construction_rejects_bad_values():
    with pytest.raises(ValueError, match="mac_units"):
        DigitalReference(mac_units=0)
    with pytest.raises(ValueError, match="clock_hz"):
        DigitalReference(clock_hz=float("nan"))


def test_get_unknown_architecture():
    with pytest.raises(ConfigError) as exc:
        cimsim.arch.get("tpu")
    msg = str(exc.value)
    assert "tpu" in msg and "digital" in msg


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        cimsim.arch.get("digital", mac_units="zero")


# ---------------------------------------------------------------------------------------------- evaluate_reference
@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(n_train=64, n_test=50, shape=(1, 28, 28))


def _nearest_mean_model(ds) -> nn.Module:
    """A conv + linear model whose linear layer is a nearest-class-mean classifier (accuracy near 1)."""
    torch.manual_seed(0)
    k = ds.num_classes
    means = torch.stack([ds.x_train[ds.y_train == c].mean(0) if (ds.y_train == c).any()
                         else torch.zeros(ds.input_shape) for c in range(k)])
    fc = nn.Linear(28 * 28, k)
    with torch.no_grad():
        fc.weight.copy_(means.flatten(1))
        fc.bias.copy_(-0.5 * (means.flatten(1) ** 2).sum(1))
    conv = nn.Conv2d(1, 1, 1, bias=False)        # identity 1x1 conv: a second matrix layer in the ledger
    with torch.no_grad():
        conv.weight.fill_(1.0)
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), fc)


def test_evaluate_reference(synthetic):
    model = _nearest_mean_model(synthetic)
    loader = synthetic.loader("test", batch_size=16)
    spec = cimsim.arch.get("digital")
    rep = evaluate_reference(model, loader, spec, progress=False)

    with torch.no_grad():
        hand = int((model(synthetic.x_test).argmax(1) == synthetic.y_test).sum()) / len(synthetic.y_test)
    assert rep.n_examples == 50
    assert rep.accuracy == pytest.approx(hand, abs=1e-12)
    assert rep.accuracy > 0.5   # the nearest-mean classifier actually works on this data
    assert rep.digital_accuracy == rep.accuracy

    prof = profile(model, synthetic.x_test[:1])
    names = [row["name"] for row in rep.layers]
    assert names == prof.ledger.layers() == ["0", "1", "2", "3"]
    assert [row["kind"] for row in rep.layers] == ["Conv2d", "ReLU", "Flatten", "Linear"]
    assert [row["macs"] for row in rep.layers] == [784, 0, 0, 7840]

    # by hand: conv 784 MACs, 1 weight, 784+784 activations; relu 784 compares;
    # fc 7840 MACs, 10 bias adds, 7850 weights, 784+10 activations
    e_conv = 784 * MAC_J + 1 * WEIGHT_J + 1568 * ACT_J
    e_relu = 784 * 0.9 * PJ
    e_fc = 7840 * MAC_J + 10 * 0.9 * PJ + 7850 * WEIGHT_J + 794 * ACT_J
    by_name = {row["name"]: row for row in rep.layers}
    assert by_name["0"]["energy_j"] == pytest.approx(e_conv, rel=1e-12)
    assert by_name["1"]["energy_j"] == pytest.approx(e_relu, rel=1e-12)
    assert by_name["2"]["energy_j"] == 0
    assert by_name["3"]["energy_j"] == pytest.approx(e_fc, rel=1e-12)
    assert rep.energy_j == pytest.approx(e_conv + e_relu + e_fc, rel=1e-12)
    assert by_name["0"]["latency_s"] == pytest.approx(math.ceil(784 / 168) / 200e6, rel=1e-12)
    assert by_name["3"]["latency_s"] == pytest.approx(math.ceil(7850 / 168) / 200e6, rel=1e-12)

    assert sum(row["energy_j"] for row in rep.layers) == pytest.approx(rep.energy_j, rel=1e-12)
    assert sum(row["latency_s"] for row in rep.layers) == pytest.approx(rep.latency_s, rel=1e-12)
    assert sum(rep.components.values()) == pytest.approx(rep.energy_j, rel=1e-12)
    assert rep.throughput_inf_per_s == pytest.approx(1 / rep.latency_s, rel=1e-12)
    assert rep.area_m2 == pytest.approx(168 * 11884 * UM2, rel=1e-12)

    assert rep.config["arch"] == "digital"
    assert rep.config["arch_params"] == spec.params()
    assert rep.config["input_shape"] == [1, 28, 28]
    assert rep.config["uncosted_layers"] == []
    assert rep.config["events_per_inference"] == prof.ledger.totals()


def test_evaluate_reference_on_zoo_model_sums(synthetic):
    from cimsim.workloads import zoo

    torch.manual_seed(0)
    model = zoo.build("resnet20")
    loader = synthetic.loader("test", batch_size=16)
    rep = evaluate_reference(model, loader, cimsim.arch.get("digital", mac_units="256"), progress=False)
    with torch.no_grad():
        model.eval()
        hand = int((model(synthetic.x_test).argmax(1) == synthetic.y_test).sum()) / len(synthetic.y_test)
    assert rep.accuracy == pytest.approx(hand, abs=1e-12)
    assert rep.n_examples == 50
    assert sum(row["macs"] for row in rep.layers) == 31_021_952
    assert sum(row["energy_j"] for row in rep.layers) == pytest.approx(rep.energy_j, rel=1e-12)
    assert sum(row["latency_s"] for row in rep.layers) == pytest.approx(rep.latency_s, rel=1e-12)
    assert sum(rep.components.values()) == pytest.approx(rep.energy_j, rel=1e-12)
    assert rep.throughput_inf_per_s == pytest.approx(1 / rep.latency_s, rel=1e-12)
    # compute bound: at least total ops / array size cycles
    ops = sum(rep.config["events_per_inference"].get(k, 0) for k in ("mac", "add", "mul", "compare"))
    assert rep.latency_s >= ops / 256 / 200e6
    assert rep.config["uncosted_layers"] == []
