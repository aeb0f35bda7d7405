"""Neural-PIM (arch/neural_pim.py): its organisation, one conversion per MVM and column pair, the chain's
SINAD, and what it saves against ISAAC at the same precision."""

from dataclasses import replace

import numpy as np
import pytest

import cimsim
from cimsim import events
from cimsim.devices import IdealCell, IdealReadout
from cimsim.readouts import PER_MVM


def test_organisation_of_the_paper():
    a = cimsim.arch.get("neural-pim")
    spec = a.crossbar_spec()
    assert (spec.rows, spec.cols, spec.cell_bits, spec.weight_bits, spec.input_bits, spec.dac_bits) == \
        (128, 128, 1, 8, 8, 1)
    assert spec.signed == "differential" and spec.pair_readout and spec.conversion == PER_MVM
    assert a.tiles == 280 and a.node_nm == 32 and a.slices == 14 and a.input_cycles == 8


def test_the_chain_sinad_through_the_trained_circuits():
    """Neural-PIM: the NNS+A + NNADC chain reaches about 50 dB SINAD. Ours, measured on a full-scale sine through
    the engine's conversion (the trained NNADC's transfer, the trained NNS+A's error over 8 cycles): 45.8 dB,
    asserted within 44-48 dB (the feedback amplifiers' finite gain, 10**3 est., costs the gap; an ideal
    8-bit quantizer gives 49.9 dB on this sine)."""
    a = cimsim.arch.get("neural-pim")
    assert a.adc.chain_sigma_fs == a.nns_a.error_sigma_fs > 0
    assert 44.0 < a.sinad_db() < 48.0
    ideal = cimsim.arch.get("neural-pim", **{"adc.trained": 0})
    assert ideal.adc.chain_sigma_fs == 0 and ideal.sinad_db() == pytest.approx(49.9, abs=0.2)
    # with the training's 0.025 variation left in the cells at inference, an uncalibrated pipeline collapses
    assert cimsim.arch.get("neural-pim", **{"adc.variation_sigma": 0.025}).sinad_db() < 20


def test_one_conversion_per_mvm_and_pair_and_one_analog_step_per_cycle():
    """Conversions: one per (column pair, row block) per MVM, i.e. 7 slices x outputs x row blocks; NNS+A steps:
    one per pair, cycle and row block. ISAAC at the same 8-bit precision converts every column of every cycle:
    4 slices (2-bit cells) x 8 cycles per output and row block, 32/7 = 4.6x more conversions."""
    rng = np.random.default_rng(0)
    W = rng.integers(-127, 128, size=(9, 300))
    x = rng.integers(0, 256, size=(5, 300))
    npim = cimsim.arch.get("neural-pim")
    xb = cimsim.Crossbar(W, replace(npim.crossbar_spec(), cell=IdealCell()))
    xb.calibrate(x)
    xb(x)
    led = xb.ledger.to_dict()["crossbar"]
    blocks = 3
    assert led[events.conversion("nn-adc", 8)] == 5 * 7 * 9 * blocks
    assert led[events.ANALOG_ACCUMULATIONS] == 5 * 8 * 7 * 9 * blocks
    isaac = cimsim.arch.get("isaac", weight_bits=8, input_bits=8)
    xi = cimsim.Crossbar(W, replace(isaac.crossbar_spec(), cell=IdealCell()))
    xi.calibrate(x)
    xi(x)
    assert events.conversions(xi.ledger.to_dict()["crossbar"]) == 5 * 8 * 4 * 9 * blocks


def test_ideal_devices_and_a_lossless_readout_give_the_integers():
    rng = np.random.default_rng(1)
    W = rng.integers(-127, 128, size=(6, 200))
    x = rng.integers(0, 256, size=(4, 200))
    spec = replace(cimsim.arch.get("neural-pim").crossbar_spec(), cell=IdealCell(), readout=IdealReadout())
    assert np.array_equal(cimsim.Crossbar(W, spec)(x), x @ W.T)


def test_area_and_power_without_adcs_per_cycle():
    """The NNADCs take a small share of the chip (one per crossbar, a few hundred cells and inverters each),
    where ISAAC's ADCs take the largest share of its IMAs."""
    bd = cimsim.arch.get("neural-pim").breakdown()
    total = sum(r["area_m2"] for r in bd.values())
    assert bd["adc"]["area_m2"] / total < 0.01
    ib = cimsim.arch.get("isaac").breakdown()
    assert ib["adc"]["area_m2"] / sum(r["area_m2"] for r in ib.values()) > 0.2


def _exact_network_check(arch):
    """A small CNN mapped with ideal cells and a lossless readout: the analog mode equals the quantized
    network's integer model (the digital mode) bit for bit."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 5)).eval()
    x = torch.rand(6, 1, 8, 8)
    mapped = cimsim.map(model, arch, calibration=x, progress=False)
    analog = mapped.set_mode("analog")(x)
    digital = mapped.set_mode("digital")(x)
    assert torch.equal(analog, digital), arch.name
    return analog


def test_a_mapped_network_is_exact_with_ideal_devices_and_a_lossless_nnadc():
    # 16 rows: an MVM's value spans +-16 x 255, which a 13-bit NNADC over the full range holds with a 1-level LSB
    out = _exact_network_check(cimsim.arch.get("neural-pim", cell="ideal", rows=16, cols=16, adc_bits=13, adc_range="full",
                                         **{"adc.trained": 0}))
    assert out.count_nonzero() > 0   # the equality is not that of two all-zero outputs


def test_arrays_take_the_share_of_a_tile_the_paper_states():
    """Neural-PIM states its arrays are 0.71 % of its area at equal area with ISAAC (ISAAC 0.68 %: ours 0.645 % of a
    tile from Table 6). Our NNADC and NNS+A counts alone leave the arrays 1.0 % of a tile; the neural periphery's
    area beyond them is booked so the share is the paper's, with no power; 0 turns it off."""
    import cimsim

    def share(a):
        inv = a.inventory()
        tile = sum(c.area_m2 * (a.imas_per_tile if c.level == "ima" else 1) for c in inv if c.level in ("ima", "tile"))
        return next(c for c in inv if c.kind == "crossbar").area_m2 * a.imas_per_tile / tile

    point = dict(weight_bits=8, input_bits=8, node_nm=32)
    a = cimsim.arch.get("neural-pim", **point)
    assert share(a) == pytest.approx(0.0071, rel=1e-9)
    extra = next(c for c in a.inventory() if c.kind == "nn_area")
    assert extra.power_w == 0 and extra.area_m2 > 0
    bare = cimsim.arch.get("neural-pim", tile_array_density=0, **point)
    assert not any(c.kind == "nn_area" for c in bare.inventory())
    assert share(bare) == pytest.approx(0.0100, abs=0.0005)
    assert share(cimsim.arch.get("isaac", **point)) == pytest.approx(0.00645, abs=0.00005)
    # a density below what our counts already give adds nothing
    assert not any(c.kind == "nn_area" for c in cimsim.arch.get("neural-pim", tile_array_density=0.02, **point).inventory())
