"""``cimsim archs``: the architectures and their chip-level figures."""

from __future__ import annotations

from cimsim.cli.common import add_command, emit_json


def run(args) -> int:
    from cimsim import arch as arch_mod

    if args.name:
        spec = arch_mod.get(args.name)
        summary = spec.summary()
        if args.json:
            emit_json(summary)
        else:
            for k, v in summary.items():
                print(f"{k:28s} {v}")
        return 0
    rows = [{"name": n, "description": arch_mod.get(n).description} for n in arch_mod.names()]
    if args.json:
        emit_json(rows)
    else:
        for r in rows:
            print(f"{r['name']:12s} {r['description']}")
    return 0


def register(sub) -> None:
    sp = add_command(sub, "archs", "list the architectures, or show one with its parameters", run)
    sp.add_argument("action", nargs="?", choices=["show"], help="'show NAME' prints one architecture")
    sp.add_argument("name", nargs="?", help="architecture name")
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
