"""Digital peripherals of a CiM accelerator: shift-and-add, sample-and-hold, registers, buffers,
interconnect, activation, pooling and the digital LIF neuron.

Every model is a frozen dataclass (fields declared with :func:`~cimsim.devices.base.param`) and
exposes the same five figures, in SI units:

* ``energy_per_op_j`` -- energy of one operation (the operation is named in each class docstring
  and in :attr:`Peripheral.op`; for registers, buffers, bus and router it is one byte);
* ``latency_s`` -- time one unit is occupied per operation (its initiation interval,
  ``1 / op_rate_hz``); pipelines overlap it with other stages, the architecture decides how;
* ``area_m2`` -- area of one unit;
* ``leakage_w`` -- static power of one unit;
* ``node_nm`` -- the technology node the numbers are for (no scaling happens here).

Defaults (32 nm) come from ISAAC's component table (Shafiee et al., ISCA 2016, Table 6;
docs/references.md#isaac). The table gives the power and area of a *group* of units at the
load ISAAC runs them at; each class here models *one* unit, so ``power_w`` and ``area_m2`` are the
table figure divided by the unit count, and the energy of one operation is derived, never typed in:

    energy_per_op_j = power_w / op_rate_hz

with ``op_rate_hz`` the operations per second one unit performs in ISAAC's pipeline. ISAAC's table
gives one power figure per component; we read it as the dynamic power at that rate and add
``leakage_fraction * power_w`` of static power on top (an estimate, marked (est.)).

The operation rates follow from ISAAC's dataflow (the ``ISAAC_*`` constants below):

* crossbar read cycle 100 ns; one ADC per 128x128 crossbar converts its 128 columns per cycle
  (1.28 G conversions/s); 8 crossbars per IMA, 12 IMAs per tile;
* 16-bit inputs streamed 1 bit per cycle, so one input vector takes 16 cycles = 1.6 us (the
  *window*); the 2 KB input register holds exactly one window of inputs (8 x 128 x 16 bit);
* 16-bit weights in 2-bit cells span 8 columns, so an IMA produces 8 x 128 / 8 = 128 16-bit
  outputs per window = 256 B, exactly its output register; a tile's 12 IMAs fill the 3 KB tile
  output register.

The LIF neuron is the digital unit of the ADC-less SNN paper (arXiv 2211.02167, 65 nm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cimsim.devices.base import param, validate_fields
from cimsim.errors import ConfigError

# --------------------------------------------------------------------------------------------------
# ISAAC's pipeline (Shafiee et al., ISCA 2016, sec. 4 and Table 6; docs/references.md#isaac), the basis of the
# operation rates
ISAAC_NODE_NM = 32
ISAAC_CYCLE_S = 100e-9                 # crossbar read cycle
ISAAC_XBAR_COLUMNS = 128               # 128x128 crossbars
ISAAC_XBAR_ROWS = 128
ISAAC_XBARS_PER_IMA = 8                # one ADC per crossbar
ISAAC_IMAS_PER_TILE = 12
ISAAC_TILES_PER_ROUTER = 4
ISAAC_INPUT_BITS = 16                  # streamed 1 bit per cycle (1-bit DACs)
ISAAC_CELLS_PER_WEIGHT = 8             # 16-bit weight / 2-bit cells
ISAAC_VALUE_BYTES = 2                  # 16-bit outputs
# conversions per second of one ADC: 128 columns per 100 ns cycle
ISAAC_ADC_RATE_HZ = ISAAC_XBAR_COLUMNS / ISAAC_CYCLE_S                                   # 1.28e9
# one input vector streams in 16 cycles
ISAAC_WINDOW_S = ISAAC_INPUT_BITS * ISAAC_CYCLE_S                                        # 1.6e-6
# input bytes one IMA consumes per window: 8 crossbars x 128 rows x 16 bit (= the 2 KB IR)
ISAAC_IMA_INPUT_BYTES = ISAAC_XBARS_PER_IMA * ISAAC_XBAR_ROWS * ISAAC_INPUT_BITS // 8    # 2048
# output bytes one IMA produces per window: 8 x 128 columns / 8 cells per weight x 2 B (= the 256 B OR)
ISAAC_IMA_OUTPUT_BYTES = (ISAAC_XBARS_PER_IMA * ISAAC_XBAR_COLUMNS // ISAAC_CELLS_PER_WEIGHT
                          * ISAAC_VALUE_BYTES)                                           # 256
# 16-bit output values a tile produces per second (upper bound: every IMA output is final)
ISAAC_TILE_OUTPUT_VALUES_HZ = (ISAAC_IMAS_PER_TILE * ISAAC_IMA_OUTPUT_BYTES // ISAAC_VALUE_BYTES
                               / ISAAC_WINDOW_S)                                         # 9.6e8

_ISAAC = "ISAAC (Shafiee et al., ISCA 2016) Table 6, 32 nm"
_ISAAC_NODE = "ISAAC (Shafiee et al., ISCA 2016): 32 nm process"
# Leakage: ISAAC gives one power number per component; we book it as dynamic and add this share.
_LEAK_FRACTION = 0.1
_LEAK_SOURCE = ("(est.) static power as a share of power_w: 32 nm logic leaks ~10-30% of active power; "
                "low end taken since ISAAC's figure is booked as dynamic")


class Peripheral:
    """Base of the digital peripheral models (each a frozen dataclass using ``param``)."""

    kind: ClassVar[str] = "peripheral"
    op: ClassVar[str] = "operation"      # what one operation is, for reports and ``cimsim devices``

    def __post_init__(self):
        validate_fields(self)
        self._check()

    def _check(self) -> None:
        """Cross-field checks of a subclass (raise ConfigError)."""

    @property
    def energy_per_op_j(self) -> float:
        raise NotImplementedError

    @property
    def latency_s(self) -> float:
        raise NotImplementedError

    @property
    def leakage_w(self) -> float:
        raise NotImplementedError


class RatedPeripheral(Peripheral):
    """A unit described by its power at a known operation rate: ``energy = power / rate``.

    Subclasses declare the fields ``power_w``, ``op_rate_hz``, ``area_m2``, ``leakage_fraction`` and
    ``node_nm``.
    """

    @property
    def energy_per_op_j(self) -> float:
        return self.power_w / self.op_rate_hz

    @property
    def latency_s(self) -> float:
        return 1.0 / self.op_rate_hz

    @property
    def leakage_w(self) -> float:
        return self.leakage_fraction * self.power_w


def _power(default: float, source: str):
    return param(default, "W", source, lo=0, lo_open=True, doc="dynamic power of one unit at op_rate_hz")


def _area(default: float, source: str):
    return param(default, "m^2", source, lo=0, lo_open=True, doc="area of one unit")


def _rate(default: float, source: str, doc: str = "operations per second of one unit"):
    return param(default, "1/s", source, lo=0, lo_open=True, doc=doc)


def _leak(default: float = _LEAK_FRACTION, source: str = _LEAK_SOURCE):
    return param(default, "1", source, lo=0, hi=1, doc="static power as a fraction of power_w")


def _node(default: float = ISAAC_NODE_NM, source: str = _ISAAC_NODE):
    return param(default, "nm", source, lo=0, lo_open=True, hi=1000,
                 doc="technology node the numbers are for")


# --------------------------------------------------------------------------------------------------
# Per-IMA units


@dataclass(frozen=True)
class ShiftAdd(RatedPeripheral):
    """Digital shift-and-add unit; one op = one shift-and-add of a partial sum into its accumulator."""

    kind: ClassVar[str] = "shift-add"
    op: ClassVar[str] = "shift-and-add of one partial sum"

    # ISAAC Table 6, per IMA: S+A x4, 0.2 mW -> 0.05 mW per unit (the tile-level S+A x1 is 0.05 mW too)
    power_w: float = _power(0.2e-3 / 4, f"{_ISAAC}: S+A x4 per IMA 0.2 mW, per unit 0.05 mW")
    # ISAAC Table 6, per IMA: S+A x4, 0.00024 mm^2 -> 0.00006 mm^2 per unit (= tile S+A x1)
    area_m2: float = _area(0.00024e-6 / 4, f"{_ISAAC}: S+A x4 per IMA 0.00024 mm^2, per unit 0.00006 mm^2")
    # ISAAC pipeline: 8 ADCs x 1.28 G conversions/s per IMA shared by 4 S+A units = 2.56 G ops/s each
    op_rate_hz: float = _rate(ISAAC_XBARS_PER_IMA * ISAAC_ADC_RATE_HZ / 4,
                              "ISAAC pipeline: 8 ADCs x 1.28 GS/s per IMA shared by 4 S+A = 2.56 G ops/s")
    leakage_fraction: float = _leak()   # (est.) see _LEAK_SOURCE
    node_nm: float = _node()            # ISAAC is a 32 nm design


@dataclass(frozen=True)
class SampleHold(RatedPeripheral):
    """Sample-and-hold on one crossbar column; one op = one sample (held for the ADC)."""

    kind: ClassVar[str] = "sample-hold"
    op: ClassVar[str] = "one sample of a column voltage"

    # ISAAC Table 6, per IMA: S+H 8x128, 10 uW -> 9.77 nW per unit
    power_w: float = _power(10e-6 / (8 * 128), f"{_ISAAC}: S+H 8x128 per IMA 10 uW, per unit 10 uW/1024")
    # ISAAC Table 6, per IMA: S+H 8x128, 0.00004 mm^2 -> 3.9e-14 m^2 per unit
    area_m2: float = _area(0.00004e-6 / (8 * 128), f"{_ISAAC}: S+H 8x128 per IMA 0.00004 mm^2, per unit /1024")
    # ISAAC pipeline: each S+H samples its column once per 100 ns crossbar read cycle = 10 M samples/s
    op_rate_hz: float = _rate(1.0 / ISAAC_CYCLE_S, "ISAAC pipeline: one sample per 100 ns crossbar cycle = 1e7/s")
    leakage_fraction: float = _leak()   # (est.) see _LEAK_SOURCE
    node_nm: float = _node()            # ISAAC is a 32 nm design


@dataclass(frozen=True)
class Register(RatedPeripheral):
    """Register file of ``bytes`` capacity; one op = one byte read or written (default: ISAAC's IMA input register)."""

    kind: ClassVar[str] = "register"
    op: ClassVar[str] = "one byte read or written"

    # ISAAC Table 6, per IMA: input register 2 KB (= one window of 8 x 128 16-bit inputs)
    bytes: int = param(2048, "B", f"{_ISAAC}: IR 2 KB per IMA", lo=1, doc="capacity")
    # ISAAC Table 6, per IMA: IR 2 KB, 1.24 mW
    power_w: float = _power(1.24e-3, f"{_ISAAC}: IR 2 KB per IMA 1.24 mW")
    # ISAAC Table 6, per IMA: IR 2 KB, 0.0021 mm^2
    area_m2: float = _area(0.0021e-6, f"{_ISAAC}: IR 2 KB per IMA 0.0021 mm^2")
    # (est.) per 1.6 us window the IR is written once with 2 KB from the eDRAM and read once by the
    # DACs (1 bit per row per cycle): 2 x 2048 B / 1.6 us = 2.56 G byte accesses/s
    op_rate_hz: float = _rate(2 * ISAAC_IMA_INPUT_BYTES / ISAAC_WINDOW_S,
                              "(est.) ISAAC dataflow: 2 KB written + 2 KB read per 16-cycle (1.6 us) window "
                              "= 2.56e9 B/s", doc="byte accesses per second")
    leakage_fraction: float = _leak()   # (est.) see _LEAK_SOURCE
    node_nm: float = _node()            # ISAAC is a 32 nm design

    def _check(self) -> None:
        if int(self.bytes) != self.bytes:
            raise ConfigError(f"{type(self).__name__}.bytes = {self.bytes!r} B must be a whole number of bytes")


@dataclass(frozen=True)
class OutputRegister(Register):
    """Register file holding an IMA's outputs; one op = one byte read or written (ISAAC's 256 B IMA output register)."""

    kind: ClassVar[str] = "output-register"

    # ISAAC Table 6, per IMA: output register 256 B (= 128 16-bit outputs per window)
    bytes: int = param(256, "B", f"{_ISAAC}: OR 256 B per IMA", lo=1, doc="capacity")
    # ISAAC Table 6, per IMA: OR 256 B, 0.23 mW
    power_w: float = _power(0.23e-3, f"{_ISAAC}: OR 256 B per IMA 0.23 mW")
    # ISAAC Table 6, per IMA: OR 256 B, 0.00077 mm^2
    area_m2: float = _area(0.00077e-6, f"{_ISAAC}: OR 256 B per IMA 0.00077 mm^2")
    # (est.) per window the OR is written once with the IMA's 256 B of results and read once to the
    # tile: 2 x 256 B / 1.6 us = 0.32 G byte accesses/s
    op_rate_hz: float = _rate(2 * ISAAC_IMA_OUTPUT_BYTES / ISAAC_WINDOW_S,
                              "(est.) ISAAC dataflow: 256 B written + 256 B read per 1.6 us window = 3.2e8 B/s",
                              doc="byte accesses per second")
    leakage_fraction: float = _leak()   # (est.) see _LEAK_SOURCE
    node_nm: float = _node()            # ISAAC is a 32 nm design


@dataclass(frozen=True)
class TileOutputRegister(Register):
    """Register file collecting a tile's outputs; one op = one byte read or written (ISAAC's 3 KB tile output register)."""

    kind: ClassVar[str] = "tile-output-register"

    # ISAAC Table 6, per tile: OR 3 KB (= 12 IMAs x 256 B)
    bytes: int = param(3072, "B", f"{_ISAAC}: tile OR 3 KB", lo=1, doc="capacity")
    # ISAAC Table 6, per tile: OR 3 KB, 1.68 mW
    power_w: float = _power(1.68e-3, f"{_ISAAC}: tile OR 3 KB 1.68 mW")
    # ISAAC Table 6, per tile: OR 3 KB, 0.0032 mm^2
    area_m2: float = _area(0.0032e-6, f"{_ISAAC}: tile OR 3 KB 0.0032 mm^2")
    # (est.) per window it is written with 12 x 256 B and read once: 2 x 3072 B / 1.6 us = 3.84 G B/s
    op_rate_hz: float = _rate(2 * ISAAC_IMAS_PER_TILE * ISAAC_IMA_OUTPUT_BYTES / ISAAC_WINDOW_S,
                              "(est.) ISAAC dataflow: 12 x 256 B written + read per 1.6 us window = 3.84e9 B/s",
                              doc="byte accesses per second")
    leakage_fraction: float = _leak()   # (est.) see _LEAK_SOURCE
    node_nm: float = _node()            # ISAAC is a 32 nm design


# --------------------------------------------------------------------------------------------------
# Per-tile units

# Bytes per second crossing the eDRAM <-> IMA bus of one tile: every IMA takes in its 2 KB of inputs and
# hands back its 256 B of outputs once per 1.6 us window (12 x 2304 B / 1.6 us = 17.28 GB/s).
ISAAC_TILE_BUS_BYTES_HZ = ISAAC_IMAS_PER_TILE * (ISAAC_IMA_INPUT_BYTES + ISAAC_IMA_OUTPUT_BYTES) / ISAAC_WINDOW_S


@dataclass(frozen=True)
class EDRAMBuffer(RatedPeripheral):
    """Embedded-DRAM buffer of ``bytes`` capacity; one op = one byte read or written (ISAAC's 64 KB tile buffer)."""

    kind: ClassVar[str] = "edram-buffer"
    op: ClassVar[str] = "one byte read or written"

    # ISAAC Table 6, per tile: eDRAM buffer 64 KB
    bytes: int = param(65536, "B", f"{_ISAAC}: eDRAM 64 KB per tile", lo=1, doc="capacity")
    # ISAAC Table 6, per tile: eDRAM 64 KB, 20.7 mW
    power_w: float = _power(20.7e-3, f"{_ISAAC}: eDRAM 64 KB per tile 20.7 mW")
    # ISAAC Table 6, per tile: eDRAM 64 KB, 0.083 mm^2
    area_m2: float = _area(0.083e-6, f"{_ISAAC}: eDRAM 64 KB per tile 0.083 mm^2")
    # (est.; the summary gives no bandwidth) the buffer serves the tile's bus traffic, and every byte is
    # both written and read once: inputs arrive from the router (write) and go to an IR (read); outputs
    # come from the OR (write) and leave to the router (read): 2 x 17.28 GB/s = 34.56 G byte accesses/s
    op_rate_hz: float = _rate(2 * ISAAC_TILE_BUS_BYTES_HZ,
                              "(est.) ISAAC dataflow: 12 IMAs x (2 KB in + 256 B out) per 1.6 us, each byte "
                              "written once and read once = 3.456e10 B/s", doc="byte accesses per second")
    # (est.) eDRAM refresh makes its static share at least that of logic; same 10% taken
    leakage_fraction: float = _leak(_LEAK_FRACTION, "(est.) static (leakage + refresh) share of power_w, "
                                    "taken as for logic: 0.1")
    node_nm: float = _node()            # ISAAC is a 32 nm design

    def _check(self) -> None:
        if int(self.bytes) != self.bytes:
            raise ConfigError(f"{type(self).__name__}.bytes = {self.bytes!r} B must be a whole number of bytes")


@dataclass(frozen=True)
class SRAMBuffer(Peripheral):
    """SRAM buffer of ``bytes`` capacity; one op = one byte read or written (Horowitz's 32 KB, 45 nm SRAM)."""

    kind: ClassVar[str] = "sram-buffer"
    op: ClassVar[str] = "one byte read or written"

    # ISAAC has no SRAM buffer; defaults are a 32 KB SRAM at 45 nm from Horowitz, "Computing's energy
    # problem", ISSCC 2014 (8 KB: 10 pJ, 32 KB: 20 pJ, 1 MB: 100 pJ per 64-bit access; recollection)
    bytes: int = param(32768, "B", "Horowitz ISSCC 2014 energy table: 32 KB SRAM (45 nm)", lo=1, doc="capacity")
    # Horowitz ISSCC 2014: 32 KB SRAM, 20 pJ per 64-bit access at 45 nm (recollection)
    energy_per_access_j: float = param(20e-12, "J", "Horowitz ISSCC 2014: 32 KB SRAM 20 pJ per 64-bit access, "
                                       "45 nm (recollection)", lo=0, lo_open=True, doc="energy of one access")
    # Horowitz ISSCC 2014: the 20 pJ figure is for a 64-bit (8 B) word
    access_bytes: int = param(8, "B", "Horowitz ISSCC 2014: 64-bit word per access", lo=1, doc="word width")
    # (est.) a 32 KB L1-class SRAM at 45 nm cycles at about 1 GHz
    cycle_time_s: float = param(1e-9, "s", "(est.) 32 KB L1-class SRAM at 45 nm runs at ~1 GHz",
                                lo=0, lo_open=True, doc="time between accesses")
    # (est.) 262144 bits x 0.346 um^2 (45 nm 6T cell, Intel 45 nm) / 0.7 array efficiency = 0.13 mm^2
    area_m2: float = _area(32768 * 8 * 0.346e-12 / 0.7, "(est.) 262144 bits x 0.346 um^2 (45 nm 6T cell) "
                           "/ 0.7 array efficiency")
    # (est.) ~50 pW of cell leakage per bit (50 pA at ~1 V, low-power 45 nm) x 262144 bits = 13 uW
    static_w: float = param(32768 * 8 * 50e-12, "W", "(est.) 50 pW per bit (low-power 45 nm 6T cell) "
                            "x 262144 bits", lo=0, doc="static power")
    node_nm: float = _node(45, "Horowitz ISSCC 2014: 45 nm")

    @property
    def energy_per_op_j(self) -> float:
        return self.energy_per_access_j / self.access_bytes

    @property
    def latency_s(self) -> float:
        return self.cycle_time_s / self.access_bytes

    @property
    def leakage_w(self) -> float:
        return self.static_w

    def _check(self) -> None:
        for name in ("bytes", "access_bytes"):
            v = getattr(self, name)
            if int(v) != v:
                raise ConfigError(f"SRAMBuffer.{name} = {v!r} B must be a whole number of bytes")
        if self.access_bytes > self.bytes:
            raise ConfigError(f"SRAMBuffer.access_bytes = {self.access_bytes} B exceeds its capacity "
                              f"bytes = {self.bytes} B")


@dataclass(frozen=True)
class Bus(RatedPeripheral):
    """Tile bus between the eDRAM buffer and the IMAs; one op = one byte moved."""

    kind: ClassVar[str] = "bus"
    op: ClassVar[str] = "one byte moved"

    # ISAAC Table 6, per tile: bus 7 mW
    power_w: float = _power(7e-3, f"{_ISAAC}: bus 7 mW per tile")
    # ISAAC Table 6, per tile: bus 0.090 mm^2
    area_m2: float = _area(0.090e-6, f"{_ISAAC}: bus 0.090 mm^2 per tile")
    # (est.; the summary gives no bus bandwidth) 12 IMAs x (2 KB in + 256 B out) per 1.6 us = 17.28 GB/s
    op_rate_hz: float = _rate(ISAAC_TILE_BUS_BYTES_HZ,
                              "(est.) ISAAC dataflow: 12 IMAs x (2048 + 256) B per 1.6 us window = 1.728e10 B/s",
                              doc="bytes moved per second")
    leakage_fraction: float = _leak()   # (est.) see _LEAK_SOURCE
    node_nm: float = _node()            # ISAAC is a 32 nm design


@dataclass(frozen=True)
class Router(RatedPeripheral):
    """On-chip network router shared by 4 tiles; one op = one byte routed."""

    kind: ClassVar[str] = "router"
    op: ClassVar[str] = "one byte routed"

    # ISAAC Table 6: router 42 mW, shared by 4 tiles (10.5 mW per tile); this is the whole router
    power_w: float = _power(42e-3, f"{_ISAAC}: router 42 mW, shared by 4 tiles")
    # ISAAC Table 6: router 0.151 mm^2, shared by 4 tiles; the whole router
    area_m2: float = _area(0.151e-6, f"{_ISAAC}: router 0.151 mm^2, shared by 4 tiles")
    # (est.; the summary gives no router bandwidth) each of its 4 tiles injects its outputs (12 x 256 B
    # per 1.6 us = 1.92 GB/s) once, one hop assumed: 4 x 1.92 GB/s = 7.68 G bytes routed/s
    op_rate_hz: float = _rate(ISAAC_TILES_PER_ROUTER * ISAAC_IMAS_PER_TILE * ISAAC_IMA_OUTPUT_BYTES / ISAAC_WINDOW_S,
                              "(est.) ISAAC dataflow: 4 tiles x 12 IMAs x 256 B per 1.6 us, one hop = 7.68e9 B/s",
                              doc="bytes routed per second")
    leakage_fraction: float = _leak()   # (est.) see _LEAK_SOURCE
    node_nm: float = _node()            # ISAAC is a 32 nm design


@dataclass(frozen=True)
class ActivationUnit(RatedPeripheral):
    """Digital activation unit; one op = one sigmoid (or ReLU) evaluation of a 16-bit value (ISAAC's sigmoid)."""

    kind: ClassVar[str] = "activation"
    op: ClassVar[str] = "one activation-function evaluation"

    # ISAAC Table 6, per tile: sigmoid x2, 0.52 mW -> 0.26 mW per unit
    power_w: float = _power(0.52e-3 / 2, f"{_ISAAC}: sigmoid x2 per tile 0.52 mW, per unit 0.26 mW")
    # ISAAC Table 6, per tile: sigmoid x2, 0.0006 mm^2 -> 0.0003 mm^2 per unit
    area_m2: float = _area(0.0006e-6 / 2, f"{_ISAAC}: sigmoid x2 per tile 0.0006 mm^2, per unit 0.0003 mm^2")
    # (est.) the tile's 12 x 128 16-bit outputs per 1.6 us (9.6e8 values/s, upper bound: every IMA output
    # final) shared by 2 units = 4.8e8 evaluations/s each. A ReLU costs less; same figure used (est.)
    op_rate_hz: float = _rate(ISAAC_TILE_OUTPUT_VALUES_HZ / 2,
                              "(est.) ISAAC dataflow: 12 IMAs x 128 outputs per 1.6 us over 2 units = 4.8e8/s")
    leakage_fraction: float = _leak()   # (est.) see _LEAK_SOURCE
    node_nm: float = _node()            # ISAAC is a 32 nm design


@dataclass(frozen=True)
class PoolingUnit(RatedPeripheral):
    """Digital max-pool unit; one op = one comparison (one value into a pooling window)."""

    kind: ClassVar[str] = "pooling"
    op: ClassVar[str] = "one max-pool comparison"

    # ISAAC Table 6, per tile: max-pool x1, 0.4 mW
    power_w: float = _power(0.4e-3, f"{_ISAAC}: max-pool per tile 0.4 mW")
    # ISAAC Table 6, per tile: max-pool x1, 0.00024 mm^2
    area_m2: float = _area(0.00024e-6, f"{_ISAAC}: max-pool per tile 0.00024 mm^2")
    # (est.) one comparison per tile output value: 12 x 128 per 1.6 us = 9.6e8 comparisons/s
    op_rate_hz: float = _rate(ISAAC_TILE_OUTPUT_VALUES_HZ,
                              "(est.) ISAAC dataflow: one comparison per tile output, 12 x 128 per 1.6 us = 9.6e8/s")
    leakage_fraction: float = _leak()   # (est.) see _LEAK_SOURCE
    node_nm: float = _node()            # ISAAC is a 32 nm design


# --------------------------------------------------------------------------------------------------
# Per-chip units

# (est.) HyperTransport 2.0 links as DaDianNao (Chen et al., MICRO 2014) uses them and ISAAC costs them: 16 lanes,
# 6.4 GB/s in each direction (recalled from DaDianNao; the text is not available offline)
HT_BYTES_PER_DIRECTION_HZ = 6.4e9


@dataclass(frozen=True)
class HyperTransportLink(RatedPeripheral):
    """Chip-to-chip link (HyperTransport); one op = one byte sent, either direction."""

    # energy_per_op_j = power_w / op_rate_hz: ISAAC's power for one link over the bytes it moves with both directions
    # busy (about 0.2 nJ a byte, 25 pJ a bit: off-chip SerDes links of that time). A chain of chips sends a layer's
    # outputs one way, so one direction's bandwidth (op_rate_hz / 2) bounds the traffic over one chip boundary.

    kind: ClassVar[str] = "hyper-transport"
    op: ClassVar[str] = "one byte sent"

    # ISAAC Table 6: HyperTransport links 10.4 W per chip, 4 links (DaDianNao's); this is one link
    power_w: float = _power(10.4 / 4, f"{_ISAAC}: HyperTransport 10.4 W per chip, 4 links")
    # ISAAC Table 6: 22.88 mm^2 per chip, 4 links
    area_m2: float = _area(22.88e-6 / 4, f"{_ISAAC}: HyperTransport 22.88 mm^2 per chip, 4 links")
    op_rate_hz: float = _rate(2 * HT_BYTES_PER_DIRECTION_HZ,
                              "(est.) HyperTransport 2.0 as in DaDianNao (MICRO 2014, recalled): 6.4 GB/s per "
                              "direction, both directions", doc="bytes sent per second, both directions together")
    # (est.) a link's power is booked per byte sent: an idle link draws nothing (a one-chip system never uses its
    # links, and HyperTransport's link power management idles unused ones), so a one-chip run keeps its numbers
    leakage_fraction: float = _leak(0.0, "(est.) booked per byte sent: idle links power down (HyperTransport "
                                    "link power management)")
    node_nm: float = _node()            # ISAAC is a 32 nm design

    @property
    def direction_bytes_per_s(self) -> float:
        """Bytes per second one way: what bounds a chain's traffic over one chip boundary."""
        return self.op_rate_hz / 2


# --------------------------------------------------------------------------------------------------
# Spiking neuron

_SNN = "ADC-less SNN IMC (arXiv 2211.02167), digital LIF unit, 65 nm"


@dataclass(frozen=True)
class LIFNeuron(Peripheral):
    """Digital leaky-integrate-and-fire unit; one op = one neuron update per time step."""

    kind: ClassVar[str] = "lif-neuron"
    op: ClassVar[str] = "one neuron update (one time step)"

    # ADC-less SNN paper (arXiv 2211.02167): digital LIF unit 1.20 mW dynamic at 65 nm
    power_w: float = param(1.20e-3, "W", f"{_SNN}: 1.20 mW dynamic", lo=0, lo_open=True,
                           doc="dynamic power while updating")
    # ADC-less SNN paper: 5 ns per update
    update_time_s: float = param(5e-9, "s", f"{_SNN}: 5 ns", lo=0, lo_open=True, doc="time of one update")
    # ADC-less SNN paper: 1448 um^2
    area_m2: float = _area(1448e-12, f"{_SNN}: 1448 um^2")
    # (est.) the paper states dynamic power only; 65 nm logic leaks a few % of active power: 5%
    leakage_fraction: float = _leak(0.05, "(est.) the paper gives dynamic power only; 65 nm logic leaks a few % "
                                    "of active power: 0.05")
    node_nm: float = _node(65, f"{_SNN}: 65 nm evaluation")

    @property
    def op_rate_hz(self) -> float:
        return 1.0 / self.update_time_s

    @property
    def energy_per_op_j(self) -> float:
        return self.power_w * self.update_time_s

    @property
    def latency_s(self) -> float:
        return self.update_time_s

    @property
    def leakage_w(self) -> float:
        return self.leakage_fraction * self.power_w


#: Every peripheral model, for ``cimsim devices``.
PERIPHERALS: tuple[type[Peripheral], ...] = (
    ShiftAdd, SampleHold, Register, OutputRegister, TileOutputRegister, SRAMBuffer, EDRAMBuffer, Bus,
    Router, ActivationUnit, PoolingUnit, HyperTransportLink, LIFNeuron,
)

__all__ = ["Peripheral", "RatedPeripheral", "PERIPHERALS", *(c.__name__ for c in PERIPHERALS)]
