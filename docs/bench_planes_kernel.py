"""Issue 19's GPU kernel study: where a noisy ResNet-20 batch spends its GPU time, and what the one kernel
(:func:`cimsim.kernels_triton.planes_gemm_adc`) costs per column value under other tiles and generators.

    PYTHONPATH=$PWD python docs/bench_planes_kernel.py [--profile] [--tiles]

``--profile``: ResNet-20 on ISAAC with 5 % programming and 2 % read noise, mapped on the GPU (512 calibration
images), warmed up by one evaluation of 4,096 test images (batch 1,024), then the same evaluation alone under
``torch.profiler`` (mapping, calibration and ``bench --model``'s GEMM references stay out of it); prints the wall
time, the GPU time and the 15 kernels with the most GPU time. ``--tiles``: the kernel
alone on ResNet-20's widest ISAAC layer shape (two row blocks of 128 rows, 128 columns, 16 one-bit cycles,
262,144 examples x positions, inputs below 2**12) for each (examples, columns, warps) tile, levels as int8, noisy
levels on the grid of exact sums as three int8 parts (the engine's choice since 2026-12-04) or two fp16 parts,
without and with read noise, with the options the engine takes there (power-of-two LSBs, 0/1 digits,
one read-noise variance per block); prints milliseconds per call (the median of
``triton.testing.do_bench``) and column values converted per second. Both by default.
"""
import json
import sys

import torch

from cimsim import kernels_triton

NOISE = {"cell.prog_sigma_frac": 0.05, "cell.read_sigma_frac": 0.02}


def profile() -> None:
    import time

    from torch.profiler import ProfilerActivity, profile as prof

    from cimsim import arch
    from cimsim.mappers.mapper import map_model
    from cimsim.networks import load_model_and_data, reference_kwargs

    spec = arch.get("isaac", **NOISE)
    model, meta, data, ckpt = load_model_and_data("resnet20", "fashion-mnist", None, arch=spec, overrides=NOISE)
    loader = data.loader("test", batch_size=1024, limit=4096)
    cal = data.loader("train", batch_size=1024, limit=512)
    mapped = map_model(model, spec, cal, seed=0, backend="torch", device="cuda", **reference_kwargs(meta, ckpt))
    mapped.evaluate(loader)                                     # compiles the kernels, touches the buffers
    torch.cuda.synchronize()
    with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        t = time.perf_counter()
        report = mapped.evaluate(loader)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t
    table = p.key_averages()
    gpu = sum(e.self_device_time_total for e in table) / 1e6
    print("RESULT profile", json.dumps({"images": report.n_examples, "wall_s": round(wall, 3),
                                         "gpu_s": round(gpu, 3), "images_per_s": round(report.n_examples / wall, 1),
                                         "accuracy": report.accuracy}))
    print(table.table(sort_by="self_device_time_total", row_limit=15, max_name_column_width=60), flush=True)


def tiles() -> None:
    from triton.testing import do_bench

    from cimsim.torch_products import fp16_split, int8_parts

    G, nb, R, C, T = 2, 262144, 128, 128, 16
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randint(0, 1 << 12, (G, nb, R), device="cuda", dtype=torch.int32, generator=gen)
    levels = torch.randint(0, 4, (G, R, C), device="cuda", generator=gen).float()
    noisy = levels + 0.15 * torch.randn(levels.shape, device="cuda", generator=gen)    # 5 % of a 2-bit window
    noisy = (noisy.clamp(0, 3) * 2 ** 15).round() / 2 ** 15        # the grid of exact sums at these shapes
    a8 = levels.to(torch.int8)
    a16 = torch.stack(fp16_split(noisy), dim=1).float()             # (G, 2, R, C): the fp16 parts' values
    a8x3, iscale = int8_parts(noisy, 1)                              # (G, 3, R, C) int8: the same sums, exactly
    var = torch.full((G, R), 2.0 ** -12, device="cuda")            # about (0.016)**2, on the grid of exact sums
    uniform = var[:, 0].contiguous()                                 # one variance per block: the count path
    shifts = torch.arange(T, device="cuda", dtype=torch.int32)
    masks = torch.ones(T, device="cuda", dtype=torch.int32)
    lo = torch.zeros(G, device="cuda")
    lsb = torch.full((G,), 2.0, device="cuda")
    w = 2.0 ** torch.arange(T, device="cuda", dtype=torch.float32)
    values = G * nb * C * T
    for name, a, v in (("int8 clean", a8, None), ("int8 noisy", a8, var), ("fp16x2 clean", a16, None),
                       ("fp16x2 noisy", a16, var), ("int8x3 clean", a8x3, None), ("int8x3 noisy", a8x3, var)):
        scale = iscale if a is a8x3 else 1.0
        for tile in ((64, 128, 8), (128, 128, 8), (64, 64, 4), (128, 64, 8), (32, 128, 4)):
            def call():   # as the engine calls it for 1-bit digits and power-of-two LSBs (not the outputs' fold)
                return kernels_triton.planes_gemm_adc(x, a, shifts, masks, lo, lsb, w, C, 256.0, v, 7, tiles=tile,
                                                      lsb_pow2=True, binary=True, uniform_var=uniform, iscale=scale)
            try:
                call()
                ms = do_bench(call, warmup=3, rep=30)
            except Exception as e:   # a tile the compiler refuses (registers, shared memory): reported, not fatal
                print("RESULT tile", json.dumps({"case": name, "tile": tile, "error": str(e)[:200]}))
                continue
            print("RESULT tile", json.dumps({"case": name, "tile": tile, "ms": round(ms, 3),
                                             "G_values_per_s": round(values / ms / 1e6, 1)}), flush=True)


if __name__ == "__main__":
    if not torch.cuda.is_available() or kernels_triton.triton is None:
        raise SystemExit("bench_planes_kernel: needs a CUDA device and Triton")
    both = not ({"--profile", "--tiles"} & set(sys.argv))
    if both or "--profile" in sys.argv:
        profile()
    if both or "--tiles" in sys.argv:
        tiles()
