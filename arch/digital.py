"""The digital reference: the network in 32-bit floating point on a conventional digital accelerator.

It is what the analog architectures are compared against: the same network, the same events counted
from the actual layer shapes, costed with published per-operation energies of a digital 45 nm design.

Cost model. Every multiply-accumulate costs one fp32 multiply and one fp32 add; element-wise work
(bias, batch-norm, activations, pooling, residual adds) costs fp32 adds, multiplies or comparisons, and a
transcendental function (sigmoid, tanh, exp) ``nonlinear_macs`` multiply-adds (est.);
every weight is read once per inference from a 1 MB SRAM, every activation read and written once in a
32 KB SRAM. Latency assumes the MAC array is kept busy (compute bound, no overlap between layers):
``ceil(ops / mac_units) / clock_hz`` per layer. Area counts the MAC array only (the source gives no
SRAM area), so it is a lower bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from cimsim import events as ev
from cimsim.arch.base import PROFILE_EVENTS, Architecture, Component, register
from cimsim.arch.params import param
from cimsim.cost import EventCost, LayerPlan, Timing
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
_H = "Horowitz ISSCC 2014, 45 nm"
# (est.) an fp32 exp/sigmoid/tanh as a range reduction and a degree-5 minimax polynomial evaluated in Horner form:
# about 6 multiply-adds (a 2-ulp fp32 exp needs degree 5-6 after reduction to [-ln2/2, ln2/2])
NONLINEAR_MACS = 6


@register
@dataclass(frozen=True)
class DigitalReference(Architecture):
    """A 32-bit floating-point digital accelerator (see the module docstring for the model)."""

    mac_units: int = param(168, "1", "Eyeriss v1 PE count (Chen et al., IEEE JSSC 52(1), 2017)", lo=1, hi=10**7)
    clock_hz: float = param(200e6, "1/s", "Eyeriss v1 core clock (same paper)", lo=1.0, hi=1e11)
    mul_energy_j: float = param(HOROWITZ_FP32_MUL_J, "J", f"{_H}: fp32 multiply 3.7 pJ", lo=1e-18, hi=1e-6)
    add_energy_j: float = param(HOROWITZ_FP32_ADD_J, "J", f"{_H}: fp32 add 0.9 pJ", lo=1e-18, hi=1e-6)
    nonlinear_macs: int = param(NONLINEAR_MACS, "1", "(est.) fp32 multiply-adds of one transcendental evaluation "
                                "(sigmoid, exp, tanh): range reduction and a degree-5 polynomial in Horner form",
                                lo=1, hi=1000)
    weight_read_energy_j_per_byte: float = param(HOROWITZ_SRAM_1MB_64BIT_J / 8, "J/B",
                                                 f"{_H}: 1 MB SRAM, 100 pJ per 64-bit read", lo=1e-18, hi=1e-6)
    act_access_energy_j_per_byte: float = param(HOROWITZ_SRAM_32KB_64BIT_J / 8, "J/B",
                                                f"{_H}: 32 KB SRAM, 20 pJ per 64-bit read", lo=1e-18, hi=1e-6)
    mac_area_m2: float = param(HOROWITZ_FP32_MUL_AREA_M2 + HOROWITZ_FP32_ADD_AREA_M2, "m^2",
                               f"{_H}: fp32 multiplier 7700 um^2 + adder 4184 um^2", lo=1e-15, hi=1.0)
    bytes_per_value: int = param(4, "B", "fp32", lo=1, hi=64)

    name = "digital"
    description = ("floating-point reference: fp32 network on a digital 45 nm accelerator "
                   "(Horowitz ISSCC 2014 energies, Eyeriss-sized 168-MAC array at 200 MHz)")
    maps_to_crossbars = False
    cost_only = ("*",)   # the network runs in floating point whatever the accelerator's figures

    # ------------------------------------------------------------------ inventory
    def inventory(self) -> tuple[Component, ...]:
        power = self.mac_units * self.clock_hz * (self.mul_energy_j + self.add_energy_j)
        return (Component(f"fp32 MAC array ({self.mac_units} units)", "mac_array", "chip", self.mac_units, power,
                          self.mac_units * self.mac_area_m2, f"{_H}; MAC array at full utilisation", macro=True),)

    def peak_ops_per_s(self) -> float:
        return 2 * self.mac_units * self.clock_hz    # one MAC = 2 operations

    def summary(self) -> dict:
        out = super().summary()
        out["power_scope"] = "MAC array at full utilisation; SRAM energy is counted per access in runs"
        out["area_scope"] = "MAC array only (the source gives no SRAM area)"
        return out

    # ------------------------------------------------------------------ costs
    def event_costs(self) -> dict[str, EventCost]:
        return {
            ev.MAC: EventCost("mac_array", self.mul_energy_j + self.add_energy_j),
            ev.ADD: EventCost("alu", self.add_energy_j),
            ev.MUL: EventCost("alu", self.mul_energy_j),
            ev.COMPARE: EventCost("alu", self.add_energy_j),  # a comparison is a subtraction
            ev.NONLINEAR: EventCost("alu", self.nonlinear_macs * (self.mul_energy_j + self.add_energy_j)),
            ev.WEIGHT_READ: EventCost("weight_sram", self.bytes_per_value * self.weight_read_energy_j_per_byte),
            ev.ACT_READ: EventCost("act_sram", self.bytes_per_value * self.act_access_energy_j_per_byte),
            ev.ACT_WRITE: EventCost("act_sram", self.bytes_per_value * self.act_access_energy_j_per_byte),
        }

    def emitted_events(self, input_signed: bool = False) -> set[str]:
        return set(PROFILE_EVENTS)

    def layer_latency_s(self, events: Mapping[str, float]) -> float:
        ops = sum(events.get(k, 0) for k in ev.DIGITAL_OPS) + self.nonlinear_macs * events.get(ev.NONLINEAR, 0)
        return math.ceil(ops / self.mac_units) / self.clock_hz

    def timing(self, ledger: EventLedger, plans: Mapping[str, LayerPlan], kinds: Mapping[str, str]) -> Timing:
        """Compute bound, no overlap between layers: one inference after another."""
        latency = {l: self.layer_latency_s(ledger.layer(l)) for l in ledger.layers()}
        return Timing(latency, sum(latency.values()))
