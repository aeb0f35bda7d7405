"""Re-costing a finished run (Report.recost) equals a fresh run at the other operating point."""

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import CimsimError, ConfigError
from cimsim.report import Report


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 10)).eval()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(48, 1, 8, 8, generator=g)
    return x, torch.randint(0, 10, (48,), generator=g)


def _run(arch, data):
    x, y = data
    mapped = cimsim.map(_net(), arch, calibration=x[:16], seed=3)
    return mapped.evaluate([(x[:24], y[:24]), (x[24:], y[24:])], progress=False)


def _same(a: Report, b: Report):
    assert a.energy_j == pytest.approx(b.energy_j, rel=1e-12)
    assert a.latency_s == pytest.approx(b.latency_s, rel=1e-12)
    assert a.throughput_inf_per_s == pytest.approx(b.throughput_inf_per_s, rel=1e-12)
    assert a.area_m2 == pytest.approx(b.area_m2, rel=1e-12)
    assert a.components == pytest.approx(b.components, rel=1e-12)
    assert [r["name"] for r in a.layers] == [r["name"] for r in b.layers]
    for ra, rb in zip(a.layers, b.layers):
        for k in ("energy_j", "latency_s", "macs", "conversions", "copies", "arrays"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-12), (ra["name"], k)
    assert a.accuracy == b.accuracy and a.n_examples == b.n_examples


COST_ONLY = {"isaac": {"node_nm": "45", "tiles": "64", "adc_energy_factor": "2.5", "adc.sample_rate_hz": "0.5e9",
                       "edram.power_w": "40e-3", "cell.read_voltage_v": "0.3"},
             "hcim": {"node_nm": "22", "dcim_add_rate_hz": "2e8", "scale_bits": "8", "router.area_m2": "1e-8"},
             "digital": {"clock_hz": "1e9", "mac_units": "16", "mul_energy_j": "1e-12"}}


@pytest.mark.parametrize("name", ["isaac", "hcim", "digital"])
def test_recosting_a_run_equals_a_fresh_run_at_the_new_operating_point(name, data, tmp_path):
    base = cimsim.arch.get(name, **({"weight_bits": "8", "input_bits": "8"} if name == "isaac" else {}))
    other = base.with_params(**COST_ONLY[name])
    if name == "digital":
        x, y = data
        run = cimsim.mappers.evaluate(_net(), base, [(x, y)], progress=False)
        fresh = cimsim.mappers.evaluate(_net(), other, [(x, y)], progress=False)
    else:
        with pytest.warns(UserWarning) if name == "hcim" else _nothing():   # hcim: no learned scales here
            run, fresh = _run(base, data), _run(other, data)
    assert run.energy_j != pytest.approx(fresh.energy_j, rel=1e-3)      # the operating point does change costs
    _same(run.recost(other), fresh)
    _same(run.recost(base), run)                                          # re-costing at the same point is a no-op
    path = run.to_hdf5(tmp_path / "r.h5")                                  # and it survives the file
    _same(Report.from_hdf5(path).recost(other), fresh)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_recost_refuses_what_changes_the_simulation(data):
    base = cimsim.arch.get("isaac", weight_bits="8", input_bits="8")
    run = _run(base, data)
    for change in ({"adc_bits": "5"}, {"rows": "64"}, {"read_sigma_frac": "0.01"}, {"reram_r_on_ohm": "1e5"}):
        with pytest.raises(CimsimError, match="change what is simulated"):
            run.recost(base.with_params(**change))
    with pytest.raises(ConfigError, match="cannot be re-costed on hcim"):
        run.recost(cimsim.arch.get("hcim"))
    bare = Report.from_dict({k: v for k, v in run.to_dict().items() if k != "config"})
    with pytest.raises(CimsimError, match="no event ledger"):
        bare.recost(base)


def test_a_recost_keeps_the_runs_accuracy_and_says_what_it_re_costed(data):
    base = cimsim.arch.get("isaac", weight_bits="8", input_bits="8")
    run = _run(base, data)
    again = run.recost(base.with_params(node_nm="65"))
    assert again.accuracy == run.accuracy and again.digital_accuracy == run.digital_accuracy
    assert again.config["arch_params"]["node_nm"] == 65
    assert again.config["recost_of"]["arch_params"]["node_nm"] == 32
    assert np.isclose(again.config["seed"], 3)
    # the layers' output quality is this run's too: carried over, with the table's largest layer error
    quality = [(r["name"], r.get("rel_error"), r.get("clip_rate")) for r in run.layers]
    assert repr([(r["name"], r.get("rel_error"), r.get("clip_rate")) for r in again.layers]) == repr(quality)
    assert any(q[1] is not None for q in quality) and "largest layer error" in again.table()


def test_a_report_keeps_each_layers_energy_by_component(data, tmp_path):
    """Report.layer_components (quickstart's per-layer figure) adds up to the layers' and components' totals,
    and survives the HDF5 file."""
    report = _run(cimsim.arch.get("isaac", adc_bits=6), data)
    per_layer = report.layer_components
    assert list(per_layer) == [r["name"] for r in report.layers if r["name"] in per_layer] and per_layer
    for row in report.layers:
        assert sum(per_layer.get(row["name"], {}).values()) == pytest.approx(row["energy_j"], rel=1e-12, abs=1e-30)
    for comp, joules in report.components.items():
        assert sum(c.get(comp, 0.0) for c in per_layer.values()) == pytest.approx(joules, rel=1e-12)
    report.to_hdf5(tmp_path / "r.h5")
    assert Report.from_hdf5(tmp_path / "r.h5").layer_components == per_layer
