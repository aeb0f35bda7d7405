"""``cimsim bench``: the crossbar engine's standard case against the machine's GEMM."""

from __future__ import annotations

from cimsim.cli.common import add_command, batch_size, emit_json, positive_int


def run(args) -> int:
    from cimsim import bench

    r = bench.run(batch=args.batch, backend=args.backend, device=args.device, repeats=args.repeat)
    if args.json:
        emit_json(r)
    else:
        print(f"crossbar engine ({r['backend']}, {r['device']}): {r['effective_macs_per_s'] / 1e9:.2f} G effective MAC/s, "
              f"{r['wall_s']:.3f} s per call")
        print(f"float32 GEMM (torch.matmul):  {r['gemm_macs_per_s'] / 1e9:.2f} G MAC/s")
        print(f"ratio {r['ratio']:.3f}; peak memory {r['peak_memory_bytes'] / 2**20:.1f} MiB")
    return 0


def register(sub) -> None:
    sp = add_command(sub, "bench", "benchmark the crossbar engine against the machine's float32 GEMM", run,
             desc="Run the engine's standard case (K=1152, N=128, batch 1024, 8-bit inputs and weights, "
                  "2-bit ReRAM cells with noise, 8-bit calibrated SAR ADC) and compare with float32 GEMM.")
    sp.add_argument("--backend", default="numba", choices=["numba", "torch"], help="engine backend (default numba)")
    sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default cpu)")
    sp.add_argument("--batch", type=batch_size, help="batch size (default 1024, the standard case)")
    sp.add_argument("--repeat", type=positive_int, default=3, help="timed calls; the best counts (default 3)")
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
