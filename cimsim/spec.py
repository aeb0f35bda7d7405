"""The crossbar tile's specification: geometry, encoding, readout and conversion scope.

Kept apart from the engine (:mod:`cimsim.crossbar`) so that describing a tile, as every architecture does,
loads no compiled kernels: ``cimsim.arch`` stays quick to import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cimsim.devices.cell import IdealCell, MemoryCell
from cimsim.devices.converters import IdealReadout, Readout
from cimsim.encoding import INPUT_ENCODINGS, WEIGHT_MODES
from cimsim.errors import ConfigError
from cimsim.readouts import PER_CYCLE, ConversionScope, readout_op

MAX_ROWS = MAX_COLS = 1 << 16        # our bound: far beyond any published array (ISAAC 128, CASCADE 64)
MAX_OPERAND_BITS = 32                # integer operands travel as int64; digits and levels stay exact


@dataclass(frozen=True)
class CrossbarSpec:
    """Geometry, encoding, readout and conversion scope of a crossbar tile (defaults: ISAAC's array, 8-bit
    operands)."""

    rows: int = 128                 # ISAAC: 128x128 arrays (Shafiee et al., ISCA 2016, Table 6)
    cols: int = 128
    cell: MemoryCell = field(default_factory=IdealCell)
    cell_bits: int = 2              # ISAAC: 2-bit cells
    weight_bits: int = 8            # 8-bit weights, the common CiM operating point (Neural-PIM, HCiM)
    input_bits: int = 8
    dac_bits: int = 1               # ISAAC: inputs streamed 1 bit per cycle
    signed: str = "differential"    # Neural-PIM: positive and negative weights in adjacent columns
    input_signed: bool = False      # inputs after ReLU are unsigned
    input_encoding: str = "twos"    # signed inputs: two's complement, the sign bit a cycle of its own (ISAAC's bit-
                                    # serial stream); "split": a positive and a negative pass (cimsim.encoding)
    readout: Readout = field(default_factory=IdealReadout)
    adc_range: object = "full"      # "full", "calibrated" or (lo, hi) in level units
    calibration_percentile: float = 99.9   # our choice: clips 0.1 % of column values, see Crossbar.calibrate
    r_wire_ohm: float = 0.0         # word- and bit-line wire resistance per cell pitch; 0 = ideal wires
    ir_drop: str = "rational"       # "rational" (fast, default), "linear" (first order) or "exact" (nodal solve)
    batch_chunk: int = 1024         # examples per streamed chunk (bounds memory)
    pair_readout: bool = False      # HCiM (arXiv 2403.13577): each G+ column is read against its G- column, so the
                                    # readout sees PS+ - PS- (signed='differential' only); False: every column alone
    conversion: ConversionScope = PER_CYCLE   # ISAAC: one conversion per (input cycle, row block, column)

    def __post_init__(self):
        for k in ("rows", "cols", "cell_bits", "weight_bits", "input_bits", "dac_bits", "batch_chunk"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"CrossbarSpec.{k} must be a positive integer, got {v!r}")
        for k, hi in (("rows", MAX_ROWS), ("cols", MAX_COLS), ("weight_bits", MAX_OPERAND_BITS),
                      ("input_bits", MAX_OPERAND_BITS), ("cell_bits", 16), ("dac_bits", 16)):
            if getattr(self, k) > hi:
                raise ConfigError(f"CrossbarSpec.{k} = {getattr(self, k)} is out of range: it must be at most {hi}")
        if self.weight_bits < 2 and self.signed != "unsigned":
            raise ConfigError("CrossbarSpec.weight_bits must be at least 2 (signed weights)")
        if self.input_signed and self.input_bits < 2:
            raise ConfigError("CrossbarSpec.input_bits must be at least 2 for signed inputs")
        if self.input_encoding not in INPUT_ENCODINGS:
            raise ConfigError(f"CrossbarSpec.input_encoding = {self.input_encoding!r}: choose one of "
                              f"{', '.join(INPUT_ENCODINGS)}")
        if self.signed not in WEIGHT_MODES:
            raise ConfigError(f"CrossbarSpec.signed = {self.signed!r}: choose one of {', '.join(WEIGHT_MODES)}")
        if not isinstance(self.cell, MemoryCell):
            raise ConfigError(f"CrossbarSpec.cell must be a cell model (cimsim.devices), got {self.cell!r}")
        if not isinstance(self.readout, Readout):
            raise ConfigError(f"CrossbarSpec.readout must be a readout (cimsim.devices), got {self.readout!r}")
        readout_op(self.readout)   # the engine must have an operation for it
        r = self.adc_range
        if not (r in ("full", "calibrated") or (isinstance(r, (tuple, list)) and len(r) == 2
                                                and all(isinstance(e, (int, float, np.number)) and math.isfinite(e)
                                                        for e in r) and r[1] > r[0])):
            raise ConfigError(f"CrossbarSpec.adc_range = {r!r}: use 'full', 'calibrated' or (lo, hi) with finite "
                              "hi > lo")
        if not (self.r_wire_ohm >= 0 and math.isfinite(self.r_wire_ohm)):
            raise ConfigError(f"CrossbarSpec.r_wire_ohm must be a non-negative number of ohms, got {self.r_wire_ohm!r}")
        if self.ir_drop not in ("rational", "linear", "exact"):
            raise ConfigError(f"CrossbarSpec.ir_drop = {self.ir_drop!r}: choose 'rational', 'linear' or 'exact'")
        if not 50 <= self.calibration_percentile <= 100:
            raise ConfigError("CrossbarSpec.calibration_percentile must lie in [50, 100]")
        if not isinstance(self.pair_readout, (bool, np.bool_)):
            raise ConfigError(f"CrossbarSpec.pair_readout must be True or False, got {self.pair_readout!r}")
        if self.pair_readout and self.signed != "differential":
            raise ConfigError("CrossbarSpec.pair_readout=True compares G+ with G- columns: it needs "
                              f"signed='differential', got signed={self.signed!r}")
        if not isinstance(self.conversion, ConversionScope):
            raise ConfigError(f"CrossbarSpec.conversion must be a cimsim.readouts.ConversionScope, got "
                              f"{self.conversion!r}")
