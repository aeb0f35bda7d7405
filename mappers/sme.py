"""SME's mapper steps (Liu et al., "SME: ReRAM-based Sparse-Multiplication-Engine to Squeeze-Out Bit Sparsity
of Neural Network", arXiv 2103.01705; docs/references.md#sme): bit-sparsity shaping, bit-slice splicing and
squeeze-out.

The steps turn one layer's quantized integer weights ``W`` (out, in), ``|W| <= 2**(b-1) - 1``, into packed
groups of 1-bit crossbars (:class:`cimsim.packed.PackedGroup`) that the engine then runs
(:class:`cimsim.packed.PackedTile`): with an ideal cell and a lossless readout the squeezed layer computes
the exact integer product of the (shaped) quantized layer, bit for bit.

1. **Bit-sparsity shaping** (:func:`shape_weights`; knob ``nonzero_bits = N``). On top of the per-channel
   symmetric quantizer (:func:`cimsim.mappers.quantize_weights`), every weight magnitude moves to the
   nearest magnitude with at most ``N`` non-zero bits (ties go to the smaller magnitude), so low-order bits
   vanish. "Where the loss allows": per output channel the scale is re-chosen from ``SCALE_FACTORS`` x the
   plain scale to minimise the channel's squared weight error after shaping (a channel whose largest
   weights would otherwise fall from 127 to 96 shifts its grid instead). ``N = 0`` or ``N >= b - 1`` leaves
   the quantizer's output as it is.
2. **Bit-slice splicing** (:func:`bit_planes`, :func:`splice_counts`). Sign-magnitude, as the engine's
   differential encoding: ``W = W+ - W-``; bit ``p`` of ``W+`` and of ``W-`` (``p = 0 .. b-2``) is a 0/1
   matrix, and plane ``p`` of the layer (its ``2 x out`` columns: the outputs' ``W+`` bits then their ``W-``
   bits) is tiled on its own group of 1-bit crossbars (``rows x cols``). Each column's result is spliced in the
   periphery with its weight ``+-2**p``. The sparse high-order planes so gather in their own crossbars; a
   crossbar left with no non-zero is not allocated.
3. **Squeeze-out** (:func:`squeeze`; knob ``squeeze_density = d``). A spliced crossbar whose non-zeros fill
   less than ``d`` of its ``rows x cols`` cells is emptied. Its non-zero cells are moved, column by column: a
   column (one plane, polarity and output) keeps the inputs where it has a 1, merged over the row blocks of
   every emptied crossbar it had cells in (in chunks of at most ``rows`` inputs). The columns are then
   packed, largest first, into shared crossbars: each goes to the open crossbar that needs the fewest new
   rows for it (best fit; rows are inputs, shared by every column of a crossbar), if the crossbar still has
   a free column and enough free rows, else to a new one. Each packed crossbar keeps a row table (the input
   of each row) and a column table (the output and ``+-2**p`` of each column): the index bookkeeping the
   periphery needs. Crossbars with ``d`` or more of their cells non-zero stay as spliced.

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


def shape_weights(w, weight_bits: int, nonzero_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Float weights (out, ...) -> (shaped integer weights, scale per output channel); see the module docstring."""
    from cimsim.mappers.mapper import quantize_weights   # the plain quantizer (imported late: mapper imports us)

    q, scale = quantize_weights(w, weight_bits)
    if nonzero_bits <= 0 or nonzero_bits >= weight_bits - 1:
        return q, scale
    m = (1 << (weight_bits - 1)) - 1
    table = shaping_table(weight_bits, nonzero_bits)
    flat = w.detach().double().reshape(w.shape[0], -1).numpy()
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


def _column_table(cols: np.ndarray, out: int, plane: int) -> tuple[np.ndarray, np.ndarray]:
    return cols % out, np.where(cols < out, 1.0, -1.0) * float(2 ** plane)


def squeeze(q: np.ndarray, weight_bits: int, rows: int, cols: int, squeeze_density: float) -> SqueezeResult:
    """Splice the layer's bit-planes over ``rows x cols`` crossbars and squeeze out the sparse ones."""
    q = np.asarray(q, dtype=np.int64)
    O, K = q.shape
    P = weight_bits - 1
    planes = bit_planes(q, weight_bits)
    # splicing: columns plane by plane (plane 0's 2 x out columns, then plane 1's, ...), tiled in crossbars
    spliced_cols = planes.reshape(P * 2 * O, K)
    nnz = _array_nnz(spliced_cols[None], rows, cols)[0]        # (column blocks, row blocks)
    nc, nr = nnz.shape
    threshold = squeeze_density * rows * cols
    groups: list[PackedGroup] = []
    pool: dict[tuple[int, int], np.ndarray] = {}     # (row block, spliced column) -> inputs of its 1s
    moved = 0
    for r in range(nr):
        k0, k1 = r * rows, min((r + 1) * rows, K)
        kept = []
        for c in range(nc):
            n = int(nnz[c, r])
            if n == 0:
                continue
            j0, j1 = c * cols, min((c + 1) * cols, P * 2 * O)
            if n >= threshold:
                kept.append(np.arange(j0, j1))
                continue
            moved += n
            block = spliced_cols[j0:j1, k0:k1]
            for jj in np.flatnonzero(block.any(axis=1)):
                pool[(r, j0 + int(jj))] = k0 + np.flatnonzero(block[jj])
        if kept:
            cs = np.concatenate(kept)
            outputs, weights = _column_table(cs, O)
            groups.append(PackedGroup(np.arange(k0, k1), outputs, weights, spliced_cols[cs, k0:k1].astype(np.int64)))
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
    if 0 < layout.nonzero_bits < spec.weight_bits - 1:
        layer.set_integer_weights(*shape_weights(source.weight, spec.weight_bits, layout.nonzero_bits))
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
