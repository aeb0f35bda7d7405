"""``cimsim linalg bench``: the inversion circuit and RePAST's refinement against numpy on random matrices."""

from __future__ import annotations

import argparse
from argparse import SUPPRESS
import math
import sys
import time

from cimsim.cli.common import add_command, bounded_int, emit_json, nonneg_int, positive_int
from cimsim.errors import ConfigError


def conds(text: str) -> list[float]:
    items = text.split(",")
    if any(not t.strip() for t in items):
        raise argparse.ArgumentTypeError(f"expected condition numbers >= 1 separated by commas, got {text!r} (an empty "
                                         "item: drop the extra comma)")
    try:
        values = [float(t) for t in items]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected condition numbers >= 1 separated by commas, got {text!r}") from None
    if not values or any(not (v >= 1 and v < 1e12) for v in values):
        raise argparse.ArgumentTypeError(f"expected condition numbers in [1, 1e12) separated by commas, got {text!r}")
    return values


def conds_one(text: str) -> float:
    v = conds(text)
    if len(v) != 1:
        raise argparse.ArgumentTypeError(f"expected one condition number >= 1, got {text!r}")
    return v[0]


def _load_matrix(path: str):
    import numpy as np

    try:
        if path.endswith(".npy"):
            A = np.load(path)
        else:
            A = np.loadtxt(path, delimiter="," if path.endswith(".csv") else None, ndmin=2)
    except FileNotFoundError:
        raise ConfigError(f"--matrix {path}: no such file; give a .npy, .csv or whitespace-separated text "
                          "file") from None
    except (OSError, ValueError) as exc:
        ragged = None if path.endswith(".npy") else _ragged_line(path)
        if ragged is not None:
            raise ConfigError(f"--matrix {path}: {ragged}; give a matrix with the same count of numbers on every "
                              "row") from None
        raise ConfigError(f"--matrix {path}: cannot read a matrix from it ({' '.join(str(exc).split())[:120]}); "
                          "give a .npy, .csv or whitespace-separated text file of numbers") from None
    return A


def _ragged_line(path: str) -> str | None:
    """'line N has n numbers where line M has m' for the first data line of a text matrix whose count of fields
    differs from the first's (lines counted from 1, blank lines and '#' comments skipped as np.loadtxt skips
    them), else None."""
    sep = "," if path.endswith(".csv") else None
    first = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                count = len(line.split(sep))
                if first is None:
                    first = (n, count)
                elif count != first[1]:
                    return f"line {n} has {count} numbers where line {first[0]} has {first[1]}"
    except OSError:
        return None
    return None


NETWORKS = ("mlp", "lenet5", "vgg16", "resnet18")
# the zoo models at their datasets' shapes and recipe batches (workloads/train.py); VGG-16 / ResNet-18 at 224 x 224
# ImageNet shapes, batch 128 (est.: a common ImageNet batch per GPU)
_NET_SHAPES = {"mlp": ((1, 8, 8), 10, 64), "lenet5": ((1, 28, 28), 10, 128)}


def run_kfac_cost(args) -> int:
    from cimsim.report import fmt_si
    from cimsim.workloads import kfac, kfac_cost as KC

    if args.network in _NET_SHAPES:
        from cimsim.workloads import zoo

        shape, classes, batch = _NET_SHAPES[args.network]
        layers = KC.layer_shapes(zoo.build_for(args.network, shape, classes), shape)
    else:
        layers, batch = (KC.vgg16_imagenet() if args.network == "vgg16" else KC.resnet18_imagenet()), 128
    batch = args.batch or batch
    arch = KC.CrossbarArch(replicas=args.replicas, pipelined=not args.no_pipeline, inv_every=args.inv_every,
                           kappa=args.kappa)
    r = KC.step_cost(layers, batch, arch)
    if args.json:
        emit_json({"network": args.network, "batch": batch, "layers": len(layers),
                   "arch": {k: getattr(arch, k) for k in ("replicas", "pipelined", "layers_parallel", "input_bits",
                                                          "kappa", "inv_every")},
                   "gpu": KC.GpuSpec().__dict__, "paper": kfac.PAPER_RATIOS} | r)
        return 0
    print(f"K-FAC's second-order work per training step of {args.network} ({len(layers)} layers, batch {batch}), "
          f"128-wide blocks, inverses every {arch.inv_every} steps (amortised)")
    print(f"crossbars: {arch.replicas} replica(s) of each block's INV + VMM arrays "
          f"({r['array_sets']} array sets), {'pipelined' if arch.pipelined else 'not pipelined'}, "
          f"refinement on kappa-{arch.kappa:g} blocks; GPU: {KC.GpuSpec().name} (est. efficiencies: --help)")
    print(f"{'':22} {'time':>10} {'energy':>10} | {'inversion':>10} {'program':>10} {'precondition':>12}")
    rows = [("crossbars", r["crossbar_time_s"], r["crossbar_energy_j"], r["crossbar_parts_s"]),
            ("GPU, same blocks", r["gpu_time_s"], r["gpu_energy_j"], r["gpu_parts_s"]),
            ("GPU, whole factors", r["gpu_full_time_s"], r["gpu_full_energy_j"], r["gpu_full_parts_s"]),
            ("crossbars, whole", r["crossbar_full_time_s"], r["crossbar_full_energy_j"], r["crossbar_full_parts_s"])]
    for name, t, e, parts in rows:
        print(f"{name:22} {fmt_si(t, 's'):>10} {fmt_si(e, 'J'):>10} | {fmt_si(parts['inversion'], 's'):>10} "
              f"{fmt_si(parts.get('program', 0.0), 's'):>10} {fmt_si(parts['precondition'], 's'):>12}")
    print(f"speed-up / energy saving: {r['speedup_vs_gpu']:.3g}x / {r['energy_saving_vs_gpu']:.3g}x against the "
          f"GPU on the same blocks, {r['speedup_vs_gpu_full']:.3g}x / {r['energy_saving_vs_gpu_full']:.3g}x against "
          f"whole factors (RePAST: {kfac.PAPER_RATIOS['gpu_speedup']}x / {kfac.PAPER_RATIOS['gpu_energy']}x vs a GPU "
          "on large DNNs)")
    print(f"like for like on whole factors (block-diagonal INV arrays inside a whole-factor refinement, at most "
          f"{r['full_iterations_max']} steps, {r['full_array_tiles']} array tiles of 128 x 128): "
          f"{r['speedup_full_vs_gpu_full']:.3g}x / {r['energy_saving_full_vs_gpu_full']:.3g}x against the GPU on whole "
          "factors")
    print(f"second-order share of the GPU step (forward, backward, factors, inverses, products): "
          f"{100 * r['second_order_fraction']:.3g} % (blocks), {100 * r['gpu_full_second_order_fraction']:.3g} % "
          f"(whole factors); the whole step with only that share on the crossbars: {r['whole_step_speedup']:.3g}x")
    return 0


# each action's own options and their defaults (the options are parsed without defaults, so one given to the other
# action is seen and refused instead of silently ignored)
BENCH_OPTIONS = {"size": 16, "cond": [2.0, 10.0, 100.0], "matrix": None, "op": "solve", "trials": 5, "bits": 8,
                 "array": 128, "target_bits": 16, "max_iter": 60, "method": "gcr", "window": None, "normal": False,
                 "seed": 0}
KFAC_OPTIONS = {"network": "vgg16", "replicas": 1, "batch": None, "inv_every": 25, "kappa": 30.0, "no_pipeline": False}
ACTIONS = "'bench' (the inversion circuit and its refinement on random matrices) or 'kfac-cost' (one K-FAC step's " \
          "second-order work on crossbars against a GPU), e.g. 'cimsim linalg bench'"


def _options_of_the_action(args) -> None:
    """Refuse the other action's options (naming the action that takes them); fill this action's defaults."""
    if args.action is None:
        raise ConfigError(f"linalg needs an action: {ACTIONS}")
    own, other, other_name = ((KFAC_OPTIONS, BENCH_OPTIONS, "bench") if args.action == "kfac-cost" else
                              (BENCH_OPTIONS, KFAC_OPTIONS, "kfac-cost"))
    given = ["--" + k.replace("_", "-") for k in other if hasattr(args, k)]
    if given:
        one = len(given) == 1
        raise ConfigError(f"{', '.join(given)} {'is an option' if one else 'are options'} of 'cimsim linalg "
                          f"{other_name}', not of '{args.action}': drop {'it' if one else 'them'} or run "
                          f"'cimsim linalg {other_name}'")
    if args.action == "bench" and getattr(args, "method", "gcr") == "richardson" and hasattr(args, "window"):
        raise ConfigError("--window sets the directions GCR keeps; RePAST's loop (--method richardson) keeps none: "
                          "drop --window or use --method gcr")
    for k, v in own.items():
        if not hasattr(args, k):
            setattr(args, k, v)


def run(args) -> int:
    import numpy as np

    _options_of_the_action(args)

    if args.action == "kfac-cost":
        return run_kfac_cost(args)

    from cimsim import linalg as L

    from cimsim.linalg.refine import GCR_WINDOW

    args.window = GCR_WINDOW if args.window is None else args.window
    circuit = L.InversionCircuit(size=args.array, matrix_bits=args.bits, input_bits=args.bits, output_bits=args.bits)
    if args.matrix is not None:
        cases = [("file", [L.check_matrix(_load_matrix(args.matrix), circuit.size, what=f"--matrix {args.matrix}")])]
    else:
        if args.size > circuit.size:
            raise ConfigError(f"--size {args.size} is larger than the {circuit.size} x {circuit.size} inversion array: "
                              f"use --size <= {circuit.size} or --array {args.size}")
        cases = [(k, [L.random_matrix(args.size, k, seed=args.seed + t) for t in range(args.trials)])
                 for k in args.cond]
    rows = []
    for label, mats in cases:
        one, own, pred, pred_own, its, fin, t_np, e_solve, t_solve, e_it, t_it, e_tot, t_tot, conv, e_dig = \
            ([] for _ in range(15))
        for t, A in enumerate(mats):
            n = A.shape[0]
            rng = np.random.default_rng(10_000 + args.seed + t)
            b = np.eye(n) if args.op == "inv" else rng.standard_normal(n)
            t0 = time.perf_counter()
            ref = np.linalg.inv(A) if args.op == "inv" else np.linalg.solve(A, b)
            t_np.append(time.perf_counter() - t0)
            A_c, b_c = (A.T @ A, A.T @ b) if args.normal else (A, b)
            p = L.ProgrammedInverter(A_c, circuit, seed=args.seed + t)
            x, c = p.solve(b_c)
            one.append(L.rel_error(x, ref))
            # against the exact solution of the matrix the arrays hold: the circuit's own error
            own.append(L.rel_error(x, np.linalg.solve(p.A_programmed, b_c)))
            if b_c.ndim == 1:
                bud = L.error_budget(p, b_c, A_c)
                pred.append(bud["total"])
                pred_own.append(bud["own"])
            e_solve.append(c.energy_j)
            t_solve.append(c.time_s)
            if args.normal:
                continue
            r = L.refine_solve(A, b, circuit, target_bits=args.target_bits, max_iter=args.max_iter,
                               seed=args.seed + t, reference=ref, method=args.method, window=args.window)
            its.append(r.iterations)
            fin.append(r.rel_error)
            conv.append(r.converged)
            e_it.append(r.cost_per_iteration.energy_j)
            t_it.append(r.cost_per_iteration.time_s)
            e_dig.append(sum(h["digital_energy_j"] for h in r.history) / r.iterations)
            e_tot.append(r.cost.energy_j)
            t_tot.append(r.cost.time_s)
        row = {"cond": label if label == "file" else float(label), "n": int(mats[0].shape[0]), "trials": len(mats),
               "op": args.op, "bits": args.bits,
               "circuit_rel_error_median": float(np.median(one)), "circuit_rel_error_max": float(np.max(one)),
               "circuit_own_rel_error_median": float(np.median(own)),
               "circuit_time_s": float(np.mean(t_solve)), "circuit_energy_j": float(np.mean(e_solve)),
               "numpy_wall_s": float(np.mean(t_np))}
        if pred:   # rms over the trials, as the budget is an rms (cimsim.linalg.theory)
            row.update({"theory_rel_error_rms": float(np.sqrt(np.mean(np.square(pred)))),
                        "theory_own_rel_error_rms": float(np.sqrt(np.mean(np.square(pred_own)))),
                        "circuit_rel_error_rms": float(np.sqrt(np.mean(np.square(one)))),
                        "circuit_own_rel_error_rms": float(np.sqrt(np.mean(np.square(own))))})
        if its:
            row.update({"target_bits": args.target_bits, "method": args.method, "window": args.window,
                        "refine_iterations_max": int(max(its)),
                        "refine_iterations_mean": float(np.mean(its)), "refine_rel_error_max": float(np.max(fin)),
                        "refine_converged": bool(all(conv)),
                        "refine_time_per_iteration_s": float(np.mean(t_it)),
                        "refine_energy_per_iteration_j": float(np.mean(e_it)),
                        "refine_digital_energy_per_iteration_j": float(np.mean(e_dig)),
                        "refine_time_s": float(np.mean(t_tot)), "refine_energy_j": float(np.mean(e_tot))})
        rows.append(row)
    if args.json:
        emit_json({"circuit": {k: getattr(circuit, k) for k in ("size", "matrix_bits", "input_bits", "output_bits",
                                                                 "open_loop_gain", "offset_sigma_v", "gbw_hz",
                                                                 "opamp_power_w", "v_in_max_v")}
                   | {"cell": repr(circuit.cell)}, "results": rows})
        return 0
    from cimsim.report import fmt_si

    def lg(v):   # a relative error as 2^-k, easier to read in bits
        return f"2^{math.log2(v):.1f}" if v > 0 else "0"

    src = f"--matrix {args.matrix}" if args.matrix is not None else \
        f"{args.trials} random SPD matrices per condition number (seeds {args.seed}..{args.seed + args.trials - 1})"
    how = (f"GCR, {args.window} kept directions" if args.method == "gcr" else "RePAST's loop (Richardson)")
    print(f"{args.op} on the {args.bits}-bit inversion circuit ({circuit.size}x{circuit.size} array), then refined to "
          f"{args.target_bits} bits ({how}); {src}")
    print("one settling: 'vs A' against numpy on the float matrix, 'own' against the exact solution of the "
          "programmed matrix (the circuit's own error); medians, theory = first-order budget (rms)")
    head = f"{'cond':>6} {'n':>4} | {'vs A':>7} {'theory':>7} {'own':>7} {'theory':>7} {'time':>9} {'energy':>9}"
    if not args.normal:
        head += f" | {'steps':>5} {'refined':>8} {'time/step':>9} {'E/step':>9} {'time':>9} {'energy':>9}"
    print(head)
    for r in rows:
        c = r["cond"] if r["cond"] == "file" else f"{r['cond']:g}"
        line = (f"{c:>6} {r['n']:>4} | {lg(r['circuit_rel_error_median']):>7} "
                f"{lg(r['theory_rel_error_rms']) if 'theory_rel_error_rms' in r else '-':>7} "
                f"{lg(r['circuit_own_rel_error_median']):>7} "
                f"{lg(r['theory_own_rel_error_rms']) if 'theory_own_rel_error_rms' in r else '-':>7} "
                f"{fmt_si(r['circuit_time_s'], 's'):>9} {fmt_si(r['circuit_energy_j'], 'J'):>9}")
        if "refine_iterations_max" in r:
            line += (f" | {r['refine_iterations_max']:>5} {lg(r['refine_rel_error_max']):>8} "
                     f"{fmt_si(r['refine_time_per_iteration_s'], 's'):>9} "
                     f"{fmt_si(r['refine_energy_per_iteration_j'], 'J'):>9} "
                     f"{fmt_si(r['refine_time_s'], 's'):>9} {fmt_si(r['refine_energy_j'], 'J'):>9}")
            if not r["refine_converged"]:
                line += "  (not converged)"
        print(line)
    print("refinement: steps and refined error of the worst trial, costs averaged; --json for every field",
          file=sys.stderr)
    return 0


def register(sub) -> None:
    sp = add_command(sub, "linalg", "analog linear algebra: the crossbar inversion circuit and RePAST's refinement",
                     run, desc="Analog linear algebra on crossbars (cimsim.linalg). 'bench': solve or invert random "
                     "matrices of a given size and condition number on the closed-loop inversion circuit (Sun et al., "
                     "PNAS 2019) and with RePAST's refinement (arXiv 2210.15255). One settling's relative error is "
                     "given against numpy on the float matrix and against the exact solution of the matrix the "
                     "arrays hold (the circuit's own error), each beside its first-order prediction "
                     "(cimsim.linalg.theory); then the refinement's steps, final error, time and energy. 'kfac-cost': "
                     "time and energy of one K-FAC step's second-order work (block inversions amortised, "
                     "preconditioning products) on replicated, pipelined INV + VMM arrays against a GPU model, "
                     "on the same blocks and on whole factors, for the zoo MLP / LeNet-5 or VGG-16 / ResNet-18.")
    sp.add_argument("action", nargs="?", choices=["bench", "kfac-cost"],
                    help="bench: the circuit and the refinement on random matrices; kfac-cost: the cost of one "
                         "K-FAC training step's second-order work on RePAST-style crossbars against a GPU "
                         "(cimsim.workloads.kfac_cost; GPU: V100 FP32, 15.7 TFLOP/s, 300 W, 5 us per kernel, "
                         "GEMMs at 60 %%, inversions at 50 %% x n / (n + 1024) of peak, all est.)")
    b = sp.add_argument_group("bench options")
    b.add_argument("--size", type=bounded_int(1, 4096, "the array holds at most 4096 rows"), default=SUPPRESS,
                   help="matrix size n (default 16)")
    b.add_argument("--cond", type=conds, default=SUPPRESS, metavar="K[,K...]",
                   help="condition numbers of the random symmetric positive-definite matrices (default 2,10,100)")
    b.add_argument("--matrix", default=SUPPRESS,
                   help="bench this matrix instead (.npy, .csv or whitespace-separated text)")
    b.add_argument("--op", choices=["solve", "inv"], default=SUPPRESS, help="solve A x = b (default) or invert A")
    b.add_argument("--trials", type=positive_int, default=SUPPRESS,
                   help="random matrices per condition number (default 5)")
    b.add_argument("--bits", type=bounded_int(2, 16, "converter resolution"), default=SUPPRESS,
                   help="matrix, DAC and ADC bits of the circuit (default 8)")
    b.add_argument("--array", type=bounded_int(1, 4096, "our bound"), default=SUPPRESS,
                   help="inversion array size (default 128)")
    b.add_argument("--target-bits", type=bounded_int(1, 40, "float64 carries 52"), default=SUPPRESS,
                   help="refinement target: relative error <= 2**-B (default 16)")
    b.add_argument("--max-iter", type=bounded_int(1, 1000, "our bound"), default=SUPPRESS,
                   help="refinement steps at most (default 60)")
    b.add_argument("--method", choices=["gcr", "richardson"], default=SUPPRESS,
                   help="refinement: gcr (default: the circuit preconditions a minimal-residual iteration, "
                        "converges whenever the preconditioned operator's field of values is in the right "
                        "half-plane) or richardson (RePAST's loop: needs the spectral radius of I - A_lo^-1 A < 1)")
    b.add_argument("--window", type=bounded_int(0, 1000, "our bound"), default=SUPPRESS,
                   help="GCR: earlier directions kept for the orthogonalisation (default 4, "
                        "cimsim.linalg.refine.GCR_WINDOW); "
                        "0 keeps none: each step minimises the residual along its own direction only")
    b.add_argument("--normal", action="store_true", default=SUPPRESS,
                   help="solve the normal equations A^T A x = A^T b (matrices the circuit cannot settle on)")
    b.add_argument("--seed", type=nonneg_int, default=SUPPRESS, help="random seed (default 0)")
    k = sp.add_argument_group("kfac-cost options")
    k.add_argument("--network", choices=NETWORKS, default=SUPPRESS,
                   help="layers to price: the zoo's mlp (digits) or lenet5 (28x28), or VGG-16 / ResNet-18 at "
                        "224x224 (default vgg16)")
    k.add_argument("--replicas", type=bounded_int(1, 4096, "our bound"), default=SUPPRESS,
                   help="copies of each block's INV + VMM array set (default 1)")
    k.add_argument("--batch", type=bounded_int(1, 65536, "our bound"), default=SUPPRESS,
                   help="training batch (default: the recipe's, 128 for vgg16 / resnet18)")
    k.add_argument("--inv-every", type=bounded_int(1, 100000, "our bound"), default=SUPPRESS,
                   help="steps between inverse refreshes (default 25, as our K-FAC runs)")
    k.add_argument("--kappa", type=conds_one, default=SUPPRESS,
                   help="condition number of the damped blocks the refinement is measured on (default 30)")
    k.add_argument("--no-pipeline", action="store_true", default=SUPPRESS,
                   help="no pipelining of the refinement across right-hand sides")
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
