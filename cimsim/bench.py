"""The crossbar engine benchmark (``cimsim bench``): effective MAC/s against the machine's float32 GEMM.

Standard case (issue 4): in_features K = 1152 (3x3x128), out_features N = 128, batch 1024, 8-bit unsigned
inputs streamed by 1-bit DACs (8 cycles), 8-bit signed weights in 2-bit cells (4 slices, offset
mapping), 128x128 arrays, an 8-bit SAR ADC per column per cycle with a calibrated range, ReRAM with
programming noise 5 % and read noise 2 % of the conductance range. Inputs and weights are uniform
random integers over their full ranges (seed 0); the ADC is calibrated on a separate batch of 256.

``effective_macs_per_s`` = batch x K x N x cycles x slices / wall seconds of one engine call;
``gemm_macs_per_s`` = batch x K x N / seconds of a float32 ``torch.matmul`` of that shape, measured in the
same run before the engine and again after it (best of 30 after a warm-up, each time; the faster of the
two counts); ``ratio`` = the first over the second (the engine's best of ``repeats`` calls after a
full-batch warm-up); ``peak_memory_bytes`` = the peak of memory allocated during that warm-up call (the
first at full size), which is not timed because tracing allocations slows it: numpy's buffers as
tracemalloc sees them, or the growth of the process's peak resident memory where tracemalloc is blind
(torch on the CPU); plus ``torch.cuda.max_memory_allocated`` on a GPU. ``cpu_s`` = the host CPU seconds
of the best call, all threads (``time.process_time``): unlike the wall time, little moved by other jobs
on a shared machine. ``product`` = the CPU engine's product in the timed calls (``amx``: AMX tiles, ``tables``,
or None: BLAS; :mod:`cimsim.kernels_amx`).
"""

from __future__ import annotations

import platform
import resource
import time
import tracemalloc

import numpy as np

from cimsim.crossbar import Crossbar, CrossbarSpec
from cimsim.devices.converters import SarADC
from cimsim.devices.reram import ReRAM

STANDARD = {"in_features": 1152, "out_features": 128, "batch": 1024, "input_bits": 8, "dac_bits": 1,
            "weight_bits": 8, "cell_bits": 2, "signed": "offset", "rows": 128, "cols": 128, "adc_bits": 8,
            "adc_range": "calibrated", "prog_sigma_frac": 0.05, "read_sigma_frac": 0.02, "calibration_batch": 256}


def _rss_bytes() -> int:
    """Current resident memory of this process (Linux /proc), 0 where unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def gemm_macs_per_s(m: int, k: int, n: int, repeats: int = 30, device: str = "cpu") -> float:
    import torch

    a = torch.rand(m, k, device=device)
    b = torch.rand(k, n, device=device)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        torch.matmul(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return m * k * n / best


def run(batch: int | None = None, backend: str = "numba", device: str = "cpu", repeats: int = 1) -> dict:
    cfg = dict(STANDARD)
    if batch is not None:
        cfg["batch"] = batch
    rng = np.random.default_rng(0)
    K, N, B = cfg["in_features"], cfg["out_features"], cfg["batch"]
    W = rng.integers(-(1 << (cfg["weight_bits"] - 1)), 1 << (cfg["weight_bits"] - 1), size=(N, K))
    x = rng.integers(0, 1 << cfg["input_bits"], size=(B, K))
    x_cal = rng.integers(0, 1 << cfg["input_bits"], size=(cfg["calibration_batch"], K))
    spec = CrossbarSpec(rows=cfg["rows"], cols=cfg["cols"], cell_bits=cfg["cell_bits"],
                        weight_bits=cfg["weight_bits"], input_bits=cfg["input_bits"], dac_bits=cfg["dac_bits"],
                        signed=cfg["signed"],
                        cell=ReRAM(prog_sigma_frac=cfg["prog_sigma_frac"], read_sigma_frac=cfg["read_sigma_frac"]),
                        readout=SarADC(bits=cfg["adc_bits"]), adc_range=cfg["adc_range"])
    xb = Crossbar(W, spec, seed=0, backend=backend, device=device)   # validates backend and device
    # the reference is measured before any engine call and again after the timed calls, and the faster of the
    # two counts: on a shared machine either reading alone can come out low, which would flatter the ratio
    gemm = gemm_macs_per_s(B, K, N, repeats=30, device=device)
    xb.calibrate(x_cal)
    xb(x[:8])  # warm-up (compilation, caches)
    # the first full-size call measures the memory: numpy buffers (tracemalloc) or, for allocators it cannot
    # see (torch on the CPU), the growth of the process's peak resident memory during the call; plus the GPU's
    # own peak. It is not timed: tracing allocations slows every Python allocation.
    cuda = device.startswith("cuda")
    if cuda:
        import torch
        torch.cuda.reset_peak_memory_stats()
    rss_before = _rss_bytes()
    tracemalloc.start()
    xb(x)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    host = max(traced, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before)
    peak = host + (torch.cuda.max_memory_allocated() if cuda else 0)
    best = cpu = float("inf")
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        xb(x)  # returns a numpy array, so the GPU work has finished when it returns
        best = min(best, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    gemm = max(gemm, gemm_macs_per_s(B, K, N, repeats=30, device=device))
    cycles = -(-cfg["input_bits"] // cfg["dac_bits"])
    effective = B * K * N * cycles * xb.n_slices / best
    return {"effective_macs_per_s": effective, "gemm_macs_per_s": gemm, "ratio": effective / gemm,
            "peak_memory_bytes": int(peak), "wall_s": best, "cpu_s": cpu, "backend": backend, "device": device,
            # the CPU engine's product in the timed calls ("amx", "tables" or None: BLAS), cimsim.kernels_amx
            "product": getattr(xb._cpu, "last_product", None) if backend == "numba" else None,
            "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs",
            "config": {**cfg, "cycles": cycles, "slices": xb.n_slices, "arrays": xb.arrays}}


def _point_report(i: int):
    """A report the size of a LeNet-5 run's (5 layers, ~20 figures each, 14 components, its config): the sweep
    file benchmark measures the file, not the engine, so the figures are made up (deterministic in ``i``)."""
    from cimsim.report import Report

    rng = np.random.default_rng(i)
    layers = [{"name": f"layer{j}", "kind": "Conv2d" if j < 2 else "Linear",
               **{f"figure_{k}": float(v) for k, v in enumerate(rng.random(20))}} for j in range(5)]
    components = {f"component_{k}": float(v) for k, v in enumerate(rng.random(14))}
    return Report(accuracy=float(rng.random()), digital_accuracy=0.9065, energy_j=2e-6, latency_s=1e-5,
                  throughput_inf_per_s=1e5, area_m2=8.5e-5, layers=layers, components=components,
                  config={"arch": "isaac", "arch_params": {"adc_bits": 1 + i % 8, "rows": 128}, "limit": 10000},
                  n_examples=10000)


def sweep_file(points: int = 1000, folder: str | None = None) -> dict:
    """Append ``points`` points to a new sweep file (in a temporary folder inside ``folder``, removed after)
    through :func:`cimsim.sweepfile.append`, as a sweep does: wall seconds of each append (the first and last
    100, the largest: a fold), the final fold, and the file's size. An append's cost must not grow with the
    file (issue 14, 8c)."""
    import tempfile
    from pathlib import Path

    from cimsim import sweepfile

    times = []
    with tempfile.TemporaryDirectory(dir=folder, prefix="cimsim-bench-sweep-") as d:
        path = sweepfile.create(Path(d) / "bench.h5", {"model": "bench"})
        for i in range(points):
            point = sweepfile.Point.make("isaac", {"adc.bits": 1 + i % 8, "rows": 64 + i}, 0)
            report = _point_report(i)
            t0 = time.perf_counter()
            sweepfile.append(path, point, report)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sweepfile.fold(path)
        fold_s = time.perf_counter() - t0
        size = path.stat().st_size
    k = min(100, points)
    return {"points": points, "append_s_first": float(np.mean(times[:k])), "append_s_last": float(np.mean(times[-k:])),
            "append_s_median": float(np.median(times)), "append_s_max": float(max(times)),
            "total_s": float(sum(times) + fold_s), "final_fold_s": fold_s, "file_bytes": int(size),
            "machine": platform.processor() or platform.machine()}
