"""``cimsim onchip``: on-chip learning in a crossbar of synapse devices."""

from __future__ import annotations

import argparse
import sys

from cimsim.cli.common import (add_command, batch_size, emit_json, nonneg_int, output_path, positive_float,
                               positive_int)


def states(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of states >= 2, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected a whole number of states >= 2, got {value} "
                                         "(a synapse needs at least 2 states)")
    return value


def run(args) -> int:
    from cimsim.workloads import onchip

    out = output_path(args.out)   # before any work
    cfg = onchip.default_config(args.synapse, args.dataset, states=args.states, epochs=args.epochs,
                                seed=args.seed, lr=args.lr, batch_size=args.batch_size,
                                adc_bits=args.adc_bits, train_limit=args.limit, test_limit=args.test_limit,
                                data_dir=args.data_dir)
    result = onchip.run(cfg, progress=False if args.json else None)
    if out is not None:
        path = result.to_hdf5(out)
        print(f"cimsim onchip: run written to {path}", file=sys.stderr)
    if args.json:
        emit_json(result.summary())
        return 0
    print(f"on-chip learning: {args.synapse} synapses, {cfg.dataset}, topology "
          f"{' -> '.join(map(str, result.topology))}, {cfg.epochs} epochs, seed {cfg.seed}")
    for h in result.history:
        print(f"epoch {h['epoch']:3d}  train {100 * h['train_accuracy']:6.2f}%  test {100 * h['test_accuracy']:6.2f}%  "
              f"(float SGD: test {100 * h['float_test_accuracy']:6.2f}%)  energy {h['energy_j'] * 1e6:.4g} uJ")
    print(f"test accuracy {100 * result.test_accuracy:.2f}% (floating-point SGD {100 * result.float_test_accuracy:.2f}%)")
    print(f"learning energy {result.energy_j * 1e6:.4g} uJ (synapse writes {result.write_energy_j * 1e9:.4g} nJ, "
          f"{result.write_pulses:.4g} pulses); learning time {result.time_s * 1e3:.4g} ms; "
          f"write energy per weight update {result.energy_per_update_j * 1e12:.4g} pJ")
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
                    help="iris, digits, fashion-mnist or mnist (default iris; mnist needs --data-dir)")
    sp.add_argument("--states", type=states, metavar="N",
                    help="distinct update positions of a synapse: pinning sites (domain wall), pulses across "
                         "the window + 1 (mosfet, reram); default: the device's own")
    sp.add_argument("--epochs", type=positive_int, help="epochs (default: the experiment's recipe)")
    sp.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    sp.add_argument("--lr", type=positive_float, help="SGD learning rate (default: the experiment's recipe)")
    sp.add_argument("--batch-size", type=batch_size, help="examples per weight update (default 1)")
    sp.add_argument("--adc-bits", type=nonneg_int, metavar="B",
                    help="read each column with a B-bit SAR ADC (default 0: the column current feeds an "
                         "analog neuron, as in both papers)")
    sp.add_argument("--limit", type=positive_int, metavar="N", help="train on the first N examples only")
    sp.add_argument("--test-limit", type=positive_int, metavar="N", help="test on the first N examples only")
    sp.add_argument("--data-dir", help="directory with the dataset files (overrides $CIMSIM_DATA)")
    sp.add_argument("--out", help="also write the run (learning curves, costs, config) to this HDF5 file")
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
