"""Signed inputs on bit-serial crossbars (:func:`cimsim.encoding.plane_layout`): two's complement whose sign bit
streams as a cycle of its own, its digit unipolar (0 or 1, driven like any bit) and its place value -2**(a-1) in the
digital shift-and-add. Every conversion of a signed layer then keeps the unipolar range of an unsigned one; with the
sign as a bipolar digit (-1) the calibrated ranges were [-p, p], one ADC bit lost on every cycle (the shipped
vit_mini's GELU-fed layers at 97-140 % relative error on ISAAC, its accuracy 87.05 % against 89.25 % digital)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import cimsim
from cimsim import Crossbar, CrossbarSpec
from cimsim.crossbar_count import CountingCrossbar
from cimsim.devices import IdealReadout, SarADC
from cimsim.encoding import input_parts, plane_weights
from cimsim.errors import ConfigError
from cimsim.readouts import ConversionScope
from cimsim.workloads import datasets, train

FMNIST = datasets.SYSTEM_ROOT / "fashion-mnist"
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


@needs_fmnist
@pytest.mark.parametrize("encoding", ["twos", "split"])
def test_the_shipped_vit_on_isaac_converts_its_signed_layers_as_exactly_as_its_unsigned_ones(encoding):
    """ISAAC's defaults (ideal cells, 8-bit ADCs calibrated on 256 training images), either input encoding: on 32
    test images every mapped layer's output equals its exact integer product, the four GELU-fed ``linear2`` and the
    LayerNorm-fed projections (signed inputs) as well as the unsigned ones; split signed codes are symmetric."""
    net, _ = train.load_checkpoint(train.SHIPPED_DIR / train.checkpoint_name("vit_mini", "fashion-mnist"))
    data = datasets.load("fashion-mnist")
    arch = cimsim.arch.get("isaac", input_encoding=encoding)
    mp = cimsim.map(net, arch, calibration=torch.as_tensor(data.x_train[:256]), progress=False)
    with torch.inference_mode():
        mp(torch.as_tensor(data.x_test[:32]))
    signed = {n for n, layer in mp.mapped_layers.items() if layer.plan.input_signed}
    assert {f"encoder.layers.{i}.linear2" for i in range(4)} <= signed and len(signed) >= 20
    low = -(2 ** 15) + (encoding == "split")                     # ISAAC's 16-bit inputs
    assert {mp.mapped_layers[n].code_range() for n in signed} == {(low, 2 ** 15 - 1)}
    assert {n: layer.rel_error() for n, layer in mp.mapped_layers.items()} == {n: 0.0 for n in mp.mapped_layers}


@pytest.mark.parametrize("dac,adc_bits,bound", [(1, 8, 0.0), (2, 9, 0.01)])
def test_a_signed_layer_keeps_a_unipolar_range(dac, adc_bits, bound):
    """A 256-row layer of random 8-bit weights (offset mapping, 2-bit cells, 128-row arrays), GELU-like 8-bit inputs
    (more than a fifth negative), ADCs calibrated per row block on 200 examples: the calibrated ranges are unipolar
    and the relative RMS error on 200 others stays within ``bound``: exact with ISAAC's 1-bit DACs and 8-bit ADCs,
    0.45 % with 2-bit DACs and 9-bit ADCs. With the sign as a bipolar digit (5641ef8) the ranges were [-p, p] and the
    same layer erred by 105 % and 39 %."""
    rng = np.random.default_rng(dac)
    z = rng.normal(size=(400, 256))
    g = z * 0.5 * (1 + np.tanh(0.7978845608 * (z + 0.044715 * z ** 3)))        # GELU
    x = np.clip(np.round(g / np.abs(g).max() * 127), -128, 127).astype(np.int64)
    assert (x < 0).mean() > 0.2
    W = rng.integers(-127, 128, size=(32, 256))
    spec = CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=8, input_bits=8, dac_bits=dac, signed="offset",
                        input_signed=True, adc_range="calibrated", readout=SarADC(bits=adc_bits))
    xb = Crossbar(W, spec, seed=1)
    xb.calibrate(x[:200])
    assert len(xb._range) == 2 and all(lo == 0.0 < hi for lo, hi in xb._range)
    ref = (x[200:] @ W.T).astype(np.float64)
    err = np.sqrt(np.mean((xb(x[200:]) - ref) ** 2) / np.mean(ref ** 2))
    assert err <= bound and (bound == 0.0 or err > 0)


def _gelu_inputs(rng, n, k, top=127):
    z = rng.normal(size=(n, k))
    g = z * 0.5 * (1 + np.tanh(0.7978845608 * (z + 0.044715 * z ** 3)))
    return np.clip(np.round(g / np.abs(g).max() * top), -top, top).astype(np.int64)


SPLIT_SPECS = {
    # ISAAC's tile: the lossless fused path (a full-range 9-bit ADC covers 128 rows x 3 levels), tables, bit-serial
    "isaac-full-adc": lambda: replace(cimsim.arch.get("isaac", weight_bits=8, input_bits=8).crossbar_spec(True),
                                      readout=SarADC(bits=9), adc_range="full"),
    "isaac-ideal-readout": lambda: replace(cimsim.arch.get("isaac", weight_bits=8, input_bits=8).crossbar_spec(True),
                                           readout=IdealReadout()),
    "2-bit-dac": lambda: CrossbarSpec(rows=64, cols=64, cell_bits=2, weight_bits=8, input_bits=7, dac_bits=2,
                                      signed="twos", input_signed=True, readout=IdealReadout()),
    # analog sums over cycles and arrays (a group spanning both parts is summed cycle by cycle)
    "cascade": lambda: replace(cimsim.arch.get("cascade", weight_bits=8, input_bits=8).crossbar_spec(True),
                               readout=IdealReadout()),
    "neural-pim": lambda: replace(cimsim.arch.get("neural-pim", weight_bits=8, input_bits=8).crossbar_spec(True),
                                  readout=IdealReadout()),
}


@pytest.mark.parametrize("name", list(SPLIT_SPECS))
def test_split_inputs_with_ideal_cells_and_a_lossless_readout_are_the_integer_product(name):
    """The engine's root identity for ``input_encoding="split"``: bit for bit ``x @ W.T``, its cycles twice the
    magnitude bits', on every CPU path and conversion scope, and in the counting tile (the same events as the
    engine's)."""
    spec = replace(SPLIT_SPECS[name](), input_encoding="split")
    rng = np.random.default_rng(3)
    top = 2 ** (spec.input_bits - 1) - 1
    x = _gelu_inputs(rng, 40, 300, top)
    x[0, :5] = [-top, top, 0, -1, 1]
    W = rng.integers(-127, 128, size=(24, 300))
    xb = Crossbar(W, spec, seed=2)
    xb.calibrate(x)
    assert np.array_equal(xb(x), (x @ W.T).astype(np.float64))
    assert xb.cycles == 2 * -(-(spec.input_bits - 1) // spec.dac_bits)
    half = xb.cycles // 2                                        # no conversion sums across the two passes
    assert all(t1 <= half or t0 >= half for t0, t1 in xb.cycle_groups())
    count = CountingCrossbar(W, spec)
    count(x)
    got, want = count.ledger.to_dict()["crossbar"], xb.ledger.to_dict()["crossbar"]
    g = "cell_read_conductance_s"          # a float sum, in another order
    assert got[g] == pytest.approx(want[g], rel=1e-12) and {**got, g: 0} == {**want, g: 0}
    with pytest.raises(ConfigError, match=r"split into a positive and a negative part"):
        xb(np.full((1, 300), -top - 1))


def test_split_inputs_do_not_cancel_noisy_planes():
    """512 rows of ISAAC's tile with 2 % read noise, GELU-like 8-bit inputs: two's complement errs by about 90 %
    (a small negative input sets every high bit; the shift-and-add cancels those planes' large values, not their
    noise), the split encoding by what two unsigned passes through the same tile err (7.4 %), within 20 %."""
    rng = np.random.default_rng(0)
    x = _gelu_inputs(rng, 600, 512)
    W = np.clip(np.round(rng.normal(0, 30, size=(64, 512))), -127, 127).astype(np.int64)
    ref = (x[300:] @ W.T).astype(np.float64)
    spec = cimsim.arch.get("isaac", weight_bits=8, input_bits=8, **{"cell.read_sigma_frac": 0.02}).crossbar_spec(True)

    def err(y):
        return float(np.sqrt(np.mean((y - ref) ** 2) / np.mean(ref ** 2)))

    got = {}
    for enc in ("twos", "split"):
        xb = Crossbar(W, replace(spec, input_encoding=enc), seed=1)
        xb.calibrate(x[:300])
        got[enc] = err(xb(x[300:]))
    xu = Crossbar(W, replace(spec, input_signed=False), seed=1)
    xp, xn = np.maximum(x, 0), np.maximum(-x, 0)
    xu.calibrate(np.concatenate([xp[:300], xn[:300]]))
    got["two passes"] = err(xu(xp[300:]) - xu(xn[300:]))
    assert got["twos"] > 5 * got["split"], got
    assert 0.8 < got["split"] / got["two passes"] < 1.2, got


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (the Triton digit cutter and fused kernels)"))])
@pytest.mark.parametrize("name", ["isaac-full-adc", "cascade"])
def test_split_inputs_on_the_torch_backend_are_the_numba_backends_numbers(name, device):
    """The torch backend reads split inputs as their digit source (the offset correction from the inputs' own sums):
    with read noise off, the same outputs and events as the numba backend, bit for bit; the offset-encoded ISAAC tile
    and CASCADE's analog sums."""
    spec = replace(SPLIT_SPECS[name](), input_encoding="split")
    rng = np.random.default_rng(5)
    x = _gelu_inputs(rng, 30, 200)
    W = rng.integers(-127, 128, size=(16, 200))
    got = []
    for backend in ("numba", "torch"):
        xb = Crossbar(W, spec, seed=2, backend=backend, device="cpu" if backend == "numba" else device)
        xb.calibrate(x)
        got.append((xb(x), xb.ledger.to_dict()["crossbar"]))
    assert np.array_equal(got[0][0], got[1][0]) and np.array_equal(got[0][0], (x @ W.T).astype(np.float64))
    g = "cell_read_conductance_s"
    assert got[1][1][g] == pytest.approx(got[0][1][g], rel=1e-12)
    assert {**got[0][1], g: 0} == {**got[1][1], g: 0}


def test_the_split_encoding_names_what_it_does_not_support():
    """HCiM's partial-sum fine-tuning and the SNN chips' sense-amp training model the 'twos' encoding only: one error
    naming the fix each; an unknown encoding names the choices."""
    spec = replace(CrossbarSpec(input_signed=True), input_encoding="split")
    with pytest.raises(ConfigError, match=r"choose one of twos, split"):
        replace(spec, input_encoding="sign-magnitude")
    for name in ("hcim", "adcless-snn"):
        with pytest.raises(ConfigError, match=r"models the 'twos' encoding only"):
            cimsim.arch.get(name, input_encoding="split")
    a = cimsim.arch.get("isaac", input_encoding="split", input_bits=8)
    assert a.crossbar_spec(True).input_encoding == "split" and a.crossbar_spec(True).input_bits == 8


def test_no_conversion_sums_across_a_split_inputs_two_passes():
    """A scope that sums cycles in analog (CASCADE's pairs, Neural-PIM's whole product) converts each pass of a split
    input apart: its groups restart where the negative pass begins (one more conversion where a pass has an odd
    number of cycles); two's complement and unsigned inputs keep one run."""
    assert input_parts(plane_weights(8, 1, True, "split")) == [7, 7]
    assert input_parts(plane_weights(8, 1, True)) == [8] and input_parts(plane_weights(8, 2)) == [4]
    assert ConversionScope(cycles=2).cycle_groups(14, [7, 7]) == [(0, 2), (2, 4), (4, 6), (6, 7), (7, 9), (9, 11),
                                                                  (11, 13), (13, 14)]
    assert ConversionScope(cycles=0).cycle_groups(14, [7, 7]) == [(0, 7), (7, 14)]
    assert ConversionScope(cycles=2).cycle_groups(8) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    spec = replace(SPLIT_SPECS["neural-pim"](), input_encoding="split")
    xb = Crossbar(np.ones((4, 64), dtype=np.int64), spec)
    assert xb.cycle_groups() == [(0, 7), (7, 14)] and xb.conversions_per_mvm() == 2 * xb.readout_columns
