"""The CPU engine on every core: shard sizing, and the placed draws of the general path (read noise and the
converters' own noise keyed by example, conversion and column), which give the same numbers on any split of a
batch and are standard normal."""

import math

import numpy as np
import pytest
from scipy.stats import kstest

from _crossbar_cases import _operands
from cimsim import Crossbar, CrossbarSpec
from cimsim import crossbar_cpu
from cimsim.devices import IdealReadout, ReRAM, SarADC, SenseAmp, TernaryReadout
from cimsim.kernels import PlacedNormals, placed_normals, seed_state
from cimsim.readouts import PER_CYCLE, PER_MVM, ConversionScope


@pytest.mark.parametrize("examples,per_example,cycles", [
    (64, 1000, 16), (64, 12_000_000, 16), (1, 10 ** 9, 8), (4096, 38_400, 2), (4096, 38_400, 64), (3, 1, 1)])
def test_shards_never_hold_less_than_the_least_work(examples, per_example, cycles):
    n = crossbar_cpu.shard_count(examples, per_example, cycles)
    assert 1 <= n <= examples
    if n > 1:                                   # shards hold the least work and rows on average
        assert examples * per_example / n >= crossbar_cpu.MIN_SHARD_MACS
        assert examples * cycles / n >= crossbar_cpu.MIN_SHARD_ROWS
    assert crossbar_cpu.shard_count(2 * examples, per_example, cycles) >= n    # more work, never fewer shards


def test_shard_counts_of_lenet5_at_isaac():
    """Small layers stay one shard on many cores (16 shards of 4 examples made LeNet-5 slower on 16 cores than on
    2); large ones get several. ISAAC: 16 input cycles; the physical columns are out x 8 slices (offset)."""
    per = lambda k, n: 16 * k * n * 8              # noqa: E731  MACs of one example (patch row)
    assert crossbar_cpu.shard_count(64, per(84, 10), 16) == 1                  # fc3: 64 examples, 6.9 M MACs
    assert crossbar_cpu.shard_count(1024, per(25, 6), 16) == 2                 # conv1: a chunk of 1024 patch rows
    assert crossbar_cpu.shard_count(1024, per(150, 16), 16) == 37              # conv2: 315 M MACs a chunk
    assert crossbar_cpu.shard_count(64, per(400, 120), 16) == 4                # fc1: 64 x 6.1 M MACs


def test_general_shards_hold_the_least_values_a_conversion():
    """The general path's shards: at least GENERAL_VALUES values a conversion (examples x readout columns) besides
    GENERAL_SHARDS times the least work; CASCADE's ResNet-20 144 -> 16 layer (16 cycles, 480 physical columns, 16
    values an example): a chunk of 1,024 patch rows is one shard (four of 256 without the floor)."""
    per = 16 * 144 * 480
    G = crossbar_cpu.GENERAL_SHARDS
    assert len(crossbar_cpu._cut(0, 1024, per, 16, crossbar_cpu.MIN_SHARD_ROWS, crossbar_cpu.MIN_SHARD_MACS, G)) == 4
    assert crossbar_cpu.CpuTile._shards(0, 1024, per, 16, G, 16) == ((0, 1024),)
    for values in (1, 6, 16, 120, 960):
        shards = crossbar_cpu.CpuTile._shards(0, 1024, per, 16, G, values)
        assert shards[0][0] == 0 and shards[-1][1] == 1024
        assert len(shards) == 1 or min(b - a for a, b in shards) * values >= crossbar_cpu.GENERAL_VALUES * 0.99


def _general_specs():
    cell = ReRAM(prog_sigma_frac=0.05, read_sigma_frac=0.05)
    return {
        "ideal-readout": CrossbarSpec(rows=16, cols=32, cell=cell, signed="offset", readout=IdealReadout()),
        "adc-offset-mvm": CrossbarSpec(rows=16, cols=32, cell=cell, signed="offset", adc_range="full",
                                       readout=SarADC(bits=6, offset_sigma_lsb=0.4), conversion=PER_MVM),
        "adc-c2-sum": CrossbarSpec(rows=16, cols=32, cell=cell, signed="offset", adc_range="full",
                                   readout=SarADC(bits=7, offset_sigma_lsb=0.2), conversion=ConversionScope(2, "sum")),
        "ternary-offset": CrossbarSpec(rows=16, cols=32, cell=cell, signed="differential",
                                       readout=TernaryReadout(delta=3.0, offset_sigma=0.5)),
        "sense-amp-pair": CrossbarSpec(rows=16, cols=32, cell=cell, signed="differential", pair_readout=True,
                                       readout=SenseAmp(threshold=0.0, offset_sigma=0.5)),
        "fused": CrossbarSpec(rows=16, cols=32, cell=cell, signed="offset", adc_range="full",
                              readout=SarADC(bits=6), conversion=PER_CYCLE),
    }


@pytest.mark.parametrize("name", list(_general_specs()))
def test_same_numbers_on_any_thread_count_and_any_split(monkeypatch, name):
    """Threads 1, 2 and 8 with shards of two examples (16 rows: the general path's least shard with the least
    work set to one row): bit-identical outputs. Chunks of 7 examples (another
    split, another spec): the same draws, and on programmed (non-integer) conductances too the same column sums
    (the level units on the grid of exact sums, :func:`cimsim.crossbar.exact_grid`: BLAS's blocking for another
    number of rows cannot round them), so bit-identical outputs as well."""
    spec = _general_specs()[name]
    rng = np.random.default_rng(3)
    W, x = _operands(rng, spec.signed, 8, 8, False, 5, 40, 90)
    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_MACS", 1)
    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_ROWS", 1)
    runs = {}
    for n in (1, 2, 8):
        monkeypatch.setenv("CIMSIM_THREADS", str(n))
        xb = Crossbar(W, spec, seed=21)
        runs[n] = (xb(x), xb(x))
    for n in (2, 8):
        assert np.array_equal(runs[n][0], runs[1][0]) and np.array_equal(runs[n][1], runs[1][1]), n
    monkeypatch.setenv("CIMSIM_THREADS", "3")
    chunked = Crossbar(W, CrossbarSpec(**{**spec.__dict__, "batch_chunk": 7}), seed=21)
    for ref in runs[1]:
        assert np.array_equal(chunked(x), ref)
    assert not np.array_equal(runs[1][0], runs[1][1])                 # each call draws anew
    assert not np.array_equal(runs[1][0], Crossbar(W, spec, seed=22)(x))


def test_placed_normals_are_standard_normal_independent_and_placed():
    key, gamma, _, _ = (int(v) for v in seed_state(np.random.SeedSequence(99)))
    n, m = 20_000, 51                                # an odd row: words rounded up to even
    z = placed_normals((n, m), key, gamma, 0, 6, 4)
    N = z.size
    assert abs(z.mean()) < 4 / math.sqrt(N)                          # 4-sigma bands of the sample moments
    assert abs(z.var() - 1) < 4 * math.sqrt(2 / N)
    assert abs((z ** 4).mean() - 3) < 4 * math.sqrt(96 / N)
    assert kstest(z.ravel(), "norm").pvalue > 1e-3
    # neighbouring columns, examples and slots do not correlate
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 4 / math.sqrt(n)
    assert abs(np.corrcoef(z[:-1, 7], z[1:, 7])[0, 1]) < 4 / math.sqrt(n)
    other = placed_normals((n, m), key, gamma, 0, 6, 5)
    assert abs(np.corrcoef(z.ravel(), other.ravel())[0, 1]) < 4 / math.sqrt(N)
    # a row sits where its example says: any split of the examples gives the same rows
    part = placed_normals((300, m), key, gamma, 1000, 6, 4)
    assert np.array_equal(part, z[1000:1300])
    # a converter's draws: each call of standard_normal its own sub-stream, the same on any split
    conv = PlacedNormals(key, gamma, 0, 6, 4)
    a, b = conv.standard_normal((n, m)), conv.standard_normal((n, m))
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 4 / math.sqrt(N)
    assert abs(np.corrcoef(a.ravel(), z.ravel())[0, 1]) < 4 / math.sqrt(N)
    assert abs(a.var() - 1) < 4 * math.sqrt(2 / N)
    later = PlacedNormals(key, gamma, 500, 6, 4)
    later.standard_normal((10, m))
    assert np.array_equal(later.standard_normal((10, m)), b[500:510])


def test_converter_offset_noise_on_the_general_path_has_its_variance():
    """A 6-bit ADC with offset noise of 0.7 LSB on a wide range (LSB 1, nothing clips) converting the constant
    0.3: codes round(0.3 + 0.7 z) have mean 0.3 and variance 0.49 + 1/12 (Sheppard) within 4-sigma bands."""
    key, gamma, _, _ = (int(v) for v in seed_state(np.random.SeedSequence(5)))
    adc = SarADC(bits=6, offset_sigma_lsb=0.7)
    x = np.full((4000, 40), 32.3)
    codes = adc.codes(x, 0.0, 63.0, rng=PlacedNormals(key, gamma, 0, 1, 0)) - 32.0
    N = codes.size
    var = 0.49 + 1 / 12
    assert abs(codes.mean() - 0.3) < 4 * math.sqrt(var / N)
    assert abs(codes.var() / var - 1) < 4 * math.sqrt(2 / N)


def test_torch_one_thread_restores_the_count():
    """cimsim.blas.torch_one_thread: torch runs on one thread inside (the host engine's digital layers, im2col and
    loader), and the caller's count comes back after, also when the block raises."""
    import torch

    from cimsim.blas import torch_one_thread

    n = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch_one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError):
            with torch_one_thread():
                raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(n)
