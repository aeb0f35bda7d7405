"""Circuits that accumulate crossbar outputs in the analog domain before one conversion.

* :class:`TransimpedanceAmplifier` and :class:`BufferArray`: CASCADE's interface (Chou et al., MICRO 2019):
  a TIA turns a bit line's current into a voltage of finite resolution (``resolution_bits``, 6 bits in the
  paper) which is written into a small buffer RRAM array; reading the buffer sums the buffered partial sums
  of successive cycles (and arrays) on its columns, and a shared ADC converts the sum.
* :class:`NeuralShiftAdd` (NNS+A) and :class:`NeuralADC` (NNADC): Neural-PIM's (Cao et al., arXiv
  2201.12861) analog shift-and-add over the input bit cycles and its quantizer, each a small neural network
  of RRAM crossbars (3-bit weights, stored differentially) and CMOS inverters as neurons, trained by
  :mod:`cimsim.neural_circuits`: the NNADC is a pipeline of ``bits + 2`` 1.5-bit stages (two trained
  comparator neurons and a residue amplifier each), the NNS+A one trained crossbar column read by a feedback
  inverter amplifier. The counts below are those circuits'.

Energy per operation is counted from the circuit: an inverter neuron biased in its transition region draws a
crowbar current for the evaluation, ``E_inv = Vdd * I_inv * t_eval``; a crossbar cell spends
``E_cell`` per evaluation (ISAAC Table 6's crossbar read power per cell over the evaluation time);
a TIA draws its bias current while it settles, ``E = Vdd * I_bias * t_settle``. Areas from the cell and
inverter counts. Errors are given relative to full scale and go through the crossbar engine per conversion:
Neural-PIM's chain through the trained NNADC's transfer and the NNS+A's measured error (``chain_sigma_fs``), CASCADE's TIA
and buffer errors as noise on the analog sum (:class:`BufferedADC`: ``analog_sigma`` in level units, ``relative_sigma``
of each value written).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from cimsim.devices.base import param, validate_fields
from cimsim.devices.converters import Quantizer, SarADC
from cimsim.devices.technology import area_scale, energy_scale, nominal_vdd_v

NEURAL_PIM = "Neural-PIM (Cao et al., arXiv 2201.12861; docs/references.md#neural-pim)"
CASCADE = "CASCADE (Chou et al., MICRO 2019, as summarised, est.; docs/references.md#cascade)"
# ISAAC Table 6: 2.4 mW for 8 arrays of 128x128 cells drawn during ISAAC's 100 ns reads (sec. 4) = 1.83 fJ per cell
# read of 100 ns; a cell read for a shorter time spends proportionally less (a neural circuit evaluates in ~1 ns,
# est., a buffer array is read in 10 ns, est.)
ISAAC_CELL_READ_J = 2.4e-3 / 8 * 100e-9 / (128 * 128)
ISAAC_READ_S = 100e-9
CELL_AREA_M2_32NM = 0.0002e-6 / (8 * 128 * 128)   # ISAAC Table 6: 0.0002 mm^2 for 8 arrays of 128x128 cells
# (est.) a minimum-size CMOS inverter with its input and wiring at 32 nm: ~0.1 um^2 (6 F^2 x ~16 pitch overhead)
INVERTER_AREA_M2_32NM = 0.1e-12


def inverter_energy_j(current_a: float, time_s: float, node_nm: float) -> float:
    """Energy of one analog inverter neuron evaluation: ``Vdd(node) * I * t``."""
    return nominal_vdd_v(node_nm) * current_a * time_s


# Boltzmann constant (J/K), exact in the SI since 2019
K_BOLTZMANN = 1.380649e-23


@dataclass(frozen=True)
class TransimpedanceAmplifier:
    """TIA: bit-line current to voltage, ``V = I * R_f``, resolving ``resolution_bits`` of the bit line's range.

    Energy per conversion ``E = Vdd(node) * bias_current_a * settle_time_s``. Its error on a bit line of ``FS``
    integer levels (one level = one cell step times one input step) has two parts:

    * resolution (:meth:`quantization_levels`): with ``LSB = FS / 2**resolution_bits <= 1`` level every integer
      level has its own code and the TIA's quantization of the (integer) bit line is exact (CASCADE's 64-row lines
      of 1-bit cells in 6 bits); coarser, the quantization-like error ``LSB / sqrt(12)`` (est.);
    * thermal noise (:meth:`thermal_noise_levels`) of the feedback resistor ``R_f = swing_v / (FS * I_level)`` over
      the noise bandwidth of a first-order stage that settles to half an LSB in ``settle_time_s``:
      ``f_3dB = ln(2**(b + 1)) / (2 pi t_settle)``, ``i_n = sqrt(4 k T / R_f * pi / 2 * f_3dB)``, in levels
      ``i_n / I_level``.
    """

    kind: ClassVar[str] = "tia"

    resolution_bits: float = param(6, "bit", f"{CASCADE}: 6-bit bit-line resolution (~25 dB SNR suffices)",
                                   lo=1, hi=16)
    bias_current_a: float = param(5e-6, "A", "(est.) a single-stage TIA biased at 5 uA (CASCADE reports the TIA "
                                  "interface ~77.5x cheaper than an ADC interface)", lo=0, lo_open=True)
    settle_time_s: float = param(10e-9, "s", "(est.) settles within one 10 ns crossbar read", lo=0, lo_open=True)
    area_um2: float = param(50.0, "um^2", "(est.) one op-amp stage with feedback resistor at 65 nm (scaled to "
                            "the node)", lo=0, lo_open=True)
    swing_v: float = param(0.5, "V", "(est.) output swing of a single-stage TIA, about half a 1 V supply", lo=0,
                           lo_open=True)
    temperature_k: float = param(300.0, "K", "(est.) room temperature; 0 = noiseless", lo=0, hi=1000)
    node_nm: float = param(65, "nm", f"{CASCADE}: 65 nm", lo=7, hi=180)

    def __post_init__(self):
        validate_fields(self)

    def quantization_levels(self, full_scale_levels: float) -> float:
        """Standard deviation (levels) of the resolution's error on integer bit-line values: 0 when every level has
        its own code (``FS / 2**bits <= 1``), else ``LSB / sqrt(12)`` (est.)."""
        lsb = full_scale_levels / 2 ** self.resolution_bits
        return 0.0 if lsb <= 1 else lsb / math.sqrt(12)

    def thermal_noise_levels(self, full_scale_levels: float, level_current_a: float) -> float:
        """Standard deviation (levels) of the feedback resistor's thermal noise (see the class docstring)."""
        if self.temperature_k == 0 or level_current_a <= 0:
            return 0.0
        r_f = self.swing_v / (full_scale_levels * level_current_a)
        f_3db = math.log(2 ** (self.resolution_bits + 1)) / (2 * math.pi * self.settle_time_s)
        i_n = math.sqrt(4 * K_BOLTZMANN * self.temperature_k / r_f * math.pi / 2 * f_3db)
        return i_n / level_current_a

    @property
    def energy_j(self) -> float:
        return nominal_vdd_v(self.node_nm) * self.bias_current_a * self.settle_time_s

    @property
    def latency_s(self) -> float:
        return self.settle_time_s

    @property
    def area_m2(self) -> float:
        return self.area_um2 * 1e-12 * area_scale(65, self.node_nm)

    @property
    def power_w(self) -> float:
        return self.energy_j / self.settle_time_s

    @property
    def leakage_w(self) -> float:
        return 0.0



@dataclass(frozen=True)
class BufferArray:
    """CASCADE's buffer RRAM array: one analog partial sum written per cell, the cells of a column read
    together (their currents sum) when the accumulated value is converted.

    Energy per write ``write_voltage_v * write_current_a * write_pulse_s`` (a partial SET of a high-resistance
    cell, est.); per cell read ISAAC Table 6's read energy per cell (est. for CASCADE's cells). A written value is
    off by ``write_sigma_frac`` of itself and ``write_sigma_levels`` (standard deviations; the second in the bit
    line's levels), independent.
    """

    kind: ClassVar[str] = "buffer-array"

    rows: int = param(15, "1", f"{CASCADE}: about 15 rows x 30 columns per MAC subsection", lo=1, hi=4096)
    cols: int = param(30, "1", f"{CASCADE}: about 15 rows x 30 columns per MAC subsection", lo=1, hi=4096)
    write_voltage_v: float = param(1.0, "V", "(est.) partial-SET amplitude of an analog buffer cell", lo=0,
                                   lo_open=True)
    write_current_a: float = param(1e-6, "A", "(est.) high-resistance buffer cell (~1 MOhm at 1 V)", lo=0,
                                   lo_open=True)
    write_pulse_s: float = param(20e-9, "s", "(est.) one short pulse per buffered value", lo=0, lo_open=True)
    # A written value is off by an error proportional to it: CASCADE's ~25 dB SNR budget for its 6-bit bit lines
    # (25 dB against 35 dB at 11 bits: the tolerated error grows with the range written), read as each value's
    # own signal-to-error ratio, 10**(-25/20) = 5.6 % of the value; a zero is written exactly (est.). Read against a
    # full-scale sine, an error independent of the value, the same budget is 1.27 levels and costs LeNet-5 68 points
    # (BENCHMARKS.md, 2026-12-03, npim3, npim8), so it cannot be the line's range. Read instead against the
    # values actually written (their variance over the data, the compute SNR of the CiM literature, or their mean
    # square, per slice), with the error independent of the value, it costs LeNet-5 the same 1.3-1.5 points as per
    # value, against the converted sums' variance 2.2 (npim8): no reading gives the paper's "no loss" (32-35 dB)
    write_sigma_frac: float = param(10 ** (-25 / 20), "1", f"{CASCADE}: ~25 dB SNR suffices at 6 bits, read as "
                                    "each written value's error relative to it, 10**(-25/20)", lo=0, hi=1)
    # (est.) an extra error independent of the value: 0 by default (the earlier model's 1/6 level, 'within half a
    # level at 3 sigma', had no cited figure and is replaced by write_sigma_frac)
    write_sigma_levels: float = param(0.0, "level", "(est.) an extra value-independent write error; 0: the cited "
                                      "25 dB is relative (write_sigma_frac)", lo=0, hi=64)
    read_energy_j: float = param(ISAAC_CELL_READ_J * 10e-9 / ISAAC_READ_S, "J", "ISAAC Table 6's cell read power "
                                 "over a 10 ns read: 0.18 fJ per cell read (est. for CASCADE)", lo=0)
    node_nm: float = param(65, "nm", f"{CASCADE}: 65 nm", lo=7, hi=180)

    def __post_init__(self):
        validate_fields(self)

    @property
    def write_energy_j(self) -> float:
        return self.write_voltage_v * self.write_current_a * self.write_pulse_s

    @property
    def energy_j(self) -> float:
        """One buffered value: its write and its read."""
        return self.write_energy_j + self.read_energy_j

    @property
    def latency_s(self) -> float:
        return self.write_pulse_s

    @property
    def area_m2(self) -> float:
        return self.rows * self.cols * CELL_AREA_M2_32NM * area_scale(32, self.node_nm)

    @property
    def leakage_w(self) -> float:
        return 0.0


# Structure of the trained circuits (cimsim.neural_circuits; tests/test_neural_circuits.py checks the counts):
STAGE_CELLS = 2 * 2 * 2 + 2 * 4     # a 1.5-bit stage: 2 comparators on (input, reference), a residue column on 4 rows
STAGE_INVERTERS = 2 + 3             # its 2 comparator neurons and a 3-inverter feedback amplifier (est.)


@dataclass(frozen=True)
class NeuralCircuit:
    """Shared costs of Neural-PIM's neural circuits: ``cells`` differential RRAM cells (G+ and G-) read for one
    evaluation and ``inverters`` inverter neurons drawing their crowbar current for it."""

    def __post_init__(self):
        validate_fields(self)

    @property
    def energy_j(self) -> float:
        """One evaluation: every cell read for ``eval_time_s`` and every inverter's crowbar current."""
        t = self.eval_time_s
        cell = ISAAC_CELL_READ_J * t / ISAAC_READ_S * energy_scale(32, self.node_nm)
        return self.cells * cell + self.inverters * inverter_energy_j(self.inverter_current_a, t, self.node_nm)

    @property
    def area_m2(self) -> float:
        return (self.cells * CELL_AREA_M2_32NM + self.inverters * INVERTER_AREA_M2_32NM) * area_scale(32, self.node_nm)

    @property
    def latency_s(self) -> float:
        return self.eval_time_s

    @property
    def leakage_w(self) -> float:
        return 0.0


@dataclass(frozen=True)
class NeuralShiftAdd(NeuralCircuit):
    """NNS+A: ``y_t = (v_t + y_{t-1}) / 2`` over the input cycles (LSB first), so after the last cycle
    ``y = sum_t 2**(t - T - 1) * v_t``: one trained crossbar column (the cycle's value, the previous output and
    the reference, 3-bit differential cells) read by a feedback amplifier of three inverters (est.).

    One evaluation per column pair and cycle (an ``analog_accumulations`` event). Its output error relative to
    full scale (``error_sigma_fs``, measured on the trained circuit by the architecture) goes into the NNADC's
    input."""

    kind: ClassVar[str] = "nn-shift-add"

    error_sigma_fs: float = param(0.0, "1", "set by the architecture from the trained NNS+A "
                                  "(cimsim.neural_circuits.nnsa_error_fs); 0 = ideal", lo=0, hi=1)
    inverter_current_a: float = param(10e-6, "A", "(est.) crowbar current of an inverter neuron at 32 nm",
                                      lo=0, lo_open=True)
    eval_time_s: float = param(1e-9, "s", "(est.) one evaluation settles in ~1 ns at 32 nm", lo=0, lo_open=True)
    node_nm: float = param(32, "nm", f"{NEURAL_PIM}: simulated at 130 nm, scaled to 32 nm", lo=7, hi=180)

    cells: ClassVar[int] = 2 * 3       # one column of 3 rows, G+ and G-
    inverters: ClassVar[int] = 3       # the feedback amplifier (est.)


@dataclass(frozen=True)
class NeuralADC(NeuralCircuit, Quantizer):
    """NNADC: an analog value to ``bits`` output bits by a pipeline of ``bits + 2`` trained 1.5-bit stages
    (:mod:`cimsim.neural_circuits`). ``trained=1``: the engine converts through the trained circuit's
    transfer (one chip instance, its cells programmed with ``variation_sigma`` of the range, drawn from
    ``instance_seed``) after adding the analog chain's error ``chain_sigma_fs`` (of full scale);
    ``trained=0``: an ideal uniform quantizer with input-referred noise ``offset_sigma_lsb``.
    """

    kind: ClassVar[str] = "nn-adc"

    bits: int = param(8, "bit", f"{NEURAL_PIM}: 8-bit outputs", lo=1, hi=14)
    sample_rate_hz: float = param(1e9, "1/s", "(est.) one conversion per ~1 ns evaluation", lo=0, lo_open=True)
    node_nm: float = param(32, "nm", f"{NEURAL_PIM}: simulated at 130 nm, scaled to 32 nm", lo=7, hi=180)
    offset_sigma_lsb: float = param(0.0, "LSB", "input-referred noise of the 'uniform' transfer; 0 = ideal", lo=0)
    enob_loss_bits: float = param(0.0, "bit", "uniform quantizer", lo=0)
    trained: int = param(1, "1", "1: the trained pipelined circuit's transfer (cimsim.neural_circuits); 0: an ideal "
                         "uniform quantizer", lo=0, hi=1)
    variation_sigma: float = param(0.0, "1", "programming variation of the circuits' cells (of the range) at "
                                   "inference: NeuroSim's default 0, as the chip's cells (Neural-PIM trains with "
                                   "0.025 injected)", lo=0, hi=0.5)
    instance_seed: int = param(0, "1", "seed of the chip instance whose transfer the engine uses", lo=0, hi=2**31)
    chain_sigma_fs: float = param(0.0, "1", "error of the analog chain before the NNADC (of full scale); set by the "
                                  "architecture from the trained NNS+A", lo=0, hi=1)
    inverter_current_a: float = param(10e-6, "A", "(est.) crowbar current of an inverter neuron at 32 nm",
                                      lo=0, lo_open=True)

    def __post_init__(self):
        validate_fields(self)
        self._check()

    @property
    def stages(self) -> int:
        return int(self.bits) + 2

    @property
    def cells(self) -> int:
        return self.stages * STAGE_CELLS

    @property
    def inverters(self) -> int:
        return self.stages * STAGE_INVERTERS

    @property
    def eval_time_s(self) -> float:
        return 1.0 / self.sample_rate_hz

    @property
    def latency_s(self) -> float:
        return 1.0 / self.sample_rate_hz

    @property
    def power_w(self) -> float:
        return self.energy_j * self.sample_rate_hz


@dataclass(frozen=True)
class BufferedADC(SarADC):
    """A SAR ADC converting an analog sum of buffered values, whose noise ``analog_sigma`` (in the column's level
    units: one conductance step times one input step; for the values of one row block) is added to the value
    before the conversion, like read noise (it counts towards clipping); a sum over ``n`` row blocks carries
    ``sqrt(n)`` times it (:meth:`cimsim.readouts.BufferedQuantizerOp.over_blocks`). The converter's own offset
    stays ``offset_sigma_lsb``.

    ``relative_sigma`` is an error proportional to each value written (each line of each cycle and row block): the
    engine adds it where it forms the analog sum, from the values themselves
    (:attr:`cimsim.readouts.ReadoutOp.relative_sigma`).

    CASCADE's buffered partial sums each carry the TIA's and the buffer write's errors; the architecture sets
    ``analog_sigma`` from the value-independent ones (the sum over the cycles of a group, weighted by their place
    values) and ``relative_sigma`` from the buffer write's relative error."""

    kind: ClassVar[str] = "buffered-sar-adc"

    analog_sigma: float = param(0.0, "level", "set by the architecture from its buffered values' errors (one row block); 0 = ideal",
                                lo=0)
    relative_sigma: float = param(0.0, "1", "error of each buffered value relative to that value (standard deviation "
                                  "over the value), set by the architecture; 0 = ideal", lo=0, hi=1)
