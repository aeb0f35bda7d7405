"""Energy by component as stacked bars, with one fixed colour per component.

Every component an architecture books energy to has its own colour in :data:`COMPONENT_COLORS`, so the ADC is
the same red in every figure and no two components of one chart share a colour (matplotlib's default cycle has
ten colours; a tiled architecture books thirteen or more components). A component missing from the table gets
a colour no other component of the same chart uses.
"""

from __future__ import annotations

from typing import Mapping

# related components share a hue in two shades (the ADC and its sample-and-hold, the bus and the router ...)
COMPONENT_COLORS = {
    "adc": "#d62728", "sample_hold": "#ff9896", "comparator": "#8c564b", "sense_amp": "#843c39",
    "tia": "#f7b6d2", "reference_dac": "#6b6ecf", "dac": "#1f77b4", "crossbar": "#aec7e8",
    "edram": "#2ca02c", "register": "#98df8a", "bus": "#9467bd", "router": "#c5b0d5",
    "shift_add": "#ff7f0e", "tile_shift_add": "#ffbb78", "activation": "#17becf", "pooling": "#9edae5",
    "dcim": "#e377c2", "accumulator": "#c49c94", "buffer": "#dbdb8d", "alu": "#bcbd22",
    "mac_array": "#393b79", "weight_sram": "#637939", "act_sram": "#9c9ede", "digital_mul": "#e7ba52",
    "hyper_transport": "#7b4173", "lif": "#ce6dbd", "nns_a": "#8ca252",
}
# for components outside the table: colours none of the table's uses
SPARE_COLORS = ("#7f7f7f", "#c7c7c7", "#5254a3", "#b5cf6b", "#8c6d31", "#bd9e39", "#ad494a", "#e7969c",
                "#a55194", "#de9ed6", "#000000", "#cedb9c")


def component_colors(names) -> dict[str, str]:
    """A distinct colour for each of ``names``: the fixed one where the table has it, else a spare one."""
    out, spare = {}, iter(SPARE_COLORS)
    for n in names:
        if n in COMPONENT_COLORS:
            out[n] = COMPONENT_COLORS[n]
    used = set(out.values())
    for n in names:
        if n not in out:
            c = next((c for c in spare if c not in used), None)
            if c is None:       # more unknown components than spare colours: greys not yet used
                c = next((g for g in (str(round(0.1 + 0.8 * k / 15, 3)) for k in range(16)) if g not in used),
                         str(round(0.15 + 0.7 * (len(out) % 8) / 7, 2)))
            out[n] = c
            used.add(c)
    return out


def stacked_components(ax, groups: Mapping[str, Mapping[str, float]], *, scale: float = 1e9, share: bool = False,
                       legend: bool = True, fontsize: float = 7):
    """One stacked bar per group (``{bar label: {component: J}}``), components in their fixed colours, the
    largest component (over all bars) at the bottom. ``scale`` multiplies the energies (1e9: nJ); ``share=True``
    draws each component's percentage of its bar's total instead. The legend, in stacking order (top first),
    goes outside the axes on the right. Returns the components in stacking order (bottom first)."""
    labels = list(groups)
    totals: dict[str, float] = {}
    for comps in groups.values():
        for c, v in comps.items():
            totals[c] = totals.get(c, 0.0) + v
    order = [c for c in sorted(totals, key=lambda c: (-totals[c], c)) if totals[c] > 0]
    color = component_colors(order)
    bottom = [0.0] * len(labels)
    for c in order:
        if share:
            vals = [100 * g.get(c, 0.0) / (sum(g.values()) or 1.0) for g in groups.values()]
        else:
            vals = [scale * g.get(c, 0.0) for g in groups.values()]
        ax.bar(labels, vals, bottom=bottom, label=c, color=color[c], edgecolor="white", linewidth=0.3)
        bottom = [b + v for b, v in zip(bottom, vals)]
    if legend and order:
        handles, names = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], names[::-1], fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0.0, title="component", title_fontsize=fontsize)
    return order
