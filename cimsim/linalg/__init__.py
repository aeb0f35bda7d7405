"""Analog linear algebra on crossbars (engine level): products, one-step inversion and refinement.

* ``mvm`` / ``VmmArray``: ``A x`` for any real matrix through the crossbar engine (:mod:`cimsim.linalg.vmm`).
* ``solve`` / ``inv`` / ``ProgrammedInverter`` on an ``InversionCircuit``: the closed-loop crossbar of Sun et al.
  (PNAS 2019) with its limits (:mod:`cimsim.linalg.circuit`).
* ``refine_solve``: RePAST's high-precision solutions from the 8-bit circuit and VMM crossbars, by default with a
  GCR step (the circuit as a preconditioner) that converges where RePAST's plain loop stalls; systems wider than
  one array on block-diagonal INV arrays (:mod:`cimsim.linalg.refine`).
* ``error_budget``: the circuit's first-order solution error by component, in theory (:mod:`cimsim.linalg.theory`).
* ``random_matrix(n, cond)``: test matrices of a given condition number.
"""

from cimsim.linalg.circuit import Cost, InversionCircuit, ProgrammedInverter, check_matrix, inv, solve, with_bits
from cimsim.linalg.refine import RefineResult, refine_solve, rel_error
from cimsim.linalg.theory import error_budget
from cimsim.linalg.vmm import VmmArray, high_precision_spec, mvm

__all__ = ["Cost", "InversionCircuit", "ProgrammedInverter", "check_matrix", "inv", "solve", "with_bits",
           "RefineResult", "refine_solve", "rel_error", "error_budget", "VmmArray", "high_precision_spec", "mvm", "random_matrix"]


def random_matrix(n: int, cond: float, seed: int = 0, symmetric: bool = True):
    """A random n x n matrix with 2-norm condition number ``cond``: ``Q diag(s) Q^T`` (symmetric positive
    definite, singular values log-spaced from 1 to 1/cond) or ``U diag(s) V^T`` with ``symmetric=False``."""
    import numpy as np

    from cimsim.errors import ConfigError

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    if not (np.isfinite(cond) and cond >= 1):
        raise ConfigError(f"the condition number must be a finite number >= 1, got {cond!r}")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.logspace(0, -np.log10(cond), n) if n > 1 else np.ones(1)
    if symmetric:
        return (q * s) @ q.T
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (u * s) @ q.T
