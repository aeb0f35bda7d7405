"""The counting tile (cimsim/crossbar_count.py): the engine's ledger and the exact product without programmed cells.
With ideal devices and a lossless readout the engine gives the exact integer product, so both run the same
activations and must count the same events (conductance-seconds to float rounding, the rest exactly)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim import events
from cimsim.crossbar_count import CountingCrossbar
from cimsim.devices import IdealReadout
from cimsim.errors import ConfigError
from cimsim.mappers import evaluate


def _same_ledger(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for layer in a:
        assert set(a[layer]) == set(b[layer]), layer
        for e, v in a[layer].items():
            if e == events.CELL_READ_CONDUCTANCE_S:
                assert b[layer][e] == pytest.approx(v, rel=1e-12), (layer, e)
            else:
                assert b[layer][e] == v, (layer, e)


@pytest.mark.parametrize("name, kw, signed", [
    ("isaac", {}, False),                                          # 16-bit inputs, 2-bit cells, offset weights
    ("isaac", {"weight_bits": 8, "input_bits": 8}, True),         # signed inputs: the sign bit's own cycle
    ("isaac", {"input_bits": 18, "dac_bits": 2}, False),          # above the digit tables: digits cut per cycle
    ("neural-pim", {}, False),                                     # differential pairs, one conversion per MVM
    ("cascade", {"weight_bits": 8, "input_bits": 8}, False),      # groups of 2 cycles and 7 slices, all row blocks
])
def test_a_counting_tile_counts_what_the_engine_counts(name, kw, signed):
    """The ReRAM cells of each architecture (their read energy is data dependent) with a lossless readout."""
    rng = np.random.default_rng(0)
    a = cimsim.arch.get(name, **kw)
    spec = replace(a.crossbar_spec(input_signed=signed), readout=IdealReadout())
    W = rng.integers(-(2 ** (a.weight_bits - 1)) + 1, 2 ** (a.weight_bits - 1), size=(37, 300))
    hi = 2 ** (spec.input_bits - 1) if signed else 2 ** spec.input_bits
    x = rng.integers(-hi if signed else 0, hi, size=(9, 300)) * (rng.random((9, 300)) < 0.6)
    xb, ct = cimsim.Crossbar(W, spec, seed=0), CountingCrossbar(W, spec)
    assert (ct.arrays, ct.row_blocks, ct.conversions_per_mvm()) == (xb.arrays, xb.row_blocks, xb.conversions_per_mvm())
    assert np.array_equal(xb(x), ct(x)) and np.array_equal(ct(x), x @ W.T)
    xb(x)
    _same_ledger(xb.ledger.to_dict(), ct.ledger.to_dict())
    assert ct.ledger.to_dict()["crossbar"][events.CELL_READ_CONDUCTANCE_S] > 0


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 4 * 4, 10)).eval()


@pytest.mark.parametrize("name, kw", [
    ("isaac", {"adc_bits": 9, "adc_range": "full"}),
    ("neural-pim", {"adc.trained": 0, "adc_bits": 14, "adc_range": "full", "rows": 16, "cols": 16}),   # 13-bit sums
    # slices summed in pairs (a whole weight's sum over 4 row blocks needs 18 bits, beyond the ADC model's 16)
    ("cascade", {"adc_bits": 14, "adc_range": "full", "buffer.write_sigma_frac": 0, "tia.temperature_k": 0,
                 "slices_per_conversion": 2}),
])
def test_a_network_costs_the_same_counted_as_simulated(name, kw):
    """Lossless readouts and the ideal cell: the engine's report and the counting tiles' agree on every layer's
    events, the energy, the throughput and the accuracy."""
    a = cimsim.arch.get(name, cell="ideal", weight_bits=8, input_bits=8, **kw)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 20, 20, generator=g)
    y = torch.randint(0, 10, (6,), generator=g)
    sim = evaluate(_net(), a, [(x, y)], calibration=[(x, y)], progress=False)
    cnt = evaluate(_net(), a, [(x, y)], calibration=[(x, y)], progress=False, backend="count")
    _same_ledger({"net": sim.config["events_per_inference"]}, {"net": cnt.config["events_per_inference"]})
    assert cnt.accuracy == sim.accuracy
    assert cnt.energy_j == pytest.approx(sim.energy_j, rel=1e-12)
    assert cnt.throughput_inf_per_s == sim.throughput_inf_per_s
    for r, s in zip(cnt.layers, sim.layers):
        assert r["energy_j"] == pytest.approx(s["energy_j"], rel=1e-12), r["name"]


def test_counting_refuses_what_it_cannot_count():
    with pytest.raises(ConfigError, match="count.*CPU"):
        cimsim.map(_net(), cimsim.arch.get("isaac"), calibration=torch.rand(2, 1, 20, 20), backend="count",
                   device="cuda")
    with pytest.raises(ConfigError, match="2-D"):
        CountingCrossbar(np.zeros(3), cimsim.arch.get("isaac").crossbar_spec())


def test_the_row_conductances_do_not_depend_on_the_slicing_chunk(monkeypatch):
    from cimsim import crossbar_count

    rng = np.random.default_rng(2)
    W = rng.integers(-127, 128, size=(20, 333))
    spec = cimsim.arch.get("neural-pim").crossbar_spec()
    whole = CountingCrossbar(W, spec)
    monkeypatch.setattr(crossbar_count, "COUNT_CHUNK_CELLS", 20 * 2 * 8 * 7)   # 7 inputs a chunk
    chunked = CountingCrossbar(W, spec)
    assert np.array_equal(whole.g_rowsum, chunked.g_rowsum)
    assert chunked.slices.levels.shape == (7, 2, 20, 333) and chunked.slices.levels.strides == (0, 0, 0, 0)
    xb = cimsim.Crossbar(W, spec)
    assert np.allclose(chunked.g_rowsum, np.concatenate(xb.g_rowsum), rtol=1e-12, atol=0)
