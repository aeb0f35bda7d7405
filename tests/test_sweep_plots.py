"""Figures of a sweep file: lines per architecture with seed ranges, references, any swept parameter on the x axis,
the trade-off plot and its Pareto front, and `cimsim plot` on sweep files."""

import numpy as np
import pytest
from _cli_helpers import assert_one_line_user_error, run_cli

from _sweep_fakes import REFERENCE, SETTINGS, fake_evaluate, fake_report, grid
from cimsim import sweep
from cimsim.errors import ConfigError
from cimsim.sweepfile import Point


def test_plot_draws_one_line_per_arch_with_seed_ranges(tmp_path):
    from cimsim.plots import sweep_figure

    points = grid(bits=(1, 2, 3, 4), seeds=3)
    results = {p: fake_report(p) for p in points}
    fig = sweep_figure(results, title="lenet5")
    ax_acc, ax_e, ax_lat, ax_area = fig.axes
    try:
        assert ax_acc.get_xlabel() == "ADC bits" and ax_e.get_yscale() == "log"   # 0.2-5 uJ: over a decade
        assert ax_lat.get_yscale() == "linear"                                       # 1-5 us: under a decade
        assert ax_e.yaxis.get_major_formatter()(1e-6) == "1 uJ"                 # SI prefixes on the ticks
        assert ax_lat.yaxis.get_major_formatter()(2e-6) == "2 us"
        labels = ax_acc.get_legend_handles_labels()[1]
        assert labels[:1] == ["digital (no ADC)"] and "isaac" in labels
        assert any(l.startswith(f"float reference ({100 * REFERENCE:.2f}%)") for l in labels)
        assert ax_e.get_legend_handles_labels()[1] == ["digital (no ADC)", "isaac"]
        for ax, key, scale in ((ax_acc, "accuracy", 100), (ax_e, "energy_j", 1)):
            (bar,) = [c for c in ax.containers if c.get_label() == "isaac"]
            x, y = bar.lines[0].get_data()
            assert list(x) == [1, 2, 3, 4]
            for b, yv in zip(x, y):
                vals = [scale * getattr(fake_report(Point("isaac", int(b), s)), key) for s in range(3)]
                assert yv == pytest.approx(np.mean(vals))
            # min-max error bars: the segment at each bit spans the seeds' range
            segs = bar.lines[2][0].get_segments()
            for b, seg in zip(x, segs):
                vals = [scale * getattr(fake_report(Point("isaac", int(b), s)), key) for s in range(3)]
                assert sorted(seg[:, 1]) == pytest.approx([min(vals), max(vals)])
            flat = [l for l in ax.get_lines() if l.get_label() == "digital (no ADC)"]
            assert len(flat) == 1 and set(flat[0].get_ydata()) == {scale * getattr(fake_report(Point("digital", None, 0)), key)}
        ref = [l for l in ax_acc.get_lines() if l.get_label().startswith("float reference")]
        assert ref[0].get_linestyle() == "--" and list(ref[0].get_ydata()) == pytest.approx([100 * REFERENCE] * 2)
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)


def test_plot_draws_a_reference_per_arch_when_the_references_differ():
    import dataclasses

    import matplotlib.pyplot as plt

    from cimsim.plots import sweep_figure

    results = {p: fake_report(p) for p in grid(bits=(2, 3), seeds=1)}
    hcim = Point("hcim", None, 0)
    results[hcim] = dataclasses.replace(fake_report(hcim), digital_accuracy=0.8565,
                                        config={"arch": "hcim", "arch_params": {}})
    fig = sweep_figure(results, title="lenet5")
    try:
        refs = {l.get_label(): l.get_ydata()[0] for l in fig.axes[0].get_lines() if "reference" in l.get_label()}
        assert refs == pytest.approx({f"float reference of digital ({100 * REFERENCE:.2f}%)": 100 * REFERENCE,
                                      f"float reference of isaac ({100 * REFERENCE:.2f}%)": 100 * REFERENCE,
                                      "float reference of hcim (85.65%)": 85.65})
    finally:
        plt.close(fig)


def test_cimsim_plot_writes_a_png_of_a_sweep_file(tmp_path, capsys):
    path = tmp_path / "s.h5"
    sweep.run_sweep(path, grid(bits=(1, 2), seeds=2), SETTINGS, evaluate_point=fake_evaluate)
    code, out, err = run_cli(capsys, "plot", path, "-o", tmp_path / "fig.png")
    assert code == 0, err
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "empty.h5"
    sweep.run_sweep(empty, [], SETTINGS, evaluate_point=fake_evaluate)
    capsys.readouterr()
    code, out, err = run_cli(capsys, "plot", empty)
    assert_one_line_user_error(code, err, "holds no finished points yet")


def test_plot_against_any_swept_parameter_with_lines_per_other_value():
    import dataclasses

    import matplotlib.pyplot as plt

    from cimsim.plots import sweep_figure

    results = {}
    for rows in (32, 64, 128):
        for bits in (4, 8):
            p = Point("isaac", {"adc.bits": bits, "rows": rows}, 0)
            results[p] = dataclasses.replace(fake_report(Point("isaac", bits, 0)), area_m2=rows * 1e-8,
                                             config={"arch": "isaac", "arch_params": {"weight_bits": 8,
                                                                                      "input_bits": 8}})
    results[Point("digital", None, 0)] = fake_report(Point("digital", None, 0))
    fig = sweep_figure(results, x="rows")
    try:
        ax_acc, ax_e, ax_lat, ax_area = fig.axes
        assert ax_area.get_xlabel() == "rows" and ax_area.get_ylabel() == "chip area (mm^2)"
        lines = {c.get_label(): c for c in ax_area.containers}
        assert set(lines) == {"isaac (8-bit weights and inputs), adc.bits=4",
                              "isaac (8-bit weights and inputs), adc.bits=8"}
        x, y = lines["isaac (8-bit weights and inputs), adc.bits=8"].lines[0].get_data()
        assert list(x) == [32, 64, 128] and list(y) == pytest.approx([0.32, 0.64, 1.28])
        assert any(l.get_label() == "digital (no rows)" for l in ax_acc.get_lines())
        # the two series of one architecture differ in shade, line style and marker
        looks = [(str(c.lines[0].get_color()), c.lines[0].get_linestyle(), c.lines[0].get_marker())
                 for c in ax_area.containers]
        assert all(len({look[k] for look in looks}) == len(looks) for k in range(3)), looks
        # one legend, below the panels (none over the data); a chip's area from zero
        assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
        fig.canvas.draw()
        legend_top = fig.legends[0].get_window_extent().y1
        assert all(legend_top <= ax.get_tightbbox().y0 + 1 for ax in fig.axes)
        assert ax_area.get_ylim()[0] == 0 and ax_lat.get_ylim()[0] == 0
    finally:
        plt.close(fig)
    fig = sweep_figure(results, x="rows", hue="adc.bits")
    try:
        assert {c.get_label() for c in fig.axes[0].containers} == {"isaac (8-bit weights and inputs), adc.bits=4",
                                                                   "isaac (8-bit weights and inputs), adc.bits=8"}
    finally:
        plt.close(fig)
    with pytest.raises(ConfigError, match="--x cols: the sweep varies adc.bits, rows"):
        sweep_figure(results, x="cols")


def test_a_categorical_parameter_is_plotted_as_points_not_lines():
    """A swept string (``--grid input_encoding=twos,split``): one marker per category, in their names' order, no line
    drawn through categories that have no order; the other swept parameter's values stay lines of their own."""
    import dataclasses

    import matplotlib.pyplot as plt

    from cimsim.plots import sweep_figure

    results = {}
    for enc in ("twos", "split"):
        for bits in (6, 8):
            p = Point("isaac", {"adc.bits": bits, "input_encoding": enc}, 0)
            results[p] = dataclasses.replace(fake_report(Point("isaac", bits, 0)),
                                             accuracy=0.9 if enc == "split" else 0.7)
    fig = sweep_figure(results, x="input_encoding")
    try:
        bars = {c.get_label(): c for c in fig.axes[0].containers}
        assert set(bars) == {"isaac, adc.bits=6", "isaac, adc.bits=8"}
        for bar in bars.values():
            line = bar.lines[0]
            assert line.get_linestyle() == "None" and line.get_marker() not in (None, "None", "")
            assert list(line.get_ydata()) == pytest.approx([90.0, 70.0])        # split, twos
        assert all(ax.get_xlim() == (-0.5, 1.5) for ax in fig.axes)           # room around both categories
    finally:
        plt.close(fig)
    fig = sweep_figure(results)                       # ADC bits on x: a line per encoding
    try:
        assert all(c.lines[0].get_linestyle() != "None" for c in fig.axes[0].containers)
    finally:
        plt.close(fig)


def test_the_pareto_front_keeps_the_points_nothing_beats():
    from cimsim.plots_sweep import pareto_front

    pts = [(1.0, 70.0), (2.0, 80.0), (2.5, 75.0), (3.0, 90.0), (4.0, 90.0), (0.5, 60.0), (3.0, 85.0)]
    assert pareto_front(pts) == [(0.5, 60.0), (1.0, 70.0), (2.0, 80.0), (3.0, 90.0)]


def test_cimsim_plot_tradeoff_and_x_options(tmp_path, capsys):
    path = tmp_path / "s.h5"
    sweep.run_sweep(path, grid(bits=(1, 2, 3), seeds=1), SETTINGS, evaluate_point=fake_evaluate)
    code, out, err = run_cli(capsys, "plot", path, "--kind", "tradeoff", "-o", tmp_path / "t.png")
    assert code == 0, err
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, err = run_cli(capsys, "plot", path, "--x", "adc_bits", "-o", tmp_path / "x.png")
    assert code == 0, err
    (tmp_path / "figs").mkdir()
    code, out, err = run_cli(capsys, "plot", path, "-o", tmp_path / "figs")     # a folder: a .png name in it
    assert_one_line_user_error(code, err, f"-o {tmp_path / 'figs'} is a folder; give a file name such as "
                                          f"{tmp_path / 'figs' / 's.png'}")
    code, out, err = run_cli(capsys, "plot", path, "--x", "rows", "-o", tmp_path / "bad.png")
    assert_one_line_user_error(code, err, "--x rows: the sweep varies adc.bits")
    report = tmp_path / "r.h5"
    fake_report(Point("isaac", 4, 0)).to_hdf5(report)
    code, out, err = run_cli(capsys, "plot", report, "--x", "rows")
    assert_one_line_user_error(code, err, "--x, --hue and --kind apply to sweep files")


@pytest.mark.parametrize("lo, hi", [(94e-9, 800e-9), (94e-9, 120e-9), (2e-13, 7e-12), (1e-9, 1e-5)])
def test_log_axes_label_ticks_whatever_the_span(lo, hi):
    import matplotlib.pyplot as plt

    from cimsim.plots_sweep import log_axis

    fig, ax = plt.subplots()
    try:
        ax.plot([lo, hi], [0, 1], "o")
        log_axis(ax.xaxis, [lo, hi], "J")
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.xaxis.get_ticklabels() if t.get_text() and lo <= t.get_position()[0] <= hi]
        assert ax.get_xscale() == "log" and len(labels) >= 2, labels      # at least two labels within the data
        assert all(l.endswith("J") for l in labels)
    finally:
        plt.close(fig)


def test_plot_names_a_damaged_file_and_every_writer_and_suggests_arch_only_for_hue(tmp_path, capsys):
    path = tmp_path / "s.h5"
    sweep.run_sweep(path, grid(bits=(1, 2), seeds=1), SETTINGS, evaluate_point=fake_evaluate)
    capsys.readouterr()   # the sweep's progress lines
    code, out, err = run_cli(capsys, "plot", path, "--x", "rows")
    assert_one_line_user_error(code, err, "choose one of those")
    assert "arch" not in err.split("choose one of those")[1]          # --x cannot be the architecture
    code, out, err = run_cli(capsys, "plot", path, "--hue", "rows")
    assert_one_line_user_error(code, err, "choose one of those, or arch")
    (tmp_path / "cut.h5").write_bytes(path.read_bytes()[:3000])
    code, out, err = run_cli(capsys, "plot", tmp_path / "cut.h5")
    assert_one_line_user_error(code, err, "is a damaged HDF5 file", "'cimsim sweep --out'")
    (tmp_path / "notes.txt").write_text("not a result\n")
    code, out, err = run_cli(capsys, "plot", tmp_path / "notes.txt")
    assert_one_line_user_error(code, err, "is not an HDF5 file", "'cimsim run --out', 'cimsim sweep --out' or "
                                          "'cimsim onchip --out'")
