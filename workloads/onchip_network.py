"""On-chip learning through the crossbar engine: layers of synapse pairs, the network, its float twin, the cost.

This is the general (reference) loop: every example goes through :class:`~cimsim.crossbar.Crossbar` reads and
the update circuit, for any synapse, hidden layers, ADC readouts and pulse modes. One layer of pinning-site
synapses with identical pulses and analog neurons also runs as one compiled kernel per epoch
(:mod:`cimsim.workloads.onchip_kernel`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cimsim import events
from cimsim.crossbar import Crossbar, CrossbarSpec
from cimsim.devices.cell import MemoryCell
from cimsim.devices.converters import DAC, IdealReadout, SarADC
from cimsim.devices.peripherals import ShiftAdd
from cimsim.errors import ConfigError
from cimsim.ledger import EventLedger
from cimsim.workloads.onchip_circuit import UpdateCircuit
from cimsim.workloads.onchip_config import OnChipConfig
from cimsim.workloads.onchip_kernel import float_epoch, rounding_uniforms


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


class SynapticLayer:
    """``n_out`` neurons fed by ``n_in`` inputs plus a bias row; weights in differential synapse pairs."""

    def __init__(self, name: str, n_in: int, n_out: int, cell: MemoryCell, spec: CrossbarSpec, w_max: float,
                 init_scale: float, rng: np.random.Generator, seed: int):
        self.name, self.cell, self.w_max = name, cell, float(w_max)
        self.n_in, self.n_out = n_in, n_out
        self.levels = 2 ** spec.cell_bits - 1          # level units per window: dg = range / levels
        self.x_top = 2 ** spec.input_bits - 1
        self.e_top = 2 ** (spec.input_bits - 1) - 1
        self.cycles = math.ceil(spec.input_bits / spec.dac_bits)   # a forward read's (unsigned inputs)
        # a quantizing readout converts each polarity column over its full range (adc_range="full"): the
        # G+ and G- currents are converted separately and subtracted digitally
        self.spec = dataclasses.replace(spec, adc_range="full")
        self.spec_t = dataclasses.replace(self.spec, input_signed=True)
        # initial state: both devices of a pair at the state half the window's pulses reach from g_min
        # (through the device law, no noise), then a random number of nominal pulses apart
        half = math.floor(cell.window_pulses / 2) if math.isfinite(cell.window_pulses) else 0
        g0 = float(np.asarray(cell.pulse(np.array([cell.g_min_s]), np.array([half]))).ravel()[0])
        g = np.full((2, n_out, n_in + 1), g0)
        if init_scale > 0:
            k = np.rint(rng.uniform(-1, 1, size=(n_out, n_in + 1)) * init_scale / self.dw_per_pulse / 2)
            g[0] = cell.pulse(g[0], k)
            g[1] = cell.pulse(g[1], -k)
        self.g = g
        self.xb = Crossbar.from_conductances(g, self.spec, seed=seed, name=name)
        self._xb_t: Crossbar | None = None
        self._seed = seed

    @property
    def dw_per_pulse(self) -> float:
        """Nominal weight change of one pulse on the pair (+1 on G+, -1 on G-)."""
        return 2.0 * self.w_max / self.cell.window_pulses

    def weights(self) -> np.ndarray:
        """Effective weights (out, in + 1), bias last: ``w_max * (G+ - G-) / range``."""
        return self.w_max * (self.g[0] - self.g[1]) / self.cell.g_range_s

    def forward(self, a_int: np.ndarray) -> np.ndarray:
        """Pre-activations (batch, out) for quantized inputs with the bias column (batch, in + 1)."""
        y = self.xb(a_int)
        self.xb.ledger.add(self.name, "serial_read_cycles", len(a_int) * self.cycles)
        return y * (self.w_max / (self.levels * self.x_top))

    def backward(self, e: np.ndarray) -> np.ndarray:
        """``W^T e`` (batch, in) read through the transposed crossbar; ``e`` in [-1, 1] is quantized."""
        if self._xb_t is None:
            self._xb_t = Crossbar.from_conductances(self.g.transpose(0, 2, 1), self.spec_t,
                                                    seed=self._seed + 7919, name=f"{self.name}/backward")
        e_int = np.rint(np.clip(e, -1, 1) * self.e_top).astype(np.int64)
        y = self._xb_t(e_int)
        self._xb_t.ledger.add(self._xb_t.name, "serial_read_cycles", len(e_int) * self._xb_t.cycles)   # signed
        return (y * (self.w_max / (self.levels * self.e_top)))[:, :-1]

    def update(self, dw: np.ndarray, circuit: UpdateCircuit, rng: np.random.Generator | None,
               ledger: EventLedger, uniforms: np.ndarray | None = None) -> None:
        """Pulse the pairs toward the weight update ``dw`` (out, in + 1); counts go to ``ledger``.
        ``uniforms`` (one per pair) are the stochastic-rounding draws (else ``rng`` draws them)."""
        n = circuit.pulses(dw, self.dw_per_pulse, rng, uniforms)
        both = np.stack([n, -n])
        g, pulses, energy, slots = circuit.apply(self.cell, self.g, both, rng)
        self.g = g
        ledger.add(self.name, "weight_updates", 1)
        ledger.add(self.name, "write_pulses", pulses)
        ledger.add(self.name, "cell_write_energy_j", energy)
        ledger.add(self.name, "write_pulse_slots", slots)
        self.xb.set_conductances(g)
        if self._xb_t is not None:
            self._xb_t.set_conductances(g.transpose(0, 2, 1))

    def crossbars(self) -> list[Crossbar]:
        return [self.xb] + ([self._xb_t] if self._xb_t is not None else [])


def accuracy(predict, x: np.ndarray, y: np.ndarray, batch: int = 2000) -> float:
    """Fraction of ``y`` that ``predict`` gets right, over batches of ``batch`` examples."""
    hits = 0
    for i in range(0, len(y), batch):
        hits += int((predict(x[i:i + batch]) == y[i:i + batch]).sum())
    return hits / max(len(y), 1)


class OnChipNetwork:
    """A fully connected network on synapse crossbars; :meth:`train_step` is one hardware update."""

    def __init__(self, sizes: list[int], cell: MemoryCell, cfg: OnChipConfig):
        if cfg.input_bits < 2 or cfg.dac_bits < 1 or cfg.dac_bits > cfg.input_bits:
            raise ConfigError("input_bits must be >= 2 and 1 <= dac_bits <= input_bits")
        self.cfg, self.cell = cfg, cell
        self.rng = np.random.default_rng([cfg.seed, 0x0C41])
        self.circuit = UpdateCircuit(mode=cfg.update_mode, rounding=cfg.rounding, max_pulses=cfg.max_pulses)
        readout = IdealReadout() if cfg.adc_bits == 0 else SarADC(bits=cfg.adc_bits)
        cb = 8  # level unit = 1/255 of the window: fine enough that the ADC's power-of-two LSB fits its range
        spec = CrossbarSpec(rows=128, cols=128, cell=cell, cell_bits=cb, weight_bits=cb + 1,
                            input_bits=cfg.input_bits, dac_bits=cfg.dac_bits, signed="differential",
                            readout=readout)
        self.readout = readout
        init_rng = np.random.default_rng([cfg.seed, 0x1417])
        self.layers = [SynapticLayer(f"fc{i + 1}", n_in, n_out, cell, spec, cfg.w_max,
                                     cfg.init_scale,
                                     init_rng, seed=cfg.seed * 101 + i)
                       for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))]
        self.update_ledger = EventLedger()
        self.x_top = 2 ** cfg.input_bits - 1
        self.steps = 0          # weight updates so far: the counter of the stochastic-rounding draws

    # ---------------------------------------------------------------- forward and learning
    def _quantize(self, a: np.ndarray) -> np.ndarray:
        q = np.rint(np.clip(a, 0.0, 1.0) * self.x_top).astype(np.int64)
        return np.concatenate([q, np.full((len(q), 1), self.x_top, dtype=np.int64)], axis=1)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits and the quantized inputs of every layer (as fractions of full scale, bias column last)."""
        acts = []
        a = x
        for i, layer in enumerate(self.layers):
            q = self._quantize(a)
            acts.append(q / self.x_top)
            z = layer.forward(q)
            a = _sigmoid(z) if i < len(self.layers) - 1 else z
        return a, acts

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float | None = None) -> None:
        """One hardware update on the batch ``x``, ``y`` at learning rate ``lr`` (default ``cfg.lr``)."""
        lr = self.cfg.lr if lr is None else lr
        z, acts = self.forward(x)
        e = _softmax(z)
        e[np.arange(len(y)), y] -= 1.0
        b = len(y)
        updates = []
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            updates.append((i, layer, -lr * (e.T @ acts[i]) / b))
            if i > 0:
                h = acts[i][:, :-1]
                e = layer.backward(e) * h * (1.0 - h)
                e = np.clip(e, -1.0, 1.0)
        for i, layer, dw in updates:
            uniforms = (rounding_uniforms(self.cfg.seed, i, self.steps, dw.size)
                        if self.circuit.rounding == "stochastic" else None)
            layer.update(dw, self.circuit, self.rng, self.update_ledger, uniforms)
        self.steps += 1

    def train_epoch(self, x: np.ndarray, y: np.ndarray, order: np.ndarray, lr: float, tick=None) -> None:
        """Updates over the examples ``order`` in batches of ``cfg.batch_size``; ``tick()`` after each one."""
        bs = self.cfg.batch_size
        for s in range(math.ceil(len(order) / bs)):
            idx = order[s * bs:(s + 1) * bs]
            self.train_step(x[idx], y[idx], lr)
            if tick is not None:
                tick(1)

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """The inputs as :meth:`train_epoch` and :meth:`accuracy` take them (here: unchanged)."""
        return x

    def accuracy(self, x: np.ndarray, y: np.ndarray, epoch: int, split: int) -> float:
        """Accuracy on ``x``, ``y``, read with noise like training reads but counted in a separate ledger."""
        with self.measuring():
            return accuracy(self.predict, x, y)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)[0].argmax(axis=1)

    def ledger(self) -> EventLedger:
        """Everything counted so far: crossbar reads (forward and backward) and write pulses."""
        led = EventLedger()
        for layer in self.layers:
            for xb in layer.crossbars():
                led += xb.ledger
        led += self.update_ledger
        return led

    def measuring(self):
        """Context: crossbar reads inside it go to a separate ledger (accuracy checks are not learning)."""
        net = self

        class _Swap:
            def __enter__(self_inner):
                self_inner.saved = [(xb, xb.ledger) for layer in net.layers for xb in layer.crossbars()]
                for xb, _ in self_inner.saved:
                    xb.ledger = EventLedger()
                return self_inner

            def __exit__(self_inner, *exc):
                for xb, led in self_inner.saved:
                    xb.ledger = led
                return False

        return _Swap()


class FloatNetwork:
    """The same network in floating point (float64, no quantization), trained by plain SGD."""

    def __init__(self, weights: list[np.ndarray], lr: float):
        self.w = [w.copy() for w in weights]
        self.lr = lr

    def forward(self, x):
        acts, a = [], x
        for i, w in enumerate(self.w):
            a1 = np.concatenate([a, np.ones((len(a), 1))], axis=1)
            acts.append(a1)
            z = a1 @ w.T
            a = _sigmoid(z) if i < len(self.w) - 1 else z
        return a, acts

    def train_step(self, x, y, lr: float | None = None):
        lr = self.lr if lr is None else lr
        z, acts = self.forward(x)
        e = _softmax(z)
        e[np.arange(len(y)), y] -= 1.0
        grads = []
        for i in range(len(self.w) - 1, -1, -1):
            grads.append((i, (e.T @ acts[i]) / len(y)))
            if i > 0:
                h = acts[i][:, :-1]
                e = (e @ self.w[i][:, :-1]) * h * (1.0 - h)
        for i, g in grads:
            self.w[i] -= lr * g

    def train_epoch(self, x, y, order, lr: float, batch_size: int = 1) -> None:
        """SGD over the examples ``order`` in batches; one layer runs as a compiled loop
        (:func:`cimsim.workloads.onchip_kernel.float_epoch`, the same arithmetic)."""
        if len(self.w) == 1:
            float_epoch(np.ascontiguousarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64),
                        np.asarray(order, dtype=np.int64), self.w[0], int(batch_size), float(lr))
            return
        for s in range(math.ceil(len(order) / batch_size)):
            idx = order[s * batch_size:(s + 1) * batch_size]
            self.train_step(x[idx], y[idx], lr)

    def predict(self, x):
        return self.forward(x)[0].argmax(axis=1)


# --------------------------------------------------------------------------------------------------
# Cost

def learning_cost(ledger: EventLedger, cell: MemoryCell, readout, dac_bits: int) -> dict[str, float]:
    """Energy (J) and time (s) of the counted events, by component, and their totals.

    Energy: cell reads (data dependent, from the engine), conversions x the readout's energy, DAC drives x
    the DAC's energy held for the cell's read, shift-adds x ISAAC's shift-add unit, and the write pulses' summed energy. Time: read
    cycles one after the other (``cell.read_time_s + readout.latency_s`` each) plus the row-serial write
    slots times the nominal pulse width.
    """
    t = ledger.totals()
    conversions = events.conversions(t)
    v_step = cell.read_voltage_v / ((1 << dac_bits) - 1)     # the DAC's voltage step of one digit unit
    e = {
        "cell_read": t.get(events.CELL_READ_CONDUCTANCE_S, 0.0) * v_step ** 2,
        "readout": conversions * float(readout.energy_j),
        # a drive holds the word line for the cell's read (the DAC default's 100 ns is ISAAC's read cycle)
        "dac": t.get("dac_drives", 0.0) * DAC(bits=dac_bits, cycle_s=cell.read_time_s).energy_j,
        "shift_add": t.get("shift_adds", 0.0) * ShiftAdd().energy_per_op_j,
        "cell_write": t.get("cell_write_energy_j", 0.0),
    }
    cycle = cell.read_time_s + float(readout.latency_s)
    read_time = t.get("serial_read_cycles", 0.0) * cycle
    write_time = t.get("write_pulse_slots", 0.0) * cell.write_pulse_time_s
    return {"energy_j": float(sum(e.values())), "energy_by_component_j": e, "read_time_s": read_time,
            "write_time_s": write_time, "time_s": read_time + write_time,
            "write_energy_j": e["cell_write"], "write_pulses": t.get("write_pulses", 0.0),
            "weight_updates": t.get("weight_updates", 0.0)}


