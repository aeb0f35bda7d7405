"""The crossbar engine benchmark (``cimsim bench``): effective MAC/s against the machine's float32 GEMM.

Standard case (issue 4): in_features K = 1152 (3x3x128), out_features N = 128, batch 1024, 8-bit unsigned
inputs streamed by 1-bit DACs (8 cycles), 8-bit signed weights in 2-bit cells (4 slices, offset
mapping), 128x128 arrays, an 8-bit SAR ADC per column per cycle with a calibrated range, ReRAM with
programming noise 5 % and read noise 2 % of the conductance range. Inputs and weights are uniform
random integers over their full ranges (seed 0); the ADC is calibrated on a separate batch of 256.

``effective_macs_per_s`` = batch x K x N x cycles x slices / wall seconds of one engine call (on a GPU, the
call a mapped network makes, :meth:`Crossbar.call_device`: inputs already on the GPU, outputs left there, timed
between two ``torch.cuda.synchronize``; the call on numpy arrays, with its host transfers and the inputs' check,
is ``host_call``); ``gemm_macs_per_s`` = batch x K x N / seconds of a float32 ``torch.matmul`` of that shape,
measured in the same run before the engine and again after it (best of 30 after a warm-up, each time; the faster
of the two counts); ``ratio`` = the first over the second (the engine's best of ``repeats`` calls after a
full-batch warm-up). The device's best dense GEMM, as ``cimsim bench --model`` measures it (issue 19: the engine
against the device's dense rate): ``device_gemm`` (float32, bf16 where the device multiplies it; TF32 and int8
on a GPU; at a fixed shape large enough to reach the device's rate, :data:`GEMM_SHAPE` / :data:`GEMM_SHAPE_GPU`),
``best_gemm`` and ``ratio_best`` = ``effective_macs_per_s`` over that best rate. ``peak_memory_bytes`` = the peak of memory allocated during that warm-up call (the
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


#: the fixed GEMM shapes of the device reference, large enough to reach the device's dense rate: a CPU reaches it
#: at 4096x1024x1024; an H200 needs 8192^3 for its bf16 peak (788 TFLOP/s measured on the device machine, 2026-10-28) (est.)
GEMM_SHAPE = (4096, 1024, 1024)
GEMM_SHAPE_GPU = (8192, 8192, 8192)


def device_gemm_rates(device: str = "cpu", shape: tuple[int, int, int] | None = None, repeats: int = 10) -> dict:
    """Dense GEMM MAC/s of ``device`` at ``shape`` by dtype, and the best: {"float32": r, ..., "best": (dtype, r)}.

    float32 everywhere; bf16 where torch multiplies it on that device; on a GPU also TF32 (float32 inputs on
    tensor cores) and int8 (``torch._int_mm``, int32 out). A dtype the device cannot multiply, or multiplies at
    less than half float32's rate on a small probe (emulated), is left out."""
    import torch

    m, k, n = shape or (GEMM_SHAPE_GPU if device.startswith("cuda") else GEMM_SHAPE)
    rates = {"float32": gemm_macs_per_s(m, k, n, repeats=repeats, device=device)}
    cuda = device.startswith("cuda")
    if cuda:
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            rates["tf32"] = gemm_macs_per_s(m, k, n, repeats=repeats, device=device)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before
    # a quarter-size probe first: a dtype the device emulates (bf16 on CPUs without it) can run at a hundredth of
    # float32's rate, and measuring it at full size would take minutes
    probe = (m // 4, k, n // 4)
    f32_probe = 0.0 if cuda else gemm_macs_per_s(*probe, repeats=2, device=device)
    for name, dtype in (("bf16", torch.bfloat16), ("int8", torch.int8)):
        if name == "int8" and not cuda:
            continue   # torch's CPU int8 GEMM is not a dense-rate kernel
        try:
            if not cuda and _typed_gemm(*probe, dtype, device, 1) < 0.5 * f32_probe:
                continue   # not this device's fast product
            rates[name] = _typed_gemm(m, k, n, dtype, device, repeats)
        except (RuntimeError, NotImplementedError):
            pass
    best = max(rates.items(), key=lambda kv: kv[1])
    return {**rates, "best": best}


def _typed_gemm(m: int, k: int, n: int, dtype, device: str, repeats: int) -> float:
    import torch

    if dtype == torch.int8:
        a = torch.randint(-128, 128, (m, k), dtype=dtype, device=device)
        b = torch.randint(-128, 128, (k, n), dtype=dtype, device=device)
        mm = torch._int_mm
    else:
        a = torch.rand(m, k, device=device).to(dtype)
        b = torch.rand(k, n, device=device).to(dtype)
        mm = torch.matmul
    cuda = device.startswith("cuda")
    mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        mm(a, b)
        if cuda:
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
    cycles = -(-cfg["input_bits"] // cfg["dac_bits"])
    macs = B * K * N * cycles * xb.n_slices
    host_call = None
    if cuda:   # the engine as a mapped network calls it: inputs already on the GPU, outputs left there
        host_call = {"wall_s": best, "cpu_s": cpu, "effective_macs_per_s": macs / best}
        xt = torch.as_tensor(x, dtype=torch.float32, device=xb.torch_device)
        xb.call_device(xt)
        best = cpu = float("inf")
        for _ in range(repeats):
            torch.cuda.synchronize()
            t, c = time.perf_counter(), time.process_time()
            xb.call_device(xt)
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
            cpu = min(cpu, time.process_time() - c)
        xb.ledger   # the device calls' events counted (as the network path does after its calls)
    gemm = max(gemm, gemm_macs_per_s(B, K, N, repeats=30, device=device))
    rates = device_gemm_rates(device)
    best_dtype, best_rate = rates.pop("best")
    effective = macs / best
    return {"effective_macs_per_s": effective, "gemm_macs_per_s": gemm, "ratio": effective / gemm,
            "device_gemm": {"shape": list(GEMM_SHAPE_GPU if cuda else GEMM_SHAPE), "macs_per_s": rates},
            "best_gemm": {"dtype": best_dtype, "macs_per_s": best_rate}, "ratio_best": effective / best_rate,
            "host_call": host_call,
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
