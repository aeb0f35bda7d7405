"""``cimsim finetune``: partial-sum QAT of a trained network for an ADC-less architecture (``--method psq``), or
ADMM crossbar-aware block pruning and quantization for any crossbar architecture (``--method admm``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cimsim.errors import ConfigError
from cimsim.cli import names
from cimsim.cli.common import (add_command, batch_size, data_options, emit_json, fraction, key_value, model_to_check,
                               nonneg_float, nonneg_int, positive_float, positive_int, require_device)
from cimsim.cli.saving import checkpoint_out, save_after_summary


# the options only the partial-sum (PSQ) fine-tune reads, as (flag, attribute)
PSQ_ONLY = (("--alpha-lr", "alpha_lr"), ("--distill", "distill"), ("--temperature", "temperature"), ("--init", "init"),
            ("--freeze", "freeze"), ("--label-smoothing", "label_smoothing"), ("--augment", "augment"),
            ("--learn-input-steps", "learn_input_steps"), ("--learn-weight-steps", "learn_weight_steps"),
            ("--validation", "validation"), ("--average", "average"), ("--average-lr-scale", "average_lr_scale"))
# the options of the hardware-aware fine-tunes' schedules (partial-sum and spiking), as (flag, attribute)
STAGED = (("--schedule", "schedule"), ("--stage-share", "stage_share"))


def refuse_options(args, options, owner: str, here: str) -> None:
    """One line naming the given ``options`` (those set to anything but their unset value) that belong to
    ``owner``, not to the fine-tune run ``here``, rather than ignoring them."""
    given = [flag for flag, name in options if getattr(args, name, None)]
    if given:
        one = len(given) == 1
        raise ConfigError(f"{', '.join(given)}: {'an option' if one else 'options'} of {owner}, not of {here}; "
                          f"leave {'it' if one else 'them'} out")


def refuse_stage_share(args, default_schedule: str) -> None:
    """One line for ``--stage-share`` on a run whose schedule has no stages (it sets the progressive schedule's),
    rather than ignoring it."""
    schedule = args.schedule or default_schedule
    if args.stage_share is not None and schedule != "progressive":
        raise ConfigError(f"--stage-share {args.stage_share:g} sets the progressive schedule's stages, and this run's "
                          f"schedule is {schedule}: add --schedule progressive, or leave --stage-share out")


def run(args) -> int:
    if args.method == "admm":
        return run_admm(args)
    if args.compression is not None:
        raise ConfigError("--compression is a knob of ADMM pruning: add --method admm")
    args.arch = args.arch or "hcim"
    names.check(archs=args.arch, model=args.model, dataset=args.dataset, sets=args.set)   # before torch/numba load
    from cimsim import arch as arch_mod
    from cimsim import networks
    from cimsim.mappers import psq_finetune, qat
    from cimsim.networks import load_model_and_data
    from cimsim.workloads import train

    overrides = dict(args.set or [])
    spec = arch_mod.get(args.arch, **overrides)
    if spec.learned_sense_amp_scales:   # adcless-snn: spiking networks, cimsim.mappers.snn_qat
        return finetune_snn(args, spec, overrides)
    if args.schedule == "fraction":
        raise ConfigError("--schedule fraction is a schedule of the spiking networks' fine-tune (adcless-snn); "
                          f"choose direct or progressive for {spec.name}")
    refuse_stage_share(args, psq_finetune.FinetuneRecipe.schedule)
    if not spec.learned_column_scales:
        raise ConfigError(f"finetune prepares networks for architectures with learned readout scales "
                          f"(hcim's partial sums, adcless-snn's sense amps); {spec.name} has no learned readout "
                          f"scales: use 'cimsim run --arch {spec.name}', or --method admm to prune a network for it")
    out = checkpoint_out(args, reads_found=True)   # before any work: never another kind of file, never an input
    require_device(args.device)
    if args.checkpoint and networks.is_psq_checkpoint(args.checkpoint):
        raise ConfigError(f"--checkpoint {args.checkpoint} is a PSQ fine-tuned network; --checkpoint names the float "
                          "network to start from (and distil from): pass a PSQ network to continue from as --init")
    model, meta, data, ckpt = load_model_and_data(model_to_check(args), args.dataset, args.data_dir, args.checkpoint)
    cfg = qat.PSQConfig.from_arch(spec)
    init, init_meta = None, None
    if args.init:
        init, init_meta = networks.load_psq_checkpoint(args.init)
        if init_meta["model"] != meta["model"] or init_meta["dataset"] != data.name:
            raise ConfigError(f"--init {args.init} is {init_meta['model']} on {init_meta['dataset']}, not "
                              f"{meta['model']} on {data.name}: pass the matching --model/--dataset")
    given = (("epochs", args.epochs), ("lr", args.lr), ("alpha_lr", args.alpha_lr), ("batch_size", args.batch_size),
             ("noise_frac", args.noise), ("distill", args.distill), ("temperature", args.temperature),
             ("freeze", args.freeze), ("label_smoothing", args.label_smoothing),
             ("learn_input_steps", args.learn_input_steps or None),
             ("learn_weight_steps", args.learn_weight_steps or None), ("validation", args.validation),
             ("average", args.average), ("average_lr_scale", args.average_lr_scale),
             ("schedule", args.schedule), ("stage_share", args.stage_share),
             *(train.AUGMENT.get(data.name, {}).items() if args.augment else ()))
    if args.augment and data.name not in train.AUGMENT:
        raise ConfigError(f"--augment: no augmentation is defined for {data.name} (only for "
                          f"{', '.join(sorted(train.AUGMENT))}); leave --augment out")
    recipe = build_recipe(psq_finetune.FinetuneRecipe, {k: v for k, v in given if v is not None})
    args.batch_size_used = recipe.batch_size   # named by the one-line out-of-memory error (cimsim.cli)
    psq, info = psq_finetune.finetune(model, cfg, data, recipe, seed=args.seed, limit=args.limit,
                                      test_limit=args.test_limit, device=args.device, init=init)
    sets = "".join(f" --set {k}={v}" for k, v in overrides.items())
    init_info = {} if init is None else {
        "init_checkpoint": Path(args.init).name, "init_test_accuracy": init_meta.get("test_accuracy"),
        "init_command": init_meta.get("command"), "init_recipe": init_meta.get("recipe")}
    out_meta = {"model": meta["model"], "dataset": data.name, "arch": spec.name, "input_shape": meta["input_shape"],
                "num_classes": meta["num_classes"], "base_checkpoint": Path(ckpt).name,
                "base_test_accuracy": meta["test_accuracy"], **init_info, **info,
                "command": (f"cimsim finetune --arch {spec.name} --model {meta['model']} --dataset {data.name}"
                            f"{sets} --epochs {recipe.epochs} --seed {args.seed}"
                            + (f" --limit {args.limit}" if args.limit else "")
                            + (f" --test-limit {args.test_limit}" if args.test_limit else "")
                            + (f" --batch-size {args.batch_size}" if args.batch_size else "")
                            + (f" --lr {args.lr}" if args.lr else "")
                            + (f" --alpha-lr {args.alpha_lr}" if args.alpha_lr else "")
                            + (f" --noise {args.noise}" if args.noise else "")
                            + (f" --distill {args.distill} --temperature {recipe.temperature}" if args.distill else "")
                            + (f" --freeze {args.freeze}" if args.freeze else "")
                            + (f" --label-smoothing {args.label_smoothing}" if args.label_smoothing else "")
                            + (" --augment" if args.augment else "")
                            + (" --learn-input-steps" if args.learn_input_steps else "")
                            + (" --learn-weight-steps" if args.learn_weight_steps else "")
                            + (f" --validation {args.validation}" if args.validation else "")
                            + (f" --average {args.average}" if args.average else "")
                            + (f" --average-lr-scale {args.average_lr_scale}" if args.average_lr_scale else "")
                            + (f" --schedule {args.schedule}" if args.schedule else "")
                            + (f" --stage-share {args.stage_share}" if args.stage_share is not None else "")
                            + (f" --init {Path(args.init).name}" if args.init else ""))}
    path = out if out is not None else train.user_dir() / networks.psq_checkpoint_name(meta["model"], data.name, cfg)

    def show() -> None:
        if args.json:
            emit_json({**out_meta, "checkpoint": str(path),
                       "checkpoint_shadows": train.checkpoint_info(path, out_meta).shadows or None})
            return
        for h in info.get("stages", ()):
            read = "layer 1" if h["layers_read"] == 1 else f"layers 1-{h['layers_read']}"
            print(f"stage {h['stage']:3d}  loss {h['loss']:.4f}  {h['steps']} steps, {read} read, the rest exact")
        for h in info["history"]:
            test = "" if h["test_accuracy"] is None else f"  test {100 * h['test_accuracy']:6.2f}%"
            print(f"epoch {h['epoch']:3d}  loss {h['loss']:.4f}{test}")
        print(f"{meta['model']} on {data.name}, PSQ for {spec.name} ({cfg.tag}): test accuracy "
              f"{100 * info['test_accuracy_before_first_1000']:.2f}% before (first {min(1000, info['test_examples'])}), "
              f"{100 * info['test_accuracy']:.2f}% after "
              f"{recipe.epochs} epochs (float network {100 * meta['test_accuracy']:.2f}%; "
              f"{100 * info['test_accuracy_exact_first_1000']:.2f}% with exact partial sums before)")

    save_after_summary("finetune", args.json, show, lambda p: networks.save_psq_checkpoint(p, psq, out_meta), path,
                       out is None, train.saved_note)
    return 0


def finetune_snn(args, spec, overrides: dict) -> int:
    """Hardware-aware fine-tuning of a trained spiking network for the sense amps of ``spec`` (adcless-snn)."""
    from cimsim import networks
    from cimsim.mappers import snn_qat
    from cimsim.workloads import train

    refuse_options(args, PSQ_ONLY, "the partial-sum fine-tune (hcim)",
                   f"the spiking networks' sense-amp fine-tune ({spec.name})")
    refuse_stage_share(args, snn_qat.SnnFinetuneRecipe.schedule)
    out = checkpoint_out(args, reads_found=True)   # before any work: never another kind of file, never an input
    require_device(args.device)
    model, meta, data, ckpt = networks.load_model_and_data(model_to_check(args), args.dataset, args.data_dir, args.checkpoint)
    cfg = snn_qat.SAConfig.from_arch(spec)
    recipe = snn_qat.SnnFinetuneRecipe(**{k: v for k, v in (("epochs", args.epochs), ("lr", args.lr),
                                                             ("batch_size", args.batch_size), ("noise_frac", args.noise),
                                                             ("schedule", args.schedule),
                                                             ("stage_share", args.stage_share)) if v is not None})
    args.batch_size_used = recipe.batch_size   # named by the one-line out-of-memory error (cimsim.cli)
    net, info = snn_qat.finetune(model, cfg, data, recipe, seed=args.seed, limit=args.limit, test_limit=args.test_limit,
                                 device=args.device)
    sets = "".join(f" --set {k}={v}" for k, v in overrides.items())
    opts = [("--limit", args.limit), ("--test-limit", args.test_limit), ("--batch-size", args.batch_size),
            ("--lr", args.lr), ("--noise", args.noise), ("--stage-share", args.stage_share)]
    out_meta = {"model": meta["model"], "dataset": data.name, "arch": spec.name, "input_shape": meta["input_shape"],
                "num_classes": meta["num_classes"], "base_checkpoint": Path(ckpt).name,
                "base_test_accuracy": meta["test_accuracy"], **info,
                "command": (f"cimsim finetune --arch {spec.name} --model {meta['model']} --dataset {data.name}{sets} "
                            f"--epochs {recipe.epochs} --schedule {recipe.schedule} --seed {args.seed}"
                            + "".join(f" {k} {v}" for k, v in opts if v))}
    path = out if out is not None else train.user_dir() / networks.sa_checkpoint_name(meta["model"], data.name, cfg)

    def show() -> None:
        if args.json:
            emit_json({**out_meta, "checkpoint": str(path)})
            return
        for h in info["history"]:
            print(f"epoch {h['epoch']:7.3f}  loss {h['loss']:.4f}  binarized layers {h['binarized_layers']}")
        if info.get("metric") == "aee":   # a flow network
            scores = (f"test AEE {info['test_aee_before']:.3f} px before, {info['test_aee']:.3f} px after "
                      f"{recipe.epochs} epochs (first {info['test_examples']} test examples; float network "
                      f"{meta['test_aee']:.3f} px)")
        else:
            scores = (f"test accuracy {100 * info['test_accuracy_before']:.2f}% before, {100 * info['test_accuracy']:.2f}% "
                      f"after {recipe.epochs} epochs (first {info['test_examples']} test examples; float network "
                      f"{100 * meta['test_accuracy']:.2f}%)")
        print(f"{meta['model']} on {data.name}, fine-tuned for {spec.name}'s sense amps ({recipe.schedule} schedule): "
              + scores)

    save_after_summary("finetune", args.json, show, lambda p: networks.save_sa_checkpoint(p, net, out_meta), path,
                       out is None, train.saved_note)


def run_admm(args) -> int:
    """ADMM block pruning (cimsim.mappers.admm) with blocks of the architecture's array; saves a plain checkpoint
    that 'cimsim run --checkpoint' maps (the arrays of pruned blocks are not allocated)."""
    args.arch = args.arch or "isaac"
    names.check(archs=args.arch, model=args.model, dataset=args.dataset, sets=args.set)
    if args.compression is None:
        raise ConfigError("--method admm needs --compression C (target weights / kept weights, e.g. 16)")
    if args.compression < 1:
        raise ConfigError(f"--compression must be at least 1, got {args.compression:g}")
    if args.noise is not None:
        raise ConfigError("--noise is a knob of partial-sum QAT (--method psq), not of ADMM pruning")
    refuse_options(args, PSQ_ONLY, "the partial-sum fine-tune (--method psq)", "ADMM pruning")
    refuse_options(args, STAGED, "the hardware-aware fine-tunes (hcim, adcless-snn)", "ADMM pruning")
    from cimsim import arch as arch_mod
    from cimsim.mappers import admm
    from cimsim.networks import load_model_and_data
    from cimsim.workloads import train

    overrides = dict(args.set or [])
    spec = arch_mod.get(args.arch, **overrides)
    if not spec.maps_to_crossbars:
        raise ConfigError(f"ADMM prunes crossbar blocks: {spec.name!r} has no crossbars")
    out = checkpoint_out(args, reads_found=True)   # before any work: never another kind of file, never an input
    require_device(args.device)
    model, meta, data, ckpt = load_model_and_data(model_to_check(args), args.dataset, args.data_dir, args.checkpoint)
    cfg = admm.ADMMConfig.from_arch(spec, args.compression)
    recipe = admm.ADMMRecipe(**{k: v for k, v in (("admm_epochs", args.epochs), ("retrain_epochs", args.epochs),
                                                  ("lr", args.lr), ("batch_size", args.batch_size)) if v is not None})
    args.batch_size_used = recipe.batch_size   # named by the one-line out-of-memory error (cimsim.cli)
    pruned, info = admm.admm_prune(model, cfg, data, recipe, seed=args.seed, limit=args.limit,
                                   test_limit=args.test_limit, device=args.device)
    sets = "".join(f" --set {k}={v}" for k, v in overrides.items())
    out_meta = {"model": meta["model"], "dataset": data.name, "arch": spec.name, "input_shape": meta["input_shape"],
                "num_classes": meta["num_classes"], "base_checkpoint": Path(ckpt).name,
                "base_test_accuracy": meta["test_accuracy"], **info,
                "command": f"cimsim finetune --method admm --arch {spec.name} --model {meta['model']} --dataset "
                           f"{data.name}{sets} --compression {args.compression:g} --seed {args.seed}"}
    path = out if out is not None else train.user_dir() / train.checkpoint_name(meta["model"], data.name).replace(
        ".pt", f"-admm-{spec.name}-c{args.compression:g}.pt")

    def show() -> None:
        if args.json:
            emit_json({**out_meta, "checkpoint": str(path)})
            return
        print(f"{meta['model']} on {data.name}, ADMM blocks of {cfg.block_rows} inputs x {cfg.block_outputs} outputs "
              f"({spec.name}): weight compression {info['compression']:.2f}x, test accuracy "
              f"{100 * info['test_accuracy_before']:.2f}% before, {100 * info['test_accuracy_pruned']:.2f}% pruned, "
              f"{100 * info['test_accuracy']:.2f}% retrained")

    save_after_summary("finetune", args.json, show, lambda p: train.save_checkpoint(p, pruned, out_meta), path,
                       out is None, lambda p: f"map it with 'cimsim run --arch {spec.name}{sets} --model "
                       f"{meta['model']} --dataset {data.name} --checkpoint {p}'")
    return 0


# the recipe's fields as the options that set them, so that a refused recipe is told in option terms
_OPTION_OF = {"epochs": "--epochs", "lr": "--lr", "alpha_lr": "--alpha-lr", "batch_size": "--batch-size",
              "noise_frac": "--noise", "distill": "--distill", "temperature": "--temperature", "freeze": "--freeze",
              "label_smoothing": "--label-smoothing", "validation": "--validation", "average": "--average",
              "average_lr_scale": "--average-lr-scale", "schedule": "--schedule", "stage_share": "--stage-share"}


def build_recipe(cls, given: dict):
    """``cls(**given)``, a refusal reworded in the options' terms (--average-lr-scale, not the recipe's field)."""
    import re

    avg, epochs = given.get("average"), given.get("epochs", getattr(cls, "epochs", None))
    if avg and isinstance(epochs, int) and avg >= epochs:
        raise ConfigError(f"--average {avg} would average all {epochs} epochs and leave none to train before it: "
                          "give --average below --epochs (or more --epochs)")
    try:
        return cls(**given)
    except ConfigError as exc:
        text = re.sub(rf"{cls.__name__}\.(\w+)", lambda m: _OPTION_OF.get(m.group(1), m.group(1)), str(exc))
        text = (text.replace(f"{cls.__name__}: ", "").replace("augmentation (crop_pad, flip)", "--augment")
                .replace("use freeze 0 with augmentation", "leave --freeze out with --augment")
                .replace("use freeze 0 with it", "leave --freeze out with it"))
        raise ConfigError(text) from None


def unit_fraction(text: str) -> float:
    """A number in (0, 1]: a learning rate's scale (0 would stop the training)."""
    try:
        value = fraction(text)
    except argparse.ArgumentTypeError:
        value = None
    if value is None or value == 0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def register(sub) -> None:
    sp = add_command(sub, "finetune", "fine-tune a trained network: partial-sum QAT (ADC-less), sense-amp training "
                     "(spiking) or ADMM block pruning", run,
             "Partial-sum quantization-aware fine-tuning (cimsim.mappers.psq_finetune) of a trained zoo network for an "
             "architecture with binary/ternary column readouts and learned scale factors (hcim), or hardware-aware "
             "training of a spiking network for the sense amps of adcless-snn (cimsim.mappers.snn_qat). The result is "
             "saved where 'cimsim run --arch ARCH' finds it. --method admm: ADMM crossbar-aware block pruning "
             "(cimsim.mappers.admm) toward --compression C with blocks of the architecture's array, for any crossbar "
             "architecture; 'cimsim run --checkpoint' maps the result, allocating only the arrays of non-zero blocks. "
             "--limit N fine-tunes on the first N training examples.")
    sp.add_argument("--method", choices=["psq", "admm"], default="psq",
                    help="psq: partial-sum QAT or sense-amp training, by architecture (default); admm: crossbar-aware "
                         "block pruning (cimsim.mappers.admm)")
    sp.add_argument("--compression", type=positive_float, metavar="C",
                    help="ADMM: target weight compression (weights / kept weights)")
    sp.add_argument("--arch", help="architecture to prepare the network for (default hcim; isaac with --method admm)")
    data_options(sp, limit_help="fine-tune on the first N training examples only (quick checks; --test-limit for "
                                "the test set)")
    sp.add_argument("--checkpoint", help="the trained network to start from (default: the one found by model and dataset)")
    sp.add_argument("--set", action="append", type=key_value, metavar="KEY=VALUE",
                    help="override an architecture parameter (repeatable), as for 'cimsim run'")
    sp.add_argument("--epochs", type=positive_int,
                    help="fine-tuning epochs (default 3; ADMM: this many ADMM and as many retraining epochs, default 6)")
    sp.add_argument("--lr", type=positive_float, help="learning rate of the weights (default 1e-3)")
    sp.add_argument("--alpha-lr", type=positive_float, help="learning rate of the column scale factors (default 1e-2)")
    sp.add_argument("--distill", type=fraction, metavar="W",
                    help="knowledge distillation from the float network (the --checkpoint / default one): weight W in "
                         "[0, 1] of the distillation term, loss = (1-W) CE + W T^2 KL (default 0: cross-entropy only)")
    sp.add_argument("--temperature", type=positive_float, metavar="T", help="distillation temperature (default 4)")
    sp.add_argument("--init", metavar="PSQ_CHECKPOINT",
                    help="continue from this PSQ fine-tuned network (weights, input ranges, column scales) instead of "
                         "preparing the float network afresh; the float network stays the teacher")
    sp.add_argument("--freeze", type=nonneg_int, metavar="N",
                    help="keep the network's first N top-level parts as they are (e.g. 1: LeNet-5's convolutional "
                         "'features'), compute their outputs on the training set once and train the rest: much "
                         "cheaper per epoch on a CPU; noise injection then reaches the trained parts only "
                         "(default 0: train everything)")
    sp.add_argument("--label-smoothing", type=fraction, metavar="E",
                    help="label smoothing of the cross-entropy term: mass E spread over all classes (default 0)")
    sp.add_argument("--augment", action="store_true",
                    help="random crops and flips of the training images, as 'cimsim train' uses for the dataset "
                         "(Fashion-MNIST: 2-pixel crops and left-right flips; default off)")
    sp.add_argument("--learn-input-steps", action="store_true",
                    help="learn every layer's input quantization step (LSQ, Esser et al. 2020) instead of keeping "
                         "the calibrated one; the learned steps are what 'cimsim run' programs (default off)")
    sp.add_argument("--learn-weight-steps", action="store_true",
                    help="learn every output channel's weight quantization step (LSQ), at most the max-scaling "
                         "step: outliers are clipped and the other weights get finer levels; the clipped weights "
                         "are saved, so 'cimsim run' programs the same integers (default off)")
    sp.add_argument("--validation", type=nonneg_int, metavar="N",
                    help="hold out the last N training examples (after --limit), measure the accuracy on them after "
                         "every epoch and keep the epoch best there: model selection without the test set "
                         "(default 0: keep the last epoch)")
    sp.add_argument("--average", type=nonneg_int, metavar="K",
                    help="weight averaging (SWA, Izmailov et al. 2018): the last K epochs at a constant learning rate, "
                         "the network's parameters averaged over their steps; the epochs before decay to that rate "
                         "(default 0: off, a cosine decay to zero)")
    sp.add_argument("--average-lr-scale", type=unit_fraction, metavar="F",
                    help="the averaging epochs' learning rate as a fraction F in (0, 1] of --lr and --alpha-lr "
                         "(default 0.2)")
    sp.add_argument("--batch-size", type=batch_size, help="mini-batch size (default 128)")
    sp.add_argument("--test-limit", type=positive_int, metavar="N",
                    help="measure the accuracy on the first N test examples only (default: all)")
    sp.add_argument("--noise", type=fraction, metavar="FRAC",
                    help="noise injection: per-cell level noise, a fraction of the level range (default 0)")
    sp.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to fine-tune (default cpu)")
    sp.add_argument("--out", help="checkpoint file NAME.pt (default: the user's checkpoint directory); its metadata "
                    "is written beside it as NAME.json, and an earlier checkpoint at the default path is kept as "
                    "NAME.prev.pt (with NAME.prev.json)")
    sp.add_argument("--schedule", choices=["progressive", "direct", "fraction"],
                    help="how the readout enters: layer by layer from the input, in stages before the final phase "
                         "(progressive; the default for adcless-snn), all layers from the first step (direct; the "
                         "default for hcim), or, adcless-snn only, as a growing random fraction of the columns "
                         "(fraction); --epochs is the final phase's length for all three")
    sp.add_argument("--stage-share", type=nonneg_float, metavar="R",
                    help="progressive: steps of the layer-by-layer stages as a share of the final phase's "
                         "(default 0.5)")
