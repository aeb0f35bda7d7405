"""Figures from results files (``cimsim plot FILE``).

A report file (``cimsim run --out``) draws energy and latency per layer and energy per component; a sweep
file (``cimsim sweep --out``) draws accuracy and energy per inference against ADC bits, one line per
architecture; an on-chip learning run (``cimsim onchip --out``, root attribute ``format`` =
``cimsim.onchip``) draws its learning curves (train and test accuracy per epoch beside the
floating-point run) and the cumulative learning energy.
"""

from __future__ import annotations

from pathlib import Path

from cimsim.errors import CimsimError
from cimsim.report import FORMAT as REPORT_FORMAT, Report, ReportFileError
from cimsim import sweepfile
from cimsim.plots_sweep import plot_sweep, sweep_figure, tradeoff_figure  # noqa: F401 (the figures' home)

ONCHIP_FORMAT = "cimsim.onchip"   # root attribute 'format' of an on-chip learning run file


def _file_format(path: Path) -> str:
    import h5py

    if not path.is_file():
        raise ReportFileError(f"{path} does not exist; give a file written by 'cimsim run --out'")
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs.get("format", ""))
    except OSError:
        raise ReportFileError(f"{path} is not an HDF5 file; give a file written by 'cimsim run --out'") from None


def plot_report(report: Report, output: str | Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in report.layers]
    energy = [r["energy_j"] * 1e9 for r in report.layers]
    latency = [r["latency_s"] * 1e6 for r in report.layers]
    c = report.config
    fig, axes = plt.subplots(1, 3, figsize=(15, max(3.5, 0.28 * len(names) + 1.5)),
                             gridspec_kw={"width_ratios": [2, 2, 1.4]})
    ypos = range(len(names))
    axes[0].barh(ypos, energy, color="tab:blue")
    axes[0].set_yticks(list(ypos), names, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("energy per inference (nJ)")
    axes[0].set_title("energy by layer")
    axes[1].barh(ypos, latency, color="tab:orange")
    axes[1].set_yticks(list(ypos), [""] * len(names))
    axes[1].invert_yaxis()
    axes[1].set_xlabel("latency per inference (us)")
    axes[1].set_title("latency by layer")
    comps = sorted(report.components.items(), key=lambda kv: -kv[1])
    axes[2].bar([k for k, _ in comps], [v * 1e9 for _, v in comps], color="tab:green")
    axes[2].set_ylabel("energy per inference (nJ)")
    axes[2].set_title("energy by component")
    axes[2].tick_params(axis="x", rotation=45)
    fig.suptitle(f"{c.get('model', '?')} on {c.get('dataset', '?')}, {c.get('arch', '?')}: "
                 f"accuracy {100 * report.accuracy:.2f}%, {report.energy_j * 1e6:.3g} uJ, "
                 f"{report.latency_s * 1e6:.3g} us per inference")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    output = Path(output)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output


def plot_onchip(path: str | Path, output: str | Path) -> Path:
    """Learning curves of an on-chip run file: accuracy per epoch (hardware and float) and energy."""
    import h5py
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with h5py.File(path, "r") as f:
        h = {k: f["history"][k][()] for k in f["history"]}
        attrs = dict(f.attrs)
        cfg = {k: v for k, v in f["config"].attrs.items()}
    ep = h["epoch"]
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
    ax.plot(ep, h["energy_j"] * 1e6, "o-", color="tab:green", label="total (reads + writes)")
    ax.plot(ep, h["write_energy_j"] * 1e6, "s-", color="tab:red", label="synapse writes")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cumulative learning energy (uJ)")
    ax.set_yscale("log")
    ax.set_title("energy of learning")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(f"on-chip learning: {cfg.get('synapse', '?')} synapses on {cfg.get('dataset', '?')}: test "
                 f"{100 * float(attrs.get('test_accuracy', float('nan'))):.2f}% (float "
                 f"{100 * float(attrs.get('float_test_accuracy', float('nan'))):.2f}%), "
                 f"{float(attrs.get('energy_j', float('nan'))) * 1e6:.3g} uJ, "
                 f"{float(attrs.get('time_s', float('nan'))) * 1e3:.3g} ms")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    output = Path(output)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output


def plot_file(path: str | Path, output: str | Path | None = None, *, x: str | None = None, hue: str | None = None,
              kind: str | None = None) -> Path:
    """Draw the results file at ``path`` into ``output`` (default: the same name with .png). For a sweep file,
    ``x``/``hue`` choose the swept parameter and the line grouping, ``kind='tradeoff'`` the trade-off plots."""
    path = Path(path)
    fmt = _file_format(path)
    if fmt != sweepfile.FORMAT and (x or hue or kind):
        raise CimsimError(f"--x, --hue and --kind apply to sweep files; {path} is not one")
    out = Path(output) if output else path.with_suffix(".png")
    if out.parent and not out.parent.exists():
        raise CimsimError(f"folder {out.parent} does not exist; create it or choose another -o")
    if fmt == REPORT_FORMAT:
        return plot_report(Report.from_hdf5(path), out)
    if fmt == sweepfile.FORMAT:
        return plot_sweep(path, out, x=x, hue=hue or "arch", kind=kind or "sweep")
    if fmt == ONCHIP_FORMAT:
        return plot_onchip(path, out)
    raise CimsimError(f"{path} holds no plottable cimsim results (format {fmt or 'missing'}); "
                      "give a file written by 'cimsim run --out', 'cimsim sweep --out' or 'cimsim onchip --out'")
