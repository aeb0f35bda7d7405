"""The CPU backend's general path (every readout, pair readout, column scales, every conversion scope): per
(row blocks, cycles) of one conversion, the column values of each cycle ``x_t @ A`` summed in analog with their place
values, one Gaussian per conversion with the summed read-noise variance, the readout operation
(:mod:`cimsim.readouts`) converting it, and the digital side's shift and add (:class:`GeneralPath`, a part of
:class:`cimsim.crossbar_cpu.CpuTile`). Where each buffered value is written with an error relative to itself and
every number is an exact integer, the sums come from one product per row block and group of cycles
(:mod:`cimsim.kernels_buffered`); where there is no noise to sum (Neural-PIM's analog shift-and-add with noiseless
cells), from each group's digits summed first and one exact product (:meth:`GeneralPath._summed_values`). Both give
the per-cycle products' numbers."""

from __future__ import annotations

import numpy as np

from cimsim.calibration import grouped_products
from cimsim.crossbar_layout import Tally
from cimsim.kernels import PlacedNormals, digit_tables, digit_tally, placed_normals
from cimsim.kernels_buffered import buffered_sums, digit_masks, exact_integers, level_planes, popcount_cycles
from cimsim.kernels_host import group_digits
from cimsim.kernels_shares import row_conductance


class GeneralPath:
    """The general path's methods of :class:`cimsim.crossbar_cpu.CpuTile` (which provides ``xb`` and ``_digits``)."""

    # (the level matrices it was built from, _buffered_static's result), replaced as one object: a thread never
    # sees one half of it new and the other old
    _buffered = (None, False)
    _summed = (None, None)     # (the readout matrices, _summed_static's result), likewise

    def _buffered_static(self):
        """``((lo, hi, m, m**2), planes)``: the slice groups and place values :func:`buffered_sums` takes, and per
        row block the levels' bit planes where the lines' values are counted instead (:func:`popcount_sums`: one-bit
        unsigned digits, blocks of at most 64 rows, small integer levels, no read noise) or None; False where the
        kernels' numbers would not be numpy's (:func:`cimsim.kernels_buffered.exact_integers`). Cached per level
        matrices."""
        xb = self.xb
        key, value = self._buffered
        if key is not xb.a_gemm:
            key = xb.a_gemm
            lo_d, hi_d = xb.digit_range()
            m = xb.slice_group_matrix()
            value = False
            if all(w is None for w in xb._a_wide) and exact_integers(
                    key, [k1 - k0 for k0, k1 in xb.row_blocks], max(abs(lo_d), abs(hi_d)), m, xb.gemm_dtype()):
                groups = np.array(xb.slice_groups, dtype=np.int64).reshape(-1, 2)
                planes = [level_planes(a) for a in key] if xb.spec.dac_bits == 1 \
                    and all(v is None for v in xb.ro_var) else [None]
                value = ((groups[:, 0].copy(), groups[:, 1].copy(), m, m * m),
                         planes if all(p is not None for p in planes) else None)
            self._buffered = (key, value)
        return value

    def _summed_static(self):
        """Per conversion domain, where its cells have no read noise and every value is an exact integer, what
        :func:`cimsim.calibration.grouped_products` gives (each group's digits summed first, then one exact product
        per row block: the per-cycle products' numbers), else None; cached per readout matrices."""
        xb = self.xb
        key, value = self._summed
        if key is not xb.ro_a_gemm:
            key, spec = xb.ro_a_gemm, xb.spec
            shifts, widths, places = xb.input_layout()
            groups = xb.cycle_groups()
            value = [None if any(xb.ro_var[i] is not None for i in blocks) else
                     grouped_products(blocks, xb.row_blocks, key, shifts, widths, places, groups)
                     for blocks in spec.conversion.block_groups(len(xb.row_blocks))]
            self._summed = (key, value)
        return value

    def _summed_values(self, u, b0: int, nb: int, blocks, gi: int, grouped) -> np.ndarray:
        """The analog sum of cycle group ``gi`` over ``blocks`` (no noise to add: :meth:`_summed_static`), float64:
        per block the group's summed digits (:func:`cimsim.kernels_host.group_digits`) times its matrix."""
        xb = self.xb
        shifts, widths, _ = xb.input_layout()
        g0, g1, wide, sext = grouped
        v = np.zeros((nb, xb.readout_columns))
        for i in blocks:
            k0, k1 = xb.row_blocks[i]
            y = np.empty((1, nb, k1 - k0), dtype=wide[i].dtype)
            group_digits(u, b0, nb, k0, k1, shifts, widths, sext[gi:gi + 1], g0[gi:gi + 1], g1[gi:gi + 1], y)
            v += y[0] @ wide[i]
        return v

    def _block_digits(self, u, b0: int, b1: int, i: int):
        """(digits of row block i, examples b0..b1, non-zero count, digit**2 per row): stacked (cycles x examples,
        rows) in the GEMM's type, or (cycles, examples) words of one-bit digits where :meth:`_analog_sum` counts the
        lines' values (:func:`cimsim.kernels_buffered.digit_masks`)."""
        xb = self.xb
        static = self._buffered_static() if xb.readout_op.relative_sigma else False
        if not static or static[1] is None:
            xs, _, nz, sqsum = self._digits(u, b0, b1, i, False)
            return xs, nz, sqsum
        shifts = np.asarray(xb.input_layout()[0], dtype=np.int64)
        k0, k1 = xb.row_blocks[i]
        xs, sqsum = np.empty((len(shifts), b1 - b0), dtype=np.int64), np.zeros(k1 - k0, dtype=np.int64)
        return xs, int(digit_masks(u, b0, b1 - b0, k0, k1, shifts, xs, sqsum)), sqsum

    def _shard(self, u, b0: int, b1: int, ranges, stream: tuple[int, int]):
        """Every readout and scope (see the module docstring), examples b0..b1: (acc (batch, readout
        columns) before the column weights, tally)."""
        xb = self.xb
        spec, op = xb.spec, xb.readout_op
        nb = b1 - b0
        acc = np.zeros((max(nb, 0), xb.readout_columns))
        tally = Tally()
        if nb <= 0:
            return acc, tally
        shifts, _, pw = xb.input_layout()
        T = len(shifts)
        scope = spec.conversion
        scales, thresholds = xb.column_scales, xb.column_thresholds
        domains, groups = scope.block_groups(len(xb.row_blocks)), xb.cycle_groups()
        slots = len(domains) * len(groups)        # conversions per example and column: the draws' places
        # conversions of several cycles or blocks with no buffer error: their sums from each group's summed digits
        summed = self._summed_static() if not op.relative_sigma and (
            len(groups) < T or any(len(b) > 1 for b in domains)) else None
        # which conversions take their sums from summed digits (the rest read the cut digits: one cycle of one block,
        # or noise to sum)
        from_sums = [[summed is not None and summed[d] is not None and not (len(blocks) == 1 and t1 - t0 == 1)
                      for t0, t1 in groups] for d, blocks in enumerate(domains)]
        cut = not all(map(all, from_sums))
        tables = None if cut else digit_tables(spec.input_bits, spec.dac_bits, spec.input_signed, spec.input_encoding)
        counts = None if tables is None else digit_tally(u[b0:b1], [0, nb], xb.row_blocks, tables, 0, False)
        digits: dict[int, np.ndarray] = {}
        for i, (k0, k1) in enumerate(xb.row_blocks):   # the reads: digits, non-zero count and conductance-seconds
            if counts is None:
                xs, nz, sqsum = self._block_digits(u, b0, b1, i)
                digits[i] = xs
            else:   # no conversion reads the digits: counted without cutting them (the same integers)
                nz, sqsum = int(counts[0][i, 0]), counts[1][0, k0:k1]
            tally.nonzero_digits += nz
            tally.conductance_s += row_conductance(sqsum, xb.g_rowsum[i]) * spec.cell.read_time_s
        for d, blocks in enumerate(domains):
            lo, lsb = ranges[d]
            for gi, (t0, t1) in enumerate(groups):
                place = (*stream, b0, slots, gi * len(domains) + d)
                if from_sums[d][gi]:
                    v = self._summed_values(u, b0, nb, blocks, gi, summed[d])
                elif len(blocks) == 1 and t1 - t0 == 1 and not op.relative_sigma:
                    v = self._cycle_value(digits[blocks[0]], blocks[0], t0, nb, place)
                else:
                    v = self._analog_sum(digits, blocks, t0, t1, shifts, nb, place)
                scale = None if scales is None else scales[blocks[0]] if scales.ndim == 2 else scales[blocks[0], t0]
                if scale is not None:
                    v = v / scale                    # comparator reference = threshold x scale
                conv, normals = op.over_blocks(len(blocks)), PlacedNormals(*place)
                if thresholds is None:
                    values, clipped = conv.convert(v, lo, lsb, normals, spec.pair_readout)
                else:                                # each column's own (learned) threshold
                    thr = thresholds[blocks[0]] if thresholds.ndim == 2 else thresholds[blocks[0], t0]
                    values, clipped = conv.convert(v, lo, lsb, normals, spec.pair_readout, delta=thr)
                tally.clipped += clipped
                if op.decides:
                    tally.decisions += float(np.count_nonzero(values))
                acc += pw[t0] * (values if scale is None else values * scale)
        return acc, tally

    def _cycle_value(self, xs, i: int, t: int, nb: int, place: tuple) -> np.ndarray:
        """One cycle's column values of row block i with their read noise (in the GEMM's precision)."""
        xb = self.xb
        xp = xs[t * nb:(t + 1) * nb]
        v = xp @ xb.ro_a_gemm[i]
        if xb.spec.pair_readout or xb.column_scales is not None:
            v = v.astype(np.float64)   # the pair/scaled readout has always added its noise in float64
        var = xb.ro_var[i]
        if var is None:
            return v
        std = np.sqrt((xp * xp) @ var)
        std = std[:, None] if std.ndim == 1 else std
        return v + std * placed_normals(v.shape, *place).astype(v.dtype, copy=False)

    def _analog_sum(self, digits, blocks, t0: int, t1: int, shifts, nb: int, place: tuple) -> np.ndarray:
        """The analog sum over row blocks ``blocks`` and cycles t0..t1 of the column values, each cycle weighted
        by its place value relative to t0's (:func:`cimsim.encoding.plane_weights`), plus one Gaussian per conversion
        with the summed read-noise variance and,
        for a readout with a ``relative_sigma`` r, each written value's relative error: ``w**2 r**2 (s**2 + d**2) / 2``
        per block and cycle, ``d`` the converted value and ``s`` its lines' sum (:meth:`Crossbar.line_sum`); where the
        scope sums weight slices, each slice's ``d`` and ``s`` (:meth:`Crossbar.slice_values`) with its place value
        squared within the group (float64: the sum can exceed float32's exact integers)."""
        xb = self.xb
        r = xb.readout_op.relative_sigma
        grouped = xb.spec.conversion.slices != 1
        m2 = xb.slice_group_matrix() ** 2 if grouped and r else None
        static = self._buffered_static() if r else False
        if static:
            return self._buffered_sum(digits, blocks, t0, t1, shifts, nb, place, *static)
        v = np.zeros((nb, xb.readout_columns))
        var_sum = None
        pw = xb.input_layout()[2]
        for i in blocks:
            var = xb.ro_var[i]
            for t in range(t0, t1):
                w = pw[t] / pw[t0]
                xp = digits[i][t * nb:(t + 1) * nb]
                d = (xp @ xb.ro_a_gemm[i]).astype(np.float64, copy=False)
                v += w * d
                if r:
                    sl = (xp @ xb.line_sum(i)).astype(np.float64, copy=False)
                    if grouped:   # each slice's buffered value carries its own error, summed with place values
                        ds = (xp @ xb.slice_values(i)).astype(np.float64, copy=False)
                        s2 = (w * r) ** 2 * 0.5 * xb.group_slices(sl * sl + ds * ds, m2)
                    else:
                        s2 = (w * r) ** 2 * 0.5 * (sl * sl + d * d)
                    var_sum = s2 if var_sum is None else var_sum + s2
                if var is not None:
                    s2 = (xp * xp) @ var
                    s2 = s2[:, None] if s2.ndim == 1 else s2
                    var_sum = w * w * s2 if var_sum is None else var_sum + w * w * s2
        if var_sum is not None:
            v += np.sqrt(var_sum) * placed_normals(v.shape, *place)
        return v

    def _buffered_sum(self, digits, blocks, t0: int, t1: int, shifts, nb: int, place: tuple, fast, planes
                      ) -> np.ndarray:
        """:meth:`_analog_sum` for a readout with a relative error where every number is an exact integer
        (:meth:`_buffered_static`): per row block one product of the group's cycles with the level matrix
        (transposed: examples last), the values and variances from it by :func:`buffered_sums`; numpy's numbers."""
        xb = self.xb
        r = xb.readout_op.relative_sigma
        vt = np.zeros((xb.readout_columns, nb))
        var_t = np.empty_like(vt)
        first = True
        pw = xb.input_layout()[2]
        ws = [pw[t] / pw[t0] for t in range(t0, t1)]
        for i in blocks:
            var = xb.ro_var[i]
            if planes is not None:   # every line's value counted from words of digits, every cycle in one call
                popcount_cycles(digits[i], t0, t1, np.array(ws), np.array([(w * r) ** 2 * 0.5 for w in ws]),
                                planes[i], *fast, xb.spec.pair_readout, xb.n_polarity, xb.out_features, vt, var_t,
                                first)
                first = False
                continue   # (no read noise where the lines are counted: _buffered_static)
            # every line's value, (physical columns, cycles x nb)
            qt = xb.a_gemm[i].T @ digits[i][t0 * nb:t1 * nb].T
            for t in range(t0, t1):
                w = ws[t - t0]
                buffered_sums(qt, (t - t0) * nb, nb, *fast, xb.spec.pair_readout, xb.n_polarity,
                              xb.out_features, w, (w * r) ** 2 * 0.5, vt, var_t, first)
                first = False
                if var is not None:   # the cells' read noise, added after the buffer's as numpy's path adds it
                    xp = digits[i][t * nb:(t + 1) * nb]
                    s2 = (xp * xp) @ var
                    s2 = s2[:, None] if s2.ndim == 1 else s2
                    var_t += (w * w * s2).T
        v = np.ascontiguousarray(vt.T)
        v += np.sqrt(var_t.T) * placed_normals(v.shape, *place)
        return v
