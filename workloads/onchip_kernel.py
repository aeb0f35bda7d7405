"""On-chip learning of one layer of pinning-site synapses as one compiled kernel per epoch (numba).

The reference loop (:class:`cimsim.workloads.onchip_network.OnChipNetwork`) sends every example through the
crossbar engine and the update circuit in Python: about 3.5 ms per example for 784 -> 10, so an epoch of
60,000 Fashion-MNIST images took minutes. For the domain-wall experiment (one layer, synapses with equally
spaced pinning sites, identical pulses, analog neurons i.e. an ideal readout) this module runs the same
hardware step in a numba kernel, whose every term is the engine's:

* **state**: the wall of each synapse sits at a site ``s`` in ``0 .. n - 1``; ``G(s) = G_AP + (G_P - G_AP) s / (n - 1)``.
* **forward**: in the engine's level units (``dg = (G_P - G_AP) / L``, ``L = 2**cell_bits - 1``) a cell reads
  ``(G(s) - G_AP) / dg = s L / (n - 1)``, so the differential column value of output ``j`` for integer
  inputs ``x_k`` (bias row at full scale) is ``L / (n - 1) * sum_k x_k (s+_jk - s-_jk)``: an integer sum,
  computed exactly here (the engine sums the same values in float32).
* **read noise**: every (input cycle ``t``, row block, column) read of the engine adds a Gaussian of variance
  ``sum_k d_tk^2 sigma(G_k)^2 / dg^2`` (``d_tk`` the DAC digit of cycle t, place value ``2**shift_t``); an
  ideal readout passes the sums, so output ``j`` carries one Gaussian of variance
  ``sum_k c(x_k) (sigma(G+_jk)^2 + sigma(G-_jk)^2) / dg^2`` with ``c(x) = sum_t 4**shift_t d_t(x)^2``: the same
  distribution, one draw per output and example.
* **update**: ``e = softmax(z) - onehot(y)``, ``dw = -lr e x / batch``, pulse count ``round(dw / dw_pulse)``
  (nearest, half away from zero, or stochastic ``floor(u + r)``), clipped to ``max_pulses``; ``+n`` pulses on
  G+ and ``-n`` on G-; each pulse fails (the wall stays pinned) with probability ``p_pin``; a successful one
  moves the wall ``sites_per_pulse`` sites, stopped at the track ends (:meth:`DomainWallSynapse.pulse`).
* **counts** (the ledger's events, as the engine and the update circuit count them): non-zero input digits,
  read conductance-seconds ``sum digit^2 G t_read``, write pulses issued (failed ones included: their
  current flowed), write slots (rows written in turn, each as long as its longest pulse train).

Randomness is counter-based (:func:`cimsim.kernels.counter_uniform`): each draw sits at a place fixed by
(seed, what, update step or example, output, input, pulse), so a seed gives the same run every time; the
stochastic-rounding draws are the ones :class:`OnChipNetwork` uses too (:func:`rounding_uniforms`), so with
read noise and pinning failures off both loops give the same pulses and sites.
"""

from __future__ import annotations

import math

import numpy as np

from cimsim import numba_target
from cimsim.fileio import numba_cache_fallback

numba_cache_fallback()     # before numba loads (see cimsim.kernels)
numba_target.configure()   # 512-bit vectors where the CPU has AVX-512 (cimsim.numba_target)
from numba import njit  # noqa: E402

from cimsim.devices.domain_wall import DomainWallSynapse
from cimsim.encoding import plane_layout
from cimsim.kernels import counter_uniform, seed_state

_OPTS = dict(nogil=True, cache=True, error_model="numpy")
# what each stream draws (the second word of its seed)
READ_TRAIN, READ_EVAL, ROUND, PIN = 0x4EAD, 0xE7A1, 0x20D, 0x914


def stream(seed: int, what: int, *where: int) -> tuple[np.uint64, np.uint64]:
    """(key, gamma) of the counter-based stream of ``what`` for run ``seed`` (and ``where``, e.g. an epoch)."""
    key, gamma, _, _ = seed_state(np.random.SeedSequence([int(seed), int(what), *map(int, where)]))
    return np.uint64(key), np.uint64(gamma)


@njit(**_OPTS)
def _uniforms(key, gamma, ctr0, n, out):
    for i in range(n):
        out[i] = counter_uniform(key, gamma, ctr0 + np.uint64(i))


def rounding_uniforms(seed: int, layer: int, step: int, n: int) -> np.ndarray:
    """The ``n`` stochastic-rounding uniforms of update ``step`` (0, 1, ...) of layer ``layer``, one per synapse
    pair in row-major (output, input) order: counters ``step * n + i`` of the layer's ROUND stream."""
    key, gamma = stream(seed, ROUND, layer)
    out = np.empty(n)
    _uniforms(key, gamma, np.uint64(step) * np.uint64(n), n, out)
    return out


@njit(inline="always")
def _normal(key, gamma, i):
    """The ``i``-th standard normal of a stream: Box-Muller's cosine from its words 2i and 2i + 1."""
    u1 = counter_uniform(key, gamma, np.uint64(2) * i)
    u2 = counter_uniform(key, gamma, np.uint64(2) * i + np.uint64(1))
    return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)


@njit(**_OPTS)
def quantize(x, x_top, out):
    """out[i, k] = rint(clip(x[i, k], 0, 1) * x_top) and the bias column out[i, -1] = x_top."""
    for i in range(x.shape[0]):
        for k in range(x.shape[1]):
            out[i, k] = np.rint(min(max(x[i, k], 0.0), 1.0) * x_top)
        out[i, x.shape[1]] = x_top


@njit(**_OPTS)
def _refresh(sp, sm, site_tabs, Df, V2, R, k):
    """The per-synapse sums of input column ``k`` after its sites moved: s+ - s-, the read variances, and the
    column's conductance sum over both polarities (recomputed, not updated: no drift)."""
    r = 0.0
    for j in range(sp.shape[0]):
        a, b = sp[j, k], sm[j, k]
        Df[j, k] = a - b
        V2[j, k] = site_tabs[0, a] + site_tabs[0, b]
        r += site_tabs[1, a] + site_tabs[1, b]
    R[k] = r


@njit(**_OPTS)
def _state(sp, sm, site_tabs):
    out, K = sp.shape
    Df, V2, R = np.empty((out, K)), np.empty((out, K)), np.empty(K)
    for k in range(K):
        _refresh(sp, sm, site_tabs, Df, V2, R, k)
    return Df, V2, R


@njit(**_OPTS)
def _forward(q, tabs, Df, V2, R, a_unit, zscale, noisy, key, gamma, ctr0, xf, cx, z):
    """Logits z (out,) of one example with integer inputs q (K,); returns (sum_k sq(q_k) R_k, non-zero digits).

    ``d = sum_k x_k (s+ - s-)`` is a sum of integers below 2**53: exact in float64."""
    out, K = Df.shape
    cs = 0.0
    nz = 0.0
    for k in range(K):
        x = q[k]
        xf[k] = x
        cx[k] = tabs[0, x]
        cs += tabs[1, x] * R[k]
        nz += tabs[2, x]
    for j in range(out):
        d = 0.0
        for k in range(K):
            d += xf[k] * Df[j, k]
        y = a_unit * d
        if noisy:
            v = 0.0
            for k in range(K):
                v += cx[k] * V2[j, k]
            y += math.sqrt(v) * _normal(key, gamma, ctr0 + np.uint64(j))
        z[j] = zscale * y
    return cs, nz


@njit(**_OPTS)
def _train_epoch(X, labels, order, sp, sm, batch, lr, step0, tabs, site_tabs, a_unit, zscale, noisy, dw_pulse,
                 stochastic, top, p_pin, sps, n_sites, keys, stats):
    """Per-example (or per-batch) SGD over ``order``; sites sp, sm (out, K) updated in place.

    stats += [non-zero digits, sum sq * G, write pulses, write slots, weight updates, failed pulses]."""
    out, K = sp.shape
    N = order.size
    Df, V2, R = _state(sp, sm, site_tabs)
    z, xf, cx = np.empty(out), np.empty(K), np.empty(K)
    grad = np.zeros((out, K))
    npulse = np.zeros((out, K))
    kr, gr, kn, gn, kp, gp = keys[0], keys[1], keys[2], keys[3], keys[4], keys[5]
    nsyn = np.uint64(out * K)
    for s in range((N + batch - 1) // batch):
        b0 = s * batch
        b1 = min(b0 + batch, N)
        step = np.uint64(step0 + s)
        grad[:] = 0.0
        for bi in range(b0, b1):
            i = order[bi]
            q = X[i]
            ex = step * np.uint64(batch) + np.uint64(bi - b0)       # the example's slot in the run
            cs, nz = _forward(q, tabs, Df, V2, R, a_unit, zscale, noisy, kr, gr, ex * np.uint64(out), xf, cx, z)
            stats[0] += nz
            stats[1] += cs
            m = z[0]
            for j in range(1, out):
                m = max(m, z[j])
            tot = 0.0
            for j in range(out):
                z[j] = math.exp(z[j] - m)
                tot += z[j]
            for k in range(K):
                xf[k] = tabs[3, q[k]]                               # q / x_top, the reference's activation
            for j in range(out):
                e = z[j] / tot - (1.0 if j == labels[i] else 0.0)
                for k in range(K):
                    grad[j, k] += e * xf[k]
        nb = b1 - b0
        # pulse counts of every pair (a branch-free pass), then the pulses of the non-zero ones
        for j in range(out):
            for k in range(K):
                u = (-lr * grad[j, k]) / nb / dw_pulse
                if stochastic:
                    n = math.floor(u + counter_uniform(kn, gn, step * nsyn + np.uint64(j * K + k)))
                else:
                    n = math.copysign(math.floor(abs(u) + 0.5), u)
                npulse[j, k] = min(max(n, -top), top)
        slots = 0
        for k in range(K):
            longest = 0
            for j in range(out):
                cnt = int(abs(npulse[j, k]))
                if cnt == 0:
                    continue
                longest = max(longest, cnt)
                stats[2] += 2 * cnt
                sgn = 1 if npulse[j, k] > 0 else -1
                for p in range(2):
                    moved = cnt
                    if p_pin > 0.0:
                        base = ((step * np.uint64(2) + np.uint64(p)) * nsyn + np.uint64(j * K + k)) * np.uint64(top)
                        for t in range(cnt):
                            if counter_uniform(kp, gp, base + np.uint64(t)) < p_pin:
                                moved -= 1
                        stats[5] += cnt - moved
                    if p == 0:
                        sp[j, k] = min(max(sp[j, k] + sgn * moved * sps, 0), n_sites - 1)
                    else:
                        sm[j, k] = min(max(sm[j, k] - sgn * moved * sps, 0), n_sites - 1)
            if longest:
                _refresh(sp, sm, site_tabs, Df, V2, R, k)
            slots += longest
        stats[3] += slots
        stats[4] += 1


@njit(**_OPTS)
def _logits(X, sp, sm, tabs, site_tabs, a_unit, zscale, noisy, key, gamma, Z):
    out, K = sp.shape
    Df, V2, R = _state(sp, sm, site_tabs)
    xf, cx = np.empty(K), np.empty(K)
    for i in range(X.shape[0]):
        _forward(X[i], tabs, Df, V2, R, a_unit, zscale, noisy, key, gamma, np.uint64(i) * np.uint64(out), xf, cx,
                 Z[i])


@njit(**_OPTS)
def float_epoch(X, labels, order, W, batch, lr):
    """Floating-point SGD of a linear softmax layer W (out, in + 1; bias last) over ``order``, in place:
    ``W -= lr * (softmax(W [x, 1]) - onehot(y)) [x, 1]^T / batch`` per batch."""
    out, K = W.shape
    N = order.size
    z = np.empty(out)
    grad = np.zeros((out, K))
    for s in range((N + batch - 1) // batch):
        b0 = s * batch
        b1 = min(b0 + batch, N)
        grad[:] = 0.0
        for bi in range(b0, b1):
            i = order[bi]
            for j in range(out):
                acc = W[j, K - 1]
                for k in range(K - 1):
                    acc += W[j, k] * X[i, k]
                z[j] = acc
            m = z.max()
            tot = 0.0
            for j in range(out):
                z[j] = math.exp(z[j] - m)
                tot += z[j]
            for j in range(out):
                e = z[j] / tot - (1.0 if j == labels[i] else 0.0)
                for k in range(K - 1):
                    grad[j, k] += e * X[i, k]
                grad[j, K - 1] += e
        nb = b1 - b0
        for j in range(out):
            for k in range(K):
                W[j, k] -= lr * (grad[j, k] / nb)


def supports(cfg, cell) -> str | None:
    """Why ``cfg`` cannot run on the kernel (a sentence), or None when it can."""
    if not isinstance(cell, DomainWallSynapse):
        return f"the compiled kernel models pinning-site synapses (domain wall), not {cfg.synapse}"
    if cfg.hidden:
        return "the compiled kernel trains one layer (no hidden layers)"
    if cfg.update_mode != "count":
        return "the compiled kernel issues identical pulses (update_mode 'count')"
    if cfg.adc_bits:
        return "the compiled kernel reads with analog neurons (adc_bits 0)"
    if np.ndim(cell.write_pulse_energy_j(np.asarray(cell.states))) != 0:
        return "the compiled kernel needs a state-independent write-pulse energy"
    return None


class KernelNetwork:
    """One layer of pinning-site synapse pairs trained by :func:`_train_epoch`; the interface of
    :class:`~cimsim.workloads.onchip_network.OnChipNetwork` that :func:`cimsim.workloads.onchip.run` uses."""

    def __init__(self, layer, cfg):
        """``layer``: the :class:`SynapticLayer` of the reference network (its crossbar gives the layout, the
        event names and the initial conductances)."""
        from cimsim.ledger import EventLedger

        cell, spec = layer.cell, layer.spec
        if not spec.conversion.per_cycle or spec.input_signed or spec.pair_readout:
            raise ValueError("the kernel reproduces per-cycle reads of unsigned inputs")
        self.cfg, self.cell, self.layer, self.xb = cfg, cell, layer, layer.xb
        self.readout = layer.xb.spec.readout
        n = int(cell.n_states)
        self.n_sites = n
        self.sp = cell.site_index(layer.g[0])
        self.sm = cell.site_index(layer.g[1])
        levels = 2 ** spec.cell_bits - 1
        dg = cell.g_range_s / levels
        g = cell.states
        self.g_tab = np.asarray(g, dtype=np.float64)
        var_tab = (np.asarray(cell.read_sigma_s(g), dtype=np.float64) / dg) ** 2
        self.site_tabs = np.stack([var_tab, self.g_tab])              # per site: read variance, G (S)
        self.noisy = bool(np.any(var_tab > 0))
        shifts, widths = plane_layout(spec.input_bits, spec.dac_bits)
        x = np.arange(2 ** spec.input_bits, dtype=np.int64)
        digits = [(x >> int(sh)) & ((1 << int(w)) - 1) for sh, w in zip(shifts, widths)]
        self.x_top = 2 ** spec.input_bits - 1
        # per input value x: c(x) = sum_t 4**shift_t d_t^2 (read-noise weight), sum_t d_t^2 (read energy),
        # non-zero digits (DAC drives), and the activation x / x_top the update multiplies by
        self.tabs = np.stack([sum(4.0 ** int(sh) * d.astype(np.float64) ** 2 for sh, d in zip(shifts, digits)),
                              sum(d.astype(np.float64) ** 2 for d in digits),
                              sum((d != 0).astype(np.float64) for d in digits),
                              np.arange(self.x_top + 1) / self.x_top])
        self.a_unit = levels / (n - 1)
        self.zscale = layer.w_max / (levels * self.x_top)
        self.dw_pulse = layer.dw_per_pulse
        self.dtype = np.uint8 if self.x_top < 256 else np.uint16
        self.steps = 0
        self.failed_pulses = 0.0          # pulses that left the wall pinned (issued and counted all the same)
        self.ledger_ = EventLedger()
        self.update_ledger = self.ledger_

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Integer inputs with the bias column at full scale, as the reference network's ``_quantize``."""
        q = np.empty((len(x), x.shape[1] + 1), dtype=self.dtype)
        quantize(np.asarray(x, dtype=np.float64), float(self.x_top), q)
        return q

    def train_epoch(self, q: np.ndarray, y: np.ndarray, order: np.ndarray, lr: float, tick=None) -> None:
        """One pass over ``order`` (indices into the quantized inputs ``q``) at learning rate ``lr``."""
        cfg, cell = self.cfg, self.cell
        keys = np.array([*stream(cfg.seed, READ_TRAIN), *stream(cfg.seed, ROUND, 0), *stream(cfg.seed, PIN)],
                        dtype=np.uint64)
        stats = np.zeros(6)
        _train_epoch(q, np.asarray(y, dtype=np.int64), np.asarray(order, dtype=np.int64), self.sp, self.sm,
                     int(cfg.batch_size), float(lr), self.steps, self.tabs, self.site_tabs, self.a_unit, self.zscale,
                     self.noisy, self.dw_pulse,
                     cfg.rounding == "stochastic", float(math.floor(cfg.max_pulses)), float(cell.p_pin),
                     int(cell.sites_per_pulse()), self.n_sites, keys, stats)
        steps = math.ceil(len(order) / cfg.batch_size)
        self.steps += steps
        self._count_reads(len(order), stats[0], stats[1])
        name, led = self.layer.name, self.ledger_
        led.add(name, "weight_updates", stats[4])
        led.add(name, "write_pulses", stats[2])
        led.add(name, "cell_write_energy_j", stats[2] * float(cell.write_pulse_energy_j()))
        led.add(name, "write_pulse_slots", stats[3])
        self.failed_pulses += stats[5]
        if tick is not None:
            tick(steps)

    def _count_reads(self, examples: int, nonzero_digits: float, sq_g: float) -> None:
        """The crossbar engine's read events for ``examples`` forward passes (see ``Crossbar._count``)."""
        from cimsim import events

        xb, led, name = self.xb, self.ledger_, self.xb.name
        conversions = examples * xb.conversions_per_mvm()
        led.add(name, events.ARRAY_READ_CYCLES, examples * xb.cycles * xb.arrays)
        led.add(name, xb.readout_op.event, conversions)
        led.add(name, events.DAC_DRIVES, nonzero_digits * xb.col_blocks)
        led.add(name, events.CELL_READS, nonzero_digits * xb.physical_columns)
        led.add(name, events.CELL_READ_CONDUCTANCE_S, sq_g * self.cell.read_time_s)
        led.add(name, events.SHIFT_ADDS, conversions)
        led.add(name, "serial_read_cycles", examples * self.layer.cycles)

    def logits(self, q: np.ndarray, epoch: int = 0, split: int = 0) -> np.ndarray:
        """Logits (batch, out) of the quantized inputs ``q``, read with fresh read noise (the stream of
        (epoch, split)); not counted (a measurement, not learning)."""
        key, gamma = stream(self.cfg.seed, READ_EVAL, epoch, split)
        Z = np.empty((len(q), self.sp.shape[0]))
        _logits(q, self.sp, self.sm, self.tabs, self.site_tabs, self.a_unit, self.zscale, self.noisy, key, gamma, Z)
        return Z

    def predict(self, q: np.ndarray, epoch: int = 0, split: int = 0) -> np.ndarray:
        return self.logits(q, epoch, split).argmax(axis=1)

    def accuracy(self, q: np.ndarray, y: np.ndarray, epoch: int, split: int) -> float:
        """Accuracy on ``q``, ``y`` (not counted: a measurement, not learning)."""
        return float(np.mean(self.predict(q, epoch, split) == np.asarray(y))) if len(y) else 0.0

    def conductances(self) -> np.ndarray:
        """(2, out, in + 1) conductances (S) of G+ and G-."""
        return np.stack([self.g_tab[self.sp], self.g_tab[self.sm]])

    def ledger(self):
        return self.ledger_
