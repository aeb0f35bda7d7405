"""``cimsim archs``: the architectures, and one architecture's chip-level figures, inventory and parameters."""

from __future__ import annotations

from cimsim.cli.common import add_command, emit_json, key_value

MM2 = 1e-6


def _fmt(value: float, unit: str) -> str:
    from cimsim.report import fmt_si

    return fmt_si(value, unit)


def _counted(noun: str, n) -> str:
    """``noun`` (a plural: 'chips', 'weight slices') in the singular for a count of one."""
    return noun[:-1] if n == 1 and noun.endswith("s") else noun


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  " + "  ".join(c.rjust(w) if i in right else c.ljust(w)  # noqa: E731
                                          for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(header), "  " + "  ".join("-" * w for w in widths), *map(line, rows)]


def show_text(spec, sets=None) -> str:
    """The readable summary of an architecture: figures in engineering units, the breakdown by component kind,
    and every parameter with its unit, range and source. ``sets``: the ``--set`` pairs the figures are at (the
    description names the default design)."""
    s = spec.summary()
    changed = "".join(f"\n  with {k} = {v} (the figures below are at these settings)" for k, v in (sets or []))
    out = [f"{s['name']}: {s['description']}{changed}", ""]
    out.append(f"  peak throughput   {_fmt(s['peak_ops_per_s'], 'OPS')}  (one MAC = 2 operations)")
    out.append(f"  power             {_fmt(s['power_w'], 'W')}  (static {_fmt(s['leakage_w'], 'W')})")
    out.append(f"  area              {s['area_m2'] / MM2:.4g} mm^2")
    out.append(f"  efficiency        {s['ce_gops_per_s_per_mm2']:.4g} GOPS/mm^2, {s['pe_gops_per_w']:.4g} GOPS/W")
    h = s.get("hierarchy") or {}
    if h:
        out.append("  hierarchy         " + ", ".join(
            f"cycle {_fmt(v, 's')}" if k == "cycle_s" else f"{_value(v)} {_counted(k.replace('_', ' '), v)}"
            for k, v in h.items()))
    for k in ("power_scope", "area_scope"):
        if k in s:
            out.append(f"  {k.replace('_', ' '):17s} {s[k]}")
    out.append("")
    rows = []
    for kind, r in sorted(s["breakdown"].items(), key=lambda kv: -kv[1]["power_w"]):
        rows.append([kind, _fmt(r["power_w"], "W"), f"{100 * r['power_w'] / s['power_w']:.1f} %",
                     f"{r['area_m2'] / MM2:.4g} mm^2", f"{100 * r['area_m2'] / s['area_m2']:.1f} %"])
    out += _table(["component", "power", "share", "area", "share"], rows, {1, 2, 3, 4})
    if s.get("macro_components"):
        out.append(f"  compute macro: {', '.join(s['macro_components'])} (a run's macro-level energy: "
                   "'compute macro' in its report, Report.macro_energy_j)")
    out.append("")
    rows = []
    for p in spec.parameters():
        src = f"follows {p.derived_from}" if p.derived_from else p.source
        rows.append([p.path, _value(p.value), "" if p.unit in ("1", "") else p.unit, p.range, src])
    out += _table(["parameter", "value", "unit", "range", "source"], rows, {1})
    if spec.aliases:
        out.append("")
        out.append("  shorthands: " + ", ".join(f"{a} = {p}" for a, p in sorted(spec.aliases.items())))
    return "\n".join(out)


def _check_action(args, names) -> None:
    """'show' or nothing; a name given where the action goes gets the command that shows it."""
    from cimsim.arch.params import closest
    from cimsim.errors import ConfigError

    if args.action not in (None, "show"):
        name = args.action if args.action in names else closest(args.action, names)
        if name and args.name is None:
            raise ConfigError(f"{args.action!r} is not an action: to show an architecture, run "
                              f"'cimsim archs show {name}'")
        raise ConfigError(f"unknown action {args.action!r}: 'cimsim archs' lists the architectures, "
                          "'cimsim archs show NAME' shows one")
    if args.action == "show" and not args.name:
        raise ConfigError(f"'show' needs an architecture: one of {', '.join(names)}, e.g. 'cimsim archs show isaac'")


def run(args) -> int:
    from cimsim import arch as arch_mod

    _check_action(args, arch_mod.names())
    if args.name:
        spec = arch_mod.get(args.name, **dict(args.set or []))
        if args.json:
            summary = spec.summary()
            summary["parameters"] = [p.__dict__ for p in spec.parameters()]
            emit_json(summary)
        else:
            print(show_text(spec, args.set))
        return 0
    if args.set:
        from cimsim.errors import ConfigError

        raise ConfigError("--set needs an architecture: 'cimsim archs show NAME --set KEY=VALUE'")
    rows = [{"name": n, "description": arch_mod.get(n).description} for n in arch_mod.names()]
    if args.json:
        emit_json(rows)
    else:
        for r in rows:
            print(f"{r['name']:12s} {r['description']}")
    return 0


def register(sub) -> None:
    sp = add_command(sub, "archs", "list the architectures, or show one with its figures and parameters", run,
                     desc="List the architectures, or show one: peak throughput, power, area and efficiency rolled up "
                          "from its component inventory (derived from the device models at its operating point), the "
                          "breakdown by component, and every parameter (dotted paths such as adc.bits or "
                          "cell.read_sigma_frac) with unit, range and source. --set changes parameters first.")
    sp.add_argument("action", nargs="?", metavar="show", help="'show NAME' prints one architecture; without it, "
                    "the architectures are listed")
    sp.add_argument("name", nargs="?", help="architecture name")
    sp.add_argument("--set", action="append", type=key_value, metavar="KEY=VALUE",
                    help="set a parameter before showing (repeatable), e.g. --set adc.bits=4")
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
