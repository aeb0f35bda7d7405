"""The one interface every architecture implements, and the registry.

The mapper, the cost roll-up, the CLI, sweeps and partial-sum QAT use only what :class:`Architecture`
declares; nothing else asks an architecture what it is. An architecture is a frozen dataclass subclassing
:class:`Architecture`, registered with :func:`register`, whose fields are its parameters
(:mod:`cimsim.arch.params`: cited scalars and device models, reachable by dotted paths). It declares:

* **what the mapper needs**: ``weight_bits``, ``input_bits`` and :meth:`Architecture.crossbar_spec` (the
  tile every mapped layer is programmed into: cell, slicing, readout and conversion scope), or
  ``maps_to_crossbars = False`` for an architecture that runs the network in floating point;
* **capabilities**: ``learned_column_scales`` (the mapper programs learned partial-sum scale factors and
  ``cimsim finetune`` prepares networks for it), ``has_adc`` (its ADC bits can be swept);
* **the component inventory** (:meth:`Architecture.inventory`): :class:`Component` rows derived from the
  device models at the architecture's operating point (counts per hierarchy level, power, area, static
  power), which :meth:`Architecture.summary` rolls up into peak throughput, power, area and efficiencies;
  rows flagged ``macro`` form the compute macro (:meth:`Architecture.macro_kinds`: the arrays, their
  readout and the partial-sum processing), the level at which CiM papers often state their savings;
* **the dataflow**: :meth:`Architecture.event_costs` (the energy of every event it can emit, see
  :mod:`cimsim.events`), :meth:`Architecture.dataflow_events` (the events the architecture adds to a
  mapped layer's, e.g. data movement) and :meth:`Architecture.timing` (latency per layer, pipeline period,
  occupancy); :meth:`Architecture.cost` feeds them to the one roll-up, :func:`cimsim.cost.rollup`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from cimsim import events as ev
from cimsim.arch import params as P
from cimsim.arch.figures import chip_figures
from cimsim.cost import Cost, EventCost, LayerPlan, Timing, rollup
from cimsim.errors import ConfigError
from cimsim.layout import BitPlaneLayout
from cimsim.ledger import EventLedger

LEVELS = ("ima", "tile", "chip")


@dataclass(frozen=True)
class Component:
    """One row of an inventory: ``count`` instances per ``level`` unit; power, area and static power of all
    of them together (W, m^2, W), and where the figures come from."""

    name: str
    kind: str             # component kind for the breakdown and the events' components (adc, dac, crossbar, ...)
    level: str            # the unit that holds ``count`` instances: one of the architecture's levels
    count: float          # instances per unit (a fraction for a shared component)
    power_w: float        # peak dynamic power of all ``count`` instances together
    area_m2: float        # area of all ``count`` instances together
    source: str
    leakage_w: float = 0.0   # static power of all ``count`` instances together
    # part of the compute macro: the arrays, their readout (ADCs, sample-and-holds, comparators) and the
    # partial-sum processing (shift-and-add, scale factors); not the input drivers, registers, buffers,
    # interconnect or digital units that designs of one family share (HCiM, arXiv 2403.13577, states its
    # savings for that macro: see Architecture.macro_kinds)
    macro: bool = False

    @classmethod
    def of(cls, name: str, kind: str, level: str, count: float, model, source: str = "") -> "Component":
        """``count`` instances of a peripheral model (power, area and leakage per unit from the model)."""
        return cls(name, kind, level, count, count * model.power_w, count * model.area_m2,
                   source or f"{type(model).__name__} model", count * model.leakage_w)


class Architecture:
    """Base of every architecture (see the module docstring). Subclasses are frozen dataclasses."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    maps_to_crossbars: ClassVar[bool] = True
    learned_column_scales: ClassVar[bool] = False
    learned_sense_amp_scales: ClassVar[bool] = False   # one sense amp per column with learned scales (adcless-snn):
                                                       # cimsim finetune trains spiking networks for it (snn_qat)
    aliases: ClassVar[dict[str, str]] = {}          # shorthand -> dotted path
    derived: ClassVar[dict[str, str]] = {}          # component parameter -> the architecture parameter it follows
    renamed: ClassVar[dict[str, str]] = {}          # old parameter path -> its new path (refused, naming the new one)
    component_types: ClassVar[dict[str, type]] = {} # component field -> the model class it must be
    cost_only: ClassVar[tuple[str, ...]] = ()       # parameter paths (fnmatch patterns) that change costs, not
                                                    # the simulated numbers: Report.recost may change them

    def __post_init__(self):
        P.validate(self)
        sync = self.synced_components()
        for name, model in sync.items():
            object.__setattr__(self, name, model)
        try:
            self.check()
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"{self.name}: {exc}") from None

    def check(self) -> None:
        """Cross-parameter checks (raise ValueError or ConfigError with a message naming the parameters)."""

    def synced_components(self) -> dict[str, Any]:
        """Components rebuilt so their derived parameters follow the architecture's (see ``derived``)."""
        return {}

    # ------------------------------------------------------------------ parameters
    def params(self) -> dict[str, Any]:
        """Every settable parameter as ``{path: value}`` (rebuilds this architecture with :func:`get`)."""
        return P.flat(self)

    def parameters(self) -> list[P.ParamInfo]:
        return P.parameters(self)

    def with_params(self, **overrides) -> "Architecture":
        return P.apply(self, overrides)

    def is_cost_only(self, path: str) -> bool:
        """Whether parameter ``path`` changes only costs (see ``cost_only``), so a run can be re-costed over it."""
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.cost_only)

    def has_param(self, path: str) -> bool:
        path = self.aliases.get(path, path)
        return any(p.path == path for p in self.parameters())

    @property
    def has_adc(self) -> bool:
        """Whether the architecture converts with a multi-bit ADC whose bits can be swept (``adc.bits``)."""
        return self.has_param("adc.bits")

    # ------------------------------------------------------------------ what the mapper needs
    weight_bits: int
    input_bits: int

    def crossbar_spec(self, input_signed: bool = False):
        raise ConfigError(f"architecture {self.name!r} has no crossbars to map onto "
                          "(use cimsim.mappers.evaluate for the digital reference)")

    def weight_layout(self) -> BitPlaneLayout | None:
        """How the mapper lays out a layer's integer weights: ``None``, one :class:`~cimsim.Crossbar` per group
        sliced by :meth:`crossbar_spec`; or a layout of :mod:`cimsim.layout` the mapper builds packed tiles from
        (:class:`~cimsim.layout.BitPlaneLayout`: SME's shaping, splicing and squeeze-out, :mod:`cimsim.mappers.sme`)."""
        return None

    def first_layer_input_bits(self) -> int:
        """Input bits of the network's first mapped layer when not ``input_bits`` (0: ``input_bits``)."""
        return 0

    def adc_read_spec(self, input_signed: bool, first: bool, last: bool):
        """The tile of a layer read by a multi-bit ADC instead of the architecture's own readout (HCiM's
        ``adc_layers``: the network's ``first`` and/or ``last`` mapped layer), or None (every layer reads as
        :meth:`crossbar_spec`)."""
        return None

    def psq_fields(self) -> dict[str, Any]:
        """What partial-sum QAT (:class:`cimsim.mappers.qat.PSQConfig`) needs to train for this architecture's
        readout: rows, cell_bits, weight_bits, input_bits, dac_bits, readout ('ternary'/'binary'), threshold.
        Only architectures with ``learned_column_scales`` have it."""
        raise ConfigError(f"{self.name} reads no decisions with learned scale factors: it needs no partial-sum "
                          "fine-tuning")

    # ------------------------------------------------------------------ inventory and chip figures
    def inventory(self) -> tuple[Component, ...]:
        raise NotImplementedError

    def units(self, level: str) -> float:
        """How many units of a hierarchy level the chip holds."""
        if level == "chip":
            return 1
        raise ConfigError(f"{self.name} has no hierarchy level {level!r}")

    def breakdown(self) -> dict[str, dict[str, float]]:
        """Chip power, area and static power per component kind, summed over the hierarchy."""
        out: dict[str, dict[str, float]] = {}
        for c in self.inventory():
            n = self.units(c.level)
            row = out.setdefault(c.kind, {"power_w": 0.0, "area_m2": 0.0, "leakage_w": 0.0})
            row["power_w"] += n * c.power_w
            row["area_m2"] += n * c.area_m2
            row["leakage_w"] += n * c.leakage_w
        return out

    def macro_kinds(self) -> frozenset[str]:
        """The component kinds of the compute macro (inventory rows flagged ``macro``): a report's energy of
        these kinds is its macro-level energy (:attr:`cimsim.report.Report.macro_energy_j`), the rest is shared
        chip infrastructure. A kind is either in the macro or not: rows of one kind that disagree raise."""
        rows = self.inventory()
        macro = {c.kind for c in rows if c.macro}
        mixed = sorted(macro & {c.kind for c in rows if not c.macro})
        if mixed:
            raise ConfigError(f"{self.name}: component kind(s) {', '.join(mixed)} have rows in and out of the "
                              "compute macro; give the shared rows a kind of their own")
        return frozenset(macro)

    @property
    def area_m2(self) -> float:
        return sum(r["area_m2"] for r in self.breakdown().values())

    def peak_ops_per_s(self) -> float:
        raise NotImplementedError

    def hierarchy(self) -> dict[str, Any]:
        return {}

    def summary(self) -> dict:
        """Peak throughput, power, area, efficiencies, the breakdown, the inventory and the parameters."""
        bd = self.breakdown()
        out = chip_figures(
            self.name, self.description, self.peak_ops_per_s(),
            {k: {"power_w": v["power_w"], "area_m2": v["area_m2"]} for k, v in bd.items()},
            leakage_w=sum(v["leakage_w"] for v in bd.values()), hierarchy=self.hierarchy(),
            params=self.params(), inventory=[c.__dict__ for c in self.inventory()])
        out["macro_components"] = sorted(self.macro_kinds())
        return out

    # ------------------------------------------------------------------ costs
    def event_costs(self) -> dict[str, EventCost]:
        """The energy of every event this architecture's runs can put in a ledger."""
        raise NotImplementedError

    def emitted_events(self, input_signed: bool = False) -> set[str]:
        """Every event a run on this architecture can count (the engine's for its tile, the profile's digital
        events and the architecture's own data movement); the contract tests check each has a cost."""
        raise NotImplementedError

    def dataflow_events(self, plan: LayerPlan, events: Mapping[str, float]) -> dict[str, float]:
        """A mapped layer's events plus what the architecture adds around its crossbars (default: nothing)."""
        return dict(events)

    def digital_events(self, layer: str, kind: str, events: Mapping[str, float]) -> dict[str, float]:
        """A digital layer's events as this architecture's units perform them (default: as profiled)."""
        return dict(events)

    def system_events(self, plans: Mapping[str, LayerPlan]) -> dict[str, dict[str, float]]:
        """Events per layer that follow from where the mapped layers sit in the whole system (e.g. bytes between
        chips), not from one layer alone; none by default."""
        return {}

    def timing(self, ledger: EventLedger, plans: Mapping[str, LayerPlan], kinds: Mapping[str, str]) -> Timing:
        raise NotImplementedError

    def cost(self, ledger: EventLedger, plans: Mapping[str, LayerPlan] | None = None,
             kinds: Mapping[str, str] | None = None) -> Cost:
        """Energy per layer and component, latency per layer, throughput and area of one inference.

        ``ledger`` holds the events of one inference (crossbar events from the run, digital events from the
        profile); ``plans`` the mapped layers. The architecture's dataflow events are added, then the one
        roll-up (:func:`cimsim.cost.rollup`) costs them with :meth:`event_costs`, the inventory's static
        power and :meth:`timing`.
        """
        plans, kinds = plans or {}, kinds or {}
        rows = ledger.to_dict()
        for n, p in plans.items():
            rows[n] = self.dataflow_events(p, rows.get(n, {}))
        for n in list(rows):
            if n not in plans:
                rows[n] = self.digital_events(n, kinds.get(n, ""), rows[n])
        for n, extra in self.system_events(plans).items():
            row = rows.setdefault(n, {})
            for e, v in extra.items():
                row[e] = row.get(e, 0) + v
        led = EventLedger({l: {e: v for e, v in row.items() if v} for l, row in rows.items()})
        timing = self.timing(led, plans, kinds)
        leak = {k: v["leakage_w"] for k, v in self.breakdown().items() if v["leakage_w"]}
        return rollup(led, self.event_costs(), leak, timing, self.area_m2)


# ---------------------------------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[Architecture]] = {}


def register(cls: type[Architecture]) -> type[Architecture]:
    """Class decorator: make ``cls`` available as ``cimsim.arch.get(cls.name)`` (and to the contract tests)."""
    if not (isinstance(cls, type) and issubclass(cls, Architecture)) or not cls.name:
        raise ConfigError(f"register needs an Architecture subclass with a name, got {cls!r}")
    key = cls.name.strip().lower()
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise ConfigError(f"an architecture named {key!r} is already registered ({_REGISTRY[key].__name__})")
    _REGISTRY[key] = cls
    return cls


def unregister(name: str) -> None:
    """Remove an architecture from the registry (tests that register a temporary one)."""
    _REGISTRY.pop(str(name).strip().lower(), None)


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str, /, **overrides) -> Architecture:
    """The architecture ``name`` with parameters replaced by ``overrides`` (paths or shorthands; strings from
    the CLI are converted to each parameter's type)."""
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise ConfigError(f"unknown architecture {name!r}: choose one of {', '.join(_REGISTRY)} "
                          "(see 'cimsim archs')")
    return P.apply(_REGISTRY[key](), overrides)


def crossbar_events(spec, *, offset: bool) -> set[str]:
    """The events the crossbar engine counts for a tile of ``spec`` (see :meth:`cimsim.Crossbar._count`)."""
    from cimsim.readouts import readout_op

    op = readout_op(spec.readout)
    out = {ev.ARRAY_READ_CYCLES, ev.CELL_READS, ev.CELL_READ_CONDUCTANCE_S, ev.DAC_DRIVES, ev.SHIFT_ADDS, op.event}
    if op.quantizes:
        out.add(ev.CLIPPED_CONVERSIONS)
    if op.decides:
        out.add(ev.NONZERO_DECISIONS)
    if not spec.conversion.per_cycle:
        out.add(ev.ANALOG_ACCUMULATIONS)
    if offset:
        out.add(ev.OFFSET_CORRECTION_ADDS)
    return out


# what the profile of the layers kept digital counts (cimsim.mappers.profile)
PROFILE_EVENTS = frozenset({ev.MAC, ev.ADD, ev.MUL, ev.COMPARE, ev.NONLINEAR, ev.WEIGHT_READ, ev.ACT_READ,
                            ev.ACT_WRITE})
