"""Figures of device models (``cimsim devices plot KIND``): an ADC's energy per conversion beside the survey frontiers.

Three panels for ``sar-adc`` or ``flash-adc``: (a) energy per conversion against bits at several sample rates at
32 nm, each with the survey's thermal line (Schreier, 4x per bit, dashed) and technology line (Walden, 2x per bit,
dotted) and the knee where they meet, plus ISAAC's Table 6 converter and the measured converter it is based on;
(b) the same at ISAAC's 1.28 GS/s for three nodes, SAR and flash; (c) the technology frontier itself, Walden FoM
against sample rate at 32 nm, with the survey designs it was fitted to.
"""

from __future__ import annotations

from pathlib import Path

from cimsim.devices import adc_survey as survey
from cimsim.devices.converters import FlashADC, SarADC
from cimsim.devices.technology import energy_scale
from cimsim.errors import ConfigError
from cimsim.fileio import save_figure

PLOTTABLE = {"sar-adc": SarADC, "flash-adc": FlashADC}
SAMPLE_RATES_HZ = (1e7, 1.28e9, 1e10)      # a low-speed CiM readout, ISAAC's rate, a multi-GS/s link converter
NODES_NM = (22, 32, 65)
FORMATS = (".png", ".pdf", ".svg")


def _curve(cls, bits, **kw):
    return [cls(bits=b, **kw).energy_j for b in bits]


def converter_figure(kind: str = "sar-adc"):
    """The figure of a converter model against the survey's frontiers (see the module docstring)."""
    import matplotlib.pyplot as plt

    if kind not in PLOTTABLE:
        raise ConfigError(f"'devices plot' draws {', '.join(PLOTTABLE)}; got {kind!r}")
    cls = PLOTTABLE[kind]
    arch = "flash" if cls is FlashADC else "sar"
    top = 10 if cls is FlashADC else 14
    bits = list(range(1, top + 1))
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 5.2))
    colors = ("tab:green", "tab:blue", "tab:red")

    for fs, col in zip(SAMPLE_RATES_HZ, colors):
        label = f"{fs / 1e9:g} GS/s" if fs >= 1e9 else f"{fs / 1e6:g} MS/s"
        a.plot(bits, [e * 1e12 for e in _curve(cls, bits, sample_rate_hz=fs, node_nm=32)], "o-", color=col, ms=4,
               label=f"{kind}, {label}")
        a.plot(bits, [survey.schreier_energy_j(n, fs) * 1e12 for n in bits], "--", color=col, lw=1, alpha=0.7)
        a.plot(bits, [survey.walden_energy_j(n, fs, 32, arch) * 1e12 for n in bits], ":", color=col, lw=1.3)
        k = survey.knee_enob(fs, 32, arch)
        if 1 <= k <= top:
            a.plot([k], [survey.envelope_energy_j(k, fs, 32, arch) * 1e12], "s", mfc="none", mec=col, ms=10)
    a.plot([], [], "k--", lw=1, label="thermal bound (Schreier), 4x/bit")
    a.plot([], [], "k:", lw=1.3, label="technology floor (Walden), 2x/bit")
    a.plot([], [], "ks", mfc="none", ms=10, label="knee")
    a.plot([8], [16e-3 / 8 / 1.28e9 * 1e12], "k*", ms=13, label="ISAAC Table 6 (8 b, 1.28 GS/s)")
    fs_k, _, enob_k, e_k, _ = survey.KULL_2013
    a.plot([enob_k], [e_k * 1e12], "kD", ms=7, label="Kull 2013, measured ENOB (1.2 GS/s)")
    a.set_title(f"(a) {kind} at 32 nm: energy per conversion")

    for node, ls in zip(NODES_NM, (":", "-", "--")):
        a_b = _curve(SarADC, bits[:10], sample_rate_hz=1.28e9, node_nm=node)
        f_b = _curve(FlashADC, bits[:10], sample_rate_hz=1.28e9, node_nm=node)
        b.plot(bits[:10], [e * 1e12 for e in a_b], ls, color="tab:blue", marker="o", ms=3, label=f"SAR, {node} nm")
        b.plot(bits[:10], [e * 1e12 for e in f_b], ls, color="tab:orange", marker="^", ms=3, label=f"flash, {node} nm")
    b.plot([8], [16e-3 / 8 / 1.28e9 * 1e12], "k*", ms=13, label="ISAAC Table 6")
    b.set_title("(b) 1.28 GS/s: nodes, SAR and flash")

    a.set_ylim(bottom=3e-4)
    for ax in (a, b):
        ax.set_yscale("log")
        ax.set_xlabel("resolution (bits = ENOB)")
        ax.set_ylabel("energy per conversion (pJ)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7.5, loc="upper left")

    import numpy as np

    fs_line = np.logspace(5, 11.2, 200)
    c.plot(fs_line, [survey.walden_fom_j(f) * 1e15 for f in fs_line], "k-", label="Walden frontier (fit), 32 nm; plateau: 5th percentile below 100 MS/s")
    c.plot(fs_line, [survey.FLASH_WALDEN_FACTOR * survey.walden_fom_j(f) * 1e15 for f in fs_line], "-",
           color="tab:orange", label=f"flash floor ({survey.FLASH_WALDEN_FACTOR:g}x)")
    for designs, marker, col, label in ((survey.WALDEN_FRONT, "o", "k", "survey Pareto front (all architectures)"),
                                        (survey.FLASH_FRONT, "^", "tab:orange", "survey Pareto front (flash)")):
        c.plot([d[0] for d in designs], [d[3] / 2 ** d[2] * energy_scale(d[1], 32) * 1e15 for d in designs], marker,
               color=col, mfc="none", label=label)
    c.axvline(1.28e9, color="tab:blue", lw=0.8, ls="--")
    c.text(1.35e9, survey.WALDEN_FOM_MIN_J * 1e15 * 1.3, "ISAAC 1.28 GS/s", color="tab:blue", fontsize=8)
    c.set_xscale("log")
    c.set_yscale("log")
    c.set_xlabel("Nyquist sample rate (S/s)")
    c.set_ylabel("Walden FoM at 32 nm (fJ per conversion step)")
    c.set_title("(c) technology frontier, Murmann survey 1997-2025")
    c.grid(True, which="both", alpha=0.3)
    c.legend(fontsize=7.5, loc="upper left")
    fig.tight_layout()
    return fig


def check_output(output: str | Path, example: str = "adc.png") -> Path:
    """Fail before drawing when the image cannot be written there: the checks of every cimsim output path
    (:func:`cimsim.fileio.check_output_path`: not a folder or device, an existing writable folder) and an image
    suffix of :data:`FORMATS`."""
    from cimsim.fileio import check_output_path

    return check_output_path(output, "-o", extensions=FORMATS, example=example)


def plot_converter(kind: str, output: str | Path) -> Path:
    """Draw :func:`converter_figure` into ``output``."""
    import matplotlib.pyplot as plt

    out = check_output(output)
    fig = converter_figure(kind)
    save_figure(fig, out, dpi=110)
    plt.close(fig)
    return out
