"""Whole-network benchmark (``cimsim bench --model M --arch A``): what a user's ``cimsim run`` costs, phase by phase.

The command ``cimsim run --model M --arch A`` does four things, timed here separately on the same network,
data and settings:

- **load**: the checkpoint and the dataset;
- **map**: ``prepare`` (copy, batch-norm folding, the calibration forward pass, the digital layers'
  profile), ``program`` (crossbars built and their cells programmed, with programming noise), ``calibrate``
  (activation ranges, PSQ scales, ADC ranges);
- **evaluate**: the simulated network over the test images (which includes, per batch, the float
  reference network and each mapped layer's exact integer product that measures its error).

The CLI adds ``startup`` (the process before the benchmark: interpreter, imports, argument checks;
:func:`process_age_s`) and ``whole`` (``startup`` + ``command``: what the fresh command ``cimsim run`` would take,
the benchmark's references left out).

Beside them, in the same process and on the same device: the float network's own forward rate over the
same images (``float_images_per_s``), and the device's best dense GEMM (float32, and bf16 where the
device has it; TF32 and int8 on a GPU) at a fixed large shape. ``engine`` is the crossbars' share of the
evaluation: their wall seconds (summed over layers, measured around each crossbar call) and their
effective MAC/s = sum over layers of positions x K x N x input cycles x weight slices / those seconds,
the same count as the single-layer bench (:mod:`cimsim.bench`); for a packed layer (SME, ADMM's masked
blocks: :class:`cimsim.packed.PackedTile`) the products of the rows and columns its layout keeps, x input
cycles. ``ratio`` = engine MAC/s over the best GEMM rate. Where the numba engine takes its lossless integer path (exact integer levels read by converters that
provably return every column value: one float64 product instead of the bit planes; ISAAC's defaults on
LeNet-5), that count is the hardware's work, not the simulator's: ``engine["lossless_calls"]`` says how many
crossbar calls took it, and the rate then measures simulation speed rather than a kernel's throughput. The same holds
for its bit-serial integer path (integer levels, no noise, an ADC that rounds or clips: column values from tables of
level sums, the converters in integers; ISAAC's low-bit ADC points), counted in ``engine["bit_serial_calls"]``.

Like :mod:`cimsim.networks` this module stands on top of every layer (DESIGN.md): it loads checkpoints
and data (``workloads``) and maps them (``mappers``).
"""

from __future__ import annotations

import os
import platform
import resource
import time

import torch

from cimsim.bench import device_gemm_rates
from cimsim.packed import PackedTile

def float_rate(model: torch.nn.Module, loader, device: str = "cpu") -> tuple[float, int]:
    """(images/s, images) of the float network's forward pass over ``loader`` on ``device``, data loading
    included as in the simulated evaluation."""
    net = model.to(device).eval()
    cuda = device.startswith("cuda")
    n = 0
    with torch.no_grad():
        for x, _ in loader:   # warm-up on the first batch
            net(x.to(device))
            break
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        for x, _ in loader:
            net(x.to(device))
            n += len(x)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
    model.to("cpu")
    return n / seconds, n


def process_age_s() -> float | None:
    """Seconds since this process started (Linux: its start time in /proc/self/stat against the boot clock, to
    1/CLK_TCK s), None where the system does not say. Called first thing by ``cimsim bench --model``: the part of a
    fresh command before the benchmark starts (the interpreter, the imports, the argument checks), which the phases
    of :func:`run_model` do not include."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()    # after the command name: field 3 (state) onwards
        start = int(fields[19]) / os.sysconf("SC_CLK_TCK")   # field 22, starttime, in clock ticks since boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - start)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def machine() -> str:
    """The CPU model (Linux /proc/cpuinfo), its architecture and the CPUs this process may use."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name}, {platform.machine()}, {cpus} CPUs"


def run_model(model_name: str, arch_name: str = "isaac", dataset: str = "fashion-mnist", *, limit: int | None = None,
              batch_size: int | None = None, calibration: int = 512, backend: str = "numba", device: str = "cpu",
              seed: int = 0, data_dir=None, sets: dict | None = None, progress: bool | None = False) -> dict:
    """Time ``cimsim run --model model_name --arch arch_name`` phase by phase (see the module docstring)."""
    from cimsim import arch as arch_mod
    from cimsim.mappers.mapper import map_model
    from cimsim.networks import load_model_and_data, reference_kwargs

    t_start = time.perf_counter()
    spec = arch_mod.get(arch_name, **(sets or {}))
    model, meta, data, ckpt = load_model_and_data(model_name, dataset, data_dir, arch=spec, overrides=sets)
    if batch_size is None:   # as `cimsim run` chooses it
        from cimsim.mappers.batching import default_batch

        batch_size = default_batch(model, data.input_shape, device)[0]
    loader = data.loader("test", batch_size=batch_size, limit=limit)
    cal = data.loader("train", batch_size=batch_size, limit=calibration, shuffle=False)
    t_loaded = time.perf_counter()
    gemm = device_gemm_rates(device)
    float_ips, _ = float_rate(model, loader, device)
    t_refs = time.perf_counter()
    mapped = map_model(model, spec, cal, seed=seed, backend=backend, device=device, progress=progress,
                       **reference_kwargs(meta, ckpt))
    t_mapped = time.perf_counter()
    for x, _ in loader:   # warm-up: compilation or loading compiled kernels, first-touch of buffers
        mapped(x[:8])
        break
    t_warm = time.perf_counter()
    report = mapped.evaluate(loader, progress=progress)   # resets the events the warm-up counted
    t_done = time.perf_counter()

    macs = engine_s = exact_s = 0.0
    tiles = [xb for layer in mapped.mapped_layers.values() for t in layer.crossbars
             for xb in (t.crossbars if isinstance(t, PackedTile) else [t])]   # a packed tile's calls are its groups'
    lossless = sum(getattr(getattr(xb, "_cpu", None), "lossless_calls", 0) for xb in tiles)
    bit_serial = sum(getattr(getattr(xb, "_cpu", None), "bit_serial_calls", 0) for xb in tiles)
    for layer in mapped.mapped_layers.values():
        xb = layer.crossbars[0]
        if isinstance(xb, PackedTile):   # SME, ADMM's masked blocks: the products of the columns the layout keeps
            macs += layer.positions_seen * sum(t.cell_macs_per_input() for t in layer.crossbars)
        else:
            macs += layer.positions_seen * layer.plan.in_features * layer.plan.out_features * xb.cycles * xb.n_slices
        engine_s += layer.engine_s
        exact_s += layer.exact_s
    evaluate_s = t_done - t_warm
    n = report.n_examples
    engine_rate = macs / engine_s if engine_s > 0 else float("nan")
    best_dtype, best_rate = gemm["best"]
    gpu_peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else 0
    return {
        "model": meta["model"], "arch": spec.name, "dataset": data.name, "images": n, "batch_size": batch_size,
        "backend": backend, "device": device, "accuracy": report.accuracy,
        "machine": machine(),
        "phases_s": {"load": t_loaded - t_start, **{k[:-2]: v for k, v in mapped.map_timings.items()},
                     "map": t_mapped - t_refs, "warmup": t_warm - t_mapped, "evaluate": evaluate_s,
                     "command": (t_loaded - t_start) + (t_done - t_refs)},
        "images_per_s": n / evaluate_s,
        "command_images_per_s": n / ((t_loaded - t_start) + (t_done - t_refs)),
        "float_images_per_s": float_ips,
        "engine": {"seconds": engine_s, "share_of_evaluate": engine_s / evaluate_s, "exact_product_s": exact_s,
                   "effective_macs": macs, "effective_macs_per_s": engine_rate, "lossless_calls": lossless,
                   "bit_serial_calls": bit_serial},
        "gemm_macs_per_s": {k: v for k, v in gemm.items() if k != "best"},
        "best_gemm": {"dtype": best_dtype, "macs_per_s": best_rate},
        "ratio": engine_rate / best_rate,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "gpu_peak_bytes": int(gpu_peak),
    }
