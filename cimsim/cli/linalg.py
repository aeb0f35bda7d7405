"""``cimsim linalg bench``: the inversion circuit and RePAST's refinement against numpy on random matrices."""

from __future__ import annotations

import argparse
import math
import sys
import time

from cimsim.cli.common import add_command, bounded_int, emit_json, nonneg_int, positive_int
from cimsim.errors import ConfigError


def conds(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected condition numbers >= 1 separated by commas, got {text!r}") from None
    if not values or any(not (v >= 1 and v < 1e12) for v in values):
        raise argparse.ArgumentTypeError(f"expected condition numbers in [1, 1e12) separated by commas, got {text!r}")
    return values


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
        raise ConfigError(f"--matrix {path}: cannot read a matrix from it ({' '.join(str(exc).split())[:120]}); "
                          "give a .npy, .csv or whitespace-separated text file of numbers") from None
    return A


def run(args) -> int:
    import numpy as np

    from cimsim import linalg as L

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
        one, own, pred, pred_own, its, fin, t_np, e_solve, t_solve, e_it, t_it, e_tot, t_tot, conv = ([] for _ in range(14))
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
                               seed=args.seed + t, reference=ref)
            its.append(r.iterations)
            fin.append(r.rel_error)
            conv.append(r.converged)
            e_it.append(r.cost_per_iteration.energy_j)
            t_it.append(r.cost_per_iteration.time_s)
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
            row.update({"target_bits": args.target_bits, "refine_iterations_max": int(max(its)),
                        "refine_iterations_mean": float(np.mean(its)), "refine_rel_error_max": float(np.max(fin)),
                        "refine_converged": bool(all(conv)),
                        "refine_time_per_iteration_s": float(np.mean(t_it)),
                        "refine_energy_per_iteration_j": float(np.mean(e_it)),
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
    print(f"{args.op} on the {args.bits}-bit inversion circuit ({circuit.size}x{circuit.size} array), then refined to "
          f"{args.target_bits} bits; {src}")
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
                     "(cimsim.linalg.theory); then the refinement's steps, final error, time and energy.")
    sp.add_argument("action", choices=["bench"], help="what to do (bench)")
    sp.add_argument("--size", type=bounded_int(1, 4096, "the array holds at most 4096 rows"), default=16,
                    help="matrix size n (default 16)")
    sp.add_argument("--cond", type=conds, default=[2.0, 10.0, 100.0], metavar="K[,K...]",
                    help="condition numbers of the random symmetric positive-definite matrices (default 2,10,100)")
    sp.add_argument("--matrix", help="bench this matrix instead (.npy, .csv or whitespace-separated text)")
    sp.add_argument("--op", choices=["solve", "inv"], default="solve", help="solve A x = b (default) or invert A")
    sp.add_argument("--trials", type=positive_int, default=5, help="random matrices per condition number (default 5)")
    sp.add_argument("--bits", type=bounded_int(2, 16, "converter resolution"), default=8,
                    help="matrix, DAC and ADC bits of the circuit (default 8)")
    sp.add_argument("--array", type=bounded_int(1, 4096, "our bound"), default=128,
                    help="inversion array size (default 128)")
    sp.add_argument("--target-bits", type=bounded_int(1, 40, "float64 carries 52"), default=16,
                    help="refinement target: relative error <= 2**-B (default 16)")
    sp.add_argument("--max-iter", type=bounded_int(1, 1000, "our bound"), default=60,
                    help="refinement steps at most (default 60)")
    sp.add_argument("--normal", action="store_true",
                    help="solve the normal equations A^T A x = A^T b (matrices the circuit cannot settle on)")
    sp.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
