"""Tests for cimsim.ledger.EventLedger and cimsim.cost.rollup_energy."""

from __future__ import annotations

import pytest

from cimsim.cost import EnergyRollup, EventCost, rollup_energy
from cimsim.ledger import EventLedger


def small() -> EventLedger:
    led = EventLedger()
    led.add("conv1", "mac", 1024)
    led.add("conv1", "sram_read", 64)
    led.touch("pool")
    led.add("fc", "mac", 256)
    led.add("fc", "adc", 32)
    return led


# --------------------------------------------------------------------------------------------------
# EventLedger


def test_add_and_count():
    led = EventLedger()
    led.add("conv1", "mac", 100)
    led.add("conv1", "mac", 28)
    led.add("conv1", "adc")  # default count 1
    led.add("fc", "mac", 2.5)
    assert led.count("mac", "conv1") == 128
    assert led.count("adc", "conv1") == 1
    assert led.count("mac", "fc") == 2.5
    assert led.count("mac") == 130.5
    assert led.count("adc") == 1
    assert led.count("dac") == 0
    assert led.count("mac", "nope") == 0
    assert led.count("adc", "fc") == 0
    assert led.layer("conv1") == {"mac": 128, "adc": 1}
    assert led.layer("nope") == {}
    assert led.events() == ["adc", "mac"]
    assert led.totals() == {"adc": 1, "mac": 130.5}


def test_layer_returns_a_copy():
    led = small()
    row = led.layer("conv1")
    row["mac"] = 0
    assert led.count("mac", "conv1") == 1024


def test_layer_order_is_first_appearance():
    led = EventLedger()
    led.add("fc", "mac", 1)
    led.add("conv1", "mac", 1)
    led.add("fc", "adc", 1)
    led.touch("bn")
    led.add("conv0", "mac", 1)
    led.add("bn", "mac", 1)
    assert led.layers() == ["fc", "conv1", "bn", "conv0"]


def test_touch_registers_empty_layer_and_keeps_counts():
    led = EventLedger()
    led.touch("relu")
    assert led.layers() == ["relu"]
    assert led.layer("relu") == {}
    assert led.to_dict() == {"relu": {}}
    assert led.events() == []
    led.add("conv", "mac", 5)
    led.touch("conv")  # does not reset
    assert led.count("mac", "conv") == 5
    assert led.layers() == ["relu", "conv"]


def test_add_sums_layer_by_layer_without_mutating():
    a, b = small(), EventLedger()
    b.add("fc", "mac", 4)
    b.add("head", "mac", 8)
    b.touch("drop")
    b.add("conv1", "dac", 3)
    a_before, b_before = a.to_dict(), b.to_dict()
    c = a + b
    assert c is not a and c is not b
    assert a.to_dict() == a_before and b.to_dict() == b_before
    assert c.to_dict() == {
        "conv1": {"mac": 1024, "sram_read": 64, "dac": 3},
        "pool": {},
        "fc": {"mac": 260, "adc": 32},
        "head": {"mac": 8},
        "drop": {},
    }
    assert c.layers() == ["conv1", "pool", "fc", "head", "drop"]
    assert c.count("mac") == 1024 + 260 + 8
    c.add("conv1", "mac", 1)  # the sum shares no state with its operands
    assert a.count("mac", "conv1") == 1024


def test_add_keeps_touched_layers_of_left_operand():
    a = EventLedger()
    a.touch("stem")
    a.add("fc", "mac", 1)
    assert (a + EventLedger()).layers() == ["stem", "fc"]
    assert (EventLedger() + a).layers() == ["stem", "fc"]


def test_iadd_in_place():
    a, b = small(), small()
    b_before = b.to_dict()
    ref = a
    a += b
    assert a is ref
    assert b.to_dict() == b_before
    assert a.count("mac", "conv1") == 2048
    assert a.count("adc", "fc") == 64
    assert a.layers() == ["conv1", "pool", "fc"]


def test_iadd_self_doubles():
    a = small()
    a += a
    assert a == small().scaled(2)
    assert a.count("mac") == 2 * (1024 + 256)


def test_scaled():
    led = small()
    before = led.to_dict()
    half = led.scaled(0.5)
    assert led.to_dict() == before
    assert half.to_dict() == {"conv1": {"mac": 512, "sram_read": 32}, "pool": {}, "fc": {"mac": 128, "adc": 16}}
    assert half.layers() == ["conv1", "pool", "fc"]
    assert half.scaled(2) == led
    zero = led.scaled(0)
    assert zero.layers() == led.layers()
    assert zero.count("mac") == 0
    with pytest.raises(ValueError):
        led.scaled(-1)


def test_equality():
    assert small() == small()
    assert EventLedger() == EventLedger()
    other = small()
    other.add("fc", "mac", 1)
    assert small() != other
    extra = small()
    extra.touch("new")
    assert small() != extra
    assert small() != small().to_dict()
    assert (small() == "ledger") is False


def test_to_dict_construct_round_trip():
    led = small()
    d = led.to_dict()
    assert d == {"conv1": {"mac": 1024, "sram_read": 64}, "pool": {}, "fc": {"mac": 256, "adc": 32}}
    back = EventLedger(d)
    assert back == led
    assert back.layers() == ["conv1", "pool", "fc"]
    d["conv1"]["mac"] = 0  # to_dict is a copy
    assert led.count("mac", "conv1") == 1024
    assert EventLedger(None).to_dict() == {}


def test_negative_counts_raise():
    led = EventLedger()
    with pytest.raises(ValueError, match="conv1/mac"):
        led.add("conv1", "mac", -1)
    assert led.to_dict() == {}
    with pytest.raises(ValueError):
        EventLedger({"fc": {"adc": -0.5}})
    led.add("conv1", "mac", 0)
    assert led.count("mac", "conv1") == 0


def test_merge():
    a, b = small(), EventLedger({"fc": {"mac": 1}, "head": {"mac": 2}})
    c = EventLedger({"pool": {"cmp": 7}})
    merged = EventLedger.merge([a, b, c])
    assert merged == a + b + c
    assert merged.layers() == ["conv1", "pool", "fc", "head"]
    assert merged.count("mac") == 1024 + 256 + 1 + 2
    assert merged.count("cmp", "pool") == 7
    assert a == small()  # operands untouched
    assert EventLedger.merge(iter([a, a, a])) == small().scaled(3)
    assert EventLedger.merge([]) == EventLedger()


# --------------------------------------------------------------------------------------------------
# rollup_energy

E_MAC = 2.0**-40      # ~0.9 pJ
E_ADC = 2.0**-38
E_SRAM = 2.0**-36

TABLE = {
    "mac": EventCost("array", E_MAC),
    "adc": EventCost("array", E_ADC),   # a second event costed to the same component
    "sram_read": EventCost("sram", E_SRAM),
}


def test_rollup_hand_arithmetic():
    r = rollup_energy(small(), TABLE)
    assert isinstance(r, EnergyRollup)
    # conv1: 1024 * 2^-40 = 2^-30 (array), 64 * 2^-36 = 2^-30 (sram)
    # fc:    256 * 2^-40 + 32 * 2^-38 = 2^-32 + 2^-33 = 3 * 2^-33 (array)
    u = 2.0**-33
    assert r.per_layer_component == {"conv1": {"array": 8 * u, "sram": 8 * u}, "pool": {}, "fc": {"array": 3 * u}}
    assert r.per_layer == {"conv1": 16 * u, "pool": 0.0, "fc": 3 * u}
    assert list(r.per_layer) == ["conv1", "pool", "fc"]
    assert r.per_component == {"array": 11 * u, "sram": 8 * u}
    assert r.total_j == 19 * u
    assert sum(r.per_component.values()) == r.total_j


def test_rollup_realistic_values():
    table = {"mac": EventCost("array", 0.31e-12), "adc": EventCost("array", 2.7e-12),
             "sram_read": EventCost("sram", 5.1e-12)}
    r = rollup_energy(small(), table)
    conv1 = 1024 * 0.31e-12 + 64 * 5.1e-12
    fc = 256 * 0.31e-12 + 32 * 2.7e-12
    assert r.per_layer["conv1"] == pytest.approx(conv1, rel=1e-12)
    assert r.per_layer["fc"] == pytest.approx(fc, rel=1e-12)
    assert r.per_component["array"] == pytest.approx((1024 + 256) * 0.31e-12 + 32 * 2.7e-12, rel=1e-12)
    assert r.per_component["sram"] == pytest.approx(64 * 5.1e-12, rel=1e-12)
    assert r.total_j == pytest.approx(conv1 + fc, rel=1e-12)


def test_rollup_ignores_unused_table_entries_and_scales():
    table = {**TABLE, "dac": EventCost("dac", 1.0)}
    r = rollup_energy(small(), table)
    assert "dac" not in r.per_component
    half = rollup_energy(small().scaled(0.5), TABLE)
    assert half.total_j == r.total_j / 2
    assert half.per_component == {k: v / 2 for k, v in r.per_component.items()}


def test_rollup_missing_event_raises_naming_it():
    led = small()
    led.add("fc", "leakage_cycle", 10)
    with pytest.raises(KeyError) as exc:
        rollup_energy(led, TABLE)
    assert "leakage_cycle" in str(exc.value)
    with pytest.raises(KeyError) as exc:
        rollup_energy(small(), {"mac": TABLE["mac"]})
    assert "adc" in str(exc.value) and "sram_read" in str(exc.value)


def test_rollup_empty_ledger():
    r = rollup_energy(EventLedger(), TABLE)
    assert r.per_layer == {} and r.per_component == {} and r.total_j == 0


# ---------------------------------------------------------------------------------------------------
# the one roll-up: dynamic energy, static power over the pipeline period, latency, area (hand arithmetic)

from cimsim.cost import Timing, rollup  # noqa: E402


def _example():
    led = EventLedger()
    led.add("conv", "conversion", 1000)
    led.add("conv", "drive", 64)
    led.add("fc", "conversion", 80)
    led.add("fc", "drive", 640)
    led.touch("pool")
    events = {"conversion": EventCost("adc", 2e-12), "drive": EventCost("dac", 0.5e-12)}
    leakage = {"adc": 4e-3, "edram": 1e-3}                    # chip static power per component (W)
    timing = Timing({"conv": 250e-9, "fc": 1000e-9, "pool": 50e-9}, period_s=1000e-9,
                    occupancy={"conv": 0.25, "fc": 0.5})
    return led, events, leakage, timing


def test_rollup_books_dynamic_energy_and_the_occupied_hardwares_static_power_per_period():
    led, events, leakage, timing = _example()
    r = rollup(led, events, leakage, timing, area_m2=3e-6)
    leak_conv = {"adc": 0.25 * 4e-3 * 1e-6, "edram": 0.25 * 1e-3 * 1e-6}
    leak_fc = {"adc": 0.5 * 4e-3 * 1e-6, "edram": 0.5 * 1e-3 * 1e-6}
    assert r.energy_per_layer_component["conv"]["adc"] == pytest.approx(1000 * 2e-12 + leak_conv["adc"])
    assert r.energy_per_layer_component["conv"]["edram"] == pytest.approx(leak_conv["edram"])
    assert r.energy_per_layer_component["fc"]["dac"] == pytest.approx(640 * 0.5e-12)
    assert r.energy_per_layer["pool"] == 0
    assert r.leakage_per_component == {k: pytest.approx(leak_conv[k] + leak_fc[k]) for k in leakage}
    assert r.energy_per_component["adc"] == pytest.approx(1080 * 2e-12 + leak_conv["adc"] + leak_fc["adc"])
    assert r.energy_j == pytest.approx(sum(r.energy_per_layer.values()))
    assert r.energy_j == pytest.approx(sum(r.energy_per_component.values()))
    assert r.latency_s == pytest.approx(1300e-9)
    assert r.throughput_inf_per_s == pytest.approx(1e6)
    assert r.area_m2 == 3e-6


def test_rollup_spreads_a_chip_that_is_overfull_over_its_layers_and_refuses_uncosted_events():
    led, events, leakage, timing = _example()
    timing.occupancy = {"conv": 1.5, "fc": 0.5}                 # more than the chip holds: all of it leaks
    r = rollup(led, events, leakage, timing, area_m2=0.0)
    assert sum(r.leakage_per_component.values()) == pytest.approx(5e-3 * 1e-6)
    assert r.energy_per_layer_component["conv"]["edram"] == pytest.approx(0.75 * 1e-3 * 1e-6)
    with pytest.raises(KeyError, match="drive"):
        rollup(led, {"conversion": events["conversion"]}, leakage, timing, area_m2=0.0)
