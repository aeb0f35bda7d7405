"""Second-order training with K-FAC whose curvature blocks are inverted on crossbars.

RePAST (arXiv 2210.15255; docs/references.md#repast) accelerates K-FAC with crossbar inversions; so do we.

Method: K-FAC (Martens & Grosse, ICML 2015; convolutions: KFC, Grosse & Martens, ICML 2016), the algorithm RePAST
accelerates. Why K-FAC and not Newton or full natural gradient: its curvature blocks are the Kronecker factors
``A = E[a a^T]`` (layer inputs, bias folded in) and ``G = E[g g^T]`` (gradients at the layer outputs, per example),
of the layer's width and not of its parameter count, so they fit crossbar arrays; they are symmetric positive
definite once damped, exactly what the inversion circuit settles on. A layer's update is
``V = (G + d_G I)^-1 grad_W (A + d_A I)^-1``, with factored Tikhonov damping ``d_A = pi sqrt(lambda)``,
``d_G = sqrt(lambda) / pi``, ``pi = sqrt((tr A / dim A) / (tr G / dim G))`` (Martens & Grosse 2015, sec. 6.3), the
factors as running averages (decay 0.95), their inverses refreshed at steps 0, 1, 2, 4, 8, 16 and then every
``inv_every`` steps, and the update scaled
to a KL step of at most ``kl_clip`` (Ba, Grosse & Martens, ICLR 2017); then SGD with momentum applies it.

Factors wider than the inversion array are split into diagonal blocks of the array size (block-diagonal K-FAC
factors, our choice; RePAST partitions its SOI matrices into blocks too); ``inversion="float"`` inverts the same
blocks in float64, so the two differ only by the crossbar's precision. ``inversion="crossbar"`` inverts each damped
block with :func:`cimsim.linalg.refine_solve` (8-bit INV circuit + VMM crossbars, 16 bits) on the identity.

Hardware cost of the second-order work per step (forward and backward passes are the same for every optimizer and
left out), two models side by side:

* crossbar: per refresh, programming each block into an INV array (write-and-verify) and its inverse into VMM
  crossbars (est. the same write cost), the refinement's settlings and VMMs, amortised over ``inv_every`` steps;
  per step, the two preconditioning products on the VMM crossbars (one input vector per gradient column / row,
  the measured cost of the VMM model). The blocks of a factor sit in arrays of their own and run in parallel, the
  layers one after another (est.).
* GPU (est., stated in :data:`GPU`): an NVIDIA V100 at 10 % of its 15.7 TFLOP/s FP32 peak on these small
  matrices, at least 5 us per kernel launch, three kernels per block inversion (Cholesky, triangular inverse,
  product) and one per product, drawing its 300 W board power throughout.

These are the run's own books on one unreplicated array set per block; :mod:`cimsim.workloads.kfac_cost` prices the
same step at the architecture level (replicated, pipelined arrays, any network size, the GPU on the same blocks and
on whole factors; ``cimsim linalg kfac-cost``).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cimsim.blas import one_thread
from cimsim.errors import ConfigError
from cimsim.linalg import Cost, InversionCircuit, VmmArray, high_precision_spec, refine_solve
from cimsim.workloads.kfac_cost import GpuSpec

INVERSIONS = ("float", "crossbar")


@dataclass(frozen=True)
class GpuModel:
    """A GPU executing the same inversions and products (all est. but the datasheet figures)."""

    # the datasheet figures and the launch latency are kfac_cost.GpuSpec's (one V100 for both models); the efficiency
    # is this loop's own: one <= 512-wide block after another, unbatched, where GpuSpec batches a factor's blocks
    peak_flops: float = GpuSpec.peak_flops
    efficiency: float = 0.10        # (est.) fraction of peak on <= 512-wide matrices (launch and sync bound)
    launch_s: float = GpuSpec.launch_s
    power_w: float = GpuSpec.power_w

    def cost(self, flops: float, kernels: int) -> Cost:
        t = max(flops / (self.peak_flops * self.efficiency), kernels * self.launch_s)
        return Cost(t, t * self.power_w, {"gpu": t * self.power_w})


GPU = GpuModel()
# RePAST's reported averages on large DNNs (arXiv 2210.15255, abstract): speed-up and energy saving
PAPER_RATIOS = {"gpu_speedup": 115.8, "gpu_energy": 41.9, "pipelayer_speedup": 11.4, "pipelayer_energy": 12.8}


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(i + size, n)) for i in range(0, n, size)]


class _Layer:
    """K-FAC state of one Linear or Conv2d layer."""

    def __init__(self, module: nn.Module):
        self.m = module
        self.conv = isinstance(module, nn.Conv2d)
        self.bias = module.bias is not None
        self.A = self.G = None
        self.A_inv = self.G_inv = None
        self.a = self.g = None

    def capture_input(self, x: torch.Tensor) -> None:
        m = self.m
        if self.conv:
            if m.dilation == (1, 1) and isinstance(m.padding, tuple):   # patches as a strided view (F.unfold's
                (kh, kw), (sh, sw), (ph, pw) = m.kernel_size, m.stride, m.padding   # im2col is slow on a busy CPU)
                p = F.pad(x, (pw, pw, ph, ph)).unfold(2, kh, sh).unfold(3, kw, sw)   # (B, C, H', W', kh, kw)
                a = p.permute(0, 2, 3, 1, 4, 5).reshape(-1, x.shape[1] * kh * kw)      # rows (b, h, w); cols (c, i, j)
            else:
                a = F.unfold(x, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)
                a = a.transpose(1, 2).reshape(-1, a.shape[1])
        else:
            a = x.reshape(-1, x.shape[-1])
        if self.bias:
            a = torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)
        self.a = a.detach().double()

    def capture_grad(self, g: torch.Tensor, batch: int) -> None:
        if self.conv:   # (B, C_out, H, W) -> (B L, C_out); summed over positions per example (KFC)
            g = g.permute(0, 2, 3, 1).reshape(-1, g.shape[1])
        else:           # (B, ..., out): a token's outputs are a position's, as a convolution's
            g = g.reshape(-1, g.shape[-1])
        self.g = (g.detach().double() * batch)

    def update_factors(self, decay: float, batch: int) -> None:
        A = self.a.T @ self.a / self.a.shape[0]
        G = self.g.T @ self.g / batch
        self.A = A if self.A is None else decay * self.A + (1 - decay) * A
        self.G = G if self.G is None else decay * self.G + (1 - decay) * G

    def grad_matrix(self) -> torch.Tensor:
        w = self.m.weight.grad.reshape(self.m.weight.shape[0], -1)
        return torch.cat([w, self.m.bias.grad[:, None]], dim=1) if self.bias else w

    def set_grad(self, v: torch.Tensor) -> None:
        m = self.m
        if self.bias:
            m.bias.grad.copy_(v[:, -1].to(m.bias.grad.dtype))
            v = v[:, :-1]
        m.weight.grad.copy_(v.reshape(m.weight.shape).to(m.weight.grad.dtype))


class KFAC:
    """K-FAC preconditioner over a model's Linear and Conv2d layers (module docstring)."""

    def __init__(self, model: nn.Module, inversion: str = "float", damping: float = 0.1, decay: float = 0.95,
                 inv_every: int = 25, kl_clip: float = 1e-3, circuit: InversionCircuit | None = None, seed: int = 0):
        if inversion not in INVERSIONS:
            raise ConfigError(f"unknown inversion {inversion!r}: choose one of {', '.join(INVERSIONS)}")
        self.inversion, self.damping, self.decay = inversion, damping, decay
        self.inv_every, self.kl_clip, self.seed = inv_every, kl_clip, seed
        self.circuit = InversionCircuit() if circuit is None else circuit
        self.layers = [_Layer(m) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        for m in model.modules():   # the backward hooks see the layer outputs: no activation may overwrite them
            if isinstance(m, nn.ReLU):
                m.inplace = False
        self.steps = 0
        self.refreshes = 0
        self.max_iterations = 0
        self.refine_failures = 0
        self.kappas: list[float] = []
        self.cost_xbar = {"inversion": Cost(0.0, 0.0, {}), "program": Cost(0.0, 0.0, {}),
                          "precondition": Cost(0.0, 0.0, {})}
        self.cost_gpu = {"inversion": Cost(0.0, 0.0, {}), "precondition": Cost(0.0, 0.0, {})}
        self._vmm_unit: dict[int, Cost] = {}
        self._batch = 1
        self._handles = []
        for layer in self.layers:
            self._handles.append(layer.m.register_forward_pre_hook(lambda mod, inp, L=layer: L.capture_input(inp[0])))
            self._handles.append(layer.m.register_full_backward_hook(
                lambda mod, gin, gout, L=layer: L.capture_grad(gout[0], self._batch)))

    def set_batch(self, batch: int) -> None:
        self._batch = batch

    # ------------------------------------------------------------------ inversion of the damped factors
    def _invert(self, F_: np.ndarray, d: float) -> np.ndarray:
        """Block-diagonal inverse of ``F_ + d I`` (blocks of the array size, each on its own arrays: the factor's
        time is its slowest block's, its energy the sum)."""
        n = F_.shape[0]
        out = np.zeros_like(F_)
        t_inv = t_prog = t_gpu = 0.0
        for i0, i1 in _blocks(n, self.circuit.size):
            B = F_[i0:i1, i0:i1] + d * np.eye(i1 - i0)
            k = i1 - i0
            g = GPU.cost(k ** 3, 3)
            t_gpu += g.time_s                      # the GPU runs the blocks one after another
            self._add("gpu", "inversion", g.scaled_energy_only())
            if self.inversion == "float":
                out[i0:i1, i0:i1] = np.linalg.inv(B)
                continue
            # Jacobi equilibration (digital, diagonal): the circuit holds S B S with unit diagonal, S = diag(B)^-1/2
            sc = 1.0 / np.sqrt(np.diag(B))
            Bs = B * sc[:, None] * sc[None, :]
            extra = 0.0
            while True:   # a block the 8-bit circuit cannot settle on or refine gets more damping (counted)
                try:
                    r = refine_solve(Bs + extra * np.eye(k), np.diag(sc), self.circuit, target_bits=16, max_iter=40,
                                     seed=self.seed + 7919 * self.refreshes + i0, reference=np.zeros((k, k)))
                except ConfigError:
                    r = None
                if r is not None and r.converged:
                    break
                self.refine_failures += 1
                extra = max(2 * extra, 0.01)
            self.max_iterations = max(self.max_iterations, r.iterations)
            self.kappas.append(float(np.linalg.cond(Bs + extra * np.eye(k))))
            out[i0:i1, i0:i1] = r.x * sc[:, None]
            self._add("xbar", "inversion", r.cost.scaled_energy_only())
            # the INV arrays are written once per refresh; the inverse block goes into VMM crossbars (same write cost)
            prog = r.program_cost.scaled(2.0)
            self._add("xbar", "program", prog.scaled_energy_only())
            t_inv, t_prog = max(t_inv, r.cost.time_s), max(t_prog, prog.time_s)
            if k not in self._vmm_unit:   # the measured cost of one preconditioning input vector on a k-row block
                probe = VmmArray(out[i0:i1, i0:i1], high_precision_spec(), seed=self.seed)
                _, c = probe(np.ones((k, 4)))
                self._vmm_unit[k] = c.scaled(0.25)
        self._add("gpu", "inversion", Cost(t_gpu, 0.0, {}))
        self._add("xbar", "inversion", Cost(t_inv, 0.0, {}))
        self._add("xbar", "program", Cost(t_prog, 0.0, {}))
        return out

    def _add(self, where: str, what: str, c: Cost) -> None:
        book = self.cost_xbar if where == "xbar" else self.cost_gpu
        book[what] = book[what] + c

    def refresh(self) -> None:
        with one_thread():   # small dense algebra: one BLAS thread (cimsim.blas)
            self._refresh()

    def _refresh(self) -> None:
        for layer in self.layers:
            A, G = layer.A.numpy(), layer.G.numpy()
            ta, tg = np.trace(A) / A.shape[0], np.trace(G) / G.shape[0]
            pi = math.sqrt(ta / tg) if ta > 0 and tg > 0 else 1.0
            s = math.sqrt(self.damping)
            # relative damping: sqrt(lambda) times each factor's mean eigenvalue, split by pi (our choice of scale)
            scale = math.sqrt(ta * tg) if ta > 0 and tg > 0 else 1.0
            layer.A_inv = torch.from_numpy(self._invert(A, pi * s * math.sqrt(scale)))
            layer.G_inv = torch.from_numpy(self._invert(G, s * math.sqrt(scale) / pi))
        self.refreshes += 1

    # ------------------------------------------------------------------ one step
    def precondition(self, lr: float) -> None:
        """Replace every layer's gradient with its K-FAC direction (call after backward, before the step)."""
        if self.steps == 0:   # a layer whose forward was never called keeps its plain gradient (nn.MultiheadAttention
            # reads its out_proj's weight directly; its packed in_proj_weight is no layer either)
            self.layers = [layer for layer in self.layers if layer.a is not None and layer.g is not None]
        for layer in self.layers:
            layer.update_factors(self.decay, self._batch)
        # inverses refreshed at steps 0, 1, 2, 4, 8, ... while the factors settle, then every inv_every steps
        # (our choice: the first batch's factors alone would steer inv_every steps)
        s = self.steps
        if (s < self.inv_every and s & (s - 1) == 0) or s % self.inv_every == 0:
            self.refresh()
        self.steps += 1
        vs, vg = [], 0.0
        for layer in self.layers:
            g = layer.grad_matrix().double()
            v = layer.G_inv @ g @ layer.A_inv
            vs.append(v)
            vg += float((v * g).sum())
            out, inn = g.shape
            flops = 2 * (out * out * inn + out * inn * inn)
            self._add("gpu", "precondition", GPU.cost(flops, 2))
            if self.inversion == "crossbar":   # G_inv on the in columns of g, then A_inv on its out rows
                for n_vec, dim in ((inn, out), (out, inn)):
                    units = [self._vmm_unit[i1 - i0].scaled(n_vec) for i0, i1 in _blocks(dim, self.circuit.size)]
                    # blocks in parallel: the slowest one's time
                    self._add("xbar", "precondition", Cost(max(u.time_s for u in units), 0.0, {}))
                    for u in units:
                        self._add("xbar", "precondition", u.scaled_energy_only())
        nu = min(1.0, math.sqrt(self.kl_clip / (lr * lr * vg))) if vg > 0 else 1.0
        for layer, v in zip(self.layers, vs):
            layer.set_grad(v * nu)

    def cost_per_step(self) -> dict:
        k = max(self.steps, 1)
        xb = sum((c for c in self.cost_xbar.values()), Cost(0.0, 0.0, {})).scaled(1 / k)
        gpu = sum((c for c in self.cost_gpu.values()), Cost(0.0, 0.0, {})).scaled(1 / k)
        out = {"gpu_time_s": gpu.time_s, "gpu_energy_j": gpu.energy_j}
        if self.inversion == "crossbar":
            out.update({"crossbar_time_s": xb.time_s, "crossbar_energy_j": xb.energy_j,
                        "crossbar_parts_j": {n: c.energy_j / k for n, c in self.cost_xbar.items()},
                        "crossbar_parts_s": {n: c.time_s / k for n, c in self.cost_xbar.items()},
                        "speedup_vs_gpu": gpu.time_s / xb.time_s if xb.time_s > 0 else math.nan,
                        "energy_saving_vs_gpu": gpu.energy_j / xb.energy_j if xb.energy_j > 0 else math.nan,
                        "refine_max_iterations": self.max_iterations, "refine_failures": self.refine_failures})
        return out

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def train_second_order(model: nn.Module, data, epochs: int, batch_size: int, lr: float, seed: int = 0,
                       inversion: str = "float", momentum: float = 0.9, weight_decay: float = 0.0,
                       damping: float = 0.1, inv_every: int = 25, circuit: InversionCircuit | None = None,
                       limit: int | None = None, test_limit: int | None = None, progress=None) -> dict:
    """Train ``model`` on ``data`` (a :class:`cimsim.workloads.datasets.Dataset`) with K-FAC; returns the history
    (loss, train and test accuracy per epoch), the wall time and the per-step hardware costs."""
    from cimsim.workloads.train import accuracy

    x_train, y_train = data.x_train, data.y_train
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    x_test, y_test = (data.x_test, data.y_test) if test_limit is None else (data.x_test[:test_limit],
                                                                            data.y_test[:test_limit])
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    kfac = KFAC(model, inversion=inversion, damping=damping, inv_every=inv_every, circuit=circuit, seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    history = []
    started = time.perf_counter()
    steps_per_epoch = math.ceil(len(y_train) / batch_size)
    total, step = epochs * steps_per_epoch, 0
    quiet = warnings.catch_warnings()
    quiet.__enter__()
    warnings.filterwarnings("ignore", message="Full backward hook is firing")   # the first layer's input needs no grad
    try:
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(y_train), generator=gen)
            seen, correct, loss_sum = 0, 0, 0.0
            for start in range(0, len(y_train), batch_size):
                idx = order[start:start + batch_size]
                xb, yb = x_train[idx], y_train[idx]
                kfac.set_batch(len(yb))
                rate = 0.5 * lr * (1 + math.cos(math.pi * step / total))   # cosine decay, as the SGD recipes
                for group in opt.param_groups:
                    group["lr"] = rate
                step += 1
                out = model(xb)
                loss = F.cross_entropy(out, yb)
                opt.zero_grad(set_to_none=False)
                loss.backward()
                kfac.precondition(rate)
                opt.step()
                seen += len(yb)
                loss_sum += loss.item() * len(yb)
                correct += int((out.argmax(1) == yb).sum())
            history.append({"epoch": epoch + 1, "loss": loss_sum / seen, "train_accuracy": correct / seen,
                            "test_accuracy": accuracy(model, x_test, y_test)})
            if progress is not None:
                progress(history[-1])
    finally:
        kfac.close()
        quiet.__exit__(None, None, None)
    return {"history": history, "train_seconds": time.perf_counter() - started, "steps": kfac.steps,
            "refreshes": kfac.refreshes, "cost_per_step": kfac.cost_per_step()}


OPTIMIZERS = {"kfac": "float", "crossbar-kfac": "crossbar"}   # cimsim train --optimizer NAME -> inversion
KFAC_LR = 0.02   # our choice: the K-FAC step on the zoo MLP on digits (0.05 overshoots in epoch 2)
# our choice of damping (lambda above) per model: 0.1 on the MLP; LeNet-5's first steps overshoot at 0.1 (loss 17
# in epoch 1 on 5000 Fashion-MNIST images), 0.5 keeps them stable
KFAC_DAMPING = {"mlp": 0.1, "lenet5": 0.5}


def train_zoo(model_name: str, dataset: str, optimizer: str = "crossbar-kfac", epochs: int | None = None,
              seed: int = 0, batch_size: int | None = None, lr: float | None = None, data_dir=None,
              limit: int | None = None, test_limit: int | None = None, progress=None):
    """A zoo model trained with K-FAC (``optimizer`` 'kfac': float inversion, 'crossbar-kfac': the crossbars);
    the recipe's epochs and batch size unless given. Returns :class:`cimsim.workloads.train.TrainResult`."""
    from cimsim._version import __version__
    from cimsim.workloads import datasets as ds_mod
    from cimsim.workloads import train as tr
    from cimsim.workloads import zoo

    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown second-order optimizer {optimizer!r}: choose one of "
                          f"{', '.join(OPTIMIZERS)}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be a positive number of examples, got {limit}")
    data = ds_mod.load(dataset, data_dir=data_dir)
    name = zoo.canonical_name(model_name)
    recipe = tr.recipe_for(name, data.name, epochs=epochs, batch_size=batch_size, lr=lr)
    rate = lr if lr is not None else KFAC_LR
    torch.manual_seed(seed)
    model = zoo.build_for(name, data.input_shape, data.num_classes)
    damping = KFAC_DAMPING.get(name, 0.3)   # (est.) between the two tuned values for other models
    res = train_second_order(model, data, recipe.epochs, recipe.batch_size, rate, seed=seed, damping=damping,
                             inversion=OPTIMIZERS[optimizer], limit=limit, test_limit=test_limit, progress=progress)
    hist = res["history"]
    meta = {"model": name, "dataset": data.name, "epochs": recipe.epochs, "seed": seed, "optimizer": optimizer,
            "test_accuracy": hist[-1]["test_accuracy"], "train_accuracy": hist[-1]["train_accuracy"],
            "input_shape": list(data.input_shape), "num_classes": data.num_classes,
            "train_examples": min(len(data.y_train), limit or len(data.y_train)),
            "test_examples": min(len(data.y_test), test_limit or len(data.y_test)),
            "recipe": {"batch_size": recipe.batch_size, "lr": rate, "momentum": 0.9, "schedule": "cosine",
                       "damping": damping, "inv_every": 25, "kl_clip": 1e-3},
            "history": hist, "steps": res["steps"], "refreshes": res["refreshes"],
            "second_order_cost_per_step": res["cost_per_step"], "paper_ratios": PAPER_RATIOS,
            "torch_version": torch.__version__, "cimsim_version": __version__,
            "train_seconds": round(res["train_seconds"], 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": f"cimsim train --model {name} --dataset {data.name} --optimizer {optimizer} "
                       f"--epochs {recipe.epochs} --seed {seed}"}
    return tr.TrainResult(model.eval(), meta)
