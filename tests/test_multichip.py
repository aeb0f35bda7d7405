"""A network on a chain of equal chips (arch/chips.py, TiledChip.chips): placement of the layers in pipeline order,
the bytes over the chip-to-chip links, their energy (ISAAC's HyperTransport power per byte) and the period bound."""

import pytest

import cimsim
from cimsim import events as ev
from cimsim.arch.chips import chips_to_hold, link_traffic, placement
from cimsim.cost import LayerPlan
from cimsim.ledger import EventLedger


def _plans(*specs):
    """(name, arrays, positions, out_features) -> LayerPlans in pipeline order."""
    return {n: LayerPlan(n, "Linear", in_features=16, out_features=o, groups=1, positions=p, arrays=a)
            for n, a, p, o in specs}


def test_layers_fill_the_chips_in_pipeline_order_and_may_straddle():
    plans = _plans(("a", 3, 1, 10), ("b", 5, 1, 30), ("c", 2, 1, 4))
    assert placement(plans, {"a": 1, "b": 1, "c": 1}, 4) == {"a": (0, 0), "b": (0, 1), "c": (2, 2)}
    assert placement(plans, {"a": 2, "b": 1, "c": 1}, 4) == {"a": (0, 1), "b": (1, 2), "c": (2, 3)}
    assert chips_to_hold(plans, 4) == 3 and chips_to_hold(plans, 10) == 1 and chips_to_hold(plans, 100) == 1


def test_link_bytes_carry_what_is_made_on_one_side_and_needed_on_the_other():
    """a (chip 0) feeds b, one copy split over chips 0 and 1: chip 1 needs all of a's 10 x 2 B (20 B over boundary 0).
    b's 60 B are made 1/5 on chip 0 and 4/5 on chip 1; c (one copy, chip 2) needs them all: 12 B over boundary 0 and
    60 B over boundary 1, all forward."""
    plans = _plans(("a", 3, 1, 10), ("b", 5, 1, 30), ("c", 2, 1, 4))
    per_layer, boundary = link_traffic(plans, {"a": 1, "b": 1, "c": 1}, 4, 3, 2, 8)
    assert boundary == [(pytest.approx(20 + 12), 0.0), (pytest.approx(60), 0.0)]
    assert per_layer == {"a": 20, "b": pytest.approx(72), "c": 0}
    # a next layer of several copies splits the positions: each chip needs its share. a (4 arrays, chips 0-1 of 2-array
    # chips, 30 x 2 B out) and b (2 copies of 1 array, chip 2): chip 0 makes half, chip 1 half, chip 2 needs all
    plans = _plans(("a", 4, 1, 30), ("b", 1, 2, 4))
    per_layer, boundary = link_traffic(plans, {"a": 1, "b": 2}, 2, 3, 2, 8)
    assert boundary == [(30.0, 0.0), (60.0, 0.0)]
    # a: 3 arrays on 2-array chips 0-1 (2/3 and 1/3 of its 60 B made there); b: 3 copies of 1 array on chips 1-2
    # (1/3 and 2/3 needed there): 2/3 cross boundary 0 (made on 0, needed beyond) and 2/3 boundary 1
    plans = _plans(("a", 3, 1, 30), ("b", 1, 3, 4))
    per_layer, boundary = link_traffic(plans, {"a": 1, "b": 3}, 2, 3, 2, 8)
    assert boundary == [(pytest.approx(40.0), 0.0), (pytest.approx(40.0), 0.0)]
    # the next layer's input size known (after pooling, say): its 25 values at its 4 input bits (12.5 B) cross instead
    plans = _plans(("a", 3, 1, 10), ("b", 5, 1, 30))
    plans["b"].input_values, plans["b"].input_bits = 25, 4
    per_layer, boundary = link_traffic(plans, {"a": 1, "b": 1}, 4, 2, 2, 8)
    assert boundary == [(12.5, 0.0)] and per_layer["a"] == 12.5
    plans["b"].input_bits = 0                                  # the architecture's 8 bits
    assert link_traffic(plans, {"a": 1, "b": 1}, 4, 2, 2, 8)[1] == [(25.0, 0.0)]
    # everything on one chip: nothing crosses
    per_layer, boundary = link_traffic(plans, {"a": 1, "b": 1}, 100, 1, 2, 8)
    assert boundary == [] and sum(per_layer.values()) == 0


def test_a_chain_of_chips_costs_its_links_and_their_bandwidth_bounds_the_period():
    """Two ISAAC chips (16,128 crossbars each) hold a 20,000-array layer: it straddles both, the next layer (one copy)
    sits on chip 1 and needs the share of the first layer's 10^6 x 2 B outputs made on chip 0 (16,128 / 20,000 of
    them: 1.61 MB at 203 pJ/B, over 6.4 GB/s one way)."""
    one = cimsim.arch.get("isaac", weight_bits=8, input_bits=8)
    two = one.with_params(chips=2)
    assert two.crossbars == 2 * one.crossbars == 2 * 16128 and two.area_m2 == pytest.approx(2 * one.area_m2)
    plans = _plans(("big", 20000, 1, 10 ** 6), ("small", 10, 1, 10))
    led = EventLedger({"big": {ev.ARRAY_READ_CYCLES: 1.0}, "small": {ev.ARRAY_READ_CYCLES: 1.0}})
    per_layer, boundary = two.link_traffic(plans)
    assert two.copies(plans) == {"big": 1, "small": 1}
    sent = 2e6 * 16128 / 20000
    assert boundary == [(pytest.approx(sent), 0.0)] and per_layer["big"] == pytest.approx(sent)
    cost = two.cost(led, plans)
    assert cost.energy_per_component["hyper_transport"] == pytest.approx(sent * 2.6 / 12.8e9, rel=1e-12)
    assert cost.config["link_s"] == pytest.approx(sent / 6.4e9, rel=1e-12)
    assert cost.throughput_inf_per_s == pytest.approx(6.4e9 / sent, rel=1e-12)   # the links bind: 252 us
    assert cost.config["chips"] == 2 and cost.config["chips_to_hold"] == 2
    # on one chip the same network does not fit (one copy each, no link traffic costed)
    c1 = one.cost(led, plans)
    assert "hyper_transport" not in c1.energy_per_component and c1.config["chips_to_hold"] == 2


def test_one_chip_keeps_every_number():
    """chips=1 is the default and adds nothing: ISAAC's Table 6 roll-up, 65.8 W and 85.4 mm^2."""
    a = cimsim.arch.get("isaac")
    assert a.chips == 1 and a.hierarchy()["chips"] == 1
    s = a.summary()
    assert s["power_w"] == pytest.approx(65.8, rel=0.01) and s["area_m2"] == pytest.approx(85.4e-6, rel=0.01)
    three = a.with_params(chips=3).summary()
    assert three["power_w"] == pytest.approx(3 * s["power_w"], rel=1e-12)
    assert three["leakage_w"] == pytest.approx(3 * s["leakage_w"], rel=1e-12)


def test_the_mapper_records_each_layers_input_size():
    """LeNet-5's second convolution reads the pooled 6 x 14 x 14 map (1,176 values), its first Linear the 16 x 5 x 5
    flattened one (400): what crosses a chip boundary in front of them."""
    from cimsim.cli.compare import cost_only_model, synthetic_batches
    from cimsim.mappers import evaluate

    rep = evaluate(cost_only_model("lenet5", (1, 28, 28), 0), cimsim.arch.get("isaac", weight_bits=8, input_bits=8),
                   synthetic_batches((1, 28, 28), 1, 1, 1), calibration=synthetic_batches((1, 28, 28), 2, 2, 2),
                   progress=False, backend="count")
    sizes = {n: p["input_values"] for n, p in rep.config["mapped_layers"].items()}
    assert sizes == {"features.0": 784, "features.3": 1176, "classifier.1": 400, "classifier.3": 120,
                     "classifier.5": 84}


def test_chips_run_whole_replicas_when_the_network_fits_in_fewer():
    """A network one chip holds, given 4 chips: 4 replicas, each on its own chip, no link traffic, 4x the throughput of
    one chip at the same energy per inference; 3 chips for a network that needs 2: one replica on 2 or 3 chips,
    whichever is faster."""
    one = cimsim.arch.get("isaac", weight_bits=8, input_bits=8)
    plans = _plans(("a", 100, 4, 64), ("b", 100, 4, 64))
    led = EventLedger({"a": {ev.ARRAY_READ_CYCLES: 1.0}, "b": {ev.ARRAY_READ_CYCLES: 1.0}})
    c1, c4 = one.cost(led, plans), one.with_params(chips=4).cost(led, plans)
    assert c4.throughput_inf_per_s == pytest.approx(4 * c1.throughput_inf_per_s, rel=1e-12)
    assert c4.energy_j == pytest.approx(c1.energy_j, rel=1e-12) and "hyper_transport" not in c4.energy_per_component
    assert (c4.config["chips_per_replica"], c4.config["replicas"]) == (1, 4)
    assert c4.area_m2 == pytest.approx(4 * one.area_m2, rel=1e-12)
    big = _plans(("a", 20000, 1, 64), ("b", 10, 1, 64))
    led = EventLedger({"a": {ev.ARRAY_READ_CYCLES: 1.0}, "b": {ev.ARRAY_READ_CYCLES: 1.0}})
    c3 = one.with_params(chips=3).cost(led, big)
    assert c3.config["replicas"] == 1 and c3.config["chips_per_replica"] in (2, 3)
    best = max(one.with_params(chips=g).cost(led, big).throughput_inf_per_s for g in (2, 3))
    assert c3.throughput_inf_per_s == pytest.approx(best, rel=1e-12)
