"""On-chip learning, the configuration: synapse models, the experiment recipes and the learning-rate schedule."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from cimsim.devices.cell import MemoryCell
from cimsim.devices.domain_wall import DomainWallSynapse
from cimsim.devices.mosfet import MOSFETSynapse
from cimsim.devices.reram import ReRAM
from cimsim.errors import ConfigError

SYNAPSES = ("mosfet", "domain-wall", "reram")
DATASETS = ("iris", "digits", "fashion-mnist", "mnist")
BACKENDS = ("auto", "numba", "crossbar")


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
# Configuration

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
    lr_decay: float = 1.0      # the learning rate of epoch e (1, 2, ...) is lr * lr_decay**(e - 1)
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
    backend: str = "auto"      # "numba": the compiled one-layer kernel; "crossbar": the engine loop; "auto"

    def __post_init__(self):
        for name in ("lr", "w_max", "init_scale", "epochs", "batch_size"):
            v, whole = getattr(self, name), name in ("epochs", "batch_size")
            ok = (not isinstance(v, bool) and isinstance(v, int if whole else (int, float)) and math.isfinite(v)
                  and (v >= 0 if name == "init_scale" else v > 0) and (not whole or v <= 1_000_000))
            if not ok:
                want = "a whole number in [1, 1000000]" if whole else \
                    f"a finite number {'>= 0' if name == 'init_scale' else '> 0'}"
                raise ConfigError(f"on-chip {name} must be {want}, got {v!r}")
        if not (isinstance(self.lr_decay, (int, float)) and 0 < self.lr_decay <= 1):
            raise ConfigError(f"lr_decay = {self.lr_decay} is out of range: it must lie in (0, 1] "
                              "(the learning rate is multiplied by it after every epoch)")
        if self.rounding not in ("nearest", "stochastic"):
            raise ConfigError(f"rounding = {self.rounding!r}: choose 'nearest' or 'stochastic'")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend = {self.backend!r}: choose one of {', '.join(BACKENDS)}")

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (1, 2, ...): ``lr * lr_decay**(epoch - 1)``, the same schedule
        for the on-chip run and its floating-point reference."""
        return float(self.lr * self.lr_decay ** (epoch - 1))

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
        # the float reference's schedule, chosen on the float run (Fashion-MNIST, per-example SGD from zero
        # weights): lr 0.01 decayed x0.6 per epoch reaches 84.4 % test by epoch 6 and stays (a linear
        # 784 -> 10 classifier reaches ~84 %); larger rates or no decay oscillate 2-10 points below it (at lr 0.1
        # a step moves a logit by lr * |x|^2 ~ 10: per-example SGD is chaotic there).
        # w_max = 1: the full window holds every synaptic weight of the trained float reference (largest |w|
        # 0.95, 99.9th percentile 0.77; only biases, up to 3.3, clip): the finest weight step per pulse that
        # loses nothing (w_max = 2 doubles the step: 80.7 % instead of 82.2 % at 256 sites, stochastic rounding)
        base.update(hidden=(), epochs=8, batch_size=1, lr=0.01, lr_decay=0.6, w_max=1.0, init_scale=0.0)
    if synapse == "mosfet":
        base.update(update_mode="width")
    base.update({k: v for k, v in overrides.items() if v is not None})
    return OnChipConfig(**base)


