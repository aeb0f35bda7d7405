"""High-precision solutions from a low-precision inversion circuit: RePAST's scheme, made robust.

RePAST: arXiv 2210.15255; docs/references.md#repast.

The INV circuit (:class:`~cimsim.linalg.circuit.ProgrammedInverter`, 8-bit) and a high-precision VMM crossbar
(:class:`~cimsim.linalg.vmm.VmmArray`, the matrix bit-sliced to ``vmm_spec.weight_bits``, 24 by default) both hold
``A``. Each step settles the circuit once on the residual and runs its output once through the VMM:

    d_k = INV(r_k)        one settling: an ``output_bits`` slice of the solution (auto-ranged ADC codes)
    w_k = VMM(d_k)        = A_hi d_k exactly (d_k is an ADC code times a scale: ``output_bits + 1`` input bits)

``method="richardson"`` is RePAST's loop as written (its Taylor expansion of ``A^-1 = (A_lo + (A_hi - A_lo))^-1``
around ``A_lo^-1``, the bit-slicing of b and x): ``x += d_k``, ``r -= w_k``. Each step multiplies the error by
``I - A_lo^-1 A_hi`` plus the converters' rounding, so it converges iff the spectral radius of that matrix is below 1
(:func:`cimsim.linalg.theory.refinement_rate`), the bits per step being ``-log2`` of the one-settling error
(:func:`~cimsim.linalg.theory.error_budget`'s ``"total"``, which grows as kappa). At kappa 100 the 8-bit matrix's
error can push an eigenvalue of ``A_lo^-1 A`` past 2 (one 64x64 system in 20): the loop stalls.

``method="gcr"`` (default) keeps the same two analog operations per step and adds a small digital unit: the
generalized conjugate residual method (Eisenstat, Elman & Schultz, SIAM J. Numer. Anal. 20, 345, 1983;
docs/references.md#gcr) with the
INV circuit as a right preconditioner, flexible (the directions are the circuit's actual outputs, rounding and
all) and truncated to the last ``window`` directions:

    p, q = d_k, w_k;  for each kept (p_i, q_i), ||q_i|| = 1:  beta = q_i . q;  q -= beta q_i;  p -= beta p_i
    p, q = p / ||q||, q / ||q||;   alpha = q . r_k;   x += alpha p;   r -= alpha q

Since ``q_i = A_hi p_i`` by linearity, ``r`` stays the exact residual of ``A_hi``, and each step minimises it over
the kept directions: ``||r_{k+1}|| <= sqrt(1 - c^2 / ||C||^2) ||r_k||`` with ``C = A_hi A_lo^-1`` and ``c`` the
smallest eigenvalue of its symmetric part (:func:`~cimsim.linalg.theory.minres_rate`; the bound of a linear
preconditioner), so it converges whenever ``c > 0``: the programmed matrix need only keep the preconditioned
operator's field of values in the right half-plane, not within the unit disc around 1. The extra work per step
is ``window + 2`` dot products and ``2 window + 4`` vector updates of length ``n`` (digital, costed below); no
extra settling or VMM.

Systems wider than one array (``n > circuit.size``): the INV circuits hold the diagonal blocks of ``A``
(:class:`BlockInverter`, a block-Jacobi preconditioner, all blocks settling at once) and the VMM crossbars all of
``A``, one column stripe per block so that each block's ADC codes enter at their own scale; GCR then refines the
whole system (RePAST partitions large matrices into array-size blocks too). Its convergence then depends on how
strongly the blocks couple (``minres_rate`` of the block preconditioner), and it keeps more directions by default.

Both methods stop when the last settling's output falls below ``2**-(target_bits+1)`` of the solution (the
hardware's estimate of the remaining error, what it can see; GCR also asks the same of its last step times
``rho / (1 - rho)``, ``rho`` the residual's factor in that step: the geometric tail still to come, which a block
preconditioner's output underestimates), or after ``max_iter`` steps; the floor is the VMM
matrix's: relative error ``~ kappa 2**-24``.

Digital cost (est.): 32-bit integer multiply-accumulates (block floating point, one exponent per vector: the
residual shrinks by 2^16 and more, the mantissa keeps 31 bits of it) at Horowitz's 45 nm figures (ISSCC 2014,
Fig. 1.1.9: 3.1 pJ multiply + 0.1 pJ add) scaled to the circuit's node, on ``DIGITAL_LANES`` lanes per INV array
at ``DIGITAL_CLOCK_HZ``; a dot product adds a ``log2(lanes)``-cycle reduction. Both methods pay their two vector
updates of x and r. (The simulation itself keeps float64.)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from cimsim.blas import one_thread
from cimsim.devices.technology import energy_scale
from cimsim.errors import ConfigError
from cimsim.linalg.circuit import ZERO_COST, Cost, InversionCircuit, ProgrammedInverter, check_matrix, check_rhs
from cimsim.linalg.vmm import VmmArray, high_precision_spec
from cimsim.spec import CrossbarSpec

METHODS = ("gcr", "richardson")
# our choice: 4 kept directions. 20 seeded 64x64 kappa-100 systems need at most 16 / 12 / 11 / 10 steps with 0 / 1 /
# 4 / all kept (RePAST's loop: 39, one system in 20 never); 4 n-vectors of p and q each is a small buffer
GCR_WINDOW = 4
# our choice for systems wider than one array (block-Jacobi INV arrays): LeNet-5's damped 401-wide fc1 input factors
# (4 blocks; 6 refreshes x 3 right-hand sides) need <= 19 steps and reach 2^-18.8 or better with 16 kept, while 4 / 8
# kept let the stopping rule, which sees the block preconditioner's output, stop at 2^-15.2 / 2^-16.1
GCR_BLOCK_WINDOW = 16
# Horowitz, "Computing's energy problem", ISSCC 2014, Fig. 1.1.9 (45 nm): 32-bit integer multiply 3.1 pJ, add 0.1 pJ
DIGITAL_MUL_J_45NM = 3.1e-12
DIGITAL_ADD_J_45NM = 0.1e-12
DIGITAL_LANES = 128          # (est.) one multiply-accumulate lane per array column (128 x 128 arrays, ISAAC)
DIGITAL_CLOCK_HZ = 1e9       # (est.) 1 GHz digital logic at 32 nm


@dataclass
class RefineResult:
    """The solution, the steps it took and what each cost."""

    x: np.ndarray
    iterations: int
    converged: bool
    history: list = field(default_factory=list)   # per step: estimated and true relative error, cost
    cost: Cost = ZERO_COST
    program_cost: Cost = ZERO_COST

    @property
    def rel_error(self) -> float:
        return self.history[-1]["rel_error"] if self.history else float("nan")

    @property
    def cost_per_iteration(self) -> Cost:
        return self.cost.scaled(1.0 / max(self.iterations, 1))


def rel_error(x: np.ndarray, ref: np.ndarray) -> float:
    """Largest over columns of ``||x - ref||_2 / ||ref||_2``."""
    X, R = (x[:, None], ref[:, None]) if x.ndim == 1 else (x, ref)
    den = np.linalg.norm(R, axis=0)
    return float(np.max(np.linalg.norm(X - R, axis=0) / np.where(den > 0, den, 1.0)))


def refine_solve(A, b, circuit: InversionCircuit | None = None, vmm_spec: CrossbarSpec | None = None,
                 target_bits: int = 16, max_iter: int = 60, seed: int = 0, reference=None, method: str = "gcr",
                 window: int | None = None) -> RefineResult:
    """Solve ``A x = b`` to ``target_bits`` with the INV circuit and VMM crossbars (module docstring).

    ``method`` 'gcr' (default: the circuit as a preconditioner of a minimal-residual iteration over the last
    ``window`` directions; default :data:`GCR_WINDOW`, :data:`GCR_BLOCK_WINDOW` for systems wider than
    ``circuit.size``, which block-diagonal INV arrays precondition) or 'richardson' (RePAST's loop). ``reference`` (default ``numpy.linalg.solve(A, b)``)
    only scores each step's true error in the history.
    """
    circuit = InversionCircuit() if circuit is None else circuit
    if not isinstance(circuit, InversionCircuit):
        raise ConfigError(f"circuit must be a cimsim.linalg.InversionCircuit, got {type(circuit).__name__}")
    if isinstance(target_bits, bool) or not isinstance(target_bits, (int, np.integer)) or not 1 <= target_bits <= 40:
        raise ConfigError(f"target_bits must be an integer in 1..40, got {target_bits!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or not 1 <= max_iter <= 1000:
        raise ConfigError(f"max_iter must be an integer in 1..1000, got {max_iter!r}")
    if method not in METHODS:
        raise ConfigError(f"unknown refinement method {method!r}: choose one of {', '.join(METHODS)}")
    if window is None:
        n = np.shape(A)[0] if np.ndim(A) == 2 else 0
        window = GCR_WINDOW if n <= circuit.size else GCR_BLOCK_WINDOW
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or not 0 <= window <= 1000:
        raise ConfigError(f"window must be an integer in 0..1000 (kept GCR directions), got {window!r}")
    with one_thread():   # small dense algebra: one BLAS thread (cimsim.blas)
        return _refine(A, b, circuit, vmm_spec, target_bits, max_iter, seed, reference, method, int(window))


def digital_cost(n: int, columns: int, macs: int, adds: int, dots: int, node_nm: float, arrays: int = 1) -> Cost:
    """The digital unit's time and energy for ``macs`` multiply-accumulates and ``adds`` additions per element of
    ``columns`` length-``n`` vectors, ``dots`` of them reduced (module docstring); ``DIGITAL_LANES`` lanes per INV
    array (``arrays`` of them)."""
    k = energy_scale(45, node_nm)
    e = columns * n * (macs * (DIGITAL_MUL_J_45NM + DIGITAL_ADD_J_45NM) + adds * DIGITAL_ADD_J_45NM) * k
    lanes = DIGITAL_LANES * arrays
    per_vec = -(-n // lanes)
    cycles = columns * ((macs + adds) * per_vec + dots * int(np.ceil(np.log2(lanes))))
    return Cost(cycles / DIGITAL_CLOCK_HZ, e, {"digital": e})


def _cols(v: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.sum(v * u, axis=0)


class BlockInverter:
    """The diagonal blocks of ``A`` (``circuit.size`` wide) each programmed into an INV circuit of its own: a
    block-Jacobi preconditioner for systems wider than one array. The blocks settle at once: one :meth:`solve` takes
    the slowest block's time and the sum of their energies."""

    def __init__(self, A: np.ndarray, circuit: InversionCircuit, seed: int = 0):
        n, size = A.shape[0], circuit.size
        self.n = n
        self.blocks = [(i0, min(i0 + size, n)) for i0 in range(0, n, size)]
        # seeds of the blocks: seed, seed + 7919, ... (their own noise draws; 7919 is our choice, a prime)
        self.parts = [ProgrammedInverter(A[i0:i1, i0:i1], circuit, seed + 7919 * j)
                      for j, (i0, i1) in enumerate(self.blocks)]

    def solve(self, r: np.ndarray) -> tuple[np.ndarray, Cost]:
        out = np.zeros_like(r)
        costs = []
        for (i0, i1), p in zip(self.blocks, self.parts):
            out[i0:i1], c = p.solve(r[i0:i1])
            costs.append(c)
        return out, _parallel(costs)

    def program_cost(self) -> Cost:
        return _parallel([p.program_cost() for p in self.parts])


def _parallel(costs: list[Cost]) -> Cost:
    """Operations on arrays of their own, at once: the slowest one's time, the sum of the energies."""
    total = ZERO_COST
    for c in costs:
        total = total + c.scaled_energy_only()
    return Cost(max(c.time_s for c in costs), total.energy_j, total.parts)


class _Residual:
    """``A d`` on the VMM crossbars, one column stripe of A per INV block (its rows of the input carry that block's
    ADC codes at their own scale, the stripes' outputs added digitally; at once). Returns the input actually
    streamed (``d`` itself when it is ADC codes, as each block's are), so ``x`` and ``r`` stay consistent."""

    def __init__(self, A: np.ndarray, spec: CrossbarSpec, blocks: list, seed: int):
        self.blocks = blocks
        self.parts = [VmmArray(A[:, i0:i1], spec, seed=seed + 7919 * j, name="refine_vmm")
                      for j, (i0, i1) in enumerate(blocks)]

    def __call__(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, Cost]:
        used = np.empty_like(d)
        w = None
        costs = []
        for (i0, i1), v in zip(self.blocks, self.parts):
            used[i0:i1] = v.rounded_input(d[i0:i1])
            y, c = v(used[i0:i1])
            w = y if w is None else w + y
            costs.append(c)
        return used, w, _parallel(costs)


def _refine(A, b, circuit, vmm_spec, target_bits, max_iter, seed, reference, method, window) -> RefineResult:
    A = check_matrix(A)
    b = check_rhs(b, A.shape[0])
    ref = np.linalg.solve(A, b) if reference is None else np.asarray(reference, dtype=np.float64)
    # wider than one array: block-diagonal INV arrays precondition the whole system, the VMM holds all of A
    inverter = ProgrammedInverter(A, circuit, seed) if A.shape[0] <= circuit.size else BlockInverter(A, circuit, seed)
    # the corrections are ADC codes: output_bits + 1 signed input bits carry them exactly into the VMM
    in_bits = circuit.output_bits + 1 if circuit.output_bits is not None else 24
    spec = replace(high_precision_spec() if vmm_spec is None else vmm_spec, input_bits=in_bits)
    vmm = _Residual(A, spec, [(0, A.shape[0])] if isinstance(inverter, ProgrammedInverter) else inverter.blocks,
                    seed + 1)
    n = A.shape[0]
    B = b[:, None] if b.ndim == 1 else b
    x = np.zeros_like(B)
    r = B.copy()
    b_norm = np.linalg.norm(B, axis=0)
    b_norm = np.where(b_norm > 0, b_norm, 1.0)
    kept: list[tuple[np.ndarray, np.ndarray]] = []
    r_prev = b_norm
    total = ZERO_COST
    history = []
    converged = False
    for k in range(1, max_iter + 1):
        d, c_inv = inverter.solve(r)
        d, w, c_vmm = vmm(d)
        if method == "richardson":
            x = x + d
            r = r - w
            c_dig = digital_cost(n, B.shape[1], 0, 2, 0, circuit.node_nm, len(vmm.blocks))
        else:
            p, q = d.copy(), w.copy()
            for p_i, q_i in kept:                          # modified Gram-Schmidt against the kept directions
                beta = _cols(q_i, q)
                q -= beta * q_i
                p -= beta * p_i
            nq = np.sqrt(_cols(q, q))
            inv_nq = np.where(nq > 0, 1.0 / np.where(nq > 0, nq, 1.0), 0.0)
            p, q = p * inv_nq, q * inv_nq
            alpha = _cols(q, r)
            x = x + alpha * p
            r = r - alpha * q
            j = len(kept)                                  # directions it was orthogonalised against
            kept = (kept + [(p, q)])[-window:] if window > 0 else []
            # per element: j dots + 2j updates, the norm, 2 scalings, alpha's dot, the x and r updates
            c_dig = digital_cost(n, B.shape[1], 3 * j + 6, 0, j + 2, circuit.node_nm, len(vmm.blocks))
        step = c_inv + c_vmm + c_dig
        total = total + step
        x_max = np.max(np.abs(x), axis=0)
        x_max = np.where(x_max > 0, x_max, 1.0)
        est_d = np.max(np.abs(d), axis=0) / x_max
        r_norm = np.linalg.norm(r, axis=0)
        if method == "gcr":
            # the error left is about step * rho / (1 - rho), rho the residual's factor per step (geometric tail)
            rho = np.minimum(r_norm / np.where(r_prev > 0, r_prev, 1.0), 0.99)
            est_d = np.maximum(est_d, np.max(np.abs(alpha * p), axis=0) / x_max * rho / (1 - rho))
        r_prev = r_norm
        est = float(np.max(est_d))
        xs = x[:, 0] if b.ndim == 1 else x
        history.append({"iteration": k, "correction": est, "rel_error": rel_error(xs, ref),
                        "residual": float(np.max(np.linalg.norm(r, axis=0) / b_norm)),
                        "time_s": step.time_s, "energy_j": step.energy_j,
                        "inv_energy_j": c_inv.energy_j, "vmm_energy_j": c_vmm.energy_j,
                        "inv_time_s": c_inv.time_s, "vmm_time_s": c_vmm.time_s,
                        "digital_energy_j": c_dig.energy_j, "digital_time_s": c_dig.time_s})
        if est <= 2.0 ** -(target_bits + 1):
            converged = True
            break
    prog = inverter.program_cost()
    return RefineResult(x[:, 0] if b.ndim == 1 else x, len(history), converged, history, total, prog)
