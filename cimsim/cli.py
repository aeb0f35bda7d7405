"""The ``cimsim`` command line.

Every subcommand has ``--help``; ``--json`` writes machine-readable output to stdout (progress and
messages go to stderr). A user error prints one line naming the problem and the fix and exits 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from cimsim._version import __version__
from cimsim.errors import CimsimError, ConfigError

EXIT_USER_ERROR = 2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse's own prints the usage block and the message)."""

    def error(self, message):
        raise _UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _key_value(text: str) -> tuple[str, str]:
    if "=" not in text or text.startswith("="):
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def _check_writable_folder(folder: Path, option: str) -> None:
    """Fail before any work starts when an output folder cannot take the result."""
    if not folder.is_dir():
        raise ConfigError(f"folder {folder} for {option} does not exist; create it or choose another {option}")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"folder {folder} for {option} is not writable; choose another {option}")


def _strict(obj):
    """Non-finite floats become null: strict JSON parsers (JavaScript, jq) reject Infinity and NaN."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def _emit_json(obj) -> None:
    sys.stdout.write(json.dumps(_strict(obj), indent=2, default=str, allow_nan=False) + "\n")


# --------------------------------------------------------------------------------------------------
# Subcommands

def cmd_run(args) -> int:
    from cimsim import arch as arch_mod
    from cimsim.mappers import evaluate
    from cimsim.networks import load_model_and_data, reference_kwargs

    if args.out:
        _check_writable_folder(Path(args.out).resolve().parent, "--out")
    overrides = dict(args.set or [])
    if args.adc_bits is not None:
        overrides["adc_bits"] = args.adc_bits
    spec = arch_mod.get(args.arch, **overrides)
    if args.device == "cuda" and args.backend != "torch":
        raise ConfigError("--device cuda needs --backend torch")
    model, meta, data, ckpt = load_model_and_data(args.model, args.dataset, args.data_dir, args.checkpoint,
                                                  arch=spec, overrides=dict(args.set or []))
    loader = data.loader("test", batch_size=args.batch_size, limit=args.limit)
    calibration = data.loader("train", batch_size=args.batch_size, limit=args.calibration, shuffle=False)
    report = evaluate(
        model, spec, loader, calibration=calibration, seed=args.seed, backend=args.backend, device=args.device,
        progress=False if args.json else None,
        config={"model": meta["model"], "dataset": data.name, "checkpoint": str(ckpt),
                "checkpoint_test_accuracy": meta["test_accuracy"], "limit": args.limit,
                "batch_size": args.batch_size, "data_source": data.source,
                "calibration_examples": args.calibration},
        **(reference_kwargs(meta, ckpt) if hasattr(spec, "crossbar_spec") else {}))
    if args.out:
        path = report.to_hdf5(args.out)
        print(f"cimsim run: report written to {path}", file=sys.stderr)
    if args.json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        print(report.table())
    return 0


def cmd_sweep(args) -> int:
    from cimsim import sweep

    out = Path(args.out)
    _check_writable_folder(out.resolve().parent, "--out")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name such as {out / 'sweep.h5'}")
    if args.scheduler and args.workers != 1:
        raise ConfigError("give either --workers (local processes) or --scheduler (a Dask cluster), not both")
    archs = sweep.parse_archs(args.arch)
    bits = sweep.parse_adc_bits(args.adc_bits) if args.adc_bits is not None else None
    overrides = dict(args.set or [])
    points = sweep.make_points(archs, bits, args.seeds, overrides)
    if bits is not None and not any(p.adc_bits is not None for p in points):
        print(f"cimsim sweep: note: no architecture in --arch {args.arch} has ADC bits; --adc-bits is unused",
              file=sys.stderr)
    if args.device == "cuda" and args.backend != "torch":
        raise ConfigError("--device cuda needs --backend torch")
    if args.scheduler:
        sweep.require_dask()  # before loading anything
    model, meta, data, ckpt = sweep.load_model_and_data(args.model, args.dataset, args.data_dir, args.checkpoint)
    settings = sweep.Settings(
        model=meta["model"], dataset=data.name, checkpoint=str(Path(ckpt).resolve()),
        checkpoint_sha256=sweep.file_sha256(ckpt), limit=args.limit, overrides=overrides,
        calibration=args.calibration, batch_size=args.batch_size, data_dir=args.data_dir,
        backend=args.backend, device=args.device)
    sweep.prime_context(settings, model, meta, data)

    def on_point(point, report, from_file):
        if args.json:
            sys.stdout.write(json.dumps(_strict(sweep.point_summary(point, report, from_file)),
                                        allow_nan=False) + "\n")
            sys.stdout.flush()

    results = sweep.run_sweep(out, points, settings, workers=args.workers, scheduler=args.scheduler,
                              on_point=on_point)
    if not args.json:
        print(sweep.table(results))
        print(f"results in {out}; draw them with 'cimsim plot {out}'")
    return 0


def cmd_train(args) -> int:
    from cimsim.workloads import train

    if args.out:
        target = Path(args.out)
        folder = target if (args.out.endswith("/") or target.is_dir()) else target.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create folder {folder} for --out ({exc.strerror}); "
                              "choose another --out") from None
        _check_writable_folder(folder.resolve(), "--out")
    result = train.train(args.model, args.dataset, epochs=args.epochs, seed=args.seed, device=args.device,
                         batch_size=args.batch_size, lr=args.lr, data_dir=args.data_dir, limit=args.limit,
                         progress=False if args.json else None)
    meta = result.metadata
    out = Path(args.out) if args.out else train.user_dir() / train.checkpoint_name(meta["model"], meta["dataset"])
    if out.is_dir() or (args.out and args.out.endswith("/")):
        out = out / train.checkpoint_name(meta["model"], meta["dataset"])
    path = train.save_checkpoint(out, result.model, meta)
    if args.json:
        _emit_json({**{k: v for k, v in meta.items() if k != "history"}, "history": meta["history"],
                    "checkpoint": str(path)})
    else:
        for h in meta["history"]:
            print(f"epoch {h['epoch']:3d}  loss {h['loss']:.4f}  train {100 * h['train_accuracy']:6.2f}%  "
                  f"test {100 * h['test_accuracy']:6.2f}%")
        print(f"{meta['model']} on {meta['dataset']}: test accuracy {100 * meta['test_accuracy']:.2f}% "
              f"after {meta['epochs']} epochs (seed {meta['seed']}, {meta['train_seconds']:.0f} s)")
        print(f"checkpoint: {path}")
    return 0


def cmd_finetune(args) -> int:
    from cimsim import arch as arch_mod
    from cimsim import networks
    from cimsim.mappers import qat
    from cimsim.networks import load_model_and_data
    from cimsim.workloads import train

    overrides = dict(args.set or [])
    spec = arch_mod.get(args.arch, **overrides)
    if not getattr(spec, "column_scales", False):
        raise ConfigError(f"finetune prepares networks for ADC-less architectures with learned partial-sum scales "
                          f"(hcim); {spec.name!r} needs none: use 'cimsim run --arch {spec.name}' directly")
    if args.out:
        _check_writable_folder(Path(args.out).resolve().parent, "--out")
    model, meta, data, ckpt = load_model_and_data(args.model, args.dataset, args.data_dir, args.checkpoint)
    cfg = qat.PSQConfig.from_arch(spec)
    recipe = qat.FinetuneRecipe(**{k: v for k, v in (("epochs", args.epochs), ("lr", args.lr),
                                                      ("batch_size", args.batch_size),
                                                      ("noise_frac", args.noise)) if v is not None})
    psq, info = qat.finetune(model, cfg, data, recipe, seed=args.seed, limit=args.limit, test_limit=args.test_limit,
                             progress=False if args.json else None, device=args.device)
    sets = "".join(f" --set {k}={v}" for k, v in overrides.items())
    out_meta = {"model": meta["model"], "dataset": data.name, "arch": spec.name, "input_shape": meta["input_shape"],
                "num_classes": meta["num_classes"], "base_checkpoint": Path(ckpt).name,
                "base_test_accuracy": meta["test_accuracy"], **info,
                "command": (f"cimsim finetune --arch {spec.name} --model {meta['model']} --dataset {data.name}"
                            f"{sets} --epochs {recipe.epochs} --seed {args.seed}"
                            + (f" --limit {args.limit}" if args.limit else "")
                            + (f" --test-limit {args.test_limit}" if args.test_limit else "")
                            + (f" --batch-size {args.batch_size}" if args.batch_size else "")
                            + (f" --lr {args.lr}" if args.lr else "")
                            + (f" --noise {args.noise}" if args.noise else ""))}
    path = Path(args.out) if args.out else train.user_dir() / networks.psq_checkpoint_name(meta["model"], data.name, cfg)
    path = networks.save_psq_checkpoint(path, psq, out_meta)
    if args.json:
        _emit_json({**out_meta, "checkpoint": str(path)})
    else:
        for h in info["history"]:
            test = "" if h["test_accuracy"] is None else f"  test {100 * h['test_accuracy']:6.2f}%"
            print(f"epoch {h['epoch']:3d}  loss {h['loss']:.4f}{test}")
        print(f"{meta['model']} on {data.name}, PSQ for {spec.name} ({cfg.tag}): test accuracy "
              f"{100 * info['test_accuracy_before_first_1000']:.2f}% before (first 1000), "
              f"{100 * info['test_accuracy']:.2f}% after "
              f"{recipe.epochs} epochs (float network {100 * meta['test_accuracy']:.2f}%)")
        print(f"checkpoint: {path}")
    return 0


def cmd_archs(args) -> int:
    from cimsim import arch as arch_mod

    if args.name:
        spec = arch_mod.get(args.name)
        summary = spec.summary()
        if args.json:
            _emit_json(summary)
        else:
            for k, v in summary.items():
                print(f"{k:28s} {v}")
        return 0
    rows = [{"name": n, "description": arch_mod.get(n).description} for n in arch_mod.names()]
    if args.json:
        _emit_json(rows)
    else:
        for r in rows:
            print(f"{r['name']:12s} {r['description']}")
    return 0


def cmd_devices(args) -> int:
    from cimsim.devices import catalog

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
            _emit_json(d)
        else:
            print(f"{d['kind']} ({d['class']}): {d['summary']}")
            for k, v in catalog.figures(model).items():
                print(f"  {k:32s} {v:.6g}")
            _print_params(d["params"])
        return 0
    if args.name:
        raise ConfigError(f"unexpected {args.name!r}; did you mean 'cimsim devices show {args.name}'?")
    rows = catalog.listing()
    if args.json:
        _emit_json(rows)
    else:
        for d in rows:
            print(f"{d['kind']} [{d['category']}] {d['class']}: {d['summary']}")
            _print_params(d["params"])
            print()
    return 0


def _print_params(params) -> None:
    for p in params:
        unit = "" if p["unit"] == "1" else p["unit"]
        print(f"    {p['name']:24s} {p['value']!s:>12} {unit:10s} {p['source']}")


def cmd_bench(args) -> int:
    from cimsim import bench

    r = bench.run(batch=args.batch, backend=args.backend, device=args.device, repeats=args.repeat)
    if args.json:
        _emit_json(r)
    else:
        print(f"crossbar engine ({r['backend']}, {r['device']}): {r['effective_macs_per_s'] / 1e9:.2f} G effective MAC/s, "
              f"{r['wall_s']:.3f} s per call")
        print(f"float32 GEMM (torch.matmul):  {r['gemm_macs_per_s'] / 1e9:.2f} G MAC/s")
        print(f"ratio {r['ratio']:.3f}; peak memory {r['peak_memory_bytes'] / 2**20:.1f} MiB")
    return 0


def cmd_plot(args) -> int:
    from cimsim.plots import plot_file

    out = plot_file(args.file, args.output)
    if args.json:
        _emit_json({"figure": str(out)})
    else:
        print(f"figure written to {out}")
    return 0


def _states(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of states >= 2, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected a whole number of states >= 2, got {value} "
                                         "(a synapse needs at least 2 states)")
    return value


def cmd_onchip(args) -> int:
    from cimsim.workloads import onchip

    if args.out:
        _check_writable_folder(Path(args.out).resolve().parent, "--out")
    cfg = onchip.default_config(args.synapse, args.dataset, states=args.states, epochs=args.epochs,
                                seed=args.seed, lr=args.lr, batch_size=args.batch_size,
                                adc_bits=args.adc_bits, train_limit=args.limit, test_limit=args.test_limit,
                                data_dir=args.data_dir)
    result = onchip.run(cfg, progress=False if args.json else None)
    if args.out:
        path = result.to_hdf5(args.out)
        print(f"cimsim onchip: run written to {path}", file=sys.stderr)
    if args.json:
        _emit_json(result.summary())
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


# --------------------------------------------------------------------------------------------------
# Parser

def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cimsim", description="Simulate trained PyTorch networks on analog compute-in-memory "
                "hardware: accuracy, energy, latency and area per layer and per component.")
    p.add_argument("--version", action="version", version=f"cimsim {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name, help_, func, desc=None):
        sp = sub.add_parser(name, help=help_, description=desc or help_)
        sp.set_defaults(func=func)
        return sp

    def data_opts(sp):
        sp.add_argument("--model", default="lenet5",
                        help="zoo model: mlp, lenet5, vgg_small, resnet20, mobilenetv2_small (default lenet5)")
        sp.add_argument("--dataset", default="fashion-mnist",
                        help="fashion-mnist, mnist, cifar10, iris, digits or synthetic (default fashion-mnist)")
        sp.add_argument("--data-dir", help="directory with the dataset files (overrides $CIMSIM_DATA)")
        sp.add_argument("--limit", type=_positive_int, metavar="N", help="use only the first N examples")
        sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")

    sp = add("run", "simulate a trained network on an architecture and print its report", cmd_run)
    sp.add_argument("--arch", default="isaac", help="architecture (see 'cimsim archs'; default isaac)")
    data_opts(sp)
    sp.add_argument("--checkpoint", help="a checkpoint file (default: the one found by model and dataset)")
    sp.add_argument("--batch-size", type=_positive_int, default=64, help="examples per batch (default 64)")
    sp.add_argument("--set", action="append", type=_key_value, metavar="KEY=VALUE",
                    help="override an architecture parameter (repeatable; see 'cimsim archs show ARCH')")
    sp.add_argument("--adc-bits", type=_positive_int, metavar="B",
                    help="ADC resolution (same as --set adc_bits=B; architectures with an ADC)")
    sp.add_argument("--seed", type=_nonneg_int, default=0, help="seed of every device and readout draw (default 0)")
    sp.add_argument("--calibration", type=_positive_int, default=512, metavar="N",
                    help="training examples that calibrate activation and ADC ranges (default 512)")
    sp.add_argument("--backend", default="numba", choices=["numba", "torch"], help="crossbar engine (default numba)")
    sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="engine device (cuda needs --backend torch)")
    sp.add_argument("--out", help="also write the report to this HDF5 file")

    sp = add("sweep", "run a grid of design points (archs x ADC bits x seeds) into one HDF5 file", cmd_sweep,
             desc="Evaluate a trained network on every point of a grid of architectures, ADC resolutions "
                  "and seeds. Each finished point is written to the --out HDF5 file at once; re-running the "
                  "same command skips the points the file holds, so an interrupted sweep resumes losing "
                  "nothing. Architectures without ADC bits (digital, ADC-less designs) run once per seed. "
                  "With --json, stdout carries one JSON object per point and per line (JSON Lines: key, "
                  "arch, adc_bits, seed, accuracy, digital_accuracy, energy_j, latency_s, n_examples, "
                  "from_file), points already in the file first, then each as it finishes.")
    sp.add_argument("--arch", default="isaac,digital",
                    help="comma list of architectures (see 'cimsim archs'; default isaac,digital)")
    sp.add_argument("--adc-bits", metavar="BITS",
                    help="ADC resolutions: a range 1-8, a list 4,6,8 or one value 6 (1 to 16; default: each "
                         "architecture's own)")
    sp.add_argument("--seeds", type=_positive_int, default=1, metavar="N", help="run seeds 0..N-1 (default 1)")
    data_opts(sp)
    sp.add_argument("--checkpoint", help="a checkpoint file (default: the one found by model and dataset)")
    sp.add_argument("--batch-size", type=_positive_int, default=64, help="examples per batch (default 64)")
    sp.add_argument("--calibration", type=_positive_int, default=512, metavar="N",
                    help="training examples that calibrate activation and ADC ranges (default 512, as 'run')")
    sp.add_argument("--backend", default="numba", choices=["numba", "torch"], help="crossbar engine (default numba)")
    sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="engine device (cuda needs --backend torch)")
    sp.add_argument("--set", action="append", type=_key_value, metavar="KEY=VALUE",
                    help="override an architecture parameter, for every architecture that has it (repeatable)")
    sp.add_argument("--out", required=True, help="the sweep's HDF5 file (created, or resumed when it exists)")
    sp.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                    help="run points in N local processes (default 1: this process)")
    sp.add_argument("--scheduler", metavar="ADDRESS",
                    help="run points on the Dask cluster at ADDRESS, e.g. tcp://host:8786 "
                         "(needs pip install 'cimsim[dist]')")

    sp = add("finetune", "fine-tune a trained network for an ADC-less architecture (partial-sum QAT)", cmd_finetune,
             "Partial-sum quantization-aware fine-tuning (cimsim.mappers.qat) of a trained zoo network for an "
             "architecture with binary/ternary column readouts and learned scale factors (hcim). The result is "
             "saved where 'cimsim run --arch ARCH' finds it. --limit N fine-tunes on the first N training examples.")
    sp.add_argument("--arch", default="hcim", help="architecture to prepare the network for (default hcim)")
    data_opts(sp)
    sp.add_argument("--checkpoint", help="the trained network to start from (default: the one found by model and dataset)")
    sp.add_argument("--set", action="append", type=_key_value, metavar="KEY=VALUE",
                    help="override an architecture parameter (repeatable), as for 'cimsim run'")
    sp.add_argument("--epochs", type=_positive_int, help="fine-tuning epochs (default 3)")
    sp.add_argument("--lr", type=float, help="learning rate of the weights (default 1e-3)")
    sp.add_argument("--batch-size", type=_positive_int, help="mini-batch size (default 128)")
    sp.add_argument("--test-limit", type=_positive_int, metavar="N",
                    help="measure the accuracy on the first N test examples only (default: all)")
    sp.add_argument("--noise", type=float, metavar="FRAC",
                    help="noise injection: per-cell level noise, a fraction of the level range (default 0)")
    sp.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default 0)")
    sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to fine-tune (default cpu)")
    sp.add_argument("--out", help="checkpoint file (default: the user's checkpoint directory)")

    sp = add("archs", "list the architectures, or show one with its parameters", cmd_archs)
    sp.add_argument("action", nargs="?", choices=["show"], help="'show NAME' prints one architecture")
    sp.add_argument("name", nargs="?", help="architecture name")
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")

    sp = add("devices", "list the device, converter and peripheral models, or show one with its costs",
             cmd_devices)
    sp.add_argument("action", nargs="?", choices=["show"], help="'show KIND' prints one model's figures")
    sp.add_argument("name", nargs="?", help="device kind, e.g. sar-adc, reram (see 'cimsim devices')")
    sp.add_argument("--bits", type=_positive_int, help="resolution (converters)")
    sp.add_argument("--sample-rate", type=float, metavar="HZ", help="conversions per second (converters)")
    sp.add_argument("--node", type=float, metavar="NM", help="technology node in nm")
    sp.add_argument("--set", action="append", type=_key_value, metavar="KEY=VALUE",
                    help="override any parameter (repeatable)")
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")

    sp = add("bench", "benchmark the crossbar engine against the machine's float32 GEMM", cmd_bench,
             desc="Run the engine's standard case (K=1152, N=128, batch 1024, 8-bit inputs and weights, "
                  "2-bit ReRAM cells with noise, 8-bit calibrated SAR ADC) and compare with float32 GEMM.")
    sp.add_argument("--backend", default="numba", choices=["numba", "torch"], help="engine backend (default numba)")
    sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default cpu)")
    sp.add_argument("--batch", type=_positive_int, help="batch size (default 1024, the standard case)")
    sp.add_argument("--repeat", type=_positive_int, default=3, help="timed calls; the best counts (default 3)")
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")

    sp = add("train", "train a zoo model on a dataset and save its checkpoint", cmd_train)
    data_opts(sp)
    sp.add_argument("--epochs", type=_positive_int, help="epochs (default: the model's recipe)")
    sp.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default 0)")
    sp.add_argument("--batch-size", type=_positive_int, help="mini-batch size (default: the recipe's)")
    sp.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to train (default cpu)")
    sp.add_argument("--out", help="checkpoint path or directory (default ~/.cache/cimsim/checkpoints, "
                    "or $CIMSIM_HOME/checkpoints)")

    sp = add("plot", "draw a results file (a report: energy and latency per layer and per component; a sweep: "
             "accuracy and energy per inference against ADC bits)", cmd_plot)
    sp.add_argument("file", help="an HDF5 file written by 'cimsim run --out' or 'cimsim sweep --out'")
    sp.add_argument("-o", "--output", help="image file to write (default: FILE with .png)")
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")

    sp = add("onchip", "train a network on-chip, in a crossbar of synapse devices", cmd_onchip,
             desc="Train a fully connected network whose weights are synapse pairs in a crossbar, updated in "
                  "place by pulses, beside the same network trained in floating point; report accuracy per "
                  "epoch and the energy and time of learning (MOSFET synapses on iris, arXiv 1907.00625; "
                  "domain-wall synapses 784 -> 10 on fashion-mnist, arXiv 1811.09966; ReRAM for comparison).")
    sp.add_argument("--synapse", default="mosfet", choices=["mosfet", "domain-wall", "reram"],
                    help="synapse device (default mosfet)")
    sp.add_argument("--dataset", default="iris",
                    help="iris, digits, fashion-mnist or mnist (default iris; mnist needs --data-dir)")
    sp.add_argument("--states", type=_states, metavar="N",
                    help="distinct update positions of a synapse: pinning sites (domain wall), pulses across "
                         "the window + 1 (mosfet, reram); default: the device's own")
    sp.add_argument("--epochs", type=_positive_int, help="epochs (default: the experiment's recipe)")
    sp.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default 0)")
    sp.add_argument("--lr", type=float, help="SGD learning rate (default: the experiment's recipe)")
    sp.add_argument("--batch-size", type=_positive_int, help="examples per weight update (default 1)")
    sp.add_argument("--adc-bits", type=_nonneg_int, metavar="B",
                    help="read each column with a B-bit SAR ADC (default 0: the column current feeds an "
                         "analog neuron, as in both papers)")
    sp.add_argument("--limit", type=_positive_int, metavar="N", help="train on the first N examples only")
    sp.add_argument("--test-limit", type=_positive_int, metavar="N", help="test on the first N examples only")
    sp.add_argument("--data-dir", help="directory with the dataset files (overrides $CIMSIM_DATA)")
    sp.add_argument("--out", help="also write the run (learning curves, costs, config) to this HDF5 file")
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            prog = f"cimsim {args.command}" if args.command else "cimsim"
            raise _UsageError(f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see '{prog} --help')")
        if args.command is None:
            parser.print_help()
            return EXIT_USER_ERROR
        if args.command == "archs" and args.action == "show" and not args.name:
            raise _UsageError("cimsim archs: error: 'show' needs an architecture name, e.g. 'cimsim archs show digital'")
        if args.command == "archs" and args.action is None and args.name:
            raise _UsageError(f"cimsim archs: error: unexpected {args.name!r}; did you mean 'cimsim archs show {args.name}'?")
        return int(args.func(args) or 0)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USER_ERROR
    except CimsimError as exc:
        cmd = getattr(locals().get("args"), "command", None)
        print(f"cimsim {cmd}: error: {exc}" if cmd else f"cimsim: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("cimsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
