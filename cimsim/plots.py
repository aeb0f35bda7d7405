"""Figures from results files (``cimsim plot FILE``).

Today a report file (``cimsim run --out``) draws energy and latency per layer and energy per component;
sweep files and learning curves join with the milestones that write them.
"""

from __future__ import annotations

from pathlib import Path

from cimsim.errors import CimsimError
from cimsim.report import FORMAT as REPORT_FORMAT, Report, ReportFileError


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


def plot_file(path: str | Path, output: str | Path | None = None) -> Path:
    """Draw the results file at ``path`` into ``output`` (default: the same name with .png)."""
    path = Path(path)
    fmt = _file_format(path)
    out = Path(output) if output else path.with_suffix(".png")
    if out.parent and not out.parent.exists():
        raise CimsimError(f"folder {out.parent} does not exist; create it or choose another -o")
    if fmt == REPORT_FORMAT:
        return plot_report(Report.from_hdf5(path), out)
    raise CimsimError(f"{path} holds no plottable cimsim results (format {fmt or 'missing'}); "
                      "give a file written by 'cimsim run --out'")
