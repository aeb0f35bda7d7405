"""Tests for cimsim.report: the Report result type, its JSON and HDF5 files, atomic writes and the table."""

from __future__ import annotations

import json
import math
import os
import re

import h5py
import numpy as np
import pytest

from cimsim.errors import CimsimError
from cimsim.report import FORMAT, FORMAT_VERSION, Report, ReportFileError, fmt_si

# --------------------------------------------------------------------------------------------------
# A realistic report. Energies are awkward floats on purpose (exact round trip must keep every bit);
# the layer energies sum to the report energy so the per-layer shares add up to 100 %.

LAYERS = [
    {"name": "conv1", "kind": "Conv2d", "macs": 1_769_472, "energy_j": 0.1 + 0.2, "latency_s": 1 / 3 * 1e-4},
    {"name": "conv_α2", "kind": "Conv2d", "macs": 37_748_736, "energy_j": math.pi * 1e-1, "latency_s": 2.5e-4},
    {"name": "pool", "kind": "MaxPool2d", "macs": 0, "energy_j": 0.0, "latency_s": 6.02214076e-23},
    {"name": "fc", "kind": "Linear", "macs": 5_120, "energy_j": 1 / 7, "latency_s": 1.0000000000000002e-6},
]
TOTAL_E = sum(r["energy_j"] for r in LAYERS)

# insertion order is deliberately not the energy order
COMPONENTS = {"sram": 0.123456789e-7, "adc": 4.4e-7, "dac": 2.0000000000000004e-8, "crossbar": 3.3e-7}

CONFIG = {
    "model": "resnet8",
    "dataset": "cifar10",
    "arch": "rram_1t1r",
    "batch_size": 128,
    "seed": 0,
    "noise_sigma": 0.1 + 0.2,
    "big": 2**53 + 1,
    "fold_bn": True,
    "calibrate": False,
    "checkpoint": None,
    "input_shape": [3, 32, 32],
    "mixed": [1, 2.5, "x", None, True, {"k": [1, 2]}],
    "note": "µ-array ≤ 8 bits, naïve ✓ 日本語",
    "arch_params": {"adc_bits": 8, "v_read": 0.2, "cell": {"levels": 16, "g_on_s": 1e-4, "name": "TaOx"},
                    "empty": {}},
    "events_per_inference": {"mac": 39523328, "weight_read": 12.5},
}


def make_report(**over) -> Report:
    kw = dict(accuracy=0.9375, digital_accuracy=0.95, energy_j=TOTAL_E, latency_s=3.3333333333333335e-4,
              throughput_inf_per_s=2999.9999999999995, area_m2=1.2345e-6,
              layers=[dict(r) for r in LAYERS], components=dict(COMPONENTS), config=json.loads(json.dumps(CONFIG)),
              n_examples=10_000, created="2024-05-01T12:00:00Z")
    kw.update(over)
    return Report(**kw)


@pytest.fixture
def report() -> Report:
    return make_report()


# --------------------------------------------------------------------------------------------------
# JSON


def test_json_has_documented_keys_and_values(report):
    d = json.loads(report.to_json())
    for key in ("accuracy", "digital_accuracy", "energy_j", "latency_s", "throughput_inf_per_s", "area_m2",
                "layers", "components", "config"):
        assert key in d, key
    assert d["accuracy"] == 0.9375
    assert d["digital_accuracy"] == 0.95
    assert d["energy_j"] == TOTAL_E
    assert d["area_m2"] == 1.2345e-6
    assert d["n_examples"] == 10_000
    assert isinstance(d["layers"], list) and len(d["layers"]) == 4
    for got, want in zip(d["layers"], LAYERS):
        assert {"name", "energy_j", "latency_s"} <= set(got)
        assert got["name"] == want["name"]
        assert got["energy_j"] == want["energy_j"]
        assert got["latency_s"] == want["latency_s"]
        assert got["macs"] == want["macs"] and isinstance(got["macs"], int)
    assert d["components"] == COMPONENTS
    assert isinstance(d["config"], dict)
    assert d["config"]["arch_params"]["cell"]["levels"] == 16
    assert d["config"]["note"] == CONFIG["note"]


def test_json_round_trip_exact(report):
    text = report.to_json()
    back = Report.from_json(text)
    assert back.to_dict() == report.to_dict()
    assert back.to_json() == text  # same types (ints stay ints), same order, every float bit
    assert back.energy_j == TOTAL_E
    assert back.config["big"] == 2**53 + 1
    assert back.config["checkpoint"] is None
    assert back.config["fold_bn"] is True


def test_json_round_trip_compact_and_infinite_throughput():
    r = make_report(throughput_inf_per_s=float("inf"), latency_s=0.0)
    back = Report.from_json(r.to_json(indent=None))
    assert back.throughput_inf_per_s == float("inf")
    assert back.to_dict() == r.to_dict()


@pytest.mark.parametrize("missing", [("energy_j",), ("area_m2",), ("digital_accuracy", "throughput_inf_per_s"),
                                     ("accuracy", "latency_s", "area_m2")])
def test_from_dict_missing_fields_is_a_report_error(report, missing):
    d = report.to_dict()
    for key in missing:
        del d[key]
    with pytest.raises(ReportFileError) as exc:
        Report.from_dict(d)
    assert isinstance(exc.value, CimsimError)
    for key in missing:
        assert key in str(exc.value)
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------------------------------------------
# HDF5


def test_hdf5_round_trip_exact(report, tmp_path):
    path = report.to_hdf5(tmp_path / "r.h5")
    assert path == tmp_path / "r.h5"
    back = Report.from_hdf5(path)
    assert back.to_dict() == report.to_dict()
    assert back.to_json() == report.to_json()
    assert [type(r["macs"]) for r in back.layers] == [int] * 4
    assert [r["energy_j"] for r in back.layers] == [r["energy_j"] for r in LAYERS]
    assert list(back.components) == list(COMPONENTS)  # order kept
    assert back.config == CONFIG
    assert back.layers[1]["name"] == "conv_α2"
    assert back.created == "2024-05-01T12:00:00Z"


def test_hdf5_round_trip_empty_report(tmp_path):
    r = make_report(layers=[], components={}, config={})
    back = Report.from_hdf5(r.to_hdf5(tmp_path / "e.h5"))
    assert back.to_dict() == r.to_dict()


def test_hdf5_is_self_describing(report, tmp_path):
    path = report.to_hdf5(tmp_path / "r.h5")
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT == "cimsim.report"
        assert f.attrs["format_version"] == FORMAT_VERSION == 1
        units = json.loads(f.attrs["units"])
        assert units["energy_j"] == "J"
        assert units["latency_s"] == "s"
        assert units["area_m2"] == "m^2"
        assert f.attrs["energy_j"] == TOTAL_E
        assert f.attrs["accuracy"] == 0.9375
        assert f.attrs["n_examples"] == 10_000
        assert "energy_j" in json.loads(f.attrs["descriptions"])

        layers = f["layers"]
        assert json.loads(layers.attrs["columns"]) == ["name", "kind", "macs", "energy_j", "latency_s"]
        assert layers["energy_j"].attrs["unit"].startswith("J")
        assert layers["latency_s"].attrs["unit"].startswith("s")
        assert layers["energy_j"][()].tolist() == [r["energy_j"] for r in LAYERS]
        assert np.issubdtype(layers["macs"].dtype, np.integer)
        assert layers["macs"][()].tolist() == [r["macs"] for r in LAYERS]
        assert [v.decode() for v in layers["name"][()]] == [r["name"] for r in LAYERS]

        comp = f["components"]
        assert [v.decode() for v in comp["name"][()]] == list(COMPONENTS)
        assert comp["energy_j"][()].tolist() == list(COMPONENTS.values())
        assert comp["energy_j"].attrs["unit"].startswith("J")

        cfg = f["config"]
        assert cfg.attrs["model"] == "resnet8"
        assert cfg.attrs["batch_size"] == 128
        assert cfg.attrs["noise_sigma"] == 0.1 + 0.2
        assert bool(cfg.attrs["fold_bn"]) is True and bool(cfg.attrs["calibrate"]) is False
        assert cfg.attrs["checkpoint"] == "None"
        assert cfg.attrs["note"] == CONFIG["note"]
        assert json.loads(cfg.attrs["input_shape"]) == [3, 32, 32]
        assert json.loads(cfg.attrs["mixed"]) == CONFIG["mixed"]
        assert isinstance(cfg["arch_params"], h5py.Group)
        assert cfg["arch_params"].attrs["adc_bits"] == 8
        assert cfg["arch_params"].attrs["v_read"] == 0.2
        assert isinstance(cfg["arch_params/cell"], h5py.Group)
        assert cfg["arch_params/cell"].attrs["levels"] == 16
        assert cfg["arch_params/cell"].attrs["name"] == "TaOx"
        assert isinstance(cfg["arch_params/empty"], h5py.Group)
        assert json.loads(f.attrs["config_json"]) == CONFIG


def test_several_reports_in_one_file_via_groups(tmp_path):
    a, b = make_report(), make_report(accuracy=0.5, layers=LAYERS[:1], components={"adc": 1.5e-9})
    path = tmp_path / "sweep.h5"
    with h5py.File(path, "w") as f:
        a.write_hdf5_group(f.create_group("run0"))
        b.write_hdf5_group(f.create_group("run1"))
    with h5py.File(path, "r") as f:
        assert Report.read_hdf5_group(f["run0"]).to_dict() == a.to_dict()
        assert Report.read_hdf5_group(f["run1"]).to_dict() == b.to_dict()
        with pytest.raises(ReportFileError, match="not a cimsim report"):
            Report.read_hdf5_group(f)  # the file root has no format attribute


# --------------------------------------------------------------------------------------------------
# atomic writes


def _tmp_leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_failed_write_leaves_old_file_intact(report, tmp_path, monkeypatch, exc_type):
    path = report.to_hdf5(tmp_path / "r.h5")
    old_bytes = path.read_bytes()
    good = report.to_dict()

    real = Report.write_hdf5_group

    def half_write(self, group):
        group.attrs["format"] = FORMAT
        group.create_group("layers").create_dataset("energy_j", data=np.zeros(3))
        raise exc_type("disk on fire")

    monkeypatch.setattr(Report, "write_hdf5_group", half_write)
    with pytest.raises(exc_type, match="disk on fire"):
        make_report(accuracy=0.1, energy_j=9.0).to_hdf5(path)

    assert path.read_bytes() == old_bytes
    assert Report.from_hdf5(path).to_dict() == good
    assert _tmp_leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]

    monkeypatch.setattr(Report, "write_hdf5_group", real)
    newer = make_report(accuracy=0.25)
    newer.to_hdf5(path)  # a good write over it replaces it
    assert Report.from_hdf5(path).accuracy == 0.25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]


def test_write_gets_usual_file_permissions(report, tmp_path):
    old = os.umask(0o022)
    try:
        path = report.to_hdf5(tmp_path / "r.h5")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_write_into_missing_folder(report, tmp_path):
    folder = tmp_path / "no_such_dir"
    with pytest.raises(CimsimError) as exc:
        report.to_hdf5(folder / "r.h5")
    assert isinstance(exc.value, ReportFileError)
    assert str(folder) in str(exc.value)
    assert "\n" not in str(exc.value)
    assert not folder.exists()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# reading bad files


def _check_one_line_error(path):
    with pytest.raises(ReportFileError) as exc:
        Report.from_hdf5(path)
    msg = str(exc.value)
    assert isinstance(exc.value, CimsimError)
    assert str(path) in msg
    assert "\n" not in msg
    return msg


def test_from_hdf5_missing_path(tmp_path):
    msg = _check_one_line_error(tmp_path / "absent.h5")
    assert "does not exist" in msg


def test_from_hdf5_text_file(tmp_path):
    p = tmp_path / "notes.h5"
    p.write_text("accuracy = 0.9\nthis is not HDF5\n")
    msg = _check_one_line_error(p)
    assert "not a readable cimsim report" in msg


def test_from_hdf5_without_format_attr(tmp_path):
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f.attrs["accuracy"] = 0.9
        f.create_dataset("x", data=np.arange(3))
    msg = _check_one_line_error(p)
    assert "cimsim.report" in msg


def test_from_hdf5_newer_format_version(report, tmp_path):
    p = report.to_hdf5(tmp_path / "future.h5")
    with h5py.File(p, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    msg = _check_one_line_error(p)
    assert "newer" in msg


def test_from_hdf5_truncated_report(report, tmp_path):
    p = report.to_hdf5(tmp_path / "cut.h5")
    with h5py.File(p, "a") as f:
        del f["components"]
    _check_one_line_error(p)


# --------------------------------------------------------------------------------------------------
# the printed table


@pytest.mark.parametrize("value, unit, text", [
    (1.23e-6, "J", "1.23 uJ"),
    (0, "J", "0 J"),
    (0.0, "s", "0 s"),
    (5e-15, "J", "5 fJ"),
    (2.5e3, "W", "2.5 kW"),
    (-1.23e-6, "J", "-1.23 uJ"),
    (-2.5e3, "W", "-2.5 kW"),
    (4.7e-12, "J", "4.7 pJ"),
    (3.3e-9, "s", "3.3 ns"),
    (1e-3, "s", "1 ms"),
    (1.0, "s", "1 s"),
    (999.0, "J", "999 J"),
    (7.25e6, "W", "7.25 MW"),
    (123456.0, "J", "123.5 kJ"),
])
def test_fmt_si(value, unit, text):
    assert fmt_si(value, unit) == text


def test_table_headline_numbers(report):
    t = report.table()
    assert "93.75 %" in t
    assert "95.00 %" in t
    assert "10000 examples" in t
    assert "resnet8 on cifar10, architecture rram_1t1r" in t
    assert f"energy / inference    {fmt_si(TOTAL_E, 'J')}" in t
    assert "3,000 inferences/s" in t
    assert "1.234 mm^2" in t  # 1.2345e-6 m^2 -> mm^2, 4 significant digits
    assert str(report) == t


def _layer_rows(t, names):
    rows = {}
    for line in t.splitlines():
        cells = line.split()
        if cells and cells[0] in names:
            rows[cells[0]] = line
    return rows


def test_table_layers_total_and_shares(report):
    t = report.table()
    names = [r["name"] for r in LAYERS]
    rows = _layer_rows(t, [*names, "total"])
    assert set(rows) == {*names, "total"}
    for r in LAYERS:
        assert fmt_si(r["energy_j"], "J") in rows[r["name"]]
        assert fmt_si(r["latency_s"], "s") in rows[r["name"]]
        assert f"{r['macs']:,}" in rows[r["name"]]
    assert "1,769,472" in rows["conv1"]
    shares = {n: float(re.search(r"(\d+\.\d)%", rows[n]).group(1)) for n in names}
    assert sum(shares.values()) == pytest.approx(100.0, abs=0.05 * len(names))
    for r in LAYERS:
        assert shares[r["name"]] == pytest.approx(100 * r["energy_j"] / TOTAL_E, abs=0.05)
    assert shares["pool"] == 0.0
    assert "100.0%" in rows["total"]
    assert fmt_si(TOTAL_E, "J") in rows["total"]
    assert f"{sum(r['macs'] for r in LAYERS):,}" in rows["total"]
    # the total row comes after every layer row
    order = [line.split()[0] for line in t.splitlines() if line.split() and line.split()[0] in rows]
    assert order == [*names, "total"]


def test_table_components_sorted_by_energy(report):
    t = report.table()
    lines = t.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["component"])
    comp_lines = [line for line in lines[start + 2:] if line.strip()]
    got = [line.split()[0] for line in comp_lines]
    want = [k for k, _ in sorted(COMPONENTS.items(), key=lambda kv: kv[1], reverse=True)]
    assert got == want == ["adc", "crossbar", "dac", "sram"]
    for line, name in zip(comp_lines, got):
        assert fmt_si(COMPONENTS[name], "J") in line
        share = float(re.search(r"(\d+\.\d)%", line).group(1))
        assert share == pytest.approx(100 * COMPONENTS[name] / TOTAL_E, abs=0.05)
    assert "440 nJ" in comp_lines[0]


def test_table_without_layers_or_config():
    r = make_report(layers=[], components={}, config={}, energy_j=2.5e-3)
    t = r.table()
    assert t.splitlines()[0] == "cimsim report"
    assert "2.5 mJ" in t
    assert "total" not in t and "component" not in t


def test_config_keys_may_shadow_file_attributes(tmp_path):
    cfg = {"json": "a value", "description": {"nested": 1}, "format": 7}
    r = make_report(config=cfg)
    back = Report.from_hdf5(r.to_hdf5(tmp_path / "shadow.h5"))
    assert back.config == cfg
    assert back.to_dict() == r.to_dict()
