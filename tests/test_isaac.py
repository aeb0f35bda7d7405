import pytest

import cimsim.arch as arch
from cimsim.devices.converters import SarADC
from cimsim.errors import ConfigError

MW, MM2 = 1e-3, 1e-6
# ISAAC Table 6 by hand (docs/references.md#isaac)
IMA_POWER = (16 + 4 + 0.01 + 2.4 + 0.2 + 1.24 + 0.23) * MW
IMA_AREA = (0.0096 + 0.00017 + 0.00004 + 0.0002 + 0.00024 + 0.0021 + 0.00077) * MM2
TILE_EXTRA_POWER = (20.7 + 7 + 42 / 4 + 0.52 + 0.05 + 0.4 + 1.68) * MW
TILE_EXTRA_AREA = (0.083 + 0.090 + 0.151 / 4 + 0.0006 + 0.00006 + 0.00024 + 0.0032) * MM2


def test_isaac_rollup_matches_hand_arithmetic():
    s = arch.get("isaac").summary()
    tile_power = 12 * IMA_POWER + TILE_EXTRA_POWER
    tile_area = 12 * IMA_AREA + TILE_EXTRA_AREA
    assert s["power_w"] == pytest.approx(168 * tile_power + 10.4, rel=1e-12)
    assert s["area_m2"] == pytest.approx(168 * tile_area + 22.88 * MM2, rel=1e-12)
    assert s["power_w"] == pytest.approx(65.80808, rel=1e-9)
    assert s["area_m2"] == pytest.approx(85.42472 * MM2, rel=1e-9)
    # 16128 crossbars, each 128 rows x 16 weights per 16 cycles of 100 ns; one MAC = 2 ops
    peak = 168 * 12 * 8 * 128 * 16 / (16 * 100e-9) * 2
    assert s["peak_ops_per_s"] == pytest.approx(peak, rel=1e-12)
    assert s["ce_gops_per_s_per_mm2"] == pytest.approx(peak / 1e9 / 85.42472, rel=1e-9)
    assert s["pe_gops_per_w"] == pytest.approx(peak / 1e9 / 65.80808, rel=1e-9)


def test_breakdown_adds_up_and_the_adc_dominates_the_imas():
    s = arch.get("isaac").summary()
    bd = s["breakdown"]
    assert sum(r["power_w"] for r in bd.values()) == pytest.approx(s["power_w"], rel=1e-12)
    assert sum(r["area_m2"] for r in bd.values()) == pytest.approx(s["area_m2"], rel=1e-12)
    assert bd["adc"]["power_w"] == pytest.approx(168 * 12 * 16 * MW)
    on_chip_power = s["power_w"] - bd["hyper_transport"]["power_w"]
    assert bd["adc"]["power_w"] / on_chip_power > 0.5   # the motivation of the ADC-less papers


def test_sar_model_at_the_isaac_point_within_2x_of_the_table():
    adc = SarADC(bits=8, sample_rate_hz=1.28e9, node_nm=32)
    assert 0.5 < 8 * adc.power_w / (16 * MW) < 2.0


def test_adc_energy_halves_per_bit_below_the_survey_knee():
    """The calibration to Table 6 (1.5625 pJ at 8 bits) rides on the survey envelope, which is on its technology
    floor (2x per bit) below ~9.2 bits at 1.28 GS/s and 32 nm; the ADC's peak power and area follow."""
    full = arch.get("isaac").summary()
    for b in range(1, 9):
        a = arch.get("isaac", adc_bits=b)
        assert a.adc_energy_j() == pytest.approx(16e-3 / 8 / 1.28e9 / 2 ** (8 - b), rel=1e-12)
        s = a.summary()
        assert s["breakdown"]["adc"]["power_w"] == pytest.approx(168 * 12 * 16 * MW / 2 ** (8 - b), rel=1e-12)
        assert s["power_w"] <= full["power_w"] and s["area_m2"] <= full["area_m2"]
    four = arch.get("isaac", adc_bits=4).summary()
    assert four["power_w"] == pytest.approx(35.568, abs=1e-3)     # was 33.81 W with the thermal-only model
    assert four["area_m2"] == pytest.approx(76.305 * MM2, rel=1e-4)


def test_overrides_change_the_rollup():
    half = arch.get("isaac", tiles="84").summary()
    full = arch.get("isaac").summary()
    assert half["peak_ops_per_s"] == pytest.approx(full["peak_ops_per_s"] / 2)
    assert half["power_w"] == pytest.approx((full["power_w"] - 10.4) / 2 + 10.4)
    eight_bit = arch.get("isaac", weight_bits=8, input_bits=8)
    assert eight_bit.slices == 4 and eight_bit.input_cycles == 8
    assert eight_bit.peak_ops_per_s() == pytest.approx(full["peak_ops_per_s"] * 4)


@pytest.mark.parametrize("kw,needle", [
    ({"weight_bits": "15"}, "multiple of cell_bits"), ({"tiles": "0"}, "tiles"),
    ({"read_cycle_s": "-1"}, "read_cycle_s"), ({"table": "x"}, "no parameter 'table'"),
])
def test_bad_overrides(kw, needle):
    with pytest.raises(ConfigError, match=needle):
        arch.get("isaac", **kw)


def test_the_reram_cell_spends_table6_crossbar_power_on_a_random_operand():
    """ISAAC Table 6: 2.4 mW per 8 crossbars during 100 ns reads = 30 pJ per 128x128 array read. A random
    16-bit operand (each input bit and each 2-bit slice level uniform) must spend that through the engine's
    data-dependent sum(V^2 G t) (seed 0; the sampling error of 64 x 256 operands is ~0.3 %)."""
    import numpy as np

    import cimsim

    a = arch.get("isaac")
    assert a.cell.r_on_ohm == pytest.approx(3.436e6, rel=1e-3) and a.cell.read_time_s == 100e-9
    assert a.cell.g_max_s == pytest.approx(1 / a.cell.r_on_ohm)
    rng = np.random.default_rng(0)
    W = rng.integers(-2 ** 15, 2 ** 15, size=(64, 256))
    x = rng.integers(0, 2 ** 16, size=(64, 256))
    xb = cimsim.Crossbar(W, a.crossbar_spec(), seed=0)
    xb.calibrate(x[:32])
    xb(x)
    ev = xb.ledger.to_dict()["crossbar"]
    assert ev["array_read_cycles"] == 64 * 16 * 2 * 4   # batch x cycles x row blocks x column blocks
    per_cycle = ev["cell_read_conductance_s"] * xb.read_voltage_step_v() ** 2 / ev["array_read_cycles"]
    assert per_cycle == pytest.approx(2.4e-3 / 8 * 100e-9, rel=0.01)
    # HCiM reads for ISAAC's 100 ns with its cell, Neural-PIM for 10 ns; an override reaches the device model
    assert arch.get("hcim").cell.g_max_s == pytest.approx(1 / a.cell.r_on_ohm)
    assert arch.get("hcim").cell.read_time_s == 100e-9 and arch.get("neural-pim").cell.read_time_s == 10e-9
    assert arch.get("isaac", reram_r_on_ohm="6e3").cell.r_on_ohm == 6e3
    assert arch.get("isaac", **{"cell.r_on_ohm": "6e3"}).cell.r_on_ohm == 6e3


def test_bad_reram_resistance_is_refused():
    with pytest.raises(ConfigError, match="cell.r_on_ohm"):
        arch.get("isaac", reram_r_on_ohm="-5")
    with pytest.raises(ConfigError, match="cell.r_on_ohm"):
        arch.get("hcim", reram_r_on_ohm="0")
