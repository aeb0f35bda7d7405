import math

import numpy as np
import pytest
from scipy.stats import norm

from cimsim.devices import converters as cv
from cimsim.devices import technology as tech
from cimsim.devices.base import describe
from cimsim.errors import ConfigError

ISAAC_ADC_ENERGY_J = 16e-3 / 8 / 1.28e9  # ISAAC Table 6: 16 mW for 8 ADCs at 1.28 GS/s each


@pytest.mark.parametrize("cls", [cv.SarADC, cv.FlashADC])
@pytest.mark.parametrize("bits", [1, 3, 6])
def test_quantizer_code_counts_and_widths(cls, bits):
    adc = cls(bits=bits)
    lo, hi = -1.0, 3.0
    x = np.linspace(lo - 0.5, hi + 0.5, 200_001)
    codes = adc.codes(x, lo, hi)
    n = 2 ** bits
    assert codes.min() == 0 and codes.max() == n - 1
    assert np.all(np.diff(codes) >= 0)  # monotonic
    lsb = (hi - lo) / (n - 1)
    inside = (x >= lo) & (x <= hi)
    widths = np.bincount(codes[inside], minlength=n) * (x[1] - x[0])
    assert widths[1:-1] == pytest.approx(np.full(n - 2, lsb), rel=2e-3)   # interior codes one LSB wide
    assert widths[[0, -1]] == pytest.approx([lsb / 2, lsb / 2], rel=5e-3)  # end codes half an LSB inside
    assert np.all(codes[x < lo] == 0) and np.all(codes[x > hi] == n - 1)  # clipping


@pytest.mark.parametrize("bits", [1, 4, 8, 12])
def test_adc_over_the_integer_range_is_lossless(bits):
    n = 2 ** bits
    x = np.arange(n, dtype=np.float64)
    assert np.array_equal(cv.SarADC(bits=bits).convert(x, 0, n - 1), x)
    assert np.array_equal(cv.SarADC(bits=bits).convert(np.array([-3.0, n + 5.0]), 0, n - 1), [0.0, n - 1])


def test_adc_offset_noise_statistics():
    sigma = 0.3
    adc = cv.SarADC(bits=6, offset_sigma_lsb=sigma)
    rng = np.random.default_rng(7)
    codes = adc.codes(np.full(200_000, 20.0), 0, 63, rng)
    p_off = 2 * norm.sf(0.5 / sigma)   # the code moves when the offset exceeds half an LSB
    frac = np.mean(codes != 20)
    assert abs(frac - p_off) < 4 * math.sqrt(p_off * (1 - p_off) / codes.size)
    assert np.mean(codes) == pytest.approx(20.0, abs=0.01)
    again = adc.codes(np.full(200_000, 20.0), 0, 63, np.random.default_rng(7))
    assert np.array_equal(codes, again)


def test_adc_energy_is_the_survey_envelope():
    """SAR and flash energies are the ADC survey's envelope (details in tests/test_adc_survey.py)."""
    from cimsim.devices import adc_survey

    for b in (1, 4, 8, 12):
        assert cv.SarADC(bits=b).energy_j == adc_survey.envelope_energy_j(b, 1.28e9, 32, "sar")
        assert cv.SarADC(bits=b, enob_loss_bits=1).energy_j == adc_survey.envelope_energy_j(b - 1, 1.28e9, 32, "sar")
    for b in (1, 3, 5):
        assert cv.FlashADC(bits=b).energy_j == adc_survey.envelope_energy_j(b, 1.28e9, 32, "flash")
    adc = cv.SarADC(bits=8, sample_rate_hz=1.28e9, node_nm=32)
    assert 0.5 < adc.energy_j / ISAAC_ADC_ENERGY_J < 2.0
    assert adc.power_w == pytest.approx(adc.energy_j * 1.28e9)
    assert cv.SarADC().cycles == 9
    assert cv.SarADC().latency_s == pytest.approx(1 / 1.28e9)


def test_flash_adc_counts_comparators():
    for b in (1, 3, 5):
        f = cv.FlashADC(bits=b)
        assert f.comparators == 2 ** b - 1
        assert f.latency_s == pytest.approx(1 / f.sample_rate_hz)


def test_sense_amp_threshold_and_offset_statistics():
    sa = cv.SenseAmp(threshold=0.2)
    assert np.array_equal(sa.convert(np.array([0.1, 0.2, 0.21])), [0.0, 0.0, 1.0])
    assert np.array_equal(sa.convert(np.array([0.1, 0.3]), signed=True), [-1.0, 1.0])
    noisy = cv.SenseAmp(threshold=0.0, offset_sigma=0.1)
    d = noisy.convert(np.full(100_000, 0.05), rng=np.random.default_rng(3))
    p1 = norm.sf(-0.05 / 0.1)
    assert abs(d.mean() - p1) < 4 * math.sqrt(p1 * (1 - p1) / d.size)
    assert cv.SenseAmp(node_nm=28).energy_j == pytest.approx(1.6e-15)


def test_ternary_readout():
    t = cv.TernaryReadout(delta=0.5)
    out = t.convert(np.array([-2.0, -0.5, -0.49, 0.0, 0.5, 0.51, 3.0]))
    assert np.array_equal(out, [-1, 0, 0, 0, 0, 1, 1])
    assert t.energy_j == pytest.approx(2 * cv.SenseAmp().energy_j)


def test_dac_levels_and_isaac_cost():
    d = cv.DAC(bits=2, v_max_v=0.6)
    assert np.allclose(d.convert(np.arange(4)), [0.0, 0.2, 0.4, 0.6])
    with pytest.raises(ValueError):
        d.convert(np.array([4]))
    one = cv.DAC()
    assert one.energy_j * 8 * 128 / 100e-9 == pytest.approx(4e-3, rel=1e-12)   # ISAAC: 4 mW per IMA
    assert one.area_m2 * 8 * 128 == pytest.approx(0.00017e-6, rel=1e-12)
    assert cv.DAC(bits=3).energy_j == pytest.approx(7 * one.energy_j)


def test_ideal_readout_is_identity():
    x = np.array([-3.5, 0.0, 1e9])
    assert np.array_equal(cv.IdealReadout().convert(x), x)
    assert cv.IdealReadout().energy_j == 0.0 and cv.IdealReadout.lossless


@pytest.mark.parametrize("cls,kwargs,needle", [
    (cv.SarADC, {"bits": 0}, "bits"), (cv.SarADC, {"bits": 2.5}, "whole number"),
    (cv.SarADC, {"sample_rate_hz": -1.0}, "sample_rate_hz"), (cv.FlashADC, {"node_nm": 3}, "node_nm"),
    (cv.SenseAmp, {"offset_sigma": -0.1}, "offset_sigma"), (cv.DAC, {"bits": 13}, "bits"),
])
def test_validation(cls, kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        cls(**kwargs)


def test_adc_range_must_be_ordered():
    with pytest.raises(ConfigError, match="hi > lo"):
        cv.SarADC().convert(np.zeros(3), 1.0, 1.0)


@pytest.mark.parametrize("cls", [cv.SarADC, cv.FlashADC, cv.SenseAmp, cv.TernaryReadout, cv.DAC])
def test_describe_lists_units_and_sources(cls):
    d = describe(cls())
    assert d["kind"] == cls.kind and d["params"]
    assert all(p["unit"] and p["source"] for p in d["params"])


def test_technology_scaling():
    assert tech.nominal_vdd_v(32) == 0.9 and tech.nominal_vdd_v(65) == 1.1
    assert tech.nominal_vdd_v(65) > tech.nominal_vdd_v(50) > tech.nominal_vdd_v(45)
    assert tech.area_scale(65, 32) == pytest.approx((32 / 65) ** 2)
    assert tech.energy_scale(65, 32) == pytest.approx((32 / 65) * (0.9 / 1.1) ** 2)
    assert tech.energy_scale(45, 22) * tech.energy_scale(22, 45) == pytest.approx(1.0)
    assert tech.delay_scale(32, 32) == 1.0
    with pytest.raises(ConfigError, match="outside the modelled range"):
        tech.area_scale(32, 3)
