"""``cimsim finetune``: partial-sum QAT of a trained network for an ADC-less architecture."""

from __future__ import annotations

import sys
from pathlib import Path

from cimsim.errors import ConfigError
from cimsim.cli import names
from cimsim.cli.common import add_command, check_writable_folder, data_options, emit_json, key_value, nonneg_int, positive_int


def run(args) -> int:
    names.check(archs=args.arch, model=args.model, dataset=args.dataset, sets=args.set)   # before torch/numba load
    from cimsim import arch as arch_mod
    from cimsim import networks
    from cimsim.mappers import qat
    from cimsim.networks import load_model_and_data
    from cimsim.workloads import train

    overrides = dict(args.set or [])
    spec = arch_mod.get(args.arch, **overrides)
    if spec.learned_sense_amp_scales:   # adcless-snn: spiking networks, cimsim.mappers.snn_qat
        return finetune_snn(args, spec, overrides)
    if args.schedule is not None:
        raise ConfigError("--schedule applies to spiking networks fine-tuned for adcless-snn")
    if not spec.learned_column_scales:
        raise ConfigError(f"finetune prepares networks for ADC-less architectures with learned partial-sum scales "
                          f"(hcim); {spec.name!r} needs none: use 'cimsim run --arch {spec.name}' directly")
    if args.out:
        check_writable_folder(Path(args.out).resolve().parent, "--out")
    model, meta, data, ckpt = load_model_and_data(args.model, args.dataset, args.data_dir, args.checkpoint)
    cfg = qat.PSQConfig.from_arch(spec)
    recipe = qat.FinetuneRecipe(**{k: v for k, v in (("epochs", args.epochs), ("lr", args.lr),
                                                      ("batch_size", args.batch_size),
                                                      ("noise_frac", args.noise)) if v is not None})
    psq, info = qat.finetune(model, cfg, data, recipe, seed=args.seed, limit=args.limit, test_limit=args.test_limit,
                             device=args.device)
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
    note = f"checkpoint saved to {path}; {train.saved_note(path)}"
    if args.json:
        print(f"cimsim finetune: {note}", file=sys.stderr)
        emit_json({**out_meta, "checkpoint": str(path),
                   "checkpoint_shadows": train.checkpoint_info(path, out_meta).shadows or None})
    else:
        for h in info["history"]:
            test = "" if h["test_accuracy"] is None else f"  test {100 * h['test_accuracy']:6.2f}%"
            print(f"epoch {h['epoch']:3d}  loss {h['loss']:.4f}{test}")
        print(f"{meta['model']} on {data.name}, PSQ for {spec.name} ({cfg.tag}): test accuracy "
              f"{100 * info['test_accuracy_before_first_1000']:.2f}% before (first {min(1000, info['test_examples'])}), "
              f"{100 * info['test_accuracy']:.2f}% after "
              f"{recipe.epochs} epochs (float network {100 * meta['test_accuracy']:.2f}%)")
        print(note)
    return 0


def finetune_snn(args, spec, overrides: dict) -> int:
    """Hardware-aware fine-tuning of a trained spiking network for the sense amps of ``spec`` (adcless-snn)."""
    from cimsim import networks
    from cimsim.mappers import snn_qat
    from cimsim.workloads import train

    if args.out:
        check_writable_folder(Path(args.out).resolve().parent, "--out")
    model, meta, data, ckpt = networks.load_model_and_data(args.model, args.dataset, args.data_dir, args.checkpoint)
    cfg = snn_qat.SAConfig.from_arch(spec)
    recipe = snn_qat.SnnFinetuneRecipe(**{k: v for k, v in (("epochs", args.epochs), ("lr", args.lr),
                                                             ("batch_size", args.batch_size), ("noise_frac", args.noise),
                                                             ("schedule", args.schedule)) if v is not None})
    net, info = snn_qat.finetune(model, cfg, data, recipe, seed=args.seed, limit=args.limit, test_limit=args.test_limit)
    sets = "".join(f" --set {k}={v}" for k, v in overrides.items())
    opts = [("--limit", args.limit), ("--test-limit", args.test_limit), ("--batch-size", args.batch_size),
            ("--lr", args.lr), ("--noise", args.noise)]
    out_meta = {"model": meta["model"], "dataset": data.name, "arch": spec.name, "input_shape": meta["input_shape"],
                "num_classes": meta["num_classes"], "base_checkpoint": Path(ckpt).name,
                "base_test_accuracy": meta["test_accuracy"], **info,
                "command": (f"cimsim finetune --arch {spec.name} --model {meta['model']} --dataset {data.name}{sets} "
                            f"--epochs {recipe.epochs} --schedule {recipe.schedule} --seed {args.seed}"
                            + "".join(f" {k} {v}" for k, v in opts if v))}
    path = Path(args.out) if args.out else train.user_dir() / networks.sa_checkpoint_name(meta["model"], data.name, cfg)
    path = networks.save_sa_checkpoint(path, net, out_meta)
    note = f"checkpoint saved to {path}; {train.saved_note(path)}"
    if args.json:
        print(f"cimsim finetune: {note}", file=sys.stderr)
        emit_json({**out_meta, "checkpoint": str(path)})
    else:
        for h in info["history"]:
            print(f"epoch {h['epoch']:3d}  loss {h['loss']:.4f}")
        print(f"{meta['model']} on {data.name}, fine-tuned for {spec.name}'s sense amps ({recipe.schedule} schedule): "
              f"test accuracy {100 * info['test_accuracy_before']:.2f}% before, {100 * info['test_accuracy']:.2f}% "
              f"after {recipe.epochs} epochs (first {info['test_examples']} test examples; float network "
              f"{100 * meta['test_accuracy']:.2f}%)")
        print(note)
    return 0


def register(sub) -> None:
    sp = add_command(sub, "finetune", "fine-tune a trained network for an ADC-less architecture (partial-sum QAT)", run,
             "Partial-sum quantization-aware fine-tuning (cimsim.mappers.qat) of a trained zoo network for an "
             "architecture with binary/ternary column readouts and learned scale factors (hcim), or hardware-aware "
             "training of a spiking network for the sense amps of adcless-snn (cimsim.mappers.snn_qat). The result is "
             "saved where 'cimsim run --arch ARCH' finds it. --limit N fine-tunes on the first N training examples.")
    sp.add_argument("--arch", default="hcim", help="architecture to prepare the network for (default hcim)")
    data_options(sp)
    sp.add_argument("--checkpoint", help="the trained network to start from (default: the one found by model and dataset)")
    sp.add_argument("--set", action="append", type=key_value, metavar="KEY=VALUE",
                    help="override an architecture parameter (repeatable), as for 'cimsim run'")
    sp.add_argument("--epochs", type=positive_int, help="fine-tuning epochs (default 3)")
    sp.add_argument("--lr", type=float, help="learning rate of the weights (default 1e-3)")
    sp.add_argument("--batch-size", type=positive_int, help="mini-batch size (default 128)")
    sp.add_argument("--test-limit", type=positive_int, metavar="N",
                    help="measure the accuracy on the first N test examples only (default: all)")
    sp.add_argument("--noise", type=float, metavar="FRAC",
                    help="noise injection: per-cell level noise, a fraction of the level range (default 0)")
    sp.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to fine-tune (default cpu)")
    sp.add_argument("--out", help="checkpoint file (default: the user's checkpoint directory)")
    sp.add_argument("--schedule", choices=["progressive", "direct"],
                    help="adcless-snn: binarized partial sums introduced progressively (default) or all at once")
