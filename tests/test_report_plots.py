"""The report figure: layer bars labelled with the layer type, the per-layer error panel, and a component chart
that stays readable when one component (the ADC) dominates."""

import math

import matplotlib
import pytest

from cimsim.plots import layer_label, plot_report, report_figure
from cimsim.report import Report

matplotlib.use("Agg")

LAYERS = [
    {"name": "features.0", "kind": "Conv2d", "energy_j": 3e-8, "latency_s": 1.6e-6, "rel_error": 0.021},
    {"name": "features.1", "kind": "ReLU", "energy_j": 1e-10, "latency_s": 1e-9, "rel_error": math.nan},
    {"name": "classifier.1", "kind": "Linear", "energy_j": 2e-9, "latency_s": 1.6e-6, "rel_error": 0.0},
]
# an ADC a thousand times larger than the smallest component
COMPONENTS = {"adc": 3.0e-8, "dac": 1.5e-9, "sample_hold": 3.0e-11, "crossbar": 5.0e-10}


def make(layers=LAYERS) -> Report:
    return Report(accuracy=0.9, digital_accuracy=0.91, energy_j=sum(COMPONENTS.values()), latency_s=3.2e-6,
                  throughput_inf_per_s=3e5, area_m2=8e-5, layers=[dict(r) for r in layers],
                  components=dict(COMPONENTS), config={"model": "lenet5", "dataset": "fashion-mnist", "arch": "isaac"})


def _axes(fig):
    return {ax.get_title(): ax for ax in fig.axes}


def test_layer_bars_name_the_layer_type():
    fig = report_figure(make())
    ax = _axes(fig)["energy by layer"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["features.0 (Conv2d)", "features.1 (ReLU)",
                                                            "classifier.1 (Linear)"]
    assert layer_label({"name": "fc"}) == "fc"
    assert ax.get_xlabel() == "energy per inference (nJ)"   # the unit suits the largest bar (30 nJ)
    assert ax.patches[0].get_width() == pytest.approx(30.0)


def test_the_error_panel_shows_each_mapped_layer():
    ax = _axes(report_figure(make()))["error against the exact integer layer"]
    assert ax.get_xscale() == "log"
    widths = [p.get_width() for p in ax.patches]
    assert widths == pytest.approx([2.1, 0.0, 0.0])             # percent; NaN (not mapped) and exact: no bar
    assert [t.get_text() for t in ax.texts] == ["exact"]        # the exact layer is said to be exact
    assert "error against the exact integer layer" not in _axes(report_figure(make([
        {k: v for k, v in r.items() if k != "rel_error"} for r in LAYERS])))


def test_an_exact_run_says_so_without_a_meaningless_scale():
    exact = [{**r, "rel_error": 0.0 if r["kind"] != "ReLU" else math.nan} for r in LAYERS]
    ax = _axes(report_figure(make(exact)))["error against the exact integer layer"]
    assert [t.get_text() for t in ax.texts] == ["exact", "exact"]   # both mapped layers
    assert list(ax.get_xticks()) == [] and ax.get_xlim() == (0.0, 1.0)


def test_the_component_chart_is_readable_when_the_adc_dominates():
    ax = _axes(report_figure(make()))["energy by component (share of total)"]
    assert ax.get_xscale() == "log"                              # a 1000x range stays visible
    assert ax.xaxis.get_major_formatter()(1e-9) == "1 nJ"         # SI prefixes on the decades
    assert ax.patches[0].get_width() == pytest.approx(3.0e-8)    # bars in joules
    assert [t.get_text() for t in ax.get_yticklabels()] == ["adc", "dac", "crossbar", "sample_hold"]
    total = sum(COMPONENTS.values())
    assert [t.get_text() for t in ax.texts] == [f"{100 * COMPONENTS[k] / total:.1f} %"
                                                for k in ("adc", "dac", "crossbar", "sample_hold")]


def test_plot_report_writes_a_png(tmp_path):
    out = plot_report(make(), tmp_path / "r.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_components_keep_one_distinct_colour_in_every_figure():
    from cimsim.plots_components import COMPONENT_COLORS, component_colors

    assert len(set(COMPONENT_COLORS.values())) == len(COMPONENT_COLORS)
    names = sorted(COMPONENT_COLORS) + ["leakage", "something_new"]
    colors = component_colors(names)
    assert len(set(colors.values())) == len(names)                      # no two share a colour
    assert component_colors(["router", "adc"]) == {"router": COMPONENT_COLORS["router"], "adc": COMPONENT_COLORS["adc"]}


def test_the_figures_leave_the_callers_matplotlib_backend_alone():
    """A notebook's inline backend must survive a cimsim figure (the library once forced Agg, after which a
    notebook's later figures never showed); the command line picks Agg itself. In a child process: a backend
    chosen once stays for the process."""
    import subprocess
    import sys
    code = ("import matplotlib; matplotlib.use('svg'); import cimsim.plots_devices as d; import cimsim.plots as p; "
            "import cimsim.plots_sweep as s; d.converter_figure('sar-adc'); print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().lower() == "svg"
