"""CASCADE (Chou, Tang, Botimer, Zhang, MICRO 2019): analog partial-sum buffering in RRAM, fewer conversions.

Dataflow. Every column pair of a MAC array (G+ and G- bit lines: 32 TIAs per 64 columns) is read by a
transimpedance amplifier (TIA,
:class:`cimsim.devices.analog_accumulators.TransimpedanceAmplifier`) whose output, resolved to
``tia.resolution_bits`` (6 bits in the paper), is written into a small buffer RRAM array
(:class:`~cimsim.devices.analog_accumulators.BufferArray`). The buffered partial sums of the arrays that
share an output column (R-Mapping: the row blocks of a layer) and of ``cycles_per_conversion`` successive input
cycles are summed when the buffer is read (place values applied by the read voltages), and the analog summing
amplifiers sum the weight's bit pairs (slices) with their place values, low-order groups carried into the
high-order one (``slices_per_conversion``; 0: all slices of a weight, one value per output), so one ADC conversion
covers a whole weight's product over a group of cycles; the digital side shifts and adds the cycle groups. The
engine simulates it exactly at the conversion scope ``ConversionScope(cycles_per_conversion, "sum",
slices_per_conversion)`` (:mod:`cimsim.readouts`); the buffered values' errors go through the engine as Gaussian noise
on the analog sum before the conversion (:class:`~cimsim.devices.analog_accumulators.BufferedADC`: ``analog_sigma``
from :meth:`Cascade.buffered_sigma`, ``relative_sigma`` from ``buffer.write_sigma_frac``, each slice's value with its
place value squared). A 6-bit TIA on a 64-level bit line resolves every integer level, so its quantization is exact;
what remains is its thermal noise (0.04 level: ISAAC's cell read for 10 ns, 0.14 uA per level) and the buffer
write's error, 5.6 % of each value written (CASCADE's ~25 dB SNR, read per value: 10**(-25/20); a zero is written
exactly, est.; read as the compute SNR of each slice's lines or against their mean square instead, the same 25 dB
costs LeNet-5 the same 1.3-1.5 points, against the converted sums' spread 2.2, BENCHMARKS.md npim8). The summing
amplifiers add no noise and no cost of their own here (est.: the summary gives neither).

Cycle: the array reads in 10 ns (:data:`cimsim.arch.tiled.ARRAY_READ_S`; its cells and DACs draw ISAAC Table 6's power for
those 10 ns, a tenth of an ISAAC read's energy), the TIAs settle in 10 ns and each
cycle's values are written into a buffer row in one 20 ns pulse (est.), which sets the cycle; the 7 ADCs a block
shares run at the rate the conversions need at that cycle.

Organisation (CASCADE (MICRO 2019, as summarised, est.; docs/references.md#cascade); (est.) where marked): 64x64 MAC
arrays, 1-bit cells, 1 input bit per cycle, 16-bit weights (differential, est.: 32 TIAs per 64 columns; a second
summary of the paper has a 16-bit weight in 16 cells of a row, 256 weights per array, and an encoding that saves
one bit of the bit line: not modelled, BENCHMARKS.md npim8), 65 nm; 80 blocks of 80 arrays (here 80 tiles x 10 IMAs
x 8 arrays), 32 TIAs per array and one 15x30 buffer array per MAC array; 7 shared ADCs per block of 80 arrays (the
first summary's "7 shared ADCs per array"; the second's design point "80 arrays, 32 TIAs per array, 7 central ADCs"
reads per block; per array they are 39 % of the chip, far from CASCADE's ~101 GOPS/s/mm^2, BENCHMARKS.md npim6);
about 10 conversions per output per 16 input cycles (here 8: a whole weight per conversion, two cycles per
conversion).
The tile around the arrays (eDRAM, bus, router, registers, activation, pooling) is ISAAC's, scaled to 65 nm
(est.: the comparison isolates the readout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping

from cimsim import events as ev
from cimsim.arch.base import Component, register
from cimsim.arch.params import component, param
from cimsim.arch.isaac import ADC_AREA_FACTOR, ADC_ENERGY_FACTOR
from cimsim.arch.tiled import ARRAY_READ_S, DifferentialColumns, fast_reram, T6, TiledChip
from cimsim.devices.cell import MemoryCell
from cimsim.cost import EventCost, LayerPlan
from cimsim.devices.analog_accumulators import BufferArray, BufferedADC, TransimpedanceAmplifier
from cimsim.readouts import ConversionScope
from cimsim.spec import CrossbarSpec

CAS = "CASCADE (MICRO 2019, as summarised, est.; docs/references.md#cascade)"


def _cascade_adc() -> BufferedADC:
    return BufferedADC(bits=8, node_nm=65)


# (est.) growth of a SAR ADC's area per added bit where its energy follows the Schreier frontier (x4 per bit): the
# survey's area fit (CiMLoop / Accelergy ADC plug-in, docs/references.md#cimloop) has exp(-0.134) per bit and
# energy**0.424, so exp(-0.134 + 0.424 ln 4) = 1.57 per bit
SAR_AREA_GROWTH_PER_BIT = 1.565


@register
@dataclass(frozen=True)
class Cascade(DifferentialColumns, TiledChip):
    """CASCADE: MAC arrays read by TIAs into buffer RRAM arrays; one ADC conversion per buffered group."""

    tiles: int = param(80, "1", f"{CAS}: 80 blocks of 80 arrays", lo=1, hi=100_000)
    imas_per_tile: int = param(10, "1", f"(est.) {CAS}: a block's 80 arrays as 10 groups of 8", lo=1, hi=1024)
    xbars_per_ima: int = param(8, "1", f"(est.) {CAS}: a block's 80 arrays as 10 groups of 8", lo=1, hi=1024)
    rows: int = param(64, "1", f"{CAS}: 64x64 MAC arrays", lo=2, hi=4096)
    cols: int = param(64, "1", f"{CAS}: 64x64 MAC arrays", lo=2, hi=4096)
    cell_bits: int = param(1, "bit", f"{CAS}: 1-bit cells", lo=1, hi=8)
    weight_bits: int = param(16, "bit", f"{CAS}: 16-bit weights", lo=2, hi=32)
    input_bits: int = param(16, "bit", f"{CAS}: 16 input cycles of 1 bit", lo=1, hi=32)
    node_nm: float = param(65, "nm", f"{CAS}: 65 nm", lo=7, hi=180)
    read_cycle_s: float = param(ARRAY_READ_S, "s", "the array's read, 10 ns: the cell model's read pulse (est.: "
                                "arch/tiled.py ARRAY_READ_S); the TIAs and the buffer writes may set a longer cycle",
                                lo=1e-12, hi=1.0)
    cell: MemoryCell = component(fast_reram, "ISAAC's ReRAM cell (R_on from Table 6's power during its 100 ns "
                                 "read) read for the cell model's 10 ns pulse (est.): a tenth of ISAAC's energy per read")
    cycles_per_conversion: int = param(2, "1", f"{CAS}: about 10 conversions per output per 16 input cycles (here "
                                       "16 / 2 = 8)", lo=1, hi=32)
    slices_per_conversion: int = param(0, "1", f"{CAS}: low-order groups summed by analog summing amplifiers and "
                                       "carried into the high-order group: a weight's bit pairs summed with their "
                                       "place values before a conversion (0: all of them, one value per output; est.)",
                                       lo=0, hi=32)
    adc: BufferedADC = component(_cascade_adc, f"{CAS}: 6-10-bit ADCs shared by the columns (8 bits, est.), SAR model "
                                 "at the rate the shared ADCs need")
    adc_range: str = param("calibrated", "", "our choice: ranges from calibration batches ('full': the worst case, "
                           "lossless with enough bits)", choices=("calibrated", "full"))
    adcs_per_block: int = param(7, "1", f"{CAS}: 7 shared ADCs per block of 80 arrays (a tile here): a second "
                                "summary's design point, 80 arrays with 32 TIAs each and 7 central ADCs (the first "
                                "says per array; est.)", lo=1, hi=4096)
    adc_energy_factor: float = param(ADC_ENERGY_FACTOR, "1", f"ISAAC's converter over the SAR model ({T6}), kept "
                                     "for every ADC of the comparison (est.)", lo=1e-3, hi=1e3)
    adc_area_factor: float = param(ADC_AREA_FACTOR, "1", f"ISAAC's converter area over the SAR model's ({T6}), kept "
                                   "for every ADC of the comparison (est.)", lo=1e-3, hi=1e3)
    tia: TransimpedanceAmplifier = component(TransimpedanceAmplifier, f"{CAS}: TIAs on the bit lines, 6-bit")
    tias_per_array: int = param(32, "1", f"{CAS}: 32 TIAs per array", lo=1, hi=4096)
    buffer: BufferArray = component(BufferArray, f"{CAS}: buffer RRAM arrays of about 15x30 cells")

    name = "cascade"
    description = ("CASCADE (MICRO 2019): TIAs buffer bit-line partial sums in RRAM buffer arrays, summed over "
                   "cycles and arrays before one conversion; 64x64 arrays, 1-bit cells, 16-bit weights, 65 nm")
    aliases = {**TiledChip.aliases, "adc_bits": "adc.bits"}
    renamed = {**TiledChip.renamed, "adcs_per_array": "adcs_per_block"}   # 7cdf6e5: 7 ADCs per block of 80 arrays
    derived = {**TiledChip.derived, "adc.node_nm": "node_nm", "tia.node_nm": "node_nm", "buffer.node_nm": "node_nm",
               "adc.sample_rate_hz": "cols, weight_bits, cycles_per_conversion, slices_per_conversion, the arrays "
                                     "of a tile, adcs_per_block and cycle_s",
               "adc.analog_sigma": "tia.*, buffer.write_sigma_levels, cell, rows, cell_bits, dac_bits, "
                                   "cycles_per_conversion and slices_per_conversion",
               "adc.relative_sigma": "buffer.write_sigma_frac"}
    # the cell's read voltage sets the TIA's thermal noise here (level_current_a), so it is not cost-only
    cost_only = (*(p for p in TiledChip.cost_only if p != "cell.read_voltage_v"), "adc_energy_factor",
                 "adc_area_factor", "adcs_per_block", "tias_per_array", "tia.bias_current_a", "tia.area_um2",
                 "buffer.rows", "buffer.cols", "buffer.write_voltage_v", "buffer.write_current_a",
                 "buffer.write_pulse_s", "buffer.read_energy_j")

    def synced_components(self) -> dict:
        return {**super().synced_components(),
                "adc": replace(self.adc, node_nm=self.node_nm, analog_sigma=self.buffered_sigma(),
                               relative_sigma=self.buffer.write_sigma_frac,
                               sample_rate_hz=self.conversions_per_cycle * self.arrays_per_block
                               / self.adcs_per_block / self.cycle_s),
                "tia": replace(self.tia, node_nm=self.node_nm), "buffer": replace(self.buffer, node_nm=self.node_nm)}

    def full_scale_levels(self) -> int:
        """A bit line's integer range: ``rows * (2**cell_bits - 1) * (2**dac_bits - 1)`` levels (64 in the paper)."""
        return self.rows * (2 ** self.cell_bits - 1) * (2 ** self.dac_bits - 1)

    def level_current_a(self) -> float:
        """The bit-line current of one level: one cell step at one input step."""
        g = self.cell.level_conductances(self.cell_bits)
        return float(g[1] - g[0]) * self.cell.read_voltage_v / (2 ** self.dac_bits - 1)

    def value_sigma_levels(self) -> float:
        """Error (standard deviation, levels) of one buffered bit-line value: the TIA's resolution (0 when it
        resolves every level), its thermal noise and the buffer write, independent."""
        fs = self.full_scale_levels()
        return math.sqrt(self.tia.quantization_levels(fs) ** 2
                         + self.tia.thermal_noise_levels(fs, self.level_current_a()) ** 2
                         + self.buffer.write_sigma_levels ** 2)

    def buffered_sigma(self) -> float:
        """Noise of one conversion's analog sum (level units): each buffered value carries
        :meth:`value_sigma_levels` on both lines of a pair (their difference), summed over the group's cycles with
        place values ``2**k`` and over the group's slices with theirs, ``2**(j cell_bits)``; one row block's (the
        engine multiplies it by sqrt(blocks) for a sum over row blocks). A full group's: exact where every group is
        full (CASCADE's defaults: one group of all slices, 2-cycle groups of an even number of cycles), an
        overestimate for a smaller last group (est.)."""
        k = min(self.cycles_per_conversion, self.input_cycles)
        j = min(self.slices_per_conversion or self.magnitude_slices, self.magnitude_slices)
        return math.sqrt(2 * sum(4 ** i for i in range(k)) * sum(4 ** (i * self.cell_bits) for i in range(j))) \
            * self.value_sigma_levels()

    # ------------------------------------------------------------------ structure
    @property
    def pairs(self) -> int:
        return self.cols // 2

    @property
    def scope(self) -> ConversionScope:
        return ConversionScope(self.cycles_per_conversion, "sum", self.slices_per_conversion)

    @property
    def slice_groups(self) -> int:
        """Conversions per output and group of cycles: the weight's slice pairs in groups of
        ``slices_per_conversion`` (one group for 0)."""
        return len(self.scope.slice_groups(self.magnitude_slices))

    @property
    def arrays_per_block(self) -> int:
        """MAC arrays sharing a block's ADCs: a tile's."""
        return self.imas_per_tile * self.xbars_per_ima

    @property
    def conversions_per_cycle(self) -> float:
        """Conversions per input cycle for one array's outputs, at most (its column pairs hold ``pairs /
        magnitude_slices`` weights, each converted once per slice group and group of cycles; fewer where row
        blocks are summed, one conversion then serving the outputs of several arrays)."""
        return (self.pairs / self.magnitude_slices * self.slice_groups
                / min(self.cycles_per_conversion, self.input_cycles))

    def readout_cycle_s(self) -> float:
        """The TIAs settle their pairs, and each cycle's values are written into a row of the buffer array (one
        write pulse; the write of a cycle overlaps the next read). The shared ADCs run at the rate the
        conversions need at that cycle (``adc.sample_rate_hz``), so they never set it."""
        return max(math.ceil(self.pairs / self.tias_per_array) * self.tia.latency_s, self.buffer.latency_s)

    # ------------------------------------------------------------------ inventory
    def adc_energy_j(self) -> float:
        """The SAR model at CASCADE's bits, rate and node, calibrated as ISAAC's converter."""
        return self.adc_energy_factor * self.adc.energy_j

    def adc_area_m2(self) -> float:
        """The SAR model's area at 8 bits, CASCADE's rate and node, calibrated as ISAAC's converter, moved to the
        ADC's bits by ``SAR_AREA_GROWTH_PER_BIT`` (est.: the survey's area fit is not monotonic in bits at low
        rates, where the energy floor of the comparator decisions takes over)."""
        at8 = replace(self.adc, bits=8)
        return self.adc_area_factor * at8.area_m2 * SAR_AREA_GROWTH_PER_BIT ** (int(self.adc.bits) - 8)

    def inventory(self) -> tuple[Component, ...]:
        n = self.xbars_per_ima
        rate = 1.0 / self.cycle_s
        adcs, tias = self.adcs_per_block, n * self.tias_per_array
        return (
            Component(f"ADC ({int(self.adc.bits)}-bit, shared by a block)", "adc", "tile", adcs,
                      self.arrays_per_block * self.conversions_per_cycle * rate * self.adc_energy_j(),
                      adcs * self.adc_area_m2(),
                      f"SarADC model ({int(self.adc.bits)} bits, {self.adc.sample_rate_hz:.3g} S/s, "
                      f"{self.node_nm:g} nm) calibrated as ISAAC's; {CAS}: 7 per block (est.)", macro=True),
            Component("TIA (one per column pair)", "tia", "ima", tias, n * self.pairs * rate * self.tia.energy_j,
                      tias * self.tia.area_m2, f"TransimpedanceAmplifier model; {CAS}: 32 per array", macro=True),
            Component(f"buffer array {self.buffer.rows}x{self.buffer.cols}", "buffer", "ima", n,
                      n * self.pairs * rate * self.buffer.energy_j, n * self.buffer.area_m2,
                      f"BufferArray model; {CAS}: one per MAC array (est.)", macro=True),
            *self.array_and_tile_rows())

    # ------------------------------------------------------------------ simulation (used by the mapper)
    def crossbar_spec(self, input_signed: bool = False) -> CrossbarSpec:
        """The MAC arrays' column pairs summed in the buffers over ``cycles_per_conversion`` cycles and all row blocks,
        and over a weight's slices in groups of ``slices_per_conversion`` (0: all) by the summing amplifiers."""
        return self.pair_crossbar_spec(input_signed, self.scope)

    def event_costs(self) -> dict[str, EventCost]:
        """Each column pair's value of each cycle and array (an ``analog_accumulations`` count) is a TIA conversion,
        a buffer write and a buffer read (:meth:`dataflow_events`); each group of cycles and slices is converted
        once; the groups are shifted and added digitally."""
        sa = self.scaled(self.tile_shift_add)[0]
        return {
            **self.tile_event_costs(),
            ev.conversion(self.adc.kind, int(self.adc.bits)): EventCost("adc", self.adc_energy_j()),
            ev.CLIPPED_CONVERSIONS: EventCost("adc", 0.0),
            ev.ANALOG_ACCUMULATIONS: EventCost("tia", 0.0),     # counted as the three events below
            ev.TIA_CONVERSIONS: EventCost("tia", self.tia.energy_j),
            ev.BUFFER_WRITES: EventCost("buffer", self.buffer.write_energy_j),
            ev.BUFFER_READS: EventCost("buffer", self.buffer.read_energy_j),
            ev.SHIFT_ADDS: EventCost("shift_add", sa),
        }

    def readout_dataflow_events(self) -> set[str]:
        return {ev.TIA_CONVERSIONS, ev.BUFFER_WRITES, ev.BUFFER_READS}

    def dataflow_events(self, plan: LayerPlan, events: Mapping[str, float]) -> dict[str, float]:
        """The tile's data movement (:meth:`TiledChip.dataflow_events`) plus, for every value accumulated in analog,
        one TIA conversion, one buffer write and one buffer read."""
        out = super().dataflow_events(plan, events)
        n = events.get(ev.ANALOG_ACCUMULATIONS, 0)
        for e in (ev.TIA_CONVERSIONS, ev.BUFFER_WRITES, ev.BUFFER_READS):
            out[e] = out.get(e, 0) + n
        return out
