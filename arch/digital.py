"""The digital reference: the network in 32-bit floating point on a conventional digital accelerator.

It is what the analog architectures are compared against: the same network, the same events counted
from the actual layer shapes, costed with published per-operation energies of a digital 45 nm design.

Cost model. Every multiply-accumulate costs one fp32 multiply and one fp32 add; element-wise work
(bias, batch-norm, activations, pooling, residual adds) costs fp32 adds, multiplies or comparisons;
every weight is read once per inference from a 1 MB SRAM, every activation read and written once in a
32 KB SRAM. Latency assumes the MAC array is kept busy (compute bound, no overlap between layers):
``ceil(ops / mac_units) / clock_hz`` per layer. Area counts the MAC array only (the source gives no
SRAM area), so it is a lower bound.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from cimsim.arch.figures import chip_figures
from cimsim.cost import EventCost, rollup_energy
from cimsim.ledger import EventLedger

# Horowitz, "Computing's energy problem", ISSCC 2014, Fig. 1.1.9 (45 nm, 0.9 V):
#   32-bit float multiply 3.7 pJ, 32-bit float add 0.9 pJ; SRAM 64-bit read: 32 KB 20 pJ, 1 MB 100 pJ;
#   area: 32-bit float multiplier 7700 um^2, 32-bit float adder 4184 um^2.
HOROWITZ_FP32_MUL_J = 3.7e-12
HOROWITZ_FP32_ADD_J = 0.9e-12
HOROWITZ_SRAM_1MB_64BIT_J = 100e-12
HOROWITZ_SRAM_32KB_64BIT_J = 20e-12
HOROWITZ_FP32_MUL_AREA_M2 = 7700e-12
HOROWITZ_FP32_ADD_AREA_M2 = 4184e-12


@dataclass(frozen=True)
class DigitalReference:
    """A 32-bit floating-point digital accelerator (see the module docstring for the model)."""

    mac_units: int = 168          # Eyeriss v1 PE count (Chen et al., IEEE JSSC 52(1), 2017)
    clock_hz: float = 200e6       # Eyeriss v1 core clock (same paper)
    mul_energy_j: float = HOROWITZ_FP32_MUL_J    # Horowitz ISSCC 2014, 45 nm
    add_energy_j: float = HOROWITZ_FP32_ADD_J    # Horowitz ISSCC 2014, 45 nm
    weight_read_energy_j_per_byte: float = HOROWITZ_SRAM_1MB_64BIT_J / 8   # Horowitz: 1 MB SRAM, 64-bit read
    act_access_energy_j_per_byte: float = HOROWITZ_SRAM_32KB_64BIT_J / 8   # Horowitz: 32 KB SRAM, 64-bit read
    mac_area_m2: float = HOROWITZ_FP32_MUL_AREA_M2 + HOROWITZ_FP32_ADD_AREA_M2  # Horowitz ISSCC 2014
    bytes_per_value: int = 4      # fp32

    name = "digital"
    description = ("floating-point reference: fp32 network on a digital 45 nm accelerator "
                   "(Horowitz ISSCC 2014 energies, Eyeriss-sized 168-MAC array at 200 MHz)")

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{f.name} must be a positive number, got {v!r}")

    # ------------------------------------------------------------------ costs
    def event_costs(self) -> dict[str, EventCost]:
        return {
            "mac": EventCost("mac_array", self.mul_energy_j + self.add_energy_j),
            "add": EventCost("alu", self.add_energy_j),
            "mul": EventCost("alu", self.mul_energy_j),
            "compare": EventCost("alu", self.add_energy_j),  # a comparison is a subtraction
            "weight_read": EventCost("weight_sram", self.bytes_per_value * self.weight_read_energy_j_per_byte),
            "act_read": EventCost("act_sram", self.bytes_per_value * self.act_access_energy_j_per_byte),
            "act_write": EventCost("act_sram", self.bytes_per_value * self.act_access_energy_j_per_byte),
        }

    def layer_latency_s(self, events: dict[str, float]) -> float:
        ops = sum(events.get(k, 0) for k in ("mac", "add", "mul", "compare"))
        return math.ceil(ops / self.mac_units) / self.clock_hz

    @property
    def area_m2(self) -> float:
        return self.mac_units * self.mac_area_m2

    def cost(self, ledger: EventLedger) -> dict:
        """Energy (J), latency (s) per layer and energy per component for a per-inference ledger."""
        roll = rollup_energy(ledger, self.event_costs())
        latency = {l: self.layer_latency_s(ledger.layer(l)) for l in ledger.layers()}
        return {"energy_j": roll.per_layer, "latency_s": latency, "components": roll.per_component,
                "area_m2": self.area_m2}

    # ------------------------------------------------------------------ description
    def params(self) -> dict:
        return asdict(self)

    def summary(self) -> dict:
        power = self.mac_units * self.clock_hz * (self.mul_energy_j + self.add_energy_j)
        return chip_figures(
            self.name, self.description, 2 * self.mac_units * self.clock_hz,  # one MAC = 2 operations
            {"mac_array": {"power_w": power, "area_m2": self.area_m2}},
            power_scope="MAC array at full utilisation; SRAM energy is counted per access in runs",
            area_scope="MAC array only (the source gives no SRAM area)", params=self.params())
