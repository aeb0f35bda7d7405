"""A mapped network on the torch backend runs on the engine's device from layer to layer (no numpy, no host
round trip) and gives the same numbers as the host path and the numba backend."""

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.crossbar_torch import TorchTile
from cimsim.mappers import map_model

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class Net(nn.Module):
    """Convolutions (one grouped, one 1-d view through a linear), a residual add, pooling, a signed input."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.c3 = nn.Conv2d(8, 8, 1, stride=2)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        h = torch.relu(self.bn(self.c1(x)))
        h = torch.relu(self.c2(h) + h)
        return self.fc(self.c3(h).flatten(1))


def _data(seed=0, n=24):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = Net().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.2, 0.2, generator=g)
        net.bn.running_var.uniform_(0.5, 1.5, generator=g)
    x = torch.randn(n, 2, 8, 8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return net, x, y


def _arch(**kw):
    base = dict(weight_bits=8, input_bits=8, adc_bits=6, rows=64, cols=64)
    base.update(kw)
    return cimsim.arch.get("isaac", **base)


def _loader(x, y, batch=8):
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cell", ["ideal", "reram"])
def test_device_path_equals_the_numba_network(monkeypatch, device, cell):
    """Integer paths (ideal cells: exact levels; 6-bit calibrated ADCs that clip and round) agree bit for bit with
    numba: outputs, accuracy, every event count and each layer's output error. With programming noise
    (``reram``: real levels, no read noise) the same conductances give outputs equal within float32 rounding.
    The numpy entry of the torch tile is never called: the network never leaves the device."""
    net, x, y = _data()
    arch = _arch(cell=cell, **({"cell.read_sigma_frac": 0.0} if cell == "reram" else {}))
    ref = map_model(net, arch, x[:16], seed=3, progress=False)
    dev = map_model(net, arch, x[:16], seed=3, backend="torch", device=device, progress=False)
    assert dev.engine_device() == torch.device(device)

    def refuse(*a, **k):
        raise AssertionError("the torch tile's numpy entry was called")
    monkeypatch.setattr(TorchTile, "forward", refuse)
    out_ref, out_dev = ref(x), dev(x)
    assert out_dev.device.type == "cpu" and out_dev.dtype == out_ref.dtype
    if cell == "ideal":
        assert torch.equal(out_ref, out_dev)
    else:
        assert not torch.equal(out_ref, dev.set_mode("digital")(x))   # the noise is there
        dev.set_mode("analog")
        if device == "cpu":   # the same float32 products up to their summation order
            assert torch.allclose(out_ref, out_dev, rtol=1e-4, atol=1e-4 * float(out_ref.abs().max()))
        else:   # the split bf16 product (2**-16): a conversion that close to a code threshold may round the other way
            assert float((out_ref - out_dev).abs().mean()) <= 1e-3 * float(out_ref.abs().mean())
    ra = ref.evaluate(_loader(x, y), progress=False)
    rb = dev.evaluate(_loader(x, y), progress=False)
    if cell == "ideal":
        assert ra.accuracy == rb.accuracy
        ta, tb = ref.crossbar_events().totals(), dev.crossbar_events().totals()
        assert ta.keys() == tb.keys()
        for k in ta:   # conductance-seconds: float sums in another order
            assert tb[k] == pytest.approx(ta[k], rel=1e-12, abs=0), k
        for la, lb in zip(ra.layers, rb.layers):
            assert lb["rel_error"] == pytest.approx(la["rel_error"], rel=1e-12, abs=1e-300, nan_ok=True)
        assert any(l["rel_error"] > 0 for l in ra.layers)   # the ADCs do round: the errors are compared, not zeros


@pytest.mark.parametrize("device", DEVICES)
def test_digital_mode_on_the_device_is_the_exact_integer_network(device):
    net, x, _ = _data(seed=1)
    ref = map_model(net, _arch(), x[:16], seed=0, progress=False).set_mode("digital")
    dev = map_model(net, _arch(), x[:16], seed=0, backend="torch", device=device, progress=False).set_mode("digital")
    assert torch.equal(ref(x), dev(x))


def test_device_calls_count_their_events_when_the_ledger_is_read():
    """Crossbar.call_device leaves the tally on the device; reading the ledger counts it, in call order, exactly
    as the host call does."""
    rng = np.random.default_rng(0)
    W = rng.integers(-7, 8, size=(12, 100))
    x = rng.integers(0, 16, size=(20, 100))
    spec = cimsim.CrossbarSpec(rows=64, cols=64, weight_bits=4, input_bits=4, readout=cimsim.devices.SarADC(bits=5),
                               adc_range="full")
    host = cimsim.Crossbar(W, spec, backend="torch")
    dev = cimsim.Crossbar(W, spec, backend="torch")
    y_host = np.concatenate([host(x[:7]), host(x[7:])])
    y0 = dev.call_device(torch.as_tensor(x[:7], dtype=torch.float32))
    assert len(dev._pending) == 1
    y1 = dev(x[7:])                      # a host call after a pending device call: counted after it
    assert np.array_equal(y_host, np.concatenate([y0.numpy(), y1]))
    assert dev.ledger.totals() == host.ledger.totals() and not dev._pending
    dev.ledger = cimsim.EventLedger()
    dev.call_device(torch.as_tensor(x))
    dev.ledger = cimsim.EventLedger()    # a reset forgets the pending calls too
    assert dev.ledger.totals() == {}


@pytest.mark.parametrize("bad, what", [(torch.zeros(3, 99), r"shape \(3, 99\)"), (np.zeros((3, 100)), "ndarray"),
                                       (torch.zeros(100), r"shape \(100,\)"), (torch.zeros(2, 3, 100), "shape")])
def test_a_device_call_refuses_an_input_of_the_wrong_kind_shape_or_width(bad, what):
    W = np.random.default_rng(0).integers(-7, 8, size=(12, 100))
    xb = cimsim.Crossbar(W, cimsim.CrossbarSpec(rows=64, cols=64, weight_bits=4, input_bits=4), backend="torch")
    with pytest.raises(cimsim.errors.ConfigError, match=r"call_device takes a 2-D torch tensor \(batch, 100\).*" + what):
        xb.call_device(bad)
    assert not xb._pending
