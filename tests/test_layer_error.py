"""Per-layer error of a mapped network against its exact integer layers (and the ADC clipping rate), in the
report's table, JSON and HDF5."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.events import CLIPPED_CONVERSIONS
from cimsim.report import Report


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 6 * 6, 16), nn.ReLU(),
                         nn.Linear(16, 4)).eval()


def arch(**kw):
    base = dict(cell="ideal", weight_bits=8, input_bits=8)
    base.update(kw)
    return cimsim.arch.get("isaac", **base)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(12, 1, 8, 8, generator=g)
    return x, torch.arange(12) % 4


def test_a_lossless_readout_has_no_layer_error(data):
    x, y = data
    lossless = arch(adc_bits=9, adc_range="full")   # wider than any column sum of 2-bit cells x 128 rows
    rep = cimsim.map(small_net(), lossless, calibration=x, progress=False).evaluate([(x, y)], progress=False)
    errors = {r["name"]: r["rel_error"] for r in rep.layers}
    assert [errors[n] for n in ("0", "3", "5")] == [0.0, 0.0, 0.0]
    assert all(math.isnan(errors[n]) for n in ("1", "2", "4"))      # not on crossbars: no error to give
    assert "largest layer error   none: every mapped layer's output equals its exact integer product" in rep.table()


def test_the_error_is_the_rms_of_the_output_difference_over_every_batch(data):
    """rel_error = ||s (A - D)|| / ||s D|| accumulated over both batches equals the one computed from the
    crossbars' and the exact products of the layer's recorded inputs (ideal cells: deterministic)."""
    x, y = data
    mapped = cimsim.map(small_net(), arch(adc_bits=4), calibration=x, progress=False)
    layer = mapped.mapped_layers["3"]
    seen = []
    hook = layer.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach().clone()))
    rep = mapped.evaluate([(x[:5], y[:5]), (x[5:], y[5:])], progress=False)
    hook.remove()
    a = np.concatenate([layer.integer_product(layer._patches(layer.quantize_input(s))[0].numpy().astype(np.int64))
                        for s in seen])
    d = np.concatenate([layer._patches(layer.quantize_input(s))[0].numpy().astype(np.int64) @ layer.w_int.T
                        for s in seen]).astype(np.float64)
    scale = layer.plan.input_scale * layer.w_scale
    want = np.linalg.norm((a - d) * scale) / np.linalg.norm(d * scale)
    row = next(r for r in rep.layers if r["name"] == "3")
    assert 0.01 < want < 1 and row["rel_error"] == pytest.approx(want, rel=1e-9)
    assert rep.worst_layer()["rel_error"] == max(r["rel_error"] for r in rep.layers if r["name"] in ("0", "3", "5"))


def test_the_error_shrinks_with_adc_bits(data):
    x, y = data
    errors = {}
    for bits in (3, 5, 7):
        rep = cimsim.map(small_net(), arch(adc_bits=bits), calibration=x, progress=False).evaluate([(x, y)],
                                                                                                   progress=False)
        errors[bits] = {r["name"]: r["rel_error"] for r in rep.layers if r["name"] in ("0", "3", "5")}
    for name in ("0", "3", "5"):
        assert errors[3][name] >= errors[5][name] >= errors[7][name] >= 0, (name, errors)
        assert errors[3][name] > 0.1, (name, errors)   # 3 bits lose a lot everywhere
    assert errors[5]["3"] > errors[7]["3"]            # 216 rows: 5 bits still round the column sums
    # the first layer has 9 rows of 2-bit cells: column sums up to 27 fit 5 bits, and its output is exact
    assert errors[5]["0"] == 0.0


def test_clipping_rate_is_the_engines_clipped_conversions_over_each_layers_conversions(data):
    """The engine counts ADC conversions whose input lay outside the range: ADC ranges calibrated on dimmer
    images than the evaluated ones clip some conversions, a full-range wide ADC none; the column is
    clipped / conversions per mapped layer, NaN where a layer is not on crossbars."""
    x, y = data
    rep = cimsim.map(small_net(), arch(adc_bits=4, adc_range="calibrated"), calibration=0.3 * x,
                     progress=False).evaluate([(x, y)], progress=False)
    rows = {r["name"]: r for r in rep.layers}
    ledger = rep.config["ledger"]
    for name in ("0", "3", "5"):
        clipped = ledger[name].get(CLIPPED_CONVERSIONS, 0.0)
        assert rows[name]["clip_rate"] == pytest.approx(clipped / rows[name]["conversions"], rel=1e-12)
        assert 0 <= rows[name]["clip_rate"] < 1
    assert sum(ledger[n].get(CLIPPED_CONVERSIONS, 0.0) for n in ("0", "3", "5")) > 0
    assert math.isnan(rows["1"]["clip_rate"]) and "clipped" in rep.table()
    back = Report.from_json(rep.to_json())
    assert back.layers[0]["clip_rate"] == rows["0"]["clip_rate"]
    lossless = cimsim.map(small_net(), arch(adc_bits=9, adc_range="full"), calibration=x,
                          progress=False).evaluate([(x, y)], progress=False)
    assert all(r["clip_rate"] == 0 for r in lossless.layers if r["name"] in ("0", "3", "5"))


def test_layer_errors_survive_hdf5_and_strict_json(data, tmp_path):
    x, y = data
    rep = cimsim.map(small_net(), arch(adc_bits=4), calibration=x, progress=False).evaluate([(x, y)], progress=False)
    back = Report.from_hdf5(rep.to_hdf5(tmp_path / "r.h5"))
    for a, b in zip(rep.layers, back.layers):
        assert (math.isnan(a["rel_error"]) and math.isnan(b["rel_error"])) or a["rel_error"] == b["rel_error"]
    from cimsim.cli.common import strict_json

    text = json.dumps(strict_json(rep.to_dict()), allow_nan=False)   # NaN -> null, and back to NaN
    again = Report.from_json(text)
    assert math.isnan(again.layers[1]["rel_error"]) and again.layers[0]["rel_error"] == rep.layers[0]["rel_error"]
    table = rep.table()
    assert "rel. error" in table and "largest layer error" in table and "SNR" in table
