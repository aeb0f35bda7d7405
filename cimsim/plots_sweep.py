"""Figures of a sweep file: accuracy, energy, latency and area against any swept parameter, and the
accuracy-cost trade-off (Pareto front, energy-delay product, area).

Rows are the points aggregated over seeds (:func:`cimsim.sweepfile.aggregate`): means with min-max bars.
"""

from __future__ import annotations

from pathlib import Path

from cimsim import sweepfile
from cimsim.errors import ConfigError
from cimsim.fileio import save_figure

# the quantities drawn against the swept parameter: (row key, axis label, scale, log axis)
METRICS = (("accuracy", "accuracy (%)", 100.0, False), ("energy_j", "energy per inference (J)", 1.0, True),
           ("latency_s", "latency per inference (s)", 1.0, True), ("area_m2", "chip area (mm^2)", 1e6, False))
# drawn instead of the chip's area when the crossbars a network occupies vary over the sweep (SME's squeeze-out,
# cimsim.mappers.sme: the chip stays the same, the arrays in use change)
CROSSBARS = ("crossbars", "crossbars allocated", 1.0, False)
ALIASES = {"adc_bits": "adc.bits"}
# tick labels with SI prefixes (100 nJ, 2 us) for the quantities in SI units; a "log axis" metric is drawn on a
# log axis only where its values span at least LOG_SPAN (a decade: below that a log axis labels no tick or two)
UNITS = {"energy_j": "J", "latency_s": "s"}
LOG_SPAN = 10.0


def si_formatter(unit: str):
    """Tick labels as the reports write values (:func:`cimsim.report.fmt_si`: '100 nJ', '2 us')."""
    import matplotlib.ticker

    from cimsim.report import fmt_si

    return matplotlib.ticker.FuncFormatter(lambda v, pos: fmt_si(v, unit))


def log_axis(axis, values, unit: str | None = None) -> None:
    """Put ``axis`` (ax.xaxis or ax.yaxis) on a log scale with labelled ticks, whatever the span of ``values``:
    across a decade or more, the decades (and, below two decades, 2x and 5x between them) are labelled; within a
    decade, where a log axis has one labelled tick or none, 1, 2, 3, 5 and 7 times the decades are (round
    values such as 150, 200, 250 nJ within a factor of three). Labels carry SI prefixes when ``unit`` is given,
    else plain numbers."""
    import matplotlib.ticker as mt

    class _Positive(mt.MaxNLocator):     # round linear steps, none at or below zero (no place on a log axis)
        def tick_values(self, vmin, vmax):
            return [v for v in super().tick_values(vmin, vmax) if v > 0]

    (axis.axes.set_xscale if axis is axis.axes.xaxis else axis.axes.set_yscale)("log")
    fmt = (lambda: si_formatter(unit)) if unit else (lambda: mt.FormatStrFormatter("%g"))
    positive = [v for v in values if v is not None and v > 0]
    span = max(positive) / min(positive) if positive else LOG_SPAN
    if span < 3:
        axis.set_major_locator(_Positive(nbins=5, steps=[1, 2, 2.5, 5, 10]))
        axis.set_minor_locator(mt.NullLocator())
    elif span < LOG_SPAN:
        axis.set_major_locator(mt.LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0, 7.0)))
        axis.set_minor_locator(mt.LogLocator(base=10, subs=(4.0, 6.0, 8.0, 9.0)))
    elif span < LOG_SPAN ** 2:
        axis.set_major_locator(mt.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_minor_locator(mt.LogLocator(base=10, subs=(3.0, 4.0, 6.0, 7.0, 8.0, 9.0)))
    axis.set_major_formatter(fmt())
    axis.set_minor_formatter(mt.NullFormatter())
# the x axis of an ADMM sweep (cimsim.sweep_admm) may be the target (admm.compression) or the weight compression each
# point's network reached (weights / non-zero weights, recorded by the sweep)
REACHED = "weight_compression"
TARGET = "admm.compression"


def swept_parameters(rows: list[dict]) -> list[str]:
    """The parameters that take more than one value in ``rows`` (ADC bits first)."""
    values: dict[str, set] = {}
    for r in rows:
        for k, v in r["params"].items():
            values.setdefault(k, set()).add(v)
    out = [k for k, vs in values.items() if len(vs) > 1]
    return sorted(out, key=lambda k: (k != "adc.bits", k))


def _label(arch: str, rows: list[dict], extra: dict) -> str:
    bits = rows[0].get("bits") if rows else None
    text = arch + (f" ({bits})" if bits else "")
    return text + "".join(f", {k}={sweepfile.format_value(v)}" for k, v in extra.items())


def _operand_bits(results) -> dict[str, str]:
    """'16-bit weights and inputs' per architecture, from the reports' parameters (where they say)."""
    out = {}
    for p, r in results.items():
        ap = r.config.get("arch_params", {}) or {}
        w, a = ap.get("weight_bits"), ap.get("input_bits")
        if w is not None and a is not None:
            out[p.arch] = f"{w}-bit weights and inputs" if w == a else f"{w}-bit weights, {a}-bit inputs"
    return out


def sweep_figure(results: dict, title: str = "", x: str | None = None, hue: str = "arch"):
    """Accuracy, energy, latency and area per inference (crossbars allocated instead of the area where they vary
    within an architecture) against the swept parameter ``x`` (default: the first that varies, ADC bits first),
    one line per ``hue`` value (the architecture by default, or a parameter) and per combination of the other
    varying parameters. An architecture without ``x`` is a labelled horizontal
    line; the floating-point reference a dashed line (one per architecture when they differ). Returns the
    matplotlib Figure."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = sweepfile.aggregate(results)
    for r, bits in ((r, _operand_bits(results).get(r["arch"])) for r in rows):
        r["bits"] = bits
    arch_crossbars = {(r["arch"], r["crossbars"]) for r in rows}     # crossbars that vary within an architecture
    metrics = METRICS[:3] + (CROSSBARS,) if len(arch_crossbars) > len({a for a, _ in arch_crossbars}) else METRICS
    x = ALIASES.get(x, x) if x else None
    if x == REACHED:     # the reached compression as a parameter of the rows that have it, in place of the target
        for r in rows:
            if r["weight_compression"] is not None:
                r["params"] = {**{k: v for k, v in r["params"].items() if k != TARGET},
                               REACHED: round(r["weight_compression"], 6)}
    varying = swept_parameters(rows)
    x = x or (varying[0] if varying else "adc.bits")
    hue = ALIASES.get(hue, hue)
    known = {k for r in rows for k in r["params"]}
    for name, value in (("--x", x), ("--hue", hue)):
        if value != "arch" and value not in known and not (name == "--x" and not known):
            raise ConfigError(f"{name} {value}: the sweep varies {', '.join(sorted(known)) or 'nothing'}; "
                              + ("choose one of those" if name == "--x" else "choose one of those, or arch"))
    others = [k for k in varying if k not in (x, hue)]
    swept = [r for r in rows if x in r["params"]]
    flat = [r for r in rows if x not in r["params"]]
    hues = list(dict.fromkeys(r["arch"] if hue == "arch" else r["params"].get(hue) for r in rows))
    color = {h: _family(i)[1] for i, h in enumerate(hues)}
    groups: dict[tuple, list[dict]] = {}
    for r in swept:
        h = r["arch"] if hue == "arch" else r["params"].get(hue)
        key = (r["arch"], h, tuple((k, r["params"].get(k)) for k in others))
        groups.setdefault(key, []).append(r)
    groups = dict(sorted(groups.items(), key=lambda kv: (hues.index(kv[0][1]), str(kv[0][0]),
                                                          [_order(v) for _, v in kv[0][2]])))
    per_hue = {h: [g for g in groups if g[1] == h] for h in hues}
    entries = len(groups) + len(flat) + len({r["arch"] for r in rows})
    ncol = 1 if entries <= 4 else 2 if entries <= 12 else 3
    legend_rows = -(-entries // ncol)
    height = 8.4 + 0.2 * legend_rows
    fig, axes = plt.subplots(2, 2, figsize=(12, height))
    axes = axes.ravel()
    numeric = all(isinstance(r["params"][x], (int, float)) for r in swept)
    markers, line_styles = ("o", "s", "^", "D", "v", "P", "X"), ("-", "--", ":", "-.")
    # the lines of one hue share a colour family, in shades from light to dark along the other parameters, and
    # differ in marker and line style too (28 distinct pairs): no two lines look alike
    for key, rs in groups.items():
        arch, h, extra = key
        i, n = per_hue[h].index(key), len(per_hue[h])
        shade = _family(hues.index(h), i, n)[0] if n > 1 else color[h]
        marker, ls = markers[i % len(markers)], line_styles[i % len(line_styles)]
        rs = sorted(rs, key=lambda r: r["params"][x] if numeric else str(r["params"][x]))
        xs = [r["params"][x] if numeric else str(r["params"][x]) for r in rs]
        extra = dict(extra) if hue == "arch" else {hue: h, **dict(extra)}
        label = _label(arch, rs, extra)
        for ax, (key, _, scale, _) in zip(axes, metrics):
            y = [scale * r[key] for r in rs]
            err = [[scale * (r[key] - r[f"{key}_min"]) for r in rs], [scale * (r[f"{key}_max"] - r[key]) for r in rs]]
            # categories (an encoding, a cell kind) have no order to draw a line through: markers only
            ax.errorbar(xs, y, yerr=err, marker=marker, ls=ls if numeric else "none", ms=5, capsize=3, color=shade,
                        label=label)
    none = "no ADC" if x == "adc.bits" else f"no {x}"
    for r in flat:
        h = r["arch"] if hue == "arch" else r["params"].get(hue)
        label = f"{_label(r['arch'], [r], {})} ({none})"
        for ax, (key, _, scale, _) in zip(axes, metrics):
            ax.axhline(scale * r[key], color=color[h], lw=2.5, alpha=0.6, label=label, zorder=1)
            if r[f"{key}_max"] > r[f"{key}_min"]:
                ax.axhspan(scale * r[f"{key}_min"], scale * r[f"{key}_max"], color=color[h], alpha=0.15)
    _references(axes[0], rows, color if hue == "arch" else {}, x if numeric else None)
    xlabel = {"adc.bits": "ADC bits", TARGET: "ADMM target compression (admm.compression)",
              REACHED: "weight compression reached (weights / non-zero weights)"}.get(x, x)
    for ax, (key, ylabel, scale, log) in zip(axes, metrics):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel.split(' (')[0]} vs {xlabel.split(' (')[0]}")
        values = [v for r in rows for v in (r[key], r[f"{key}_min"], r[f"{key}_max"]) if v is not None and v > 0]
        if log and values and max(values) >= LOG_SPAN * min(values):
            log_axis(ax.yaxis, values, UNITS.get(key))
        else:
            if key != "accuracy" and values:     # a cost on a linear axis from zero: heights, not offsets, compare
                ax.set_ylim(0, 1.06 * scale * max(values))
            if key in UNITS:
                ax.yaxis.set_major_formatter(si_formatter(UNITS[key]))
        if x in (TARGET, REACHED) and swept and numeric:     # compression doubles from point to point
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.grid(True, alpha=0.3)
    if swept and not numeric:     # categories: half a slot of room on either side, not the axis' edges
        n = len({str(r["params"][x]) for r in swept})
        for ax in axes:
            ax.set_xlim(-0.5, n - 0.5)
    if x == "adc.bits" and swept:
        bits = sorted({r["params"][x] for r in swept})
        for ax in axes:
            ax.set_xlim(bits[0] - 0.5, bits[-1] + 0.5)
            ax.set_xticks(list(range(bits[0], bits[-1] + 1)))
    seeds = max((r["seeds"] for r in rows), default=0)
    note = f" (mean of {seeds} seeds, bars: min-max)" if seeds > 1 else ""
    fig.suptitle((title + note).strip())
    # one legend for the four panels, below them, where it hides no data
    seen: dict = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(text, handle)
    below = (0.25 + 0.2 * legend_rows) / height
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, below, 1, 1 - 0.35 / height))
    return fig


# colour families of the hues (the architectures): (colormap of the shades, colour of a lone line)
FAMILIES = (("Blues", "tab:blue"), ("Oranges", "tab:orange"), ("Greens", "tab:green"), ("Reds", "tab:red"),
            ("Purples", "tab:purple"), ("Greys", "tab:gray"))
# hues past the families: tab10's brown, pink, olive and cyan, then tab20's light tones (none a family's colour)
EXTRA_HUES = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
              "#aec7e8", "#ffbb78", "#98df8a", "#ff9896")


def _family(index: int, i: int = 0, n: int = 1) -> tuple:
    """Shade ``i`` of ``n`` (light to dark) of the ``index``-th hue's colour family, and the family's own colour."""
    import matplotlib

    cmap, base = FAMILIES[index % len(FAMILIES)]
    if index >= len(FAMILIES):      # more hues than families: colours no family uses, one shade each
        base = EXTRA_HUES[(index - len(FAMILIES)) % len(EXTRA_HUES)]
        return base, base
    return matplotlib.colormaps[cmap](0.45 + 0.5 * i / max(n - 1, 1)), base


def _order(value):
    """Sort key of a parameter value: numbers by value, before anything else by its text."""
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


def _references(ax, rows: list[dict], color: dict, x: str | None = None) -> None:
    """The float reference: one line when every architecture ran the same reference network, else one per
    architecture (hcim's is the network its PSQ checkpoint was fine-tuned from); where it changes along a numeric
    ``x`` within an architecture (an ADMM sweep: each point's reference is its pruned network), a dashed curve."""
    curves = {a for a in dict.fromkeys(r["arch"] for r in rows) if x is not None
              and len({r["digital_accuracy"] for r in rows if r["arch"] == a and x in r["params"]}) > 1}
    for a in curves:
        rs = sorted((r for r in rows if r["arch"] == a and x in r["params"]), key=lambda r: r["params"][x])
        pts: dict = {}
        for r in rs:     # one value per x (the mean over the other parameters' rows)
            pts.setdefault(r["params"][x], []).append(r["digital_accuracy"])
        ax.plot(list(pts), [100.0 * sum(v) / len(v) for v in pts.values()], color=color.get(a, "0.4"), ls="--",
                lw=1, marker="x", ms=4, label=f"float network of {a} (each point's)", zorder=3)
    rows = [r for r in rows if r["arch"] not in curves]
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    refs = {a: sum(r["digital_accuracy"] * r["seeds"] for r in rows if r["arch"] == a)
            / sum(r["seeds"] for r in rows if r["arch"] == a) for a in archs}
    if refs and max(refs.values()) - min(refs.values()) < 1e-12:
        ref = next(iter(refs.values()))
        ax.axhline(100.0 * ref, color="0.2", ls="--", lw=1, label=f"float reference ({100 * ref:.2f}%)", zorder=3)
    else:
        for a, ref in refs.items():
            ax.axhline(100.0 * ref, color=color.get(a, "0.4"), ls="--", lw=1,
                       label=f"float reference of {a} ({100 * ref:.2f}%)", zorder=3)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, accuracy) points no other point beats on both (lower cost and higher accuracy), by cost."""
    front, best = [], float("-inf")
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((cost, acc))
            best = acc
    return front


def tradeoff_figure(results: dict, title: str = ""):
    """Accuracy against energy per inference (with the Pareto front over all points), against the
    energy-delay product and against chip area; one colour per architecture."""
    import matplotlib.pyplot as plt

    rows = sweepfile.aggregate(results)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    color = {a: colors[i % len(colors)] for i, a in enumerate(archs)}
    costs = (("energy_j", "energy per inference (J)", lambda r: r["energy_j"]),
             ("edp", "energy-delay product (J s)", lambda r: r["energy_j"] * r["latency_s"]),
             ("area_m2", "chip area (mm^2)", lambda r: 1e6 * r["area_m2"]))
    for ax, (_, label, cost) in zip(axes, costs):
        for a in archs:
            rs = [r for r in rows if r["arch"] == a]
            ax.scatter([cost(r) for r in rs], [100 * r["accuracy"] for r in rs], color=color[a], s=22, label=a)
        front = pareto_front([(cost(r), 100 * r["accuracy"]) for r in rows])
        ax.step([c for c, _ in front], [a for _, a in front], where="post", color="0.2", lw=1.2,
                label="Pareto front")
        if label != "chip area (mm^2)":     # labelled ticks even where the points span less than a decade
            log_axis(ax.xaxis, [cost(r) for r in rows], label.split("(")[1][:-1])
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")     # where it hides the fewest points
    axes[0].set_title("accuracy vs energy")
    axes[1].set_title("accuracy vs energy-delay product")
    axes[2].set_title("accuracy vs area")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def plot_sweep(path: str | Path, output: str | Path, x: str | None = None, hue: str = "arch",
               kind: str = "sweep") -> Path:
    """Draw a sweep file: ``kind='sweep'`` (metrics against ``x``) or ``'tradeoff'``."""
    import matplotlib.pyplot as plt

    from cimsim.errors import CimsimError

    results = sweepfile.read_points(path)
    if not results:
        raise CimsimError(f"{path} holds no finished points yet; run 'cimsim sweep --out {path}' first")
    s = sweepfile.read_settings(path)
    limit = f", first {s['limit']} test examples" if s.get("limit") else ""
    title = f"{s.get('model', '?')} on {s.get('dataset', '?')}{limit}"
    fig = tradeoff_figure(results, title) if kind == "tradeoff" else sweep_figure(results, title, x=x, hue=hue)
    output = Path(output)
    save_figure(fig, output, dpi=120)
    plt.close(fig)
    return output
