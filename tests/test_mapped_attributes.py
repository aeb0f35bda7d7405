"""A mapped layer answers the standard attributes of the layer it replaces (mappers.mapped_attrs): ``weight`` (the
programmed, dequantized integer weights), ``bias``, and the shape attributes; read-only, and invisible to
``parameters()`` / ``state_dict()``."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from cimsim.mappers import quantize_weights
from cimsim.mappers.mapper import KeptDigitalWarning, UncostedWorkWarning

SHAPE_ATTRS = {nn.Linear: ("in_features", "out_features"),
               nn.Conv1d: ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                           "padding_mode"),
               nn.Conv2d: ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                           "padding_mode")}


class Reader(nn.Module):
    """A researcher's forward that reads its layers' attributes: dtype and device of a weight, channels, features,
    the bias's shape. ``read=False``: the same arithmetic without the reads."""

    def __init__(self, read: bool = True):
        super().__init__()
        self.read = read
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)                     # folded into conv: a mapped bias where the layer had none
        self.seq = nn.Conv1d(4, 6, 3, stride=2, groups=2)
        self.fc = nn.Linear(6 * 17, 5)

    def forward(self, x):
        if self.read:
            x = x.to(dtype=self.conv.weight.dtype, device=self.conv.weight.device)
        h = torch.relu(self.bn(self.conv(x)))
        rows = self.conv.out_channels if self.read else 4
        h = torch.relu(self.seq(h.reshape(h.shape[0], rows, -1)))                 # (B, 4, 36) -> (B, 6, 17)
        width = self.fc.in_features if self.read else 6 * 17
        y = self.fc(h.reshape(-1, width).to(self.fc.weight.dtype) if self.read else h.reshape(-1, width))
        if self.read:
            assert self.fc.bias.shape == (self.fc.out_features,) and self.seq.kernel_size == (3,)
            return y + torch.zeros(self.fc.out_features, dtype=self.fc.weight.dtype, device=self.fc.weight.device)
        return y + torch.zeros(5)


def _net(read=True):
    torch.manual_seed(0)
    net = Reader(read)
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.2, 0.2)
        net.bn.running_var.uniform_(0.5, 1.5)
    return net.eval()


X = torch.randn(6, 1, 6, 6, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def mapped():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncostedWorkWarning)   # reading metadata is no uncosted work
        return cimsim.map(_net(), cimsim.arch.get("isaac"), calibration=X, seed=0, progress=False)


def _programmed(layer, dtype=torch.float32):
    return torch.from_numpy(layer.w_int * layer.w_scale[:, None]).reshape(layer.source.weight.shape).to(dtype)


def test_a_forward_reading_attributes_maps_and_runs_in_every_mode(mapped):
    assert set(mapped.mapped_layers) == {"conv", "seq", "fc"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncostedWorkWarning)
        plain = cimsim.map(_net(read=False), cimsim.arch.get("isaac"), calibration=X, seed=0, progress=False)
    for mode in ("analog", "digital", "float"):
        out = mapped.set_mode(mode)(X)
        assert out.shape == (6, 5) and out.dtype == torch.float32
        assert torch.equal(out, plain.set_mode(mode)(X)), mode    # the reads change nothing, bit for bit
    mapped.set_mode("analog")
    rep = mapped.evaluate([(X, torch.zeros(6, dtype=torch.long))], progress=False)
    assert rep.energy_j == plain.set_mode("analog").evaluate([(X, torch.zeros(6, dtype=torch.long))],
                                                             progress=False).energy_j


def test_weight_is_the_dequantized_integer_weights(mapped):
    for name, layer in mapped.mapped_layers.items():
        w = layer.weight
        assert type(w) is torch.Tensor and not isinstance(w, nn.Parameter) and not w.requires_grad
        assert w.shape == layer.source.weight.shape and w.dtype == torch.float32 and w.device.type == "cpu"
        assert torch.equal(w, _programmed(layer)), name
        # the programmed weights, not the float ones: within half a quantization step of them
        step = torch.from_numpy(layer.w_scale).float().reshape(-1, *[1] * (w.dim() - 1))
        assert bool(((w - layer.source.weight).abs() <= step / 2 + 1e-7).all())
        q, s = quantize_weights(layer.source.weight, layer.arch.weight_bits)
        assert np.array_equal(layer.w_int.reshape(q.shape), q) and np.array_equal(layer.w_scale, s)


def test_bias_is_the_folded_bias_as_a_tensor(mapped):
    for layer in mapped.mapped_layers.values():
        b = layer.bias
        assert type(b) is torch.Tensor and b.dtype == torch.float32 and b.shape == (layer.plan.out_features,)
        assert torch.equal(b, torch.from_numpy(layer._bias64).float())
        assert torch.equal(b, layer.source.bias.detach())
    net = nn.Sequential(nn.Linear(4, 3, bias=False))
    lone = cimsim.map(net, cimsim.arch.get("isaac"), calibration=torch.randn(4, 4), progress=False)
    assert lone.mapped_layers["0"].bias is None and lone.mapped_layers["0"]._bias64 is None


@pytest.mark.parametrize("layer,shape", [
    (nn.Linear(12, 5), (3, 12)),
    (nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2), (3, 4, 16)),
    (nn.Conv2d(3, 8, (3, 1), stride=(2, 1), padding=(1, 0), bias=False), (3, 3, 8, 8)),
    (nn.Conv2d(4, 4, 3, padding="same", dilation=2, groups=4), (3, 4, 8, 8))])
def test_shape_attributes_are_the_source_layers(layer, shape):
    x = torch.randn(*shape)
    m = cimsim.map(nn.Sequential(layer).eval(), cimsim.arch.get("isaac"), calibration=x, progress=False)
    mapped = m.mapped_layers["0"]
    for attr in SHAPE_ATTRS[type(layer)]:
        assert getattr(mapped, attr) == getattr(layer, attr), attr
    for attr in {a for attrs in SHAPE_ATTRS.values() for a in attrs} - set(SHAPE_ATTRS[type(layer)]):
        assert not hasattr(mapped, attr), attr     # as the layer it replaces: a Linear has no kernel_size
    assert mapped.weight.shape == layer.weight.shape
    # MappedLayer's own attributes are untouched
    assert mapped.conv == (not isinstance(layer, nn.Linear)) and mapped.kind == type(layer).__name__
    assert mapped.name == "0" and mapped.plan.name == "0"
    assert m(x).shape == layer(x).shape


def test_state_dict_and_parameters_are_the_source_layers_only(mapped):
    """As before mapped layers answered ``weight``: the sources' parameters, under ``source``, nothing else."""
    keys = list(mapped.state_dict())
    assert keys == ["model.conv.source.weight", "model.conv.source.bias", "model.seq.source.weight",
                    "model.seq.source.bias", "model.fc.source.weight", "model.fc.source.bias"]
    names = [n for n, _ in mapped.named_parameters()]
    assert names == keys and not list(mapped.named_buffers())
    sources = [p for layer in mapped.mapped_layers.values() for p in layer.source.parameters()]
    assert [id(p) for p in mapped.parameters()] == [id(p) for p in sources]
    for layer in mapped.mapped_layers.values():
        assert set(layer._parameters) == set() and set(layer._buffers) == set()
        assert list(layer.state_dict()) == ["source.weight", "source.bias"]


def test_assigning_weight_or_bias_or_a_shape_is_refused(mapped):
    layer = mapped.mapped_layers["fc"]
    before = layer.weight.clone()
    values = {"weight": [nn.Parameter(torch.zeros(5, 102)), torch.zeros(5, 102), None],
              "bias": [nn.Parameter(torch.zeros(5)), torch.zeros(5), None], "in_features": [3]}
    for attr, vals in values.items():
        for v in vals:
            with pytest.raises(ConfigError, match=rf"{attr} of mapped layer fc .*map the network again"):
                setattr(layer, attr, v)
        with pytest.raises(ConfigError, match=rf"{attr} of mapped layer fc"):
            delattr(layer, attr)
    assert torch.equal(layer.weight, before) and "weight" not in layer._parameters
    with pytest.raises(ConfigError, match="kernel_size of mapped layer conv"):
        mapped.mapped_layers["conv"].kernel_size = 5
    layer.mode = layer.mode     # MappedLayer's own attributes stay assignable


def test_a_changed_copy_does_not_change_the_layer(mapped):
    layer = mapped.mapped_layers["fc"]
    out = mapped(X)
    w, b = layer.weight, layer.bias
    with torch.no_grad():
        w.zero_()
        b.add_(1.0)
    assert torch.equal(layer.weight, _programmed(layer)) and torch.equal(layer.bias, layer.source.bias.detach())
    assert torch.equal(mapped(X), out)
    w2 = layer.weight
    w2.requires_grad_(True)
    assert not layer.weight.requires_grad


def test_weight_follows_set_integer_weights_and_the_sources_dtype():
    net = nn.Sequential(nn.Conv1d(4, 6, 3, groups=2)).eval()
    layer = cimsim.map(net, cimsim.arch.get("isaac"), calibration=torch.randn(3, 4, 10),
                       progress=False).mapped_layers["0"]
    assert torch.equal(layer.weight, _programmed(layer))
    q = layer.w_int.reshape(layer.source.weight.shape) // 2
    scale = layer.w_scale * 3
    layer.set_integer_weights(q, scale)
    assert torch.equal(layer.weight, torch.from_numpy(q * scale[:, None, None]).float())
    layer.source.double()
    assert layer.weight.dtype == torch.float64 and torch.equal(layer.weight, torch.from_numpy(q * scale[:, None, None]))
    assert layer.bias.dtype == torch.float64 and torch.equal(layer.bias, torch.from_numpy(layer._bias64))


def test_an_sme_layers_weight_is_its_shaped_weights():
    """SME programs shaped integer weights (set_integer_weights): ``weight`` is those, as its crossbars hold."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 7 * 7, 10)).eval()
    x = torch.rand(4, 1, 7, 7, generator=torch.Generator().manual_seed(1))
    arch = cimsim.arch.get("sme", cell="ideal", nonzero_bits=2, squeeze_density=1.0, shaping_tolerance=0.03)
    mapped = cimsim.map(net, arch, calibration=x, seed=0, progress=False)
    mapped(x)
    shaped = False
    for layer in mapped.mapped_layers.values():
        assert torch.equal(layer.weight, _programmed(layer))
        q, s = quantize_weights(layer.source.weight, arch.weight_bits)
        shaped |= not torch.equal(layer.weight, torch.from_numpy(q * s.reshape(-1, *[1] * (q.ndim - 1))).float())
        held = layer.crossbars[0].exact_weights()          # what the (lossless) tile computed with: (K, O)
        assert held is not None and np.array_equal(held.T, layer.w_int)
    assert shaped


class Functional(nn.Module):
    """A forward that also uses a layer's weight functionally, beside calling the layer."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(x) + F.linear(x, self.fc.weight)


def test_a_weight_used_functionally_is_warned_costed_and_computes_with_the_programmed_weights():
    torch.manual_seed(0)
    x = torch.randn(5, 8)
    with pytest.warns(KeptDigitalWarning, match=r"kept digital .*: fc \(its weight also used in Functional's forward, "
                                                r"not by the layer: computed and costed as digital work\)$"):
        mapped = cimsim.map(Functional().eval(), cimsim.arch.get("isaac"), calibration=x, progress=False)
    assert list(mapped.mapped_layers) == ["fc"] and mapped.calibration_info["uncosted_layers"] == []
    report = mapped.evaluate([(x, torch.zeros(5, dtype=torch.int64))], progress=False)
    assert report.config["ledger"]["Functional.linear()"]["mac"] == 8 * 4   # one example's product, digital
    layer = mapped.mapped_layers["fc"]
    for mode in ("analog", "digital", "float"):
        mapped.set_mode(mode)
        with torch.no_grad():
            assert torch.equal(mapped(x), layer(x) + F.linear(x, _programmed(layer)))


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_weight_is_on_the_engines_device_on_the_torch_backend(device):
    net = _net()
    mapped = cimsim.map(net, cimsim.arch.get("isaac"), calibration=X, seed=0, progress=False, backend="torch",
                        device=device)
    host = cimsim.map(_net(), cimsim.arch.get("isaac"), calibration=X, seed=0, progress=False)
    out = mapped.set_mode("digital")(X)      # the forward builds a tensor on fc.weight.device: the engine's
    assert torch.equal(out, host.set_mode("digital")(X))
    for layer in mapped.mapped_layers.values():
        assert layer.weight.device.type == device and layer.bias.device.type == device
        assert torch.equal(layer.weight.cpu(), _programmed(layer))
