"""The event vocabulary: every kind of event a ledger may count, as named constants.

The engine, the mapper's profile, every architecture and the report use these names; none builds or
parses an event name by hand. An event counts a physical quantity, never an energy, so a finished run can
be costed again at another operating point (:meth:`cimsim.report.Report.recost`):

* crossbar: array read cycles, cell reads, the read's conductance-seconds (``sum digit**2 * G * t_read``:
  times the square of the DAC's voltage step it is the data-dependent read energy), DAC drives, analog
  accumulations (column values summed in the analog domain before a conversion), TIA conversions and analog
  buffer writes and reads (the circuits that accumulate, where an architecture has them), conversions by readout
  kind and bits, ADC conversions that clipped, non-zero comparator decisions, digital shift-and-adds,
  offset-correction adds, reference-DAC drives (a comparator pair's reference set per decision);
* data movement: bytes through the input and output registers, the eDRAM buffer, the bus and the chip-to-chip
  links;
* digital work (the profile of the layers kept digital): MACs, adds, multiplies, comparisons, evaluations of
  transcendental functions (sigmoid, exp ...), weight and activation accesses (values), activation-unit and
  pooling-unit operations, spiking-neuron updates.

A conversion event names the readout kind and, for a multi-bit converter, its bits:
``conversion("sar-adc", 8) == "sar-adc_conversion_8b"``; :func:`parse_conversion` reads one back.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------- crossbar
ARRAY_READ_CYCLES = "array_read_cycles"          # arrays x read cycles
CELL_READS = "cell_reads"                        # cells read with a non-zero input digit
CELL_READ_CONDUCTANCE_S = "cell_read_conductance_s"   # sum over reads of digit**2 * G * t_read (S s)
DAC_DRIVES = "dac_drives"                        # word-line drives with a non-zero digit
ANALOG_ACCUMULATIONS = "analog_accumulations"    # column values summed in analog before a conversion
CLIPPED_CONVERSIONS = "clipped_conversions"      # ADC conversions whose input lay outside the range
NONZERO_DECISIONS = "nonzero_decisions"          # comparator decisions that were not zero (scale-factor adds)
SHIFT_ADDS = "shift_adds"                        # digital shift-and-adds of conversion results
OFFSET_CORRECTION_ADDS = "offset_correction_adds"   # digital adds that remove an offset encoding's bias
TIA_CONVERSIONS = "tia_conversions"              # bit-line currents turned into voltages by a transimpedance amplifier
BUFFER_WRITES = "buffer_writes"                  # analog values written into buffer memory cells (CASCADE)
BUFFER_READS = "buffer_reads"                    # buffer memory cells read into an analog sum (CASCADE)
REFERENCE_DAC_DRIVES = "reference_dac_drives"    # comparator references set by a DAC per decision (hcim learned thresholds)

# ---------------------------------------------------------------------------------------------- data movement
SAMPLE_HOLDS = "sample_holds"
INPUT_REGISTER_BYTES = "input_register_bytes"
OUTPUT_REGISTER_BYTES = "output_register_bytes"
EDRAM_BYTES = "edram_bytes"
BUS_BYTES = "bus_bytes"
LINK_BYTES = "link_bytes"            # bytes sent over chip-to-chip links (a network spread over several chips)

# ---------------------------------------------------------------------------------------------- digital work
MAC = "mac"
ADD = "add"
MUL = "mul"
COMPARE = "compare"
WEIGHT_READ = "weight_read"          # weight values read
ACT_READ = "act_read"                # activation values read
ACT_WRITE = "act_write"              # activation values written
NONLINEAR = "nonlinear"              # element-wise transcendental evaluations (sigmoid, tanh, exp, sqrt, erf ...)
ACTIVATION_OPS = "activation_ops"    # operations of an activation (sigmoid/ReLU) unit
POOLING_OPS = "pooling_ops"          # operations of a pooling unit
LIF_UPDATES = "lif_updates"          # spiking-neuron updates (one neuron, one time step) on a digital LIF unit

DIGITAL_OPS = (MAC, ADD, MUL, COMPARE)

_CONVERSION = "_conversion"


def conversion(kind: str, bits: int | None = None) -> str:
    """The event of one conversion by a readout of ``kind`` (e.g. 'sar-adc'), with its bits if multi-bit."""
    if not kind or _CONVERSION in kind:
        raise ValueError(f"not a readout kind: {kind!r}")
    return f"{kind}{_CONVERSION}" + (f"_{int(bits)}b" if bits is not None else "")


@dataclass(frozen=True)
class Conversion:
    """A parsed conversion event."""

    kind: str
    bits: int | None


def parse_conversion(event: str) -> Conversion | None:
    """The readout kind and bits of a conversion event, or None for any other event."""
    kind, sep, rest = event.partition(_CONVERSION)
    if not sep or not kind:
        return None
    if not rest:
        return Conversion(kind, None)
    if rest.startswith("_") and rest.endswith("b") and rest[1:-1].isdigit():
        return Conversion(kind, int(rest[1:-1]))
    return None


def is_conversion(event: str) -> bool:
    return parse_conversion(event) is not None


def conversions(events: dict[str, float]) -> float:
    """The total of the conversion events in a mapping event -> count."""
    return sum(n for e, n in events.items() if is_conversion(e))
