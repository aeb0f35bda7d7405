"""Neural-PIM's neural circuits, trained: the NNS+A and the NNADC as small RRAM-crossbar / inverter networks.

Neural-PIM (Cao et al., arXiv 2201.12861; docs/references.md#neural-pim) builds its analog shift-and-add
(NNS+A) and its quantizer (NNADC) from RRAM crossbars and CMOS inverters, trained offline with 3-bit weights
and injected variation noise (sigma 0.025); its NNADC is the pipelined super-resolution design of the same
group (Cao, Ke, Chakrabarti, Zhang, arXiv 1911.12815: stages of small networks on 3-bit RRAM). Here:

* a *layer* is a crossbar of 3-bit differential cells (``w = G+ - G-`` in levels ``-7 .. 7``), its inputs a
  vector of voltages in [0, 1] of full scale plus a reference row at 1 (the bias); the column value is
  ``z = sum_i (w_i / 7) x_i``;
* an *inverter neuron* is a soft threshold ``h = sigmoid(4 A z)``: an inverter of small-signal gain ``A``
  biased at its trip point has slope ``A`` per full scale, and ``sigmoid(k z)`` has slope ``k / 4`` at 0;
* the *forward pass on hardware* programs the integer weights into cells with the cell model
  (:meth:`cimsim.devices.reram.ReRAM.program`: 3-bit levels, programming variation ``prog_sigma_frac`` of the
  range) and reads the column as the difference of the pair's conductances in units of the level step;
* *training* (:func:`train`) is plain gradient descent (Adam) with a straight-through 3-bit rounding and
  Gaussian weight noise of 0.025 of the range injected at every step, seeded: it runs in about a second.

NNADC: ``stages`` pipelined stages of ``bits_per_stage`` bits (2 x 4 for 8 bits, est.). A stage's
sub-quantizer is a trained network (input and reference -> ``hidden`` inverters -> ``bits_per_stage`` output
inverters, latched to bits); its residue ``r' = 2**b x - code`` comes from a crossbar of fixed integer
weights (4, -2, -1 for 2 bits: exact in 3-bit cells) driven by the input and the latched bits, so a
threshold error of the sub-quantizer moves the residue out of [0, 1] instead of corrupting a code.
NNS+A: ``y_t = (v_t + y_{t-1}) / 2`` (LSB cycle first: ``y_T = sum_t 2**(t - T) v_t``), a trained network
of the cycle's column value, the previous output and the reference (``hidden`` inverters then a linear
output column read by a feedback inverter amplifier, est.; ``hidden = 0``: one crossbar layer).

:func:`nnadc_transfer` gives the NNADC's codes on a fine grid of inputs (a chip instance: its variation drawn
once from ``seed``), which the engine's readout op looks up; :func:`nnsa_error_fs` measures the NNS+A's
error over ``cycles`` steps on random column values. Both go into the engine's conversion
(:class:`cimsim.readouts.NeuralQuantizerOp`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from cimsim.devices.reram import ReRAM

LEVELS = 7                 # Neural-PIM: 3-bit weights, here a G+/G- pair of 3-bit cells (levels -7 .. 7)
TRAIN_SIGMA = 0.025        # Neural-PIM: injected variation noise sigma 0.025 (of the weight range)
INVERTER_GAIN = 10.0       # (est.) small-signal gain of a 32 nm inverter at its trip point (gm/gds ~ 10)
AMP_GAIN = INVERTER_GAIN ** 3   # (est.) open-loop gain of a feedback amplifier of three inverters
SHIFT_ADD_GAIN = 7 / 8     # (est.) the amplifier's closed-loop gain (feedback conductance): weights of 4 levels give 1/2
GRID_PER_LSB = 16          # transfer table resolution: points per LSB of the NNADC


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _with_ref(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)


@dataclass(frozen=True)
class Net:
    """A trained circuit: one crossbar layer of integer weights ``w`` (outputs x inputs+1, levels -7 .. 7, the
    last column the reference row) read by inverter neurons: latched comparators (``out_gain`` None,
    ``sigmoid(4 A z)`` before the latch) or a feedback amplifier of closed-loop gain ``out_gain`` and
    open-loop gain ``AMP_GAIN`` (``y = out_gain * z * A / (1 + A)``)."""

    w: np.ndarray
    out_gain: float | None

    @property
    def cells(self) -> int:
        """Cells (a G+ and a G- per weight)."""
        return 2 * self.w.size

    @property
    def inverters(self) -> int:
        """Inverters: one per comparator output, three per feedback amplifier (est.)."""
        return self.w.shape[0] * (1 if self.out_gain is None else 3)

    def forward(self, x: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        """Outputs for inputs ``x`` (n x inputs, in [0, 1] of full scale) with effective weights ``w`` in levels
        (default: the nominal integers): comparator outputs before the latch, or the amplifier's voltage."""
        z = _with_ref(x) @ (self.w if w is None else w).T / LEVELS
        if self.out_gain is None:
            return _sigmoid(4 * INVERTER_GAIN * z)
        return self.out_gain * z * AMP_GAIN / (1 + AMP_GAIN)

    def programmed(self, cell: ReRAM, rng: np.random.Generator) -> np.ndarray:
        """Effective weights (levels) of one programmed instance: each weight's G+ and G- cells programmed with
        the cell model at 3 bits (its variation drawn from ``rng``), read as ``(G+ - G-) / step``."""
        step = cell.g_range_s / LEVELS
        return (cell.program(np.maximum(self.w, 0), 3, rng) - cell.program(np.maximum(-self.w, 0), 3, rng)) / step


def _adam_train(shapes, loss_grad, steps: int, lr: float, rng: np.random.Generator, init_scale: float):
    """Adam over float weights in level units, straight-through 3-bit rounding and injected noise each step."""
    params = [init_scale * rng.standard_normal(s) for s in shapes]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        q = [np.clip(np.round(p), -LEVELS, LEVELS) + TRAIN_SIGMA * LEVELS * rng.standard_normal(p.shape)
             for p in params]
        grads = loss_grad(q, rng, t / steps)
        for i, g in enumerate(grads):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            params[i] -= lr * (m[i] / (1 - 0.9 ** t)) / (np.sqrt(v[i] / (1 - 0.999 ** t)) + 1e-8)
            params[i] = np.clip(params[i], -LEVELS - 0.49, LEVELS + 0.49)
    return [np.clip(np.round(p), -LEVELS, LEVELS).astype(np.int64) for p in params]


def _quantizer_grad(batch: int):
    """BCE of a 1.5-bit stage's two comparator neurons (soft, the gain annealed up to the inverter's) against
    the thermometer targets ``x > 3/8`` and ``x > 5/8`` (a pipelined ADC's redundant stage: either threshold may
    be off by up to 1/8 of full scale without a code error)."""
    thresholds = np.array([3 / 8, 5 / 8])

    def loss_grad(q, rng, progress):
        (w,) = q
        k = 4 * INVERTER_GAIN * min(1.0, 0.1 + 1.2 * progress)
        x = rng.random((batch, 1))
        t = (x > thresholds).astype(np.float64)
        a = _with_ref(x)
        o = _sigmoid(k * a @ w.T / LEVELS)
        return [((o - t) * k / LEVELS / batch).T @ a]

    return loss_grad


def _shift_add_grad(batch: int, out_gain: float):
    """MSE of the amplifier's output against ``(v + p) / 2`` for a cycle's value ``v`` and the previous ``p``."""

    def loss_grad(q, rng, progress):
        (w,) = q
        x = rng.random((batch, 2))
        a = _with_ref(x)
        y = out_gain * a @ w.T / LEVELS
        return [(2 * (y - x.mean(axis=1, keepdims=True)) * out_gain / LEVELS / batch).T @ a]

    return loss_grad


@functools.lru_cache(maxsize=16)
def train(kind: str, seed: int = 0, steps: int = 1500) -> Net:
    """Train a 1.5-bit pipeline stage's comparators (``kind='stage'``) or the shift-and-add (``'shift-add'``),
    deterministically from ``seed``: 3-bit weights, noise injection ``TRAIN_SIGMA``, about a second each."""
    rng = np.random.default_rng(seed)
    if kind == "stage":
        (w,) = _adam_train([(2, 2)], _quantizer_grad(512), steps, 0.1, rng, 2.0)
        return Net(w, None)
    if kind == "shift-add":
        (w,) = _adam_train([(1, 3)], _shift_add_grad(512, SHIFT_ADD_GAIN), steps, 0.1, rng, 2.0)
        return Net(w, SHIFT_ADD_GAIN)
    raise ValueError(f"unknown circuit kind {kind!r}")


RESIDUE = Net(np.array([[4, -1, -1, 0]], dtype=np.int64), 7 / 2)
"""A 1.5-bit stage's residue amplifier (MDAC), fixed: ``r' = 7/2 * (4 x - c1 - c2) / 7 = 2 x - (c1 + c2) / 2``
from the input and the two latched comparators (weights exact in 3-bit cells)."""


def nnadc_stages(bits: int) -> int:
    """1.5-bit stages of a ``bits``-bit NNADC: ``bits + 2``, so the digital sum resolves a quarter LSB."""
    return int(bits) + 2


def nnadc_codes(x: np.ndarray, bits: int, variation: float = 0.0, seed: int = 0) -> np.ndarray:
    """Codes ``0 .. 2**bits - 1`` of the pipelined NNADC for inputs ``x`` (full scale [0, 1] spans the codes'
    centres ``0 .. 2**bits - 1``), one chip instance: every stage's cells programmed with the cell model and
    ``prog_sigma_frac = variation`` (drawn once from ``seed``). Stage ``k`` decides ``d_k = c1 + c2`` and passes
    ``r' = 2 r - d_k / 2`` on; the digital side sums ``sum_k d_k 2**(-k-1)`` and rounds to the code."""
    stage = train("stage")
    cell = ReRAM(prog_sigma_frac=variation)
    rng = np.random.default_rng([seed, 0x4E4E41])
    r = np.clip(np.asarray(x, dtype=np.float64).reshape(-1, 1), 0.0, 1.0)
    est = np.zeros(r.shape[0])
    for k in range(1, nnadc_stages(bits) + 1):
        w, wr = stage.programmed(cell, rng), RESIDUE.programmed(cell, rng)
        c = (stage.forward(r, w) > 0.5).astype(np.float64)
        est += c.sum(axis=1) * 2.0 ** (-k - 1)
        r = np.clip(RESIDUE.forward(np.concatenate([r, c], axis=1), wr), 0.0, 1.0)
    top = 2 ** int(bits) - 1
    return np.clip(np.floor(est * top + 0.5), 0, top).astype(np.int64)


@functools.lru_cache(maxsize=32)
def nnadc_table(bits: int, variation: float = 0.0, seed: int = 0) -> np.ndarray:
    """The NNADC's transfer on a grid of ``GRID_PER_LSB`` points per LSB over its input range: entry ``i`` is
    the code of input ``i / GRID_PER_LSB`` LSB (read-only)."""
    top = 2 ** int(bits) - 1
    u = np.arange(top * GRID_PER_LSB + 1) / GRID_PER_LSB
    table = nnadc_codes(u / top, bits, variation, seed)
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=32)
def nnsa_error_fs(cycles: int, variation: float = 0.0, seed: int = 0, samples: int = 1 << 15) -> float:
    """RMS error (of full scale) of the NNS+A after ``cycles`` steps ``y_t = f(v_t, y_{t-1})`` on uniform column
    values, one programmed instance, against the exact ``sum_t 2**(t - T - 1) v_t``."""
    net = train("shift-add")
    rng = np.random.default_rng([seed, 0x4E5341])
    w = net.programmed(ReRAM(prog_sigma_frac=variation), rng)
    v = rng.random((samples, cycles))
    y = np.zeros((samples, 1))
    exact = np.zeros(samples)
    for t in range(cycles):
        y = net.forward(np.stack([v[:, t], y[:, 0]], axis=1), w)
        exact = (v[:, t] + exact) / 2
    return float(np.sqrt(np.mean((y[:, 0] - exact) ** 2)))


def sinad_db(codes: np.ndarray, x_lsb: np.ndarray) -> float:
    """SINAD (dB) of codes against their inputs (LSB units): signal variance over mean squared error."""
    return float(10 * np.log10(np.var(x_lsb) / np.mean((codes - x_lsb) ** 2)))
