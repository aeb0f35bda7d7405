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

The module is split by responsibility: :mod:`~cimsim.workloads.onchip_config` (synapses, recipes, the
learning-rate schedule), :mod:`~cimsim.workloads.onchip_circuit` (the update circuit),
:mod:`~cimsim.workloads.onchip_network` (the engine loop, the float network, the cost),
:mod:`~cimsim.workloads.onchip_kernel` (one layer of pinning-site synapses as a compiled kernel: the
domain-wall experiment at full size in seconds per epoch), :mod:`~cimsim.workloads.onchip_result` (results
and files); this module runs an experiment (:func:`run`) and the accuracy-versus-states curve
(:func:`states_curve`), and re-exports the names of all of them.

Hardware assumptions (documented, adjustable): rows are written one at a time, every column of a row in
parallel (so a row takes as long as its longest pulse train); one readout per column, a read cycle lasts
``cell.read_time_s + readout.latency_s``; examples are processed one after the other.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np

from cimsim.errors import ConfigError
from cimsim.workloads.onchip_circuit import UpdateCircuit
from cimsim.workloads.onchip_config import (BACKENDS, DATASETS, SYNAPSES, OnChipConfig, default_config,
                                            make_synapse)
from cimsim.workloads.onchip_kernel import KernelNetwork, supports
from cimsim.workloads.onchip_network import (FloatNetwork, OnChipNetwork, SynapticLayer, accuracy,
                                             learning_cost)
from cimsim.workloads.onchip_result import FORMAT, FORMAT_VERSION, OnChipResult

__all__ = ["BACKENDS", "DATASETS", "FORMAT", "FORMAT_VERSION", "SYNAPSES", "FloatNetwork", "KernelNetwork",
           "OnChipConfig", "OnChipNetwork", "OnChipResult", "SynapticLayer", "UpdateCircuit", "default_config",
           "learning_cost", "load_arrays", "make_synapse", "run", "states_curve"]

_accuracy = accuracy   # the name earlier versions used


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


def build(cfg: OnChipConfig, sizes: list[int]):
    """The network that trains ``cfg`` on chip: the compiled kernel where it applies (``backend`` "auto" or
    "numba"), else the engine loop (:class:`OnChipNetwork`), and the synapse model."""
    cell = make_synapse(cfg.synapse, cfg.states)
    net = OnChipNetwork(sizes, cell, cfg)
    why = supports(cfg, cell)
    if cfg.backend == "numba" and why:
        raise ConfigError(f"backend 'numba' cannot run this configuration: {why}; use backend 'crossbar'")
    if cfg.backend == "crossbar" or why:
        return net, cell
    return KernelNetwork(net.layers[0], cfg), cell


def run(cfg: OnChipConfig, progress: bool | None = None, data=None) -> OnChipResult:
    """Train ``cfg``'s network on-chip and, beside it, in floating point from the same start, over the same
    example order and learning-rate schedule; measure accuracy every epoch. ``data``: the arrays of
    :func:`load_arrays` (loaded here when None)."""
    t0 = time.perf_counter()
    data, xtr, ytr, xte, yte = load_arrays(cfg) if data is None else data
    sizes = [xtr.shape[1], *cfg.hidden, data.num_classes]
    net, cell = build(cfg, sizes)
    ref = FloatNetwork([l.weights() for l in (net.layers if isinstance(net, OnChipNetwork) else [net.layer])],
                       cfg.lr)
    qtr, qte = net.prepare(xtr), net.prepare(xte)
    order_rng = np.random.default_rng([cfg.seed, 0x5EED])
    steps = math.ceil(len(ytr) / cfg.batch_size)
    from tqdm import tqdm
    bar = tqdm(total=cfg.epochs * steps, desc=f"onchip {cfg.synapse} {cfg.dataset}", unit="update",
               disable=(not progress) if progress is not None else None, leave=False)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        order = order_rng.permutation(len(ytr))
        lr = cfg.lr_at(epoch)
        net.train_epoch(qtr, ytr, order, lr, bar.update)
        ref.train_epoch(xtr, ytr, order, lr, cfg.batch_size)
        cost = learning_cost(net.ledger(), cell, net.readout, cfg.dac_bits)
        tr, te = net.accuracy(qtr, ytr, epoch, 0), net.accuracy(qte, yte, epoch, 1)
        history.append({"epoch": epoch, "lr": lr, "train_accuracy": tr, "test_accuracy": te,
                        "float_train_accuracy": accuracy(ref.predict, xtr, ytr),
                        "float_test_accuracy": accuracy(ref.predict, xte, yte),
                        "energy_j": cost["energy_j"], "write_energy_j": cost["write_energy_j"],
                        "time_s": cost["time_s"], "write_pulses": cost["write_pulses"]})
        bar.set_postfix(train=f"{100 * tr:.1f}%", test=f"{100 * te:.1f}%")
    bar.close()
    ledger = net.ledger()
    cost = learning_cost(ledger, cell, net.readout, cfg.dac_bits)
    last = history[-1]
    n_layers = len(sizes) - 1
    from cimsim.devices.base import describe
    return OnChipResult(
        config=cfg.to_dict(), history=history, train_accuracy=last["train_accuracy"],
        test_accuracy=last["test_accuracy"], float_train_accuracy=last["float_train_accuracy"],
        float_test_accuracy=last["float_test_accuracy"], energy_j=cost["energy_j"], time_s=cost["time_s"],
        write_energy_j=cost["write_energy_j"], write_pulses=cost["write_pulses"],
        weight_updates=cost["weight_updates"],
        energy_per_update_j=cost["write_energy_j"] / max(cost["weight_updates"] / n_layers, 1),
        energy_by_component_j=cost["energy_by_component_j"], topology=sizes,
        wall_s=time.perf_counter() - t0, ledger=ledger.to_dict(),
        device={"class": type(cell).__name__, "window_pulses": float(cell.window_pulses),
                "write_pulse_energy_j": float(np.mean(cell.write_pulse_energy_j(
                    np.array([cell.g_min_s, cell.g_max_s])))),
                "write_pulse_time_s": float(cell.write_pulse_time_s),
                "params": {p["name"]: p["value"] for p in describe(cell)["params"]}})


def states_curve(cfg: OnChipConfig, states=(8, 16, 32, 64, 128, 256), progress: bool | None = None,
                 tick=None) -> list[OnChipResult]:
    """The accuracy-versus-states curve: ``cfg`` run once per number of synapse states (pinning sites of the
    domain wall), the data loaded once; every point has the same float reference (same start, order and
    learning-rate schedule), which each result carries. ``tick(result)`` after each point."""
    states = [int(n) for n in states]
    if not states:
        raise ConfigError("states_curve needs at least one number of states")
    data = load_arrays(cfg)
    out = []
    for n in states:
        r = run(replace(cfg, states=n), progress=progress, data=data)
        out.append(r)
        if tick is not None:
            tick(r)
    return out
