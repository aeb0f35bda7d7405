"""Issue 19's GPU A/B: the one-kernel path (``TorchTile.GEMM_DEVICES = ("cuda",)``) against the eager path on
ResNet-20 on ISAAC, with and without programming and read noise, in one process.

    PYTHONPATH=$PWD python docs/bench_one_kernel.py [IMAGES] [--full]

Each run is ``cimsim.bench_model.run_model("resnet20", "isaac", "fashion-mnist", limit=IMAGES, batch_size=1024,
calibration=512, backend="torch", device="cuda")`` (IMAGES default 4,096); the noisy runs set
``cell.prog_sigma_frac = 0.05`` and ``cell.read_sigma_frac = 0.02`` (issue 19's target case: ISAAC's own ReRAM
defaults have neither). Order: noisy one-kernel (its first batch compiles the kernel), noisy eager, noisy one-kernel
again (warm), clean one-kernel, clean eager. ``--full``: one noisy one-kernel run over the whole test set. One
``RESULT`` line per run: name and a JSON object with the wall seconds, the kernel's calls in that run
(``one_kernel_calls``: 0 means every tile took the eager path), the GPU's peak memory, accuracy, images/s, phases
and the engine's effective MAC/s. Clean pairs must be equal. Noisy pairs agree to within a few images: ISAAC's
noisy levels sit on the grid of exact sums (``cimsim.crossbar.exact_grid``, 2**-15 of a level), which both the eager
path's two bf16 parts and the kernel's two fp16 parts hold exactly, and both draw the same normals; what is left is
each conversion's noise sigma, summed in the kernel and in torch on the eager path, whose last bits can differ and
move a code on rare occasions (1 output in 98,304 of a noisy ISAAC tile with libdevice's accurate normals, 0 with the
SFU's; 2 images of 4,096 on ResNet-20: BENCHMARKS.md, the eighth session's section).
"""
import json
import sys
import time

import torch

from cimsim import kernels_triton
from cimsim.bench_model import run_model
from cimsim.crossbar_torch import TorchTile

NOISE = {"cell.prog_sigma_frac": 0.05, "cell.read_sigma_frac": 0.02}   # issue 19's target: both noises on


def main(argv: list[str]) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("bench_one_kernel: needs a CUDA device")
    images = int(next((a for a in argv if a.isdigit()), 4096))
    calls = {"n": 0}
    kernel = kernels_triton.planes_gemm_adc

    def counted(*args, **kwargs):
        calls["n"] += 1
        return kernel(*args, **kwargs)

    kernels_triton.planes_gemm_adc = counted
    runs = [("noisy one-kernel", ("cuda",), NOISE), ("noisy eager", (), NOISE),
            ("noisy one-kernel again", ("cuda",), NOISE), ("clean one-kernel", ("cuda",), None),
            ("clean eager", (), None)]
    if "--full" in argv:
        images, runs = None, [("whole test set, noisy one-kernel", ("cuda",), NOISE)]
    for name, devices, sets in runs:
        TorchTile.GEMM_DEVICES = devices
        calls["n"] = 0
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        r = run_model("resnet20", "isaac", "fashion-mnist", limit=images, batch_size=1024, calibration=512,
                      backend="torch", device="cuda", sets=sets)
        row = {"wall_s": round(time.perf_counter() - t0, 2), "one_kernel_calls": calls["n"],
               "gpu_peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2),
               "accuracy": r["accuracy"], "images": r["images"], "images_per_s": round(r["images_per_s"], 1),
               "phases_s": {k: round(v, 2) for k, v in r["phases_s"].items()},
               "engine_tmac_per_s": round(r["engine"]["effective_macs_per_s"] / 1e12, 2),
               "best_gemm": r["best_gemm"]}
        print("RESULT", name, json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
