"""Tests for cimsim.devices.peripherals: defaults, derived per-op energies, the ISAAC table, validation."""

from __future__ import annotations

import dataclasses
import math

import pytest

from cimsim.devices.base import describe
from cimsim.devices.peripherals import (
    PERIPHERALS, ActivationUnit, Bus, EDRAMBuffer, HyperTransportLink, LIFNeuron, OutputRegister, PoolingUnit, RatedPeripheral,
    Register, Router, SampleHold, ShiftAdd, SRAMBuffer, TileOutputRegister,
)
from cimsim.errors import ConfigError

MW, UW, MM2, UM2 = 1e-3, 1e-6, 1e-6, 1e-12
RATED = [c for c in PERIPHERALS if issubclass(c, RatedPeripheral)]
EXPECTED = {ShiftAdd, SampleHold, Register, OutputRegister, TileOutputRegister, SRAMBuffer, EDRAMBuffer, Bus,
            Router, ActivationUnit, PoolingUnit, HyperTransportLink, LIFNeuron}


def same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)


# --------------------------------------------------------------------------------------------------
# Every class


def test_registry_lists_every_class_once_with_unique_kinds():
    assert set(PERIPHERALS) == EXPECTED and len(PERIPHERALS) == len(EXPECTED)
    kinds = [c.kind for c in PERIPHERALS]
    assert len(set(kinds)) == len(kinds)
    assert all(k and k != "peripheral" for k in kinds)
    # the catalog looks kinds up lower-case with '-' for '_' (like the converters' 'sar-adc')
    assert all(k == k.lower().replace("_", "-") for k in kinds)


@pytest.mark.parametrize("cls", PERIPHERALS, ids=lambda c: c.__name__)
def test_constructs_with_defaults_and_exposes_the_interface(cls):
    d = cls()
    for name in ("energy_per_op_j", "latency_s", "area_m2"):
        v = getattr(d, name)
        assert isinstance(v, float) and math.isfinite(v) and v > 0, name
    assert 0 <= d.leakage_w < math.inf
    assert d.node_nm in (32, 45, 65)
    doc = (cls.__doc__ or "").strip()
    assert doc and "\n" not in doc
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.area_m2 = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("cls", PERIPHERALS, ids=lambda c: c.__name__)
def test_describe_lists_every_param_with_unit_and_source(cls):
    d = cls()
    desc = describe(d)
    assert desc["kind"] == cls.kind and desc["class"] == cls.__name__ and desc["summary"]
    names = [p["name"] for p in desc["params"]]
    assert names == [f.name for f in dataclasses.fields(cls)]
    assert "area_m2" in names and "node_nm" in names
    for p in desc["params"]:
        assert p["unit"].strip(), p["name"]
        assert p["source"].strip(), p["name"]
        assert p["value"] == getattr(d, p["name"])
    units = {p["name"]: p["unit"] for p in desc["params"]}
    assert units["area_m2"] == "m^2" and units["node_nm"] == "nm"
    if "power_w" in units:
        assert units["power_w"] == "W"


# --------------------------------------------------------------------------------------------------
# ISAAC-derived: energy = power / rate, exactly, and the rates we assumed


@pytest.mark.parametrize("cls", RATED, ids=lambda c: c.__name__)
def test_energy_is_power_over_rate_exactly(cls):
    d = cls()
    assert d.energy_per_op_j == d.power_w / d.op_rate_hz
    assert d.latency_s == 1.0 / d.op_rate_hz
    assert d.leakage_w == d.leakage_fraction * d.power_w
    assert d.node_nm == 32
    assert all("ISAAC" in p["source"] or "(est.)" in p["source"] for p in describe(d)["params"])
    # changing the rate changes the energy (the energy is derived, not stored)
    assert dataclasses.replace(d, op_rate_hz=d.op_rate_hz * 2).energy_per_op_j == pytest.approx(d.energy_per_op_j / 2)


@pytest.mark.parametrize("cls, rate", [
    (ShiftAdd, 2.56e9),           # 8 ADCs x 1.28 GS/s over 4 S+A units
    (SampleHold, 1e7),            # one sample per 100 ns cycle
    (Register, 2.56e9),           # 2 KB written + 2 KB read per 1.6 us
    (OutputRegister, 3.2e8),      # 256 B written + read per 1.6 us
    (TileOutputRegister, 3.84e9),  # 3 KB written + read per 1.6 us
    (EDRAMBuffer, 3.456e10),      # 2 x 12 x 2304 B per 1.6 us
    (Bus, 1.728e10),              # 12 x 2304 B per 1.6 us
    (Router, 7.68e9),             # 4 tiles x 3 KB per 1.6 us
    (ActivationUnit, 4.8e8),      # 12 x 128 values per 1.6 us over 2 units
    (PoolingUnit, 9.6e8),         # 12 x 128 values per 1.6 us
], ids=lambda x: x.__name__ if isinstance(x, type) else "")
def test_assumed_op_rates(cls, rate):
    assert same(cls().op_rate_hz, rate)


def test_per_op_energies_in_numbers():
    assert same(ShiftAdd().energy_per_op_j, 0.05e-3 / 2.56e9)       # 19.5 fJ
    assert same(SampleHold().energy_per_op_j, 10e-6 / 1024 / 1e7)   # 0.98 fJ
    assert same(Register().energy_per_op_j, 1.24e-3 / 2.56e9)       # 0.48 pJ/B
    assert same(EDRAMBuffer().energy_per_op_j, 20.7e-3 / 3.456e10)  # 0.60 pJ/B
    assert same(Bus().energy_per_op_j, 7e-3 / 1.728e10)             # 0.41 pJ/B
    assert same(Router().energy_per_op_j, 42e-3 / 7.68e9)           # 5.5 pJ/B
    assert same(ActivationUnit().energy_per_op_j, 0.26e-3 / 4.8e8)  # 0.54 pJ
    assert same(PoolingUnit().energy_per_op_j, 0.4e-3 / 9.6e8)      # 0.42 pJ
    assert 1e-16 < SampleHold().energy_per_op_j < ShiftAdd().energy_per_op_j < Register().energy_per_op_j


# --------------------------------------------------------------------------------------------------
# The ISAAC component table (32 nm) is reproduced by count x per-unit figures

PER_IMA = [  # class, units per IMA, table power (W), table area (m^2)
    (ShiftAdd, 4, 0.2 * MW, 0.00024 * MM2),
    (SampleHold, 8 * 128, 10 * UW, 0.00004 * MM2),
    (Register, 1, 1.24 * MW, 0.0021 * MM2),
    (OutputRegister, 1, 0.23 * MW, 0.00077 * MM2),
]
PER_TILE = [  # class, units per tile (router: 1/4 share), table power, table area
    (EDRAMBuffer, 1, 20.7 * MW, 0.083 * MM2),
    (Bus, 1, 7 * MW, 0.090 * MM2),
    (Router, 1 / 4, 42 * MW / 4, 0.151 * MM2 / 4),
    (ActivationUnit, 2, 0.52 * MW, 0.0006 * MM2),
    (ShiftAdd, 1, 0.05 * MW, 0.00006 * MM2),
    (PoolingUnit, 1, 0.4 * MW, 0.00024 * MM2),
    (TileOutputRegister, 1, 1.68 * MW, 0.0032 * MM2),
]


@pytest.mark.parametrize("cls, n, power, area", PER_IMA + PER_TILE,
                         ids=[f"{c.__name__}x{n:g}" for c, n, _, _ in PER_IMA + PER_TILE])
def test_isaac_table_reproduced(cls, n, power, area):
    d = cls()
    assert same(d.power_w * n, power)
    assert same(d.area_m2 * n, area)


def test_isaac_totals_per_ima_and_tile():
    ima_p = sum(c().power_w * n for c, n, _, _ in PER_IMA)
    ima_a = sum(c().area_m2 * n for c, n, _, _ in PER_IMA)
    assert same(ima_p, (0.2 + 0.01 + 1.24 + 0.23) * MW)
    assert same(ima_a, (0.00024 + 0.00004 + 0.0021 + 0.00077) * MM2)
    tile_p = sum(c().power_w * n for c, n, _, _ in PER_TILE)
    assert same(tile_p, (20.7 + 7 + 10.5 + 0.52 + 0.05 + 0.4 + 1.68) * MW)


def test_register_capacities():
    assert Register().bytes == 2048 and OutputRegister().bytes == 256 and TileOutputRegister().bytes == 3072
    assert EDRAMBuffer().bytes == 64 * 1024
    assert isinstance(OutputRegister(), Register) and OutputRegister.kind != Register.kind


# --------------------------------------------------------------------------------------------------
# LIF neuron and SRAM buffer


def test_lif_defaults_from_adc_less_snn_paper():
    n = LIFNeuron()
    assert n.energy_per_op_j == 1.20e-3 * 5e-9
    assert same(n.energy_per_op_j, 6e-12)
    assert n.latency_s == 5e-9
    assert same(n.area_m2, 1448 * UM2)
    assert n.node_nm == 65
    assert same(n.op_rate_hz, 2e8)
    assert same(n.leakage_w, 0.05 * 1.20e-3)
    assert all("2211.02167" in p["source"] or "(est.)" in p["source"] for p in describe(n)["params"])


def test_sram_buffer_per_byte():
    s = SRAMBuffer()
    assert same(s.energy_per_op_j, 20e-12 / 8)  # 20 pJ per 64-bit access
    assert same(s.latency_s, 1e-9 / 8)
    assert s.node_nm == 45 and s.bytes == 32768
    assert s.leakage_w == s.static_w
    assert same(dataclasses.replace(s, access_bytes=16).energy_per_op_j, 20e-12 / 16)


# --------------------------------------------------------------------------------------------------
# Validation


def _positive_fields(cls):
    return [f for f in ("power_w", "area_m2", "op_rate_hz", "energy_per_access_j", "cycle_time_s",
                        "update_time_s", "node_nm") if f in {x.name for x in dataclasses.fields(cls)}]


@pytest.mark.parametrize("cls", PERIPHERALS, ids=lambda c: c.__name__)
def test_nonpositive_values_raise_config_error_naming_the_field(cls):
    names = _positive_fields(cls)
    assert "area_m2" in names and "node_nm" in names
    assert "power_w" in names or cls is SRAMBuffer
    for name in names:
        for bad in (0.0, -1.0, float("nan"), float("inf")):
            with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{name} "):
                cls(**{name: bad})
        cls(**{name: getattr(cls(), name) * 1.5})  # a positive value is fine


@pytest.mark.parametrize("cls", PERIPHERALS, ids=lambda c: c.__name__)
def test_leakage_bounds_and_types(cls):
    field_names = {f.name for f in dataclasses.fields(cls)}
    if "leakage_fraction" in field_names:
        for bad in (-0.1, 1.5):
            with pytest.raises(ConfigError, match=rf"{cls.__name__}\.leakage_fraction"):
                cls(leakage_fraction=bad)
        assert cls(leakage_fraction=0.0).leakage_w == 0.0
    else:
        with pytest.raises(ConfigError, match=r"SRAMBuffer\.static_w"):
            cls(static_w=-1e-6)
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.area_m2 must be a number"):
        cls(area_m2="1 mm^2")


@pytest.mark.parametrize("cls", [Register, OutputRegister, TileOutputRegister, EDRAMBuffer, SRAMBuffer],
                         ids=lambda c: c.__name__)
def test_capacity_must_be_whole_positive_bytes(cls):
    for bad in (0, -8):
        with pytest.raises(ConfigError, match=rf"{cls.__name__}\.bytes "):
            cls(bytes=bad)
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.bytes .*whole number"):
        cls(bytes=100.5)
    assert cls(bytes=4096).bytes == 4096


def test_sram_access_wider_than_capacity_rejected():
    with pytest.raises(ConfigError, match=r"SRAMBuffer\.access_bytes"):
        SRAMBuffer(bytes=4, access_bytes=8)
    with pytest.raises(ConfigError, match=r"SRAMBuffer\.access_bytes"):
        SRAMBuffer(access_bytes=0)


def test_a_hypertransport_link_costs_isaacs_power_per_byte_and_nothing_idle():
    """ISAAC Table 6: 10.4 W and 22.88 mm^2 for a chip's 4 links; 6.4 GB/s each way (est., DaDianNao's HT 2.0):
    2.6 W over 12.8 GB/s = 203 pJ a byte (25 pJ a bit); one direction's 6.4 GB/s bounds a chain's boundary."""
    link = HyperTransportLink()
    assert same(4 * link.power_w, 10.4) and same(4 * link.area_m2, 22.88 * MM2)
    assert same(link.energy_per_op_j, 2.6 / 12.8e9) and 1e-10 < link.energy_per_op_j < 2.1e-10
    assert same(link.direction_bytes_per_s, 6.4e9) and link.leakage_w == 0.0
