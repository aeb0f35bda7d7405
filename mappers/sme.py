"""SME's mapper steps (Liu et al., "SME: ReRAM-based Sparse-Multiplication-Engine to Squeeze-Out Bit Sparsity
of Neural Network", arXiv 2103.01705; docs/references.md#sme): bit-sparsity shaping, bit-slice splicing and
squeeze-out.

The steps turn one layer's quantized integer weights ``W`` (out, in), ``|W| <= 2**(b-1) - 1``, into packed
groups of 1-bit crossbars (:class:`cimsim.packed.PackedGroup`) that the engine then runs
(:class:`cimsim.packed.PackedTile`): with an ideal cell and a lossless readout the squeezed layer computes
the exact integer product of the (shaped) quantized layer, bit for bit.

1. **Bit-sparsity shaping**, two rules on top of the per-channel symmetric quantizer
   (:func:`cimsim.mappers.quantize_weights`):

   * ``nonzero_bits = N`` (:func:`shape_weights`): every weight magnitude moves to the nearest magnitude with at
     most ``N`` non-zero bits (ties go to the smaller magnitude). Per output channel the scale is re-chosen from
     ``SCALE_FACTORS`` x the plain scale to minimise the channel's squared weight error after shaping. ``N = 0``
     or ``N >= b - 1`` leaves the quantizer's output as it is. This thins the bits but frees few crossbars: a
     1-bit column is only freed when *all* its cells are 0, and bell-shaped 8-bit weights keep 10-50 % ones in
     every plane (the low planes hold the small weights' bits).
   * ``shaping_tolerance = t`` (:func:`crossbar_windows`): crossbar-aware plane windows. A *column segment* is
     one output's weights in one row block (the cells a spliced column holds). Narrowing its window to the top
     ``W`` planes of its largest weight (:func:`plane_window`: weights round to the nearest multiple of the
     window's lowest place value) empties its lower-plane columns. Per row block, the windows are narrowed
     greedily, the least extra squared weight error per freed column first, and a narrowing is kept when the
     row block's live columns fit one crossbar fewer while its squared weight error stays within ``t`` of its
     squared weights ("where the loss allows"). A layer whose row block already fits one crossbar is left as
     it is. ``t = 0``: no windows.
2. **Bit-slice splicing** (:func:`bit_planes`, :func:`squeeze`). Sign-magnitude, as the engine's
   differential encoding: ``W = W+ - W-``; bit ``p`` of ``W+`` and of ``W-`` (``p = 0 .. b-2``) is a 0/1
   matrix, and plane ``p`` of the layer (its ``2 x out`` columns: the outputs' ``W+`` bits then their ``W-``
   bits) is tiled on its own group of 1-bit crossbars (``rows x cols``). Each column's result is spliced in the
   periphery with its weight ``+-2**p``. The sparse high-order planes so gather in their own crossbars; a
   crossbar left with no non-zero is not allocated.
3. **Squeeze-out** (:func:`squeeze`; knob ``squeeze_density = d``), at the granularity the periphery indexes:
   columns. (a) Per row block, the columns holding a 1 are packed side by side (the column table gives each its
   output and ``+-2**p``), so empty columns (emptied planes, a polarity with no weight) take no crossbar.
   (b) A packed crossbar whose non-zeros fill less than ``d`` of its ``rows x cols`` cells is emptied: each of
   its columns keeps the inputs where it has a 1, and the columns are packed, largest first, into shared
   crossbars: each goes to the open crossbar that needs the fewest new rows for it (best fit; rows are inputs,
   shared by every column of a crossbar), if the crossbar still has a free column and enough free rows, else
   to a new one. Each packed crossbar keeps a row table (the input of each row) and a column table (the output
   and ``+-2**p`` of each column): the index bookkeeping the periphery needs.

The crossbar count is deterministic given the weights. Counts per layer (:func:`layer_counts`):
``sliced`` (the dense differential 1-bit layout a plain tile would use, ``ceil(in / rows) x
ceil(2 (b-1) out / cols)`` per group), ``spliced`` and ``squeezed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from cimsim.errors import ConfigError
from cimsim.layout import BitPlaneLayout
from cimsim.packed import PackedGroup, PackedTile
from cimsim.spec import CrossbarSpec

# our choice: candidate per-channel scales for shaping, as fractions of the plain quantizer's scale
SCALE_FACTORS = np.linspace(0.5, 1.0, 51)


# ---------------------------------------------------------------------------------------------- shaping
def popcount(v: np.ndarray) -> np.ndarray:
    """Non-zero bits of each non-negative integer."""
    v = np.asarray(v, dtype=np.int64)
    out = np.zeros(v.shape, dtype=np.int64)
    while np.any(v):
        out += v & 1
        v = v >> 1
    return out


def shaping_table(weight_bits: int, nonzero_bits: int) -> np.ndarray:
    """Magnitude -> the nearest magnitude with at most ``nonzero_bits`` non-zero bits (ties: the smaller)."""
    m = (1 << (weight_bits - 1)) - 1
    mags = np.arange(m + 1)
    allowed = mags[popcount(mags) <= nonzero_bits]
    dist = np.abs(mags[:, None] - allowed[None, :])
    return allowed[np.argmin(dist, axis=1)]      # argmin takes the first (smaller) of equal distances


def plane_window(q: np.ndarray, window: int, rows: int) -> np.ndarray:
    """Integer weights (out, in) -> the same, each segment of ``rows`` inputs of one output (the column segment one
    crossbar row block holds) keeping at most ``window`` consecutive magnitude planes: the top plane of the
    segment's largest magnitude and the ``window - 1`` below it. Weights round to the nearest multiple of the
    window's lowest place value (half away from zero), clipped to the window; ``window = 0`` changes nothing."""
    q = np.asarray(q, dtype=np.int64)
    if window <= 0 or q.size == 0:
        return q
    O, K = q.shape
    nr = math.ceil(K / rows)
    pad = np.zeros((O, nr * rows), dtype=np.int64)
    pad[:, :K] = q
    seg = pad.reshape(O, nr, rows)
    top = np.abs(seg).max(axis=2)
    top_plane = np.where(top > 0, np.floor(np.log2(np.maximum(top, 1))), 0).astype(np.int64)
    step = np.left_shift(1, np.maximum(top_plane - window + 1, 0))[..., None]
    m = np.abs(seg)
    r = np.minimum((2 * m + step) // (2 * step), (1 << window) - 1) * step      # nearest, ties away from zero
    return (np.sign(seg) * r).reshape(O, nr * rows)[:, :K]


def _live_columns(q: np.ndarray, weight_bits: int) -> np.ndarray:
    """Spliced columns (plane, polarity) each segment (..., rows) needs: those holding a 1."""
    out = np.zeros(q.shape[:-1], dtype=np.int64)
    for pol in (np.maximum(q, 0), np.maximum(-q, 0)):
        for p in range(weight_bits - 1):
            out += ((pol >> p) & 1).any(axis=-1)
    return out


def crossbar_windows(w2: np.ndarray, q: np.ndarray, scale: np.ndarray, weight_bits: int, rows: int, cols: int,
                     tolerance: float, table: np.ndarray | None = None) -> np.ndarray:
    """Crossbar-aware plane windows: per row block of ``rows`` inputs, narrow the segments' windows
    (:func:`plane_window`), cheapest weight error per column saved first, as long as the row block's spliced
    columns fit one crossbar fewer and its squared weight error stays within ``tolerance`` of its squared weights.
    ``w2`` float (out, in), ``q`` its integer weights, ``scale`` per output. Returns the shaped integers."""
    O, K = q.shape
    P = weight_bits - 1
    out = q.copy()
    for k0 in range(0, K, rows):
        k1 = min(k0 + rows, K)
        wb, sb = w2[:, k0:k1], scale[:, None]
        budget = tolerance * float(np.square(wb).sum())
        cand = []                                # window W = P .. 1: (integers, error per segment, columns per segment)
        for W in range(P, 0, -1):
            qq = plane_window(q[:, k0:k1], W, k1 - k0)
            if table is not None:
                qq = np.sign(qq) * table[np.abs(qq)]
            cand.append((qq, np.square(wb - sb * qq).sum(axis=1), _live_columns(qq, weight_bits)))
        E = np.stack([c[1] for c in cand])      # (windows, segments)
        C = np.stack([c[2] for c in cand])
        state = np.zeros(O, dtype=np.int64)     # index into cand: 0 = the widest window
        accepted = state.copy()
        seg = np.arange(O)
        target = (math.ceil(int(C[0].sum()) / cols) - 1) * cols
        while target >= 0:
            # every segment's next narrowing that frees a column, and its extra error per column freed
            cur_c, cur_e = C[state, seg], E[state, seg]
            nxt = np.full(O, -1)
            for n in range(P - 1, 0, -1):
                nxt = np.where((n > state) & (C[n] < cur_c), n, nxt)
            ok = nxt >= 0
            if not ok.any():
                break
            n_ = np.where(ok, nxt, state)
            cost = np.where(ok, np.maximum(E[n_, seg] - cur_e, 0) / np.maximum(cur_c - C[n_, seg], 1), np.inf)
            o = int(np.argmin(cost))
            state[o] = nxt[o]
            if E[state, seg].sum() > budget:
                break
            if C[state, seg].sum() <= target:    # one crossbar fewer within the tolerance: keep it
                accepted = state.copy()
                target -= cols
        for o in range(O):
            out[o, k0:k1] = cand[accepted[o]][0][o]
    return out


def shape_weights(w, weight_bits: int, nonzero_bits: int, tolerance: float = 0.0, rows: int = 128,
                  cols: int = 128, groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Float weights (out, ...) -> (shaped integer weights, scale per output channel); see the module docstring.
    ``tolerance`` > 0: then crossbar-aware plane windows (:func:`crossbar_windows`) on ``rows x cols`` arrays,
    each of the layer's ``groups`` (its own tile) on its own."""
    from cimsim.mappers.mapper import quantize_weights   # the plain quantizer (imported late: mapper imports us)

    q, scale = quantize_weights(w, weight_bits)
    nz = 0 < nonzero_bits < weight_bits - 1
    if not nz and tolerance <= 0:
        return q, scale
    m = (1 << (weight_bits - 1)) - 1
    table = shaping_table(weight_bits, nonzero_bits) if nz else None
    flat = w.detach().double().reshape(w.shape[0], -1).numpy()
    best_q, best_s = q.reshape(flat.shape), scale
    if nz:
        best_err = np.full(flat.shape[0], np.inf)
        best_q = np.zeros(flat.shape, dtype=np.int64)
        best_s = scale.copy()
        for f in SCALE_FACTORS:
            s = scale * f
            qq = np.clip(np.round(flat / s[:, None]), -m, m).astype(np.int64)
            qq = np.sign(qq) * table[np.abs(qq)]
            err = np.square(flat - s[:, None] * qq).sum(axis=1)
            better = err < best_err
            best_err[better], best_q[better], best_s[better] = err[better], qq[better], s[better]
    if tolerance > 0:
        og = flat.shape[0] // groups
        parts = (slice(g * og, (g + 1) * og) for g in range(groups))
        best_q = np.concatenate([crossbar_windows(flat[sl], best_q[sl], best_s[sl], weight_bits, rows, cols, tolerance,
                                                  table) for sl in parts])
    return best_q.reshape(q.shape), best_s


# ---------------------------------------------------------------------------------------------- splicing
def bit_planes(q: np.ndarray, weight_bits: int) -> np.ndarray:
    """Integer weights (out, in) -> 0/1 planes (b-1, 2 out, in): plane p, column j = bit p of W+ (j < out) or
    of W- (j >= out) of output ``j mod out``."""
    q = np.asarray(q, dtype=np.int64)
    m = (1 << (weight_bits - 1)) - 1
    if q.size and np.abs(q).max() > m:
        raise ConfigError(f"SME weights must lie in [-{m}, {m}] ({weight_bits}-bit sign-magnitude)")
    both = np.concatenate([np.maximum(q, 0), np.maximum(-q, 0)], axis=0)
    return ((both[None] >> np.arange(weight_bits - 1)[:, None, None]) & 1).astype(np.uint8)


def plane_bit_counts(q: np.ndarray, weight_bits: int) -> np.ndarray:
    """Non-zero bits per magnitude plane (b-1,): the bit-sparsity histogram."""
    return bit_planes(q, weight_bits).reshape(weight_bits - 1, -1).sum(axis=1).astype(np.int64)


def _array_nnz(planes: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Non-zero cells of every spliced crossbar: (planes, column blocks, row blocks)."""
    P, J, K = planes.shape
    nc, nr = math.ceil(J / cols), math.ceil(K / rows)
    pad = np.zeros((P, nc * cols, nr * rows), dtype=np.int64)
    pad[:, :J, :K] = planes
    return pad.reshape(P, nc, cols, nr, rows).sum(axis=(2, 4))


def sliced_arrays(out_features: int, in_features: int, weight_bits: int, rows: int, cols: int) -> int:
    """Crossbars of the dense differential layout of 1-bit cells (every slice of every output side by side)."""
    return math.ceil(in_features / rows) * math.ceil(2 * (weight_bits - 1) * out_features / cols)


@dataclass(frozen=True)
class SqueezeResult:
    groups: list[PackedGroup]
    sliced: int          # crossbars of the dense layout
    spliced: int         # non-empty crossbars after bit-slice splicing
    squeezed: int        # crossbars after squeeze-out
    moved_bits: int      # non-zero cells moved out of emptied crossbars

    def counts(self) -> dict[str, int]:
        return {"sliced": self.sliced, "spliced": self.spliced, "squeezed": self.squeezed}


def squeeze(q: np.ndarray, weight_bits: int, rows: int, cols: int, squeeze_density: float) -> SqueezeResult:
    """Splice the layer's bit-planes over ``rows x cols`` crossbars and squeeze out empty columns and sparse
    crossbars (see the module docstring)."""
    q = np.asarray(q, dtype=np.int64)
    O, K = q.shape
    P = weight_bits - 1
    planes = bit_planes(q, weight_bits)
    # splicing: columns plane by plane (plane 0's 2 x out columns, then plane 1's, ...), tiled in crossbars
    spliced_cols = planes.reshape(P * 2 * O, K)
    nnz = _array_nnz(spliced_cols[None], rows, cols)[0]        # (column blocks, row blocks)
    nr = nnz.shape[1]
    groups: list[PackedGroup] = []
    pool: dict[tuple[int, int], np.ndarray] = {}     # (row block, spliced column) -> inputs of its 1s
    moved = 0
    for r in range(nr):
        k0, k1 = r * rows, min((r + 1) * rows, K)
        block = spliced_cols[:, k0:k1]
        ones = block.sum(axis=1)
        live = np.flatnonzero(ones)                  # squeeze-out, 1: the row block's non-empty columns, side by side
        kept = []
        for c0 in range(0, len(live), cols):
            cs = live[c0:c0 + cols]
            n = int(ones[cs].sum())
            if n >= squeeze_density * rows * cols:
                kept.append(cs)
                continue
            moved += n                               # squeeze-out, 2: a sparse crossbar is emptied into shared ones
            for j in cs:
                pool[(r, int(j))] = k0 + np.flatnonzero(block[j])
        if kept:
            cs = np.concatenate(kept)
            outputs, weights = _column_table(cs, O)
            groups.append(PackedGroup(np.arange(k0, k1), outputs, weights, block[cs].astype(np.int64)))
    groups += _pack(pool, K, O, rows, cols)
    if not groups:   # an all-zero layer keeps one (empty) crossbar
        groups = [PackedGroup(np.arange(1), np.zeros(1, dtype=np.int64), np.zeros(1), np.zeros((1, 1), np.int64))]
    spliced = int((nnz > 0).sum())
    squeezed = sum(math.ceil(len(g.outputs) / cols) for g in groups)
    return SqueezeResult(groups, sliced_arrays(O, K, weight_bits, rows, cols), spliced, squeezed, moved)


def _column_table(cols: np.ndarray, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Spliced column index -> (output, digital weight +-2**plane)."""
    plane, j = np.divmod(cols, 2 * out)
    return j % out, np.where(j < out, 1.0, -1.0) * np.exp2(plane)


def _pack(pool: dict, K: int, O: int, rows: int, cols: int) -> list[PackedGroup]:
    """Best-fit packing of the moved column segments into shared crossbars (see the module docstring)."""
    # row block by row block, the fullest segments first
    items = sorted(((j, r, idx) for (r, j), idx in pool.items()), key=lambda it: (it[1], -len(it[2]), it[0]))
    masks = np.zeros((0, K), dtype=bool)
    used_rows = np.zeros(0, dtype=np.int64)
    used_cols = np.zeros(0, dtype=np.int64)
    members: list[list] = []
    for j, _, idx in items:
        new = (~masks[:, idx]).sum(axis=1)
        ok = (used_cols < cols) & (used_rows + new <= rows)
        if ok.any():
            b = int(np.flatnonzero(ok)[np.argmin(new[ok])])
        else:
            masks = np.vstack([masks, np.zeros((1, K), dtype=bool)])
            used_rows, used_cols = np.append(used_rows, 0), np.append(used_cols, 0)
            members.append([])
            b = len(members) - 1
            new = np.append(new, len(idx))
        masks[b, idx] = True
        used_rows[b] += int(new[b])
        used_cols[b] += 1
        members[b].append((j, idx))
    groups = []
    for b, mem in enumerate(members):
        r = np.flatnonzero(masks[b])
        levels = np.zeros((len(mem), len(r)), dtype=np.int64)
        for i, (_, idx) in enumerate(mem):
            levels[i, np.searchsorted(r, idx)] = 1
        outputs, weights = _column_table(np.array([j for j, _ in mem]), O)
        groups.append(PackedGroup(r, outputs, weights, levels))
    return groups


# ---------------------------------------------------------------------------------------------- the tile
def array_spec(spec: CrossbarSpec) -> CrossbarSpec:
    """The spec of SME's packed crossbars: the architecture's array, 1-bit cells holding 0/1 bits unsigned."""
    return replace(spec, signed="unsigned", weight_bits=1, cell_bits=1, pair_readout=False)


def packed_tile(q: np.ndarray, spec: CrossbarSpec, layout: BitPlaneLayout, *, seed: int = 0, backend: str = "numba",
                device: str = "cpu", name: str = "crossbar") -> tuple[PackedTile, SqueezeResult]:
    """The squeezed tile of one weight matrix ``q`` (out, in) of ``spec.weight_bits``-bit integers."""
    if spec.cell_bits != 1:
        raise ConfigError("SME splices one weight bit per crossbar: it needs 1-bit cells, got "
                          f"cell_bits={spec.cell_bits}")
    res = squeeze(q, spec.weight_bits, spec.rows, spec.cols, layout.squeeze_density)
    tile = PackedTile(q.shape[0], q.shape[1], res.groups, array_spec(spec), seed=seed, backend=backend, device=device,
                      name=name)
    return tile, res


# ---------------------------------------------------------------------------------------------- the mapper step
COUNT_COLUMNS = ("xbars_sliced", "xbars_spliced", "xbars_squeezed_unshaped", "xbars_squeezed")


def program_layer(layer, source, spec: CrossbarSpec, layout: BitPlaneLayout, seeds: list[int], *,
                  backend: str = "numba", device: str = "cpu") -> None:
    """SME's mapper step for one :class:`cimsim.mappers.MappedLayer`: shape its weights (``layout.nonzero_bits``),
    splice and squeeze every group into a :class:`~cimsim.packed.PackedTile`, and record the crossbars after each
    step in ``layer.layout_counts`` (the report's ``xbars_*`` columns; ``arrays`` is the squeezed count)."""
    plain = layer.w_int
    if 0 < layout.nonzero_bits < spec.weight_bits - 1 or layout.shaping_tolerance > 0:
        layer.set_integer_weights(*shape_weights(source.weight, spec.weight_bits, layout.nonzero_bits,
                                                 layout.shaping_tolerance, spec.rows, spec.cols, layer.plan.groups))
    groups = layer.plan.groups
    og = layer.w_int.shape[0] // groups
    counts = dict.fromkeys(COUNT_COLUMNS, 0)
    for g in range(groups):
        tile, res = packed_tile(layer.w_int[g * og:(g + 1) * og], spec, layout, seed=seeds[g], backend=backend,
                                device=device, name=layer.name)
        layer.crossbars.append(tile)
        unshaped = res if plain is layer.w_int else squeeze(plain[g * og:(g + 1) * og], spec.weight_bits, spec.rows,
                                                              spec.cols, layout.squeeze_density)
        counts["xbars_sliced"] += res.sliced
        counts["xbars_spliced"] += res.spliced
        counts["xbars_squeezed_unshaped"] += unshaped.squeezed
        counts["xbars_squeezed"] += res.squeezed
    layer.layout_counts = counts


def add_layout_counts(report, counts: dict[str, dict[str, int]]):
    """Add the layout's per-step crossbar counts as layer columns; a mapped layer the layout left as it was (no
    counts: e.g. a layer ADMM did not prune) has its arrays at every step, a layer not on crossbars 0. A report
    whose layers have none is returned as it is."""
    if not any(counts.values()):
        return report
    keys = [k for c in counts.values() for k in c]
    keys = list(dict.fromkeys(keys))
    for row in report.layers:
        got = counts.get(row["name"]) or {}
        for k in keys:
            row[k] = int(got.get(k, row.get("arrays", 0) if row["name"] in counts else 0))
    return report
