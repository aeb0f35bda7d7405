"""The Report's Python API refuses a bad call with one cimsim error naming the fix, and keeps other files."""

from __future__ import annotations

import h5py
import pytest

from cimsim.errors import ConfigError
from cimsim.report import Report, ReportFileError


@pytest.fixture
def report():
    return Report(accuracy=0.5, digital_accuracy=0.6, energy_j=1e-6, latency_s=1e-3, throughput_inf_per_s=1e3,
                  area_m2=1e-6, layers=[{"name": "fc", "kind": "Linear", "energy_j": 1e-6, "latency_s": 1e-3}],
                  components={"adc": 1e-6}, config={"macro_components": ["adc"]})


def _sweep_file(path):
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "cimsim.sweep"
    return path


@pytest.mark.parametrize("make,what", [
    (_sweep_file, "a cimsim sweep file"),
    (lambda p: p.write_text("my notes") and p, "a file that is not cimsim's"),
])
def test_to_hdf5_keeps_a_file_of_another_kind(report, tmp_path, make, what):
    path = tmp_path / "out.h5"
    make(path)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as exc:
        report.to_hdf5(path)
    assert str(exc.value) == (f"path {path} is {what}; it is kept as it is: write the report elsewhere "
                              "(or remove the file)")
    assert path.read_bytes() == before


def test_to_hdf5_replaces_a_report(report, tmp_path):
    path = report.to_hdf5(tmp_path / "r.h5")
    report.accuracy = 0.25
    report.to_hdf5(path)
    assert Report.from_hdf5(path).accuracy == 0.25


@pytest.mark.parametrize("bad", [None, 3, ""])
def test_to_hdf5_and_from_hdf5_take_a_path(report, bad):
    with pytest.raises(ConfigError, match=r"Report\.to_hdf5 takes a file path \(a str or pathlib\.Path\), got"):
        report.to_hdf5(bad)
    with pytest.raises(ConfigError, match=r"Report\.from_hdf5 takes a file path"):
        Report.from_hdf5(bad)


def test_a_folder_is_named_a_folder(report, tmp_path):
    with pytest.raises(ReportFileError, match=f"report file {tmp_path} is a folder; give the path of a report file"):
        Report.from_hdf5(tmp_path)
    with pytest.raises(ConfigError, match="is a folder; give a file name such as .*report.h5"):
        report.to_hdf5(tmp_path)


@pytest.mark.parametrize("text,needle", [("{", "the text is not a cimsim report's JSON"),
                                         ("[1]", "the JSON holds a list, not a cimsim report's object")])
def test_from_json_refuses_what_is_not_a_report(text, needle):
    with pytest.raises(ReportFileError, match=needle) as exc:
        Report.from_json(text)
    assert "\n" not in str(exc.value) and str(exc.value).endswith("pass what Report.to_json wrote")


def test_energy_at_names_the_levels(report):
    assert report.energy_at("macro") == report.energy_at("chip") == 1e-6
    with pytest.raises(ConfigError, match="level must be 'chip' or 'macro', got 'bogus'"):
        report.energy_at("bogus")


@pytest.mark.parametrize("arch,needle", [("isaac", "got str 'isaac'"), (None, "got NoneType None")])
def test_recost_takes_an_architecture_object(report, arch, needle):
    with pytest.raises(ConfigError, match=f"recost takes an architecture object, {needle}: "
                                          r"cimsim\.arch\.get\('isaac'\)"):
        report.recost(arch)
