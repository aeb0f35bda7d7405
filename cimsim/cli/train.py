"""``cimsim train``: train a zoo model and save its checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

from cimsim.errors import ConfigError
from cimsim.cli import names
from cimsim.cli.common import add_command, check_writable_folder, data_options, emit_json, nonneg_int, positive_int


def run(args) -> int:
    names.check(model=args.model, dataset=args.dataset)   # before torch loads
    from cimsim.workloads import train

    if args.out:
        target = Path(args.out)
        folder = target if (args.out.endswith("/") or target.is_dir()) else target.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create folder {folder} for --out ({exc.strerror}); "
                              "choose another --out") from None
        check_writable_folder(folder.resolve(), "--out")
    result = train.train(args.model, args.dataset, epochs=args.epochs, seed=args.seed, device=args.device,
                         batch_size=args.batch_size, lr=args.lr, data_dir=args.data_dir, limit=args.limit)
    meta = result.metadata
    out = Path(args.out) if args.out else train.user_dir() / train.checkpoint_name(meta["model"], meta["dataset"])
    if out.is_dir() or (args.out and args.out.endswith("/")):
        out = out / train.checkpoint_name(meta["model"], meta["dataset"])
    path = train.save_checkpoint(out, result.model, meta)
    note = f"checkpoint saved to {path}; {train.saved_note(path)}"
    if args.json:
        print(f"cimsim train: {note}", file=sys.stderr)
        emit_json({**{k: v for k, v in meta.items() if k != "history"}, "history": meta["history"],
                    "checkpoint": str(path), "checkpoint_shadows": train.checkpoint_info(path, meta).shadows or None})
    else:
        for h in meta["history"]:
            print(f"epoch {h['epoch']:3d}  loss {h['loss']:.4f}  train {100 * h['train_accuracy']:6.2f}%  "
                  f"test {100 * h['test_accuracy']:6.2f}%")
        print(f"{meta['model']} on {meta['dataset']}: test accuracy {100 * meta['test_accuracy']:.2f}% "
              f"after {meta['epochs']} epochs (seed {meta['seed']}, {meta['train_seconds']:.0f} s)")
        print(note)
    return 0


def register(sub) -> None:
    sp = add_command(sub, "train", "train a zoo model on a dataset and save its checkpoint", run)
    data_options(sp)
    sp.add_argument("--epochs", type=positive_int, help="epochs (default: the model's recipe)")
    sp.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    sp.add_argument("--batch-size", type=positive_int, help="mini-batch size (default: the recipe's)")
    sp.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to train (default cpu)")
    sp.add_argument("--out", help="checkpoint path or directory (default ~/.cache/cimsim/checkpoints, "
                    "or $CIMSIM_HOME/checkpoints)")
