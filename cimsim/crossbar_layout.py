"""What a crossbar tile holding a weight matrix is made of, and how its calls are counted.

:class:`CrossbarLayout` is shared by the engine's tile (:class:`cimsim.crossbar.Crossbar`) and the counting tile
(:class:`cimsim.crossbar_count.CountingCrossbar`): slices, row and column blocks, arrays, cycles, the conversions of
the spec's scope (:class:`cimsim.readouts.ConversionScope`: cycles, row blocks and weight slices summed in analog),
the worst-case range of one conversion and the GEMM's float type, and the ledger's events of a call from its
:class:`Tally`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cimsim import events
from cimsim.encoding import input_cycles, input_parts, plane_layout, plane_weights


@dataclass
class Tally:
    """What a forward pass counted besides its conversions: non-zero input digits, the reads'
    conductance-seconds (sum of digit**2 * G * t_read), non-zero decisions and clipped conversions."""

    nonzero_digits: float = 0.0
    conductance_s: float = 0.0
    decisions: float = 0.0
    clipped: float = 0.0

    def __iadd__(self, other: "Tally") -> "Tally":
        self.nonzero_digits += other.nonzero_digits
        self.conductance_s += other.conductance_s
        self.decisions += other.decisions
        self.clipped += other.clipped
        return self


class CrossbarLayout:
    """What a tile of ``spec`` holding a weight matrix is made of (slices, row and column blocks, arrays, cycles,
    conversions) and how a call's events are counted from its tally: shared by :class:`Crossbar` and the
    counting tile :class:`cimsim.crossbar_count.CountingCrossbar`. Needs ``spec``, ``slices``, ``in_features``,
    ``out_features``, ``readout_op``, ``name`` and ``_ledger``."""

    @property
    def n_slices(self) -> int:
        return self.slices.levels.shape[0]

    @property
    def n_polarity(self) -> int:
        return self.slices.levels.shape[1]

    @property
    def physical_columns(self) -> int:
        return self.n_slices * self.n_polarity * self.out_features

    @property
    def buffered_columns(self) -> int:
        """Values read per (input cycle, row block), each slice's: column pairs with ``pair_readout``, else physical
        columns (what an analog accumulation holds before its sum: ``analog_accumulations``)."""
        return self.n_slices * self.out_features if self.spec.pair_readout else self.physical_columns

    @property
    def slice_groups(self) -> list[tuple[int, int]]:
        """The (first, end) weight slices each conversion sums (:meth:`cimsim.readouts.ConversionScope.slice_groups`)."""
        return self.spec.conversion.slice_groups(self.n_slices)

    def slice_group_matrix(self) -> np.ndarray:
        """(slices, groups): slice s's place value relative to its group's least significant slice, ``w_s / w_s0``
        (0 outside its group). A group's analog value is its slices' values through this matrix."""
        w = np.asarray(self.slices.weights, dtype=np.float64)
        m = np.zeros((self.n_slices, len(self.slice_groups)))
        for g, (s0, s1) in enumerate(self.slice_groups):
            m[s0:s1, g] = w[s0:s1] / w[s0]
        return m

    @property
    def readout_columns(self) -> int:
        """Values converted per (input cycle group, conversion domain): per slice group, the column pairs with
        ``pair_readout``, else the physical columns (its polarities apart)."""
        per_slice = self.out_features if self.spec.pair_readout else self.n_polarity * self.out_features
        return len(self.slice_groups) * per_slice

    @property
    def row_blocks(self) -> list[tuple[int, int]]:
        r = self.spec.rows
        return [(k, min(k + r, self.in_features)) for k in range(0, self.in_features, r)]

    @property
    def col_blocks(self) -> int:
        return math.ceil(self.physical_columns / self.spec.cols)

    @property
    def arrays(self) -> int:
        return len(self.row_blocks) * self.col_blocks

    @property
    def cycles(self) -> int:
        """Input cycles per matrix-vector product (:func:`cimsim.encoding.plane_layout`'s)."""
        s = self.spec
        return input_cycles(s.input_bits, s.dac_bits, s.input_signed, s.input_encoding)

    def input_layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(shifts, widths, place values) of the input cycles (:func:`cimsim.encoding.plane_layout`,
        :func:`cimsim.encoding.plane_weights`), as the spec streams its inputs."""
        s = self.spec
        key = (s.input_bits, s.dac_bits, s.input_signed, s.input_encoding)
        return (*plane_layout(*key), plane_weights(*key))

    @property
    def conversion_domains(self) -> list[list[int]]:
        """The row blocks of each conversion domain: one range per domain."""
        return self.spec.conversion.block_groups(len(self.row_blocks))

    def cycle_groups(self) -> list[tuple[int, int]]:
        """The (first, end) input cycles of each conversion (the spec's scope; no conversion spans a split input's
        two passes: :func:`cimsim.encoding.input_parts`)."""
        return self.spec.conversion.cycle_groups(self.cycles, input_parts(self.input_layout()[2]))

    def conversions_per_mvm(self) -> int:
        """Conversions of one matrix-vector product (one example)."""
        return len(self.cycle_groups()) * len(self.conversion_domains) * self.readout_columns

    def _count(self, batch: int, tally) -> None:
        led, name = self._ledger, self.name
        conversions = batch * self.conversions_per_mvm()
        led.add(name, events.ARRAY_READ_CYCLES, batch * self.cycles * self.arrays)
        led.add(name, self.readout_op.event, conversions)
        led.add(name, events.DAC_DRIVES, tally.nonzero_digits * self.col_blocks)
        led.add(name, events.CELL_READS, tally.nonzero_digits * self.physical_columns)
        led.add(name, events.CELL_READ_CONDUCTANCE_S, tally.conductance_s)
        led.add(name, events.SHIFT_ADDS, conversions)
        if not self.spec.conversion.per_cycle:
            led.add(name, events.ANALOG_ACCUMULATIONS,
                    batch * self.cycles * len(self.row_blocks) * self.buffered_columns)
        if self.readout_op.quantizes:
            led.add(name, events.CLIPPED_CONVERSIONS, tally.clipped)
        if self.readout_op.decides:
            led.add(name, events.NONZERO_DECISIONS, tally.decisions)
        if self.slices.offset:
            led.add(name, events.OFFSET_CORRECTION_ADDS, batch * (self.in_features + self.out_features))

    def group_slices(self, v: np.ndarray, m: np.ndarray | None = None) -> np.ndarray:
        """Values of each slice (last axis: slices x the columns of one slice) summed into their groups through
        ``m`` (:meth:`slice_group_matrix` by default; its square for variances), float64."""
        m = self.slice_group_matrix() if m is None else m
        S, G = m.shape
        lead = v.shape[:-1]
        x = np.asarray(v, dtype=np.float64).reshape(*lead, S, -1)
        return np.einsum("...sx,sg->...gx", x, m).reshape(*lead, -1)

    def digit_range(self) -> tuple[int, int]:
        """Smallest and largest input digit of a cycle (unsigned: the sign of signed inputs is a cycle's place value,
        :func:`cimsim.encoding.plane_weights`)."""
        return 0, (1 << self.spec.dac_bits) - 1

    def gemm_dtype(self) -> type:
        """float32 when integer column values stay below 2**24 in magnitude (then float32 products are
        exact, like float64 ones, so both backends agree bit for bit on integer paths), float64 otherwise.
        On non-integer paths (programming noise, IR drop) the level units sit on a grid whose sums float32
        holds exactly too (:func:`cimsim.crossbar.exact_grid`), or, where that grid would be too coarse, round to
        ~1e-7 of full scale, far below any device effect."""
        lo_d, hi_d = self.digit_range()
        bound = self.spec.rows * max(abs(lo_d), hi_d) * (2 ** self.spec.cell_bits - 1) * self.slice_group_gain()
        return np.float32 if bound < 2 ** 24 else np.float64

    def slice_group_gain(self) -> float:
        """The largest sum of |place value ratios| of a slice group (1 without a slice grouping): how much wider a
        group's value can be than one slice's."""
        if self.spec.conversion.slices == 1:
            return 1.0
        return float(np.abs(self.slice_group_matrix()).sum(axis=0).max())

    def full_range(self, blocks: list[int]) -> tuple[float, float]:
        """The worst-case range of one conversion's value: the column value's range over the rows of the
        domain's blocks, times the place values of the cycles summed in analog (the largest group)."""
        spec = self.spec
        shifts, widths, pw = self.input_layout()
        top_level = 2 ** spec.cell_bits - 1
        rows = sum(k1 - k0 for k0, k1 in (self.row_blocks[i] for i in blocks))
        lo = hi = 0.0
        for t0, t1 in self.cycle_groups():
            glo = ghi = 0.0
            for t in range(t0, t1):   # unsigned digits, each weighed by its place value relative to the group's first
                w = pw[t] / pw[t0]
                dhi = (1 << int(widths[t])) - 1
                glo, ghi = glo + min(0.0, w * dhi), ghi + max(0.0, w * dhi)
            lo, hi = min(lo, glo), max(hi, ghi)
        if spec.pair_readout:   # PS+ - PS-: symmetric about zero
            m = rows * max(-lo, hi) * top_level * self.slice_group_gain()
            return -m, m
        lo, hi = rows * lo * top_level, rows * hi * top_level
        if spec.conversion.slices == 1:
            return lo, hi
        m = self.slice_group_matrix()   # each group: sum_s r_s v_s over v_s in [lo, hi]
        glo = np.minimum(m * lo, m * hi).sum(axis=0)
        ghi = np.maximum(m * lo, m * hi).sum(axis=0)
        return float(glo.min()), float(ghi.max())
