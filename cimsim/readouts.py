"""Readout operations and conversion scopes of the crossbar engine, in one place.

A *readout* is a device model (:mod:`cimsim.devices.converters`): an ideal (lossless) readout, a uniform
quantizer (SAR or flash ADC), a sense amplifier (a 1-bit decision) or a ternary readout (two comparators).
The engine never asks which one it holds: :func:`readout_op` gives the :class:`ReadoutOp` registered for
the readout's class, and the op knows

* whether it quantizes over a range (``quantizes``: codes ``0 .. n-1`` reconstructed as ``lo + code * lsb``)
  or decides (``decides``: comparator outputs -1 / 0 / +1, to be scaled by the architecture);
* its numpy transfer (:meth:`ReadoutOp.convert`: values in level units, and how many conversions clipped)
  and its torch transfer (:meth:`ReadoutOp.codes_torch`: codes, applied to the shift-and-add as
  ``lo * sum(w) + lsb * sum(w * code)`` when it quantizes, ``sum(w * code)`` otherwise);
* the largest code it returns (:meth:`ReadoutOp.code_bound`, for the float32 exactness rule);
* the ledger event of one conversion (:mod:`cimsim.events`).

Adding a readout is one :class:`ReadoutOp` subclass registered with :func:`register_readout`; both
backends and the calibration pick it up.

A *conversion scope* (:class:`ConversionScope`) says what one conversion covers: the column value of one
input cycle and one row block (ISAAC), or the analog sum over consecutive input cycles weighted by their
place value (``2**shift``: an analog shift-and-add, Neural-PIM), and/or over the row blocks of a column
(analog accumulation across arrays, CASCADE), and/or over the weight slices of a weight, each weighted by its place
value (CASCADE's summing amplifiers). The digital side then shifts and adds the conversions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from cimsim import events
from cimsim.devices.analog_accumulators import BufferedADC, NeuralADC
from cimsim.devices.converters import IdealReadout, Quantizer, Readout, SenseAmp, TernaryReadout
from cimsim.errors import ConfigError

ROW_BLOCK_MODES = ("each", "sum")


@dataclass(frozen=True)
class ConversionScope:
    """What one conversion covers.

    ``cycles``: consecutive input cycles whose column values are summed in analog, each weighted by its
    place value relative to the first (``2**(shift_t - shift_t0)``), before one conversion; 1 converts every
    cycle (ISAAC), 0 converts once per matrix-vector product (all cycles: Neural-PIM's analog shift-and-add).
    ``row_blocks``: ``"each"`` converts every row block's column apart; ``"sum"`` sums the column values of
    all row blocks of a column in analog first (accumulation across arrays: CASCADE).
    ``slices``: consecutive weight slices (bit columns; column pairs with a pair readout) of one weight whose
    values are summed in analog, each weighted by its place value relative to the group's least significant
    slice (``w_s / w_s0``: CASCADE's summing amplifiers), before one conversion; 1 converts every slice apart,
    0 sums all slices of a weight (one group). Groups are taken from the least significant slice up, the last one
    holding what is left. The converter's range covers its group's sum (:meth:`cimsim.crossbar.Crossbar.full_range`,
    or the calibrated range of the group values); a value beyond it clips and is counted
    (``clipped_conversions``), and the carries between groups are the digital shift-and-add's (each group's
    value times the place value of its least significant slice, exact).
    With ideal cells and a lossless readout every scope gives the exact integer product.
    """

    cycles: int = 1
    row_blocks: str = "each"
    slices: int = 1

    def __post_init__(self):
        if isinstance(self.cycles, bool) or not isinstance(self.cycles, (int, np.integer)) or self.cycles < 0:
            raise ConfigError(f"ConversionScope.cycles must be a whole number >= 0 (0 = all cycles), got {self.cycles!r}")
        if self.row_blocks not in ROW_BLOCK_MODES:
            raise ConfigError(f"ConversionScope.row_blocks = {self.row_blocks!r}: choose 'each' or 'sum'")
        if isinstance(self.slices, bool) or not isinstance(self.slices, (int, np.integer)) or self.slices < 0:
            raise ConfigError(f"ConversionScope.slices must be a whole number >= 0 (0 = all slices of a weight), "
                              f"got {self.slices!r}")

    @property
    def per_cycle(self) -> bool:
        """One conversion per (input cycle, row block, column): no analog accumulation."""
        return self.cycles == 1 and self.row_blocks == "each" and self.slices == 1

    def cycle_groups(self, n_cycles: int, parts=None) -> list[tuple[int, int]]:
        """The (first, end) input cycles of each conversion; ``parts``: the lengths of consecutive runs of cycles
        (summing to ``n_cycles``) that no conversion spans: a split input's positive and negative passes
        (:func:`cimsim.encoding.input_parts`)."""
        out, t0 = [], 0
        for n in (parts if parts is not None else [n_cycles]):
            k = n if self.cycles == 0 else self.cycles
            out += [(t0 + t, t0 + min(t + k, n)) for t in range(0, n, k)]
            t0 += n
        return out

    def block_groups(self, n_blocks: int) -> list[list[int]]:
        """The row blocks of each conversion domain (each block alone, or all together)."""
        return [[i] for i in range(n_blocks)] if self.row_blocks == "each" else [list(range(n_blocks))]

    def slice_groups(self, n_slices: int) -> list[tuple[int, int]]:
        """The (first, end) weight slices of each conversion, least significant first."""
        k = n_slices if self.slices == 0 else self.slices
        return [(s, min(s + k, n_slices)) for s in range(0, n_slices, k)]

    def describe(self) -> str:
        c = "every input cycle" if self.cycles == 1 else ("all input cycles" if self.cycles == 0
                                                          else f"{self.cycles} input cycles")
        r = "each row block" if self.row_blocks == "each" else "all row blocks summed"
        s = "" if self.slices == 1 else (", all weight slices summed" if self.slices == 0
                                         else f", {self.slices} weight slices summed")
        return f"{c}, {r}{s}"


# Named scopes (the dataflows of Neural-PIM's taxonomy, arXiv 2201.12861, sec. 2)
PER_CYCLE = ConversionScope(1, "each")          # ISAAC: quantize every bit-line partial sum
PER_MVM = ConversionScope(0, "each")            # Neural-PIM: analog shift-and-add over the input cycles
ACROSS_ROW_BLOCKS = ConversionScope(1, "sum")   # CASCADE: analog accumulation across arrays
# CASCADE read per output: a weight's slices summed with their place values, 2 cycles, all row blocks (arch/cascade.py)
PER_WEIGHT = ConversionScope(2, "sum", 0)
SCOPES = {"cycle": PER_CYCLE, "mvm": PER_MVM, "row-blocks": ACROSS_ROW_BLOCKS,
          "mvm-row-blocks": ConversionScope(0, "sum"), "weight": PER_WEIGHT}


class ReadoutOp:
    """The engine's view of one readout model (see the module docstring)."""

    quantizes: ClassVar[bool] = False
    decides: ClassVar[bool] = False

    def __init__(self, readout: Readout):
        self.readout = readout

    @property
    def event(self) -> str:
        return events.conversion(self.readout.kind)

    @property
    def fused(self) -> bool:
        """Whether the numba fused epilogue (a uniform quantizer without per-conversion noise) applies."""
        return False

    @property
    def n_codes(self) -> int:
        raise ConfigError(f"{type(self.readout).__name__} has no code range")

    def code_bound(self, value_bound: float) -> float:
        """The largest |code| for column values up to ``value_bound`` in magnitude."""
        return 1.0

    @property
    def relative_sigma(self) -> float:
        """Error of each value written before the conversion, relative to that value (0: none). The engine adds it
        where it forms the analog sum (it knows the values there): variance ``w**2 r**2 (p**2 + m**2)`` per cycle
        and row block for a pair's line values ``p`` and ``m`` (``(s**2 + d**2) / 2`` for their sum ``s`` and
        difference ``d``; ``r**2 v**2`` for a single column's ``v``), ``w`` the cycle's place value in the sum."""
        return 0.0

    def over_blocks(self, blocks: int) -> "ReadoutOp":
        """The op for one conversion of an analog sum over ``blocks`` row blocks (ConversionScope row_blocks
        'sum'): itself, unless the readout's error grows with the values summed (:class:`BufferedQuantizerOp`)."""
        return self

    def convert(self, v: np.ndarray, lo: float, lsb: float, rng: np.random.Generator,
                pair: bool) -> tuple[np.ndarray, int]:
        """Values (level units, float64) for column values ``v``, and the number of conversions that clipped."""
        raise NotImplementedError

    def codes_torch(self, v, lo, lsb, randn, pair: bool):
        """Codes (a tensor like ``v``, which may be overwritten) and the count of clipped conversions (a 0-d
        tensor, or None). ``randn(like)`` draws standard normals."""
        raise NotImplementedError


class IdealOp(ReadoutOp):
    """The lossless readout: the value itself."""

    def code_bound(self, value_bound: float) -> float:
        return float(value_bound)

    def convert(self, v, lo, lsb, rng, pair):
        return self.readout.convert(v), 0

    def codes_torch(self, v, lo, lsb, randn, pair):
        return v, None


class QuantizerOp(ReadoutOp):
    """A uniform quantizer (ADC): half-LSB thresholds, codes clipped to ``0 .. 2**bits - 1``, input-referred
    offset noise of ``offset_sigma_lsb`` per conversion."""

    quantizes = True

    @property
    def event(self) -> str:
        return events.conversion(self.readout.kind, int(self.readout.bits))

    @property
    def fused(self) -> bool:
        return self.readout.offset_sigma_lsb == 0

    @property
    def n_codes(self) -> int:
        return self.readout.n_codes

    def code_bound(self, value_bound: float) -> float:
        return float(self.readout.n_codes - 1)

    def convert(self, v, lo, lsb, rng, pair):
        """A conversion clips when its input (read noise included, the converter's own offset not) lies
        outside the range, i.e. beyond half an LSB past the end codes."""
        ro = self.readout
        hi = lo + lsb * (ro.n_codes - 1)
        raw = np.floor((np.asarray(v, dtype=np.float64) - lo) / lsb + 0.5)
        clipped = int(np.count_nonzero((raw < 0) | (raw > ro.n_codes - 1)))
        return ro.reconstruct(ro.codes(v, lo, hi, rng), lo, hi), clipped

    def codes_torch(self, v, lo, lsb, randn, pair):
        ro = self.readout
        u = v.sub_(lo).div_(lsb)   # lsb is a power of two: exact
        top = ro.n_codes - 1
        clipped = ((u < -0.5) | (u >= top + 0.5)).sum()   # the input, before the converter's own offset
        if ro.offset_sigma_lsb > 0:
            u.add_(ro.offset_sigma_lsb * randn(u))
        return u.add_(0.5).floor_().clamp_(0, top), clipped


def _plain_quantizer(ro) -> bool:
    """Whether ``ro`` codes and reconstructs as :class:`Quantizer` does (no subclass changes them)."""
    t = type(ro)
    return t.codes is Quantizer.codes and t.reconstruct is Quantizer.reconstruct and t.lsb is Quantizer.lsb


class BufferedQuantizerOp(QuantizerOp):
    """A quantizer whose input is an analog sum of buffered values carrying Gaussian noise of ``analog_sigma``
    level units per row block (CASCADE's buffer arrays; ``sqrt(blocks)`` times it for a sum over row blocks,
    :meth:`over_blocks`) and, where the readout's ``relative_sigma`` is set, an error proportional to each value
    written (:attr:`ReadoutOp.relative_sigma`, added by the engine with the analog sum): the noise joins the value
    before the conversion and its clipping."""

    @property
    def fused(self) -> bool:
        return False

    @property
    def relative_sigma(self) -> float:
        return float(self.readout.relative_sigma)

    def over_blocks(self, blocks: int) -> "ReadoutOp":
        """``analog_sigma`` is one row block's; the buffered values of ``blocks`` blocks add independent errors:
        ``sqrt(blocks)`` times it."""
        if blocks <= 1 or self.readout.analog_sigma == 0:
            return self
        return BufferedQuantizerOp(replace(self.readout, analog_sigma=self.readout.analog_sigma * math.sqrt(blocks)))

    def convert(self, v, lo, lsb, rng, pair):
        ro = self.readout
        s = ro.analog_sigma
        v = np.asarray(v, dtype=np.float64)
        if ro.offset_sigma_lsb == 0 and _plain_quantizer(ro) and v.flags.c_contiguous:
            # the noise, the rounding and the reconstruction in one pass (the numbers of the lines below)
            from cimsim.kernels_buffered import noisy_quantize

            z = rng.standard_normal(v.shape) if s > 0 else v
            hi = lo + lsb * (ro.n_codes - 1)
            out = np.empty_like(v)
            clipped = noisy_quantize(v.reshape(-1), np.ascontiguousarray(z, dtype=np.float64).reshape(-1), float(s),
                                     float(lo), float(lsb), float(ro.lsb(lo, hi)), float(ro.n_codes - 1),
                                     out.reshape(-1))
            return out, int(clipped)
        return super().convert(v + s * rng.standard_normal(v.shape) if s > 0 else v, lo, lsb, rng, pair)

    def codes_torch(self, v, lo, lsb, randn, pair):
        s = self.readout.analog_sigma
        if s > 0:
            v = v.add_(s * randn(v))
        return super().codes_torch(v, lo, lsb, randn, pair)


class NeuralQuantizerOp(QuantizerOp):
    """Neural-PIM's NNADC with ``transfer='trained'``: the value, with the analog chain's error
    (``chain_sigma_fs`` of full scale, Gaussian) added, converted through the trained pipelined circuit's
    transfer (:func:`cimsim.neural_circuits.nnadc_table`, a lookup on a grid of 1/16 LSB); ``trained=0``: the
    plain quantizer."""

    @property
    def trained(self) -> bool:
        return bool(self.readout.trained)

    @property
    def fused(self) -> bool:
        return super().fused and not self.trained

    def _table(self):
        from cimsim.neural_circuits import GRID_PER_LSB, nnadc_table

        ro = self.readout
        return nnadc_table(int(ro.bits), float(ro.variation_sigma), int(ro.instance_seed)), GRID_PER_LSB

    def convert(self, v, lo, lsb, rng, pair):
        if not self.trained:
            return super().convert(v, lo, lsb, rng, pair)
        ro = self.readout
        top = ro.n_codes - 1
        table, grid = self._table()
        u = (np.asarray(v, dtype=np.float64) - lo) * (grid / lsb)          # in grid steps
        clipped = int(np.count_nonzero((u < -0.5 * grid) | (u >= (top + 0.5) * grid)))
        if ro.chain_sigma_fs > 0:
            u += (ro.chain_sigma_fs * top * grid) * rng.standard_normal(u.shape)
        np.add(u, 0.5, out=u)
        np.clip(u, 0, table.size - 1, out=u)
        return lo + table[u.astype(np.intp)] * lsb, clipped

    def codes_torch(self, v, lo, lsb, randn, pair):
        if not self.trained:
            return super().codes_torch(v, lo, lsb, randn, pair)
        import torch

        ro = self.readout
        top = ro.n_codes - 1
        u = v.sub_(lo).div_(lsb)
        clipped = ((u < -0.5) | (u >= top + 0.5)).sum()
        if ro.chain_sigma_fs > 0:
            u.add_(ro.chain_sigma_fs * top * randn(u))
        table, grid = self._table()
        t = torch.from_numpy(np.array(table)).to(device=u.device, dtype=u.dtype)
        idx = u.mul_(grid).add_(0.5).floor_().clamp_(0, table.size - 1).long()
        return t[idx], clipped


class SenseAmpOp(ReadoutOp):
    """A latched comparator: 1 / 0 against its threshold, or, reading a G+/G- pair, the sign (+1 / -1)."""

    decides = True

    def convert(self, v, lo, lsb, rng, pair):
        return self.readout.convert(v, rng=rng, signed=pair), 0

    def codes_torch(self, v, lo, lsb, randn, pair):
        ro = self.readout
        if ro.offset_sigma > 0:
            v = v + ro.offset_sigma * randn(v)
        d = (v > ro.threshold).to(v.dtype)
        return (2 * d - 1 if pair else d), None


class TernaryOp(ReadoutOp):
    """Two comparators at +-delta: +1, 0 or -1 (HCiM)."""

    decides = True

    def convert(self, v, lo, lsb, rng, pair, delta=None):
        """``delta``: per-column thresholds (broadcasting with ``v``) instead of the readout's one (learned
        thresholds, :class:`cimsim.Crossbar` ``column_thresholds``)."""
        return self.readout.convert(v, rng=rng, delta=delta), 0

    def codes_torch(self, v, lo, lsb, randn, pair, delta=None):
        ro = self.readout
        up = down = v
        if ro.offset_sigma > 0:
            up = v + ro.offset_sigma * randn(v)
            down = v + ro.offset_sigma * randn(v)
        d = ro.delta if delta is None else delta
        return (up > d).to(v.dtype) - (down < -d).to(v.dtype), None


_OPS: dict[type, type[ReadoutOp]] = {}


def register_readout(readout_cls: type, op_cls: type[ReadoutOp]) -> None:
    """Make the engine read columns with ``op_cls`` wherever a ``readout_cls`` (or a subclass) is the readout."""
    if not (isinstance(readout_cls, type) and issubclass(readout_cls, Readout)):
        raise ConfigError(f"register_readout needs a Readout class, got {readout_cls!r}")
    _OPS[readout_cls] = op_cls


for _cls, _op in ((IdealReadout, IdealOp), (Quantizer, QuantizerOp), (SenseAmp, SenseAmpOp),
                  (TernaryReadout, TernaryOp), (BufferedADC, BufferedQuantizerOp),
                  (NeuralADC, NeuralQuantizerOp)):
    register_readout(_cls, _op)


def readout_op(readout: Readout) -> ReadoutOp:
    """The engine operation of ``readout`` (the entry registered for its class or its nearest base)."""
    for cls in type(readout).__mro__:
        if cls in _OPS:
            return _OPS[cls](readout)
    raise ConfigError(f"readout {type(readout).__name__} is not supported by the crossbar engine: register it "
                      "with cimsim.readouts.register_readout")


def registered_readouts() -> list[type]:
    """Readout classes with an engine operation (for the contract tests)."""
    return list(_OPS)
