"""High-precision solutions from a low-precision inversion circuit: RePAST's scheme.

RePAST: arXiv 2210.15255; docs/references.md#repast.

Iterative refinement with the solution and the right-hand side bit-sliced: the INV circuit
(:class:`~cimsim.linalg.circuit.ProgrammedInverter`, 8-bit) and a high-precision VMM crossbar
(:class:`~cimsim.linalg.vmm.VmmArray`, the matrix bit-sliced to ``vmm_spec.weight_bits``) hold ``A``:

    r_0 = b,  x_0 = 0
    d_k = INV(r_k)                       one settling: an ``output_bits`` slice of the solution, auto-ranged
    x_{k+1} = x_k + d_k                  digital accumulation of the slices
    r_{k+1} = r_k - VMM(d_k)             the residual; d_k is an ADC code times a scale, so the VMM is exact

``r_k`` is the exact residual of the VMM's matrix ``A_hi`` (24 bits by default): ``r_k = b - A_hi x_k``. Each
step multiplies the error by ``rho = ||I - A_lo^-1 A_hi||`` plus the circuit's output and input rounding
(``~ 2**-output_bits``), where ``A_lo`` is what the INV arrays hold: ``rho`` is the one-settling relative error
that :func:`cimsim.linalg.theory.error_budget` predicts (``"total"``, ``~ s_A ||A^-1||_F``, which grows as kappa),
so the bits gained per step are ``-log2`` of it (tested within 0.6 bits up to kappa 10), and the iteration
converges to the solution of ``A_hi x = b``
(relative error ``~ kappa 2**-24``). This is RePAST's Taylor expansion of ``A^-1 = (A_lo + (A_hi - A_lo))^-1``
around ``A_lo^-1`` written as a loop (their bit-slicing of b and x); it stops when the last correction falls
below ``2**-(target_bits+1)`` of the solution (what the hardware can see), or after ``max_iter`` steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from cimsim.blas import one_thread
from cimsim.errors import ConfigError
from cimsim.linalg.circuit import ZERO_COST, Cost, InversionCircuit, ProgrammedInverter, check_matrix, check_rhs
from cimsim.linalg.vmm import VmmArray, high_precision_spec
from cimsim.spec import CrossbarSpec


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
                 target_bits: int = 16, max_iter: int = 60, seed: int = 0, reference=None) -> RefineResult:
    """Solve ``A x = b`` to ``target_bits`` with the INV circuit and VMM crossbars (module docstring).

    ``reference`` (default ``numpy.linalg.solve(A, b)``) only scores each step's true error in the history.
    """
    circuit = InversionCircuit() if circuit is None else circuit
    if isinstance(target_bits, bool) or not isinstance(target_bits, (int, np.integer)) or not 1 <= target_bits <= 40:
        raise ConfigError(f"target_bits must be an integer in 1..40, got {target_bits!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or not 1 <= max_iter <= 1000:
        raise ConfigError(f"max_iter must be an integer in 1..1000, got {max_iter!r}")
    with one_thread():   # small dense algebra: one BLAS thread (cimsim.blas)
        return _refine(A, b, circuit, vmm_spec, target_bits, max_iter, seed, reference)


def _refine(A, b, circuit, vmm_spec, target_bits, max_iter, seed, reference) -> RefineResult:
    A = check_matrix(A, circuit.size)
    b = check_rhs(b, A.shape[0])
    ref = np.linalg.solve(A, b) if reference is None else np.asarray(reference, dtype=np.float64)
    inverter = ProgrammedInverter(A, circuit, seed)
    # the corrections are ADC codes: output_bits + 1 signed input bits carry them exactly into the VMM
    in_bits = circuit.output_bits + 1 if circuit.output_bits is not None else 24
    spec = high_precision_spec() if vmm_spec is None else vmm_spec
    vmm = VmmArray(A, replace(spec, input_bits=in_bits), seed=seed + 1, name="refine_vmm")
    x = np.zeros_like(b)
    r = b.copy()
    total = ZERO_COST
    history = []
    converged = False
    for k in range(1, max_iter + 1):
        d, c_inv = inverter.solve(r)
        y, c_vmm = vmm(d)
        x = x + d
        r = r - y
        step = c_inv + c_vmm
        total = total + step
        x_max = np.max(np.abs(x), axis=0)
        est = float(np.max(np.max(np.abs(d), axis=0) / np.where(x_max > 0, x_max, 1.0)))
        history.append({"iteration": k, "correction": est, "rel_error": rel_error(x, ref),
                        "time_s": step.time_s, "energy_j": step.energy_j,
                        "inv_energy_j": c_inv.energy_j, "vmm_energy_j": c_vmm.energy_j})
        if est <= 2.0 ** -(target_bits + 1):
            converged = True
            break
    prog = inverter.program_cost()
    return RefineResult(x, len(history), converged, history, total, prog)
