"""``cimsim train``: train a zoo model and save its checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

from cimsim.errors import ConfigError
from cimsim.cli import names
from cimsim.cli.common import (add_command, batch_size, data_options, emit_json, nonneg_int, positive_float,
                               positive_int, require_device)
from cimsim.cli.saving import checkpoint_out, save_after_summary


def run(args) -> int:
    names.check(model=args.model, dataset=args.dataset)   # before torch loads
    from cimsim.workloads import train

    out = None
    if args.out is not None:   # a folder (existing, or named with a trailing /) takes the default file name
        target = Path(args.out)
        if args.out.strip() and (args.out.endswith("/") or os.path.isdir(args.out)):
            try:
                target.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create folder {target} for --out ({exc.strerror}); "
                                  "choose another --out") from None
            target = target / train.checkpoint_name(args.model, args.dataset)
            args.out = str(target)
        out = checkpoint_out(args)   # before any work: a device, an unwritable place, another kind of file, --init
    require_device(args.device)
    if args.optimizer != "sgd":
        if args.time_budget is not None or args.test_limit is not None or args.init is not None:
            raise ConfigError("--time-budget, --test-limit and --init apply to the recipe's training (--optimizer "
                              f"sgd); leave them out with --optimizer {args.optimizer}")
        return _second_order(args, out)
    # the batch size the recipe trains at: named by the one-line out-of-memory error (cimsim.cli)
    args.batch_size_used = train.recipe_for(args.model, args.dataset, batch_size=args.batch_size).batch_size
    result = train.train(args.model, args.dataset, epochs=args.epochs, seed=args.seed, device=args.device,
                         batch_size=args.batch_size, lr=args.lr, data_dir=args.data_dir, limit=args.limit,
                         time_budget=args.time_budget, test_limit=args.test_limit, init=args.init)
    meta = result.metadata
    default = out is None
    path = train.user_dir() / train.checkpoint_name(meta["model"], meta["dataset"]) if default else out
    save_after_summary("train", args.json, lambda: _summary(args, meta, path),
                       lambda p: train.save_checkpoint(p, result.model, meta), path, default, train.saved_note)
    return 0


def _summary(args, meta: dict, path: Path) -> None:
    from cimsim.workloads import train

    if args.json:
        emit_json({**{k: v for k, v in meta.items() if k != "history"}, "history": meta["history"],
                    "checkpoint": str(path), "checkpoint_shadows": train.checkpoint_info(path, meta).shadows or None})
    else:
        flow = meta.get("metric") == "aee"
        for h in meta["history"]:
            if flow:
                print(f"epoch {h['epoch']:3d}  loss {h['loss']:.4f}  train AEE {h['train_aee']:.3f} px  "
                      f"test AEE {h['test_aee']:.3f} px")
            else:
                print(f"epoch {h['epoch']:3d}  loss {h['loss']:.4f}  train {100 * h['train_accuracy']:6.2f}%  "
                      f"test {100 * h['test_accuracy']:6.2f}%")
        what = (f"test AEE {meta['test_aee']:.3f} px" if flow else f"test accuracy {100 * meta['test_accuracy']:.2f}%")
        print(f"{meta['model']} on {meta['dataset']}: {what} "
              f"after {meta['epochs']} epoch{'' if meta['epochs'] == 1 else 's'} (seed {meta['seed']}, {meta['train_seconds']:.0f} s)")


def _second_order(args, out) -> int:
    """K-FAC with float or crossbar inversion (cimsim.workloads.kfac): the curve, the hardware cost per step."""
    from cimsim.workloads import kfac, train

    if args.device != "cpu":
        raise ConfigError(f"--optimizer {args.optimizer} runs on the CPU (the crossbar model is numpy): "
                          "use --device cpu")
    show = None if args.json else (lambda h: print(f"epoch {h['epoch']:3d}  loss {h['loss']:.4f}  train "
                                                   f"{100 * h['train_accuracy']:6.2f}%  test "
                                                   f"{100 * h['test_accuracy']:6.2f}%", flush=True))
    result = kfac.train_zoo(args.model, args.dataset, args.optimizer, epochs=args.epochs, seed=args.seed,
                            batch_size=args.batch_size, lr=args.lr, data_dir=args.data_dir, limit=args.limit,
                            progress=show)
    meta = result.metadata
    if args.json:
        summary = {**meta, "checkpoint": None if out is None else str(out)}
        if out is None:
            emit_json(summary)
        else:
            save_after_summary("train", True, lambda: emit_json(summary),
                               lambda p: train.save_checkpoint(p, result.model, meta), out, False)
        return 0
    c = meta["second_order_cost_per_step"]
    print(f"{meta['model']} on {meta['dataset']} with {args.optimizer}: test accuracy "
          f"{100 * meta['test_accuracy']:.2f}% after {meta['epochs']} epochs ({meta['steps']} steps, "
          f"{meta['refreshes']} inverse refreshes, {meta['train_seconds']:.0f} s)")
    line = f"second-order work per step: GPU model {c['gpu_time_s']:.3g} s, {c['gpu_energy_j']:.3g} J"
    if "crossbar_time_s" in c:
        line += (f"; crossbars {c['crossbar_time_s']:.3g} s, {c['crossbar_energy_j']:.3g} J: speed-up "
                 f"{c['speedup_vs_gpu']:.3g}x, energy saving {c['energy_saving_vs_gpu']:.3g}x (RePAST reports "
                 f"115.8x / 41.9x vs a GPU on large DNNs); refinement <= {c['refine_max_iterations']} steps")
    print(line)
    if "crossbar_time_s" in c:
        print("(this run's arrays: one unreplicated set per block; 'cimsim linalg kfac-cost' prices replicated, "
              "pipelined arrays and large networks)")
    if out is None:
        print("no checkpoint written (give --out to keep one)")
    else:
        save_after_summary("train", False, lambda: None, lambda p: train.save_checkpoint(p, result.model, meta), out,
                           False)
    return 0


def register(sub) -> None:
    sp = add_command(sub, "train", "train a zoo model on a dataset and save its checkpoint", run)
    data_options(sp, limit_help="train on the first N training examples only (quick checks; --test-limit for the "
                                "test set)")
    sp.add_argument("--epochs", type=positive_int, help="epochs (default: the model's recipe)")
    sp.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    sp.add_argument("--batch-size", type=batch_size, help="mini-batch size (default: the recipe's)")
    sp.add_argument("--lr", type=positive_float, help="peak learning rate (default: the recipe's)")
    sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to train (default cpu)")
    sp.add_argument("--optimizer", default="sgd", choices=["sgd", "kfac", "crossbar-kfac"],
                    help="sgd: the model's recipe (default); kfac: K-FAC with float inversion of its curvature "
                         "blocks; crossbar-kfac: the blocks inverted on 8-bit crossbar inversion circuits refined to "
                         "16 bits (RePAST), with the hardware time and energy per step against a GPU model "
                         "(no checkpoint unless --out is given)")
    sp.add_argument("--test-limit", type=positive_int, metavar="N",
                    help="score each epoch on the first N test examples only (default: all)")
    sp.add_argument("--time-budget", type=positive_float, metavar="S",
                    help="train only as many of the epochs as fit in S seconds at the first epoch's pace (at least "
                         "one; the learning-rate decay ends at the last of them)")
    sp.add_argument("--init", metavar="CHECKPOINT",
                    help="continue from this checkpoint of the same model and dataset (its weights; a fresh "
                         "optimizer and learning-rate schedule over --epochs): long trainings in parts; the "
                         "checkpoint records it and the epochs in all")
    sp.add_argument("--out", help="checkpoint file NAME.pt or a directory (default ~/.cache/cimsim/checkpoints, "
                    "or $CIMSIM_HOME/checkpoints); its metadata is written beside it as NAME.json, and an earlier "
                    "checkpoint at the default path is kept as NAME.prev.pt (with NAME.prev.json)")
