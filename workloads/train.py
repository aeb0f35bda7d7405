"""Training recipes for the zoo, deterministic for a seed, and the checkpoints they produce.

``train("lenet5", "fashion-mnist", seed=0)`` trains with the recipe of :data:`RECIPES` and returns the
model with its metadata; :func:`save_checkpoint` writes it. The same seed, device, thread count and torch
version give the same weights bit for bit (``torch.use_deterministic_algorithms``); across machines the
test accuracy agrees to a fraction of a point.

Checkpoints are found by model and dataset name (:func:`find_checkpoint`): first the user's directory
(``$CIMSIM_HOME/checkpoints``, default ``~/.cache/cimsim/checkpoints``), where ``cimsim train`` writes,
then the checkpoints shipped inside the package. A user checkpoint that hides a shipped one of the same
name is announced (a :class:`CheckpointShadowWarning`, one line on the command line), and every loaded
model carries where it came from (:mod:`cimsim.provenance`), which its reports print.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cimsim._version import __version__
from cimsim.errors import CheckpointError, ConfigError, warn_user
from cimsim.fileio import atomic_output
from cimsim import augment as augment_mod
from cimsim.metrics import batch_score, batch_score_sum, endpoint_error, is_flow
from cimsim.progress import progress as progress_bar
from cimsim.provenance import CheckpointInfo, tag_model
from cimsim.workloads import datasets as ds_mod
from cimsim.workloads.ckptfile import not_a_trained_network, read_payload, unreadable_detail
from cimsim.workloads import snn_zoo, zoo

augment = augment_mod.augment   # train.augment: the trainers use it from here too

SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"
FORMAT = "cimsim.checkpoint"
FORMAT_VERSION = 1


def user_dir() -> Path:
    """Where ``cimsim train`` saves checkpoints: ``$CIMSIM_HOME/checkpoints`` (default ~/.cache/cimsim)."""
    home = os.environ.get("CIMSIM_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "cimsim"
    return base / "checkpoints"


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of one training run: SGD with Nesterov momentum and a cosine learning-rate decay.

    ``crop_pad`` > 0 enables random crops after zero padding by that many pixels; ``flip`` random
    horizontal flips. ``warmup_epochs`` ramps the learning rate linearly at the start.
    """

    epochs: int
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    crop_pad: int = 0
    flip: bool = False
    optimizer: str = "sgd"    # "sgd" (Nesterov momentum) or "adam" (momentum and weight decay as Adam's)


# Our recipes, chosen so each shipped checkpoint clears the accuracy floor of the Foundation issue
# (LeNet-5 >= 89 %, VGG-small and ResNet-20 >= 91 %, MobileNetV2-small >= 90 % on Fashion-MNIST;
# MLP >= 95 % on digits). Momentum 0.9 and weight decay 5e-4 are the CIFAR ResNet settings of
# He et al. 2016, sec. 4.2; the cosine decay is Loshchilov & Hutter 2017 (SGDR) without restarts.
RECIPES: dict[str, Recipe] = {
    "mlp": Recipe(epochs=60, batch_size=64, lr=0.05, weight_decay=1e-4, warmup_epochs=0.0),
    "lenet5": Recipe(epochs=20, lr=0.05, weight_decay=1e-4),
    # Caffe's examples/mnist/lenet_solver.prototxt: lr 0.01 at batch 64, momentum 0.9, weight decay 5e-4, 10,000
    # steps (10.7 epochs); ours: batch 256 with the rate scaled linearly (Goyal et al., arXiv 1706.02677), 12 epochs
    "lenet5_caffe": Recipe(epochs=12, batch_size=256, lr=0.04, weight_decay=5e-4),
    "vgg_small": Recipe(epochs=15, lr=0.1),
    "resnet20": Recipe(epochs=20, lr=0.1),
    "mobilenetv2_small": Recipe(epochs=20, lr=0.1, weight_decay=4e-5),  # 4e-5: Sandler et al. 2018, sec. 6.1
    # ViT: Adam with a linear warm-up and a decaying rate (Dosovitskiy et al., ICLR 2021, sec. 4.1); rate, warm-up,
    # epochs and no weight decay (Adam's would be L2, not AdamW's) our choice for a 0.2 M-weight model at batch 128
    "vit_mini": Recipe(epochs=30, lr=1e-3, weight_decay=0.0, warmup_epochs=2.0, optimizer="adam"),
    # spiking (BPTT through the time steps with surrogate gradients, no BatchNorm): Adam as in snnTorch's tutorials
    # (Eshraghian et al., Proc. IEEE 2023) with the cosine decay above; epochs sized for a GPU (one H200 runs an
    # snn_vgg epoch over 60 000 images in tens of seconds, est.), our choice; 'cimsim train --time-budget' caps them
    "snn_vgg": Recipe(epochs=20, lr=2e-3, weight_decay=0.0, warmup_epochs=0.0, optimizer="adam"),
    # 19 LIF layers deep: half the rate (our choice; deeper BPTT graphs have larger surrogate-gradient spikes)
    "snn_resnet20": Recipe(epochs=20, lr=1e-3, weight_decay=0.0, warmup_epochs=0.0, optimizer="adam"),
    # event networks (T = 5 frames) on the small synthetic sets (484 / 512 training examples): many short epochs,
    # our choice of batch size, rate and epochs
    "snn_dvsnet": Recipe(epochs=60, batch_size=32, lr=2e-3, weight_decay=0.0, warmup_epochs=0.0, optimizer="adam"),
    "snn_flownet": Recipe(epochs=60, batch_size=16, lr=1e-3, weight_decay=0.0, warmup_epochs=0.0, optimizer="adam"),
}

# Augmentation per dataset: crops for the image sets; flips only where mirror images keep their class.
AUGMENT: dict[str, dict] = {
    "fashion-mnist": {"crop_pad": 2, "flip": True},
    "cifar10": {"crop_pad": 4, "flip": True},
    "mnist": {"crop_pad": 2, "flip": False},
}
# Tabular data: small batches and many epochs (150 / 105 examples), no warm-up.
TABULAR = {"iris": Recipe(epochs=300, batch_size=16, lr=0.05, weight_decay=0.0, warmup_epochs=0.0)}


def recipe_for(model: str, dataset: str, **overrides) -> Recipe:
    model, dataset = zoo.canonical_name(model), ds_mod.canonical_name(dataset)
    r = TABULAR.get(dataset) or replace(RECIPES[model], **AUGMENT.get(dataset, {}))
    clean = {k: v for k, v in overrides.items() if v is not None}
    for k, v in clean.items():
        if k in ("epochs", "batch_size") and int(v) < 1:
            raise ConfigError(f"{k} must be at least 1, got {v}")
        if k == "lr" and not (0 < float(v) < 10):
            raise ConfigError(f"lr must lie in (0, 10), got {v}")
    return replace(r, **clean)


@torch.no_grad()
def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500,
          device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy in [0, 1] for class labels, average endpoint error (px) for flow (:mod:`cimsim.metrics`)."""
    model.eval()
    total = 0.0
    for i in range(0, len(y), batch_size):
        total += batch_score(model(x[i:i + batch_size].to(device)).cpu(), y[i:i + batch_size])
    return total / max(len(y), 1)


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for labels; the mean endpoint error for flow (Spike-FlowNet trains on a photometric loss
    without labels; with ground truth at hand we regress the flow itself, our choice)."""
    return endpoint_error(out, y).mean() if is_flow(y) else F.cross_entropy(out, y)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000,
             device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy of ``model`` on (x, y) with class labels, in [0, 1] (:func:`score` of labels)."""
    if is_flow(y):
        raise ValueError("accuracy needs class labels; flow targets are scored by score() (average endpoint error)")
    return score(model, x, y, batch_size=batch_size, device=device)


@contextlib.contextmanager
def _deterministic(device: torch.device):
    prev = torch.are_deterministic_algorithms_enabled()
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    # CUDA has no deterministic kernel for a few backward passes (adaptive average pooling among them):
    # there, warn instead of failing, and runs agree to float rounding rather than bit for bit.
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev)


@dataclass
class TrainResult:
    model: nn.Module
    metadata: dict


def train(model_name: str, dataset: str | ds_mod.Dataset, epochs: int | None = None, seed: int = 0,
          device: str = "cpu", batch_size: int | None = None, lr: float | None = None,
          data_dir=None, limit: int | None = None, progress: bool | None = None,
          time_budget: float | None = None, test_limit: int | None = None,
          init: str | os.PathLike | None = None) -> TrainResult:
    """Train a zoo model on a dataset with its recipe; returns the model (on CPU) and its metadata.

    ``limit`` trains on the first ``limit`` training examples only (for quick checks). ``progress=False``
    silences the progress report on stderr (:mod:`cimsim.progress`: a bar on a terminal, lines otherwise).
    ``time_budget`` (seconds): after the first epoch, train only as many epochs as fit in it at that epoch's pace
    (at least one; the cosine decay then ends at the last of them): for fixed-length runs on a shared machine.
    ``test_limit`` scores each epoch on the first ``test_limit`` test examples only (quick checks).
    ``init``: a checkpoint of the same model and dataset to continue from (its weights; the optimizer and the
    learning-rate schedule start afresh over ``epochs``): training longer than one sitting allows, in parts.
    """
    data = dataset if isinstance(dataset, ds_mod.Dataset) else ds_mod.load(dataset, data_dir=data_dir)
    name = zoo.canonical_name(model_name)
    recipe = recipe_for(name, data.name, epochs=epochs, batch_size=batch_size, lr=lr)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA GPU: use --device cpu")

    x_train, y_train = data.x_train, data.y_train
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"limit must be a positive number of examples, got {limit}")
        x_train, y_train = x_train[:limit], y_train[:limit]

    flow_net = name == "snn_flownet"
    if name in snn_zoo.EVENT_MODELS and flow_net != (data.task == "flow"):   # build_for sees shapes, not targets
        raise ConfigError(f"{name} {'regresses optical flow' if flow_net else 'classifies'}, and {data.name} "
                          f"{'holds class labels' if flow_net else 'holds flow targets'}: use --model "
                          f"{'snn_dvsnet' if flow_net else 'snn_flownet'}")
    torch.manual_seed(seed)
    model = zoo.build_for(name, data.input_shape, data.num_classes).to(dev)
    init_meta = None
    if init is not None:
        start_model, init_meta = load_checkpoint(init)
        if (init_meta["model"], init_meta["dataset"]) != (name, data.name) or \
                tuple(init_meta["input_shape"]) != tuple(data.input_shape) or \
                int(init_meta["num_classes"]) != data.num_classes:
            raise ConfigError(f"--init {init} holds {init_meta['model']} on {init_meta['dataset']}, not {name} on "
                              f"{data.name}: continue from a checkpoint of the same model and dataset")
        model.load_state_dict(start_model.state_dict())
    gen = torch.Generator(device="cpu").manual_seed(seed)
    decay, no_decay = [], []
    for pname, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on biases and BatchNorm
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if recipe.optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=recipe.lr)
    else:
        opt = torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.momentum > 0)
    steps_per_epoch = math.ceil(len(y_train) / recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    warm = int(recipe.warmup_epochs * steps_per_epoch)

    def lr_at(step: int) -> float:
        if step < warm:
            return recipe.lr * (step + 1) / warm
        t = (step - warm) / max(total - warm, 1)
        return 0.5 * recipe.lr * (1 + math.cos(math.pi * t))

    # the whole training split on the device once; per step nothing is read back to the host (the loss and the
    # score add up on the device and are read once per epoch), and the epoch's augmentation draws are made on the
    # CPU generator in the same order as batch by batch and copied once: a CUDA run differs only in the device
    x_train_dev, y_train_dev = x_train.to(dev), y_train.to(dev)
    flow = is_flow(y_train[:1])
    images = x_train.dim() == 4 and (recipe.crop_pad > 0 or recipe.flip)
    sizes = [min(recipe.batch_size, len(y_train) - s) for s in range(0, len(y_train), recipe.batch_size)]
    history = []
    started = time.perf_counter()
    step = 0
    epochs, stopped_at = recipe.epochs, None
    with _deterministic(dev):
        bar = progress_bar(desc=f"train {name} on {data.name}", total=total, unit="steps", enabled=progress)
        epoch = 0
        while epoch < epochs:
            model.train()
            loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
            correct = torch.zeros((), dtype=torch.float64, device=dev)
            order = torch.randperm(len(y_train), generator=gen).to(dev)
            aug = augment_mod.epoch_draws(sizes, recipe, gen, dev) if images else {}
            for start in range(0, len(y_train), recipe.batch_size):
                idx = order[start:start + recipe.batch_size]
                xb = x_train_dev[idx]
                if images:
                    xb = augment_mod.apply(xb, recipe, {k: v[start:start + len(idx)] for k, v in aug.items()})
                yb = y_train_dev[idx]
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                out = model(xb)
                loss = _loss(out, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                loss_sum += loss.detach() * len(idx)
                correct += batch_score_sum(out.detach(), yb)
                bar.update(1)
                if time_budget is not None and time.perf_counter() - started > time_budget:
                    stopped_at, epochs = step, epoch + 1      # out of time within an epoch: stop here
                    break
            seen = min(len(y_train), (step - epoch * steps_per_epoch) * recipe.batch_size)
            loss_mean, correct = float(loss_sum) / seen, float(correct)
            test = score(model, data.x_test[:test_limit], data.y_test[:test_limit], batch_size=100 if flow else 1000,
                         device=dev)
            history.append({"epoch": epoch + 1, "loss": loss_mean,
                            **({"train_aee": correct / seen, "test_aee": test} if flow else
                               {"train_accuracy": correct / seen, "test_accuracy": test})})
            bar.set_postfix_str(f"epoch {epoch + 1}/{epochs}: loss {loss_mean:.3f}, "
                                + (f"test AEE {test:.3f} px" if flow else f"test {100 * test:.2f} %"))
            epoch += 1
            if time_budget is not None and epoch == 1 and epochs > 1:
                # the first epoch's wall time (with its test) sets how many fit: the cosine decay is stretched over
                # those from the second epoch on (the first used the requested length's rates)
                per = time.perf_counter() - started
                fit = max(1, min(epochs, int(time_budget // max(per, 1e-9))))
                if fit < epochs:
                    epochs, total = fit, fit * steps_per_epoch
                    bar.total = total
        bar.close()
    elapsed = time.perf_counter() - started
    model = model.cpu().eval()
    meta = {
        "model": name,
        "dataset": data.name,
        "epochs": epochs,
        "seed": seed,
        # a flow network has no accuracy: its metric is the average endpoint error (px), lower is better
        "test_accuracy": None if flow else history[-1]["test_accuracy"],
        "train_accuracy": None if flow else history[-1]["train_accuracy"],
        **({"metric": "aee", "test_aee": history[-1]["test_aee"], "train_aee": history[-1]["train_aee"]}
           if flow else {}),
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "train_examples": len(y_train),
        "test_examples": len(data.y_test[:test_limit]),
        "recipe": asdict(replace(recipe, epochs=epochs)),
        **({"init_checkpoint": Path(init).name, "init_command": init_meta.get("command"),
            "init_test_accuracy": init_meta.get("test_accuracy"),
            "epochs_in_all": int(init_meta.get("epochs_in_all", init_meta["epochs"])) + epochs}
           if init_meta is not None else {}),
        **({"time_budget_s": time_budget, "epochs_requested": recipe.epochs, "stopped_at_step": stopped_at}
           if time_budget is not None else {}),
        "history": history,
        "torch_version": torch.__version__,
        "cimsim_version": __version__,
        "device": str(dev) if dev.type == "cpu" else f"{dev} ({torch.cuda.get_device_name(dev)})",
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "train_seconds": round(elapsed, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": (f"cimsim train --model {name} --dataset {data.name} --epochs {epochs} --seed {seed}"
                    + (f" --device {dev.type}" if dev.type != "cpu" else "")
                    + "".join(f" {k} {v}" for k, v in (("--batch-size", batch_size), ("--lr", lr), ("--limit", limit),
                                                       ("--test-limit", test_limit)) if v is not None)
                    + (f" --init {Path(init).name}" if init is not None else "")),
    }
    return TrainResult(model, meta)


# --------------------------------------------------------------------------------------------------
# Checkpoints

def checkpoint_name(model: str, dataset: str) -> str:
    return f"{zoo.canonical_name(model)}-{ds_mod.canonical_name(dataset)}.pt"


def require_finite(state: dict, path) -> None:
    """Refuse to save weights holding NaN or infinity (a diverged run): nothing is written, so a good checkpoint
    at ``path`` is never replaced by a broken one."""
    bad = {k: int((~torch.isfinite(v)).sum()) for k, v in state.items()
           if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())}
    if bad:
        first = next(iter(bad))
        raise CheckpointError(f"training diverged: {sum(bad.values())} weights are NaN or infinite ({first} first); "
                              f"{path} was not written: lower the learning rate (--lr)")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, metadata: dict) -> Path:
    """Write the weights and metadata to ``path`` (and the metadata to ``path`` with .json), atomically; weights
    that are not all finite are refused (:func:`require_finite`)."""
    path = Path(path)
    require_finite(model.state_dict(), path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "metadata": json.dumps(metadata),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    _atomic_write(path, lambda f: torch.save(payload, f))
    _atomic_write(path.with_suffix(".json"), lambda f: f.write(json.dumps(metadata, indent=2).encode() + b"\n"))
    return path


def _atomic_write(path: Path, write) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


REQUIRED_METADATA = ("model", "dataset", "input_shape", "num_classes", "test_accuracy")


def check_metadata(meta, required=REQUIRED_METADATA) -> dict:
    """A checkpoint's metadata with the ``required`` fields, each field present of the right kind (ValueError
    otherwise)."""
    if not isinstance(meta, dict):
        raise ValueError(f"its metadata is a {type(meta).__name__}, not an object")
    missing = [k for k in required if k not in meta]
    if missing:
        raise ValueError(f"its metadata lacks {', '.join(missing)}")
    if not isinstance(meta["model"], str) or not isinstance(meta.get("dataset", ""), str):
        raise ValueError("its metadata's model and dataset are not names")
    shape = meta["input_shape"]
    if not isinstance(shape, list) or not 1 <= len(shape) <= 4 or \
            not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 4096 for d in shape):
        raise ValueError(f"its metadata's input_shape {str(shape)[:40]} is not a list of 1-4 sizes")
    n = meta["num_classes"]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100_000:
        raise ValueError(f"its metadata's num_classes {str(n)[:20]} is not a class count")
    acc = meta.get("test_accuracy", 0.0)
    if acc is None and isinstance(meta.get("test_aee"), (int, float)):   # a flow network: scored by AEE
        return meta
    if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0 <= acc <= 1:
        raise ValueError(f"its metadata's test_accuracy {str(acc)[:20]} is not a fraction in [0, 1]")
    return meta


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Rebuild the zoo model stored at ``path``; returns (model in eval mode, metadata)."""
    path = Path(path)
    payload = read_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(not_a_trained_network(path, payload))
    try:
        meta = check_metadata(json.loads(payload["metadata"]))
        model = zoo.rebuild(meta)
        model.load_state_dict(payload["state_dict"])
        require_finite(model.state_dict(), path)
    except CheckpointError as exc:
        if "diverged" in str(exc):
            raise CheckpointError(f"checkpoint {path} holds NaN or infinite weights; "
                                  "re-create it with 'cimsim train'") from None
        raise
    except Exception as exc:  # any failure to use the contents is a corrupt or foreign file
        raise CheckpointError(f"checkpoint {path} is unreadable ({unreadable_detail(exc)}): it is damaged or not "
                              "written by 'cimsim train'; give a checkpoint that 'cimsim train' wrote, or re-create "
                              "this one with it") from None
    return tag_model(model.eval(), checkpoint_info(path, meta)), meta


class CheckpointShadowWarning(UserWarning):
    """A checkpoint in the user's directory hides the shipped checkpoint of the same name."""


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def checkpoint_info(path: str | os.PathLike, meta: dict) -> CheckpointInfo:
    """Where the checkpoint at ``path`` (with metadata ``meta``) sits: shipped, the user's, or another file, and
    which shipped checkpoint it shadows (a user checkpoint with a shipped one's name)."""
    path = Path(path)
    origin = ("shipped" if _same_folder(path.parent, SHIPPED_DIR) else
              "user" if _same_folder(path.parent, user_dir()) else "file")
    shadowed = SHIPPED_DIR / path.name
    shadows = str(shadowed) if origin == "user" and shadowed.is_file() else ""
    acc = meta.get("test_accuracy")
    return CheckpointInfo(path=str(path), model=str(meta.get("model", "")), dataset=str(meta.get("dataset", "")),
                          test_accuracy=None if acc is None else float(acc), origin=origin, shadows=shadows)


def recorded_accuracy(path: str | os.PathLike) -> float | None:
    """The test accuracy in the metadata (.json) beside a checkpoint, or None when it has none."""
    try:
        acc = json.loads(Path(path).with_suffix(".json").read_text()).get("test_accuracy")
        return None if acc is None else float(acc)
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def _pct(acc: float | None) -> str:
    return "accuracy not recorded" if acc is None else f"test accuracy {100 * acc:.2f} %"


def shadow_note(path: str | os.PathLike) -> str | None:
    """One line saying that the user checkpoint at ``path`` hides the shipped one of the same name (None when it
    does not): what each recorded, and how to use the shipped one."""
    path = Path(path)
    shipped = SHIPPED_DIR / path.name
    if not (_same_folder(path.parent, user_dir()) and shipped.is_file()):
        return None
    return (f"using your checkpoint {path} ({_pct(recorded_accuracy(path))}), which shadows the shipped "
            f"{shipped.name} ({_pct(recorded_accuracy(shipped))}); to use the shipped one pass --checkpoint "
            f"{shipped} or delete yours")


def saved_note(path: str | os.PathLike) -> str:
    """What saving a checkpoint at ``path`` changes for the runs that find checkpoints by name: it now shadows a
    shipped one, or is found by name, or is off the search path (then it is used only with --checkpoint)."""
    path = Path(path)
    shipped = SHIPPED_DIR / path.name
    if _same_folder(path.parent, user_dir()):
        if shipped.is_file():
            return (f"it now shadows the shipped {shipped.name} ({_pct(recorded_accuracy(shipped))}): runs that find "
                    f"the checkpoint by model and dataset use yours ({_pct(recorded_accuracy(path))}); delete "
                    f"{path} and {path.with_suffix('.json').name} to use the shipped one again")
        return "runs that find the checkpoint by model and dataset now use it"
    return (f"it is outside the checkpoint search path ({user_dir()}, then the shipped checkpoints): pass "
            f"--checkpoint {path} to use it")


def warn_if_shadowing(path: str | os.PathLike) -> None:
    """Announce (:class:`CheckpointShadowWarning`) a user checkpoint found by name that hides a shipped one."""
    note = shadow_note(path)
    if note:
        warn_user(note, CheckpointShadowWarning)   # at the user's line, however deep the search was called


# The zoo models that take a dataset's examples, by the dataset's name (zoo.build_for's rules, written out so that a hint
# needs no data loaded): Iris's 4 features and the 8x8 digits take only the MLP (the convolutional models take 28 or 32
# pixels); event frames take the event networks, DVSNet the labelled sets, the flow network the flow sets. Any other
# set (28x28 or 32x32 images) takes every model but the event networks.
ONLY_MODELS = {"iris": ("mlp",), "digits": ("mlp",), "nmnist-fashion": ("snn_dvsnet",), "gesture-synth": ("snn_dvsnet",),
               "dvs-gesture": ("snn_dvsnet",), "flow-synth": ("snn_flownet",), "mvsec": ("snn_flownet",)}
DATA_KIND = {"iris": "tabular data, 4 features", "digits": "8x8 images", "flow-synth": "event frames with flow targets",
             "mvsec": "event frames with flow targets"}


def models_for(dataset: str) -> tuple[str, ...]:
    """The zoo models that take ``dataset``'s examples (:data:`ONLY_MODELS`), lenet5 first where it is one."""
    key = ds_mod.canonical_name(dataset)
    if key in ONLY_MODELS:
        return ONLY_MODELS[key]
    rest = [m for m in zoo.model_names() if m not in snn_zoo.EVENT_MODELS]
    return tuple(sorted(rest, key=lambda m: m != "lenet5"))


def data_kind(dataset: str) -> str:
    key = ds_mod.canonical_name(dataset)
    return DATA_KIND.get(key) or ("event frames" if key in ONLY_MODELS else "images")


def find_checkpoint(model: str, dataset: str) -> Path:
    """The checkpoint for (model, dataset): the user's directory first, then the shipped ones. A user checkpoint
    that shadows a shipped one is announced with a :class:`CheckpointShadowWarning`. Without one, the error names a
    command that makes one: for a model that does not take the dataset's examples, with a model that does."""
    name = checkpoint_name(model, dataset)
    for d in (user_dir(), SHIPPED_DIR):
        if (d / name).is_file():
            warn_if_shadowing(d / name)
            return d / name
    shipped = sorted(p.stem for p in SHIPPED_DIR.glob("*.pt"))
    model, dataset = zoo.canonical_name(model), ds_mod.canonical_name(dataset)
    fits = models_for(dataset)
    if model in fits:
        fix = f"make one with 'cimsim train --model {model} --dataset {dataset}'"
    else:
        alt = fits[0]
        have = any((d / checkpoint_name(alt, dataset)).is_file() for d in (user_dir(), SHIPPED_DIR))
        fix = (f"{model} does not take the {data_kind(dataset)} of {dataset} ({', '.join(fits)} "
               f"{'does' if len(fits) == 1 else 'do'}): "
               + (f"pass --model {alt}" if have else
                  f"make a checkpoint with 'cimsim train --model {alt} --dataset {dataset}', then pass --model {alt}"))
    raise CheckpointError(
        f"no trained checkpoint for {model} on {dataset} (shipped: {', '.join(shipped) or 'none'}); {fix}")


def shipped_checkpoints() -> list[dict]:
    """Metadata of every checkpoint shipped with cimsim."""
    out = []
    for p in sorted(SHIPPED_DIR.glob("*.json")):
        meta = json.loads(p.read_text())
        meta["path"] = str(p.with_suffix(".pt"))
        out.append(meta)
    return out
