"""``cimsim plot``: draw a results file."""

from __future__ import annotations

from cimsim.cli.common import add_command, emit_json


def run(args) -> int:
    from cimsim.plots import plot_file

    out = plot_file(args.file, args.output)
    if args.json:
        emit_json({"figure": str(out)})
    else:
        print(f"figure written to {out}")
    return 0


def register(sub) -> None:
    sp = add_command(sub, "plot", "draw a results file (a report: energy and latency per layer and per component; a sweep: "
             "accuracy and energy per inference against ADC bits)", run)
    sp.add_argument("file", help="an HDF5 file written by 'cimsim run --out' or 'cimsim sweep --out'")
    sp.add_argument("-o", "--output", help="image file to write (default: FILE with .png)")
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
