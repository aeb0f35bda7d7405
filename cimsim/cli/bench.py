"""``cimsim bench``: the crossbar engine's standard case, or a whole network, against the machine's GEMM."""

from __future__ import annotations

from cimsim.errors import ConfigError
from cimsim.cli import names
from cimsim.cli.common import (add_command, batch_size, bounded_int, emit_json, key_value, positive_int,
                               require_device)


def _eng(value: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:.2f} {unit}"


def run(args) -> int:
    if args.device == "cuda" and args.backend != "torch":
        raise ConfigError("--device cuda needs --backend torch")
    require_device(args.device)   # before a GEMM reference or a network is made on it
    if args.sweep_file is not None:
        for option, value in (("--model", args.model), ("--arch", args.arch), ("--dataset", args.dataset),
                              ("--set", args.set)):
            if value is not None:
                raise ConfigError(f"{option} does not go with --sweep-file (the sweep file benchmark); drop one")
        from cimsim import bench

        r = bench.sweep_file(args.sweep_file)
        if args.json:
            emit_json(r)
        else:
            n = min(100, r["points"])   # the averaging window of cimsim.bench.sweep_file
            print(f"sweep file, {r['points']} points appended: {1e3 * r['append_s_first']:.1f} ms per append over "
                  f"the first {n}, {1e3 * r['append_s_last']:.1f} ms over the last {n} (median "
                  f"{1e3 * r['append_s_median']:.1f} ms, largest {1e3 * r['append_s_max']:.0f} ms: a fold); "
                  f"{r['total_s']:.1f} s in all, {r['file_bytes'] / 2**20:.1f} MiB")
        return 0
    if args.model is None:
        for option, value in (("--arch", args.arch), ("--dataset", args.dataset), ("--limit", args.limit),
                              ("--set", args.set)):
            if value is not None:
                raise ConfigError(f"{option} needs --model (the whole-network benchmark); "
                                  "without --model, bench runs the single-layer standard case")
        return _standard(args)
    arch = args.arch or "isaac"
    dataset = args.dataset or "fashion-mnist"
    names.check(archs=arch, model=args.model, dataset=dataset, sets=args.set)   # before torch/numba load
    from cimsim import bench_model

    startup = bench_model.process_age_s()   # the process so far: interpreter, imports, checks (None: unknown)
    r = bench_model.run_model(args.model, arch, dataset, limit=args.limit, batch_size=args.batch,
                              calibration=args.calibration, backend=args.backend, device=args.device,
                              data_dir=args.data_dir, sets=dict(args.set or []), progress=None)
    r["phases_s"]["startup"] = startup
    r["phases_s"]["whole"] = None if startup is None else startup + r["phases_s"]["command"]
    if args.json:
        emit_json(r)
        return 0
    ph = r["phases_s"]
    print(f"{r['model']} on {r['arch']} ({r['dataset']}, {r['images']} images, batch {r['batch_size']}; "
          f"{r['backend']} on {r['device']}; {r['machine']})")
    print(f"  accuracy {100 * r['accuracy']:.2f} %")
    print(f"  load {ph['load']:.2f} s | map {ph['map']:.2f} s (prepare {ph['prepare']:.2f}, program "
          f"{ph['program']:.2f}, calibrate {ph['calibrate']:.2f}) | warm-up {ph['warmup']:.2f} s | evaluate {ph['evaluate']:.2f} s | "
          f"command {ph['command']:.2f} s"
          + ("" if ph["startup"] is None else
             f" | with the process's start (interpreter, imports) {ph['startup']:.2f} s: {ph['whole']:.2f} s"))
    print(f"  simulated: {r['images_per_s']:.0f} images/s evaluated, {r['command_images_per_s']:.0f} images/s "
          f"for the whole command; float network: {r['float_images_per_s']:.0f} images/s")
    e = r["engine"]
    print(f"  crossbars: {100 * e['share_of_evaluate']:.0f} % of the evaluation, "
          f"{_eng(e['effective_macs_per_s'], 'MAC/s')} effective"
          + (f" ({e['lossless_calls']} calls on the lossless integer path: one exact product in place of the bit "
             f"planes, so this rate is the simulation's, not a kernel's)" if e.get("lossless_calls") else "")
          + (f" ({e['bit_serial_calls']} calls on the bit-serial integer path: column values from tables of level "
             f"sums, so this rate is the simulation's, not a kernel's)" if e.get("bit_serial_calls") else ""))
    gemms = ", ".join(f"{k} {_eng(v, 'MAC/s')}" for k, v in r["gemm_macs_per_s"].items())
    print(f"  device GEMM: {gemms}; ratio {r['ratio']:.3f} against {r['best_gemm']['dtype']}")
    print(f"  peak memory: {r['peak_rss_bytes'] / 2**30:.2f} GiB resident"
          + (f", {r['gpu_peak_bytes'] / 2**30:.2f} GiB on the GPU" if r["gpu_peak_bytes"] else ""))
    return 0


def _standard(args) -> int:
    from cimsim import bench

    r = bench.run(batch=args.batch, backend=args.backend, device=args.device, repeats=args.repeat)
    if args.json:
        emit_json(r)
    else:
        product = {"amx": ", product on AMX tiles", "tables": ", product from tables"}.get(r.get("product"), "")
        where = " (inputs and outputs on the GPU)" if r["host_call"] else ""
        print(f"crossbar engine ({r['backend']}, {r['device']}{product}): {_eng(r['effective_macs_per_s'], 'MAC/s')} "
              f"effective, {1e3 * r['wall_s']:.2f} ms per call{where}")
        if r["host_call"]:
            h = r["host_call"]
            print(f"  from numpy arrays (host transfers, the inputs' check): {1e3 * h['wall_s']:.2f} ms per call, "
                  f"{_eng(h['effective_macs_per_s'], 'MAC/s')} effective")
        print(f"float32 GEMM of the same shape (torch.matmul): {_eng(r['gemm_macs_per_s'], 'MAC/s')}; "
              f"ratio {r['ratio']:.3f}")
        d = r["device_gemm"]
        rates = ", ".join(f"{k} {_eng(v, 'MAC/s')}" for k, v in d["macs_per_s"].items())
        print(f"device's dense GEMM ({'x'.join(map(str, d['shape']))}): {rates}; ratio {r['ratio_best']:.4f} "
              f"against {r['best_gemm']['dtype']}")
        print(f"peak memory {r['peak_memory_bytes'] / 2**20:.1f} MiB")
    return 0


def register(sub) -> None:
    sp = add_command(sub, "bench", "benchmark the crossbar engine (one layer, or a whole network with --model)", run,
             desc="Without --model: the engine's standard case (K=1152, N=128, batch 1024, 8-bit inputs and weights, "
                  "2-bit ReRAM cells with noise, 8-bit calibrated SAR ADC) against a float32 GEMM of the same shape "
                  "and the device's best dense GEMM (float32, bf16; TF32 and int8 on a GPU). With --model: "
                  "'cimsim run' timed phase by phase (load, map: prepare/program/calibrate, evaluate), images/s "
                  "beside the float network's own rate, and the crossbars' effective MAC/s against the device's "
                  "best dense GEMM (float32, bf16; TF32 and int8 on a GPU) measured in the same run.")
    sp.add_argument("--sweep-file", type=bounded_int(1, 100_000, "a sweep's point limit"), metavar="N",
                    help="benchmark the sweep file instead: append N points (LeNet-5-sized reports) to a new sweep "
                         "file in the system's temporary folder ($TMPDIR; removed after) and time each append: "
                         "whether an append's cost grows with the file")
    sp.add_argument("--model", help="benchmark this zoo network end to end (as 'cimsim run' runs it)")
    sp.add_argument("--arch", help="architecture for --model (default isaac)")
    sp.add_argument("--dataset", help="dataset for --model (default fashion-mnist)")
    sp.add_argument("--data-dir", help="directory with the dataset files (overrides $CIMSIM_DATA)")
    sp.add_argument("--limit", type=positive_int, metavar="N", help="with --model: only the first N test images")
    # the default: cimsim.sweep.DEFAULT_CALIBRATION (its source there)
    sp.add_argument("--calibration", type=positive_int, default=512, metavar="N",
                    help="with --model: training examples that calibrate ranges (default 512, as 'cimsim run')")
    sp.add_argument("--set", action="append", type=key_value, metavar="KEY=VALUE",
                    help="with --model: override an architecture parameter (repeatable)")
    sp.add_argument("--backend", default="numba", choices=["numba", "torch"], help="engine backend (default numba)")
    sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default cpu)")
    sp.add_argument("--batch", type=batch_size,
                    help="batch size (default 1024 for the standard case; with --model as 'cimsim run': 64 on the CPU, "
                         "sized to the GPU with --device cuda)")
    sp.add_argument("--repeat", type=positive_int, default=3, help="standard case: timed calls; the best counts (default 3)")
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
