"""On-chip learning: a fully connected network whose weights live in crossbars of synapse devices.

Every weight is a differential pair of synapses, ``w = w_max * (G+ - G-) / (g_max - g_min)``, held in a
:class:`~cimsim.crossbar.Crossbar` built from those conductances (:meth:`Crossbar.from_conductances`).
One training step is what the hardware does:

1. **forward**: inputs (pixels / features in [0, 1]) are quantized to ``input_bits`` and streamed through
   the crossbar of each layer (DACs, analog column sums with the devices' read noise, the chosen readout,
   shift-and-add); a digital neuron applies the activation (sigmoid in hidden layers), its output is
   quantized again for the next crossbar; a bias is one more crossbar row driven at full scale;
2. **error**: the output neurons compute ``e = softmax(z) - onehot(y)`` (the cross-entropy gradient);
   for a hidden layer the error is read *backwards* through the next layer's crossbar (a transposed read:
   errors, quantized to signed ``input_bits``, drive the columns, the rows are sensed) and multiplied by
   the sigmoid's derivative;
3. **update**: the SGD update ``dW = -lr * e^T x / batch`` (an outer product) goes to the update circuit
   (:class:`UpdateCircuit`), which turns each weight's update into a signed pulse count (identical pulses)
   or a pulse width (one width-modulated pulse), in units of the nominal pulse that moves a device
   ``1 / window_pulses`` of its window; the pair gets ``+n`` on G+ and ``-n`` on G-. The device's own
   law (:meth:`MemoryCell.pulse`) then moves each conductance: nonlinearity, bounds, asymmetry,
   cycle-to-cycle noise, finite states.

Every crossbar read (forward and backward) and every write pulse is counted in an
:class:`~cimsim.ledger.EventLedger` per layer (reads by the engine; writes here: ``write_pulses``,
``cell_write_energy_j`` = the sum over pulses of the device's energy of each pulse at the state it starts
from, ``write_pulse_slots`` = the row-serial write time in pulse widths). :func:`learning_cost` turns
the ledger into energy and time. Evaluation passes (accuracy per epoch) are measurements, not learning,
and go to a separate ledger.

Hardware assumptions (documented, adjustable): rows are written one at a time, every column of a row in
parallel (so a row takes as long as its longest pulse train); one readout per column, a read cycle lasts
``cell.read_time_s + readout.latency_s``; examples are processed one after the other.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cimsim.crossbar import Crossbar, CrossbarSpec
from cimsim.devices.cell import MemoryCell
from cimsim.devices.converters import DAC, IdealReadout, SarADC
from cimsim.devices.domain_wall import DomainWallSynapse
from cimsim.devices.mosfet import MOSFETSynapse
from cimsim.devices.peripherals import ShiftAdd
from cimsim.devices.reram import ReRAM
from cimsim.errors import ConfigError
from cimsim import events
from cimsim.ledger import EventLedger
from cimsim.plots import ONCHIP_FORMAT

FORMAT = ONCHIP_FORMAT
FORMAT_VERSION = 1
SYNAPSES = ("mosfet", "domain-wall", "reram")
DATASETS = ("iris", "digits", "fashion-mnist", "mnist")


# --------------------------------------------------------------------------------------------------
# Synapses

def make_synapse(name: str, states: int | None = None) -> MemoryCell:
    """The synapse model ``name`` with defaults, optionally with ``states`` distinct update positions.

    * ``mosfet``: the update current is set so that ``states - 1`` pulses cross the gate window
      (default: 250 pulses of 5 mV, :class:`MOSFETSynapse`);
    * ``domain-wall``: ``states`` pinning sites on the same track, the pulse narrowed to move one site
      (:meth:`DomainWallSynapse.with_pinning_sites`; default 32 sites);
    * ``reram``: ``states - 1`` pulses cross the window (NeuroSim's ``max_pulses``; default 100).
    """
    if name not in SYNAPSES:
        raise ConfigError(f"unknown synapse {name!r}: choose one of {', '.join(SYNAPSES)}")
    if states is not None and (isinstance(states, bool) or int(states) != states or states < 2):
        raise ConfigError(f"states = {states!r} is out of range: a synapse needs at least 2 states")
    if name == "mosfet":
        cell = MOSFETSynapse()
        if states is not None:
            dv = (cell.v_g_max_v - cell.v_g_min_v) / (int(states) - 1)
            cell = dataclasses.replace(cell, i_update_a=dv * cell.c_store_f / cell.pulse_width_s)
        return cell
    if name == "domain-wall":
        return DomainWallSynapse().with_pinning_sites(32 if states is None else int(states))
    return ReRAM() if states is None else ReRAM(max_pulses=int(states) - 1)


# --------------------------------------------------------------------------------------------------
# The update circuit

@dataclass(frozen=True)
class UpdateCircuit:
    """Turns SGD weight updates into per-synapse pulses.

    ``mode="count"``: identical pulses, the count ``n = round(dw / dw_pulse)`` (``rounding`` nearest, half
    away from zero, or stochastic), clipped to ``max_pulses``; each pulse is applied through the device
    law one at a time, so its energy is taken at the state it starts from. ``mode="width"``: one pulse per
    synapse whose width is ``|dw| / dw_pulse`` nominal pulses, resolved to ``width_resolution`` of a pulse
    (the update circuit's timer) and clipped to ``max_pulses``; its energy is ``width x`` that of one
    nominal pulse. ``dw_pulse`` is the weight change of one nominal pulse on the pair.
    """

    mode: str = "count"
    rounding: str = "nearest"
    # (est.) a 4-bit pulse-width counter: 1/16 of the nominal pulse is the finest width the timer resolves
    width_resolution: float = 1.0 / 16
    # (est.) per-update saturation of the pulse generator: 16 nominal pulses (a 4-bit counter)
    max_pulses: int = 16

    def __post_init__(self):
        if self.mode not in ("count", "width"):
            raise ConfigError(f"UpdateCircuit.mode = {self.mode!r}: choose 'count' or 'width'")
        if self.rounding not in ("nearest", "stochastic"):
            raise ConfigError(f"UpdateCircuit.rounding = {self.rounding!r}: choose 'nearest' or 'stochastic'")
        if not 0 < self.width_resolution <= 1:
            raise ConfigError("UpdateCircuit.width_resolution must lie in (0, 1] (a fraction of one pulse)")
        if int(self.max_pulses) != self.max_pulses or self.max_pulses < 1:
            raise ConfigError("UpdateCircuit.max_pulses must be a positive whole number")

    @property
    def quantum(self) -> float:
        """The smallest pulse amount the circuit issues: one pulse, or ``width_resolution`` of one."""
        return 1.0 if self.mode == "count" else float(self.width_resolution)

    def pulses(self, dw: np.ndarray, dw_per_pulse: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """Signed pulse amounts (in nominal pulses) for the weight updates ``dw``.

        Sign of the result = sign of ``dw`` (or 0); size non-decreasing in ``|dw|`` (nearest rounding).
        """
        u = np.asarray(dw, dtype=np.float64) / (dw_per_pulse * self.quantum)
        if self.rounding == "nearest" or rng is None:
            k = np.sign(u) * np.floor(np.abs(u) + 0.5)
        else:
            k = np.floor(u + rng.random(u.shape))
        top = math.floor(self.max_pulses / self.quantum)
        return np.clip(k, -top, top) * self.quantum

    def apply(self, cell: MemoryCell, g: np.ndarray, n: np.ndarray, rng: np.random.Generator | None = None):
        """Apply signed pulse amounts ``n`` to conductances ``g`` (same shape, last axis = rows/inputs).

        Returns ``(g_new, pulses, energy_j, slots)``: the number of write pulses issued, their summed
        energy (each pulse at the state it starts from) and the write time in nominal pulse widths when
        the rows (last axis) are written one after the other and the cells of a row in parallel.
        """
        g = np.array(g, dtype=np.float64)
        n = np.asarray(n, dtype=np.float64)
        amount = np.abs(n)
        rows_axis = tuple(range(n.ndim - 1))
        slots = float(amount.max(axis=rows_axis).sum()) if n.size else 0.0
        energy = 0.0
        if self.mode == "width":
            m = amount > 0
            pulses = int(m.sum())
            if pulses:
                e = np.broadcast_to(cell.write_pulse_energy_j(g[m]), (pulses,))
                energy = float(np.sum(e * amount[m]))
                g[m] = cell.pulse(g[m], n[m], rng)
            return g, pulses, energy, slots
        count = np.rint(amount).astype(np.int64)
        sign = np.sign(n)
        pulses = int(count.sum())
        for i in range(int(count.max()) if count.size else 0):
            m = count > i
            gm = g[m]
            energy += float(np.sum(np.broadcast_to(cell.write_pulse_energy_j(gm), gm.shape)))
            g[m] = cell.pulse(gm, sign[m], rng)
        return g, pulses, energy, slots


# --------------------------------------------------------------------------------------------------
# One layer of synapses

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
        self.cycles = math.ceil(spec.input_bits / spec.dac_bits)
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
        self._xb_t.ledger.add(self._xb_t.name, "serial_read_cycles", len(e_int) * self.cycles)
        return (y * (self.w_max / (self.levels * self.e_top)))[:, :-1]

    def update(self, dw: np.ndarray, circuit: UpdateCircuit, rng: np.random.Generator | None,
               ledger: EventLedger) -> None:
        """Pulse the pairs toward the weight update ``dw`` (out, in + 1); counts go to ``ledger``."""
        n = circuit.pulses(dw, self.dw_per_pulse, rng)
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


# --------------------------------------------------------------------------------------------------
# Configuration, network, result

@dataclass(frozen=True)
class OnChipConfig:
    """Everything that defines one on-chip learning run (the defaults are set per synapse and dataset by
    :func:`default_config`)."""

    synapse: str = "mosfet"
    dataset: str = "iris"
    hidden: tuple[int, ...] = ()
    epochs: int = 10
    batch_size: int = 1
    lr: float = 0.1
    w_max: float = 4.0
    init_scale: float = 0.5
    states: int | None = None
    seed: int = 0
    adc_bits: int = 0          # 0: the column current goes to an analog neuron (ideal readout); else a SAR ADC
    input_bits: int = 8
    dac_bits: int = 1
    update_mode: str = "count"
    rounding: str = "nearest"
    max_pulses: int = 16
    train_limit: int | None = None
    test_limit: int | None = None
    data_dir: str | None = None

    def __post_init__(self):
        for name in ("lr", "w_max", "init_scale", "epochs", "batch_size"):
            v, whole = getattr(self, name), name in ("epochs", "batch_size")
            ok = (not isinstance(v, bool) and isinstance(v, int if whole else (int, float)) and math.isfinite(v)
                  and (v >= 0 if name == "init_scale" else v > 0) and (not whole or v <= 1_000_000))
            if not ok:
                want = "a whole number in [1, 1000000]" if whole else \
                    f"a finite number {'>= 0' if name == 'init_scale' else '> 0'}"
                raise ConfigError(f"on-chip {name} must be {want}, got {v!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d


def default_config(synapse: str, dataset: str, **overrides) -> OnChipConfig:
    """The recipe of each experiment; ``overrides`` (None values ignored) replace fields.

    * MOSFET (arXiv 1907.00625) on Iris: 4 -> 8 (sigmoid) -> 3, per-example SGD, width-modulated pulses.
    * Domain wall (arXiv 1811.09966): one layer, inputs -> 10, no hidden layer, identical one-site pulses.
    * ReRAM: the same network as the domain-wall / MOSFET run of that dataset, identical pulses.
    """
    if synapse not in SYNAPSES:
        raise ConfigError(f"unknown synapse {synapse!r}: choose one of {', '.join(SYNAPSES)}")
    from cimsim.workloads.datasets import canonical_name

    ds = canonical_name(dataset)
    if ds not in DATASETS:
        raise ConfigError(f"dataset {dataset!r} is not supported for on-chip learning: choose one of "
                          f"{', '.join(DATASETS)}")
    if synapse == "mosfet" and ds in ("fashion-mnist", "mnist"):
        raise ConfigError(f"the MOSFET synapse experiment (arXiv 1907.00625) is set up for iris or digits, "
                          f"not {ds}: use --dataset iris, or --synapse domain-wall for {ds}")
    if synapse == "domain-wall" and ds == "iris":
        raise ConfigError("the domain-wall experiment (arXiv 1811.09966) is a 784 -> 10 image classifier, "
                          "not set up for iris: use --dataset fashion-mnist or digits, or --synapse mosfet")
    base: dict[str, Any] = {"synapse": synapse, "dataset": ds}
    if ds == "iris":
        base.update(hidden=(8,), epochs=30, batch_size=1, lr=0.2, w_max=4.0, init_scale=1.0)
    elif ds == "digits":
        base.update(hidden=(), epochs=10, batch_size=1, lr=0.1, w_max=2.0, init_scale=0.0)
    else:
        base.update(hidden=(), epochs=1, batch_size=1, lr=0.1, w_max=2.0, init_scale=0.0)
    if synapse == "mosfet":
        base.update(update_mode="width")
    base.update({k: v for k, v in overrides.items() if v is not None})
    return OnChipConfig(**base)


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

    def train_step(self, x: np.ndarray, y: np.ndarray) -> None:
        z, acts = self.forward(x)
        e = _softmax(z)
        e[np.arange(len(y)), y] -= 1.0
        b = len(y)
        updates = []
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            updates.append((layer, -self.cfg.lr * (e.T @ acts[i]) / b))
            if i > 0:
                h = acts[i][:, :-1]
                e = layer.backward(e) * h * (1.0 - h)
                e = np.clip(e, -1.0, 1.0)
        for layer, dw in updates:
            layer.update(dw, self.circuit, self.rng, self.update_ledger)

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

    def train_step(self, x, y):
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
            self.w[i] -= self.lr * g

    def predict(self, x):
        return self.forward(x)[0].argmax(axis=1)


# --------------------------------------------------------------------------------------------------
# Cost

def learning_cost(ledger: EventLedger, cell: MemoryCell, readout, dac_bits: int) -> dict[str, float]:
    """Energy (J) and time (s) of the counted events, by component, and their totals.

    Energy: cell reads (data dependent, from the engine), conversions x the readout's energy, DAC drives x
    the DAC's energy, shift-adds x ISAAC's shift-add unit, and the write pulses' summed energy. Time: read
    cycles one after the other (``cell.read_time_s + readout.latency_s`` each) plus the row-serial write
    slots times the nominal pulse width.
    """
    t = ledger.totals()
    conversions = events.conversions(t)
    v_step = cell.read_voltage_v / ((1 << dac_bits) - 1)     # the DAC's voltage step of one digit unit
    e = {
        "cell_read": t.get(events.CELL_READ_CONDUCTANCE_S, 0.0) * v_step ** 2,
        "readout": conversions * float(readout.energy_j),
        "dac": t.get("dac_drives", 0.0) * DAC(bits=dac_bits).energy_j,
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


# --------------------------------------------------------------------------------------------------
# Running an experiment

@dataclass
class OnChipResult:
    """Learning curves and costs of one run (SI units)."""

    config: dict[str, Any]
    history: list[dict[str, float]]
    train_accuracy: float
    test_accuracy: float
    float_train_accuracy: float
    float_test_accuracy: float
    energy_j: float
    time_s: float
    write_energy_j: float
    write_pulses: float
    weight_updates: float
    energy_per_update_j: float
    energy_by_component_j: dict[str, float]
    topology: list[int]
    wall_s: float
    ledger: dict[str, dict[str, float]] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.history)

    def summary(self) -> dict[str, Any]:
        """The JSON the CLI prints: results, per-epoch history, costs and the configuration."""
        d = {k: getattr(self, k) for k in (
            "train_accuracy", "test_accuracy", "float_train_accuracy", "float_test_accuracy", "energy_j",
            "time_s", "write_energy_j", "write_pulses", "weight_updates", "energy_per_update_j",
            "energy_by_component_j", "topology", "wall_s")}
        d["epochs"] = self.epochs
        d["history"] = self.history
        d["config"] = self.config
        d["device"] = self.device
        return d

    def to_hdf5(self, path) -> Path:
        """Write the run (format ``cimsim.onchip``): root attributes for scalars and config, /history table."""
        import json

        import h5py

        from cimsim._version import __version__
        from cimsim.fileio import atomic_output

        path = Path(path)
        with atomic_output(path) as tmp:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = FORMAT
                f.attrs["format_version"] = FORMAT_VERSION
                f.attrs["kind"] = "onchip"
                f.attrs["cimsim_version"] = __version__
                f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                for k in ("train_accuracy", "test_accuracy", "float_train_accuracy", "float_test_accuracy",
                          "energy_j", "time_s", "write_energy_j", "write_pulses", "weight_updates",
                          "energy_per_update_j", "wall_s"):
                    f.attrs[k] = float(getattr(self, k))
                f.attrs["epochs"] = self.epochs
                f.attrs["topology"] = np.array(self.topology, dtype=np.int64)
                f.attrs["summary_json"] = json.dumps(self.summary(), default=str)
                cfg = f.create_group("config")
                for k, v in self.config.items():
                    cfg.attrs[k] = "none" if v is None else (np.array(v) if isinstance(v, (list, tuple)) else v)
                h = f.create_group("history")
                for key in self.history[0] if self.history else []:
                    h.create_dataset(key, data=np.array([r[key] for r in self.history], dtype=np.float64))
                comp = f.create_group("energy_by_component")
                for k, v in self.energy_by_component_j.items():
                    comp.attrs[k] = float(v)
        return path

    @classmethod
    def from_hdf5(cls, path) -> "OnChipResult":
        import json

        import h5py

        from cimsim.fileio import reading

        with reading(path, ConfigError, "cimsim on-chip run file", "re-create it with 'cimsim onchip --out'"):
            with h5py.File(path, "r") as f:
                if str(f.attrs.get("format", "")) != FORMAT:
                    raise ConfigError(f"{path} is not an on-chip learning run (format {f.attrs.get('format')!r})")
                s = json.loads(f.attrs["summary_json"])
            if not isinstance(s, dict):
                raise ValueError("summary_json is not an object")
            s.pop("epochs", None)
            return cls(**s)


def _accuracy(predict, x: np.ndarray, y: np.ndarray, batch: int = 2000) -> float:
    hits = 0
    for i in range(0, len(y), batch):
        hits += int((predict(x[i:i + batch]) == y[i:i + batch]).sum())
    return hits / max(len(y), 1)


def load_arrays(cfg: OnChipConfig):
    """Flattened float64 train / test arrays in [0, 1] and labels, limited as the config says."""
    from cimsim.workloads import datasets

    data = datasets.load(cfg.dataset, data_dir=cfg.data_dir)
    xtr = data.x_train.reshape(len(data.y_train), -1).double().numpy()
    xte = data.x_test.reshape(len(data.y_test), -1).double().numpy()
    ytr, yte = data.y_train.numpy(), data.y_test.numpy()
    if cfg.train_limit:
        xtr, ytr = xtr[:cfg.train_limit], ytr[:cfg.train_limit]
    if cfg.test_limit:
        xte, yte = xte[:cfg.test_limit], yte[:cfg.test_limit]
    return data, xtr, ytr, xte, yte


def run(cfg: OnChipConfig, progress: bool | None = None) -> OnChipResult:
    """Train ``cfg``'s network on-chip and, beside it, in floating point; measure accuracy every epoch."""
    t0 = time.perf_counter()
    if cfg.epochs < 1 or cfg.batch_size < 1 or not cfg.lr > 0 or not cfg.w_max > 0:
        raise ConfigError("epochs and batch_size must be >= 1, lr and w_max > 0")
    cell = make_synapse(cfg.synapse, cfg.states)
    data, xtr, ytr, xte, yte = load_arrays(cfg)
    sizes = [xtr.shape[1], *cfg.hidden, data.num_classes]
    net = OnChipNetwork(sizes, cell, cfg)
    ref = FloatNetwork([l.weights() for l in net.layers], cfg.lr)
    order_rng = np.random.default_rng([cfg.seed, 0x5EED])
    steps = math.ceil(len(ytr) / cfg.batch_size)
    from tqdm import tqdm
    bar = tqdm(total=cfg.epochs * steps, desc=f"onchip {cfg.synapse} {cfg.dataset}", unit="update",
               disable=(not progress) if progress is not None else None, leave=False)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        order = order_rng.permutation(len(ytr))
        for s in range(steps):
            idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            net.train_step(xtr[idx], ytr[idx])
            ref.train_step(xtr[idx], ytr[idx])
            bar.update(1)
        cost = learning_cost(net.ledger(), cell, net.readout, cfg.dac_bits)
        with net.measuring():
            tr, te = _accuracy(net.predict, xtr, ytr), _accuracy(net.predict, xte, yte)
        history.append({"epoch": epoch, "train_accuracy": tr, "test_accuracy": te,
                        "float_train_accuracy": _accuracy(ref.predict, xtr, ytr),
                        "float_test_accuracy": _accuracy(ref.predict, xte, yte),
                        "energy_j": cost["energy_j"], "write_energy_j": cost["write_energy_j"],
                        "time_s": cost["time_s"], "write_pulses": cost["write_pulses"]})
        bar.set_postfix(train=f"{100 * tr:.1f}%", test=f"{100 * te:.1f}%")
    bar.close()
    ledger = net.ledger()
    cost = learning_cost(ledger, cell, net.readout, cfg.dac_bits)
    last = history[-1]
    from cimsim.devices.base import describe
    return OnChipResult(
        config=cfg.to_dict(), history=history, train_accuracy=last["train_accuracy"],
        test_accuracy=last["test_accuracy"], float_train_accuracy=last["float_train_accuracy"],
        float_test_accuracy=last["float_test_accuracy"], energy_j=cost["energy_j"], time_s=cost["time_s"],
        write_energy_j=cost["write_energy_j"], write_pulses=cost["write_pulses"],
        weight_updates=cost["weight_updates"],
        energy_per_update_j=cost["write_energy_j"] / max(cost["weight_updates"] / len(net.layers), 1),
        energy_by_component_j=cost["energy_by_component_j"], topology=sizes,
        wall_s=time.perf_counter() - t0, ledger=ledger.to_dict(),
        device={"class": type(cell).__name__, "window_pulses": float(cell.window_pulses),
                "write_pulse_energy_j": float(np.mean(cell.write_pulse_energy_j(
                    np.array([cell.g_min_s, cell.g_max_s])))),
                "write_pulse_time_s": float(cell.write_pulse_time_s),
                "params": {p["name"]: p["value"] for p in describe(cell)["params"]}})
