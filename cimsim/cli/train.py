"""``cimsim train``: train a zoo model and save its checkpoint."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cimsim.errors import ConfigError
from cimsim.cli import names
from cimsim.cli.common import (add_command, batch_size, checkpoint_output, data_options, emit_json, nonneg_int,
                               positive_float, positive_int, require_device)


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
        out = checkpoint_output(args.out)   # before any work: a device or unwritable place is refused
    require_device(args.device)
    result = train.train(args.model, args.dataset, epochs=args.epochs, seed=args.seed, device=args.device,
                         batch_size=args.batch_size, lr=args.lr, data_dir=args.data_dir, limit=args.limit,
                         time_budget=args.time_budget, test_limit=args.test_limit)
    meta = result.metadata
    if out is None:
        out = train.user_dir() / train.checkpoint_name(meta["model"], meta["dataset"])
    path = train.save_checkpoint(out, result.model, meta)
    note = f"checkpoint saved to {path}; {train.saved_note(path)}"
    if args.json:
        print(f"cimsim train: {note}", file=sys.stderr)
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
              f"after {meta['epochs']} epochs (seed {meta['seed']}, {meta['train_seconds']:.0f} s)")
        print(note)
    return 0


def register(sub) -> None:
    sp = add_command(sub, "train", "train a zoo model on a dataset and save its checkpoint", run)
    data_options(sp)
    sp.add_argument("--epochs", type=positive_int, help="epochs (default: the model's recipe)")
    sp.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    sp.add_argument("--batch-size", type=batch_size, help="mini-batch size (default: the recipe's)")
    sp.add_argument("--lr", type=positive_float, help="peak learning rate (default: the recipe's)")
    sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to train (default cpu)")
    sp.add_argument("--test-limit", type=positive_int, metavar="N",
                    help="score each epoch on the first N test examples only (default: all)")
    sp.add_argument("--time-budget", type=positive_float, metavar="S",
                    help="train only as many of the epochs as fit in S seconds at the first epoch's pace (at least "
                         "one; the learning-rate decay ends at the last of them)")
    sp.add_argument("--out", help="checkpoint path or directory (default ~/.cache/cimsim/checkpoints, "
                    "or $CIMSIM_HOME/checkpoints)")
