"""``cimsim onchip``: on-chip learning in a crossbar of synapse devices."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cimsim import outkind
from cimsim.cli.common import (add_command, batch_size, emit_json, nonneg_int, output_path, positive_float,
                               positive_int)


def states(text: str) -> list[int]:
    """One number of states, or several separated by commas (the accuracy-versus-states curve)."""
    out = []
    for part in text.split(","):
        try:
            value = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected whole numbers of states >= 2 separated by commas, got "
                                             f"{text!r}") from None
        if value < 2:
            raise argparse.ArgumentTypeError(f"expected a whole number of states >= 2, got {value} "
                                             "(a synapse needs at least 2 states)")
        out.append(value)
    return out


def _point_path(out: str, n: int) -> Path:
    p = Path(out)
    return p.with_name(f"{p.stem}-states{n}{p.suffix or '.h5'}")


def _warn_unwritten(result) -> None:
    """One stderr line when a run wrote no synapse at all (its on-chip network never moved from its start)."""
    if result.write_pulses == 0:
        how = ("with nearest rounding every update stayed under half a pulse: use --rounding stochastic or a larger "
               "--lr" if result.config.get("rounding") == "nearest" else "give a larger --lr")
        states = result.config.get("states")
        print(f"cimsim: warning: no synapse was written{f' at {states} states' if states else ''} ({how})",
              file=sys.stderr)


def run(args) -> int:
    from cimsim.workloads import onchip

    out = output_path(args.out)   # before any work
    curve = args.states is not None and len(args.states) > 1
    if curve and out is not None:   # a curve writes one file per point beside --out: each checked first
        for n in args.states:
            outkind.refuse_replacing(output_path(str(_point_path(args.out, n))), outkind.ONCHIP)
    elif out is not None:
        outkind.refuse_replacing(out, outkind.ONCHIP)   # an earlier run only, never a sweep, report or checkpoint
    cfg = onchip.default_config(args.synapse, args.dataset, states=None if curve or args.states is None
                                else args.states[0], epochs=args.epochs, seed=args.seed, lr=args.lr,
                                lr_decay=args.lr_decay, rounding=args.rounding, batch_size=args.batch_size,
                                adc_bits=args.adc_bits, train_limit=args.limit, test_limit=args.test_limit,
                                data_dir=args.data_dir, backend=args.backend)
    if curve:
        return _curve(args, cfg)
    result = onchip.run(cfg, progress=False if args.json else None)
    if out is not None:
        path = result.to_hdf5(out)
        print(f"cimsim onchip: run written to {path}", file=sys.stderr)
    if args.json:
        emit_json(result.summary())
        _warn_unwritten(result)
        return 0
    print(f"on-chip learning: {args.synapse} synapses, {cfg.dataset}, topology "
          f"{' -> '.join(map(str, result.topology))}, {cfg.epochs} epochs, seed {cfg.seed}, lr {cfg.lr:g} "
          f"x{cfg.lr_decay:g} per epoch, {cfg.rounding} rounding of pulse counts")
    for h in result.history:
        print(f"epoch {h['epoch']:3d}  train {100 * h['train_accuracy']:6.2f}%  test {100 * h['test_accuracy']:6.2f}%  "
              f"(float SGD: test {100 * h['float_test_accuracy']:6.2f}%)  energy {h['energy_j'] * 1e6:.4g} uJ")
    print(f"test accuracy {100 * result.test_accuracy:.2f}% (floating-point SGD {100 * result.float_test_accuracy:.2f}%)")
    print(f"learning energy {result.energy_j * 1e6:.4g} uJ (synapse writes {result.write_energy_j * 1e9:.4g} nJ, "
          f"{result.write_pulses:.4g} pulses); learning time {result.time_s * 1e3:.4g} ms; "
          f"write energy per weight update {result.energy_per_update_j * 1e12:.4g} pJ")
    _warn_unwritten(result)   # after the results, where it is read
    return 0


def _curve(args, cfg) -> int:
    """Several numbers of states: one run each, a table (or JSON) of the accuracy-versus-states curve."""
    from cimsim.workloads import onchip

    if not args.json:
        print(f"accuracy versus states: {args.synapse} synapses, {cfg.dataset}, {cfg.epochs} epochs, seed "
              f"{cfg.seed}, lr {cfg.lr:g} x{cfg.lr_decay:g} per epoch, {cfg.rounding} rounding of pulse counts")
        print(f"{'states':>6} {'train':>8} {'test':>8} {'float test':>10} {'synapse writes':>15} {'pulses':>12} "
              f"{'learning energy':>16} {'learning time':>14}")

    def show(r):
        _warn_unwritten(r)
        if args.out:
            path = r.to_hdf5(_point_path(args.out, r.config["states"]))
            print(f"cimsim onchip: run written to {path}", file=sys.stderr)
        if not args.json:
            print(f"{r.config['states']:6d} {100 * r.train_accuracy:7.2f}% {100 * r.test_accuracy:7.2f}% "
                  f"{100 * r.float_test_accuracy:9.2f}% {r.write_energy_j * 1e9:12.4g} nJ {r.write_pulses:12.4g} "
                  f"{r.energy_j * 1e6:13.4g} uJ {r.time_s * 1e3:11.4g} ms", flush=True)

    results = onchip.states_curve(cfg, args.states, progress=False if args.json else None, tick=show)
    if args.json:
        emit_json({"states": args.states, "float_test_accuracy": results[0].float_test_accuracy,
                   "points": [r.summary() for r in results]})
    return 0


def register(sub) -> None:
    sp = add_command(sub, "onchip", "train a network on-chip, in a crossbar of synapse devices", run,
             desc="Train a fully connected network whose weights are synapse pairs in a crossbar, updated in "
                  "place by pulses, beside the same network trained in floating point; report accuracy per "
                  "epoch and the energy and time of learning (MOSFET synapses on iris, arXiv 1907.00625; "
                  "domain-wall synapses 784 -> 10 on fashion-mnist, arXiv 1811.09966; ReRAM for comparison).")
    sp.add_argument("--synapse", default="mosfet", choices=["mosfet", "domain-wall", "reram"],
                    help="synapse device (default mosfet)")
    sp.add_argument("--dataset", default="iris",
                    help="iris, digits, fashion-mnist or mnist (default iris; fashion-mnist and mnist are read "
                         "from their IDX files in --data-dir, else $CIMSIM_DATA, then /usr/share/datasets)")
    sp.add_argument("--states", type=states, metavar="N[,N...]",
                    help="distinct update positions of a synapse: pinning sites (domain wall), pulses across "
                         "the window + 1 (mosfet, reram); default: the device's own. Several, separated by "
                         "commas (e.g. 8,16,32,64,128,256): the accuracy-versus-states curve, one run each")
    sp.add_argument("--epochs", type=positive_int, help="epochs (default: the experiment's recipe)")
    sp.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    sp.add_argument("--lr", type=positive_float, help="SGD learning rate of the first epoch (default: the "
                    "experiment's recipe)")
    sp.add_argument("--lr-decay", type=positive_float, metavar="F",
                    help="multiply the learning rate by F (0 < F <= 1) after every epoch, on chip and in the "
                         "float reference alike (default: the experiment's recipe)")
    sp.add_argument("--rounding", choices=["nearest", "stochastic"],
                    help="pulse count of an update: nearest (default) or stochastic (floor(u + r), r uniform: "
                         "unbiased; counter-based draws, the same seed gives the same run)")
    sp.add_argument("--backend", choices=["auto", "numba", "crossbar"], default="auto",
                    help="numba: one layer of domain-wall synapses as a compiled loop (seconds per epoch); "
                         "crossbar: every example through the crossbar engine (any network); auto (default): "
                         "numba where it applies")
    sp.add_argument("--batch-size", type=batch_size, help="examples per weight update (default 1)")
    sp.add_argument("--adc-bits", type=nonneg_int, metavar="B",
                    help="read each column with a B-bit SAR ADC (default 0: the column current feeds an "
                         "analog neuron, as in both papers)")
    sp.add_argument("--limit", type=positive_int, metavar="N", help="train on the first N examples only")
    sp.add_argument("--test-limit", type=positive_int, metavar="N", help="test on the first N examples only")
    sp.add_argument("--data-dir", help="directory with the dataset files (overrides $CIMSIM_DATA)")
    sp.add_argument("--out", help="also write the run (learning curves, costs, config) to this HDF5 file")
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
