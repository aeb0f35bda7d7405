"""Each tiled chip's cycle from its components (arch/tiled.py ARRAY_READ_S, issue 16): the array reads in 10 ns (the
cell's read pulse), ISAAC's in its stated 100 ns (sec. 4), which its shared ADC matches, Neural-PIM's NNADC and NNS+A keep up with the
read, CASCADE's buffer writes (20 ns, est.) set its cycle."""

import numpy as np
import pytest

import cimsim
from cimsim.arch.tiled import ARRAY_READ_S, ISAAC_READ_S


def test_isaac_reads_and_converts_in_its_100_ns_cycle():
    a = cimsim.arch.get("isaac")
    assert a.read_cycle_s == ISAAC_READ_S == a.cell.read_time_s == 100e-9
    assert cimsim.arch.get("neural-pim").read_cycle_s == ARRAY_READ_S == 10e-9
    assert a.cycle_s == pytest.approx(128 / 1.28e9, rel=1e-12) == pytest.approx(100e-9, rel=1e-12)
    # a 10 ns read with half the columns per ADC: the ADC sets the cycle, 50 ns; a 200 ns read sets it
    assert cimsim.arch.get("isaac", cols_per_adc=64, read_cycle_s=10e-9, **{"cell.read_time_s": 10e-9}).cycle_s \
        == pytest.approx(50e-9, rel=1e-12)
    assert cimsim.arch.get("isaac", read_cycle_s=200e-9).cycle_s == 200e-9
    # ISAAC's Table 6 roll-up does not depend on it: 65.8 W, 85.4 mm^2
    s = a.summary()
    assert s["power_w"] == pytest.approx(65.8, rel=0.01) and s["area_m2"] == pytest.approx(85.4e-6, rel=0.01)


def test_neural_pim_cycles_at_the_array_read():
    """64 pairs per NNADC at 1 GS/s over 8 input cycles: 8 ns a cycle; the NNS+A 1 ns; the read 10 ns."""
    a = cimsim.arch.get("neural-pim")
    assert a.readout_cycle_s() == pytest.approx(64 / 1e9 / 8, rel=1e-12)
    assert a.cycle_s == 10e-9
    assert cimsim.arch.get("neural-pim", **{"adc.sample_rate_hz": 0.25e9}).cycle_s == pytest.approx(32e-9, rel=1e-12)


def test_cascade_cycles_at_its_buffer_write():
    a = cimsim.arch.get("cascade")
    assert a.readout_cycle_s() == a.buffer.write_pulse_s == 20e-9
    assert a.cycle_s == 20e-9
    assert cimsim.arch.get("cascade", **{"buffer.write_pulse_s": 5e-9}).cycle_s == 10e-9   # then the TIA / read
    assert cimsim.arch.get("cascade", tias_per_array=8).cycle_s == pytest.approx(40e-9, rel=1e-12)


def test_a_cell_read_longer_than_the_cycle_stretches_it():
    a = cimsim.arch.get("neural-pim", **{"cell.read_time_s": 30e-9})
    assert a.cycle_s == 30e-9


def test_the_tiles_buses_bound_the_pipeline_period():
    """ISAAC's tile bus moves 17.28 GB/s (its own 100 ns pipeline's need, est.) and its eDRAM twice that in byte
    accesses; one inference's bytes over every tile's bus bound the period (here 1 MB over 259 buses: 223 ns, above
    the 80 ns of one layer's 8-cycle MVM at 10 ns)."""
    from cimsim import events as ev
    from cimsim.cost import LayerPlan
    from cimsim.ledger import EventLedger

    a = cimsim.arch.get("neural-pim", tiles=259, weight_bits=8, input_bits=8)
    assert a.bus.op_rate_hz == pytest.approx(12 * (2048 + 256) / 1.6e-6, rel=1e-12)
    plan = LayerPlan("fc", "Linear", in_features=1000, out_features=0, groups=1, positions=1000, arrays=1)
    led = EventLedger({"fc": {ev.ARRAY_READ_CYCLES: 1.0}})
    cost = a.cost(led, {"fc": plan})
    bus_bytes = 1000 * 1000                                   # 1000 positions x 1000 one-byte inputs (no outputs)
    feed = bus_bytes / (259 * a.bus.op_rate_hz)
    assert cost.config["feed_s"] == pytest.approx(feed, rel=1e-12) == pytest.approx(223e-9, rel=0.01)
    assert cost.config["slowest_layer_s"] == pytest.approx(8 * 10e-9, rel=1e-12)   # 1000 copies: one MVM each
    assert cost.throughput_inf_per_s == pytest.approx(1 / feed, rel=1e-12)


def test_a_read_costs_table6_power_over_its_duration():
    """ISAAC Table 6's crossbar (2.4 mW per 8 arrays) and DAC (4 mW per 8 x 128) powers are drawn during ISAAC's 100 ns
    reads (sec. 4): 30 pJ per 128x128 array read and 0.39 pJ per drive there; an array read for the cell model's
    10 ns (Neural-PIM, CASCADE, HCiM) spends a tenth of each, with the same cells."""
    isaac, npim = cimsim.arch.get("isaac"), cimsim.arch.get("neural-pim")
    assert isaac.dac.energy_j == pytest.approx(4e-3 / (8 * 128) * 100e-9, rel=1e-12)
    assert npim.dac.energy_j == pytest.approx(isaac.dac.energy_j / 10, rel=1e-12)
    assert cimsim.arch.get("cascade", node_nm=32).dac.energy_j == pytest.approx(isaac.dac.energy_j / 10, rel=1e-12)

    def per_array_read(a):
        xbar = next(c for c in a.inventory() if c.kind == "crossbar")
        return xbar.power_w / xbar.count * a.cycle_s

    assert per_array_read(isaac) == pytest.approx(2.4e-3 / 8 * 100e-9, rel=1e-9)
    assert per_array_read(npim) == pytest.approx(2.4e-3 / 8 * 10e-9, rel=1e-9)
    assert npim.cell.r_on_ohm == isaac.cell.r_on_ohm and npim.cell.read_time_s == isaac.cell.read_time_s / 10


def test_signed_inputs_take_the_sign_bits_own_cycle():
    """A signed layer's MVM: its a - 1 magnitude bits d at a time, then the sign bit alone (the engine's cycles,
    cimsim.encoding.plane_layout): with ISAAC's 1-bit DACs as many cycles as unsigned inputs, with 2-bit DACs
    8-bit inputs take 5 cycles instead of 4; the engine's crossbar counts the same cycles."""
    from cimsim import Crossbar
    from cimsim.cost import LayerPlan

    for dac, want in ((1, (8, 8)), (2, (4, 5)), (4, (2, 3))):
        a = cimsim.arch.get("isaac", input_bits=8, dac_bits=dac)
        plans = [LayerPlan("fc", "Linear", in_features=64, out_features=8, groups=1, arrays=1, input_signed=s)
                 for s in (False, True)]
        assert tuple(a.layer_cycles(p) for p in plans) == want
        assert [a.mvm_time_s(p, {}) for p in plans] == [pytest.approx(n * a.cycle_s, rel=1e-12) for n in want]
        for s, n in zip((False, True), want):
            xb = Crossbar(np.zeros((8, 64), dtype=np.int64), a.crossbar_spec(input_signed=s))
            assert xb.cycles == n
