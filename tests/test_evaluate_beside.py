"""The float reference beside the mapped network (issue 19, the 2-core target): on the host engine
:meth:`MappedModel.evaluate` runs a batch's float reference in a thread of its own while the mapped network runs the
batch. Its outputs must be the same numbers as on the calling thread, errors must reach the caller, and ``cimsim run``
must leave Python's collector as it found it (it is off while the modules load)."""

import gc
import threading

import pytest
import torch

from cimsim.workloads import datasets

FMNIST = datasets.SYSTEM_ROOT / "fashion-mnist"
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed")


def _mapped(spec_kw=None):
    from cimsim import arch as arch_mod
    from cimsim.mappers import mapper
    from cimsim.workloads import zoo

    torch.manual_seed(0)
    data = datasets.load("fashion-mnist")
    model = zoo.build("lenet5")
    cal = data.loader("train", batch_size=16, limit=32, shuffle=False)
    test = data.loader("test", batch_size=16, limit=48)
    m = mapper.map_model(model, arch_mod.get("isaac", **(spec_kw or {})), cal, seed=0, progress=False)
    return m, test


@needs_fmnist
@pytest.mark.parametrize("spec_kw", [{}, {"cell.read_sigma_frac": 0.02, "cell.prog_sigma_frac": 0.05}])
def test_reference_beside_gives_the_same_outputs_and_report(monkeypatch, spec_kw):
    """Lossless (ISAAC's defaults) and noisy: the reference's logits, batch for batch, and the whole report equal
    those of the reference run after the mapped network on the calling thread; beside, it ran on another thread."""
    monkeypatch.setenv("CIMSIM_THREADS", "2")
    from cimsim.mappers.mapped import MappedModel

    real = MappedModel._reference_forward
    seen = []
    monkeypatch.setattr(MappedModel, "_reference_forward",
                        lambda self, x: seen.append((threading.get_ident(), real(self, x))) or seen[-1][1])

    def run(beside):
        monkeypatch.setattr(MappedModel, "REFERENCE_BESIDE", beside)
        m, test = _mapped(spec_kw)
        seen.clear()
        d = m.evaluate(test, progress=False).to_dict()
        d["config"].pop("wall_seconds")
        d.pop("created", None)
        return d, list(seen)

    a, out_a = run(True)
    b, out_b = run(False)
    main = threading.get_ident()
    assert len(out_a) == len(out_b) == 3
    assert all(t != main for t, _ in out_a) and all(t == main for t, _ in out_b)
    for (_, ya), (_, yb) in zip(out_a, out_b):
        assert torch.equal(ya, yb)
    assert a == b


@needs_fmnist
@pytest.mark.parametrize("where", ["reference", "mapped"])
def test_an_error_on_either_side_reaches_the_caller(monkeypatch, where):
    monkeypatch.setenv("CIMSIM_THREADS", "2")
    from cimsim.mappers.mapped import MappedLayer, MappedModel

    m, test = _mapped()
    modes = [mod.training for mod in m.reference.modules()]
    done = []

    def ref_fails(self, x):
        raise ValueError("reference failed")

    def ref_slow(self, x, real=MappedModel._reference_forward):
        out = real(self, x)
        done.append(threading.get_ident())
        return out

    def layer_fails(self, x):
        raise ValueError("mapped failed")

    if where == "reference":
        monkeypatch.setattr(MappedModel, "_reference_forward", ref_fails)
    else:
        monkeypatch.setattr(MappedModel, "_reference_forward", ref_slow)
        monkeypatch.setattr(MappedLayer, "forward", layer_fails)
    with pytest.raises(ValueError, match=f"{where} failed"):
        m.evaluate(test, progress=False)
    if where == "mapped":
        assert len(done) == 1      # the first batch's reference finished before the error left evaluate
    assert [mod.training for mod in m.reference.modules()] == modes   # the reference's modes given back


@needs_fmnist
def test_cimsim_run_leaves_the_collector_on(capsys):
    from cimsim.cli import main

    assert gc.isenabled()
    try:
        assert main(["run", "--arch", "isaac", "--model", "lenet5", "--dataset", "fashion-mnist", "--limit", "16",
                     "--calibration", "16", "--json"]) == 0
        assert gc.isenabled()
        assert main(["run", "--arch", "isaac", "--model", "no-such-net", "--dataset", "fashion-mnist"]) == 2
        assert gc.isenabled()
    finally:
        gc.unfreeze()
    assert '"accuracy"' in capsys.readouterr().out


def test_read_ahead_hands_over_the_same_bytes(tmp_path, monkeypatch):
    """cimsim.datafiles: the IDX files read ahead in a thread are the bytes read_idx reads itself (plain and gzipped),
    handed over once; a file changed after it was read ahead, or one that was not, is read again; an unreadable
    file still gets read_idx's one-line error."""
    import gzip as gz

    import numpy as np

    from cimsim import datafiles
    from cimsim.errors import DatasetError

    d = tmp_path / "fashion-mnist"
    d.mkdir()
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 5, dtype=np.uint8)
    idx3 = bytes([0, 0, 8, 3]) + b"".join(int(n).to_bytes(4, "big") for n in imgs.shape) + imgs.tobytes()
    idx1 = bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + labels.tobytes()
    (d / "train-images-idx3-ubyte.gz").write_bytes(gz.compress(idx3))
    (d / "t10k-images-idx3-ubyte").write_bytes(idx3)
    (d / "train-labels-idx1-ubyte").write_bytes(idx1)
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gz.compress(idx1))
    datafiles.forget()
    try:
        assert datafiles.read_ahead("fashion-mnist", tmp_path)
        assert not datafiles.read_ahead("fashion-mnist", tmp_path)      # one read-ahead at a time
        got = datafiles.take(d / "train-images-idx3-ubyte.gz")
        assert got == idx3 == datafiles.read_raw(d / "train-images-idx3-ubyte.gz")
        assert datafiles.take(d / "train-images-idx3-ubyte.gz") is None  # handed over once
        assert datafiles.take(d / "t10k-labels-idx1-ubyte.gz") == idx1
        (d / "t10k-images-idx3-ubyte").write_bytes(idx3[:-1])          # changed since: not the bytes read ahead
        assert datafiles.take(d / "t10k-images-idx3-ubyte") is None
        from cimsim.workloads.datasets import read_idx
        with pytest.raises(DatasetError, match="holds 3919 data bytes"):
            read_idx(d / "t10k-images-idx3-ubyte")
        assert np.array_equal(read_idx(d / "train-labels-idx1-ubyte"), labels)   # taken from the read-ahead
        assert not datafiles.read_ahead("cifar10", tmp_path)              # not an IDX set: nothing started
    finally:
        datafiles.forget()
    assert datafiles.take(d / "train-labels-idx1-ubyte") is None
    assert datafiles.read_ahead("fashion-mnist", tmp_path)                # after forget, a new one may start
    datafiles.forget()
