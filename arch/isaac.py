"""ISAAC (Shafiee et al., ISCA 2016): the high-precision-ADC baseline of the analog CiM papers.

Hierarchy: chip -> tiles -> IMAs (in-situ multiply-accumulate units) -> crossbars. The component
table is the paper's (Table 6, 32 nm), kept as data with its source; every chip-level figure
(peak throughput, power, area, computational and power efficiency, the breakdown by component kind)
is rolled up from it by :meth:`Isaac.summary`.

Peak throughput. A crossbar of ``rows x cols`` cells of ``cell_bits`` bits holds ``cols / slices``
weights of ``weight_bits`` bits per row (``slices = weight_bits / cell_bits``); inputs stream
``dac_bits`` per read cycle, so one full-precision matrix-vector product takes
``input_bits / dac_bits`` cycles. Peak = crossbars x rows x cols/slices MACs per
``cycles x read_cycle_s``, counting one multiply-accumulate as 2 operations.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from cimsim.arch.figures import chip_figures
from cimsim.cost import EventCost, energy_scale, rollup_energy
from cimsim.crossbar import CrossbarSpec
from cimsim.devices.converters import DAC, SarADC
from cimsim.errors import ConfigError
from cimsim.ledger import EventLedger
from cimsim.devices.peripherals import (ActivationUnit, Bus, EDRAMBuffer, OutputRegister, PoolingUnit,
                                        Register, Router, SampleHold, ShiftAdd, TileOutputRegister)



@dataclass(frozen=True)
class Component:
    """One row of a component table: ``count`` instances per ``level`` unit, power and area for all of them."""

    name: str
    kind: str             # component kind for the breakdown (adc, dac, crossbar, edram, ...)
    level: str            # "ima", "tile" or "chip": the unit that holds ``count`` instances
    count: float          # instances per unit (a fraction for a shared component)
    power_w: float        # power of all ``count`` instances together
    area_m2: float        # area of all ``count`` instances together
    source: str


_T6 = "Shafiee et al., ISAAC, ISCA 2016, Table 6 (32 nm)"
MW, MM2 = 1e-3, 1e-6
# Horowitz, "Computing's energy problem", ISSCC 2014, Fig. 1.1.9 (45 nm): 32-bit integer multiply 3.1 pJ,
# 32-bit integer add 0.1 pJ; scaled to the architecture's node with cimsim.cost.energy_scale
HOROWITZ_INT32_MUL_J = 3.1e-12
CELL_KINDS = ("ideal", "reram", "mosfet", "domain-wall")   # memory-cell kinds of cimsim.devices.catalog
HOROWITZ_INT32_ADD_J = 0.1e-12

# ISAAC Table 6: the 8 crossbars of an IMA draw 2.4 mW, so one 128x128 array spends 0.3 mW over a 100 ns
# read cycle: 30 pJ per array per cycle (about 1.8 fJ per cell).
TABLE6_ARRAY_CYCLE_ENERGY_J = 2.4e-3 / 8 * 100e-9
TABLE6_REFERENCE_ACTIVITY = 0.5   # reference operand: each row driven in half the cycles (a random input bit)


def table6_reram_r_on_ohm(rows: int = 128, cols: int = 128, energy_j: float = TABLE6_ARRAY_CYCLE_ENERGY_J) -> float:
    """The ReRAM on-resistance at which a crossbar read spends ISAAC Table 6's crossbar power.

    The cell keeps the ReRAM model's read conditions (0.5 V, 10 ns pulse, on/off ratio 150: the NeuroSim
    setup of ``cimsim.devices.ReRAM``); only the resistance scale is solved for. Reference operand: each row
    is driven in half the cycles (a random input bit) and the cells sit at the mean of uniformly used
    levels, ``(g_max + g_min) / 2``, so one array-cycle spends
    ``rows * cols * 0.5 * V^2 * t * (g_max + g_min) / 2``; setting it to ``energy_j`` (30 pJ) gives
    ``R_on`` (about 344 kOhm for a 128x128 array). ISAAC's tables fix the crossbar power, not the cell, and
    the ADC-less SNN paper's 6 kOhm cell would spend about 100x Table 6's figure in ISAAC's array.
    """
    from cimsim.devices.reram import ReRAM

    c = ReRAM()
    mean_g_over_g_max = (1.0 + 1.0 / c.on_off_ratio) / 2
    return (rows * cols * TABLE6_REFERENCE_ACTIVITY * c.read_voltage_v ** 2 * c.read_time_s
            * mean_g_over_g_max / energy_j)


# ~344 kOhm: ISAAC Table 6's 2.4 mW per 8 arrays at 100 ns cycles, with the ReRAM model's 0.5 V / 10 ns reads
TABLE6_RERAM_R_ON_OHM = table6_reram_r_on_ohm()

def _unit(name: str, kind: str, level: str, count: float, model) -> Component:
    """A table row made of ``count`` instances of a peripheral model (cimsim.devices.peripherals)."""
    return Component(name, kind, level, count, count * model.power_w, count * model.area_m2,
                     f"{type(model).__name__} model: {_T6}")


# ISAAC Table 6, as summarised in ../shared/papers.md. Powers and areas are for all instances listed.
# The digital peripherals come from their device models (which carry Table 6 per unit); the analog
# parts (ADC, DAC, crossbar) and the HyperTransport links are the table's own figures.
ISAAC_TABLE: tuple[Component, ...] = (
    # per IMA
    Component("ADC (8-bit, 1.28 GS/s)", "adc", "ima", 8, 16 * MW, 0.0096 * MM2, _T6),
    Component("DAC (1-bit)", "dac", "ima", 8 * 128, 4 * MW, 0.00017 * MM2, _T6),
    _unit("sample-and-hold", "sample_hold", "ima", 8 * 128, SampleHold()),
    Component("crossbar 128x128", "crossbar", "ima", 8, 2.4 * MW, 0.0002 * MM2, _T6),
    _unit("shift-and-add", "shift_add", "ima", 4, ShiftAdd()),
    _unit("input register 2 KB", "register", "ima", 1, Register()),
    _unit("output register 256 B", "register", "ima", 1, OutputRegister()),
    # per tile
    _unit("eDRAM buffer 64 KB", "edram", "tile", 1, EDRAMBuffer()),
    _unit("bus", "bus", "tile", 1, Bus()),
    _unit("router (shared by 4 tiles)", "router", "tile", 0.25, Router()),
    _unit("sigmoid unit", "activation", "tile", 2, ActivationUnit()),
    _unit("shift-and-add (tile)", "shift_add", "tile", 1, ShiftAdd()),
    _unit("max-pool unit", "pooling", "tile", 1, PoolingUnit()),
    _unit("output register 3 KB", "register", "tile", 1, TileOutputRegister()),
    # per chip
    Component("HyperTransport links", "hyper_transport", "chip", 4, 10.4, 22.88 * MM2, _T6),
)


def _check_r_on(r: float) -> None:
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not (r > 0 and math.isfinite(r)):
        raise ValueError(f"reram_r_on_ohm must be a positive number of ohms, got {r!r}")


def common_event_costs(spec) -> dict[str, EventCost]:
    """Energies of the events every ISAAC-style tile has, whatever its readout: the crossbar read (the
    data-dependent sum(V^2 G t) comes from the engine in joules), the DACs, the input/output registers,
    eDRAM and bus traffic, and the digital layers (pooling, activations, residual adds, layers kept
    digital). ``spec`` gives dac_bits, read_cycle_s, node_nm, weight_bits and input_bits."""
    sa, edram = ShiftAdd(), EDRAMBuffer()
    return {
        "cell_read_energy_j": EventCost("crossbar", 1.0),
        "array_read_cycles": EventCost("crossbar", 0.0),
        "cell_reads": EventCost("crossbar", 0.0),
        "dac_drives": EventCost("dac", DAC(bits=spec.dac_bits, node_nm=spec.node_nm,
                                           cycle_s=spec.read_cycle_s).energy_j),
        "input_register_bytes": EventCost("register", Register().energy_per_op_j),
        "output_register_bytes": EventCost("register", OutputRegister().energy_per_op_j),
        "edram_bytes": EventCost("edram", edram.energy_per_op_j),
        "bus_bytes": EventCost("bus", Bus().energy_per_op_j),
        "activation_ops": EventCost("activation", ActivationUnit().energy_per_op_j),
        "pooling_ops": EventCost("pooling", PoolingUnit().energy_per_op_j),
        "add": EventCost("shift_add", sa.energy_per_op_j),
        "compare": EventCost("shift_add", sa.energy_per_op_j),
        "mul": EventCost("digital_mul", HOROWITZ_INT32_MUL_J * energy_scale(45, spec.node_nm)),
        "mac": EventCost("digital_mul", (HOROWITZ_INT32_MUL_J + HOROWITZ_INT32_ADD_J) * energy_scale(45, spec.node_nm)),
        "weight_read": EventCost("edram", edram.energy_per_op_j * spec.weight_bits / 8),
        "act_read": EventCost("edram", edram.energy_per_op_j * spec.input_bits / 8),
        "act_write": EventCost("edram", edram.energy_per_op_j * spec.input_bits / 8),
    }


@dataclass(frozen=True)
class Isaac:
    """ISAAC: 168 tiles x 12 IMAs x 8 crossbars of 128x128 2-bit cells, 16-bit weights and inputs, 8-bit ADCs."""

    tiles: int = 168                 # ISAAC sec. 6 / Table 6: 168 tiles per chip
    imas_per_tile: int = 12          # ISAAC Table 6
    xbars_per_ima: int = 8           # ISAAC Table 6
    rows: int = 128                  # ISAAC Table 6: 128x128 crossbars
    cols: int = 128
    cell_bits: int = 2               # ISAAC sec. 4: 2 bits per ReRAM cell
    weight_bits: int = 16            # ISAAC sec. 4: 16-bit fixed-point weights
    input_bits: int = 16             # ISAAC sec. 4: 16-bit inputs
    dac_bits: int = 1                # ISAAC sec. 4: inputs streamed 1 bit per cycle
    adc_bits: int = 8                # ISAAC sec. 4: 8-bit ADC (with the flipped-weight encoding)
    read_cycle_s: float = 100e-9     # ISAAC sec. 4: 100 ns crossbar read cycle
    node_nm: float = 32              # ISAAC Table 6: 32 nm
    adc_sample_rate_hz: float = 1.28e9   # ISAAC Table 6: one ADC per crossbar, 128 columns per 100 ns
    cols_per_adc: int = 128          # ISAAC Table 6: one ADC shared by the 128 columns of a crossbar
    signed: str = "offset"           # ISAAC sec. 4: signed weights stored with a bias, removed digitally
    adc_range: str = "calibrated"    # our choice: ranges from calibration batches (ISAAC sizes its ADC to the
                                     # worst case with weight flipping; 'full' models a worst-case range)
    cell: str = "reram"              # ISAAC: memristor (ReRAM) crossbars; any cell kind of 'cimsim devices'
    reram_r_on_ohm: float = TABLE6_RERAM_R_ON_OHM   # solved from ISAAC Table 6's crossbar power
                                     # (table6_reram_r_on_ohm); used when cell is 'reram'
    prog_sigma_frac: float = 0.0     # NeuroSim default (no programming variation); sweepable
    read_sigma_frac: float = 0.0     # NeuroSim default (read noise off); sweepable
    table: tuple[Component, ...] = field(default=ISAAC_TABLE, repr=False)

    name = "isaac"
    description = ("ISAAC (ISCA 2016): 168 tiles x 12 IMAs x 8 crossbars 128x128, 2-bit cells, 16-bit "
                   "weights/inputs, 1-bit DACs, one 8-bit 1.28 GS/s SAR ADC per crossbar, 32 nm")

    def __post_init__(self):
        for k in ("tiles", "imas_per_tile", "xbars_per_ima", "rows", "cols", "cell_bits", "weight_bits",
                  "input_bits", "dac_bits", "adc_bits"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {v!r}")
        if not (self.read_cycle_s > 0 and math.isfinite(self.read_cycle_s)):
            raise ValueError(f"read_cycle_s must be a positive number of seconds, got {self.read_cycle_s!r}")
        if self.weight_bits % self.cell_bits or self.input_bits % self.dac_bits:
            raise ValueError("weight_bits must be a multiple of cell_bits and input_bits of dac_bits")
        if self.cols % self.slices:
            raise ValueError(f"cols ({self.cols}) must hold whole weights of {self.slices} slices")
        if self.adc_bits > 16:
            raise ValueError(f"adc_bits must be at most 16 (the SAR ADC model's range), got {self.adc_bits}")
        if self.cell.strip().lower().replace("_", "-") not in CELL_KINDS:
            raise ValueError(f"unknown device {self.cell!r} for cell: choose one of {', '.join(CELL_KINDS)}")
        if self.adc_range not in ("calibrated", "full"):
            raise ValueError(f"adc_range must be 'calibrated' or 'full', got {self.adc_range!r}")
        if self.signed not in ("offset", "differential", "twos"):
            raise ValueError(f"signed must be 'offset', 'differential' or 'twos', got {self.signed!r}")
        for k in ("prog_sigma_frac", "read_sigma_frac"):
            if not 0 <= getattr(self, k) < 1:
                raise ValueError(f"{k} must lie in [0, 1), got {getattr(self, k)!r}")
        _check_r_on(self.reram_r_on_ohm)
        if self.cols_per_adc < 1 or not self.adc_sample_rate_hz > 0:
            raise ValueError("cols_per_adc must be a positive integer and adc_sample_rate_hz positive")

    # ------------------------------------------------------------------ structure
    @property
    def slices(self) -> int:
        return self.weight_bits // self.cell_bits

    @property
    def input_cycles(self) -> int:
        return self.input_bits // self.dac_bits

    @property
    def imas(self) -> int:
        return self.tiles * self.imas_per_tile

    @property
    def crossbars(self) -> int:
        return self.imas * self.xbars_per_ima

    def units(self, level: str) -> int:
        return {"ima": self.imas, "tile": self.tiles, "chip": 1}[level]

    # ------------------------------------------------------------------ roll-up
    @property
    def peak_macs_per_s(self) -> float:
        macs_per_mvm = self.rows * (self.cols // self.slices)
        return self.crossbars * macs_per_mvm / (self.input_cycles * self.read_cycle_s)

    def breakdown(self) -> dict[str, dict[str, float]]:
        """Chip power (W) and area (m^2) per component kind, summed over the hierarchy."""
        out: dict[str, dict[str, float]] = {}
        for c in self.table:
            n = self.units(c.level)
            row = out.setdefault(c.kind, {"power_w": 0.0, "area_m2": 0.0})
            row["power_w"] += n * c.power_w
            row["area_m2"] += n * c.area_m2
        return out

    def summary(self) -> dict:
        return chip_figures(
            self.name, self.description, 2 * self.peak_macs_per_s, self.breakdown(),
            hierarchy={"tiles": self.tiles, "imas": self.imas, "crossbars": self.crossbars,
                       "weight_slices": self.slices, "input_cycles": self.input_cycles},
            params=self.params(), table=[asdict(c) for c in self.table])

    def params(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "table"}

    # ------------------------------------------------------------------ simulation (used by the mapper)
    def cell_model(self):
        from cimsim.devices import catalog

        overrides = {}
        if self.prog_sigma_frac or self.read_sigma_frac:
            overrides = {"prog_sigma_frac": self.prog_sigma_frac, "read_sigma_frac": self.read_sigma_frac}
        if self.cell.strip().lower().replace("_", "-") == "reram":
            overrides["r_on_ohm"] = self.reram_r_on_ohm
        try:
            return catalog.get(self.cell, **overrides)
        except TypeError:
            raise ConfigError(f"cell {self.cell!r} has no programming/read noise parameters; "
                              "leave prog_sigma_frac and read_sigma_frac at 0") from None

    def adc(self, bits: int | None = None) -> SarADC:
        return SarADC(bits=bits or self.adc_bits, sample_rate_hz=self.adc_sample_rate_hz, node_nm=self.node_nm)

    def crossbar_spec(self, input_signed: bool = False) -> CrossbarSpec:
        """The tile every mapped layer is programmed into."""
        return CrossbarSpec(rows=self.rows, cols=self.cols, cell=self.cell_model(), cell_bits=self.cell_bits,
                            weight_bits=self.weight_bits, input_bits=self.input_bits, dac_bits=self.dac_bits,
                            signed=self.signed, input_signed=input_signed, readout=self.adc(),
                            adc_range=self.adc_range)

    @property
    def cycle_s(self) -> float:
        """One bit-serial read cycle: the crossbar read, or longer if the shared ADC cannot keep up."""
        return max(self.read_cycle_s, self.cols_per_adc / self.adc_sample_rate_hz)

    def event_costs(self, events) -> dict[str, EventCost]:
        """Energy of every event kind the ledger may hold (crossbar, converters, digital peripherals)."""
        sa = ShiftAdd()
        table = {
            **common_event_costs(self),
            "sample_holds": EventCost("sample_hold", SampleHold().energy_per_op_j),
            "shift_adds": EventCost("shift_add", sa.energy_per_op_j),
            "offset_correction_adds": EventCost("shift_add", sa.energy_per_op_j),
        }
        for e in events:
            if e.startswith("sar-adc_conversion_"):
                table[e] = EventCost("adc", self.adc(int(e.rsplit("_", 1)[1].rstrip("b"))).energy_j)
        return table

    def _copies(self, plans: dict) -> dict[str, int]:
        """Copies of each layer so the inter-layer pipeline is balanced within the chip's crossbars.

        ISAAC replicates the weights of layers with many output positions so that every layer of the
        pipeline takes about as long (sec. 5). We choose the smallest per-layer time T for which
        ``sum_l ceil(positions_l / T) * arrays_l`` crossbars fit on the chip (bisection on T, in MVMs).
        """
        need = {n: p.arrays for n, p in plans.items()}
        if not need:
            return {}
        capacity = self.crossbars
        if sum(need.values()) > capacity:
            return {n: 1 for n in plans}
        lo, hi = 1, max(p.positions for p in plans.values())
        fits = lambda T: sum(math.ceil(p.positions / T) * p.arrays for p in plans.values()) <= capacity  # noqa: E731
        while lo < hi:
            mid = (lo + hi) // 2
            if fits(mid):
                hi = mid
            else:
                lo = mid + 1
        return {n: max(1, math.ceil(p.positions / lo)) for n, p in plans.items()}

    def cost(self, ledger: EventLedger, plans: dict, kinds: dict | None = None) -> dict:
        """Energy per layer and component, latency per layer, throughput and area of one inference.

        ``ledger`` holds the events of one inference (crossbar events from the run, digital events from
        the profile); ``plans`` the mapped layers (:class:`cimsim.mappers.mapper.LayerPlan`). The
        architecture adds its own data movement per mapped layer: inputs read from eDRAM over the bus
        into the input register (``input_bits`` per input of every MVM), every conversion sampled and
        held, outputs through the output register back to eDRAM (``2 * ceil(weight_bits/8)`` bytes per
        output, ISAAC's 16-bit values).

        Latency: a mapped layer streams its ``positions`` MVMs through its copies, each MVM taking
        ``input_bits / dac_bits`` cycles of :attr:`cycle_s`; a digital layer takes its operations over the
        chip's activation / pooling / adder units at their rates. Layers are pipelined (ISAAC sec. 5), so
        one inference takes the sum of the layer times and the throughput is set by the slowest layer.
        """
        kinds = kinds or {}
        rows = ledger.to_dict()
        for n, p in plans.items():
            rows[n] = self._dataflow_events(p, rows.get(n, {}))
        for n, ev in rows.items():   # comparisons of pooling layers run on the pooling unit, of activations
            k = kinds.get(n, "")     # on the activation (sigmoid) unit; residual adds on the adders
            if n not in plans and "compare" in ev and k:
                ev["pooling_ops" if "Pool" in k else "activation_ops"] = ev.pop("compare")
        led = EventLedger({l: {e: v for e, v in ev.items() if v} for l, ev in rows.items()})
        roll = rollup_energy(led, self.event_costs(led.events()))
        copies = self._copies(plans)
        tiles = self.tiles
        unit_rate = {  # operations per second the whole chip's digital units sustain
            "activation_ops": 2 * tiles * ActivationUnit().op_rate_hz,   # ISAAC Table 6: 2 sigmoid units per tile
            "pooling_ops": tiles * PoolingUnit().op_rate_hz,             # 1 max-pool unit per tile
            "add": (tiles + self.imas * 4) * ShiftAdd().op_rate_hz,      # S+A units: 1 per tile, 4 per IMA
            "compare": (tiles + self.imas * 4) * ShiftAdd().op_rate_hz,
            "mul": (tiles + self.imas * 4) * ShiftAdd().op_rate_hz,      # (est.) one multiply per adder slot
            "mac": (tiles + self.imas * 4) * ShiftAdd().op_rate_hz,
        }
        latency = {}
        for n in led.layers():
            if n in plans:
                latency[n] = math.ceil(plans[n].positions / copies[n]) * self._mvm_s(plans[n], led.layer(n))
            else:
                ev = led.layer(n)
                latency[n] = max((v / unit_rate[e] for e, v in ev.items() if e in unit_rate), default=0.0)
        slowest = max(latency.values(), default=0.0)
        used = sum(copies[n] * plans[n].arrays for n in plans)
        return {"energy_j": roll.per_layer, "latency_s": latency, "components": roll.per_component,
                "area_m2": self._area(),
                "throughput_inf_per_s": 1.0 / slowest if slowest > 0 else float("inf"), "copies": copies,
                "config": {"crossbars_used": used, "crossbars_on_chip": self.crossbars,
                           "fits_on_chip": sum(p.arrays for p in plans.values()) <= self.crossbars,
                           "cycle_s": self.cycle_s}}

    def _dataflow_events(self, plan, events: dict) -> dict:
        """A mapped layer's events plus the architecture's own data movement (see :meth:`cost`)."""
        ev = dict(events)
        out_bytes = 2   # ISAAC sec. 4: 16-bit output values (2 bytes)
        conv = sum(v for k, v in ev.items() if "_conversion" in k)
        in_bytes = plan.positions * plan.in_features * plan.groups * self.input_bits / 8
        o_bytes = plan.positions * plan.out_features * out_bytes
        for k, v in (("sample_holds", conv), ("input_register_bytes", in_bytes), ("output_register_bytes", o_bytes),
                     ("edram_bytes", in_bytes + o_bytes), ("bus_bytes", in_bytes + o_bytes)):
            ev[k] = ev.get(k, 0) + v
        return ev

    def _mvm_s(self, plan, events: dict) -> float:
        """Time of one matrix-vector product of a mapped layer: its bit-serial cycles."""
        return self.input_cycles * self.cycle_s

    def _area(self) -> float:
        return sum(row["area_m2"] for row in self.breakdown().values())

