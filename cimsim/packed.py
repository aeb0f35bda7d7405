"""Packed tiles: a layer's weights laid out over crossbars by an index table, not as one dense grid.

A :class:`PackedTile` computes the integer product ``y = x @ W.T`` of one weight matrix (out, in) from a list
of :class:`PackedGroup`\\ s. Each group is a set of physical rows and the columns that read them:

* ``rows`` (r,): the input each physical row (word line) is driven with: the periphery gathers
  ``x[:, rows]`` (the row index table);
* ``levels`` (c, r): the integer weights the group's columns hold (programmed and read by a
  :class:`~cimsim.Crossbar` of the tile's spec, so every cell, readout, conversion scope and non-ideality of
  the engine applies, and the group's arrays count their own events);
* ``outputs`` (c,) and ``weights`` (c,): the output each column adds into and its digital weight (the column
  table): the periphery splices ``y[:, outputs[j]] += weights[j] * column_j``.

So ``y[b, o] = sum_groups sum_{j: outputs[j] = o} weights[j] * sum_i levels[j, i] * x[b, rows[i]]``; with an
ideal cell and a lossless readout it is the exact integer product whenever the groups hold every weight
once (:func:`PackedGroup` layouts built by :mod:`cimsim.mappers.sme` and masked mappings do). A group with
``c`` columns and ``r <= spec.rows`` rows occupies ``ceil(c * slices * polarity / spec.cols)`` arrays.

The tile behaves as a :class:`~cimsim.Crossbar` does for the mapper: call it on integer inputs (batch, in),
read ``arrays`` and ``ledger`` (its groups' events merged; assigning a fresh ledger resets them), and
``calibrate`` its ADC ranges; on the torch backend :meth:`PackedTile.call_device` takes and returns tensors on the
engine's device, so a mapped network's packed layers (SME, ADMM's masked blocks) stay there as dense ones do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cimsim.crossbar import Crossbar
from cimsim.errors import ConfigError
from cimsim.ledger import EventLedger
from cimsim.spec import CrossbarSpec

# the exact product x @ M of a call whose groups all took the lossless path, in blocks of rows whose float64 copy of x
# holds at most this many bytes (our choice: below glibc's largest mmap threshold, so the copies reuse the heap instead
# of fresh pages each call; a ResNet-20 layer's batch of 64 images is 75 MB at once)
EXACT_CHUNK_BYTES = 8 << 20


@dataclass(frozen=True)
class PackedGroup:
    """Physical rows (their inputs) and the columns that read them (their outputs, weights and levels)."""

    rows: np.ndarray      # (r,) int: input index of each physical row
    outputs: np.ndarray   # (c,) int: output index of each column
    weights: np.ndarray   # (c,) float: digital weight of each column (e.g. +-2**plane)
    levels: np.ndarray    # (c, r) int: the weights the columns hold, encoded by the tile's spec

    def __post_init__(self):
        r, c = len(self.rows), len(self.outputs)
        if r < 1 or c < 1 or self.levels.shape != (c, r) or len(self.weights) != c:
            raise ConfigError(f"a packed group needs rows (r,), outputs (c,), weights (c,) and levels (c, r) with "
                              f"r, c >= 1; got rows {len(self.rows)}, outputs {c}, weights {len(self.weights)}, "
                              f"levels {self.levels.shape}")
        if len(np.unique(self.rows)) != r:
            raise ConfigError("a packed group drives each input on at most one of its rows")


class PackedTile:
    """One weight matrix (out, in) computed by packed groups of crossbars (see the module docstring)."""

    # groups whose calls take the CPU engine's lossless path count their events only, and their columns come from one
    # exact product x @ M (see __call__); False: every group's own call (tests/test_packed_exact.py: the same numbers)
    EXACT = True

    def __init__(self, out_features: int, in_features: int, groups: list[PackedGroup], spec: CrossbarSpec,
                 seed: int = 0, backend: str = "numba", device: str = "cpu", name: str = "crossbar"):
        if not groups:
            raise ConfigError("a packed tile needs at least one group (an all-zero layer still keeps one array)")
        self.out_features, self.in_features, self.spec, self.name = int(out_features), int(in_features), spec, name
        self.groups = groups
        for g in groups:
            if len(g.rows) > spec.rows:
                raise ConfigError(f"a packed group has {len(g.rows)} rows; the array has {spec.rows}")
            if g.rows.min() < 0 or g.rows.max() >= in_features or g.outputs.min() < 0 \
                    or g.outputs.max() >= out_features:
                raise ConfigError("a packed group's row or output index lies outside the layer")
        ss = np.random.SeedSequence(seed)
        self.crossbars = [Crossbar(g.levels, spec, seed=int(s.generate_state(1)[0]), backend=backend, device=device,
                                   name=name) for g, s in zip(groups, ss.spawn(len(groups)))]
        # the column table as one scatter matrix per group: y += column values @ scatter (exact: integers < 2**53)
        self._scatter = []
        for g in groups:
            s = np.zeros((len(g.outputs), self.out_features))
            np.add.at(s, (np.arange(len(g.outputs)), g.outputs), g.weights)
            self._scatter.append(s)
        self._device_tables: tuple | None = None   # (device, [(rows, scatter) per group]) for call_device
        self._spliced_m: np.ndarray | None = None   # see _spliced
        self._bounded: bool | None = None          # whether x @ M is exact with every group in M
        self.last_exact: np.ndarray | None = None  # M when every group of the last call was lossless

    # ------------------------------------------------------------------ layout
    @property
    def arrays(self) -> int:
        return sum(xb.arrays for xb in self.crossbars)

    @property
    def row_blocks(self) -> list[tuple[int, int]]:
        """The layer's reduction in blocks of the array's rows (as a dense tile would hold it)."""
        r = self.spec.rows
        return [(k, min(k + r, self.in_features)) for k in range(0, self.in_features, r)]

    @property
    def index_entries(self) -> tuple[int, int]:
        """(row-table entries, column-table entries) the periphery keeps: one per physical row and per column."""
        return sum(len(g.rows) for g in self.groups), sum(len(g.outputs) for g in self.groups)

    def cell_macs_per_input(self) -> int:
        """The cell products one input vector costs the packed arrays: used rows x used columns x input cycles,
        summed over the groups (what ``cimsim bench --model`` counts for a packed layer, where a dense tile counts
        K x N x cycles x weight slices: the same notion, over the columns the layout keeps)."""
        return sum(len(g.rows) * len(g.outputs) * xb.cycles for g, xb in zip(self.groups, self.crossbars))

    def conversions_per_mvm(self) -> int:
        return sum(xb.conversions_per_mvm() for xb in self.crossbars)

    # ------------------------------------------------------------------ events
    @property
    def ledger(self) -> EventLedger:
        return EventLedger.merge(xb.ledger for xb in self.crossbars)

    @ledger.setter
    def ledger(self, value: EventLedger) -> None:
        if value.layers():
            raise ConfigError("a packed tile's ledger can only be reset (assign an empty EventLedger)")
        for xb in self.crossbars:
            xb.ledger = EventLedger()

    # ------------------------------------------------------------------ compute
    def _check(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ConfigError(f"inputs must have shape (batch, {self.in_features}), got {x.shape}")
        return x

    def calibrate(self, x) -> None:
        """Each group's ADC ranges from the inputs its rows gather."""
        x = self._check(x)
        for g, xb in zip(self.groups, self.crossbars):
            xb.calibrate(x[:, g.rows])

    def _spliced(self) -> np.ndarray:
        """M (in, out) float64: every group's levels spliced by its column table, so that x @ M is the sum of the
        groups' exact columns times their weights (integers; built once)."""
        if self._spliced_m is None:
            m = np.zeros((self.in_features, self.out_features))
            for g, s in zip(self.groups, self._scatter):
                m[g.rows] += g.levels.T.astype(np.float64) @ s   # a group drives an input on one row at most
            self._spliced_m = m
        return self._spliced_m

    def _exact_bound(self) -> bool:
        """Whether, for any inputs of the spec's bits, every partial sum of x @ M and of each group's product with
        its levels is an integer below 2**53 (then those float64 products are exact, in any order)."""
        if self._bounded is None:
            a = np.zeros((self.in_features, self.out_features))
            col = 0.0
            for g, s in zip(self.groups, self._scatter):
                lv = np.abs(g.levels.T.astype(np.float64))
                a[g.rows] += lv @ np.abs(s)
                col = max(col, float(lv.sum(axis=0).max(initial=0.0)))
            top = max(col, float(a.sum(axis=0).max(initial=0.0)))
            self._bounded = bool(top * 2.0 ** self.spec.input_bits < 2.0 ** 53)
        return self._bounded

    def __call__(self, x) -> np.ndarray:
        """y (batch, out) float64. A group whose call takes the CPU engine's lossless path returns exactly its inputs'
        integer product with its levels (:meth:`cimsim.Crossbar.exact_weights`), so it only counts its events
        (``product=False``); when every group does, the columns come from one exact product with :meth:`_spliced`'s
        M: the same numbers without a product per group and per column table (``tests/test_packed_exact.py``)."""
        x = self._check(x)
        y = np.zeros((x.shape[0], self.out_features))
        exact = self.EXACT and self._exact_bound()
        counted = 0    # groups counted so far, whose columns are not formed yet
        self.last_exact = None
        # one buffer for every group's inputs (a crossbar keeps none of its inputs): a fresh array per group would cost
        # its pages' first touch again each time
        buf = np.empty(x.shape[0] * max(len(g.rows) for g in self.groups), dtype=x.dtype)
        for g, xb, s in zip(self.groups, self.crossbars, self._scatter):
            xg = self._rows(x, g.rows, buf)
            if exact and xb(xg, product=False) is None:
                counted += 1
                continue
            if exact:   # a group off the lossless path: those counted before it form their columns first, in order
                for gc, sc in zip(self.groups[:counted], self._scatter):
                    y += (np.take(x, gc.rows, axis=1).astype(np.float64) @ gc.levels.T.astype(np.float64)) @ sc
                exact = False
            y += xb(xg) @ s
        if counted == len(self.groups):   # every group counted: y is x @ M
            self.last_exact = self._spliced()
            step = max(1, EXACT_CHUNK_BYTES // (8 * max(1, x.shape[1])))
            for r0 in range(0, x.shape[0], step):   # exact integers: any split of the rows, the same numbers
                y[r0:r0 + step] += x[r0:r0 + step].astype(np.float64) @ self.last_exact
        return y

    @staticmethod
    def _rows(x: np.ndarray, rows: np.ndarray, buf: np.ndarray) -> np.ndarray:
        """x[:, rows], C-contiguous: copied into ``buf`` where the rows are one range, else gathered (np.take: several
        times faster than x[:, rows])."""
        r = len(rows)
        if r > 1 and rows[-1] - rows[0] == r - 1 and np.all(np.diff(rows) == 1):
            out = buf[:x.shape[0] * r].reshape(x.shape[0], r)
            np.copyto(out, x[:, rows[0]:rows[-1] + 1])
            return out
        return np.take(x, rows, axis=1)

    def exact_weights(self) -> np.ndarray | None:
        """(in, out) float64 integers M: the last call returned exactly x @ M when every group took the lossless path
        (as :meth:`cimsim.Crossbar.exact_weights`); None otherwise."""
        return self.last_exact

    @property
    def torch_device(self):
        """The torch device every group's crossbar runs on (the torch backend), else None
        (:attr:`cimsim.Crossbar.torch_device`)."""
        devices = {xb.torch_device for xb in self.crossbars}
        return devices.pop() if len(devices) == 1 else None

    def call_device(self, xt):
        """:meth:`cimsim.Crossbar.call_device` for the packed tile: integer inputs ``xt`` (batch, in) on the engine's
        device; each group's rows gathered there, its crossbar called there and its columns spliced into the
        outputs by the same float64 product with the column table as :meth:`__call__` (exact for integer column
        values: every sum below 2**53), so nothing returns to the host. Returns y (batch, out) float64 on the
        device; the groups' events are counted when :attr:`ledger` is next read. ``xt`` is checked as the dense
        tile's is (:func:`cimsim.torch_products.check_device_input`): a wider one would gather the groups' rows and
        return numbers."""
        import torch

        from cimsim.torch_products import check_device_input

        dev = self.torch_device
        if dev is None:   # the numba backend (each group's Crossbar.call_device would say so, after the gather)
            raise ConfigError("call_device needs the torch backend (backend='torch')")
        xt = check_device_input(xt, self.in_features, dev)
        dev = xt.device   # the tables on the input's device, as before (the check compares the device's kind)
        if self._device_tables is None or self._device_tables[0] != dev:
            self._device_tables = (dev, [(torch.as_tensor(g.rows, dtype=torch.long, device=dev),
                                          torch.from_numpy(s).to(dev)) for g, s in zip(self.groups, self._scatter)])
        y = torch.zeros((xt.shape[0], self.out_features), dtype=torch.float64, device=dev)
        for (rows, s), xb in zip(self._device_tables[1], self.crossbars):
            y += xb.call_device(xt.index_select(1, rows)) @ s
        return y

    def __repr__(self) -> str:
        return (f"PackedTile({self.out_features}x{self.in_features}, {len(self.groups)} groups, {self.arrays} arrays, "
                f"{math.fsum(len(g.rows) for g in self.groups):.0f} rows)")
