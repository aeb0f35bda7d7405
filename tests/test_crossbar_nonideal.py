"""Crossbar non-idealities: read and programming noise statistics, stuck-at faults, the g_min correction,
drift. Expected numbers come from first principles (analytic variances, brute-force per-cell loops).
"""

import math

import numpy as np
import pytest
from scipy.stats import ks_2samp

from _crossbar_cases import _matmul, _operands
from cimsim import Crossbar, CrossbarSpec
from cimsim.devices import ReRAM, SarADC

# --------------------------------------------------------------------------------------- read noise
NOISE_CASES = [
    # mode, c, b, a, d, signed
    ("differential", 2, 4, 3, 1, False),
    ("twos", 3, 5, 4, 2, True),
]


@pytest.mark.parametrize("mode,c,b,a,d,signed", NOISE_CASES)
def test_read_noise_matches_analytic_variance(mode, c, b, a, d, signed):
    s = 0.02
    cell = ReRAM(prog_sigma_frac=0.0, read_sigma_frac=s)
    rng = np.random.default_rng(4)
    W, x = _operands(rng, mode, b, a, signed, 3, 12, 5)
    spec = CrossbarSpec(rows=8, cols=16, cell=cell, cell_bits=c, weight_bits=b, input_bits=a, dac_bits=d,
                        signed=mode, input_signed=signed)
    xb = Crossbar(W, spec, seed=9)
    ref = _matmul(x, W)
    err = np.stack([xb(x) - ref for _ in range(400)])          # (400, batch, out)

    # first principles: one cell read has std s * range (S); in level units (one conductance step
    # dg = range / (2**c - 1) times one DAC step) that is s * range / dg. A read with digit x_k contributes
    # x_k * noise, independent over cells, reads, cycles; the digital side scales a column by pw_t * w_s * sign_p.
    rng_s = cell.g_max_s - cell.g_min_s
    dg = rng_s / (2 ** c - 1)
    sig_level = s * rng_s / dg
    n_slices = math.ceil(b / c) if mode == "offset" else (
        math.ceil((b - 1) / c) + (1 if mode == "twos" else 0))
    n_pol = 2 if mode == "differential" else 1
    slice_w2 = [(2.0 ** (c * i)) ** 2 for i in range(math.ceil((b - 1) / c) if mode != "offset" else n_slices)]
    if mode == "twos":
        slice_w2.append(float(2 ** (b - 1)) ** 2)
    assert len(slice_w2) == n_slices
    m = a - 1 if signed else a                                    # magnitude bits; the sign bit a cycle alone
    cycles = [(d * t, min(d, m - d * t)) for t in range(math.ceil(m / d))] + ([(a - 1, 1)] if signed else [])
    var = np.zeros(x.shape[0])
    for sh, w in cycles:
        digits = (np.where(x < 0, x + 2 ** a, x) >> sh) & (2 ** w - 1)
        var += (2.0 ** sh) ** 2 * sum(slice_w2) * n_pol * (digits.astype(float) ** 2).sum(axis=1) * sig_level ** 2
    pred_std = np.sqrt(var)[:, None] * np.ones((1, 3))           # same for every output of an example

    z = err / pred_std                                            # standardized errors
    assert abs(z.mean()) < 4 / math.sqrt(z.size)                  # mean ~ 0 (6000 samples)
    assert z.std() == pytest.approx(1.0, rel=0.04)                # pooled std within 4 %
    assert np.all(np.abs(err.std(axis=0) / pred_std - 1) < 0.15)  # every (example, output): 400 samples


def test_read_noise_through_an_adc_adds_the_quantization_variance():
    # noise of std >= ~0.9 LSB (s = 0.3, 2-bit cells: 0.9 level units per unit digit) through a lossless-grid
    # ADC (fixed range (-64, 63), 7 bits -> LSB 1, nothing clips): each conversion of a plane with a non-zero
    # digit adds the rounding variance 1/12 (Sheppard) to the read-noise variance; all-zero planes convert
    # the exact 0 with no error
    mode, c, b, a, d, s = "differential", 2, 4, 3, 1, 0.3
    cell = ReRAM(read_sigma_frac=s)
    rng = np.random.default_rng(41)
    W, x = _operands(rng, mode, b, a, False, 3, 12, 5)
    x[1] = 0
    x[1, 3] = 4                                              # only plane 2 is non-zero for this example
    spec = CrossbarSpec(rows=8, cols=16, cell=cell, cell_bits=c, weight_bits=b, input_bits=a, dac_bits=d,
                        signed=mode, readout=SarADC(bits=7), adc_range=(-64, 63))
    xb = Crossbar(W, spec, seed=2)
    ref = _matmul(x, W)
    err = np.stack([xb(x) - ref for _ in range(400)])
    sig_level = s * (2 ** c - 1)
    slice_w2 = [(2.0 ** (c * i)) ** 2 for i in range(math.ceil((b - 1) / c))]    # slices of weight 1, 4
    var = np.zeros(x.shape[0])
    var_q = np.zeros(x.shape[0])
    for row_block in (slice(0, 8), slice(8, 12)):
        xr = x[:, row_block]
        for t in range(a):
            digits = ((xr >> t) & 1).astype(float)
            active = digits.sum(axis=1) > 0
            var += 4.0 ** t * sum(slice_w2) * 2 * digits.sum(axis=1) * sig_level ** 2
            var_q += 4.0 ** t * sum(slice_w2) * 2 * active / 12.0
    pred = np.sqrt(var + var_q)[:, None] * np.ones((1, 3))
    z = err / pred
    # observed (seed 2): z std 0.998; against the read noise alone 1.020 (the rounding term is small here)
    assert abs(z.mean()) < 4 / math.sqrt(z.size)
    assert z.std() == pytest.approx(1.0, rel=0.04)


def test_read_noise_matches_brute_force_per_cell_monte_carlo():
    mode, c, b, a, d = "differential", 2, 5, 3, 1
    s = 0.05
    cell = ReRAM(prog_sigma_frac=0.0, read_sigma_frac=s)
    W = np.array([[5, -15, 0], [-3, 9, 15]])
    x = np.array([[7, 2, 5]])
    spec = CrossbarSpec(rows=2, cols=4, cell=cell, cell_bits=c, weight_bits=b, input_bits=a, dac_bits=d,
                        signed=mode)
    xb = Crossbar(W, spec, seed=3)
    n = 3000
    y_engine = xb(np.repeat(x, n, axis=0))                        # every row gets its own read noise

    # brute force: every cell read of every cycle gets its own Gaussian; the column current minus the
    # ideal g_min reference, divided by (V step * dg), is the column value; then shift and add
    mc = np.random.default_rng(123)
    g = xb.g                                                      # (slices, polarity, out, in) programmed S
    g_min, g_max = cell.g_min_s, cell.g_max_s
    dg = (g_max - g_min) / (2 ** c - 1)
    v_step = cell.read_voltage_v / (2 ** d - 1)
    sigma = s * (g_max - g_min)
    y_mc = np.zeros((n, 2))
    for t in range(a):                                            # d = 1: one bit per cycle
        for si in range(g.shape[0]):
            for p, sign in enumerate((1.0, -1.0)):
                for o in range(2):
                    current = np.zeros(n)
                    reference = 0.0
                    for k in range(3):
                        digit = (x[0, k] >> t) & 1
                        if digit:
                            g_read = g[si, p, o, k] + sigma * mc.standard_normal(n)
                            current += digit * v_step * g_read
                            reference += digit * v_step * g_min
                    y_mc[:, o] += 2.0 ** t * 2.0 ** (c * si) * sign * (current - reference) / (v_step * dg)
    ref = _matmul(x, W)[0]
    for o in range(2):
        e, m = y_engine[:, o] - ref[o], y_mc[:, o] - ref[o]
        se = math.sqrt(e.var() / n + m.var() / n)
        assert abs(e.mean() - m.mean()) < 4 * se
        assert abs(m.mean()) < 4 * m.std() / math.sqrt(n)
        assert e.std() / m.std() == pytest.approx(1.0, rel=0.07)
        assert ks_2samp(e, m).pvalue > 1e-3


def test_read_noise_seeding():
    cell = ReRAM(read_sigma_frac=0.02)
    rng = np.random.default_rng(8)
    W, x = _operands(rng, "differential", 6, 4, False, 4, 9, 3)
    spec = CrossbarSpec(rows=4, cols=8, cell=cell, weight_bits=6, input_bits=4)
    y1 = Crossbar(W, spec, seed=5)(x)
    y2 = Crossbar(W, spec, seed=5)(x)
    y3 = Crossbar(W, spec, seed=6)(x)
    assert np.array_equal(y1, y2)
    assert np.abs(y1 - y3).max() > 1e-3
    xb = Crossbar(W, spec, seed=5)
    first, second = xb(x), xb(x)
    assert np.array_equal(first, y1) and not np.array_equal(first, second)   # fresh noise per call


# -------------------------------------------------------------------------------- programming noise
def test_programming_noise_std_and_seeding():
    cell = ReRAM(prog_sigma_frac=0.05)
    rng = np.random.default_rng(12)
    W = rng.integers(-127, 128, (40, 50))
    spec = CrossbarSpec(cell=cell, cell_bits=2)
    xb = Crossbar(W, spec, seed=21)
    targets = cell.level_conductances(2)[xb.slices.levels]
    rng_s = cell.g_max_s - cell.g_min_s
    diff = xb.g - targets
    interior = (xb.slices.levels == 1) | (xb.slices.levels == 2)   # 6.7 sigma from either end: no clipping
    assert interior.sum() > 3000
    assert diff[interior].std() == pytest.approx(0.05 * rng_s, rel=0.04)
    assert abs(diff[interior].mean()) < 4 * 0.05 * rng_s / math.sqrt(interior.sum())
    assert xb.g.min() >= cell.g_min_s and xb.g.max() <= cell.g_max_s
    end0 = xb.slices.levels == 0
    assert np.mean(xb.g[end0] == cell.g_min_s) == pytest.approx(0.5, abs=0.03)   # half clip at g_min
    assert np.array_equal(Crossbar(W, spec, seed=21).g, xb.g)
    assert not np.array_equal(Crossbar(W, spec, seed=22).g, xb.g)


# ------------------------------------------------------------------------------------ stuck-at faults
def test_all_cells_stuck_off():
    cell = ReRAM(p_stuck_off=1.0)
    rng = np.random.default_rng(6)
    W, x = _operands(rng, "offset", 8, 8, False, 5, 30, 4)
    for mode in ("differential", "twos"):
        xb = Crossbar(np.clip(W, -127, 127), CrossbarSpec(rows=16, cell=cell, signed=mode))
        assert np.all(xb.g == cell.g_min_s)
        y = xb(x)
        assert np.array_equal(y, np.zeros_like(y))           # the g_min reference cancels exactly
    y = Crossbar(W, CrossbarSpec(rows=16, cell=cell, signed="offset"))(x)
    expected = -128.0 * x.sum(axis=1)[:, None] * np.ones((1, 5))
    assert np.array_equal(y, expected)


# ---------------------------------------------------------------------------------- G_min correction
@pytest.mark.parametrize("ratio", [150.0, 2.0])
@pytest.mark.parametrize("mode,signed", [("differential", False), ("twos", True), ("offset", True)])
def test_finite_on_off_ratio_is_corrected(ratio, mode, signed):
    cell = ReRAM(on_off_ratio=ratio)
    rng = np.random.default_rng(14)
    W, x = _operands(rng, mode, 8, 8, signed, 6, 40, 5)
    xb = Crossbar(W, CrossbarSpec(rows=16, cols=32, cell=cell, signed=mode, input_signed=signed))
    assert xb.g.min() == pytest.approx(cell.g_min_s, rel=1e-12) and cell.g_min_s > 0
    ref = _matmul(x, W).astype(float)
    y = xb(x)
    assert np.all(np.abs(y - ref) <= 1e-9 * np.maximum(np.abs(ref), 1.0))


# ----------------------------------------------------------------------------------------------- drift
def test_drift_at_time():
    cell = ReRAM()                                               # noise-free; relaxation 0.5 % / decade
    rng = np.random.default_rng(15)
    W, x = _operands(rng, "differential", 8, 8, False, 6, 40, 5)
    xb = Crossbar(W, CrossbarSpec(rows=16, cell=cell), seed=2)
    g0 = xb.g.copy()
    y0 = xb(x)
    assert np.array_equal(xb.at_time(0)(x), y0)
    late = xb.at_time(1e6)
    y_late = late(x)
    assert np.abs(y_late - y0).max() > 100
    # relaxation spread: 0.005 * range * log10(1 + 1e6) on cells away from the window ends
    interior = (xb.slices.levels == 1) | (xb.slices.levels == 2)
    d = (late.g - g0)[interior]
    assert d.std() == pytest.approx(0.005 * cell.g_range_s * math.log10(1 + 1e6), rel=0.05)
    assert np.array_equal(xb.at_time(1e6).g, late.g)            # one trajectory per seed
    # the original is untouched
    assert np.array_equal(xb.g, g0)
    assert np.array_equal(xb(x), y0)
    assert late.ledger is not xb.ledger


# ------------------------------------------------------------------- fused epilogue's random numbers
def test_fused_epilogue_series_match_libm():
    # the generator's own ln, sin and cos (float32 series, so the passes vectorize) against libm in float64: within
    # a few float32 roundings
    from cimsim.kernels import ln_unit, sincos_quarter

    x = np.concatenate([2.0 ** -np.arange(0, 33),                               # the uniforms' whole range
                        (np.arange(1, 2 ** 16) + 0.5) * 2.0 ** -31,             # the smallest uniforms drawn
                        1.0 - np.arange(1, 1000) * 2.0 ** -24,                  # just below one
                        np.random.default_rng(0).uniform(2.0 ** -32, 1.0, 200_000),
                        np.nextafter(np.sqrt([0.5, 2.0]), [0.0, 0.0]), np.sqrt([0.5, 2.0])]).astype(np.float32)
    ln = np.empty_like(x)
    ln_unit(ln, x)
    ref = np.log(x.astype(np.float64))
    err = np.abs(ln - ref)
    assert np.max(err / np.abs(ref).clip(1e-6)) < 3e-7          # 2.5 float32 epsilons of |ln x| (up to 22)
    assert np.max(err[x > 0.5]) < 1e-7                          # near one: absolute
    assert np.max(err / np.spacing(np.abs(ref).astype(np.float32)).clip(1e-45)) < 3   # under 3 ulps
    p = np.linspace(-math.pi / 4, math.pi / 4, 100_001).astype(np.float32)
    s, c = np.empty_like(p), np.empty_like(p)
    sincos_quarter(s, c, p)
    assert np.max(np.abs(s - np.sin(p.astype(np.float64)))) < 6e-8       # an ulp of sin near pi/4 (0.71)
    assert np.max(np.abs(c - np.cos(p.astype(np.float64)))) < 1.2e-7     # an ulp of cos near 1


def test_fused_epilogue_normals_are_standard_normal_and_seeded():
    from scipy.stats import expon, kstest, norm, uniform

    from cimsim.kernels import seed_state, standard_normal

    n = 2_000_000
    state = seed_state(np.random.SeedSequence(2024))
    z = standard_normal(state, n)
    assert state[2] == n            # two counter places per pair (the first is drawn), n / 2 pairs
    # 4-sigma bands of the sample moments of n standard normals
    assert abs(z.mean()) < 4 / math.sqrt(n)
    assert abs(z.var() - 1) < 4 * math.sqrt(2 / n)
    assert abs((z ** 3).mean()) < 4 * math.sqrt(15 / n)
    assert abs((z ** 4).mean() - 3) < 4 * math.sqrt(96 / n)
    assert kstest(z, "norm").pvalue > 1e-3
    # tails: the mass beyond 3 and 4 sigma (Poisson 4-sigma bands); the largest of 2e6 draws is about 5.3, and
    # none can pass sqrt(-2 ln 2^-32) = 6.66 (the smallest uniform)
    for t in (3.0, 4.0):
        p = 2 * norm.sf(t)
        assert abs((np.abs(z) > t).mean() - p) < 4 * math.sqrt(p / n)
    assert 4.5 < np.abs(z).max() <= math.sqrt(64 * math.log(2)) + 1e-5
    # Box-Muller's pairs (cosines in the first half, sines in the second): radius^2 ~ Exp(mean 2), angle
    # uniform, and the two halves uncorrelated
    zc, zs = z[: n // 2], z[n // 2:]
    assert kstest(zc * zc + zs * zs, expon(scale=2).cdf).pvalue > 1e-3
    assert kstest(np.arctan2(zs, zc), uniform(-math.pi, 2 * math.pi).cdf).pvalue > 1e-3
    assert abs(np.corrcoef(zc, zs)[0, 1]) < 4 / math.sqrt(n / 2)
    # seeding: the same seed gives the same numbers, the state advances in place, other seeds differ and
    # do not correlate
    s1, s2 = seed_state(np.random.SeedSequence(7)), seed_state(np.random.SeedSequence(7))
    a, b = standard_normal(s1, 1000), standard_normal(s2, 1000)
    assert np.array_equal(a, b)
    assert not np.array_equal(standard_normal(s1, 1000), a)
    other = standard_normal(seed_state(np.random.SeedSequence(8)), n)
    assert abs(np.corrcoef(other, z)[0, 1]) < 4 / math.sqrt(n)
    # an odd count draws a whole last pair and keeps its cosine
    s3 = seed_state(np.random.SeedSequence(7))
    assert np.array_equal(standard_normal(s3, 999)[:499], a[:499]) and s3[2] == 1000


def test_generator_increments_are_odd_and_dense():
    from cimsim.kernels import seed_state

    for k in range(200):
        key, gamma, ctr, _ = (int(v) for v in seed_state(np.random.SeedSequence(k)))
        assert gamma & 1 and ctr == 0
        assert bin(gamma ^ (gamma >> 1)).count("1") >= 24


def test_fused_adc_noise_statistics():
    # one column value 0.3 with noise std 7 LSB through a wide lossless-grid ADC (LSB 1, no clipping):
    # codes round(0.3 + 7 z) have mean 0.3 and variance 49 + 1/12 (Sheppard), within 4-sigma bands
    from cimsim.kernels import adc_accumulate_rows, seed_state

    n, m = 4000, 50
    v = np.full((n, m), 0.3, dtype=np.float32)
    std = np.full((n, 1), 7.0, dtype=np.float32)
    acc = np.zeros((n, m))
    key, gamma, _, _ = (int(s) for s in seed_state(np.random.SeedSequence(3)))
    # n examples of one cycle and one row block: every row's draws from its own place in the stream
    adc_accumulate_rows(acc, v, std, 0, n, np.ones(1), -1024.0, 1.0, 2047.0, (key, gamma, 0, 1, 1, 0))
    assert np.all(acc == np.round(acc))
    N = acc.size
    assert abs(acc.mean() - 0.3) < 4 * 7 / math.sqrt(N)
    assert abs(acc.var() / (49 + 1 / 12) - 1) < 4 * math.sqrt(2 / N)


@pytest.mark.parametrize("readout", [SarADC(bits=6), SarADC(bits=6, offset_sigma_lsb=0.3)], ids=["fused", "general"])
def test_noisy_adc_results_do_not_depend_on_the_thread_count(monkeypatch, readout):
    """Same seed, same numbers on 1, 2, 3 and 8 threads (both paths spread their shards over every thread; their
    draws sit at places fixed by example, cycle or conversion, row block and column), and repeated calls draw
    anew. The least work of a shard is set to one MAC and one row, so every example is a shard here (the general
    path's shards: two examples, :data:`cimsim.crossbar_cpu.GENERAL_SHARDS` rows)."""
    from cimsim import crossbar_cpu

    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_MACS", 1)
    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_ROWS", 1)
    cell = ReRAM(prog_sigma_frac=0.05, read_sigma_frac=0.05)
    rng = np.random.default_rng(5)
    W, x = _operands(rng, "offset", 8, 8, False, 6, 40, 200)      # batch >= 64: the threaded path
    spec = CrossbarSpec(rows=16, cols=32, cell=cell, signed="offset", readout=readout, adc_range="full",
                        batch_chunk=128)
    runs = {}
    for n in (1, 2, 3, 8):
        monkeypatch.setenv("CIMSIM_THREADS", str(n))
        xb = Crossbar(W, spec, seed=11)
        runs[n] = (xb(x), xb(x))
    for n in (2, 3, 8):
        assert np.array_equal(runs[n][0], runs[1][0]) and np.array_equal(runs[n][1], runs[1][1]), n
    assert not np.array_equal(runs[1][0], runs[1][1])                 # a second call draws new noise
    assert not np.array_equal(runs[1][0], Crossbar(W, spec, seed=12)(x))
    # a batch read in two calls is not the same draws as one call (each call its own stream) ...
    monkeypatch.setenv("CIMSIM_THREADS", "2")
    xb = Crossbar(W, spec, seed=11)
    assert np.array_equal(xb(x), runs[1][0])                          # ... but the first call is the first call
