"""Neural-PIM (Cao et al., IEEE Trans. Computers 71(9), 2022; arXiv 2201.12861): analog shift-and-add over the
input bit cycles, one conversion per matrix-vector product.

Dataflow (the paper's sec. 2 taxonomy): ISAAC quantizes every bit line of every input cycle and shifts and
adds digitally; Neural-PIM keeps the column values of the input cycles analog, adds them with their place
values in a neural shift-and-add circuit (NNS+A, :class:`cimsim.devices.analog_accumulators.NeuralShiftAdd`)
and quantizes the result once with a neural ADC (NNADC, :class:`~cimsim.devices.analog_accumulators.NeuralADC`).
Positive and negative weights sit in adjacent columns; the NNS+A's signed weights take the pair's
difference, so one conversion covers a column pair (``pair_readout``). The engine simulates this exactly at
the ``PER_MVM`` conversion scope (:mod:`cimsim.readouts`): with ideal devices and a lossless readout the tile
gives the integer product; otherwise the whole MVM's value, with the trained NNS+A's error over the input
cycles added (:func:`cimsim.neural_circuits.nnsa_error_fs`), goes through the trained NNADC's transfer
(:func:`cimsim.neural_circuits.nnadc_table`).

Organisation: 8-bit weights in 1-bit cells (7 magnitude slices, G+ and G- columns), 128x128 arrays, 1-bit
inputs per cycle, 32 nm, 280 tiles; the tile around the arrays (IMAs, eDRAM, bus, router, registers,
activation and pooling units) is ISAAC's (est.: the paper re-implements its baselines with ISAAC-style
tiles). One NNS+A per column pair, one NNADC per crossbar (a conversion per pair per MVM: 64 conversions in 8
cycles). Nothing converts every column every cycle, so the cycle is the array's 10 ns read (``read_cycle_s``,
:data:`cimsim.arch.tiled.ARRAY_READ_S`), which the NNADC (8 ns a cycle) and the NNS+A (1 ns) keep up with. Its cells and
DACs draw ISAAC Table 6's power for that read: a tenth of the energy of ISAAC's 100 ns read (sec. 4) per array and row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from cimsim import events as ev
from cimsim.arch.base import Component, register
from cimsim.arch.params import component, param
from cimsim.arch.tiled import ARRAY_READ_S, DifferentialColumns, fast_reram, TiledChip
from cimsim.devices.cell import MemoryCell
from cimsim.cost import EventCost
from cimsim.devices.analog_accumulators import NeuralADC, NeuralShiftAdd
from cimsim.readouts import PER_MVM
from cimsim.spec import CrossbarSpec

NPIM = "Neural-PIM (Cao et al., arXiv 2201.12861; docs/references.md#neural-pim)"
PAPER_ADC_BITS = 8   # Neural-PIM: 8-bit NNADC outputs


@register
@dataclass(frozen=True)
class NeuralPim(DifferentialColumns, TiledChip):
    """Neural-PIM: ISAAC-style tiles whose crossbar columns are shift-added in analog (NNS+A) and converted
    once per MVM (NNADC)."""

    tiles: int = param(280, "1", f"{NPIM}: 280 tiles", lo=1, hi=100_000)
    cell_bits: int = param(1, "bit", f"{NPIM}: 1-bit cells", lo=1, hi=8)
    weight_bits: int = param(8, "bit", f"{NPIM}: 8-bit weights", lo=2, hi=32)
    input_bits: int = param(8, "bit", f"{NPIM}: 8-bit inputs, streamed bit-serially", lo=1, hi=32)
    read_cycle_s: float = param(ARRAY_READ_S, "s", "the array's read, 10 ns: the cell model's read pulse (est.: "
                                "arch/tiled.py ARRAY_READ_S); the NNADC and NNS+A keep up (readout_cycle_s)",
                                lo=1e-12, hi=1.0)
    cell: MemoryCell = component(fast_reram, "ISAAC's ReRAM cell (R_on from Table 6's power during its 100 ns "
                                 "read) read for the cell model's 10 ns pulse (est.): a tenth of ISAAC's energy per read")
    adc: NeuralADC = component(NeuralADC, f"{NPIM}: NNADC, a small RRAM/inverter network, 8-bit outputs")
    nns_a: NeuralShiftAdd = component(NeuralShiftAdd, f"{NPIM}: NNS+A, analog shift-and-add over the input cycles")
    adc_range: str = param("calibrated", "", "our choice: ranges from calibration batches ('full': the worst case, "
                           "lossless with enough bits)", choices=("calibrated", "full"))
    pairs_per_adc: int = param(64, "1", "(est.) one NNADC per 128-column crossbar (64 column pairs)", lo=1,
                               hi=4096)
    # Neural-PIM states the arrays' share of each design's area in its equal-area comparison: 0.68 % ISAAC (ours,
    # from Table 6: 0.65 % of a tile), 0.76 % CASCADE, 0.71 % Neural-PIM. Its NNADC and NNS+A sizes are not given, and
    # ours (cell and inverter counts at minimum size, est.) leave the arrays 1.0 % of a tile: the paper's neural
    # circuits are larger than our counts make them. The difference is booked as area of the neural periphery
    # (no power: their energy is the NNADC and NNS+A events'), so the chip holds the arrays the paper's does
    tile_array_density: float = param(0.0071, "1", f"{NPIM}: arrays 0.71 % of the area at equal area (the tile's "
                                      "share; the neural circuits' area beyond our counts follows; 0: our counts "
                                      "only)", lo=0, hi=1)

    name = "neural-pim"
    description = ("Neural-PIM (arXiv 2201.12861): analog shift-and-add over input cycles (NNS+A) and one neural "
                   "ADC conversion per MVM; 8-bit weights in 1-bit differential cells, 128x128, 280 ISAAC-style "
                   "tiles, 32 nm")
    aliases = {**TiledChip.aliases, "adc_bits": "adc.bits", "adc_sample_rate_hz": "adc.sample_rate_hz"}
    derived = {**TiledChip.derived, "adc.node_nm": "node_nm", "nns_a.node_nm": "node_nm",
               "nns_a.error_sigma_fs": "the trained NNS+A over input_cycles at adc.variation_sigma",
               "adc.chain_sigma_fs": "nns_a.error_sigma_fs"}
    cost_only = (*TiledChip.cost_only, "adc.sample_rate_hz",
                 "adc.inverter_current_a", "nns_a.inverter_current_a",
                 "nns_a.eval_time_s", "pairs_per_adc", "tile_array_density")

    def synced_components(self) -> dict:
        from cimsim.neural_circuits import nnsa_error_fs

        sigma = nnsa_error_fs(self.input_cycles, float(self.adc.variation_sigma), int(self.adc.instance_seed)) \
            if self.adc.trained else 0.0
        return {**super().synced_components(),
                "adc": replace(self.adc, node_nm=self.node_nm, chain_sigma_fs=sigma),
                "nns_a": replace(self.nns_a, node_nm=self.node_nm, error_sigma_fs=sigma)}

    # ------------------------------------------------------------------ structure
    def readout_cycle_s(self) -> float:
        """The NNS+A evaluates once per cycle; the NNADC converts its pairs' values within one MVM's cycles
        (64 pairs at 1 GS/s over 8 cycles: 8 ns a cycle)."""
        return max(self.nns_a.eval_time_s, self.pairs_per_adc / self.adc.sample_rate_hz / self.input_cycles)

    def sinad_db(self, samples: int = 1 << 16) -> float:
        """SINAD (dB) of the NNS+A + NNADC chain on a full-scale sine, measured through the engine's conversion
        (the trained NNADC's transfer with the NNS+A's error)."""
        import numpy as np

        from cimsim.neural_circuits import sinad_db
        from cimsim.readouts import readout_op

        top = self.adc.n_codes - 1
        u = top / 2 * (1 + np.sin(2 * np.pi * np.arange(samples) * 1021 / samples))
        codes, _ = readout_op(self.adc).convert(u, 0.0, 1.0, np.random.default_rng(self.adc.instance_seed), True)
        return sinad_db(codes, u)

    # ------------------------------------------------------------------ inventory
    def nn_rows(self) -> list[Component]:
        """The NNADCs and NNS+As of one IMA, from their circuit models."""
        n = self.xbars_per_ima
        pairs = n * self.cols // 2
        adcs = math.ceil(pairs / self.pairs_per_adc)
        steps_per_s = 1.0 / self.cycle_s
        mvm_s = self.input_cycles * self.cycle_s     # every pair converted once per MVM
        return [
            Component(f"NNADC ({int(self.adc.bits)}-bit)", "adc", "ima", adcs, pairs / mvm_s * self.adc.energy_j,
                      adcs * self.adc.area_m2,
                      f"NeuralADC model: {self.adc.cells} cells + {self.adc.inverters} inverters ({NPIM}, sizes est.)",
                      macro=True),
            Component("NNS+A (one per column pair)", "nns_a", "ima", pairs, pairs * self.nns_a.energy_j * steps_per_s,
                      pairs * self.nns_a.area_m2,
                      f"NeuralShiftAdd model: {self.nns_a.cells} cells + {self.nns_a.inverters} inverters, one step "
                      f"per cycle ({NPIM}, sizes est.)", macro=True)]

    def inventory(self) -> tuple[Component, ...]:
        return (*self.nn_rows(), *self.periphery_rows(), *self.array_and_tile_rows())

    def periphery_rows(self) -> list[Component]:
        """The neural circuits' area beyond our cell and inverter counts, per IMA, so that the crossbars are
        ``tile_array_density`` of a tile with the paper's 8-bit NNADCs (nothing when our counts already make the
        tile that large). Fixed at the paper's resolution, so the NNADC's own area still moves with its bits."""
        if not self.tile_array_density:
            return []
        rows = [*self.nn_rows(), *self.array_and_tile_rows()]
        per_tile = sum(c.area_m2 * (self.imas_per_tile if c.level == "ima" else 1)
                       for c in rows if c.level in ("ima", "tile"))
        nnadc = rows[0]
        per_tile += self.imas_per_tile * nnadc.count * (replace(self.adc, bits=PAPER_ADC_BITS).area_m2
                                                        - self.adc.area_m2)
        xbar = next(c for c in rows if c.kind == "crossbar").area_m2 * self.imas_per_tile
        extra = max(0.0, xbar / self.tile_array_density - per_tile) / self.imas_per_tile
        return [Component("NNADC / NNS+A area beyond our counts", "nn_area", "ima", 1, 0.0, extra,
                          f"{NPIM}: arrays {100 * self.tile_array_density:.2f} % of the area (the paper's sizes "
                          "not given, est.)", macro=True)] if extra else []

    # ------------------------------------------------------------------ simulation (used by the mapper)
    def crossbar_spec(self, input_signed: bool = False) -> CrossbarSpec:
        """Differential tile, G+/G- pairs shift-added in analog over all input cycles, one NNADC conversion."""
        return self.pair_crossbar_spec(input_signed, PER_MVM)

    def event_costs(self) -> dict[str, EventCost]:
        """NNADC conversions, NNS+A steps (one per column pair and cycle: ``analog_accumulations``), the digital
        shift-and-add of the slices' conversions, and the tile's events."""
        return {
            **self.tile_event_costs(),
            ev.conversion(self.adc.kind, int(self.adc.bits)): EventCost("adc", self.adc.energy_j),
            ev.CLIPPED_CONVERSIONS: EventCost("adc", 0.0),
            ev.ANALOG_ACCUMULATIONS: EventCost("nns_a", self.nns_a.energy_j),
            ev.SHIFT_ADDS: EventCost("shift_add", self.scaled(self.tile_shift_add)[0]),
        }
