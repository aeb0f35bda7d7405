"""Integer encodings of weights and inputs for bit-sliced, bit-serial crossbars.

Weights (``signed`` mode, ``b`` = weight_bits, ``c`` = cell_bits):

* ``"offset"``: store ``W + 2**(b-1)`` (unsigned, b bits) in ``ceil(b / c)`` slices; the digital side
  subtracts ``2**(b-1) * sum(x)`` (the input sum is known digitally, so the correction is exact).
* ``"twos"``: two's complement; the sign bit gets a 1-bit slice of its own whose digital weight is
  ``-2**(b-1)``, the ``b - 1`` magnitude bits are sliced into ``ceil((b - 1) / c)`` slices. (A sign bit
  sharing a cell with magnitude bits could not be separated after the analog sum.)
* ``"differential"``: ``W = W+ - W-`` with ``W+ = max(W, 0)``, ``W- = max(-W, 0)`` in separate columns;
  each magnitude of ``b - 1`` bits is sliced into ``ceil((b - 1) / c)`` slices. Weights must lie in the
  symmetric range ``|W| <= 2**(b-1) - 1``.

* ``"unsigned"``: non-negative weights ``0 .. 2**b - 1`` sliced as they are into ``ceil(b / c)`` slices, one
  column per slice and output (no sign: SME's bit-plane arrays, whose columns carry their sign and place
  value in the digital splice, :mod:`cimsim.mappers.sme`).

Slices are LSB first. Each slice is an array of cell levels in ``0 .. 2**c - 1`` (the top slice may
use fewer bits) with a signed digital weight (its shift), so ``W == sum_s weight_s * slice_s`` exactly
(plus the offset for ``"offset"``).

Inputs (``a`` = input_bits, ``d`` = dac_bits) stream in cycles, LSB first, every digit in ``0 .. 2**d - 1`` (the
DAC drives a unipolar voltage). Unsigned inputs take ``ceil(a / d)`` cycles. Signed inputs are two's complement:
their ``a - 1`` magnitude bits take ``ceil((a - 1) / d)`` cycles and the sign bit a 1-bit cycle of its own, whose
digital place value is ``-2**(a-1)`` (the shift-and-add subtracts it, as a bit-serial two's complement multiplier
does), so ``x == sum_t place_t * plane_t`` exactly (:func:`plane_weights`). Every cycle's column values are then
non-negative with non-negative levels, and the ADC keeps a unipolar range: a bipolar sign digit (-1) would make every
conversion's range [-p, p] and cost one ADC bit on every cycle (measured: MobileNetV2's signed-input layers on ISAAC
2.3-6.9 % RMS error with ideal cells, vit_mini's GELU-fed linear2 97-140 %). For ``d = 1`` the cycles are those of
unsigned inputs; for ``d > 1`` the separate sign cycle may add one. That is the ``"twos"`` input encoding.

Two's complement sets every high bit of a small negative input, so those planes carry large column values that the
shift-and-add cancels: cell noise and ADC rounding on them are amplified. The ``"split"`` input encoding streams the
positive part ``max(x, 0)`` and then the negative part ``max(-x, 0)``, ``a - 1`` bits each (so ``|x| <= 2**(a-1) - 1``),
the negative part's cycles with negative place values: twice the cycles (``2 ceil((a - 1) / d)``), no cancellation
(two passes of unsigned inputs, as chips that feed signed activations in a positive and a negative phase do).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimsim.errors import ConfigError

SIGNED_MODES = ("offset", "twos", "differential")
INPUT_ENCODINGS = ("twos", "split")   # how signed inputs stream (module docstring)
WEIGHT_MODES = SIGNED_MODES + ("unsigned",)   # every weight encoding a tile may use


@dataclass(frozen=True)
class WeightSlices:
    """Cell levels of one weight matrix, sliced.

    ``levels``: int array (n_slices, n_sign, out, in) of cell levels; ``n_sign`` is 2 for differential
    (G+ then G-), 1 otherwise. ``weights``: float array (n_slices,) of each slice's digital weight.
    ``sign``: (n_sign,) +1 / -1 applied to each polarity. ``offset``: the constant subtracted per unit
    of input sum (``"offset"`` mode), else 0. ``bits``: cell bits used by each slice.
    """

    levels: np.ndarray
    weights: np.ndarray
    sign: np.ndarray
    offset: int
    bits: tuple[int, ...]


def check_int_range(name: str, a: np.ndarray, lo: int, hi: int, hint: str, one_pass: bool = True,
                    bounds: tuple[int, int] | None = None) -> np.ndarray:
    """``a`` as int64 after checking it holds integers in [lo, hi] (ConfigError naming ``hint`` otherwise).
    ``one_pass``: large int64 arrays are bounded in one parallel pass (a numba kernel, :func:`int_bounds`); False
    takes numpy's two passes, for callers that do not otherwise run numba (the torch backend), where loading that
    kernel (0.3-0.8 s, once per process) would cost more than the passes. ``bounds``: an int64 ``a``'s (min, max)
    where the caller has them (:func:`cimsim.kernels_host.int_bounds_row_sums`)."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":   # complex, object, strings: no integer reading is right
        raise ConfigError(f"{name} must hold integers ({hint}); got an array of {a.dtype}")
    if a.size == 0:
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or not np.array_equal(a, np.round(a)):
            raise ConfigError(f"{name} must hold integers ({hint})")
        a = a.astype(np.int64)
    if bounds is not None and a.dtype == np.int64:
        amin, amax = bounds
    elif one_pass and a.dtype == np.int64 and a.flags.c_contiguous and a.size >= 4096:   # a crossbar's inputs
        from cimsim.kernels_host import int_bounds

        amin, amax = int_bounds(a)
    else:
        amin, amax = a.min(), a.max()
    if amin < lo or amax > hi:
        raise ConfigError(f"{name} must lie in [{lo}, {hi}] ({hint}); got [{amin}, {amax}]")
    return a.astype(np.int64, copy=False)   # no copy when the caller's array is already int64


def _split(u: np.ndarray, total_bits: int, cell_bits: int) -> tuple[list[np.ndarray], list[int], list[int]]:
    """Unsigned ``u`` (< 2**total_bits) into LSB-first slices of ``cell_bits``: (slices, shifts, bits)."""
    slices, shifts, bits = [], [], []
    shift = 0
    while shift < total_bits:
        width = min(cell_bits, total_bits - shift)
        slices.append((u >> shift) & ((1 << width) - 1))
        shifts.append(shift)
        bits.append(width)
        shift += width
    return slices, shifts, bits


def slice_weights(w: np.ndarray, weight_bits: int, cell_bits: int, signed: str) -> WeightSlices:
    """Slice an integer weight matrix (out, in) into cell levels; see the module docstring."""
    if signed not in WEIGHT_MODES:
        raise ConfigError(f"unknown signed mapping {signed!r}: choose one of {', '.join(WEIGHT_MODES)}")
    b = int(weight_bits)
    if signed == "unsigned":
        w = check_int_range("weights", w, 0, (1 << b) - 1, f"unsigned {b}-bit weights", one_pass=False)
        sl, shifts, bits = _split(w, b, cell_bits)
        return WeightSlices(np.stack(sl)[:, None], np.array([2.0 ** s for s in shifts]), np.array([1.0]), 0,
                            tuple(bits))
    if signed == "differential":
        m = (1 << (b - 1)) - 1
        w = check_int_range("weights", w, -m, m, f"differential {b}-bit weights are symmetric",
                            one_pass=False)
        pos, neg = np.maximum(w, 0), np.maximum(-w, 0)
        sp, shifts, bits = _split(pos, b - 1, cell_bits)
        sn, _, _ = _split(neg, b - 1, cell_bits)
        levels = np.stack([np.stack([p, n]) for p, n in zip(sp, sn)])
        return WeightSlices(levels, np.array([2.0 ** s for s in shifts]), np.array([1.0, -1.0]), 0, tuple(bits))
    half = 1 << (b - 1)
    w = check_int_range("weights", w, -half, half - 1, f"{b}-bit signed weights", one_pass=False)
    if signed == "offset":
        sl, shifts, bits = _split(w + half, b, cell_bits)
        levels = np.stack(sl)[:, None]
        return WeightSlices(levels, np.array([2.0 ** s for s in shifts]), np.array([1.0]), half, tuple(bits))
    # twos: magnitude bits sliced, sign bit alone with weight -2**(b-1)
    u = np.where(w < 0, w + (1 << b), w)
    sl, shifts, bits = _split(u & (half - 1), b - 1, cell_bits)
    sl.append((u >> (b - 1)) & 1)
    weights = [2.0 ** s for s in shifts] + [-float(half)]
    return WeightSlices(np.stack(sl)[:, None], np.array(weights), np.array([1.0]), 0, tuple(bits) + (1,))


def plane_layout(input_bits: int, dac_bits: int, signed: bool = False, encoding: str = "twos"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(shifts, widths) of the input cycles, LSB first: cycle t carries bits shifts[t] .. shifts[t]+widths[t]-1 of the
    digit source (:func:`digit_source`). Signed ``"twos"``: the two's complement, its sign bit (bit ``a - 1``) the last
    cycle alone; ``"split"``: the ``a - 1`` bits of the positive part, then those of the negative part (bits
    ``a - 1 .. 2a - 3`` of the source)."""
    a, d = int(input_bits), int(dac_bits)
    m = a - 1 if signed else a                   # the bits streamed d at a time
    shifts = np.arange(-(-m // d)) * d
    widths = np.minimum(d, m - shifts)
    if signed and encoding == "split":
        shifts, widths = np.concatenate([shifts, shifts + m]), np.concatenate([widths, widths])
    elif signed:
        shifts, widths = np.append(shifts, a - 1), np.append(widths, 1)
    return shifts, widths


def plane_weights(input_bits: int, dac_bits: int, signed: bool = False, encoding: str = "twos") -> np.ndarray:
    """The digital place value of each cycle of :func:`plane_layout` (float64): ``2**shift``; signed ``"twos"``: the
    sign cycle (the last) ``-2**(a-1)``; ``"split"``: the negative part's cycles ``-2**(shift - (a - 1))``."""
    shifts, _ = plane_layout(input_bits, dac_bits, signed, encoding)
    w = 2.0 ** shifts.astype(np.float64)
    if signed and encoding == "split":
        neg = shifts >= int(input_bits) - 1
        w[neg] = -(2.0 ** (shifts[neg] - (int(input_bits) - 1)))
    elif signed and w.size:
        w[-1] = -w[-1]
    return w


def input_parts(places) -> list[int]:
    """The lengths of the runs of cycles a conversion may sum in analog: the whole stream, or a split input's positive
    and negative passes (where a cycle's place value is smaller in magnitude than the one before: a new pass)."""
    mag = np.abs(np.asarray(places, dtype=np.float64))
    cuts = [0] + [t for t in range(1, mag.size) if mag[t] < mag[t - 1]] + [mag.size]
    return [b - a for a, b in zip(cuts[:-1], cuts[1:]) if b > a] or [0]


def input_cycles(input_bits: int, dac_bits: int, signed: bool = False, encoding: str = "twos") -> int:
    """How many cycles an input of ``input_bits`` takes through a ``dac_bits`` DAC (:func:`plane_layout`)."""
    return len(plane_layout(input_bits, dac_bits, signed, encoding)[0])


def source_bits(input_bits: int, signed: bool = False, encoding: str = "twos") -> int:
    """Bits of the digit source (:func:`digit_source`): ``a``, or ``2a - 2`` for signed ``"split"`` inputs."""
    return 2 * int(input_bits) - 2 if signed and encoding == "split" else int(input_bits)


def digit_source(x: np.ndarray, input_bits: int, signed: bool = False, encoding: str = "twos") -> np.ndarray:
    """The integers the digits are cut from (int64, from validated inputs ``x``): ``x`` itself when unsigned; signed
    ``"twos"``: ``x`` modulo ``2**a``; ``"split"``: ``max(x, 0) + (max(-x, 0) << (a - 1))``, the positive part in the
    low ``a - 1`` bits and the negative part above."""
    a = int(input_bits)
    if not signed:
        return x
    if encoding == "split":
        return np.where(x < 0, (-x) << (a - 1), x)
    return np.where(x < 0, x + (1 << a), x)


def source_numbers(u: np.ndarray, input_bits: int, signed: bool = False, encoding: str = "twos") -> np.ndarray:
    """The inputs back from a digit source ``u`` (:func:`digit_source`), as int64."""
    a = int(input_bits)
    u = np.asarray(u, dtype=np.int64)
    if not signed:
        return u
    if encoding == "split":
        return (u & ((1 << (a - 1)) - 1)) - (u >> (a - 1))
    return np.where(u >= 1 << (a - 1), u - (1 << a), u)


def check_inputs(x: np.ndarray, input_bits: int, signed: bool, one_pass: bool = True,
                 bounds: tuple[int, int] | None = None, encoding: str = "twos") -> np.ndarray:
    """Validated integer inputs as int64 (raises ConfigError naming the allowed range); ``one_pass`` and ``bounds``
    as :func:`check_int_range`'s. Signed ``"split"`` inputs are symmetric: ``|x| <= 2**(a-1) - 1`` (each part has
    ``a - 1`` bits)."""
    a = int(input_bits)
    if signed and encoding == "split":
        top = (1 << (a - 1)) - 1
        return check_int_range("inputs", x, -top, top, f"{a}-bit signed inputs, split into a positive and a negative "
                               "part of a - 1 bits each", one_pass, bounds)
    if signed:
        return check_int_range("inputs", x, -(1 << (a - 1)), (1 << (a - 1)) - 1, f"{a}-bit signed inputs", one_pass,
                               bounds)
    return check_int_range("inputs", x, 0, (1 << a) - 1,
                           f"{a}-bit unsigned inputs; pass input_signed=True for signed", one_pass, bounds)


def input_planes(x: np.ndarray, input_bits: int, dac_bits: int, signed: bool, encoding: str = "twos"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Bit planes of integer inputs (batch, in): (planes (cycles, batch, in), place values (cycles,)), the digits
    unsigned (module docstring). Planes are int8 for DACs of up to 7 bits (int16 up to 15), so a batch's planes stay
    small."""
    a, d = int(input_bits), int(dac_bits)
    u = digit_source(check_inputs(x, a, signed, encoding=encoding), a, signed, encoding)
    shifts, widths = plane_layout(a, d, signed, encoding)
    dtype = np.int8 if d <= 7 else np.int16 if d <= 15 else np.int64   # digits are small: keep planes compact
    planes = ((u[None] >> shifts[:, None, None]) & ((1 << widths) - 1)[:, None, None]).astype(dtype)
    return planes, plane_weights(a, d, signed, encoding)
