"""Cost model of K-FAC's second-order work on RePAST-style crossbars against a GPU, for any network size.

:mod:`cimsim.workloads.kfac` simulates the crossbar inversions of a training run and books what they cost on
dedicated, unreplicated arrays (one right-hand side per settling, one preconditioning vector after another). This
module is the architecture-level counterpart (cost only, no numerics): given the layers' K-FAC factor sizes it
prices one training step's second-order work for

* the crossbars, as RePAST organises them (arXiv 2210.15255; docs/references.md#repast): every block of every
  factor on its own INV + VMM array set, ``replicas`` copies of each set sharing the block's right-hand sides and
  preconditioning vectors (RePAST replicates arrays for throughput; the count is ours, est.), the refinement
  pipelined across right-hand sides (the INV array settles the next right-hand side while the VMM arrays form
  the last one's residual: one step per ``max(t_inv, t_vmm)`` instead of their sum), all layers at once. With
  ``replicas=1, pipelined=False, layers_parallel=False`` it is the accounting of :mod:`~cimsim.workloads.kfac`
  (tested). The per-step times and energies are measured on the circuit and VMM models
  (:func:`block_costs`), not assumed.
* a GPU (:class:`GpuSpec`, all est. but the datasheet figures): the same block-diagonal K-FAC (same blocks, same
  refresh interval), blocks of a factor batched into one kernel, inversions at a size-dependent efficiency,
  products at GEMM efficiency, at least one launch latency per kernel, board power throughout.

and, like for like with the GPU on whole factors, the crossbars inverting whole factors too (:func:`factor_costs`):
every factor wider than one array refined whole with its diagonal blocks on INV arrays (block-Jacobi GCR,
:mod:`cimsim.linalg.refine`) and the whole factor on the residual's VMM tiles, the dense inverse on VMM tiles for the
preconditioning; steps and per-step costs simulated up to :data:`FULL_MEASURE_MAX` wide and extrapolated beyond
(est.).

It also prices the rest of a GPU K-FAC step (forward and backward passes, the factor statistics), so that the
fraction of the step the crossbars can speed up is explicit (Amdahl: a whole-step speed-up is at most
``1 / (1 - f)`` when only a fraction ``f`` moves to the crossbars).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from cimsim.errors import ConfigError
from cimsim.linalg import InversionCircuit, ProgrammedInverter, VmmArray, high_precision_spec, random_matrix, \
    refine_solve
from cimsim.linalg.vmm import READ_CYCLE_S


@dataclass(frozen=True)
class LayerShape:
    """One Linear / Conv2d layer as K-FAC sees it: factor sizes, output positions and MACs per example."""

    name: str
    a_dim: int          # input factor A: in_features (x kernel area) + 1 with a bias
    g_dim: int          # output factor G: out_features / out_channels
    positions: int = 1  # output positions per example (1 for Linear)

    @property
    def macs(self) -> int:
        return (self.a_dim - 1 if self.a_dim > 1 else 1) * self.g_dim * self.positions


def layer_shapes(model, input_shape) -> list[LayerShape]:
    """The K-FAC layers of a torch model, from one forward pass of one zero example of ``input_shape``."""
    import torch
    from torch import nn

    out: list[LayerShape] = []
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            def hook(mod, inp, res, name=name):
                if isinstance(mod, nn.Conv2d):
                    a = mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1] // mod.groups
                    out.append(LayerShape(name, a + (mod.bias is not None), mod.out_channels,
                                          int(res.shape[-1] * res.shape[-2])))
                else:
                    out.append(LayerShape(name, mod.in_features + (mod.bias is not None), mod.out_features))
            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros((1, *input_shape)))
    finally:
        for h in hooks:
            h.remove()
    return out


def vgg16_imagenet() -> list[LayerShape]:
    """VGG-16 (Simonyan & Zisserman 2015, configuration D) on 224 x 224 ImageNet images: 13 3x3 convs, 3 FCs."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, cin, side, i = [], 3, 224, 0
    for v in cfg:
        if v == "M":
            side //= 2
            continue
        i += 1
        layers.append(LayerShape(f"conv{i}", cin * 9 + 1, v, side * side))
        cin = v
    for j, (a, g) in enumerate(((512 * 7 * 7, 4096), (4096, 4096), (4096, 1000))):
        layers.append(LayerShape(f"fc{j + 1}", a + 1, g))
    return layers


def resnet18_imagenet() -> list[LayerShape]:
    """ResNet-18 (He et al. 2016, Table 1) on 224 x 224 images: convs without bias (BatchNorm), 1x1 shortcuts."""
    layers = [LayerShape("conv1", 3 * 49, 64, 112 * 112)]
    cin = 64
    for stage, (c, side) in enumerate(((64, 56), (128, 28), (256, 14), (512, 7))):
        for blk in range(2):
            first = blk == 0
            layers.append(LayerShape(f"s{stage + 1}b{blk + 1}c1", cin * 9, c, side * side))
            layers.append(LayerShape(f"s{stage + 1}b{blk + 1}c2", c * 9, c, side * side))
            if first and cin != c:
                layers.append(LayerShape(f"s{stage + 1}b{blk + 1}sc", cin, c, side * side))
            cin = c
    layers.append(LayerShape("fc", 512 + 1, 1000))
    return layers


def _blocks(n: int, size: int) -> list[int]:
    return [min(size, n - i) for i in range(0, n, size)]


# ---------------------------------------------------------------------------------------------- the two machines
@dataclass(frozen=True)
class CrossbarArch:
    """The crossbar side (module docstring); the circuits are :class:`~cimsim.linalg.InversionCircuit`'s."""

    replicas: int = 1            # (est.) copies of each block's INV + VMM array set; RePAST replicates, count ours
    pipelined: bool = True       # (est.) refinement pipelined across right-hand sides (RePAST's pipelining)
    layers_parallel: bool = True  # (est.) every layer's blocks on arrays of their own, working at once
    input_bits: int = 16         # preconditioning vectors streamed 1 bit per 100 ns cycle (ISAAC, Shafiee 2016)
    kappa: float = 30.0          # (est.) damped-block condition number: <= 8 GCR refinement steps in our K-FAC
    #                              runs, 7 on a random kappa-30 128-block (BENCHMARKS.md, RePAST section)
    inv_every: int = 25          # inverses refreshed every 25 steps, as our K-FAC runs (kfac.train_zoo)

    def __post_init__(self):
        for k in ("replicas", "input_bits", "inv_every"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"CrossbarArch.{k} must be a positive integer, got {v!r}")
        if not (math.isfinite(self.kappa) and self.kappa >= 1):
            raise ConfigError(f"CrossbarArch.kappa must be a finite number >= 1, got {self.kappa!r}")


@dataclass(frozen=True)
class GpuSpec:
    """The GPU side: an NVIDIA V100 SXM2 (datasheet: 15.7 TFLOP/s FP32, 300 W); efficiencies est."""

    name: str = "NVIDIA V100 SXM2, FP32"
    peak_flops: float = 15.7e12   # datasheet FP32 peak
    power_w: float = 300.0        # datasheet board power, drawn throughout (est.: an upper bound on these kernels)
    launch_s: float = 5e-6        # (est.) kernel launch + synchronisation
    gemm_efficiency: float = 0.6  # (est.) cuBLAS SGEMM on the products' shapes (>= 128 wide; ~90 % on big squares)
    # (est.) batched Cholesky + triangular inverse (cuSOLVER) reach eff_max * n / (n + n_half) of peak:
    # 5.6 % at n = 128, 20 % at 1024, 41 % at 4608
    inv_efficiency_max: float = 0.5
    inv_n_half: float = 1024.0
    kernels_per_inversion: int = 3   # Cholesky, triangular inverse, product (per factor, blocks batched)

    def time(self, flops: float, kernels: int, efficiency: float) -> float:
        return max(flops / (self.peak_flops * efficiency), kernels * self.launch_s)


# ---------------------------------------------------------------------------------------------- measured units
_UNIT_CACHE: dict = {}


def block_costs(k: int, kappa: float = 30.0, circuit: InversionCircuit | None = None, rhs: int = 8,
                input_bits: int = 16, seed: int = 0) -> dict:
    """Measured cost units of one ``k x k`` block on the circuit and VMM models: refinement steps to 16 bits on a
    random SPD block of condition ``kappa`` (``rhs`` columns of the identity), the INV settling and VMM times of
    one step, the energy of one right-hand-side step, the programming of one array set, and the time and energy
    of one ``input_bits`` preconditioning vector through the block's inverse."""
    circuit = InversionCircuit() if circuit is None else circuit
    key = (k, kappa, circuit, rhs, input_bits, seed)
    if key in _UNIT_CACHE:
        return _UNIT_CACHE[key]
    B = random_matrix(k, kappa, seed=seed)
    m = min(rhs, k)
    E = np.eye(k)[:, :m]
    r = refine_solve(B, E, circuit, target_bits=16, max_iter=60, seed=seed, reference=np.linalg.solve(B, E))
    p = ProgrammedInverter(B, circuit, seed)
    t_inv = p.t_settle_s + (circuit.adc.latency_s if circuit.adc is not None else 0.0)
    t_vmm = ((circuit.output_bits or 23) + 1) * READ_CYCLE_S      # the correction's bits, 1 per cycle
    vmm = VmmArray(np.linalg.inv(B), replace(high_precision_spec(), input_bits=input_bits), seed=seed)
    _, cv = vmm(np.random.default_rng(seed).standard_normal((k, 4)))
    out = {"k": k, "iterations": r.iterations, "converged": r.converged, "t_inv_s": t_inv, "t_vmm_s": t_vmm,
           "e_rhs_step_j": r.cost.energy_j / (r.iterations * m),
           "program": p.program_cost().scaled(2.0),        # the INV arrays and the inverse's VMM arrays (est. alike)
           "t_vector_s": cv.time_s / 4, "e_vector_j": cv.energy_j / 4}
    _UNIT_CACHE[key] = out
    return out


# our choice: whole-factor refinements are simulated up to 512 wide (4 INV blocks, about a second); wider ones are
# extrapolated from it (est.): random kappa-30 systems on block-diagonal INV arrays (GCR, 16 kept directions) need
# 24 / 30 / 33 / 34 steps at 256 / 512 / 1024 / 2048 wide, so 2 more steps per doubling beyond 512 (cimsim.linalg.refine)
FULL_MEASURE_MAX = 512
FULL_STEPS_PER_DOUBLING = 2


def factor_costs(dim: int, kappa: float = 30.0, circuit: InversionCircuit | None = None, seed: int = 0) -> dict:
    """Measured cost units of refining a whole ``dim``-wide factor (wider than one array) on block-diagonal INV
    arrays with the VMM holding the whole factor (:func:`cimsim.linalg.refine_solve`, block-Jacobi GCR): the steps
    to 16 bits on a random SPD matrix of condition ``kappa`` (simulated up to :data:`FULL_MEASURE_MAX` wide, then
    extrapolated), and one right-hand-side step's settling, VMM and digital times and energy, scaled to ``dim``
    (INV energy as the blocks, VMM energy as the blocks squared, the digital unit's recomputed)."""
    from cimsim.linalg.refine import GCR_BLOCK_WINDOW, digital_cost

    circuit = InversionCircuit() if circuit is None else circuit
    m = min(dim, FULL_MEASURE_MAX)
    key = ("full", m, kappa, circuit, seed)
    if key not in _UNIT_CACHE:
        B = random_matrix(m, kappa, seed=seed)
        b = np.random.default_rng(seed).standard_normal(m)
        _UNIT_CACHE[key] = refine_solve(B, b, circuit, target_bits=16, max_iter=200, seed=seed)
    r = _UNIT_CACHE[key]
    h = r.history
    nb_m, nb = math.ceil(m / circuit.size), math.ceil(dim / circuit.size)
    its = r.iterations + (FULL_STEPS_PER_DOUBLING * math.ceil(math.log2(dim / m)) if dim > m else 0)
    w = GCR_BLOCK_WINDOW
    dig = digital_cost(dim, 1, 3 * w + 6, 0, w + 2, circuit.node_nm, nb)   # a step with a full window
    e_inv = float(np.mean([x["inv_energy_j"] for x in h])) * nb / nb_m
    e_vmm = float(np.mean([x["vmm_energy_j"] for x in h])) * (nb / nb_m) ** 2
    out = {"dim": dim, "blocks": nb, "iterations": its, "converged": r.converged, "measured_width": m,
           "t_inv_s": max(x["inv_time_s"] for x in h), "t_vmm_s": max(x["vmm_time_s"] for x in h),
           "t_digital_s": dig.time_s, "e_rhs_step_j": e_inv + e_vmm + dig.energy_j}
    return out


def _whole_factor(dim: int, vectors: int, arch: "CrossbarArch", circuit: InversionCircuit) -> dict:
    """One factor inverted whole on the crossbars (block-diagonal INV arrays inside a whole-factor refinement, the
    dense inverse on VMM arrays): the per-refresh inversion time and energy, the programming, the preconditioning
    of ``vectors`` vectors per step (time, energy) and the 128-wide array tiles it holds, with ``arch.replicas``."""
    size, R = circuit.size, arch.replicas
    u128 = block_costs(size, arch.kappa, circuit, input_bits=arch.input_bits)
    nb = math.ceil(dim / size)
    if nb == 1:   # one array: the block case itself
        u = block_costs(dim, arch.kappa, circuit, input_bits=arch.input_bits)
        its, t_inv, t_vmm, t_dig, e_step = u["iterations"], u["t_inv_s"], u["t_vmm_s"], 0.0, u["e_rhs_step_j"]
        prog_e, e_vec = R * u["program"].energy_j, vectors * u["e_vector_j"]
    else:
        f = factor_costs(dim, arch.kappa, circuit)
        its, t_inv, t_vmm, t_dig, e_step = f["iterations"], f["t_inv_s"], f["t_vmm_s"], f["t_digital_s"], \
            f["e_rhs_step_j"]
        # each INV block as one block's INV array, each 128-wide tile of the residual's and of the inverse's VMM
        # arrays as one block's inverse VMM arrays (est. alike: u128's program is INV + inverse VMM)
        prog_e = R * (nb + 2 * nb * nb) * u128["program"].energy_j / 2
        # a vector through the dense inverse: every tile of it (the tiles' outputs added digitally)
        e_vec = vectors * nb * nb * u128["e_vector_j"]
        u = u128
    steps = math.ceil(dim / R) * its
    if arch.pipelined:
        t = steps * max(t_inv, t_vmm, t_dig) + min(t_inv, t_vmm)
    else:
        t = steps * (t_inv + t_vmm + t_dig)
    return {"inv_t": t, "inv_e": dim * its * e_step, "prog_t": u["program"].time_s, "prog_e": prog_e,
            "pre_t": math.ceil(vectors / R) * u128["t_vector_s"], "pre_e": e_vec,
            "tiles": R * (nb + 2 * nb * nb), "iterations": its}


# ---------------------------------------------------------------------------------------------- one step
def step_cost(layers: list[LayerShape], batch: int, arch: CrossbarArch = CrossbarArch(), gpu: GpuSpec = GpuSpec(),
              circuit: InversionCircuit | None = None) -> dict:
    """Per training step (inversions amortised over ``arch.inv_every`` steps): the crossbars' and the GPU's time
    (s) and energy (J) of the second-order work, by part, the rest of the GPU step, the ratios and the fraction."""
    if not layers:
        raise ConfigError("no Linear or Conv2d layers to precondition")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ConfigError(f"batch must be a positive integer, got {batch!r}")
    circuit = InversionCircuit() if circuit is None else circuit
    size, R = circuit.size, arch.replicas
    x = {"inversion": [0.0, 0.0], "program": [0.0, 0.0], "precondition": [0.0, 0.0]}   # [time, energy]
    g = {"inversion": 0.0, "precondition": 0.0, "forward_backward": 0.0, "factors": 0.0,
         "full_inversion": 0.0, "full_precondition": 0.0, "full_factors": 0.0}
    sets = 0
    comb = max if arch.layers_parallel else sum
    per_layer_inv, per_layer_pre, per_layer_prog = [], [], []
    w = {"inversion": [[], 0.0], "program": [[], 0.0], "precondition": [[], 0.0]}   # whole factors: per layer t, e
    tiles_full, its_full = 0, 0
    for L in layers:
        t_inv_f, t_prog_f, t_pre_layer = [], [], 0.0
        wf = {"inversion": [], "program": [], "precondition": 0.0}
        for dim in (L.a_dim, L.g_dim):
            # the crossbars inverting the factor whole (like for like with the GPU on whole factors)
            wh = _whole_factor(dim, L.a_dim if dim == L.g_dim else L.g_dim, arch, circuit)
            wf["inversion"].append(wh["inv_t"])
            wf["program"].append(wh["prog_t"])
            wf["precondition"] += wh["pre_t"]
            w["inversion"][1] += wh["inv_e"]
            w["program"][1] += wh["prog_e"]
            w["precondition"][1] += wh["pre_e"]
            tiles_full += wh["tiles"]
            its_full = max(its_full, wh["iterations"])
            blocks = _blocks(dim, size)
            sets += len(blocks) * R
            t_f = t_p = 0.0
            for k in blocks:
                u = block_costs(k, arch.kappa, circuit, input_bits=arch.input_bits)
                rhs_per_copy = math.ceil(k / R)
                steps = rhs_per_copy * u["iterations"]
                if arch.pipelined:
                    t = steps * max(u["t_inv_s"], u["t_vmm_s"]) + min(u["t_inv_s"], u["t_vmm_s"])
                else:
                    t = steps * (u["t_inv_s"] + u["t_vmm_s"])
                t_f = max(t_f, t)                                  # the blocks of a factor work at once
                x["inversion"][1] += k * u["iterations"] * u["e_rhs_step_j"]
                t_p = max(t_p, u["program"].time_s)
                x["program"][1] += R * u["program"].energy_j
            t_inv_f.append(t_f)                                    # A and G on arrays of their own
            t_prog_f.append(t_p)
            # preconditioning: G^-1 (blocks of g_dim) takes the a_dim columns of the gradient as vectors, then
            # A^-1 (blocks of a_dim) takes its g_dim rows
            vectors = L.a_dim if dim == L.g_dim else L.g_dim
            u0 = block_costs(blocks[0], arch.kappa, circuit, input_bits=arch.input_bits)
            t_pre_layer += math.ceil(vectors / R) * u0["t_vector_s"]
            for k in blocks:
                x["precondition"][1] += vectors * block_costs(k, arch.kappa, circuit,
                                                              input_bits=arch.input_bits)["e_vector_j"]
            # the GPU: the same blocks, batched per factor
            flops_inv = sum(k ** 3 for k in blocks)                # Cholesky k^3/3 + inverse 2k^3/3
            eff = gpu.inv_efficiency_max * max(blocks) / (max(blocks) + gpu.inv_n_half)
            g["inversion"] += gpu.time(flops_inv, gpu.kernels_per_inversion, eff)
            g["precondition"] += gpu.time(2.0 * vectors * sum(k * k for k in blocks), 1, gpu.gemm_efficiency)
            rows = batch * L.positions                             # the factor statistics: the diagonal blocks
            g["factors"] += gpu.time(2.0 * rows * sum(k * k for k in blocks), 1, gpu.gemm_efficiency)
            # ... and K-FAC as GPU implementations run it: every factor whole (dense inverse, dense products)
            eff_full = gpu.inv_efficiency_max * dim / (dim + gpu.inv_n_half)
            g["full_inversion"] += gpu.time(float(dim) ** 3, gpu.kernels_per_inversion, eff_full)
            g["full_precondition"] += gpu.time(2.0 * vectors * dim * dim, 1, gpu.gemm_efficiency)
            g["full_factors"] += gpu.time(2.0 * rows * dim * dim, 1, gpu.gemm_efficiency)
        g["forward_backward"] += gpu.time(6.0 * L.macs * batch, 3, gpu.gemm_efficiency)
        per_layer_inv.append(comb(t_inv_f))
        per_layer_prog.append(comb(t_prog_f))
        per_layer_pre.append(t_pre_layer)                          # G^-1 then A^-1: one after the other
        for part in ("inversion", "program"):
            w[part][0].append(comb(wf[part]))
        w["precondition"][0].append(wf["precondition"])
    x["inversion"][0] = comb(per_layer_inv)
    x["program"][0] = comb(per_layer_prog)
    x["precondition"][0] = comb(per_layer_pre)
    n = arch.inv_every
    xt = (x["inversion"][0] + x["program"][0]) / n + x["precondition"][0]
    xe = (x["inversion"][1] + x["program"][1]) / n + x["precondition"][1]
    g2_t = g["inversion"] / n + g["precondition"]
    g_total = g2_t + g["forward_backward"] + g["factors"]
    out = {
        "crossbar_time_s": xt, "crossbar_energy_j": xe,
        "crossbar_parts_s": {"inversion": x["inversion"][0] / n, "program": x["program"][0] / n,
                             "precondition": x["precondition"][0]},
        "crossbar_parts_j": {"inversion": x["inversion"][1] / n, "program": x["program"][1] / n,
                             "precondition": x["precondition"][1]},
        "array_sets": sets,
        "gpu_time_s": g2_t, "gpu_energy_j": g2_t * gpu.power_w,
        "gpu_parts_s": {"inversion": g["inversion"] / n, "precondition": g["precondition"]},
        "gpu_step_s": {"forward_backward": g["forward_backward"], "factors": g["factors"], "second_order": g2_t},
        "second_order_fraction": g2_t / g_total,
        "speedup_vs_gpu": g2_t / xt, "energy_saving_vs_gpu": g2_t * gpu.power_w / xe,
    }
    # the whole step with only the second-order work moved to the crossbars (the rest stays on the GPU)
    out["whole_step_speedup"] = g_total / (g_total - g2_t + xt)
    # the GPU running K-FAC on whole factors (not the same approximation: the crossbars' blocks are coarser)
    f2 = g["full_inversion"] / n + g["full_precondition"]
    f_total = f2 + g["forward_backward"] + g["full_factors"]
    out.update({"gpu_full_time_s": f2, "gpu_full_energy_j": f2 * gpu.power_w,
                "gpu_full_parts_s": {"inversion": g["full_inversion"] / n, "precondition": g["full_precondition"],
                                     "factors": g["full_factors"]},
                "gpu_full_second_order_fraction": f2 / f_total,
                "speedup_vs_gpu_full": f2 / xt, "energy_saving_vs_gpu_full": f2 * gpu.power_w / xe})
    # like for like: the crossbars inverting whole factors too (block-diagonal INV arrays inside a whole-factor
    # refinement, dense inverses on VMM arrays) against the GPU on whole factors
    wt = {p: comb(w[p][0]) for p in w}
    ft = (wt["inversion"] + wt["program"]) / n + wt["precondition"]
    fe = (w["inversion"][1] + w["program"][1]) / n + w["precondition"][1]
    out.update({"crossbar_full_time_s": ft, "crossbar_full_energy_j": fe,
                "crossbar_full_parts_s": {"inversion": wt["inversion"] / n, "program": wt["program"] / n,
                                          "precondition": wt["precondition"]},
                "crossbar_full_parts_j": {"inversion": w["inversion"][1] / n, "program": w["program"][1] / n,
                                          "precondition": w["precondition"][1]},
                "full_array_tiles": tiles_full, "full_iterations_max": its_full,
                "speedup_full_vs_gpu_full": f2 / ft, "energy_saving_full_vs_gpu_full": f2 * gpu.power_w / fe})
    return out
