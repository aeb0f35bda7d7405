"""Mutation-audit tests (architecture cost models, part 2): the readouts of the architectures compared against
ISAAC (CASCADE, Neural-PIM, HCiM, the ADC-less SNN chip, SME) and the digital reference. Each expected number is
derived by hand from the paper parameter cited in the code or from ISAAC Table 6 (Shafiee et al., ISCA 2016, 32 nm):

* ISAAC's cell read: 2.4 mW per 8 arrays of 128 x 128 cells over a 100 ns read = 1.8310546875 fJ per cell read;
  a cell 0.0002 mm^2 / (8 x 128 x 128); a shift-and-add 0.05 mW at 2.56 G ops/s = 19.53125 fJ;
* supplies (Stillmaker & Baas, as tabulated): 0.9 V at 32 nm, 1.1 V at 65 nm; an energy moves between nodes as
  (node ratio) x (supply ratio)**2, an area as (node ratio)**2.
"""

import pytest

from cimsim import arch
from cimsim import events as ev
from cimsim.cost import LayerPlan
from cimsim.ledger import EventLedger

CELL_READ_100NS_J = 2.4e-3 / 8 * 100e-9 / (128 * 128)
CELL_AREA_M2 = 0.0002e-6 / (8 * 128 * 128)
SHIFT_ADD_J = 0.05e-3 / (8 * 1.28e9 / 4)
E_32_TO_65 = (65 / 32) * (1.1 / 0.9) ** 2


# ------------------------------------------------------------------------------------------------ CASCADE
def test_cascade_buffers_every_column_pair_of_every_array_each_cycle():
    """8 arrays of 32 column pairs per IMA each write one value into the buffer and read it back per cycle; the
    cycle is the buffer's 20 ns write pulse (est.). One value: 1 V x 1 uA x 20 ns written plus a cell read of 10 ns
    (a tenth of ISAAC's 100 ns cell read)."""
    a = arch.get("cascade")
    assert a.cycle_s == pytest.approx(20e-9, rel=1e-12)
    row = next(c for c in a.inventory() if c.kind == "buffer")
    per_value = 1.0 * 1e-6 * 20e-9 + CELL_READ_100NS_J / 10
    assert row.power_w == pytest.approx(8 * 32 * per_value / 20e-9, rel=1e-12)


# ------------------------------------------------------------------------------------------------ Neural-PIM
# an NNADC of 8 bits: 10 stages of 16 cells and 5 inverters, each evaluated for 1 ns (1 GS/s); an inverter neuron
# draws 10 uA at 0.9 V for it; a cell spends ISAAC's cell read over 1 ns
NNADC_8B_J = 10 * 16 * CELL_READ_100NS_J / 100 + 10 * 5 * 0.9 * 10e-6 * 1e-9
# an NNS+A: 6 cells and 3 inverters for 1 ns
NNSA_J = 6 * CELL_READ_100NS_J / 100 + 3 * 0.9 * 10e-6 * 1e-9


def test_neural_pim_converts_every_pair_once_per_mvm_and_books_the_analog_steps_to_the_nns_a():
    a = arch.get("neural-pim")
    assert a.adc.energy_j == pytest.approx(NNADC_8B_J, rel=1e-12)
    row = next(c for c in a.inventory() if c.kind == "adc")
    # 8 crossbars x 64 pairs per IMA, each converted once per MVM of 8 cycles of 10 ns
    assert row.power_w == pytest.approx(512 / (8 * 10e-9) * NNADC_8B_J, rel=1e-12)
    step = a.event_costs()[ev.ANALOG_ACCUMULATIONS]
    assert step.component == "nns_a" and step.energy_j == pytest.approx(NNSA_J, rel=1e-12)
    assert a.event_costs()[ev.conversion("nn-adc", 8)].component == "adc"


def test_neural_pim_periphery_area_is_fixed_at_the_papers_8_bit_nnadc():
    """The area booked beyond our circuit counts is sized once for 8-bit NNADCs, so the chip at 6 bits is smaller by
    exactly its NNADCs' two stages fewer: 280 tiles x 12 IMAs x 8 NNADCs x 2 x (16 cells + 5 inverters of 0.1 um^2)."""
    eight, six = arch.get("neural-pim"), arch.get("neural-pim", adc_bits=6)
    per_nnadc = 2 * (16 * CELL_AREA_M2 + 5 * 0.1e-12)
    assert eight.area_m2 - six.area_m2 == pytest.approx(280 * 12 * 8 * per_nnadc, rel=1e-9)


# ------------------------------------------------------------------------------------------------ HCiM
def test_hcim_scale_factor_additions_scale_with_their_bits():
    """A DCiM addition is one ISAAC shift-and-add (16 bits at 32 nm), scaled to scale_bits."""
    for bits in (8, 16, 32):
        a = arch.get("hcim", scale_bits=bits)
        cost = a.event_costs()[ev.NONZERO_DECISIONS]
        assert cost.component == "dcim"
        assert cost.energy_j == pytest.approx(SHIFT_ADD_J * bits / 16, rel=1e-12)


def test_hcim_adc_layers_sample_and_hold_each_column_pair():
    """The ADC-read layers convert each pair's PS+ - PS-: one sample-and-hold per column pair, 8 x 64 per IMA, each
    ISAAC's (10 uW per 1024)."""
    a = arch.get("hcim", adc_layers="first")
    row = next(c for c in a.inventory() if c.kind == "sample_hold")
    assert row.count == 8 * 64
    assert row.power_w == pytest.approx(512 * 10e-6 / 1024, rel=1e-12)
    assert row.area_m2 == pytest.approx(512 * 0.00004e-6 / 1024, rel=1e-12)


# ------------------------------------------------------------------------------------------------ ADC-less SNN
def test_snn_outputs_leave_the_tile_as_one_bit_spikes():
    a = arch.get("adcless-snn")
    plan = LayerPlan("fc", "Linear", in_features=64, out_features=32, groups=1, positions=10, arrays=1, input_bits=1)
    out = a.dataflow_events(plan, {})
    assert out[ev.INPUT_REGISTER_BYTES] == 10 * 64 / 8
    assert out[ev.OUTPUT_REGISTER_BYTES] == 10 * 32 / 8
    assert out[ev.EDRAM_BYTES] == out[ev.BUS_BYTES] == 10 * 64 / 8 + 10 * 32 / 8


def test_snn_accumulation_is_a_shift_and_add_scaled_to_65_nm_and_its_bits():
    for bits in (16, 32):
        a = arch.get("adcless-snn", accumulator_bits=bits)
        assert a.event_costs()[ev.NONZERO_DECISIONS].energy_j == pytest.approx(
            SHIFT_ADD_J * E_32_TO_65 * bits / 16, rel=1e-12)
    hp = arch.get("snn-hpadc", accumulator_bits=32)
    assert hp.event_costs()[ev.SHIFT_ADDS].energy_j == pytest.approx(SHIFT_ADD_J * E_32_TO_65 * 2, rel=1e-12)


def test_snn_lif_layers_run_on_every_tiles_lif_units():
    """168 tiles x 8 LIF units, each updating a neuron every 5 ns (the paper's unit); one update costs
    1.20 mW x 5 ns at 65 nm."""
    a = arch.get("adcless-snn")
    n = 1e6
    cost = a.cost(EventLedger({"lif": {ev.COMPARE: n}}), {}, {"lif": "LIF"})
    assert cost.latency_per_layer["lif"] == pytest.approx(n / (168 * 8 / 5e-9), rel=1e-12)
    assert a.event_costs()[ev.LIF_UPDATES].energy_j == pytest.approx(1.20e-3 * 5e-9, rel=1e-12)


def test_snn_cycle_waits_for_the_accumulators_at_the_clock():
    """One accumulator per cols_per_accumulator columns adds one partial sum per 1 GHz clock: 16 columns take 16 ns,
    longer than the 10 ns read."""
    assert arch.get("adcless-snn", cols_per_accumulator=16).cycle_s == pytest.approx(16e-9, rel=1e-12)
    assert arch.get("snn-hpadc", cols_per_accumulator=32).cycle_s >= 32e-9


# ------------------------------------------------------------------------------------------------ SME, digital
def test_sme_index_tables_hold_an_entry_per_row_and_per_column_of_every_crossbar():
    """(est.) 16-bit entries for 128 rows and 128 columns of each of 8 crossbars per IMA, in 6T SRAM of 0.171 um^2
    a bit doubled for its periphery."""
    a = arch.get("sme")
    per_ima = 8 * (128 + 128) * 16 * 0.171e-12 * 2
    assert a.breakdown()["index"]["area_m2"] == pytest.approx(168 * 12 * per_ima, rel=1e-12)


def test_digital_reference_times_a_transcendental_as_its_multiply_adds():
    """168 sigmoids of 6 multiply-adds each on 168 MAC units at 200 MHz: 6 cycles = 30 ns."""
    d = arch.get("digital")
    assert d.layer_latency_s({ev.NONLINEAR: 168}) == pytest.approx(6 / 200e6, rel=1e-12)
    assert d.layer_latency_s({ev.NONLINEAR: 168, ev.ADD: 168}) == pytest.approx(7 / 200e6, rel=1e-12)
