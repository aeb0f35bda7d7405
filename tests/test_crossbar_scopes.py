"""Conversion scopes: one conversion per cycle (ISAAC), after an analog shift-and-add over the cycles
(Neural-PIM), after an analog sum over row blocks (CASCADE), or both; on both backends.

References are numpy written here from the formulas (digits from cimsim.encoding, everything else by hand).
"""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from _crossbar_cases import _matmul, _operands
from cimsim import Crossbar, CrossbarSpec, events
from cimsim.devices import IdealCell, IdealReadout, ReRAM, SarADC
from cimsim.encoding import input_planes, slice_weights
from cimsim.errors import ConfigError
from cimsim.readouts import ACROSS_ROW_BLOCKS, PER_CYCLE, PER_MVM, SCOPES, ConversionScope

ALL = [*SCOPES.values(), ConversionScope(3, "each"), ConversionScope(2, "sum"), ConversionScope(1, "each", 2),
       ConversionScope(3, "each", 3)]
SCOPE_ID = lambda s: f"c{s.cycles}-{s.row_blocks}" + ("" if s.slices == 1 else f"-s{s.slices}")  # noqa: E731
# (backend, device): numba and torch on the CPU everywhere, torch on CUDA where a GPU is present
ENGINES = [("numba", "cpu"), ("torch", "cpu")] + ([("torch", "cuda")] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("backend,device", ENGINES, ids=lambda v: v)
@pytest.mark.parametrize("scope", ALL, ids=SCOPE_ID)
@pytest.mark.parametrize("mode,c,b,a,d,signed", [
    ("differential", 2, 8, 8, 1, False), ("offset", 1, 6, 7, 2, True), ("twos", 3, 7, 5, 3, True),
    ("differential", 4, 9, 4, 4, False)])
def test_every_scope_is_exact_with_ideal_cells_and_a_lossless_readout(scope, backend, device, mode, c, b, a, d, signed):
    rng = np.random.default_rng(abs(hash((scope, mode, c, b, a, d, signed))) % 2**32)
    W, x = _operands(rng, mode, b, a, signed, 9, 50, 13)
    ref = _matmul(x, W)
    spec = CrossbarSpec(rows=16, cols=24, cell=IdealCell(), cell_bits=c, weight_bits=b, input_bits=a, dac_bits=d,
                        signed=mode, input_signed=signed, readout=IdealReadout(), conversion=scope)
    xb = Crossbar(W, spec, backend=backend, device=device)
    assert np.array_equal(xb(x), ref)
    # a full-range ADC wide enough for the scope's largest value has an LSB of one level unit: lossless
    lo, hi = xb.full_range(xb.conversion_domains[0])
    bits = math.ceil(math.log2(hi - math.floor(lo) + 1))
    if bits > 16:   # wider than the ADC model allows (whole weights of 7 bits summed with 2 cycles)
        assert scope.slices != 1
        return
    adc = Crossbar(W, replace(spec, readout=SarADC(bits=bits), adc_range="full"),
                   backend=backend, device=device)
    assert adc.ranges()[0][1] == 1.0
    assert np.array_equal(adc(x), ref)
    assert adc.ledger.count(events.CLIPPED_CONVERSIONS) == 0
    # one bit less and the range no longer fits one level per code
    short = Crossbar(W, replace(spec, readout=SarADC(bits=bits - 1), adc_range="full"),
                     backend=backend, device=device)
    assert short.ranges()[0][1] == 2.0


@pytest.mark.parametrize("scope", ALL, ids=SCOPE_ID)
def test_each_scope_counts_its_own_conversions(scope):
    rng = np.random.default_rng(0)
    W, x = _operands(rng, "differential", 8, 8, False, 5, 40, 7)
    xb = Crossbar(W, CrossbarSpec(rows=16, cols=32, cell=IdealCell(), readout=SarADC(bits=12), conversion=scope,
                                  adc_range="full"), name="L")
    xb(x)
    T, R = 8, 3                                                # 8-bit inputs 1 bit a cycle; ceil(40 / 16) blocks
    cols = 4 * 2 * 5                                           # 4 slices of 2-bit cells x G+/G- x 5 outputs
    groups = T if scope.cycles == 1 else (1 if scope.cycles == 0 else math.ceil(T / scope.cycles))
    domains = R if scope.row_blocks == "each" else 1
    slice_groups = {1: 4, 0: 1, 2: 2, 3: 2}[scope.slices]     # 4 slices one by one, all together, 2+2, 3+1
    conv = 7 * groups * domains * slice_groups * 2 * 5         # 7 examples; per group each polarity of each output
    assert xb.readout_columns == slice_groups * 2 * 5
    assert xb.ledger.count("sar-adc_conversion_12b", "L") == conv == xb.ledger.count(events.SHIFT_ADDS, "L")
    assert xb.conversions_per_mvm() * 7 == conv
    accumulated = xb.ledger.count(events.ANALOG_ACCUMULATIONS, "L")
    assert accumulated == (0 if scope.per_cycle else 7 * T * R * cols)    # every slice's value of every cycle
    assert xb.ledger.count(events.ARRAY_READ_CYCLES, "L") == 7 * T * xb.arrays   # the reads do not change


def _scoped_reference(W, x, spec: CrossbarSpec, bits: int):
    """numpy: per conversion domain and cycle group the analog sum sum_{r, t} 2**(s_t - s_t0) PS[r, t], its
    full range, a power-of-two LSB, round-half-up codes, shifted and added with 2**s_t0 and the slice weights."""
    sl = slice_weights(W, spec.weight_bits, spec.cell_bits, spec.signed)
    planes, pw = input_planes(x, spec.input_bits, spec.dac_bits, spec.input_signed)
    S, P, N, K = sl.levels.shape
    T, R = len(pw), math.ceil(K / spec.rows)
    k = T if spec.conversion.cycles == 0 else spec.conversion.cycles
    groups = [(t, min(t + k, T)) for t in range(0, T, k)]
    domains = [[r] for r in range(R)] if spec.conversion.row_blocks == "each" else [list(range(R))]
    j = S if spec.conversion.slices == 0 else spec.conversion.slices      # slices summed per conversion
    sgroups = [range(s0, min(s0 + j, S)) for s0 in range(0, S, j)]
    gain = max(sum(sl.weights[s] / sl.weights[g[0]] for s in g) for g in sgroups)
    y = np.zeros((x.shape[0], N))
    for blocks in domains:
        rows = sum(min(K, (r + 1) * spec.rows) - r * spec.rows for r in blocks)
        span = rows * (2 ** spec.cell_bits - 1) * max(pw[t1 - 1] / pw[t0] * 2 - 1 for t0, t1 in groups) * gain
        lsb = 2.0 ** max(0, math.ceil(math.log2(span / (2 ** bits - 1))))
        for t0, t1 in groups:
            for g in sgroups:
                for p in range(P):
                    v = np.zeros((x.shape[0], N))
                    for s in g:
                        for r in blocks:
                            k0, k1 = r * spec.rows, min(K, (r + 1) * spec.rows)
                            for t in range(t0, t1):
                                v += (pw[t] / pw[t0] * sl.weights[s] / sl.weights[g[0]]
                                      * (planes[t][:, k0:k1] @ sl.levels[s, p][:, k0:k1].T))
                    code = np.clip(np.floor(v / lsb + 0.5), 0, 2 ** bits - 1)
                    y += pw[t0] * sl.weights[g[0]] * sl.sign[p] * code * lsb
    return y


@pytest.mark.parametrize("backend,device", ENGINES, ids=lambda v: v)
@pytest.mark.parametrize("scope", [PER_MVM, ACROSS_ROW_BLOCKS, ConversionScope(2, "sum"), ConversionScope(2, "sum", 0),
                                   ConversionScope(1, "each", 2)],
                         ids=["mvm", "row-blocks", "c2-sum", "c2-sum-s0", "c1-each-s2"])
def test_a_coarse_scoped_adc_equals_the_numpy_reference(scope, backend, device):
    rng = np.random.default_rng(7)
    W, x = _operands(rng, "differential", 6, 6, False, 4, 30, 11)
    spec = CrossbarSpec(rows=8, cols=16, cell=IdealCell(), cell_bits=2, weight_bits=6, input_bits=6,
                        readout=SarADC(bits=5), adc_range="full", conversion=scope)
    y = Crossbar(W, spec, backend=backend, device=device)(x)
    np.testing.assert_array_equal(y, _scoped_reference(W, x, spec, 5))
    assert not np.array_equal(y, _matmul(x, W))                 # 5 bits do lose information here


@pytest.mark.parametrize("backend,device", ENGINES, ids=lambda v: v)
def test_calibrated_scoped_ranges_at_the_100th_percentile_are_lossless_with_enough_bits(backend, device):
    rng = np.random.default_rng(9)
    W, x = _operands(rng, "differential", 8, 8, False, 6, 40, 20)
    spec = CrossbarSpec(rows=16, cols=32, cell=IdealCell(), readout=SarADC(bits=16), adc_range="calibrated",
                        calibration_percentile=100, conversion=ConversionScope(0, "sum"))
    xb = Crossbar(W, spec, backend=backend, device=device)
    xb.calibrate(x)
    assert len(xb.ranges()) == 1
    assert np.array_equal(xb(x), _matmul(x, W))


def test_read_noise_of_an_analog_sum_has_the_summed_variance():
    """PER_MVM adds one Gaussian per conversion with variance sum_t 4**s_t * var_t: the output error of one
    column equals the per-cycle noise through the place values, so its variance matches per-cycle conversion
    with an ideal readout (same cells, many seeds)."""
    W = np.ones((1, 16), dtype=int)
    x = np.full((4000, 16), 5)                                   # digits 1, 0, 1 over 3 cycles
    var = {}
    for name, scope in (("cycle", PER_CYCLE), ("mvm", PER_MVM)):
        spec = CrossbarSpec(rows=16, cols=8, cell=ReRAM(read_sigma_frac=0.05), cell_bits=2, weight_bits=3,
                            input_bits=3, readout=IdealReadout(), conversion=scope)
        xb = Crossbar(W, spec, seed=3)
        var[name] = float(np.var(xb(x)[:, 0] - 80.0))
    assert var["mvm"] == pytest.approx(var["cycle"], rel=0.1)    # 4000 samples: 2 x sqrt(2/4000) ~ 4.5 % std


def test_bad_scopes_are_refused():
    with pytest.raises(ConfigError, match="cycles"):
        ConversionScope(-1)
    with pytest.raises(ConfigError, match="row_blocks"):
        ConversionScope(1, "some")
    with pytest.raises(ConfigError, match="slices"):
        ConversionScope(1, "each", -1)
    with pytest.raises(ConfigError, match="ConversionScope"):
        CrossbarSpec(conversion="mvm")
