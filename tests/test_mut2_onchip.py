"""Mutation-audit tests (part 2): the on-chip learning update rules and their cost (cimsim.workloads.onchip*), with
hand-derived numbers: the MOSFET synapse's defaults (arXiv 1907.00625 setup, est.) cross their 1.25 V gate window in
250 pulses of 5 mV; a pulse draws 1.8 V x 100 nA x 5 ns = 0.9 fJ; its read is 0.05 V for 10 ns."""


import numpy as np
import pytest

from cimsim import events as ev
from cimsim.devices import MOSFETSynapse, SarADC
from cimsim.ledger import EventLedger
from cimsim.workloads import onchip
from cimsim.workloads.onchip_network import SynapticLayer

QUIET = MOSFETSynapse(read_noise_rel=0.0, program_sigma_v=0.0, c2c_sigma_rel=0.0)


def _net(cell=QUIET, **overrides):
    cfg = onchip.default_config("mosfet", "iris", **overrides)
    return onchip.OnChipNetwork([4, 8, 3], cell, cfg), cfg


def test_one_pulse_on_a_pair_moves_its_weight_by_two_device_steps():
    """+1 pulse on G+ and -1 on G-: (G+ - G-) moves by 2 window / 250, the weight by 2 w_max / 250."""
    net, cfg = _net(update_mode="count")
    layer = net.layers[1]
    assert layer.dw_per_pulse == pytest.approx(2 * cfg.w_max / 250, rel=1e-9)
    before = layer.weights().copy()
    dw = np.zeros_like(before)
    dw[1, 2], dw[0, 5] = 3 * layer.dw_per_pulse, -2 * layer.dw_per_pulse
    layer.update(dw, net.circuit, None, EventLedger())
    assert np.allclose(layer.weights() - before, dw, rtol=0, atol=1e-9 * cfg.w_max)


def test_the_hidden_layers_error_is_backpropagated_through_the_sigmoids_derivative(monkeypatch):
    """One step on a 4-8-3 network of noiseless synapses read ideally: the last layer gets -lr e^T a / b with
    e = softmax(z) - onehot(y); the hidden one -lr (e W[:, :-1] * h (1 - h))^T x / b, W read back through the
    crossbar (its error quantized to 127 levels: a percent, far below the (1 - h) ~ 0.5 the derivative weighs)."""
    net, cfg = _net()
    got = {}
    real = SynapticLayer.update

    def record(self, dw, *args, **kwargs):
        got[self.name] = dw.copy()
        return real(self, dw, *args, **kwargs)

    monkeypatch.setattr(SynapticLayer, "update", record)
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 1, size=(3, 4)), np.array([0, 1, 2])
    w2 = net.layers[1].weights()
    z, acts = net.forward(x)
    lr, b = 0.5, len(y)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    e[np.arange(b), y] -= 1.0
    h = acts[1][:, :-1]
    e1 = np.clip((e @ w2[:, :-1]) * h * (1 - h), -1, 1)
    net.train_step(x, y, lr)
    assert np.allclose(got["fc2"], -lr * e.T @ acts[1] / b, rtol=1e-9, atol=1e-12)
    want = -lr * e1.T @ acts[0] / b
    assert np.linalg.norm(got["fc1"] - want) <= 0.03 * np.linalg.norm(want)


def test_a_width_modulated_pulse_costs_its_width_in_nominal_pulses():
    cell = QUIET
    circuit = onchip.UpdateCircuit(mode="width")
    g = np.full((1, 2), 0.5 * (cell.g_min_s + cell.g_max_s))
    _, pulses, energy, slots = circuit.apply(cell, g, np.array([[0.5, 2.25]]))
    assert pulses == 2 and slots == pytest.approx(2.75)
    assert energy == pytest.approx(2.75 * 1.8 * 100e-9 * 5e-9, rel=1e-12)


def test_learning_cost_reads_at_the_dac_step_and_a_read_cycle_is_the_read_then_the_conversion():
    """dac_bits 2: a digit unit is V_read / 3, so the conductance-seconds cost (0.05 / 3)**2 J per S s; a read cycle is
    the cell's 10 ns read followed by a 10 ns conversion (a SAR ADC at 1e8 S/s)."""
    led = EventLedger({"fc1": {ev.CELL_READ_CONDUCTANCE_S: 1e-6, "serial_read_cycles": 10.0}})
    cost = onchip.learning_cost(led, QUIET, SarADC(bits=4, sample_rate_hz=1e8), 2)
    assert cost["energy_by_component_j"]["cell_read"] == pytest.approx(1e-6 * (0.05 / 3) ** 2, rel=1e-12)
    assert cost["read_time_s"] == pytest.approx(10 * (10e-9 + 10e-9), rel=1e-12)
    one_bit = onchip.learning_cost(led, QUIET, SarADC(bits=4, sample_rate_hz=1e8), 1)
    assert one_bit["energy_by_component_j"]["cell_read"] == pytest.approx(1e-6 * 0.05 ** 2, rel=1e-12)


def test_a_dac_drive_of_on_chip_learning_is_held_for_the_cells_read_not_isaacs_cycle():
    # ISAAC's 1-bit DAC power (Table 6) held for the synapse's read: at a 10 ns read a tenth of the 100 ns cycle's
    from cimsim.devices.converters import ISAAC_DAC_POWER_W, IdealReadout
    from cimsim.workloads.onchip_network import learning_cost
    cell = MOSFETSynapse()
    ledger = EventLedger({"fc1": {"dac_drives": 1000.0}})
    cost = learning_cost(ledger, cell, IdealReadout(), dac_bits=1)
    assert cost["energy_by_component_j"]["dac"] == pytest.approx(1000 * ISAAC_DAC_POWER_W * cell.read_time_s, rel=1e-12)
    assert cell.read_time_s < 100e-9
