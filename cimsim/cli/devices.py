"""``cimsim devices``: the device, converter and peripheral models."""

from __future__ import annotations

from cimsim.errors import ConfigError
from cimsim.cli.common import add_command, emit_json, key_value, positive_int


def _check_action(args, kinds) -> None:
    """'show', 'plot' or nothing; a kind given where the action goes gets the command that shows it; the model
    options only with 'show'."""
    from cimsim.arch.params import closest

    if args.action not in (None, "show", "plot"):
        kind = args.action if args.action in kinds else closest(args.action, kinds)
        if kind and args.name is None:
            raise ConfigError(f"{args.action!r} is not an action: to show a device, run 'cimsim devices show {kind}'")
        raise ConfigError(f"unknown action {args.action!r}: 'cimsim devices' lists the models, 'cimsim devices show "
                          "KIND' shows one, 'cimsim devices plot KIND' draws an ADC's energy")
    given = [o for o, v in (("--bits", args.bits), ("--sample-rate", args.sample_rate), ("--node", args.node),
                            ("--set", args.set)) if v is not None]
    if given and args.action is None:
        raise ConfigError(f"{', '.join(given)} {'sets' if len(given) == 1 else 'set'} one model's parameters: give "
                          "the model, e.g. 'cimsim devices show sar-adc " + " ".join(f"{o} ..." for o in given) + "'")


def run(args) -> int:
    from cimsim.devices import catalog

    _check_action(args, catalog.kinds())
    if args.action == "plot":
        return plot(args)
    if args.output:
        raise ConfigError("-o/--output applies to 'cimsim devices plot KIND'")
    if args.action == "show":
        if not args.name:
            raise ConfigError("'show' needs a device kind, e.g. 'cimsim devices show sar-adc'")
        overrides = dict(args.set or [])
        for opt, field_name in (("bits", "bits"), ("sample_rate", "sample_rate_hz"), ("node", "node_nm")):
            if getattr(args, opt) is not None:
                overrides[field_name] = getattr(args, opt)
        model = catalog.get(args.name, **overrides)
        from cimsim.devices.base import describe
        d = describe(model)
        d.update(catalog.figures(model))
        if args.json:
            emit_json(d)
        else:
            print(f"{d['kind']} ({d['class']}): {d['summary']}")
            for k, v in catalog.figures(model).items():
                print(f"  {k:32s} {v:.6g}")
            print_params(d["params"])
        return 0
    if args.name:
        raise ConfigError(f"unexpected {args.name!r}; did you mean 'cimsim devices show {args.name}'?")
    rows = catalog.listing()
    if args.json:
        emit_json(rows)
    else:
        for d in rows:
            print(f"{d['kind']} [{d['category']}] {d['class']}: {d['summary']}")
            print_params(d["params"])
            print()
    return 0


def plot(args) -> int:
    from pathlib import Path

    import matplotlib
    matplotlib.use("Agg")   # a command draws into a file, never a window (the library leaves a notebook's backend)
    from cimsim.plots_devices import PLOTTABLE, check_output, plot_converter

    if args.name is None:
        raise ConfigError(f"'devices plot' needs an ADC kind: {' or '.join(PLOTTABLE)} (e.g. 'cimsim devices plot "
                          "sar-adc -o adc.png')")
    if args.name not in PLOTTABLE:
        raise ConfigError(f"'devices plot' draws {', '.join(PLOTTABLE)}; got {args.name!r} "
                          "(e.g. 'cimsim devices plot sar-adc -o adc.png')")
    if args.bits is not None or args.sample_rate is not None or args.node is not None or args.set:
        raise ConfigError("'devices plot' draws fixed bits, sample rates and nodes; drop --bits, --sample-rate, "
                          "--node and --set")
    out = check_output(args.output or Path(f"{args.name}.png"), example=f"{args.name}.png")
    out = plot_converter(args.name, out)
    if args.json:
        emit_json({"figure": str(out)})
    else:
        print(f"figure written to {out}")
    return 0


def print_params(params) -> None:
    for p in params:
        unit = "" if p["unit"] == "1" else p["unit"]
        print(f"    {p['name']:24s} {p['value']!s:>12} {unit:10s} {p['source']}")


def register(sub) -> None:
    sp = add_command(sub, "devices", "list the device, converter and peripheral models, show one with its costs, or "
                     "plot an ADC's energy against the survey frontiers", run)
    sp.add_argument("action", nargs="?", metavar="show|plot", help="'show KIND' prints one model's figures; "
                    "'plot sar-adc' (or flash-adc) draws energy per conversion against bits beside the ADC survey's "
                    "frontiers")
    sp.add_argument("name", nargs="?", help="device kind, e.g. sar-adc, reram (see 'cimsim devices')")
    sp.add_argument("--bits", type=positive_int, help="resolution (converters)")
    sp.add_argument("--sample-rate", type=float, metavar="HZ", help="conversions per second (converters)")
    sp.add_argument("--node", type=float, metavar="NM", help="technology node in nm")
    sp.add_argument("--set", action="append", type=key_value, metavar="KEY=VALUE",
                    help="override any parameter (repeatable)")
    sp.add_argument("-o", "--output", metavar="IMAGE", help="plot: image file to write (.png, .pdf or .svg; "
                    "default KIND.png)")
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
