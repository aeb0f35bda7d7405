"""ISAAC-style tiled chips: chip -> tiles -> IMAs (in-situ multiply-accumulate units) -> crossbars.

:class:`TiledChip` holds what ISAAC (Shafiee et al., ISCA 2016) and the architectures compared against it
share: the hierarchy and the array, the memory cell, the word-line DACs, the tile's digital peripherals
(eDRAM buffer, bus, router, activation and pooling units, registers), the data movement around every
mapped layer, layer replication within the chip and the inter-layer pipeline. Subclasses add their
readout (an ADC, comparators, ...), its inventory rows and its event costs.

Inventory rows are derived from the device models at the operating point (rows, cols, bits, cycle,
node), so changing a parameter moves power and area. Peripheral models carry ISAAC Table 6's figures for
one unit at 32 nm; they are scaled to the architecture's node (:mod:`cimsim.devices.technology`).
Registers are sized by the dataflow (an IMA's input register holds one window of its crossbars' inputs,
its output register one window of outputs) and their power and area scale with the size (est.).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping

from cimsim import events as ev
from cimsim.arch import chips as multichip
from cimsim.arch.base import Architecture, Component, PROFILE_EVENTS, crossbar_events
from cimsim.arch.params import component, param
from cimsim.cost import EventCost, LayerPlan, Timing
from cimsim.devices.base import default_of
from cimsim.devices.cell import MemoryCell
from cimsim.spec import CrossbarSpec
from cimsim.devices.converters import DAC
from cimsim.devices.peripherals import (ActivationUnit, Bus, EDRAMBuffer, HyperTransportLink, OutputRegister,
                                        PoolingUnit, Register, Router, ShiftAdd, TileOutputRegister)
from cimsim.devices.reram import ReRAM
from cimsim.devices.technology import area_scale, energy_scale
from cimsim.encoding import INPUT_ENCODINGS, input_cycles
from cimsim.ledger import EventLedger

T6 = "Shafiee et al., ISAAC, ISCA 2016, Table 6 (32 nm)"
# Horowitz, "Computing's energy problem", ISSCC 2014, Fig. 1.1.9 (45 nm): integer multiply 0.2 pJ at 8 bits, 3.1 pJ
# at 32; integer add 0.03 pJ at 8 bits, 0.1 pJ at 32; scaled to the architecture's node
HOROWITZ_INT8_MUL_J, HOROWITZ_INT32_MUL_J = 0.2e-12, 3.1e-12
HOROWITZ_INT8_ADD_J, HOROWITZ_INT32_ADD_J = 0.03e-12, 0.1e-12
HOROWITZ_NODE_NM = 45


def integer_op_energy_j(bits: float, at8: float, at32: float) -> float:
    """An integer operation's energy at ``bits`` on the power law through Horowitz's 8- and 32-bit points (45 nm): a
    multiply's exponent is 1.98 (about quadratic in the width), an add's 0.87 (about linear); (est.) between and
    beyond the two points."""
    return at8 * (bits / 8) ** (math.log(at32 / at8) / math.log(4))
# ISAAC Table 6: the 8 crossbars of an IMA draw 2.4 mW, so one 128x128 array spends 0.3 mW over a 100 ns
# read cycle: 30 pJ per array per cycle (about 1.8 fJ per cell); and occupy 0.0002 mm^2 (1.5e-3 um^2 a cell)
TABLE6_ARRAY_CYCLE_ENERGY_J = 2.4e-3 / 8 * 100e-9
TABLE6_CELL_AREA_M2 = 0.0002e-6 / (8 * 128 * 128)
# ISAAC sec. 4: a crossbar read takes 100 ns (the 100 ns cycle; its 1.28 GS/s ADC is sized to convert 128 columns in
# that read), so Table 6's crossbar and DAC powers are drawn while the array reads for 100 ns: the cell's conductance
# and a driver's power follow from them, and a design whose array reads for a shorter time spends proportionally
# less per read (issue 16 audit; before 2026-12-03, npim5, ISAAC's read was taken as 10 ns inside its 100 ns cycle,
# which made every 10 ns read cost a full 100 ns cycle's energy)
ISAAC_READ_S = 100e-9
# The array's read when nothing else sets the cycle (CASCADE and Neural-PIM at equal area): the cell model's
# 10 ns read pulse (the ADC-less SNN paper's NeuroSim setup, docs/references.md#adc-less-snn; the crossbar energy is
# counted over it). Bit-line settling adds little (est.): a 128-row line of ~0.2 fF per cell (~26 fF) charged through
# the parallel on-cells of a 3.4 MOhm array (~27 kOhm at 128 rows) settles in ~1 ns, and a wire of ~2.5 Ohm per
# cell adds ~5 ps.
ARRAY_READ_S = 10e-9
TABLE6_REFERENCE_ACTIVITY = 0.5   # reference operand: each row driven in half the cycles (a random input bit)
OUTPUT_VALUE_BYTES = 2            # ISAAC sec. 4: 16-bit output values


def table6_reram_r_on_ohm(rows: int = 128, cols: int = 128, energy_j: float = TABLE6_ARRAY_CYCLE_ENERGY_J,
                          read_time_s: float = ISAAC_READ_S) -> float:
    """The ReRAM on-resistance at which a crossbar read of ``read_time_s`` (ISAAC's 100 ns) spends ISAAC Table 6's
    crossbar energy per cycle.

    The cell keeps the ReRAM model's read voltage and on/off ratio (0.5 V, 150: the NeuroSim setup of
    ``cimsim.devices.ReRAM``); only the resistance scale is solved for. Reference operand: each row is driven in
    half the cycles (a random input bit) and the cells sit at the mean of uniformly used levels,
    ``(g_max + g_min) / 2``, so one array read spends ``rows * cols * 0.5 * V^2 * t * (g_max + g_min) / 2``;
    setting it to ``energy_j`` (30 pJ) over ISAAC's 100 ns read gives ``R_on`` (about 3.4 MOhm for a 128x128
    array; a cell read for the model's 10 ns pulse then spends 3 pJ per array read). ISAAC's tables fix the
    crossbar power, not the cell, and the ADC-less SNN paper's 6 kOhm cell would spend about 570x Table 6's power.
    """
    c = ReRAM()
    mean_g_over_g_max = (1.0 + 1.0 / c.on_off_ratio) / 2
    return (rows * cols * TABLE6_REFERENCE_ACTIVITY * c.read_voltage_v ** 2 * read_time_s
            * mean_g_over_g_max / energy_j)


# ~3.4 MOhm: ISAAC Table 6's 2.4 mW per 8 arrays drawn during ISAAC's 100 ns reads at the ReRAM model's 0.5 V
TABLE6_RERAM_R_ON_OHM = table6_reram_r_on_ohm()


def fast_reram() -> ReRAM:
    """ISAAC's cell read for the ReRAM model's 10 ns pulse (the designs whose arrays read in ``ARRAY_READ_S``)."""
    return ReRAM(r_on_ohm=TABLE6_RERAM_R_ON_OHM)


def isaac_reram() -> ReRAM:
    """ISAAC's cell read for ISAAC's 100 ns (sec. 4): Table 6's 30 pJ per 128x128 array read."""
    return ReRAM(r_on_ohm=TABLE6_RERAM_R_ON_OHM, read_time_s=ISAAC_READ_S)


class DifferentialColumns:
    """Weights stored differentially: each magnitude slice of a weight in a G+ and a G- column (HCiM, Neural-PIM,
    CASCADE, the SNN chips). Put it before :class:`TiledChip` in the bases."""

    @property
    def magnitude_slices(self) -> int:
        return math.ceil((self.weight_bits - 1) / self.cell_bits)

    @property
    def slices(self) -> int:
        """Columns per weight: a G+ and a G- column per magnitude slice."""
        return 2 * self.magnitude_slices

    def check(self) -> None:
        super().check()
        if self.cols % 2:
            raise ValueError(f"cols ({self.cols}) must be even: weights sit in G+/G- column pairs")

    def pair_crossbar_spec(self, input_signed: bool, conversion) -> CrossbarSpec:
        """The differential tile read pair by pair (``pair_readout``) by ``self.adc`` at ``conversion``'s scope
        (CASCADE, Neural-PIM)."""
        return CrossbarSpec(rows=self.rows, cols=self.cols, cell=self.cell, cell_bits=self.cell_bits,
                            weight_bits=self.weight_bits, input_bits=self.input_bits, dac_bits=self.dac_bits,
                            signed="differential", input_signed=input_signed, readout=self.adc,
                            adc_range=self.adc_range, pair_readout=True, conversion=conversion,
                            input_encoding=self.input_encoding)


@dataclass(frozen=True)
class TiledChip(Architecture):
    """The hierarchy, array, cell, DACs and tile peripherals of an ISAAC-style chip (see the module docstring)."""

    tiles: int = param(168, "1", f"{T6}: 168 tiles per chip", lo=1, hi=100_000)
    chips: int = param(1, "1", "one chip; a network larger than one runs on a chain of equal chips joined by ISAAC's "
                       "HyperTransport links (Table 6; placement and traffic: cimsim.arch.chips, est.)", lo=1, hi=10_000)
    imas_per_tile: int = param(12, "1", f"{T6}: 12 IMAs per tile", lo=1, hi=1024)
    xbars_per_ima: int = param(8, "1", f"{T6}: 8 crossbars per IMA", lo=1, hi=1024)
    rows: int = param(128, "1", f"{T6}: 128x128 crossbars", lo=2, hi=4096,
                      doc="word lines per array (our bound: 4096, 4x the largest arrays reported)")
    cols: int = param(128, "1", f"{T6}: 128x128 crossbars", lo=2, hi=4096, doc="bit lines per array")
    cell_bits: int = param(2, "bit", "ISAAC sec. 4: 2 bits per ReRAM cell", lo=1, hi=8)
    weight_bits: int = param(16, "bit", "ISAAC sec. 4: 16-bit fixed-point weights", lo=2, hi=32)
    input_bits: int = param(16, "bit", "ISAAC sec. 4: 16-bit inputs", lo=1, hi=32)
    dac_bits: int = param(1, "bit", "ISAAC sec. 4: inputs streamed 1 bit per cycle", lo=1, hi=8)
    input_encoding: str = param("twos", "", "ISAAC sec. 4 streams unsigned inputs bit by bit; signed ones in two's "
                                "complement, the sign bit a cycle of its own (our model, cimsim.encoding)",
                                choices=INPUT_ENCODINGS,
                                doc="how signed inputs stream: 'twos' (a - 1 magnitude cycles and the sign bit's), "
                                    "'split' (a positive and a negative pass of a - 1 bits each: twice the cycles, "
                                    "no cancelling planes)")
    read_cycle_s: float = param(100e-9, "s", "ISAAC sec. 4: 100 ns crossbar read cycle", lo=1e-12, hi=1.0)
    node_nm: float = param(32, "nm", f"{T6}", lo=7, hi=180)
    cell: MemoryCell = component(isaac_reram, "ISAAC: memristor (ReRAM) crossbars read for the 100 ns read cycle (sec. "
                                 "4); R_on solved from Table 6's crossbar power drawn during that read "
                                 "(table6_reram_r_on_ohm); any cell kind of 'cimsim devices'")
    dac: DAC = component(DAC, f"{T6}: 1-bit DACs, one per row (DAC model)")
    edram: EDRAMBuffer = component(EDRAMBuffer, f"{T6}: 64 KB eDRAM per tile")
    bus: Bus = component(Bus, f"{T6}: one bus per tile")
    router: Router = component(Router, f"{T6}: one router per 4 tiles")
    activation: ActivationUnit = component(ActivationUnit, f"{T6}: 2 sigmoid units per tile")
    pooling: PoolingUnit = component(PoolingUnit, f"{T6}: 1 max-pool unit per tile")
    tile_shift_add: ShiftAdd = component(ShiftAdd, f"{T6}: 1 shift-and-add unit per tile")
    input_register: Register = component(Register, f"{T6}: 2 KB input register per IMA (sized by the dataflow)")
    output_register: OutputRegister = component(OutputRegister, f"{T6}: 256 B output register per IMA (sized by "
                                                "the dataflow)")
    tile_output_register: TileOutputRegister = component(TileOutputRegister, f"{T6}: 3 KB output register per tile "
                                                         "(sized by the dataflow)")
    link: HyperTransportLink = component(HyperTransportLink, f"{T6}: 4 HyperTransport links per chip")

    aliases = {"read_sigma_frac": "cell.read_sigma_frac", "prog_sigma_frac": "cell.prog_sigma_frac",
               "reram_r_on_ohm": "cell.r_on_ohm"}
    derived = {"dac.bits": "dac_bits", "dac.node_nm": "node_nm", "dac.cycle_s": "read_cycle_s",
               "input_register.bytes": "xbars_per_ima, rows and input_bits",
               "output_register.bytes": "xbars_per_ima, cols, weight_bits and cell_bits",
               "tile_output_register.bytes": "imas_per_tile and the output register"}
    component_types = {"cell": MemoryCell}
    # cost-only: the chip's size and clock, the node, the peripherals' figures, and the cell's read voltage (the
    # ledger counts conductance-seconds, sum digit**2 * G * t_read; the voltage step squared makes them joules)
    cost_only = ("tiles", "chips", "imas_per_tile", "xbars_per_ima", "read_cycle_s", "node_nm", "cell.read_voltage_v",
                 "cell.write_*", "dac.*", "edram.*", "bus.*", "router.*",
                 "activation.*", "pooling.*", "tile_shift_add.*", "input_register.*", "output_register.*",
                 "tile_output_register.*", "link.*")

    def synced_components(self) -> dict:
        return {"dac": replace(self.dac, bits=self.dac_bits, node_nm=self.node_nm, cycle_s=self.read_cycle_s),
                "input_register": replace(self.input_register, bytes=self.input_register_bytes),
                "output_register": replace(self.output_register, bytes=self.output_register_bytes),
                "tile_output_register": replace(self.tile_output_register,
                                                bytes=self.imas_per_tile * self.output_register_bytes)}

    def check(self) -> None:
        if self.input_bits % self.dac_bits:
            raise ValueError(f"input_bits ({self.input_bits}) must be a multiple of dac_bits ({self.dac_bits})")

    # ------------------------------------------------------------------ structure
    @property
    def slices(self) -> int:
        """Cells (columns) per weight."""
        raise NotImplementedError

    @property
    def input_cycles(self) -> int:
        return self.input_bits // self.dac_bits

    @property
    def all_tiles(self) -> int:
        """Tiles of every chip."""
        return self.chips * self.tiles

    @property
    def imas(self) -> int:
        return self.all_tiles * self.imas_per_tile

    @property
    def crossbars_per_chip(self) -> int:
        return self.tiles * self.imas_per_tile * self.xbars_per_ima

    @property
    def crossbars(self) -> int:
        return self.imas * self.xbars_per_ima

    def units(self, level: str) -> float:
        return {"ima": self.imas, "tile": self.all_tiles, "chip": self.chips}[level] if level in ("ima", "tile", "chip") \
            else super().units(level)

    @property
    def input_register_bytes(self) -> int:
        """One window of inputs for the IMA's crossbars: xbars x rows x input_bits (ISAAC: 2 KB)."""
        return max(1, self.xbars_per_ima * self.rows * self.input_bits // 8)

    @property
    def output_register_bytes(self) -> int:
        """One window of outputs: xbars x (cols / slices) 16-bit values (ISAAC: 256 B)."""
        return max(1, self.xbars_per_ima * (self.cols // self.slices) * OUTPUT_VALUE_BYTES)

    def array_read_s(self) -> float:
        """The crossbar's own read: ``read_cycle_s``, never shorter than the cell's read pulse (the crossbar energy
        is counted over ``cell.read_time_s``)."""
        return max(self.read_cycle_s, self.cell.read_time_s)

    @property
    def cycle_s(self) -> float:
        """One bit-serial read cycle: the crossbar read (:meth:`array_read_s`), or longer if the readout cannot
        keep up (:meth:`readout_cycle_s`; subclasses with other limits override this)."""
        return max(self.array_read_s(), self.readout_cycle_s())

    def readout_cycle_s(self) -> float:
        """The time the readout needs per read cycle (0: it keeps up with any read)."""
        return 0.0

    def hierarchy(self) -> dict:
        return {"chips": self.chips, "tiles": self.all_tiles, "imas": self.imas, "crossbars": self.crossbars, "weight_slices": self.slices,
                "input_cycles": self.input_cycles, "cycle_s": self.cycle_s}

    def peak_ops_per_s(self) -> float:
        """Every crossbar busy: rows x weights per row MACs per ``input_cycles`` cycles; one MAC = 2 operations."""
        macs_per_mvm = self.rows * (self.cols // self.slices)
        return 2 * self.crossbars * macs_per_mvm / (self.input_cycles * self.cycle_s)

    # ------------------------------------------------------------------ inventory
    def scaled(self, model):
        """(energy per op, power, area, leakage) of one peripheral unit at the architecture's node."""
        e, a = energy_scale(model.node_nm, self.node_nm), area_scale(model.node_nm, self.node_nm)
        return model.energy_per_op_j * e, model.power_w * e, model.area_m2 * a, model.leakage_w * e

    def unit_row(self, name: str, kind: str, level: str, count: float, model, macro: bool = False) -> Component:
        _, p, a, leak = self.scaled(model)
        return Component(name, kind, level, count, count * p, count * a,
                         f"{type(model).__name__} model ({model.node_nm:g} nm, scaled to {self.node_nm:g} nm)",
                         count * leak, macro)

    def register_row(self, name: str, level: str, model) -> Component:
        """A register file sized by the dataflow: the model's power and area are for its default capacity and
        scale with the bytes it must hold (est.: a register file's power and area grow linearly with its size)."""
        row = self.unit_row(name, "register", level, 1, model)
        k = model.bytes / default_of(type(model), "bytes")
        return replace(row, power_w=row.power_w * k, area_m2=row.area_m2 * k, leakage_w=row.leakage_w * k)

    def array_rows(self) -> list[Component]:
        """The crossbars and their DACs, per IMA."""
        cell, n = self.cell, self.xbars_per_ima
        levels = cell.level_conductances(self.cell_bits)
        d = self.dac_bits
        mean_digit2 = (2 ** d - 1) * (2 ** (d + 1) - 1) / 6 / (2 ** d - 1) ** 2   # uniform digits, in units of V_read^2
        cycle_energy = (self.rows * self.cols * mean_digit2 * cell.read_voltage_v ** 2 * cell.read_time_s
                        * float(levels.mean()))
        dac = self.dac
        return [
            Component(f"crossbar {self.rows}x{self.cols}", "crossbar", "ima", n, n * cycle_energy / self.cycle_s,
                      n * self.rows * self.cols * TABLE6_CELL_AREA_M2 * area_scale(32, self.node_nm),
                      f"{type(cell).__name__} model: reads of uniform random digits at the mean level per cycle; "
                      f"cell area from {T6}", macro=True),
            Component(f"DAC ({self.dac_bits}-bit)", "dac", "ima", n * self.rows,
                      n * self.rows * dac.energy_j / self.cycle_s, n * self.rows * dac.area_m2,
                      f"DAC model ({T6}), one drive per row per cycle"),
        ]

    def array_and_tile_rows(self) -> list[Component]:
        """Everything of an ISAAC-style chip but its readout: DACs, crossbars, the IMA's shift-and-add units (one
        per 2 crossbars) and registers, the tile's units and the chip's links."""
        xbar, dac = self.array_rows()
        return [dac, xbar, self.unit_row("shift-and-add", "shift_add", "ima", self.xbars_per_ima / 2,
                                         self.tile_shift_add, macro=True),
                *self.ima_register_rows(), *self.tile_rows(), *self.chip_rows()]

    def ima_register_rows(self) -> list[Component]:
        return [self.register_row(f"input register {self.input_register.bytes} B", "ima", self.input_register),
                self.register_row(f"output register {self.output_register.bytes} B", "ima", self.output_register)]

    def tile_rows(self) -> list[Component]:
        """ISAAC's per-tile units (Table 6)."""
        return [
            self.unit_row(f"eDRAM buffer {self.edram.bytes // 1024} KB", "edram", "tile", 1, self.edram),
            self.unit_row("bus", "bus", "tile", 1, self.bus),
            self.unit_row("router (shared by 4 tiles)", "router", "tile", 0.25, self.router),
            self.unit_row("sigmoid unit", "activation", "tile", 2, self.activation),
            self.unit_row("shift-and-add (tile)", "tile_shift_add", "tile", 1, self.tile_shift_add),
            self.unit_row("max-pool unit", "pooling", "tile", 1, self.pooling),
            self.register_row(f"output register {self.tile_output_register.bytes} B", "tile",
                              self.tile_output_register),
        ]

    def chip_rows(self) -> list[Component]:
        """ISAAC Table 6: 4 HyperTransport links per chip, 10.4 W and 22.88 mm^2; not scaled with the node (est.: an
        off-chip link's power and area are its pads and drivers')."""
        n, link = 4, self.link
        return [Component("HyperTransport links", "hyper_transport", "chip", n, n * link.power_w, n * link.area_m2,
                          f"HyperTransportLink model ({T6})", n * link.leakage_w)]

    # ------------------------------------------------------------------ costs
    def tile_event_costs(self) -> dict[str, EventCost]:
        """Energies of the events every tiled chip has, whatever its readout: the crossbar read (conductance-
        seconds times the DAC's voltage step squared), the DACs, registers, eDRAM and bus traffic, and the
        digital layers (pooling, activations, residual adds, layers kept digital)."""
        sa = self.scaled(self.tile_shift_add)[0]
        edram = self.scaled(self.edram)[0]
        v_step = self.cell.read_voltage_v / ((1 << self.dac_bits) - 1)
        horowitz = energy_scale(HOROWITZ_NODE_NM, self.node_nm)
        mul = integer_op_energy_j(self.input_bits, HOROWITZ_INT8_MUL_J, HOROWITZ_INT32_MUL_J)
        acc = integer_op_energy_j(2 * self.input_bits, HOROWITZ_INT8_ADD_J, HOROWITZ_INT32_ADD_J)
        return {
            ev.CELL_READ_CONDUCTANCE_S: EventCost("crossbar", v_step ** 2),
            ev.ARRAY_READ_CYCLES: EventCost("crossbar", 0.0),
            ev.CELL_READS: EventCost("crossbar", 0.0),
            ev.DAC_DRIVES: EventCost("dac", self.dac.energy_j),
            ev.INPUT_REGISTER_BYTES: EventCost("register", self.scaled(self.input_register)[0]),
            ev.OUTPUT_REGISTER_BYTES: EventCost("register", self.scaled(self.output_register)[0]),
            ev.EDRAM_BYTES: EventCost("edram", edram),
            ev.BUS_BYTES: EventCost("bus", self.scaled(self.bus)[0]),
            ev.LINK_BYTES: EventCost("hyper_transport", self.link.energy_per_op_j),
            ev.ACTIVATION_OPS: EventCost("activation", self.scaled(self.activation)[0]),
            ev.NONLINEAR: EventCost("activation", self.scaled(self.activation)[0]),   # (digital_events: on it)
            ev.POOLING_OPS: EventCost("pooling", self.scaled(self.pooling)[0]),
            ev.ADD: EventCost("tile_shift_add", sa),
            ev.COMPARE: EventCost("tile_shift_add", sa),
            # products of two activations at the chip's input bits, accumulated at twice that (the product's width)
            ev.MUL: EventCost("digital_mul", mul * horowitz),
            ev.MAC: EventCost("digital_mul", (mul + acc) * horowitz),
            ev.WEIGHT_READ: EventCost("edram", edram * self.weight_bits / 8),
            ev.ACT_READ: EventCost("edram", edram * self.input_bits / 8),
            ev.ACT_WRITE: EventCost("edram", edram * self.input_bits / 8),
        }

    MOVEMENT_EVENTS = frozenset({ev.INPUT_REGISTER_BYTES, ev.OUTPUT_REGISTER_BYTES, ev.EDRAM_BYTES, ev.BUS_BYTES,
                                 ev.LINK_BYTES, ev.ACTIVATION_OPS, ev.POOLING_OPS})

    def emitted_events(self, input_signed: bool = False) -> set[str]:
        spec = self.crossbar_spec(input_signed)
        return (crossbar_events(spec, offset=spec.signed == "offset") | set(PROFILE_EVENTS)
                | set(self.MOVEMENT_EVENTS) | self.readout_dataflow_events())

    def readout_dataflow_events(self) -> set[str]:
        """Events the readout's dataflow adds (e.g. sample-and-holds)."""
        return set()

    def dataflow_events(self, plan: LayerPlan, events: Mapping[str, float]) -> dict[str, float]:
        """A mapped layer's events plus its data movement: inputs read from eDRAM over the bus into the input
        register (``input_bits`` per input of every MVM: the layer's own when it has them, 1 for spikes),
        outputs through the output register back to eDRAM (16-bit values, ISAAC sec. 4)."""
        out = dict(events)
        in_bytes = plan.positions * plan.in_features * plan.groups * self.layer_input_bits(plan) / 8
        o_bytes = plan.positions * plan.out_features * OUTPUT_VALUE_BYTES
        for k, v in ((ev.INPUT_REGISTER_BYTES, in_bytes), (ev.OUTPUT_REGISTER_BYTES, o_bytes),
                     (ev.EDRAM_BYTES, in_bytes + o_bytes), (ev.BUS_BYTES, in_bytes + o_bytes)):
            out[k] = out.get(k, 0) + v
        return out

    def digital_events(self, layer: str, kind: str, events: Mapping[str, float]) -> dict[str, float]:
        """Comparisons of pooling layers (and functions) run on the pooling unit, of activations on the activation
        (sigmoid) unit, as does every transcendental evaluation (sigmoid, tanh, exp ...: the unit's look-up table,
        ISAAC sec. 4); residual adds on the adders."""
        out = dict(events)
        if ev.COMPARE in out and kind:
            out[ev.POOLING_OPS if "pool" in kind.lower() else ev.ACTIVATION_OPS] = out.pop(ev.COMPARE)
        if ev.NONLINEAR in out:
            out[ev.ACTIVATION_OPS] = out.get(ev.ACTIVATION_OPS, 0) + out.pop(ev.NONLINEAR)
        return out

    def copies(self, plans: Mapping[str, LayerPlan]) -> dict[str, int]:
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
        steps = {n: self.step_positions(p) for n, p in plans.items()}
        lo, hi = 1, max(steps.values())
        fits = lambda T: sum(math.ceil(steps[n] / T) * p.arrays for n, p in plans.items()) <= capacity  # noqa: E731
        while lo < hi:
            mid = (lo + hi) // 2
            if fits(mid):
                hi = mid
            else:
                lo = mid + 1
        return {n: max(1, math.ceil(steps[n] / lo)) for n, p in plans.items()}

    @staticmethod
    def step_positions(plan: LayerPlan) -> int:
        """MVMs of one time step (all of an inference's for a network without time steps). A spiking layer's
        steps run one after another (each needs the previous layer's spikes of that step), so copies of a
        layer share the positions of one step, never the steps."""
        return math.ceil(plan.positions / max(plan.time_steps, 1))

    def layer_input_bits(self, plan: LayerPlan) -> int:
        """Bits of a mapped layer's inputs: its own (1 for spikes) or the architecture's."""
        return plan.input_bits or self.input_bits

    def layer_cycles(self, plan: LayerPlan) -> int:
        """Input cycles of one matrix-vector product of a mapped layer (signed inputs: the sign bit a cycle of its
        own, :func:`cimsim.encoding.plane_layout`; with 1-bit DACs as many as unsigned ones)."""
        return input_cycles(self.layer_input_bits(plan), self.dac_bits, plan.input_signed, self.input_encoding)

    def mvm_time_s(self, plan: LayerPlan, events: Mapping[str, float]) -> float:
        """Time of one matrix-vector product of a mapped layer: its bit-serial cycles."""
        return self.layer_cycles(plan) * self.cycle_s

    # which digital unit performs an event (the rest run on the adders: adds, compares, multiplies, MACs); a digital
    # layer's units work in parallel, the events of one unit one after another
    DIGITAL_UNITS = {ev.ACTIVATION_OPS: "activation", ev.POOLING_OPS: "pooling", ev.LIF_UPDATES: "lif"}

    def unit_rates(self) -> dict[str, float]:
        """Operations per second of the chip's digital units, by the event they perform."""
        adders = (self.all_tiles + self.imas * 4) * self.tile_shift_add.op_rate_hz   # S+A: 1 per tile, 4 per IMA
        return {
            ev.ACTIVATION_OPS: 2 * self.all_tiles * self.activation.op_rate_hz,   # 2 sigmoid units per tile
            ev.POOLING_OPS: self.all_tiles * self.pooling.op_rate_hz,             # 1 max-pool unit per tile
            ev.ADD: adders, ev.COMPARE: adders,
            # (est.) one multiply per adder slot: 21 T/s on ISAAC's chip. ISAAC has no multipliers; PUMA, which adds
            # digital units to ISAAC-style tiles for work such as attention's products, gives each core (two
            # 128x128 matrix units) 4 ALUs at 1 GHz (Ankit et al., ASPLOS 2019; its simulator's num_ALU): at that
            # rate per ISAAC IMA, 8 T/s for the chip's 2,016: the same order, 2.6x fewer
            ev.MUL: adders, ev.MAC: adders,
        }

    def timing(self, ledger: EventLedger, plans: Mapping[str, LayerPlan], kinds: Mapping[str, str]) -> Timing:
        """A mapped layer streams its ``positions`` MVMs through its copies (time step after time step); a digital
        layer takes its operations over the chip's activation / pooling / adder units at their rates (the units in
        parallel, one unit's operations in turn). Layers are pipelined (ISAAC sec. 5):
        one inference takes the sum of the layer times, the chip starts one every slowest-layer time, or every
        :meth:`feed_time_s` if the tiles' buses and eDRAMs cannot move an inference's data faster. A
        layer occupies its copies' share of the chip's crossbars (and of the tiles around them)."""
        copies = self.copies(plans)
        unit_rate = self.unit_rates()
        latency, occupancy = {}, {}
        for n in ledger.layers():
            events = ledger.layer(n)
            if n in plans:
                p = plans[n]
                latency[n] = (max(p.time_steps, 1) * math.ceil(self.step_positions(p) / copies[n])
                              * self.mvm_time_s(p, events))
                occupancy[n] = copies[n] * plans[n].arrays / self.crossbars
            else:
                busy: dict[str, float] = {}    # seconds of each unit: the events one unit performs take turns
                for e, v in events.items():
                    if e in unit_rate:
                        unit = self.DIGITAL_UNITS.get(e, "adders")
                        busy[unit] = busy.get(unit, 0.0) + v / unit_rate[e]
                latency[n] = max(busy.values(), default=0.0)
        slowest = max(latency.values(), default=0.0)
        feed = self.feed_time_s(ledger)
        link = self.link_time_s(plans, copies)
        used = sum(copies[n] * plans[n].arrays for n in plans)
        return Timing(latency, max(slowest, feed, link), occupancy, copies,
                      {"crossbars_used": used, "crossbars_on_chip": self.crossbars,
                       "fits_on_chip": sum(p.arrays for p in plans.values()) <= self.crossbars,
                       "chips": self.chips, "chips_to_hold": multichip.chips_to_hold(plans, self.crossbars_per_chip),
                       "cycle_s": self.cycle_s, "slowest_layer_s": slowest, "feed_s": feed, "link_s": link})

    def cost(self, ledger: EventLedger, plans: Mapping[str, LayerPlan] | None = None,
             kinds: Mapping[str, str] | None = None):
        """One chip: :meth:`Architecture.cost`. Several: the chips run ``chips // g`` replicas of the network, each on
        a chain of ``g`` chips (``g`` from the fewest that hold one copy of every layer up to all of them; chips left
        over are idle), with the ``g`` of the highest throughput (the lowest energy among equals). An inference costs
        what it costs on its ``g`` chips; the throughput is the replicas' together; the area is every chip's (est.:
        whole replicas where the network fits, as ISAAC replicates layers within a chip, sec. 5)."""
        if self.chips == 1 or not plans:
            return super().cost(ledger, plans, kinds)
        need = multichip.chips_to_hold(plans, self.crossbars_per_chip)
        best = None
        for g in range(min(need, self.chips), self.chips + 1):
            c = Architecture.cost(self.with_params(chips=g), ledger, plans, kinds)
            key = ((self.chips // g) * c.throughput_inf_per_s, -c.energy_j)
            if best is None or key > best[0]:
                best = (key, g, c)
        (throughput, _), g, c = best
        c.throughput_inf_per_s, c.area_m2 = throughput, self.area_m2
        c.config.update({"chips": self.chips, "chips_per_replica": g, "replicas": self.chips // g})
        return c

    def link_traffic(self, plans: Mapping[str, LayerPlan],
                     copies: Mapping[str, int] | None = None) -> tuple[dict[str, float], list[tuple[float, float]]]:
        """(bytes each mapped layer sends over the chip-to-chip links, (forward, backward) bytes over each chip
        boundary) per inference
        (:func:`cimsim.arch.chips.link_traffic`); nothing on one chip."""
        if self.chips == 1 or not plans:
            return {}, []
        return multichip.link_traffic(plans, self.copies(plans) if copies is None else copies,
                                      self.crossbars_per_chip, self.chips, OUTPUT_VALUE_BYTES, self.input_bits)

    def system_events(self, plans: Mapping[str, LayerPlan]) -> dict[str, dict[str, float]]:
        """The bytes each mapped layer sends to other chips (``link_bytes``)."""
        return {n: {ev.LINK_BYTES: b} for n, b in self.link_traffic(plans)[0].items() if b}

    def link_time_s(self, plans: Mapping[str, LayerPlan], copies: Mapping[str, int] | None = None) -> float:
        """The shortest pipeline period the links allow: the busiest direction of the busiest chip boundary over one
        direction of one link (est.: a chain joins neighbours by one link)."""
        busiest = max((max(pair) for pair in self.link_traffic(plans, copies)[1]), default=0.0)
        return busiest / self.link.direction_bytes_per_s

    def feed_time_s(self, ledger: EventLedger) -> float:
        """The shortest pipeline period the tiles' data movement allows: one inference's bus bytes over every tile's
        bus at its rate, and its eDRAM accesses over every tile's eDRAM (an optimistic bound: the layers' traffic
        spread over all tiles). ISAAC's bus and eDRAM rates are what its own 100 ns pipeline needs (est.,
        :mod:`cimsim.devices.peripherals`), so a chip that cycles faster with ISAAC's tile can outrun them."""
        bus = sum(ledger.layer(n).get(ev.BUS_BYTES, 0) for n in ledger.layers())
        edram = sum(ledger.layer(n).get(ev.EDRAM_BYTES, 0) for n in ledger.layers())
        return max(bus / (self.all_tiles * self.bus.op_rate_hz), edram / (self.all_tiles * self.edram.op_rate_hz))
