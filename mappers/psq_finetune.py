"""PSQ fine-tuning: a trained network prepared with partial-sum quantization (:mod:`cimsim.mappers.qat`) and
trained with its crossbar readout in the loop.

:func:`finetune` runs Adam with a cosine decay (:class:`FinetuneRecipe`) from a network prepared afresh by
:func:`cimsim.mappers.qat.prepare` or from an earlier PSQ network (``init``). Options: knowledge distillation
from the float network (:func:`distillation_loss`; Hinton et al., arXiv 1503.02531,
docs/references.md#hinton-2015), noise injection, frozen leading parts whose outputs are computed once
(:func:`split_frozen`: a cheaper step on a CPU), learned input steps (LSQ,
:func:`cimsim.mappers.qat.learn_input_steps`), the dataset's crops and flips
(:func:`cimsim.augment.augment`), label smoothing, weight averaging (:class:`RunningMean`) and the progressive
schedule.

**Progressive schedule** (``schedule="progressive"``): the readout enters layer by layer from the input, as the
ADC-less SNN paper's "progressively increasing the hardware awareness" (arXiv 2211.02167) does for its sense amps
(:mod:`cimsim.mappers.snn_qat`, the same stages): with ``L`` mapped layers in the order of their first call, stage
``k = 1 .. L - 1`` reads the first ``k`` layers through the readout while the later ones sum their partial sums
exactly (``psq_exact``: the 4-bit network's integer product), at the first learning rate, for
``ceil(stage_share * final_steps / (L - 1))`` steps each (:func:`progressive_stages`); then the ``epochs`` of the
``direct`` schedule, every layer read, with its learning-rate decay, averaging and held-out scoring. Both schedules
spend the same steps on the whole readout; ``progressive`` adds the stages before them.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cimsim.errors import ConfigError
from cimsim.augment import augment
from cimsim.mappers.qat import (PSQConfig, is_psq, learn_input_steps, learn_weight_steps, mapped_layers_in_order,
                                pin_host_scalars, prepare, set_noise)


SCHEDULES = ("direct", "progressive")


def progressive_stages(final_steps: int, layers: int, share: float) -> list[tuple[int, int]]:
    """(layers read, steps) of each phase of a progressive fine-tune, ending with (``layers``, ``final_steps``):
    first one stage per layer but the last, ``ceil(share * final_steps / (layers - 1))`` steps each with the first
    ``k`` layers from the input read (k = 1 .. layers - 1); one phase when there are no stages to make."""
    if layers < 2 or share == 0:
        return [(layers, final_steps)]
    per = math.ceil(share * final_steps / (layers - 1))
    return [(k, per) for k in range(1, layers)] + [(layers, final_steps)]


@dataclass(frozen=True)
class FinetuneRecipe:
    """Adam with a cosine decay, no augmentation (our choice: a short fine-tune from a trained network).

    Knowledge distillation (``distill`` > 0; Hinton et al., arXiv 1503.02531): the loss is
    ``(1 - distill) * CE(z_s, y) + distill * T**2 * KL(softmax(z_t / T) || softmax(z_s / T))`` with ``z_t`` the
    logits of the floating-point network the fine-tune starts from (the teacher) and ``T = temperature``."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3                 # weights and biases
    alpha_lr: float = 1e-2           # column scale factors (LSQ step sizes learn faster than weights)
    noise_frac: float = 0.0
    calibration_examples: int = 512
    distill: float = 0.0             # weight of the distillation term (0: plain cross-entropy)
    temperature: float = 4.0         # softening of both distributions (Hinton et al. use 1-20; our choice 4)
    freeze: int = 0                  # first top-level children kept as they are, their outputs computed once
    label_smoothing: float = 0.0     # of the cross-entropy term (Szegedy et al., CVPR 2016, use 0.1; 0: off)
    crop_pad: int = 0                # random crops after zero padding by this many pixels (0: off)
    flip: bool = False               # random horizontal flips (cimsim.workloads.train.AUGMENT has both per dataset)
    learn_input_steps: bool = False  # LSQ input steps (Esser et al., ICLR 2020) instead of the calibrated ones
    learn_weight_steps: bool = False  # LSQ weight steps per output channel (same paper) instead of max-scaling
    validation: int = 0              # last training examples held out: the epoch best on them is kept (0: off)
    # SWA (Izmailov et al., arXiv 1803.05407; in low precision SWALP, Yang et al., arXiv 1904.11943): the last
    # `average` epochs at a constant rate, the parameters averaged after every step (0: off); the cosine of the
    # epochs before them decays to that rate. 0.2 of the first rate: SWA's VGG-16 schedule (0.05 -> 0.01).
    average: int = 0
    average_lr_scale: float = 0.2
    # the readout from the first step (direct) or layer by layer first (progressive: module docstring); the stages'
    # steps as a share of the final phase's: 0.5, our choice, as for the spiking networks (cimsim.mappers.snn_qat)
    schedule: str = "direct"
    stage_share: float = 0.5

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"FinetuneRecipe.schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if isinstance(self.stage_share, bool) or not (isinstance(self.stage_share, (int, float))
                                                      and math.isfinite(self.stage_share) and self.stage_share >= 0):
            raise ConfigError(f"FinetuneRecipe.stage_share must be a finite number >= 0, got {self.stage_share!r}")
        if self.schedule == "progressive" and self.freeze:
            raise ConfigError("FinetuneRecipe: the progressive schedule changes the frozen parts' readout between "
                              "stages; use freeze 0 with it")
        for name in ("lr", "alpha_lr", "temperature"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"FinetuneRecipe.{name} must be a finite number > 0, got {v!r}")
        for name in ("noise_frac", "distill", "label_smoothing"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and 0 <= v <= 1):
                raise ConfigError(f"FinetuneRecipe.{name} must lie in [0, 1], got {v!r}")
        for name in ("epochs", "batch_size", "calibration_examples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"FinetuneRecipe.{name} must be a positive integer, got {v!r}")
        if not 0 <= self.distill <= 1:
            raise ConfigError(f"FinetuneRecipe.distill must lie in [0, 1], got {self.distill!r}")
        if not self.temperature > 0:
            raise ConfigError(f"FinetuneRecipe.temperature must be positive, got {self.temperature!r}")
        if isinstance(self.average_lr_scale, bool) or not (
                isinstance(self.average_lr_scale, (int, float)) and 0 < self.average_lr_scale <= 1):
            raise ConfigError(f"FinetuneRecipe.average_lr_scale must lie in (0, 1], got {self.average_lr_scale!r}")
        for name in ("freeze", "crop_pad", "validation", "average"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"FinetuneRecipe.{name} must be a non-negative integer, got {v!r}")
        if self.freeze and (self.crop_pad or self.flip):
            raise ConfigError("FinetuneRecipe: augmentation (crop_pad, flip) changes the frozen parts' inputs at "
                              "every step; use freeze 0 with augmentation")
        if self.average >= self.epochs:
            raise ConfigError(f"FinetuneRecipe: average = {self.average} epochs leaves none of the {self.epochs} to "
                              f"train before averaging; average fewer than the epochs")
        if not (self.lr > 0 and self.alpha_lr > 0):
            raise ConfigError(f"FinetuneRecipe learning rates must be positive, got lr={self.lr!r}, "
                              f"alpha_lr={self.alpha_lr!r}")


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, weight: float,
                      temperature: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """``(1 - weight) * CE(student, y) + weight * T**2 * KL(p_teacher(T) || p_student(T))`` (Hinton et al.);
    the cross-entropy with ``label_smoothing`` (the target puts that mass uniformly on all classes)."""
    ce = F.cross_entropy(student, y, label_smoothing=label_smoothing)
    if weight == 0:
        return ce
    t = temperature
    kl = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), log_target=True,
                  reduction="batchmean")
    return (1 - weight) * ce + weight * t * t * kl


class RunningMean:
    """The running mean of a list of parameters, updated after an optimizer step (SWA's average of the iterates):
    ``mean += (p - mean) / n`` at the n-th update. :meth:`swap` exchanges the mean with the parameters' values (twice:
    back as they were), so the averaged network can be evaluated between steps without disturbing the optimizer."""

    def __init__(self, params: list[torch.Tensor]):
        self.params = list(params)
        self.mean: list[torch.Tensor] | None = None
        self.count = 0

    @torch.no_grad()
    def update(self) -> None:
        self.count += 1
        if self.mean is None:
            self.mean = [p.detach().clone() for p in self.params]
            return
        for m, p in zip(self.mean, self.params):
            m.lerp_(p.detach(), 1.0 / self.count)

    @torch.no_grad()
    def swap(self) -> None:
        for m, p in zip(self.mean, self.params):
            held = p.detach().clone()
            p.copy_(m)
            m.copy_(held)


def learning_rate_factor(step: int, steps: int, plateau_steps: int, floor: float) -> float:
    """The factor of the learning rates at ``step`` of ``steps``: a cosine from 1 to 0 over all steps, or (with
    ``plateau_steps`` > 0, weight averaging) a cosine from 1 to ``floor`` over the steps before the last
    ``plateau_steps`` and ``floor`` on those."""
    if plateau_steps <= 0:
        return 0.5 * (1 + math.cos(math.pi * step / max(steps, 1)))
    decay = max(steps - plateau_steps, 1)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, decay) / decay))


def split_frozen(model: nn.Module, n: int, x: torch.Tensor) -> tuple[nn.Module, nn.Module]:
    """(frozen prefix, trained rest) of ``model`` as two ``nn.Sequential`` of its first ``n`` top-level children
    and the others (sharing their modules); refused unless the model is those children applied in order."""
    kids = list(model.children())
    if not 0 < n < len(kids):
        raise ConfigError(f"freeze = {n}: the network has {len(kids)} top-level parts; freeze 1 to {len(kids) - 1}")
    head, tail = nn.Sequential(*kids[:n]), nn.Sequential(*kids[n:])
    with torch.no_grad():
        if not torch.equal(model.eval()(x), tail(head(x))):
            raise ConfigError(f"freeze: {type(model).__name__} is not its top-level parts applied in order; "
                              "fine-tune it whole (freeze 0)")
    return head, tail


@torch.no_grad()
def forward_all(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """``model`` (in eval mode, no gradients) on all of ``x`` in batches: the teacher's logits and the frozen
    parts' outputs on the training set, computed once since neither trains."""
    model = model.eval()
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / max(len(y), 1)


def exact_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """:func:`evaluate_accuracy` of the PSQ network with every layer's partial sums summed exactly (``psq_exact``: the
    quantized weights and inputs without the readout)."""
    layers = [m for m in model.modules() if is_psq(m)]
    for m in layers:
        m.psq_exact = True
    try:
        return evaluate_accuracy(model, x, y)
    finally:
        for m in layers:
            m.psq_exact = False


def finetune(model: nn.Module, cfg: PSQConfig, data, recipe: FinetuneRecipe = FinetuneRecipe(), seed: int = 0,
             limit: int | None = None, test_limit: int | None = None, progress: bool | None = None,
             device: str = "cpu", init: nn.Module | None = None):
    """Fine-tune ``model`` with PSQ on ``data`` (a :class:`cimsim.workloads.datasets.Dataset`).

    Returns (PSQ model on the CPU, metadata with per-epoch history and the final test accuracy of the PSQ
    model). ``limit`` / ``test_limit`` use the first examples only (quick checks); ``device`` ("cpu" or
    "cuda") is where the training runs (calibration and the returned model stay on the CPU). ``progress=False``
    silences the progress report on stderr (:mod:`cimsim.progress`). ``init``: a PSQ network of the same
    configuration to continue from (its weights, input ranges and column scales) instead of preparing ``model``
    afresh; ``model`` (the float network) is then only the teacher of the distillation term.
    """
    from cimsim.progress import progress as progress_bar

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = data.x_train, data.y_train
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    x_val = y_val = None
    if recipe.validation:   # model selection on held-out training examples, never on the test set
        if recipe.validation >= len(y_train):
            raise ConfigError(f"validation: {recipe.validation} held-out examples leave none of the "
                              f"{len(y_train)} training examples to train on; hold out fewer")
        n = len(y_train) - recipe.validation
        x_train, y_train, x_val, y_val = x_train[:n], y_train[:n], x_train[n:], y_train[n:]
    x_test, y_test = data.x_test, data.y_test
    if test_limit is not None:
        x_test, y_test = x_test[:test_limit], y_test[:test_limit]
    cal = [x_train[i:i + 256] for i in range(0, min(recipe.calibration_examples, len(x_train)), 256)]
    started = time.perf_counter()
    if init is None:
        work = prepare(model, cfg, cal).to(device)
    else:
        got = {m.psq_config for m in init.modules() if is_psq(m)}
        if got != {cfg}:
            raise ConfigError(f"the PSQ network to continue from was fine-tuned for "
                              f"{', '.join(sorted(c.tag for c in got)) or 'nothing'}, not {cfg.tag}")
        work = copy.deepcopy(init).to(device)
        work.psq_folded = getattr(init, "psq_folded", [])
    augmenting = recipe.crop_pad > 0 or recipe.flip
    teacher = copy.deepcopy(model).to(device).eval() if recipe.distill > 0 and augmenting else None
    # the teacher's logits: on the fly for augmented batches, else once on the training set
    soft = forward_all(model, x_train).to(device) if recipe.distill > 0 and not augmenting else None
    x_train, y_train, x_test, y_test = (t.to(device) for t in (x_train, y_train, x_test, y_test))
    if x_val is not None:
        x_val, y_val = x_val.to(device), y_val.to(device)
    best = None   # (validation accuracy, epoch, state) of the best epoch so far
    start_acc = evaluate_accuracy(work, x_test[:1000], y_test[:1000])   # a quick look before training
    exact_acc = exact_accuracy(work, x_test[:1000], y_test[:1000])      # what the readout costs before training
    trained, inputs = work, x_train
    if recipe.freeze:   # the frozen parts' outputs on the training set, once (they do not change)
        frozen, trained = split_frozen(work, recipe.freeze, x_train[:8])
        inputs = forward_all(frozen, x_train)
    set_noise(trained, recipe.noise_frac)
    pin_host_scalars(work, True)      # the buffers stay as they are until training ends
    learn_input_steps(trained, recipe.learn_input_steps)
    learn_weight_steps(trained, recipe.learn_weight_steps)
    aug_gen = torch.Generator(device=device).manual_seed(seed)   # on the device: no copy per step
    alphas = [p for n, p in trained.named_parameters() if n.endswith("psq_alpha")]
    # with the input steps and the learned thresholds (est., our choice: the weights' rate, lr; Adam moves a parameter
    # by about lr a step, 1e-3 is 0.2 % of t = 0.5, about the relative step alpha_lr gives scales of a few units)
    others = [p for n, p in trained.named_parameters() if not n.endswith("psq_alpha")]
    thresholds = [p for n, p in trained.named_parameters() if n.endswith("psq_threshold")]
    t_top = 1 - 2.0 ** -cfg.threshold_bits     # the top of the reference DAC's grid: thresholds stay in [0, 1)
    opt = torch.optim.Adam([{"params": others, "lr": recipe.lr}, {"params": alphas, "lr": recipe.alpha_lr}])
    per_epoch = math.ceil(len(y_train) / recipe.batch_size)
    steps = recipe.epochs * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: learning_rate_factor(
        s, steps, recipe.average * per_epoch, recipe.average_lr_scale))
    mean = RunningMean(trained.parameters()) if recipe.average else None
    first_averaged = recipe.epochs - recipe.average    # the first epoch (from 0) whose steps are averaged
    layers = [m for m in work.modules() if is_psq(m)]
    if recipe.schedule == "progressive":   # from the input: the order of their first call
        named = dict(work.named_modules())
        layers = [named[n] for n in mapped_layers_in_order(work, x_train[:1])]
    stages = (progressive_stages(steps, len(layers), recipe.stage_share) if recipe.schedule == "progressive"
              else [(len(layers), steps)])

    def train_step(idx: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the examples ``idx``; the loss (detached, on the device)."""
        xb = augment(inputs[idx], recipe, aug_gen) if augmenting else inputs[idx]
        out = trained(xb)
        if teacher is not None:
            with torch.no_grad():
                target = teacher(xb)
        else:
            target = None if soft is None else soft[idx]
        loss = distillation_loss(out, target, y_train[idx], recipe.distill if target is not None else 0.0,
                                 recipe.temperature, recipe.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for a in alphas:
                a.clamp_(min=1e-3)
            for t in thresholds:            # projected back into [0, 1) (as alpha is kept positive)
                t.clamp_(0.0, t_top)
        return loss.detach()

    history, stage_history = [], []
    bar = progress_bar(desc=f"PSQ fine-tune ({recipe.schedule})", total=sum(n for _, n in stages), unit="steps",
                       enabled=progress)
    for k, n in stages[:-1]:    # the progressive stages: the first k layers read, at the first learning rate
        for i, m in enumerate(layers):
            m.psq_exact = i >= k
        trained.train()
        loss_sum = seen = 0
        for i in range(n):
            if i % per_epoch == 0:
                order = torch.randperm(len(y_train), generator=gen).to(device)
            idx = order[(i % per_epoch) * recipe.batch_size:(i % per_epoch + 1) * recipe.batch_size]
            loss_sum += train_step(idx) * len(idx)
            seen += len(idx)
            bar.update(1)
        stage_history.append({"stage": len(stage_history) + 1, "layers_read": k, "steps": n,
                              "loss": float(loss_sum) / seen})
        bar.set_postfix_str(f"stage {len(stage_history)}/{len(stages) - 1}: loss {float(loss_sum) / seen:.3f}")
    for m in layers:
        m.psq_exact = False
    for epoch in range(recipe.epochs):
        averaged = mean is not None and epoch >= first_averaged   # this epoch's steps enter the average
        trained.train()
        order = torch.randperm(len(y_train), generator=gen).to(device)
        loss_sum = seen = 0
        for i in range(0, len(y_train), recipe.batch_size):
            idx = order[i:i + recipe.batch_size]
            loss = train_step(idx)
            sched.step()
            if averaged:
                mean.update()
            loss_sum += loss * len(idx)     # a tensor: read once per epoch, not per step
            seen += len(idx)
            bar.update(1)
        val = None
        if averaged:      # from here on, the epoch's network is the average of the steps so far
            mean.swap()
        if x_val is not None:
            val = evaluate_accuracy(work, x_val, y_val)
            if best is None or val > best[0]:    # the earliest epoch wins a tie
                best = (val, epoch + 1, copy.deepcopy(work.state_dict()))
        last = epoch == recipe.epochs - 1
        if averaged and not last:
            mean.swap()   # the optimizer goes on from the last step's parameters
        if last and best is not None and best[1] != epoch + 1:
            work.load_state_dict(best[2])
        # the PSQ forward is costly on a CPU: the full test set only after the last epoch (of the kept state)
        acc = evaluate_accuracy(work, x_test, y_test) if last else None
        loss_sum = float(loss_sum)
        history.append({"epoch": epoch + 1, "loss": loss_sum / seen, "test_accuracy": acc,
                        **({"validation_accuracy": val} if val is not None else {}),
                        **({"averaged_steps": mean.count} if averaged else {})})
        bar.set_postfix_str(f"epoch {epoch + 1}/{recipe.epochs}: loss {loss_sum / seen:.3f}"
                            + ("" if val is None else f", held-out {100 * val:.2f}%"))
    bar.close()
    set_noise(work, 0.0)
    pin_host_scalars(work, False)
    learn_input_steps(work, False)    # the learned steps become the input scales the mapper programs
    learn_weight_steps(work, False)   # and the clipped weights whose max-scaling gives the learned weight steps
    work = work.to("cpu").eval()
    meta = {"psq": asdict(cfg), "recipe": asdict(recipe), "seed": seed, "epochs": recipe.epochs,
            "train_examples": len(y_train), "test_examples": len(y_test),
            "test_accuracy_before_first_1000": start_acc, "test_accuracy_exact_first_1000": exact_acc,
            "test_accuracy": history[-1]["test_accuracy"] if history else start_acc,
            **({"validation_examples": recipe.validation, "validation_accuracy": best[0], "kept_epoch": best[1]}
               if best is not None else {}),
            # the steps averaged into the network returned (0: a kept epoch before the averaging began)
            **({"averaged_steps": history[(best[1] if best else recipe.epochs) - 1].get("averaged_steps", 0)}
               if mean is not None else {}),
            "history": history, **({"stages": stage_history} if stage_history else {}),
            "train_seconds": round(time.perf_counter() - started, 1),
            "cpu_threads": torch.get_num_threads(), "torch_version": torch.__version__, "device": device,
            "batchnorm_folded": work.psq_folded,
            "input_bits_per_layer": {n: m.psq_input_bits for n, m in work.named_modules() if is_psq(m)}}
    return work, meta
