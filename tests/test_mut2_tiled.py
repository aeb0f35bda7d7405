"""Mutation-audit tests (architecture cost models, part 2): the data movement, digital units and event bookings of an
ISAAC-style tiled chip (cimsim.arch.tiled, cimsim.arch.isaac), each expected number derived by hand from ISAAC Table 6
(Shafiee et al., ISCA 2016, 32 nm) and the operation rates of cimsim.devices.peripherals' docstring:

* one IMA's window is 16 cycles of 100 ns = 1.6 us; a tile's bus moves 12 x (2048 + 256) B per window = 17.28 GB/s and
  its eDRAM is accessed twice per byte (34.56 G accesses/s); an IMA's input register 2 x 2048 B and its output
  register 2 x 256 B per window; a sigmoid unit takes half of a tile's 12 x 128 outputs per window (4.8e8/s), the
  max-pool unit all of them (9.6e8/s); a shift-and-add unit 8 x 1.28 GS/s / 4 = 2.56 G ops/s.
"""

import math

import pytest

from cimsim import arch
from cimsim import events as ev
from cimsim.cost import LayerPlan
from cimsim.ledger import EventLedger

WINDOW_S = 16 * 100e-9
BUS_BYTES_PER_S = 12 * (2048 + 256) / WINDOW_S            # 1.728e10
EDRAM_ACCESSES_PER_S = 2 * BUS_BYTES_PER_S                # 3.456e10
SIGMOID_PER_S = 12 * 128 / WINDOW_S / 2                   # 4.8e8 per unit
POOL_PER_S = 12 * 128 / WINDOW_S                          # 9.6e8
SHIFT_ADD_PER_S = 8 * 1.28e9 / 4                          # 2.56e9
# Horowitz ISSCC 2014 at 45 nm scaled to 32 nm: (32 / 45) x (Vdd 0.9 V / 1.0 V)**2 (Stillmaker & Baas supplies)
HOROWITZ_45_TO_32 = (32 / 45) * (0.9 / 1.0) ** 2


def test_a_mapped_layers_data_movement_counts_every_groups_inputs_and_16_bit_outputs():
    """Inputs: positions x in_features x groups values of input_bits; outputs: positions x out_features 16-bit
    values (ISAAC sec. 4). Both go through the eDRAM and the bus; each through its own register."""
    a = arch.get("isaac")
    plan = LayerPlan("conv", "Conv2d", in_features=9, out_features=8, groups=4, positions=10, arrays=1)
    out = a.dataflow_events(plan, {ev.ARRAY_READ_CYCLES: 5.0})
    in_bytes = 10 * 9 * 4 * 16 / 8         # 720 B
    out_bytes = 10 * 8 * 2                 # 160 B
    assert out[ev.ARRAY_READ_CYCLES] == 5.0
    assert out[ev.INPUT_REGISTER_BYTES] == in_bytes
    assert out[ev.OUTPUT_REGISTER_BYTES] == out_bytes
    assert out[ev.EDRAM_BYTES] == in_bytes + out_bytes
    assert out[ev.BUS_BYTES] == in_bytes + out_bytes
    # a layer of its own input bits (spikes: 1 bit) moves that many
    spikes = a.dataflow_events(LayerPlan("s", "Linear", 64, 8, 1, positions=3, arrays=1, input_bits=1), {})
    assert spikes[ev.INPUT_REGISTER_BYTES] == 3 * 64 / 8


def test_data_movement_energies_per_byte_are_table6_powers_over_the_dataflows_rates():
    costs = arch.get("isaac").event_costs()
    assert costs[ev.EDRAM_BYTES].energy_j == pytest.approx(20.7e-3 / EDRAM_ACCESSES_PER_S, rel=1e-12)
    assert costs[ev.BUS_BYTES].energy_j == pytest.approx(7e-3 / BUS_BYTES_PER_S, rel=1e-12)
    assert costs[ev.INPUT_REGISTER_BYTES].energy_j == pytest.approx(1.24e-3 / (2 * 2048 / WINDOW_S), rel=1e-12)
    assert costs[ev.OUTPUT_REGISTER_BYTES].energy_j == pytest.approx(0.23e-3 / (2 * 256 / WINDOW_S), rel=1e-12)


def test_digital_event_costs_on_a_tiled_chip():
    """A weight (16 bits) or activation (16 bits) read from the eDRAM costs 2 eDRAM bytes; a MAC kept digital costs
    an integer multiply at the chip's 16 input bits and an add at 32 (the product's width), on the power law through
    Horowitz's 8- and 32-bit points (multiply 0.2 and 3.1 pJ, add 0.03 and 0.1 pJ at 45 nm), scaled to 32 nm."""
    a = arch.get("isaac")
    costs = a.event_costs()
    edram = 20.7e-3 / EDRAM_ACCESSES_PER_S
    assert costs[ev.WEIGHT_READ].energy_j == pytest.approx(2 * edram, rel=1e-12)
    assert costs[ev.ACT_READ].energy_j == pytest.approx(2 * edram, rel=1e-12)
    mul16 = 0.2e-12 * 2 ** (math.log(3.1 / 0.2) / math.log(4))       # 0.787 pJ: between 8 and 32 bits
    assert mul16 == pytest.approx(0.787e-12, rel=1e-3)
    assert costs[ev.MUL].energy_j == pytest.approx(mul16 * HOROWITZ_45_TO_32, rel=1e-12)
    assert costs[ev.MAC].energy_j == pytest.approx((mul16 + 0.1e-12) * HOROWITZ_45_TO_32, rel=1e-12)
    eight = arch.get("isaac", weight_bits=8, input_bits=8).event_costs()
    assert eight[ev.WEIGHT_READ].energy_j == pytest.approx(edram, rel=1e-12)
    # 8-bit activations: Horowitz's 8-bit multiply, a 16-bit add (0.03 * 2**0.87 pJ)
    add16 = 0.03e-12 * 2 ** (math.log(0.1 / 0.03) / math.log(4))
    assert eight[ev.MAC].energy_j == pytest.approx((0.2e-12 + add16) * HOROWITZ_45_TO_32, rel=1e-12)


def _digital_latency(a, kind, events):
    cost = a.cost(EventLedger({"d": dict(events)}), {}, {"d": kind})
    return cost.latency_per_layer["d"]


def test_digital_layers_take_their_operations_over_the_chips_units_at_their_rates():
    """168 tiles, each with 2 sigmoid units, 1 max-pool unit and 1 + 12 x 4 shift-and-add units (ISAAC Table 6)."""
    a = arch.get("isaac")
    n = 1e6
    assert _digital_latency(a, "ReLU", {ev.COMPARE: n}) == pytest.approx(n / (168 * 2 * SIGMOID_PER_S), rel=1e-12)
    assert _digital_latency(a, "Sigmoid", {ev.NONLINEAR: n}) == pytest.approx(n / (168 * 2 * SIGMOID_PER_S),
                                                                               rel=1e-12)
    assert _digital_latency(a, "MaxPool2d", {ev.COMPARE: n}) == pytest.approx(n / (168 * POOL_PER_S), rel=1e-12)
    adders = 168 * (1 + 12 * 4) * SHIFT_ADD_PER_S
    assert _digital_latency(a, "add", {ev.ADD: n}) == pytest.approx(n / adders, rel=1e-12)
    # the units of a layer work in parallel (its time is its busiest unit's), one unit's operations in turn
    assert _digital_latency(a, "mul", {ev.ADD: n, ev.MUL: 3 * n}) == pytest.approx(4 * n / adders, rel=1e-12)
    assert _digital_latency(a, "ReLU", {ev.COMPARE: n, ev.ADD: 3 * n}) == pytest.approx(
        max(n / (168 * 2 * SIGMOID_PER_S), 3 * n / adders), rel=1e-12)


def test_isaac_books_offset_corrections_and_sample_holds_to_the_ima_units_of_the_macro():
    """The offset correction of a biased weight is a shift-and-add on the IMA's units (macro), not on the tile's
    shift-and-add; a sample-and-hold is its own component (Table 6: S+H 8 x 128 per IMA, 10 uW at 1e7 samples/s)."""
    a = arch.get("isaac")
    costs, macro = a.event_costs(), a.macro_kinds()
    off, sh = costs[ev.OFFSET_CORRECTION_ADDS], costs[ev.SAMPLE_HOLDS]
    assert off.component == costs[ev.SHIFT_ADDS].component == "shift_add" and "shift_add" in macro
    assert off.energy_j == pytest.approx(0.05e-3 / SHIFT_ADD_PER_S, rel=1e-12)
    assert sh.component == "sample_hold" and "sample_hold" in macro
    assert sh.energy_j == pytest.approx(10e-6 / 1024 / 1e7, rel=1e-12)
    # through the roll-up: the events' dynamic energy lands on those components
    plan = LayerPlan("fc", "Linear", 128, 8, 1, positions=1, arrays=1)
    led = EventLedger({"fc": {ev.OFFSET_CORRECTION_ADDS: 1e6, ev.SAMPLE_HOLDS: 1e6, ev.ARRAY_READ_CYCLES: 1.0}})
    base = EventLedger({"fc": {ev.ARRAY_READ_CYCLES: 1.0}})
    with_, without = a.cost(led, {"fc": plan}), a.cost(base, {"fc": plan})
    d = {k: with_.energy_per_component.get(k, 0.0) - without.energy_per_component.get(k, 0.0)
         for k in set(with_.energy_per_component) | set(without.energy_per_component)}
    assert d["shift_add"] == pytest.approx(1e6 * 0.05e-3 / SHIFT_ADD_PER_S, rel=1e-9)
    assert d["sample_hold"] == pytest.approx(1e6 * 10e-6 / 1024 / 1e7, rel=1e-9)
    assert d.get("tile_shift_add", 0.0) == pytest.approx(0.0, abs=1e-30) and d.get("adc", 0.0) == 0.0


def test_isaac_counts_an_adc_per_cols_per_adc_columns():
    """Two ADCs per 128-column crossbar at cols_per_adc = 64: 16 per IMA, each 0.0012 mm^2 and 2 mW (Table 6's
    converter, kept at 1.28 GS/s)."""
    a = arch.get("isaac", cols_per_adc=64)
    row = next(c for c in a.inventory() if c.kind == "adc")
    assert row.count == 16
    assert row.area_m2 == pytest.approx(16 * 0.0012e-6, rel=1e-9)
    assert row.power_w == pytest.approx(16 * 2e-3, rel=1e-9)
    assert a.breakdown()["adc"]["area_m2"] == pytest.approx(168 * 12 * 16 * 0.0012e-6, rel=1e-9)
