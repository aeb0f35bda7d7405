"""The fused path's shards run whole on the engine's threads: one numba call per thread
(:func:`cimsim.kernels_tables.share_tables`, :func:`cimsim.kernels_amx.share_tiles`) takes a call's shards (every
chunk's) one after another, whichever is next (:func:`take_next`, an atomic counter), runs each shard's kernel, writes
its rows of the outputs (:func:`finish_rows`) and its counts, and returns when no shard is left. Every shard's numbers
depend only on its examples (the draws are placed by example, cycle and column), so which thread runs which shard
changes nothing.

Why: a return to the interpreter between a thread's kernels waits for its lock, which every other thread's Python
holds in turn. On the 16-core H200 host the standard case's 16 threads started 0.2 ms apart (the last 3.2 ms into
the call) and each paid Python between its two shards (BENCHMARKS.md, "Whole shares in one kernel"). Here a thread
holds the lock only to enter its one call; the tally is assembled from the counts after the threads end. Shards
taken as threads come free, not in fixed shares: the same kernel ran 5.5-10.4 ms on the host's different cores alone
(their neighbours' load), so fixed shares waited for the slowest.

The reads' conductance of a row block (``sum_k (sum of digit**2)_k G_k``) is summed in row order in float64
(:func:`row_conductance`) on every CPU path (a dot product in BLAS before, whose order is its own).
"""

from __future__ import annotations

import numpy as np

from cimsim import numba_target
from cimsim.crossbar_layout import Tally
from cimsim.fileio import numba_cache_fallback

numba_cache_fallback()   # before numba loads (see cimsim.kernels)
numba_target.configure()   # 512-bit vectors where the CPU has AVX-512 (cimsim.numba_target)
from numba import njit, types  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.core.extending import intrinsic  # noqa: E402


@intrinsic
def take_next(typingctx, counter):
    """``counter[0]``, then ``counter[0] += 1``, as one atomic step (LLVM's ``atomicrmw add``): the next shard for
    whichever thread asks first (an int64 array)."""
    sig = types.int64(counter)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], arr, [context.get_constant(types.intp, 0)])
        return builder.atomic_rmw("add", ptr, context.get_constant(types.int64, 1), "seq_cst")
    return sig, codegen


@njit(nogil=True, cache=True)
def next_shard(counter, edges):
    """``(j, first example, examples)`` of the next non-empty shard j (examples ``edges[j] .. edges[j + 1]``) from
    ``counter`` (:func:`take_next`), or ``(-1, 0, 0)`` when none is left."""
    while True:
        j = take_next(counter)
        if j >= edges.shape[0] - 1:
            return -1, 0, 0
        if edges[j + 1] > edges[j]:
            return j, edges[j], edges[j + 1] - edges[j]


@njit(nogil=True, cache=True)
def most_examples(edges):
    """The largest shard (examples ``edges[j] .. edges[j + 1]``): the size of a thread's buffers."""
    m = 0
    for j in range(edges.shape[0] - 1):
        m = max(m, edges[j + 1] - edges[j])
    return m


@njit(nogil=True, cache=True)
def row_conductance(sq, g):
    """``sum_k sq[k] g[k]`` in row order, float64: one row block's reads per unit read time (``sq`` the digits'
    squares summed per row, ``g`` the row's conductances summed over its columns)."""
    c = 0.0
    for k in range(sq.shape[0]):
        c += float(sq[k]) * g[k]
    return c


@njit(nogil=True, cache=True)
def finish_rows(acc, rw, n_out, offset, row_sums, with_offset, b0, y):
    """Rows b0 .. of ``y`` from a shard's column sums ``acc`` (examples, slices x n_out): each output the sum over
    slices, in slice order, of ``acc x rw``, less ``offset x row_sums`` where ``with_offset``; numpy's numbers for
    ``(acc * rw).reshape(nb, -1, n_out).sum(axis=1) - offset * row_sums[:, None]`` (a sum over a middle axis adds
    its slices in order)."""
    slices = acc.shape[1] // n_out
    for b in range(acc.shape[0]):   # by index, no row views (numba counts references to each)
        e = b0 + b
        for n in range(n_out):
            s = acc[b, n] * rw[n]
            for k in range(1, slices):
                s += acc[b, k * n_out + n] * rw[k * n_out + n]
            y[e, n] = s
        if with_offset:
            sub = offset * row_sums[e]
            for n in range(n_out):
                y[e, n] = y[e, n] - sub


@njit(nogil=True, cache=True)
def finish_shard(j, b0, acc, sqsum, k0s, k1s, g, rw, n_out, offset, row_sums, with_offset, y, cond):
    """After shard j's kernel: its rows of ``y`` (:func:`finish_rows`) and each row block's conductance in
    ``cond[j]`` (:func:`row_conductance`)."""
    finish_rows(acc, rw, n_out, offset, row_sums, with_offset, b0, y)
    for i in range(k0s.shape[0]):
        cond[j, i] = row_conductance(sqsum[i, : k1s[i] - k0s[i]], g[i])


def stack_rows(per_block: list, width: int) -> np.ndarray:
    """Per-block 1-d arrays as one (blocks, ``width``) float64 array, shorter blocks padded with zeros."""
    out = np.zeros((len(per_block), width))
    for i, v in enumerate(per_block):
        out[i, : len(v)] = v
    return out


def share_tallies(nz: np.ndarray, cl: np.ndarray, cond: np.ndarray, read_time_s: float) -> list[Tally]:
    """Each shard's tally from its counts (``cond[j, i]``: shard j's row block i), its conductance added block by
    block, as the block loop of :meth:`cimsim.crossbar_cpu.CpuTile._shard_fused` adds it (the caller adds the
    shards' tallies in order to its own, as for every other path: the same float sums)."""
    tallies = []
    for j in range(nz.shape[0]):
        t = Tally(nonzero_digits=float(nz[j]), clipped=float(cl[j]))
        for i in range(cond.shape[1]):
            t.conductance_s += float(cond[j, i]) * read_time_s
        tallies.append(t)
    return tallies
