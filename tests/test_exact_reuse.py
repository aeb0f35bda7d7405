"""A lossless crossbar call already is the exact product (issue 19, the 2-core target): the CPU engine says so
(:meth:`cimsim.Crossbar.exact_weights`), and a mapped layer then measures its error against those outputs instead
of forming the exact product again. The reports must not move by a bit; the offset correction's row sums, now
formed in int64, must equal the float64 sums they replace."""

import numpy as np
import pytest
import torch

from _crossbar_cases import _matmul, _operands
from cimsim import Crossbar, CrossbarSpec
from cimsim.crossbar_cpu import input_row_sums
from cimsim.devices import ReRAM, SarADC
from cimsim.workloads import datasets

FMNIST = datasets.SYSTEM_ROOT / "fashion-mnist"
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed")

LOSSLESS = CrossbarSpec(rows=16, cols=32, cell_bits=2, weight_bits=8, input_bits=8, dac_bits=1, signed="offset",
                        adc_range="full", readout=SarADC(bits=10))


@pytest.mark.parametrize("dtype,bits", [(np.int64, 16), (np.int64, 40), (np.uint8, 8), (np.int32, 20),
                                        (np.uint64, 16), (np.float64, 16), (np.int64, 52), (np.int16, 15)])
def test_row_sums_equal_the_float64_sums(dtype, bits):
    """Equal to x.sum(axis=1, dtype=float64) bit for bit, at the largest inputs the bits allow; where an int64 sum
    could leave the exact integers (bits + log2(K) >= 53) or the dtype is not held by int64, the float64 sum itself."""
    rng = np.random.default_rng(bits)
    hi = min((1 << bits) - 1, int(np.iinfo(dtype).max) if np.dtype(dtype).kind in "iu" else (1 << bits) - 1)
    x = rng.integers(0, hi, size=(9, 37), endpoint=True).astype(dtype)
    x[0] = hi
    x[1] = 0
    if np.dtype(dtype).kind == "i":   # signed inputs: negative values and sums too
        x[2:5] = -x[2:5]
    for xi in (x, x[:, ::2], x[:0], x[:, :0]):   # strided and empty arrays too
        got = input_row_sums(xi, bits)
        want = xi.sum(axis=1, dtype=np.float64)
        assert got.dtype == np.float64 and np.array_equal(got.view(np.int64), want.view(np.int64))
    got = input_row_sums(x, bits)
    if bits == 40 and dtype is np.int64:
        assert got[0] == float(hi * 37)


def test_exact_weights_give_the_lossless_calls_outputs():
    rng = np.random.default_rng(4)
    W, x = _operands(rng, "offset", 8, 8, False, 11, 40, 23)
    xb = Crossbar(W, LOSSLESS, seed=1)
    assert xb.exact_weights() is None                       # no call yet
    y = xb(x)
    w = xb.exact_weights()
    assert w is not None and w.shape == (40, 11) and w.dtype == np.float64
    assert np.array_equal(w, W.T)                           # the offset taken off: the weights themselves
    assert np.array_equal(y, x.astype(np.float64) @ w)
    assert np.array_equal(y, _matmul(x, W))


@pytest.mark.parametrize("why,spec", [
    ("read noise", CrossbarSpec(rows=16, cols=32, cell=ReRAM(read_sigma_frac=0.02), cell_bits=2, weight_bits=8,
                                input_bits=8, dac_bits=1, signed="offset", adc_range="full", readout=SarADC(bits=10))),
    ("rounds: 4-bit ADC", CrossbarSpec(rows=16, cols=32, cell_bits=2, weight_bits=8, input_bits=8, dac_bits=1,
                                       signed="offset", adc_range="full", readout=SarADC(bits=4))),
])
def test_no_exact_weights_after_a_call_that_could_change_a_value(why, spec):
    rng = np.random.default_rng(6)
    W, x = _operands(rng, "offset", 8, 8, False, 7, 40, 13)
    xb = Crossbar(W, LOSSLESS, seed=1)
    xb(x)
    assert xb.exact_weights() is not None
    other = Crossbar(W, spec, seed=1)
    other(x)
    assert other.exact_weights() is None, why
    assert xb.with_readout(SarADC(bits=4)).exact_weights() is None   # a fresh copy has made no call


@needs_fmnist
def test_mapped_layers_reuse_lossless_outputs_with_the_same_report(monkeypatch):
    """LeNet-5 on ISAAC's defaults (every layer lossless): no exact product is formed during the evaluation, and
    the report (accuracy, energy, every layer's error and clip rate) equals the one with the exact products
    formed, to the last bit. A crossbar whose exact weights are not the layer's is not trusted."""
    from cimsim import arch as arch_mod
    from cimsim.mappers import mapped as mapped_mod, mapper
    from cimsim.workloads import zoo

    torch.manual_seed(0)
    data = datasets.load("fashion-mnist")
    model = zoo.build("lenet5")
    cal = data.loader("train", batch_size=16, limit=32, shuffle=False)
    test = data.loader("test", batch_size=16, limit=48)
    calls = []
    real = mapped_mod.MappedLayer.exact_product
    monkeypatch.setattr(mapped_mod.MappedLayer, "exact_product",
                        lambda self, p: calls.append(self.name) or real(self, p))

    def report():
        m = mapper.map_model(model, arch_mod.get("isaac"), cal, seed=0, progress=False)
        calls.clear()
        r = m.evaluate(test, progress=False)
        return r, list(calls), m

    reused, reused_calls, m = report()
    assert reused_calls == []                                  # every layer's calls were lossless
    assert all(l.reference_sq > 0 for l in m.mapped_layers.values())
    monkeypatch.setattr(Crossbar, "exact_weights", lambda self: None)
    formed, formed_calls, _ = report()
    assert len(formed_calls) == 5 * 3                          # 5 layers, 3 batches
    a, b = reused.to_dict(), formed.to_dict()
    for d in (a, b):
        d["config"].pop("wall_seconds")
        d.pop("created", None)
    assert a == b

    monkeypatch.undo()
    monkeypatch.setattr(mapped_mod.MappedLayer, "exact_product",
                        lambda self, p: calls.append(self.name) or real(self, p))
    good = Crossbar.exact_weights
    monkeypatch.setattr(Crossbar, "exact_weights", lambda self: None if good(self) is None else good(self) + 1.0)
    _, wrong_calls, _ = report()
    assert len(wrong_calls) == 15                              # weights that are not the layer's: formed again


def test_one_pass_bounds_and_the_range_check_they_serve():
    from cimsim.encoding import check_inputs
    from cimsim.errors import ConfigError
    from cimsim.kernels_host import int_bounds

    rng = np.random.default_rng(9)
    for shape in [(1,), (7, 3), (5000, 25)]:
        a = rng.integers(-(2 ** 40), 2 ** 40, size=shape)
        assert int_bounds(a) == (int(a.min()), int(a.max()))
        assert int_bounds(a.T if a.ndim == 2 else a) == (int(a.min()), int(a.max()))
    big = rng.integers(0, 256, size=(300, 25))                  # 7500 values: the one-pass check
    assert check_inputs(big, 8, False) is big
    big[123, 7] = 256
    small = big[:10].copy()
    small[3, 2] = 256
    for x in (big, small):                                     # the same one-line message on both paths
        with pytest.raises(ConfigError, match=r"inputs must lie in \[0, 255\] .*; got \[0, 256\]"):
            check_inputs(x, 8, False)


def test_torch_backend_checks_its_inputs_without_the_numba_bounds(monkeypatch):
    """A torch-backend crossbar (which otherwise runs no numba: on a GPU, loading the one-pass bounds kernel cost a
    whole run 0.8 s) checks its weights, calibration and call inputs with numpy's bounds: the same ranges, outputs
    and one-line errors; the numba backend keeps the one-pass bounds for its inputs."""
    import cimsim
    from cimsim import crossbar_cpu, kernels_host
    from cimsim.devices import SarADC
    from cimsim.encoding import check_inputs
    from cimsim.errors import ConfigError

    rng = np.random.default_rng(4)
    W = rng.integers(-127, 128, size=(20, 300))
    x = rng.integers(0, 256, size=(40, 300))
    spec = cimsim.CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=8, input_bits=8, dac_bits=1,
                               signed="offset", readout=SarADC(bits=6), adc_range="calibrated")
    want = cimsim.Crossbar(W, spec, seed=1, backend="numba")
    want.calibrate(x)
    calls = []
    for name in ("int_bounds", "int_bounds_row_sums"):
        real = getattr(kernels_host, name)
        monkeypatch.setattr(kernels_host, name, lambda a, real=real: calls.append(a.size) or real(a))
    monkeypatch.setattr(crossbar_cpu, "int_bounds_row_sums", kernels_host.int_bounds_row_sums)
    y_want = want(x)
    assert calls == [x.size]                                   # the numba backend: one pass (with the row sums)
    calls.clear()
    xb = cimsim.Crossbar(W, spec, seed=1, backend="torch")
    xb.calibrate(x)
    y = xb(x)
    assert not calls                                           # the torch backend: numpy's bounds only
    assert xb.ranges() == want.ranges()
    np.testing.assert_array_equal(y, y_want)
    bad = x.copy()
    bad[5, 5] = 256
    for one_pass in (True, False):
        with pytest.raises(ConfigError, match=r"inputs must lie in \[0, 255\] .*; got \[0, 256\]"):
            check_inputs(bad, 8, False, one_pass=one_pass)
    with pytest.raises(ConfigError, match=r"inputs must lie in \[0, 255\]"):
        xb(bad)


@pytest.mark.parametrize("threads", ["1", "3"])
def test_host_passes_split_over_threads_give_the_same_numbers(monkeypatch, threads):
    """cimsim.kernels_host: the patches, the range check's bounds and the row sums (apart and in one pass), split over
    the engine's threads (every part, however small, when SPLIT_VALUES is 1), equal the one-call results and numpy's."""
    from cimsim import kernels_host as kh

    monkeypatch.setenv("CIMSIM_THREADS", threads)
    rng = np.random.default_rng(11)
    x = rng.integers(-(2 ** 15), 2 ** 15, size=(7, 3, 9, 8)).astype(np.float64)
    a = rng.integers(-(2 ** 40), 2 ** 40, size=(301, 23))
    a[150, 3], a[7, 22] = -(2 ** 41), 2 ** 41
    whole = kh.patch_codes(x, (3, 2), (2, 1), (1, 2), (1, 0, 2, 1))
    assert kh.int_bounds(a) == (-(2 ** 41), 2 ** 41) and np.array_equal(kh.int_row_sums(a), a.sum(axis=1))
    lo, hi, sums = kh.int_bounds_row_sums(a)
    assert (lo, hi) == (-(2 ** 41), 2 ** 41) and np.array_equal(sums, a.sum(axis=1))
    monkeypatch.setattr(kh, "SPLIT_VALUES", 1)
    for b in (1, 2, 7):   # as many examples as parts, fewer, more
        assert np.array_equal(kh.patch_codes(x[:b], (3, 2), (2, 1), (1, 2), (1, 0, 2, 1)), whole[:len(whole) * b // 7])
    for rows in (1, 2, 301):
        assert kh.int_bounds(a[:rows]) == (int(a[:rows].min()), int(a[:rows].max()))
        assert np.array_equal(kh.int_row_sums(a[:rows]), a[:rows].sum(axis=1))
        lo, hi, sums = kh.int_bounds_row_sums(a[:rows])
        assert (lo, hi) == (int(a[:rows].min()), int(a[:rows].max())) and np.array_equal(sums, a[:rows].sum(axis=1))


def test_parallel_map_inside_an_engine_thread_runs_there(monkeypatch):
    """Work started from one of the engine's threads runs on that thread, in order (a worker waiting on its own
    pool could wait forever); from another thread it goes to the pool."""
    import threading

    from cimsim.crossbar_cpu import parallel_map

    monkeypatch.setenv("CIMSIM_THREADS", "2")

    def outer(i):
        me = threading.current_thread().name
        inner = parallel_map(lambda j: (j, threading.current_thread().name), range(3))
        return me, inner

    got = parallel_map(outer, range(4))
    assert all(me.startswith("cimsim-engine") for me, _ in got)
    assert all([j for j, _ in inner] == [0, 1, 2] and {n for _, n in inner} == {me} for me, inner in got)
