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

