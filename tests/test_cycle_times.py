"""Each tiled chip's cycle from its components (arch/tiled.py ARRAY_READ_S, issue 16): the array reads in 10 ns (the
cell's read pulse); ISAAC's shared ADC stretches its cycle to 100 ns, Neural-PIM's NNADC and NNS+A keep up with the
read, CASCADE's buffer writes (20 ns, est.) set its cycle."""

import pytest

import cimsim
from cimsim.arch.tiled import ARRAY_READ_S


def test_isaac_is_adc_bound_at_its_100_ns_cycle():
    a = cimsim.arch.get("isaac")
    assert a.read_cycle_s == ARRAY_READ_S == a.cell.read_time_s == 10e-9
    assert a.cycle_s == pytest.approx(128 / 1.28e9, rel=1e-12) == pytest.approx(100e-9, rel=1e-12)
    # half the columns per ADC: the cycle halves; an 8x slower read than the ADC: the read sets it
    assert cimsim.arch.get("isaac", cols_per_adc=64).cycle_s == pytest.approx(50e-9, rel=1e-12)
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
