"""A counting tile: the events a :class:`cimsim.Crossbar` would count, and the exact integer product, without
programming a cell (cost-only runs of networks too large to hold every conductance).

``CountingCrossbar(W, spec)`` has the layout of the tile ``Crossbar(W, spec)`` would build
(:class:`cimsim.crossbar_layout.CrossbarLayout`: slices, row and column blocks, arrays, cycles, conversions) and counts a
call's events the way the engine does (:meth:`~cimsim.crossbar_layout.CrossbarLayout._count`), from

* the input digits of every cycle, counted per input from tables (:func:`cimsim.kernels.digit_tables`; cut cycle
  by cycle above their 16 bits): the non-zero digits (DAC drives, cell reads) and ``sum digit**2`` per row;
* each row's summed conductance at the nominal levels, ``sum_j G(level[j, k])`` over the tile's physical columns:
  ``cell_read_conductance_s = sum_k (sum digit**2)_k * rowsum_k * t_read``.

What it keeps is a view of the integer weights and one float per row, not the ``slices x 2 x outputs x inputs``
conductances (a 14-column differential 8-bit weight holds 14 float64 cells in the engine). Its outputs are the exact integer product
``x @ W.T``: the activations of the next layers are the quantized network's, not the hardware's (the ADC's
error and the devices' noise do not move them), and a conversion never clips (``clipped_conversions`` 0; the
architectures cost it at 0 J). With ideal devices and a lossless readout the engine gives the same outputs and
the same ledger (``tests/test_crossbar_count.py``); programming noise and faults are not drawn (nominal
conductances). The mapper builds these tiles for ``backend="count"``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cimsim.crossbar_layout import CrossbarLayout
from cimsim.crossbar_layout import Tally
from cimsim.encoding import check_inputs, digit_source, plane_layout, slice_weights
from cimsim.errors import ConfigError
from cimsim.kernels import digit_tables
from cimsim.ledger import EventLedger
from cimsim.readouts import readout_op
from cimsim.spec import CrossbarSpec

# input columns sliced at a time while summing the rows' conductances: ~64 MB of int64 levels (our choice)
COUNT_CHUNK_CELLS = 8 * 1024 * 1024


class CountingCrossbar(CrossbarLayout):
    """The events and the exact product of ``Crossbar(W, spec)`` without its cells (see the module docstring)."""

    lossless_calls = 0   # no call takes the engine's lossless path: none simulates (cimsim bench --model reads it)
    torch_device = None  # counted on the host: a mapped layer of counting tiles takes the host path

    def __init__(self, W, spec: CrossbarSpec, name: str = "crossbar"):
        if not isinstance(spec, CrossbarSpec):
            raise ConfigError(f"spec must be a cimsim.CrossbarSpec, got {type(spec).__name__}")
        W = np.asarray(W)
        if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] < 1:
            raise ConfigError(f"weights must be a 2-D array (out_features, in_features), got shape {W.shape}")
        self.spec, self.name = spec, name
        self.readout_op = readout_op(spec.readout)
        self.out_features, self.in_features = W.shape
        self.W = W                                   # the caller's integers (a view: no copy)
        levels = spec.cell.level_conductances(spec.cell_bits)
        # each row's summed nominal conductance over the physical columns, sliced a block of inputs at a time (the
        # levels of every cell would be slices x polarities x outputs x inputs integers at once)
        self.g_rowsum = np.zeros(self.in_features)
        step = max(1, COUNT_CHUNK_CELLS // max(1, self.out_features * 2 * spec.weight_bits))
        for k0 in range(0, self.in_features, step):
            part = slice_weights(W[:, k0:k0 + step], spec.weight_bits, spec.cell_bits, spec.signed)
            for j, g in enumerate(levels):
                self.g_rowsum[k0:k0 + step] += float(g) * (part.levels == j).sum(axis=(0, 1, 2))
        S, P = part.levels.shape[:2]
        # the layout needs the slices' shape, place values, signs and offset, not their levels: a zero-strided view
        self.slices = replace(part, levels=np.broadcast_to(np.zeros((), np.int8), (S, P, *W.shape)))
        self.tables = digit_tables(spec.input_bits, spec.dac_bits, spec.input_signed, spec.input_encoding)
        self._ledger = EventLedger()

    def calibrate(self, x) -> None:
        """Nothing to calibrate: the counting tile converts nothing (the inputs' shape is checked)."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ConfigError(f"calibration inputs must have shape (batch, {self.in_features}), got {x.shape}")

    def digit_counts(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """(non-zero digits over every input and cycle, sum of digit**2 per row (in,)) of integer inputs ``x``."""
        spec = self.spec
        key = (spec.input_bits, spec.input_signed, spec.input_encoding)
        u = digit_source(check_inputs(x, spec.input_bits, spec.input_signed, encoding=spec.input_encoding), *key)
        if self.tables is not None:
            nz_t, sq_t, _ = self.tables
            return float(nz_t[u].sum(dtype=np.int64)), sq_t[u].sum(axis=0, dtype=np.int64).astype(np.float64)
        shifts, widths = plane_layout(spec.input_bits, spec.dac_bits, spec.input_signed, spec.input_encoding)
        nz, sq = 0, np.zeros(self.in_features)
        for sh, w in zip(shifts, widths):   # the unsigned digits (cimsim.encoding.input_planes)
            d = (u >> int(sh)) & ((1 << int(w)) - 1)
            nz += int(np.count_nonzero(d))
            sq += np.square(d).sum(axis=0, dtype=np.int64)
        return float(nz), sq

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ConfigError(f"inputs must have shape (batch, {self.in_features}), got {x.shape}")
        nz, sq = self.digit_counts(x)
        tally = Tally()
        tally.nonzero_digits = nz
        tally.conductance_s = float(sq @ self.g_rowsum) * self.spec.cell.read_time_s
        self._count(x.shape[0], tally)
        return x.astype(np.float64) @ self.W.T.astype(np.float64)   # integers below 2**53: exact

    @property
    def ledger(self) -> EventLedger:
        return self._ledger

    @ledger.setter
    def ledger(self, value: EventLedger) -> None:
        self._ledger = value
