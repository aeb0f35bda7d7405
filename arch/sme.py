"""SME, the Sparse-Multiplication-Engine (Liu et al., arXiv 2103.01705, ICCD 2021): ISAAC-style tiles whose
1-bit crossbars hold one weight bit-plane each, squeezed so that sparse bit-planes need few crossbars.

Mapping (:mod:`cimsim.mappers.sme`, asked for by :meth:`Sme.weight_layout`): bit-sparsity shaping of the
quantized weights (crossbar-aware bit-plane windows within ``shaping_tolerance``; optionally ``nonzero_bits``),
bit-slice splicing of the sign-magnitude bit-planes over 1-bit crossbars, and squeeze-out: each row block's
non-empty columns side by side, and the crossbars whose non-zeros fill less than ``squeeze_density`` of their
cells emptied into shared ones.
The engine runs the packed crossbars (:class:`cimsim.packed.PackedTile`): every array reads its gathered
inputs bit-serially, an ADC converts every used column each cycle, and the periphery splices the column
results with their ``+-2**plane`` weights into the outputs (shift-and-add).

Parameters the paper does not give (it reports crossbar counts, not the array): 1-bit cells, 128x128
arrays and one bit-plane per crossbar follow the same group's Bit-Transformer (ICCAD 2021; see
docs/references.md#sme); the rest of the chip is ISAAC's (Table 6), as in the paper's ISAAC-derived baselines,
with 8-bit weights and inputs (est.). With 1-bit cells and 1-bit DACs a column value is at most ``rows``, so the
8-bit ADC with a full-scale range converts it losslessly (128 <= 255 codes of one level unit).

Index bookkeeping: every allocated crossbar keeps a row table (the input of each row) and a column table
(the output and place value of each column), ``INDEX_ENTRY_BITS`` per entry (est.), in SRAM beside the IMA;
the inventory counts its area for every crossbar of the chip.
"""

from __future__ import annotations

from dataclasses import dataclass

from cimsim.arch.base import Component, register
from cimsim.arch.hcim import DCIM_AREA_OVERHEAD, SRAM_BIT_AREA_M2_32NM
from cimsim.arch.isaac import Isaac
from cimsim.arch.params import param
from cimsim.arch.tiled import TiledChip
from cimsim.devices.technology import area_scale
from cimsim.layout import BitPlaneLayout
from cimsim.spec import CrossbarSpec

_SRC = "SME, arXiv 2103.01705"
# (est.) one index-table entry: a 16-bit address (inputs or output and place value of a layer up to 64 K)
INDEX_ENTRY_BITS = 16


@register
@dataclass(frozen=True)
class Sme(Isaac):
    """SME: ISAAC tiles of 1-bit 128x128 crossbars holding spliced, squeezed weight bit-planes."""

    cell_bits: int = param(1, "bit", f"{_SRC}; Bit-Transformer (ICCAD 2021): 1-bit cells, one weight bit per "
                           "crossbar", lo=1, hi=1)
    weight_bits: int = param(8, "bit", "(est.) 8-bit weights (the quantizers SME builds on)", lo=3, hi=16)
    input_bits: int = param(8, "bit", "(est.) 8-bit activations", lo=1, hi=32)
    signed: str = param("differential", "", f"{_SRC}: sign-magnitude bit-planes (W+ and W- bits in their own "
                        "columns)", choices=("differential",))
    adc_range: str = param("full", "", "1-bit cells and DACs: a column value is at most rows, which an 8-bit ADC "
                           "converts losslessly at full scale", choices=("full", "calibrated"))
    nonzero_bits: int = param(0, "bit", "(est.) bit-sparsity shaping: at most this many non-zero bits per weight "
                              "magnitude (0: off; it thins bits but frees few crossbars: measured in BENCHMARKS.md)",
                              lo=0, hi=15)
    shaping_tolerance: float = param(0.01, "1", "(est.) crossbar-aware shaping: relative squared weight error a "
                                     "row block may take to need fewer crossbars (0: no plane windows); 0.01 keeps "
                                     "LeNet-5 and ResNet-20 within 0.1 point of float (BENCHMARKS.md)", lo=0.0, hi=1.0)
    squeeze_density: float = param(0.25, "1", "(est.) squeeze-out empties crossbars whose non-zeros fill less "
                                   "than a quarter of their cells (0: splice only)", lo=0.0, hi=1.0)

    name = "sme"
    description = ("SME (arXiv 2103.01705): crossbar-aware bit-sparsity shaping, one weight bit-plane per 1-bit "
                   "128x128 crossbar, squeeze-out of empty columns and sparse crossbars; ISAAC tiles, 8-bit SAR ADC "
                   "per crossbar, 32 nm")

    def check(self) -> None:
        TiledChip.check(self)

    @property
    def slices(self) -> int:
        """Columns per weight in the dense layout: a W+ and a W- column per magnitude bit."""
        return 2 * (self.weight_bits - 1)

    def weight_layout(self) -> BitPlaneLayout:
        return BitPlaneLayout(nonzero_bits=int(self.nonzero_bits), squeeze_density=float(self.squeeze_density),
                              shaping_tolerance=float(self.shaping_tolerance))

    def crossbar_spec(self, input_signed: bool = False) -> CrossbarSpec:
        """The array and readout of every crossbar, with the dense sign-magnitude slicing (the packed crossbars
        hold the same bits, :func:`cimsim.mappers.sme.array_spec`)."""
        return CrossbarSpec(rows=self.rows, cols=self.cols, cell=self.cell, cell_bits=1,
                            weight_bits=self.weight_bits, input_bits=self.input_bits, dac_bits=self.dac_bits,
                            signed="differential", input_signed=input_signed, readout=self.adc,
                            adc_range=self.adc_range, input_encoding=self.input_encoding)

    def inventory(self) -> tuple[Component, ...]:
        bits = self.xbars_per_ima * (self.rows + self.cols) * INDEX_ENTRY_BITS
        index = Component("index tables (rows and columns)", "index", "ima", self.xbars_per_ima, 0.0,
                          bits * SRAM_BIT_AREA_M2_32NM * DCIM_AREA_OVERHEAD * area_scale(32, self.node_nm),
                          f"(est.) {_SRC}: an SRAM entry per row and column of every crossbar")
        return (*super().inventory(), index)
