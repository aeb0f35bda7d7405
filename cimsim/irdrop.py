"""IR drop on the wires of a crossbar: an exact nodal solve and a fast first-order model.

Geometry (the same as :mod:`cimsim.crossbar`: rows = word lines = inputs, columns = bit lines = outputs,
conductances in siemens, voltages in volts, currents in amperes). An array of ``R`` rows by ``C``
columns has, at every crosspoint ``(i, j)``, a word-line node and a bit-line node joined by the cell
conductance ``G[i, j]``:

* word line ``i`` is driven at its left end at ``v[i]``; the driver reaches node ``(i, 0)`` through one
  wire segment of resistance ``r_wl`` and consecutive word-line nodes are joined by ``r_wl`` (ohm per
  cell pitch); the right end is open;
* bit line ``j`` is held at virtual ground (0 V) at its bottom end by the sense amplifier / TIA; node
  ``(R-1, j)`` reaches it through one segment of ``r_bl`` and consecutive bit-line nodes are joined by
  ``r_bl``; the top end is open;
* the output is ``I[j]``, the current into column ``j``'s ground.

With ideal wires (``r_wl = r_bl = 0``) every cell sees its full row voltage and ``I = v @ G``. The
network is linear, so for any wires ``I = v @ T`` for a transfer matrix ``T`` (``R x C``) that depends
on ``G``, ``r_wl`` and ``r_bl`` only: :func:`effective_conductance` returns it (exact or first-order),
so a tile can be simulated with IR drop at the cost of one matrix product per input.

:func:`ir_drop_exact` solves Kirchhoff's current law at all ``2*R*C`` nodes (sparse LU, scipy);
:func:`ir_drop_first_order` is a closed-form first-order model (no linear solve, ``O(R*C)`` set-up
and one ``(B, R) @ (R, C)`` product); :func:`ir_drop_node_voltages` returns the exact node voltages.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

from cimsim.errors import ConfigError

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = ["ir_drop_exact", "ir_drop_first_order", "ir_drop_node_voltages", "effective_conductance", "FORMS"]

# right-hand sides solved per back-substitution block: bounds the dense (unknowns x block) work array
_RHS_BLOCK_ELEMENTS = 1 << 22


# ------------------------------------------------------------------------------------------ validation
def _check_conductance(G) -> np.ndarray:
    try:
        G = np.asarray(G, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError("G must be a real 2-D array of conductances (rows, columns) in siemens") from None
    if G.ndim != 2 or G.shape[0] < 1 or G.shape[1] < 1:
        raise ConfigError(f"G must be a non-empty 2-D array (rows, columns), got shape {G.shape}")
    if not np.all(np.isfinite(G)):
        raise ConfigError("G must be finite")
    if np.any(G < 0):
        raise ConfigError("G must be non-negative (conductances in siemens)")
    return G


def _check_inputs(v, rows: int) -> np.ndarray:
    try:
        v = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError("v must be a real array of row voltages, shape (rows,) or (batch, rows)") from None
    if v.ndim not in (1, 2) or v.shape[-1] != rows:
        raise ConfigError(f"v must have shape ({rows},) or (batch, {rows}) to match G's {rows} rows, "
                          f"got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ConfigError("v must be finite")
    return v


def _check_resistance(r, name: str) -> float:
    if isinstance(r, (bool, np.bool_)) or not isinstance(r, (numbers.Real, np.ndarray)) or np.ndim(r) != 0:
        raise ConfigError(f"{name} must be a real scalar (ohm per cell pitch), got {r!r}")
    r = float(r)
    if not np.isfinite(r) or r < 0:
        raise ConfigError(f"{name} must be finite and >= 0 (ohm per cell pitch), got {r!r}")
    return r


def _check(G, v, r_wl, r_bl):
    G = _check_conductance(G)
    return G, _check_inputs(v, G.shape[0]), _check_resistance(r_wl, "r_wl"), _check_resistance(r_bl, "r_bl")


# ------------------------------------------------------------------------------------------ exact solve
def _wire_laplacian(n: int, g: float, grounded_end: str) -> sp.csr_matrix:
    """Conductance matrix of a chain of ``n`` nodes joined by conductance ``g``, with one more segment
    from the first (``grounded_end="first"``) or last node to a fixed potential."""
    import scipy.sparse as sp   # scipy loads only where an exact solve is asked for (0.3 s of every run's start)
    diag = np.full(n, 2.0 * g)
    diag[-1 if grounded_end == "first" else 0] = g          # the open end has one neighbour
    off = np.full(n - 1, -g)
    return sp.diags([off, diag, off], [-1, 0, 1], shape=(n, n), format="csr")


def _system(G: np.ndarray, r_wl: float, r_bl: float) -> sp.csc_matrix:
    """The nodal conductance matrix over the free nodes: word-line nodes (index ``i*C + j``) when
    ``r_wl > 0``, then bit-line nodes (same indexing) when ``r_bl > 0``. Symmetric, positive definite."""
    import scipy.sparse as sp
    R, C = G.shape
    D = sp.diags(G.ravel(), format="csr")
    blocks = []
    if r_wl > 0:   # word line i: driver -- node (i,0) -- ... -- node (i,C-1) (open)
        blocks.append(sp.kron(sp.identity(R, format="csr"), _wire_laplacian(C, 1.0 / r_wl, "first")) + D)
    if r_bl > 0:   # bit line j: node (0,j) (open) -- ... -- node (R-1,j) -- TIA (0 V)
        blocks.append(sp.kron(_wire_laplacian(R, 1.0 / r_bl, "last"), sp.identity(C, format="csr")) + D)
    if len(blocks) == 1:
        return sp.csc_matrix(blocks[0])
    return sp.bmat([[blocks[0], -D], [-D, blocks[1]]], format="csc")


def _solve(A: sp.csc_matrix, rhs: np.ndarray) -> np.ndarray:
    """Solve ``A x = rhs`` for the columns of ``rhs``: spsolve for one, one sparse LU for many."""
    import scipy.sparse.linalg as spla
    n, k = rhs.shape
    if k == 1:
        return np.asarray(spla.spsolve(A, rhs[:, 0]), dtype=np.float64).reshape(n, 1)
    lu = spla.splu(A)
    out = np.empty_like(rhs)
    step = max(1, _RHS_BLOCK_ELEMENTS // n)
    for s in range(0, k, step):
        out[:, s:s + step] = lu.solve(np.ascontiguousarray(rhs[:, s:s + step]))
    return out


def _deviations(G: np.ndarray, V: np.ndarray, r_wl: float, r_bl: float):
    """Exact node voltages as deviations from the ideal-wire ones, for a batch ``V`` (B, R).

    Returns ``(dwl, vbl)``, each (B, R, C): word-line node voltage ``v[i] + dwl`` and bit-line node voltage
    ``vbl``. Writing the word-line unknowns as ``v[i] + dwl`` makes the wire terms of the ideal state cancel:
    the right-hand side is ``-G*v`` at word-line nodes and ``+G*v`` at bit-line nodes, independent of the
    wire resistance, and the unknowns are O(r) - so the IR-drop correction keeps its relative precision as
    ``r -> 0`` instead of being the difference of two nearly equal numbers.
    """
    R, C = G.shape
    B = V.shape[0]
    dwl = np.zeros((B, R, C))
    vbl = np.zeros((B, R, C))
    if B == 0 or (r_wl == 0 and r_bl == 0):
        return dwl, vbl
    P = (G[None, :, :] * V[:, :, None]).reshape(B, R * C).T       # ideal cell currents, (R*C, B)
    parts = []
    if r_wl > 0:
        parts.append(-P)
    if r_bl > 0:
        parts.append(P)
    x = _solve(_system(G, r_wl, r_bl), np.vstack(parts))
    k = 0
    if r_wl > 0:
        dwl = x[:R * C].T.reshape(B, R, C)
        k = R * C
    if r_bl > 0:
        vbl = x[k:k + R * C].T.reshape(B, R, C)
    return dwl, vbl


def _batch(v: np.ndarray) -> np.ndarray:
    return v[None, :] if v.ndim == 1 else v


def _unbatch(out: np.ndarray, v: np.ndarray) -> np.ndarray:
    return out[0] if v.ndim == 1 else out


def ir_drop_node_voltages(G, v, r_wl: float, r_bl: float) -> tuple[np.ndarray, np.ndarray]:
    """The exact word-line and bit-line node voltages, each of shape ``v.shape + (C,)``.

    With ``r_wl = 0`` the word-line nodes sit at ``v[i]``; with ``r_bl = 0`` the bit-line nodes at 0 V. The
    current drawn from driver ``i`` is ``(v[i] - v_wl[i, 0]) / r_wl`` and the current into column ``j``'s
    ground ``v_bl[R-1, j] / r_bl``.
    """
    G, v, r_wl, r_bl = _check(G, v, r_wl, r_bl)
    V = _batch(v)
    dwl, vbl = _deviations(G, V, r_wl, r_bl)
    return _unbatch(V[:, :, None] + dwl, v), _unbatch(vbl, v)


def _exact_transfer(G: np.ndarray, r_wl: float, r_bl: float) -> np.ndarray:
    """``T`` with ``I = v @ T`` exactly: row ``i`` is the column currents for ``v = e_i``."""
    if r_wl == 0 and r_bl == 0:
        return G.copy()
    eye = np.eye(G.shape[0])
    dwl, vbl = _deviations(G, eye, r_wl, r_bl)
    return G + np.einsum("kij,ij->kj", dwl - vbl, G)


def ir_drop_exact(G, v, r_wl: float, r_bl: float) -> np.ndarray:
    """Column currents ``I`` (A) of the crossbar with resistive wires, from the exact nodal solution.

    Parameters: ``G`` (R, C) cell conductances in S (>= 0); ``v`` (R,) or (B, R) row driver voltages in V;
    ``r_wl``, ``r_bl`` wire resistance per cell pitch (ohm, >= 0) of the word and bit lines.
    Returns ``I`` of shape (C,) or (B, C).

    Kirchhoff's current law at the ``2*R*C`` nodes (fewer when one wire is ideal: its nodes are fixed)
    gives a sparse symmetric positive-definite system ``A x = b``, assembled from the wire-chain
    Laplacians (``kron``) and the cell conductances and solved with ``scipy.sparse.linalg.spsolve`` for
    one input, or factorized once (``splu``) and back-substituted for a batch. For a batch larger than
    ``R`` it solves the ``R`` unit inputs instead and returns ``v @ T`` (the network is linear).
    The output is ``I[j] = sum_i G[i, j] * (v_wl[i, j] - v_bl[i, j])`` - the current the cells push into
    bit line ``j``, all of which leaves through its bottom segment (its top end is open).

    Ideal wires (``r_wl = r_bl = 0``) return ``v @ G`` without building the system; as ``r -> 0`` the result
    tends to ``v @ G`` (the correction is solved for directly, see :func:`ir_drop_node_voltages`).
    """
    G, v, r_wl, r_bl = _check(G, v, r_wl, r_bl)
    if r_wl == 0 and r_bl == 0:
        return v @ G
    V = _batch(v)
    if V.shape[0] > G.shape[0]:
        return _unbatch(V @ _exact_transfer(G, r_wl, r_bl), v)
    dwl, vbl = _deviations(G, V, r_wl, r_bl)
    I = V @ G + np.einsum("bij,ij->bj", dwl - vbl, G)
    return _unbatch(I, v)


# ------------------------------------------------------------------------------------ first-order model
FORMS = ("linear", "rational")


def _drop_factors(G: np.ndarray, r_wl: float, r_bl: float) -> np.ndarray:
    """``x = r_wl * Q + r_bl * S`` (see :func:`ir_drop_first_order`); ``O(R*C)`` with cumulative sums."""
    # Q[i, j] = sum_m G[i, m] (min(j, m) + 1) = sum_{k <= j} sum_{m >= k} G[i, m]
    Q = np.cumsum(np.cumsum(G[:, ::-1], axis=1)[:, ::-1], axis=1)
    # S[n, j] = sum_i G[i, j] (R - max(i, n)) = sum_{k >= n} sum_{i <= k} G[i, j]
    S = np.cumsum(np.cumsum(G, axis=0)[::-1], axis=0)[::-1]
    return r_wl * Q + r_bl * S


def _first_order_transfer(G: np.ndarray, r_wl: float, r_bl: float, form: str) -> np.ndarray:
    if r_wl == 0 and r_bl == 0:
        return G.copy()
    x = _drop_factors(G, r_wl, r_bl)
    return G * (1.0 - x) if form == "linear" else G / (1.0 + x)


def _check_form(form) -> str:
    if form not in FORMS:
        raise ConfigError(f"form = {form!r}: choose one of {', '.join(FORMS)}")
    return form


def ir_drop_first_order(G, v, r_wl: float, r_bl: float, *, form: str = "linear") -> np.ndarray:
    """Column currents ``I`` (A) with resistive wires, to first order in the wire resistance; no solve.

    Same arguments and shapes as :func:`ir_drop_exact`. Cost: ``O(R*C)`` cumulative sums, then one
    ``(B, R) @ (R, C)`` product, i.e. ``O(B*R*C)``.

    Derivation. Take the cell currents of the ideal-wire solution, ``c0[i, m] = G[i, m] * v[i]``, and
    compute the wire voltage drops they cause (the drops are O(r), so using ideal currents errs only
    at O(r**2)):

    * word line ``i``: segment ``k`` (``k = 0`` from the driver into node 0, ``k`` from node ``k-1`` into
      node ``k``) carries the current of every cell at or beyond it, ``sum_{m >= k} c0[i, m]``; so node
      ``(i, j)`` lies below ``v[i]`` by
      ``dwl[i, j] = r_wl * sum_{k <= j} sum_{m >= k} c0[i, m] = r_wl * v[i] * Q[i, j]``, with
      ``Q[i, j] = sum_m G[i, m] * (min(j, m) + 1)`` (``r_wl * (min(j, m) + 1)`` is the wire shared by the
      paths from the driver to cells ``j`` and ``m``);
    * bit line ``j``: the segment below node ``k`` (``k = R-1`` into the TIA) carries the current of every
      cell at or above it, ``sum_{i <= k} c0[i, j]``; so node ``(n, j)`` sits above ground by
      ``vbl[n, j] = r_bl * sum_{k >= n} sum_{i <= k} c0[i, j] = r_bl * sum_i c0[i, j] * (R - max(i, n))``.

    The cell current is then ``G[n, j] * (v[n] - dwl[n, j] - vbl[n, j])``; summing over ``n`` and swapping
    the two row indices of the bit-line term gives a linear map ``I = v @ G1`` with

        ``G1 = G * (1 - x)``,   ``x = r_wl * Q + r_bl * S``,   ``S[n, j] = sum_i G[i, j] * (R - max(i, n))``

    (``form="linear"``, the default; :func:`effective_conductance` returns ``G1``). Its derivative in ``r``
    at ``r = 0`` is that of the exact solution.

    Error. The drop relations above hold exactly for the true cell currents ``c``: ``c = G * (v - K c)``
    with ``K`` the (non-negative) wire operator, while the model is ``c1 = G * (v - K c0)``. Hence
    ``c - c1 = G * K (c0 - c)``: the error is the drop caused by the current deficit, and since the
    largest column sum of ``G * K`` is ``eps = max(x)``, ``sum |c1 - c| <= eps * sum |c0 - c|`` over the
    cells - the model removes all but a fraction ``<= eps`` of the IR-drop error. ``eps`` is roughly
    ``r * G_mean * N**2 / 2`` per wire for an ``N x N`` array. With deficits ``c0 - c >= 0`` the model
    underestimates the currents (overestimates the drop). Useful for ``eps`` up to ~0.1-0.3; near
    ``eps = 1`` it breaks down (``G1 -> 0``, then negative, where the exact currents stay positive) and
    from ``eps ~ 1.5`` it does worse than ignoring IR drop.

    ``form="rational"``: ``G1 = G / (1 + x)``, the same first-order term resummed. It is the self-consistent
    solution if every current that loads cell ``(n, j)``'s wires is reduced in the same proportion as the
    cell's own: ``c = c0 * (1 - x * c / c0)``. It is exact for a single cell, never negative, and in
    practice far more accurate at large ``eps`` (it is a heuristic: no bound is proven).

    Measured against :func:`ir_drop_exact` (tests/test_irdrop.py: G uniform in [g_on / 150, g_on],
    g_on = 1 / 6 kOhm, random half of the rows at 0.5 V, r_wl = r_bl = r), largest column error relative
    to the exact current, linear / rational / ignoring IR drop:

    * 32 x 32, r = 1 ohm (eps 0.10):    0.6 % / 0.06 % / 8 %
    * 32 x 32, r = 2.5 ohm (eps 0.24):  3.6 % / 0.3 % / 20 %
    * 64 x 64, r = 1 ohm (eps 0.42):    11 % / 0.9 % / 35 %
    * 64 x 64, r = 2.5 ohm (eps 0.98):  67 % / 3.2 % / 86 %   (linear: broken)
    * 64 x 64, r = 20 ohm (eps 8.1):    48x / 28 % / 7.7x   (linear: worse than ignoring IR drop)
    """
    G, v, r_wl, r_bl = _check(G, v, r_wl, r_bl)
    form = _check_form(form)
    if r_wl == 0 and r_bl == 0:
        return v @ G
    return v @ _first_order_transfer(G, r_wl, r_bl, form)


def effective_conductance(G, r_wl: float, r_bl: float, model: str = "exact") -> np.ndarray:
    """The (R, C) matrix ``T`` with ``I = v @ T`` for every input ``v``: the crossbar with resistive wires
    seen as an ideal one. ``model="exact"`` solves the network for the ``R`` unit inputs (one sparse LU);
    ``"linear"`` and ``"rational"`` are the two forms of :func:`ir_drop_first_order`. Precompute it once per
    programmed tile; then every input costs one matrix product."""
    G = _check_conductance(G)
    r_wl, r_bl = _check_resistance(r_wl, "r_wl"), _check_resistance(r_bl, "r_bl")
    if model == "exact":
        return _exact_transfer(G, r_wl, r_bl)
    if model in FORMS:
        return _first_order_transfer(G, r_wl, r_bl, model)
    raise ConfigError(f"model = {model!r}: choose 'exact', 'linear' or 'rational'")
