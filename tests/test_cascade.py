"""CASCADE (arch/cascade.py): its organisation, conversions per group of cycles over all row blocks, the
buffer's noise, and equal-area scaling (arch/scaling.py)."""

import math
from dataclasses import replace

import numpy as np
import pytest

import cimsim
from cimsim import events
from cimsim.arch.scaling import scale_to_area, tile_area_m2
from cimsim.devices import IdealCell, IdealReadout
from cimsim.errors import ConfigError


def test_organisation_of_the_paper():
    a = cimsim.arch.get("cascade")
    spec = a.crossbar_spec()
    assert (spec.rows, spec.cols, spec.cell_bits, spec.weight_bits, spec.input_bits) == (64, 64, 1, 16, 16)
    assert spec.conversion.cycles == 2 and spec.conversion.row_blocks == "sum" and spec.pair_readout
    assert spec.conversion.slices == 0                       # a weight's 15 bit pairs summed by the summing amplifiers
    assert a.tiles * a.imas_per_tile * a.xbars_per_ima == 80 * 80 and a.node_nm == 65
    assert a.tia.resolution_bits == 6 and a.tias_per_array == a.cols // 2 and a.adcs_per_block == 7
    assert a.arrays_per_block == 80 and a.magnitude_slices == 15 and a.slice_groups == 1
    # 16 cycles in groups of 2, one group of slices: 8 conversions per output per MVM (the paper: about 10 per 16
    # cycles); an array's 32 pairs hold 32 / 15 weights
    assert a.conversions_per_cycle * a.input_cycles / (a.pairs / 15) == pytest.approx(8, rel=1e-12)
    # the ADCs are a block's (a tile's) 7, not 7 per array
    adc = next(c for c in a.inventory() if c.kind == "adc")
    assert adc.level == "tile" and adc.count == 7


def test_buffer_noise_from_the_tia_and_the_buffer_write():
    """A 6-bit TIA resolves a 64-row bit line's integer levels (no quantization error); each buffered value is off
    by the TIA's thermal noise (0.0422 levels: the cell's 0.14 uA per level, ISAAC's cell read for 10 ns) on both lines of a pair, a group of 2 cycles summing them with place
    values 1 and 2, and by the buffer write's error relative to it: CASCADE's 25 dB, 10**(-25/20) = 5.62 %, passed
    to the ADC as ``relative_sigma`` (added by the engine from the values); an extra value-independent write error
    (``write_sigma_levels``, 0 by default) joins the thermal noise."""
    a = cimsim.arch.get("cascade")
    assert a.full_scale_levels() == 64 and a.tia.quantization_levels(64) == 0
    th = a.tia.thermal_noise_levels(64, a.level_current_a())
    assert th == pytest.approx(0.0422, abs=1e-4)
    # both lines of a pair, 2 cycles (place values 1, 2) and the 15 slices of a weight (1, 2, ..., 2**14) summed
    slices2 = (4 ** 15 - 1) / 3
    assert a.adc.analog_sigma == pytest.approx(math.sqrt(2 * (1 + 4) * slices2) * th, rel=1e-12)
    assert a.adc.relative_sigma == pytest.approx(0.05623, abs=1e-5)
    assert a.adc.relative_sigma == a.buffer.write_sigma_frac
    extra = cimsim.arch.get("cascade", **{"buffer.write_sigma_levels": 1 / 6})
    assert extra.adc.analog_sigma == pytest.approx(math.sqrt(2 * (1 + 4) * slices2) * math.sqrt(th ** 2 + 1 / 36),
                                                   rel=1e-12)
    quiet = cimsim.arch.get("cascade", **{"buffer.write_sigma_frac": 0, "tia.temperature_k": 0})
    assert quiet.adc.analog_sigma == 0 and quiet.adc.relative_sigma == 0
    # 128 rows at 6 bits: 2 levels per code, the quantization-like error 2 / sqrt(12) joins in
    big = cimsim.arch.get("cascade", rows=128, **{"tia.temperature_k": 0})
    assert big.adc.analog_sigma == pytest.approx(math.sqrt(10 * slices2) * 2 / math.sqrt(12), rel=1e-12)
    for derived in ("adc.analog_sigma", "adc.relative_sigma"):
        with pytest.raises(ConfigError, match=f"{derived} follows"):
            cimsim.arch.get("cascade", **{derived: 0})


def test_conversions_per_output_and_group_of_cycles_over_all_row_blocks():
    rng = np.random.default_rng(0)
    W = rng.integers(-127, 128, size=(5, 150))
    x = rng.integers(0, 256, size=(4, 150))
    a = cimsim.arch.get("cascade", weight_bits=8, input_bits=8)
    xb = cimsim.Crossbar(W, replace(a.crossbar_spec(), cell=IdealCell()))
    xb.calibrate(x)
    xb(x)
    led = xb.ledger.to_dict()["crossbar"]
    assert len(xb.row_blocks) == 3
    # batch x cycle groups x outputs: one conversion per output and group of 2 cycles (the 7 slices summed)
    assert led[events.conversion("buffered-sar-adc", 8)] == 4 * 4 * 5
    assert xb.conversions_per_mvm() == 4 * 5                                      # ISAAC's dataflow: 7 x 8 x 3 x 5
    assert led[events.ANALOG_ACCUMULATIONS] == 4 * 8 * 3 * 7 * 5                 # ... x cycles x row blocks
    exact = replace(a.crossbar_spec(), cell=IdealCell(), readout=IdealReadout())
    assert np.array_equal(cimsim.Crossbar(W, exact)(x), x @ W.T)


def test_equal_area_scaling_picks_the_tile_count_closest_to_the_area():
    ref = cimsim.arch.get("isaac", weight_bits=8, input_bits=8)
    for name in ("cascade", "neural-pim", "isaac"):
        a = scale_to_area(cimsim.arch.get(name, weight_bits=8, input_bits=8, node_nm=32), ref.area_m2)
        per_tile, fixed = tile_area_m2(a)
        assert abs(a.area_m2 - ref.area_m2) <= per_tile / 2 + 1e-18, name
        assert a.area_m2 == pytest.approx(fixed + a.tiles * per_tile, rel=1e-12)
    assert scale_to_area(ref, ref.area_m2).tiles == 168
    with pytest.raises(ConfigError, match="no tiles"):
        scale_to_area(cimsim.arch.get("digital"), 1e-4)
    with pytest.raises(ConfigError, match="positive"):
        scale_to_area(ref, -1.0)


def test_shared_adcs_run_at_the_rate_the_conversions_need():
    """An array's 32 column pairs hold 32 / 15 16-bit weights, each converted once per 2 cycles: 1.07 conversions
    per 20 ns cycle (the buffer write), 85.3 for a block's 80 arrays, over its 7 ADCs: 610 MS/s each (ISAAC's
    converter runs at 1.28 GS/s). At 8-bit weights (7 slices): 80 x 32 / 7 / 2 = 183 a cycle, 1.31 GS/s each. Their
    area grows 1.565x per bit (est.) from the SAR model's at 8 bits, calibrated as ISAAC's converter."""
    a = cimsim.arch.get("cascade")
    assert a.adc.sample_rate_hz == pytest.approx(80 * 32 / 15 / 2 / 7 / 20e-9, rel=1e-12)
    assert a.adc.sample_rate_hz == pytest.approx(6.095e8, rel=1e-3)
    eight = cimsim.arch.get("cascade", weight_bits=8, input_bits=8)
    assert eight.adc.sample_rate_hz == pytest.approx(80 * 32 / 7 / 2 / 7 / 20e-9, rel=1e-12)
    slow = cimsim.arch.get("cascade", read_cycle_s=100e-9)
    assert slow.cycle_s == 100e-9 and slow.adc.sample_rate_hz == pytest.approx(a.adc.sample_rate_hz / 5, rel=1e-12)
    # a slice pair per conversion (ISAAC-like grouping): 15 times the conversions
    each = cimsim.arch.get("cascade", slices_per_conversion=1)
    assert each.adc.sample_rate_hz == pytest.approx(15 * a.adc.sample_rate_hz, rel=1e-12)
    nine = cimsim.arch.get("cascade", adc_bits=9)
    assert nine.adc_area_m2() / a.adc_area_m2() == pytest.approx(1.565, rel=1e-12)
    with pytest.raises(ConfigError, match="adc.sample_rate_hz follows"):
        cimsim.arch.get("cascade", **{"adc.sample_rate_hz": 1e9})


def test_a_mapped_network_is_exact_with_ideal_devices_and_a_lossless_readout():
    from test_neural_pim import _exact_network_check

    # 16 rows: the 6-bit TIAs resolve every level; noiseless TIAs and buffer writes; a 16-bit ADC over the full
    # range of a whole weight's sum (16 rows x 3 x 127 x 4 row blocks, either sign: 48768 levels) has a one-level LSB
    out = _exact_network_check(cimsim.arch.get("cascade", cell="ideal", rows=16, cols=16, adc_bits=16, adc_range="full",
                                         weight_bits=8, input_bits=8,
                                         **{"buffer.write_sigma_frac": 0, "tia.temperature_k": 0}))
    assert out.count_nonzero() > 0   # the equality is not that of two all-zero outputs


def test_every_buffered_value_is_a_tia_conversion_a_buffer_write_and_a_buffer_read():
    from test_contracts import run_tiny

    a = cimsim.arch.get("cascade")
    rep = run_tiny(a)
    n = rep.config["events_per_inference"][events.ANALOG_ACCUMULATIONS]   # the engine's count (the ledger)
    assert n > 0
    assert rep.components["tia"] == pytest.approx(n * a.tia.energy_j, rel=1e-12)
    assert rep.components["buffer"] == pytest.approx(n * a.buffer.energy_j, rel=1e-12)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_cascade_loses_accuracy_to_its_buffer_writes_not_to_its_tia_or_adc_step(backend):
    """Where CASCADE's error comes from: each buffered line value is written off by 5.6 % of itself (its 25 dB,
    read per value), on every weight slice, cycle and row block; ISAAC's calibrated 8-bit ADCs read its integer
    column values exactly. On one layer of 150 inputs (8-bit weights ~ N(0, 30), inputs half zero): relative output
    error ~6 % (a whole weight's 7 slices summed per conversion: numba 5.77 %, torch 5.80 %; one conversion per slice
    pair, npim6's dataflow: 5.91 / 6.14 %; asserted 4.5-7 %), about the same with 10-bit ADCs (5.72 %); ~2.9 % with
    exact buffer writes (the TIA's thermal noise, 0.042 level per value since ISAAC's cell is read for 10 ns at a
    tenth of the current, and the 8-bit ADC's step on a whole weight's sum, 0.77 % alone); twice the relative write
    error adds four times its variance (10.4 %); ~12 % with the earlier model's value-independent 1/6-level writes
    instead; ISAAC's 0."""
    rng = np.random.default_rng(0)
    W = np.clip(np.round(rng.normal(0, 30, (64, 150))), -127, 127).astype(int)
    x = (rng.integers(0, 256, (256, 150)) * (rng.random((256, 150)) < 0.5)).astype(int)
    exact = x @ W.T

    def err(name, **kw):
        a = cimsim.arch.get(name, weight_bits=8, input_bits=8, node_nm=32, **kw)
        xb = cimsim.Crossbar(W, a.crossbar_spec(), seed=0, backend=backend)
        xb.calibrate(x[:128])
        return np.std(xb(x[128:]) - exact[128:]) / np.std(exact[128:])

    cited = err("cascade")
    assert 0.045 < cited < 0.07
    assert err("cascade", adc_bits=10) == pytest.approx(cited, rel=0.05)
    tia = err("cascade", **{"buffer.write_sigma_frac": 0})
    assert 0.015 < tia < 0.03
    twice = err("cascade", **{"buffer.write_sigma_frac": 2 * 10 ** (-25 / 20)})
    assert twice == pytest.approx(math.sqrt(4 * (cited ** 2 - tia ** 2) + tia ** 2), rel=0.15)
    assert 0.09 < err("cascade", **{"buffer.write_sigma_frac": 0, "buffer.write_sigma_levels": 1 / 6}) < 0.15
    assert err("isaac") == 0


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_a_sum_over_row_blocks_carries_every_blocks_buffer_noise(backend):
    """Each row block's buffered values carry their own errors: a conversion of the sum over 3 row blocks is
    sqrt(3) times noisier than one over 1 block (same weights and inputs in each block; noise 1 level per buffered
    value, 14-bit ADCs over the full range: the quantization is ~0.03 levels). Output noise std ratio sqrt(3)
    within 5 % (2 x 4096 outputs per case, standard error ~1.1 % each)."""
    rng = np.random.default_rng(1)
    w16 = rng.integers(-127, 128, size=(16, 16))
    x16 = rng.integers(0, 256, size=(256, 16))
    a = cimsim.arch.get("cascade", cell="ideal", rows=16, cols=16, adc_bits=14, adc_range="full", weight_bits=8,
                        input_bits=8, **{"buffer.write_sigma_levels": 1.0, "buffer.write_sigma_frac": 0,
                                                        "tia.temperature_k": 0})
    assert readouts_op(a).over_blocks(3).readout.analog_sigma == pytest.approx(math.sqrt(3) * a.adc.analog_sigma)

    def noise(blocks):
        W, x = np.tile(w16, (1, blocks)), np.tile(x16, (1, blocks))
        xb = cimsim.Crossbar(W, a.crossbar_spec(), seed=3, backend=backend)
        assert len(xb.row_blocks) == blocks
        return np.std(xb(x) - x @ W.T)

    assert noise(3) / noise(1) == pytest.approx(math.sqrt(3), rel=0.05)


def readouts_op(a):
    from cimsim.readouts import readout_op

    return readout_op(a.adc)
