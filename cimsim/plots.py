"""Figures from results files (``cimsim plot FILE``).

A report file (``cimsim run --out``) draws energy and latency per layer, each mapped layer's output error
against its exact integer product, and energy per component (:func:`report_figure`); a sweep
file (``cimsim sweep --out``) draws accuracy and energy per inference against ADC bits, one line per
architecture; an on-chip learning run (``cimsim onchip --out``, root attribute ``format`` =
``cimsim.onchip``) draws its learning curves (train and test accuracy per epoch beside the
floating-point run) and the cumulative learning energy.
"""

from __future__ import annotations

import math
from pathlib import Path

from cimsim.errors import CimsimError
from cimsim.fileio import check_output_path, reading, save_figure
from cimsim.report import FORMAT as REPORT_FORMAT, Report, ReportFileError, fmt_si, si_prefix
from cimsim import sweepfile
from cimsim.plots_sweep import plot_sweep, si_formatter, sweep_figure, tradeoff_figure  # noqa: F401 (the figures' home)
from cimsim.plots_components import COMPONENT_COLORS, component_colors, stacked_components  # noqa: F401 (idem)

# the image types matplotlib's Agg backend writes (FigureCanvasBase.get_supported_filetypes)
IMAGE_TYPES = (".png", ".pdf", ".svg", ".svgz", ".eps", ".ps", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".pgf",
               ".raw", ".rgba")
ONCHIP_FORMAT = "cimsim.onchip"   # root attribute 'format' of an on-chip learning run file


def _file_format(path: Path) -> str:
    import h5py

    written_by = "give a file written by 'cimsim run --out', 'cimsim sweep --out' or 'cimsim onchip --out'"
    if not path.is_file():
        raise ReportFileError(f"{path} does not exist; {written_by}")
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs.get("format", ""))
    except OSError:
        try:
            with open(path, "rb") as f:   # an HDF5 signature (at 0, or after cimsim's 512-byte seal) that does not open
                head = f.read(520)
        except OSError as exc:
            raise ReportFileError(f"{path} cannot be read ({exc.strerror or exc}); {written_by}") from None
        if b"\x89HDF\r\n\x1a\n" in head:
            raise ReportFileError(f"{path} is a damaged HDF5 file (truncated or overwritten); {written_by}, "
                                  "or run the command again") from None
        raise ReportFileError(f"{path} is not an HDF5 file; {written_by}") from None


def layer_label(row: dict) -> str:
    """A layer's name with its type, as the report charts label it: 'features.0 (Conv2d)'."""
    kind = row.get("kind")
    return f"{row.get('name', '')} ({kind})" if kind else str(row.get("name", ""))


def _scaled(values: list[float], unit: str) -> tuple[list[float], str]:
    """``values`` in the SI unit that suits their largest one, and that unit: ([1.5, 30.0], 'nJ')."""
    top = max((abs(v) for v in values), default=0.0)
    scale, prefix = si_prefix(top) if top > 0 else (1.0, "")
    return [v / scale for v in values], f"{prefix}{unit}"


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def report_figure(report: Report):
    """The figure of one report: energy and latency by layer (each bar labelled with the layer's type), each
    mapped layer's output error against its exact integer product (and, where the run counted them, the share of
    ADC conversions that clipped), and energy by component on a log scale with each component's share written
    beside its bar, so that small components stay readable beside a dominant ADC. Returns the Figure."""
    import matplotlib.pyplot as plt

    rows = report.layers
    labels = [layer_label(r) for r in rows]
    errors = [r.get("rel_error") for r in rows]
    clips = [r.get("clip_rate") for r in rows]
    has_error = any(_finite(e) for e in errors)
    panels = ["energy", "latency", *(["error"] if has_error else []), "components"]
    ratios = {"energy": 2, "latency": 2, "error": 2, "components": 2.2}
    c = report.config
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), max(3.8, 0.3 * len(rows) + 1.8)),
                             gridspec_kw={"width_ratios": [ratios[p] for p in panels]})
    ax = dict(zip(panels, axes))
    ypos = list(range(len(rows)))
    for key, panel, color, unit in (("energy_j", "energy", "tab:blue", "J"), ("latency_s", "latency", "tab:orange", "s")):
        values, scaled_unit = _scaled([r.get(key, 0.0) for r in rows], unit)
        ax[panel].barh(ypos, values, color=color)
        ax[panel].set_xlabel(f"{panel} per inference ({scaled_unit})")
        ax[panel].set_title(f"{panel} by layer")
    ax["energy"].set_yticks(ypos, labels, fontsize=8)
    for panel in panels[1:-1]:
        ax[panel].set_yticks(ypos, [""] * len(rows))
    for panel in panels[:-1]:
        ax[panel].set_ylim(len(rows) - 0.5, -0.5)   # first layer on top
    if has_error:
        e = ax["error"]
        shown = [100 * x if _finite(x) and x > 0 else 0.0 for x in errors]
        e.barh(ypos, shown, color="tab:red", height=0.4 if any(_finite(x) for x in clips) else 0.8,
               label="output error (RMS, % of the exact product)")
        if any(_finite(x) for x in clips):
            e.barh([y + 0.4 for y in ypos], [100 * x if _finite(x) and x > 0 else 0.0 for x in clips], height=0.4,
                   color="tab:purple", label="ADC conversions clipped (%)")
            e.legend(fontsize=7, loc="lower right")
        for y, x in zip(ypos, errors):
            if _finite(x) and x == 0:
                e.text(0.02, y, "exact", transform=e.get_yaxis_transform(), va="center", fontsize=7)
        positive = [v for v in shown if v > 0]
        if positive:   # whole decades, from below the smallest error to at least 100 %
            from matplotlib.ticker import NullFormatter

            e.set_xscale("log")
            e.set_xlim(10.0 ** math.floor(math.log10(min(positive)) - 0.5),
                       10.0 ** max(2, math.ceil(math.log10(max(positive)) + 0.3)))
            e.xaxis.set_minor_formatter(NullFormatter())
        elif not any(_finite(x) and x > 0 for x in clips):   # every mapped layer exact: no scale to read
            e.set_xlim(0, 1)
            e.set_xticks([])
        e.set_xlabel("relative RMS error of the layer output (%)")
        e.set_title("error against the exact integer layer")
    comps = sorted(((k, v) for k, v in report.components.items() if v > 0), key=lambda kv: -kv[1])
    cax = ax["components"]
    if comps:
        from matplotlib.ticker import NullFormatter

        values = [v for _, v in comps]
        cpos = list(range(len(comps)))
        colors = component_colors([k for k, _ in comps])   # each component in its colour of every figure
        cax.barh(cpos, values, color=[colors[k] for k, _ in comps])
        cax.set_yticks(cpos, [k for k, _ in comps], fontsize=8)
        cax.set_ylim(len(comps) - 0.5, -0.5)
        cax.set_xscale("log")
        cax.set_xlim(min(values) / 3, max(values) * 30)   # room for the share labels
        total = sum(v for _, v in comps)
        for y, (v, (_, j)) in enumerate(zip(values, comps)):
            cax.text(v * 1.15, y, f"{100 * j / total:.1f} %", va="center", fontsize=7)
        cax.xaxis.set_major_formatter(si_formatter("J"))   # 1 nJ, 100 nJ: SI prefixes on the decades
        cax.xaxis.set_minor_formatter(NullFormatter())
        cax.set_xlabel("energy per inference (log scale)")
    cax.set_title("energy by component (share of total)")
    fig.suptitle(f"{c.get('model', '?')} on {c.get('dataset', '?')}, {c.get('arch', '?')}: "
                 f"accuracy {100 * report.accuracy:.2f}%, {fmt_si(report.energy_j, 'J')}, "
                 f"{fmt_si(report.latency_s, 's')} per inference")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def plot_report(report: Report, output: str | Path) -> Path:
    """Draw :func:`report_figure` into ``output``."""
    import matplotlib.pyplot as plt

    fig = report_figure(report)
    output = Path(output)
    save_figure(fig, output, dpi=120)
    plt.close(fig)
    return output


def plot_onchip(path: str | Path, output: str | Path) -> Path:
    """Learning curves of an on-chip run file: accuracy per epoch (hardware and float) and energy."""
    import h5py
    import matplotlib.pyplot as plt

    import numpy as np

    with reading(path, ReportFileError, "cimsim on-chip run file", "re-create it with 'cimsim onchip --out'"):
        with h5py.File(path, "r") as f:
            h = {k: np.asarray(f["history"][k][()], dtype=np.float64) for k in f["history"]}
            attrs = dict(f.attrs)
            cfg = {k: v for k, v in f["config"].attrs.items()}
        ep = h["epoch"]
        for k in ("train_accuracy", "test_accuracy", "float_train_accuracy", "float_test_accuracy", "energy_j",
                  "write_energy_j"):
            if h[k].shape != ep.shape or ep.ndim != 1:
                raise ValueError(f"history column {k} has shape {h[k].shape}, epoch {ep.shape}")
        for k in ("test_accuracy", "float_test_accuracy", "energy_j", "time_s"):
            float(attrs.get(k, float("nan")))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    ax.plot(ep, 100 * h["train_accuracy"], "o-", color="tab:blue", label="on-chip, train")
    ax.plot(ep, 100 * h["test_accuracy"], "s-", color="tab:orange", label="on-chip, test")
    ax.plot(ep, 100 * h["float_train_accuracy"], "--", color="tab:blue", alpha=0.6, label="float SGD, train")
    ax.plot(ep, 100 * h["float_test_accuracy"], "--", color="tab:orange", alpha=0.6, label="float SGD, test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("learning curves")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[1]
    ax.plot(ep, h["energy_j"], "o-", color="tab:green", label="total (reads + writes)")
    ax.plot(ep, h["write_energy_j"], "s-", color="tab:red", label="synapse writes")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cumulative learning energy")
    ax.set_yscale("log")
    from matplotlib.ticker import NullFormatter

    ax.yaxis.set_major_formatter(si_formatter("J"))   # 10 pJ ... 100 nJ: SI prefixes on the decades
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_title("energy of learning")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(f"on-chip learning: {cfg.get('synapse', '?')} synapses on {cfg.get('dataset', '?')}: test "
                 f"{100 * float(attrs.get('test_accuracy', float('nan'))):.2f}% (float "
                 f"{100 * float(attrs.get('float_test_accuracy', float('nan'))):.2f}%), "
                 f"{fmt_si(float(attrs.get('energy_j', float('nan'))), 'J')}, "
                 f"{fmt_si(float(attrs.get('time_s', float('nan'))), 's')}")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    output = Path(output)
    save_figure(fig, output, dpi=120)
    plt.close(fig)
    return output


def plot_file(path: str | Path, output: str | Path | None = None, *, x: str | None = None, hue: str | None = None,
              kind: str | None = None) -> Path:
    """Draw the results file at ``path`` into ``output`` (default: the same name with .png). For a sweep file,
    ``x``/``hue`` choose the swept parameter and the line grouping, ``kind='tradeoff'`` the trade-off plots."""
    path = Path(path)
    if not path.is_file():
        raise ReportFileError(f"{path} does not exist or is not a regular file; give a file written by "
                              "'cimsim run --out', 'cimsim sweep --out' or 'cimsim onchip --out'")
    # before reading: a device, a folder (answered with a .png name) or an unknown image type is refused
    out = check_output_path(output if output is not None else path.with_suffix(".png"), "-o", extensions=IMAGE_TYPES,
                            example=path.with_suffix(".png").name)
    fmt = _file_format(path)
    if fmt != sweepfile.FORMAT and (x or hue or kind):
        raise CimsimError(f"--x, --hue and --kind apply to sweep files; {path} is not one")
    if fmt == REPORT_FORMAT:
        return plot_report(Report.from_hdf5(path), out)
    if fmt == sweepfile.FORMAT:
        return plot_sweep(path, out, x=x, hue=hue or "arch", kind=kind or "sweep")
    if fmt == ONCHIP_FORMAT:
        return plot_onchip(path, out)
    raise CimsimError(f"{path} holds no plottable cimsim results (format {fmt or 'missing'}); "
                      "give a file written by 'cimsim run --out', 'cimsim sweep --out' or 'cimsim onchip --out'")
