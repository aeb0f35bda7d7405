"""``cimsim plot``: draw a results file."""

from __future__ import annotations

from cimsim.cli.common import add_command, emit_json


def run(args) -> int:
    import matplotlib
    matplotlib.use("Agg")   # a command draws into a file, never a window (the library leaves a notebook's backend)
    from cimsim.plots import plot_file

    out = plot_file(args.file, args.output, x=args.x, hue=args.hue, kind=args.kind)
    if args.json:
        emit_json({"figure": str(out)})
    else:
        print(f"figure written to {out}")
    return 0


def register(sub) -> None:
    sp = add_command(sub, "plot", "draw a results file (a report: energy and latency per layer and per component; a "
                     "sweep: accuracy, energy, latency and area against a swept parameter, or the trade-offs; "
                     "an on-chip run: learning curves)", run)
    sp.add_argument("file", help="an HDF5 file written by 'cimsim run --out', 'cimsim sweep --out' or 'cimsim onchip --out'")
    sp.add_argument("-o", "--output", help="image file to write (default: FILE with .png)")
    sp.add_argument("--x", metavar="PARAM", help="sweep files: the swept parameter on the x axis (default: the first "
                    "that varies, ADC bits first), e.g. --x rows or --x cell.read_sigma_frac; an ADMM sweep: --x "
                    "admm.compression (the target) or --x weight_compression (the compression reached)")
    sp.add_argument("--hue", metavar="arch|PARAM", help="sweep files: one colour per architecture (default) or per "
                    "value of a swept parameter")
    sp.add_argument("--kind", choices=["sweep", "tradeoff"], help="sweep files: metrics against --x (default) or "
                    "accuracy against energy, energy-delay product and area with the Pareto front")
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
