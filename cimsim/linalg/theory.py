"""What the inversion circuit's solution error should be, in theory: a first-order error budget.

For ``x = A^-1 b`` settled on :class:`~cimsim.linalg.circuit.ProgrammedInverter`, every imperfection is a small
perturbation, and to first order the errors add (independent roundings in quadrature):

* **matrix** (conductance levels and programming noise): the arrays hold ``A + dA`` with independent entry errors
  of root-mean-square ``s_A = (max|A| / L) sqrt(1/12 + 1.5 p^2)`` (``L`` level steps per polarity, rounding
  uniform over one step; ``p`` the programming noise in level steps, drawn on both the G+ and the G- cell: the
  cell that holds the entry gets all of it, ``p^2``; the other one sits at ``g_min``, where the window clips the
  noise to a half-normal, mean square ``p^2 / 2``). Then
  ``dx = -A^-1 dA x`` and ``E ||dx||^2 = s_A^2 ||A^-1||_F^2 ||x||^2``: the relative error is ``s_A ||A^-1||_F``,
  between ``kappa e`` and ``sqrt(n) kappa e`` with ``e = s_A / ||A||`` (the statistical form of the worst-case
  bound ``||dx|| / ||x|| <= kappa ||dA|| / ||A|| / (1 - kappa ||dA|| / ||A||)``).
* **DAC** (the right-hand side rounded to ``input_bits``): ``db`` of standard deviation ``(max|b| / m) / sqrt 12``,
  ``m = 2**(input_bits-1) - 1``, so ``||dx|| ~ s_b ||A^-1||_F``.
* **ADC** (each output rounded to ``output_bits`` over the auto-ranged span ``[-max|x|, max|x|]``): step
  ``2 max|x| / (2**output_bits - 1)``, so ``||dx|| / ||x|| = step sqrt(n / 12) / ||x||``: ``2**-8.8`` times the
  crest factor ``max|x| / rms(x)`` of the solution for an 8-bit converter, whatever the condition number.
* **gain** (finite op-amp gain ``A0``): the circuit solves ``(A + diag(D) / A0) x = b`` (``D`` in units of A),
  a deterministic ``dx = -A^-1 diag(D) x / A0``, computed as it is.
* **offset** (input offsets of standard deviation ``s_os``): a current error ``D V_os``; ``dx = A^-1 diag(D) v``
  with ``v`` of standard deviation ``s_os max|b| / (g_in v_in_max)``.

The first one is an error of the *programmed matrix*; the other four are the circuit's own error in solving the
matrix it holds. So "how many bits" depends on what the solution is compared with (:func:`error_budget` gives
both): against the float matrix the 8-bit circuit is limited by its 7-bit magnitude levels times
``max|A| ||A^-1||_F`` (which grows as kappa and sqrt(n)); against its own programmed matrix it is limited by its
converters, ``~ 2**-8.3`` to ``2**-7.3`` for crest factors 1.4 to 2, independent of kappa up to where the gain and
offset terms (which grow with kappa) take over.
"""

from __future__ import annotations

import math

import numpy as np

from cimsim.linalg.circuit import ProgrammedInverter, check_rhs

COMPONENTS = ("matrix", "dac", "adc", "gain", "offset")
OWN = ("dac", "adc", "gain", "offset")   # the circuit's own error, given the matrix it holds


def _prog_sigma_levels(p: ProgrammedInverter) -> float:
    """Programming noise in level steps (0 for cells without it)."""
    c = p.circuit
    frac = float(getattr(c.cell, "prog_sigma_frac", 0.0) or 0.0)
    if c.matrix_bits is None:
        return 0.0
    return frac * ((1 << (c.matrix_bits - 1)) - 1)   # the window spans L level steps


def matrix_entry_sigma(p: ProgrammedInverter) -> float:
    """Root-mean-square of one programmed entry's error ``s_A`` in the units of A (module docstring)."""
    c = p.circuit
    if c.matrix_bits is None:
        return 0.0
    L = (1 << (c.matrix_bits - 1)) - 1
    ps = _prog_sigma_levels(p)
    return p.a_max / L * math.sqrt(1.0 / 12.0 + 1.5 * ps * ps)


def error_budget(p: ProgrammedInverter, b, A=None) -> dict:
    """Predicted relative 2-norm solution errors of one settling on ``b`` (n,), by component (module docstring),
    with ``"total"`` (all, root-sum-square: against the float matrix) and ``"own"`` (all but the matrix: against
    the programmed matrix). ``A`` is the float matrix (default: the programmed one, without its noise)."""
    c, n = p.circuit, p.n
    b = check_rhs(b, n)
    if b.ndim != 1:
        raise ValueError("error_budget takes one right-hand side")
    A = p.A_programmed if A is None else np.asarray(A, dtype=np.float64)
    Ainv = np.linalg.inv(A)
    x = Ainv @ b
    nx = float(np.linalg.norm(x))
    if nx == 0:
        return {k: 0.0 for k in COMPONENTS + ("total", "own")}
    fro = float(np.linalg.norm(Ainv, "fro"))
    b_max = float(np.max(np.abs(b)))
    out = {"matrix": matrix_entry_sigma(p) * fro}
    if c.input_bits is None:
        out["dac"] = 0.0
    else:
        m = (1 << (c.input_bits - 1)) - 1
        out["dac"] = b_max / m / math.sqrt(12.0) * fro / nx
    if c.output_bits is None:
        out["adc"] = 0.0
    else:
        step = 2.0 * float(np.max(np.abs(x))) / ((1 << c.output_bits) - 1)
        out["adc"] = step * math.sqrt(n / 12.0) / nx
    d = p.D * (p.a_max / p.unit)                                   # the diagonal conductances in units of A
    out["gain"] = (float(np.linalg.norm(Ainv @ (d * x))) / nx / c.open_loop_gain
                   if c.open_loop_gain != math.inf else 0.0)
    s_v = c.offset_sigma_v * b_max / (p.g_in * c.v_in_max_v) * (p.unit / p.a_max)
    out["offset"] = s_v * float(np.linalg.norm(Ainv * d[None, :], "fro")) / nx
    out["own"] = math.sqrt(sum(out[k] ** 2 for k in OWN))
    out["total"] = math.sqrt(sum(out[k] ** 2 for k in COMPONENTS))
    return out


def equivalent_matrix_bits(p: ProgrammedInverter) -> float:
    """The bits of a uniform rounding of A (entry error ``max|A| 2**-(bits-1) / sqrt 12``) that would give the same
    entry error as levels plus programming noise: ``matrix_bits`` for noiseless cells, fewer with noise."""
    s = matrix_entry_sigma(p)
    if s == 0:
        return math.inf
    return 1.0 + math.log2(p.a_max / (s * math.sqrt(12.0)) + 1.0)   # L = 2**(bits-1) - 1 steps


def matrix_bits_needed(A, target: float, prog_sigma_frac: float = 0.0) -> float:
    """Levels (signed bits, as ``matrix_bits``) a programmed matrix needs for an expected relative solution error
    ``target`` against the float A (matrix term alone), with programming noise ``prog_sigma_frac`` of the window;
    ``inf`` where the noise alone exceeds the target."""
    A = np.asarray(A, dtype=np.float64)
    scale = float(np.max(np.abs(A))) * float(np.linalg.norm(np.linalg.inv(A), "fro"))
    # s_A / max|A| = sqrt(1/12 + 1.5 (f L)^2) / L = sqrt(1/(12 L^2) + 1.5 f^2) <= target / scale
    need = (target / scale) ** 2 - 1.5 * prog_sigma_frac ** 2
    if need <= 0:
        return math.inf
    L = 1.0 / math.sqrt(12.0 * need)
    return 1.0 + math.log2(L + 1.0)


def refinement_rate(p: ProgrammedInverter, A=None) -> float:
    """Spectral radius of ``I - A_lo^-1 A``: the refinement's asymptotic error factor per step from the programmed
    matrix alone (``A_lo``, what the INV arrays hold; ``A`` the float matrix, default the programmed one). RePAST's
    loop (:mod:`cimsim.linalg.refine`, ``method="richardson"``) converges iff it is below 1, whatever the converters
    do; the default GCR refinement needs only :func:`minres_rate` below 1."""
    A = p.A_programmed if A is None else np.asarray(A, dtype=np.float64)
    M = np.eye(p.n) - np.linalg.solve(p.A_programmed, A)
    return float(np.max(np.abs(np.linalg.eigvals(M))))


def minres_rate(p: ProgrammedInverter, A=None) -> float:
    """The GCR refinement's guaranteed residual factor per step (:mod:`cimsim.linalg.refine`, ``method="gcr"``,
    any window): ``sqrt(1 - c^2 / ||C||^2)`` with ``C = A A_lo^-1`` (``A_lo`` what the circuit solves: the programmed
    matrix with the finite-gain diagonal; ``A`` default the programmed one) and ``c`` the smallest eigenvalue of
    ``(C + C^T) / 2`` (Eisenstat, Elman & Schultz 1983, Theorem 3.3; exact for a linear preconditioner, i.e. lossless
    converters). ``1.0`` where ``c <= 0``: no guarantee. Below 1 whenever the preconditioned operator's field of
    values lies in the right half-plane, where :func:`refinement_rate` asks for its spectrum within the unit disc
    around 1."""
    A_lo = p.K * (p.a_max / p.unit)
    A = p.A_programmed if A is None else np.asarray(A, dtype=np.float64)
    C = np.linalg.solve(A_lo.T, A.T).T                          # A A_lo^-1
    c = float(np.linalg.eigvalsh(0.5 * (C + C.T))[0])
    if c <= 0:
        return 1.0
    return math.sqrt(max(0.0, 1.0 - (c / float(np.linalg.norm(C, 2))) ** 2))
