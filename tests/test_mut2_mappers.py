"""Mutation-audit tests (part 2): ADMM's projection grid, the ADC range rule of fine-tuning, the MAC count a report
gives a grouped layer, and the node scaling of CASCADE's and Neural-PIM's analog circuits; expected numbers by hand."""

import pytest
import torch

from cimsim import arch
from cimsim import events as ev
from cimsim.cost import LayerPlan
from cimsim.devices.analog_accumulators import NeuralShiftAdd, TransimpedanceAmplifier
from cimsim.ledger import EventLedger
from cimsim.mappers import admm
from cimsim.mappers.mapped import quantize_weights
from cimsim.mappers.qat_ops import adc_range
from cimsim.report import cost_report


def test_admm_projects_onto_the_mappers_symmetric_grid():
    """4 bits: levels -7 .. 7 times amax / 7 per output channel (the mapper's quantizer), never 8 / 8."""
    w = torch.tensor([[1.0, 0.5, 0.25, -0.1], [0.0, -2.0, 0.3, 1.0]], dtype=torch.float64)
    q = admm.quantize_to_grid(w, 4)
    expect = torch.tensor([[7, 4, 2, -1], [0, -7, 1, 4]], dtype=torch.float64) * torch.tensor([[1 / 7], [2 / 7]],
                                                                                              dtype=torch.float64)
    assert torch.allclose(q, expect, rtol=0, atol=1e-12)
    ints, scale = quantize_weights(w, 4)
    assert torch.allclose(q, torch.from_numpy(ints * scale[:, None]), rtol=0, atol=1e-12)


def test_the_adc_range_of_fine_tuning_is_the_engines_calibration_rule():
    """[-p, max(p, 1 - p)] with p numpy's 99.9th percentile of |PS|: 999 zeros and a one give p = 0.001 (linear
    interpolation at index 998.001), so the range is (-0.001, 0.999); a larger p is its own top."""
    ps = torch.zeros(1000, dtype=torch.float64)
    ps[0] = 1.0
    lo, hi = adc_range(ps)
    assert lo == pytest.approx(-0.001, rel=1e-9) and hi == pytest.approx(0.999, rel=1e-9)
    big = torch.arange(-5.0, 6.0, dtype=torch.float64)     # |PS| sorted 0 1 1 2 2 3 3 4 4 5 5: index 9.99 -> 5
    assert adc_range(big) == (-5.0, 5.0)


def test_a_reports_macs_of_a_grouped_layer_are_positions_x_reduction_x_outputs():
    """A depthwise 3x3 convolution of 8 channels at 16 positions: each output reduces its own 9 inputs, so
    16 x 9 x 8 = 1152 MACs (in_features is the reduction of one group; out_features counts every group's outputs)."""
    a = arch.get("isaac")
    plan = LayerPlan("dw", "Conv2d", in_features=9, out_features=8, groups=8, positions=16, arrays=1)
    rep = cost_report(a, EventLedger({"dw": {ev.ARRAY_READ_CYCLES: 1.0}}), {"dw": plan}, {"dw": "Conv2d"})
    assert rep.layers[0]["macs"] == 16 * 9 * 8


def test_the_analog_circuits_scale_to_the_node_they_are_placed_at():
    """An NNS+A (6 cells, 3 inverters, 1 ns) at 65 nm: its cells' 32 nm read energy (ISAAC Table 6 over 1 ns) scaled
    by (65/32) x (1.1/0.9)**2, its inverters at the 65 nm supply of 1.1 V. A TIA's 50 um^2 (at 65 nm) at 32 nm:
    x (32/65)**2."""
    cell_32 = 2.4e-3 / 8 * 100e-9 / (128 * 128) / 100
    e65 = 6 * cell_32 * (65 / 32) * (1.1 / 0.9) ** 2 + 3 * 1.1 * 10e-6 * 1e-9
    assert NeuralShiftAdd(node_nm=65).energy_j == pytest.approx(e65, rel=1e-12)
    assert TransimpedanceAmplifier(node_nm=32).area_m2 == pytest.approx(50e-12 * (32 / 65) ** 2, rel=1e-12)
    assert TransimpedanceAmplifier().area_m2 == pytest.approx(50e-12, rel=1e-12)
