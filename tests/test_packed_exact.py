"""A packed tile whose groups take the CPU engine's lossless integer path (cimsim.packed): those groups count their
events without forming their columns, and the tile computes their part once as ``x @ M`` (M: their exact weights
spliced by the column tables). Outputs, ledgers and exact weights are compared bit for bit with the group-by-group
product (``PackedTile.EXACT = False``), on SME's squeezed tiles and ADMM's masked ones, signed and unsigned inputs,
with a noisy cell and a lossy ADC (where the groups fall back to their own calls)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import cimsim
from cimsim.devices import ReRAM, SarADC
from cimsim.layout import BitPlaneLayout
from cimsim.mappers import sme
from cimsim.mappers.admm import masked_groups, outputs_per_array
from cimsim import packed
from cimsim.packed import PackedTile

SME_SPEC = cimsim.arch.get("sme").crossbar_spec()
ISAAC_SPEC = cimsim.arch.get("isaac").crossbar_spec()


def laplace_weights(shape, scale, seed, bits=8):
    rng = np.random.default_rng(seed)
    top = 2 ** (bits - 1) - 1
    return np.clip(np.round(rng.laplace(0, scale, size=shape)), -top, top).astype(np.int64)


def sme_tile(spec, W, signed):
    return sme.packed_tile(W, replace(spec, input_signed=signed), BitPlaneLayout(0, 0.25), seed=3)[0]


def admm_tile(spec, W, signed):
    spec = replace(spec, input_signed=signed)
    return PackedTile(W.shape[0], W.shape[1], masked_groups(W, spec.rows, outputs_per_array(spec)), spec, seed=3)


def runs(monkeypatch, make, x_cal, xs):
    """{on: (each call's outputs, ledger, exact weights after each call, the groups' lossless calls)}."""
    out = {}
    for on in (True, False):
        monkeypatch.setattr(PackedTile, "EXACT", on)
        tile = make()
        tile.calibrate(x_cal)
        ys, ws = [], []
        for x in xs:
            ys.append(tile(x))
            ws.append(tile.exact_weights())
        out[on] = (ys, tile.ledger.to_dict(), ws, sum(xb._cpu.lossless_calls for xb in tile.crossbars))
    return out


def inputs(rng, bits, signed, batch, n):
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1)) if signed else (0, 2 ** bits)
    x = rng.integers(lo, hi, size=(batch, n))
    x[rng.random(x.shape) < 0.4] = 0     # sparse, as activations are
    x[0, 0], x[-1, -1] = lo, hi - 1
    return x


def case(kind, signed, reverse=False, adc_bits=8):
    """(a maker of the tile, W, the spec's input bits): SME's squeezed tile of 8-bit weights or ADMM's masked tile
    of 16-bit weights on ISAAC's arrays (groups in reverse order with ``reverse``), read by ``adc_bits`` ADCs (8, the
    architectures': every group's calibrated range holds its columns' worst case; 7: some groups' do not)."""
    if kind == "sme":
        W = laplace_weights((70, 300), 6.0, seed=1)
        W[:, 128:256] //= 16                      # a sparser row block: squeeze-out moves columns
        spec = replace(SME_SPEC, readout=replace(SME_SPEC.readout, bits=adc_bits))
        make = lambda: sme_tile(spec, W, signed)  # noqa: E731
    else:
        W = laplace_weights((40, 300), 900.0, seed=1, bits=16)
        W[16:32, 128:256] = 0                     # a pruned block: the masked layout skips its array
        spec = replace(ISAAC_SPEC, readout=replace(ISAAC_SPEC.readout, bits=adc_bits))
        make = lambda: admm_tile(spec, W, signed)  # noqa: E731
    if reverse:
        fwd = make
        make = lambda: PackedTile(W.shape[0], W.shape[1], fwd().groups[::-1], fwd().spec, seed=3)  # noqa: E731
    return make, W, spec.input_bits


@pytest.mark.parametrize("chunk_rows", [0, 7])
@pytest.mark.parametrize("signed,adc_bits", [(False, 8), (True, 8), (True, 7)])
@pytest.mark.parametrize("kind", ["sme", "admm"])
def test_the_packed_tile_is_the_group_by_group_product_bit_for_bit(monkeypatch, kind, signed, adc_bits, chunk_rows):
    """8-bit ADCs: every group's calibrated ADC covers its columns (the lossless path), and the tile is x @ W.T, for
    signed inputs too (their sign bit is a cycle of unsigned digits: the ranges stay unipolar). 7-bit ADCs: the
    calibrated ranges clip some groups (off the path): the group-by-group numbers. The exact product x @ M whole
    (EXACT_CHUNK_BYTES as it is) or 7 rows at a time (the last block short)."""
    make, W, bits = case(kind, signed, adc_bits=adc_bits)
    if chunk_rows:
        monkeypatch.setattr(packed, "EXACT_CHUNK_BYTES", 8 * W.shape[1] * chunk_rows)
    rng = np.random.default_rng(7)
    xs = [inputs(rng, bits, signed, n, W.shape[1]) for n in (300, 7)]
    got = runs(monkeypatch, make, inputs(rng, bits, signed, 64, W.shape[1]), xs)
    (ys_on, led_on, ws_on, calls_on), (ys_off, led_off, ws_off, calls_off) = got[True], got[False]
    for y_on, y_off in zip(ys_on, ys_off):
        assert y_on.dtype == y_off.dtype == np.float64 and np.array_equal(y_on, y_off)
    assert led_on == led_off and calls_on == calls_off
    assert all(w is None for w in ws_off)
    groups = len(make().groups)
    if adc_bits < 8:
        assert 0 < calls_on < 2 * groups and all(w is None for w in ws_on)
    else:
        assert calls_on == 2 * groups             # every group's call counted as lossless
        assert all(np.array_equal(y, x @ W.T) for y, x in zip(ys_on, xs))   # the engine's root identity
        assert all(np.array_equal(w, W.T) for w in ws_on)   # the tile's exact weights: the layer's


def test_groups_counted_before_a_group_off_the_path_form_their_columns_in_order(monkeypatch):
    """SME's tile with signed inputs and 7-bit ADCs, its groups reversed: the first ones take the lossless path
    (counted), a later one does not; those counted form their columns then, in the groups' order: the group-by-group
    numbers."""
    make, W, bits = case("sme", True, reverse=True, adc_bits=7)
    rng = np.random.default_rng(7)
    xs = [inputs(rng, bits, True, 300, W.shape[1])]
    got = runs(monkeypatch, make, inputs(rng, bits, True, 64, W.shape[1]), xs)
    tile = make()
    tile.calibrate(inputs(np.random.default_rng(7), bits, True, 64, W.shape[1]))
    tile(xs[0])
    lossless = [xb._cpu.lossless_calls for xb in tile.crossbars]
    assert lossless[0] == 1 and 0 in lossless     # the case the test is about: counted first, then one off the path
    assert np.array_equal(got[True][0][0], got[False][0][0])
    assert got[True][1] == got[False][1] and got[True][3] == got[False][3]


@pytest.mark.parametrize("change", ["read noise", "4-bit ADC"])
def test_groups_off_the_lossless_path_keep_their_own_calls(monkeypatch, change):
    """A noisy cell or an ADC that rounds: the tile's outputs and events are the group-by-group ones, and it reports
    no exact weights."""
    rng = np.random.default_rng(8)
    W = laplace_weights((70, 300), 6.0, seed=2)
    spec = replace(SME_SPEC, cell=ReRAM(read_sigma_frac=0.2)) if change == "read noise" \
        else replace(SME_SPEC, readout=SarADC(bits=4))
    xs = [inputs(rng, 8, False, 50, 300)]
    got = runs(monkeypatch, lambda: sme_tile(spec, W, False), inputs(rng, 8, False, 64, 300), xs)
    assert np.array_equal(got[True][0][0], got[False][0][0])
    assert not np.array_equal(got[True][0][0], xs[0] @ W.T)
    assert got[True][1] == got[False][1]
    assert got[True][2] == [None] and got[True][3] == got[False][3] == 0


def test_a_crossbar_counts_a_lossless_call_without_its_product():
    """``Crossbar(x, product=False)``: the events of the call ``Crossbar(x)`` would make, and None, where that call
    takes the lossless path; where it would not, nothing is counted and it returns False."""
    rng = np.random.default_rng(9)
    W = laplace_weights((20, 200), 900.0, seed=3, bits=16)
    x = inputs(rng, 16, False, 40, 200)
    counted, called = cimsim.Crossbar(W, ISAAC_SPEC, seed=1), cimsim.Crossbar(W, ISAAC_SPEC, seed=1)
    for xb in (counted, called):
        xb.calibrate(x)
    assert counted(x, product=False) is None
    called(x)
    assert counted.ledger == called.ledger and counted.ledger.layers()
    assert np.array_equal(counted.exact_weights(), W.T.astype(np.float64))
    lossy = cimsim.Crossbar(W, replace(ISAAC_SPEC, readout=SarADC(bits=4)), seed=1)
    lossy.calibrate(x)
    assert lossy(x, product=False) is False and not lossy.ledger.layers()


def test_the_mapped_sme_network_skips_its_exact_product_and_reports_the_same(monkeypatch):
    """A mapped layer whose packed tiles took the lossless path takes their outputs as its exact product (as it does
    a dense crossbar's): the same report, every layer exact."""
    from cimsim.mappers.mapped import MappedLayer

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(6 * 14 * 14, 10)).eval()
    x = torch.rand(8, 1, 14, 14, generator=torch.Generator().manual_seed(1))
    data = [(x, torch.arange(8) % 10)]
    exact_calls = []
    real = MappedLayer.exact_product
    monkeypatch.setattr(MappedLayer, "exact_product", lambda self, p: exact_calls.append(1) or real(self, p))
    reports = {}
    for on in (True, False):
        monkeypatch.setattr(PackedTile, "EXACT", on)
        exact_calls.clear()
        mapped = cimsim.map(net, cimsim.arch.get("sme"), calibration=x, seed=0, progress=False)
        reports[on] = (mapped.evaluate(data, progress=False).to_dict(), len(exact_calls))
    (on, n_on), (off, n_off) = reports[True], reports[False]
    assert n_on == 0 and n_off == 2              # off: one exact product per mapped layer for the one batch
    assert [r["rel_error"] for r in on["layers"] if r["arrays"]] == [0.0, 0.0]
    for key in ("accuracy", "energy_j", "latency_s"):
        assert on[key] == off[key]
    assert on["layers"] == off["layers"]
