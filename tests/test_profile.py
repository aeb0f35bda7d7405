"""Tests for cimsim.mappers.profile: per-layer event counts of one inference, checked against formulas.

Every expected count is computed here from the layer's hyper-parameters (output sizes from the
convolution arithmetic, not read back from torch), so a wrong formula in the profiler fails a test.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cimsim.mappers.profile import OWN_OPS, Profile, profile
from cimsim.workloads import snn_zoo, zoo


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one intra-op thread is fastest and immune to a busy shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _conv_out(size: int, k: int, stride: int = 1, pad: int = 0, dil: int = 1) -> int:
    """Output length of a convolution / pooling along one axis (PyTorch's formula, floor mode)."""
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


def _only_layer(prof: Profile) -> dict:
    layers = prof.ledger.layers()
    assert len(layers) == 1, layers
    return prof.ledger.layer(layers[0])


# ---------------------------------------------------------------------------------------------- Linear
@pytest.mark.parametrize("bias", [True, False])
def test_linear_counts(bias):
    fin, fout = 13, 7
    prof = profile(nn.Linear(fin, fout, bias=bias), torch.randn(1, fin))
    ev = _only_layer(prof)
    expected = {"mac": fin * fout, "weight_read": fin * fout + (fout if bias else 0),
                "act_read": fin, "act_write": fout}
    if bias:
        expected["add"] = fout
    assert ev == expected
    assert prof.uncosted == []
    assert prof.kinds == {"Linear": "Linear"}


def test_linear_on_sequence_counts_every_position():
    # (batch, positions, features): one example has 5 positions, each a full matrix-vector product.
    prof = profile(nn.Linear(13, 7), torch.randn(3, 5, 13))
    ev = _only_layer(prof)
    assert ev["mac"] == 5 * 13 * 7
    assert ev["add"] == 5 * 7
    assert ev["act_read"] == 5 * 13 and ev["act_write"] == 5 * 7
    assert ev["weight_read"] == 13 * 7 + 7  # weights are read once, not once per position


# ---------------------------------------------------------------------------------------------- Conv
CONV2D_CASES = [
    # cin, cout, kernel, stride, padding, dilation, groups, (H, W), bias
    (4, 6, (3, 3), (1, 1), (0, 0), (1, 1), 1, (10, 10), True),
    (4, 8, (3, 5), (2, 1), (1, 2), (1, 2), 2, (11, 13), False),   # grouped, dilated, asymmetric
    (6, 6, (3, 3), (2, 2), (1, 1), (1, 1), 6, (9, 9), False),     # depthwise
    (4, 8, (3, 3), (1, 1), (1, 1), (2, 2), 4, (8, 7), True),      # depthwise with channel multiplier 2
    (3, 5, (1, 1), (2, 2), (0, 0), (1, 1), 1, (7, 7), False),     # strided 1x1 (a ResNet shortcut)
]


@pytest.mark.parametrize("cin,cout,k,s,p,d,g,hw,bias", CONV2D_CASES)
def test_conv2d_counts(cin, cout, k, s, p, d, g, hw, bias):
    conv = nn.Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g, bias=bias)
    prof = profile(conv, torch.randn(1, cin, *hw))
    ho = _conv_out(hw[0], k[0], s[0], p[0], d[0])
    wo = _conv_out(hw[1], k[1], s[1], p[1], d[1])
    out_numel = cout * ho * wo
    n_weights = cout * (cin // g) * k[0] * k[1]
    expected = {"mac": out_numel * (cin // g) * k[0] * k[1],
                "weight_read": n_weights + (cout if bias else 0),
                "act_read": cin * hw[0] * hw[1], "act_write": out_numel}
    if bias:
        expected["add"] = out_numel
    assert _only_layer(prof) == expected


def test_depthwise_conv_is_cheaper_by_the_channel_count():
    x = torch.randn(1, 16, 12, 12)
    full = profile(nn.Conv2d(16, 16, 3, padding=1, bias=False), x).ledger.count("mac")
    dw = profile(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), x).ledger.count("mac")
    assert full == 16 * 12 * 12 * 16 * 9
    assert dw == 16 * 12 * 12 * 9
    assert full == 16 * dw


def test_conv1d_counts():
    cin, cout, k, s, p, d, g, length = 4, 8, 3, 2, 1, 2, 2, 20
    conv = nn.Conv1d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g)
    prof = profile(conv, torch.randn(1, cin, length))
    lo = _conv_out(length, k, s, p, d)
    assert lo == 9
    assert _only_layer(prof) == {"mac": cout * lo * (cin // g) * k, "weight_read": cout * (cin // g) * k + cout,
                                 "act_read": cin * length, "act_write": cout * lo, "add": cout * lo}


class _SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        y = self.relu(self.bn(self.conv(x)))
        y = self.pool(y + self.conv(x))
        return self.fc(torch.flatten(y, 1))


def test_batch_dimension_is_ignored():
    torch.manual_seed(0)
    net = _SmallNet()
    x = torch.rand(7, 3, 8, 8)
    one = profile(net, x[:1]).ledger.to_dict()
    seven = profile(net, x).ledger.to_dict()
    assert seven == one
    assert one["conv"]["mac"] == 2 * (4 * 8 * 8 * 3 * 9)  # the conv is called twice per inference
    assert one["fc"]["mac"] == 64 * 5
    assert one["_SmallNet"] == {"add": 4 * 8 * 8}          # the residual add of the top module


# ---------------------------------------------------------------------------------------------- element-wise
def test_batchnorm_counts():
    prof = profile(nn.BatchNorm2d(5), torch.randn(3, 5, 6, 7))
    n = 5 * 6 * 7
    assert _only_layer(prof) == {"mul": n, "add": n}


@pytest.mark.parametrize("mod,per_element", [(nn.ReLU(), {"compare": 1}), (nn.LeakyReLU(0.1), {"compare": 1, "mul": 1}),
                                             (nn.ReLU6(), {"compare": 2}), (nn.Hardtanh(), {"compare": 2})])
def test_activation_counts(mod, per_element):
    # a leaky ReLU compares and multiplies by its slope (every value: the select comes after)
    x = torch.randn(2, 3, 5, 6)
    n = 3 * 5 * 6
    assert _only_layer(profile(mod, x)) == {k: v * n for k, v in per_element.items()}


def test_inplace_relu_counts_the_same():
    x = torch.randn(1, 3, 5, 6)
    assert _only_layer(profile(nn.ReLU(inplace=True), x.clone())) == {"compare": 90}


def test_maxpool2d_counts():
    prof = profile(nn.MaxPool2d(2), torch.randn(1, 3, 8, 10))
    n_out = 3 * 4 * 5
    assert _only_layer(prof) == {"compare": n_out * (4 - 1)}


def test_maxpool2d_tuple_kernel_with_stride():
    pool = nn.MaxPool2d((3, 2), stride=1)
    prof = profile(pool, torch.randn(1, 2, 6, 6))
    n_out = 2 * _conv_out(6, 3) * _conv_out(6, 2)
    assert _only_layer(prof) == {"compare": n_out * (3 * 2 - 1)}


def test_avgpool2d_counts():
    prof = profile(nn.AvgPool2d(2), torch.randn(1, 3, 8, 10))
    n_out = 3 * 4 * 5
    assert _only_layer(prof) == {"add": n_out * (4 - 1), "mul": n_out}


def test_avgpool2d_3x3_stride2_padded():
    prof = profile(nn.AvgPool2d(3, stride=2, padding=1), torch.randn(1, 4, 9, 9))
    n_out = 4 * _conv_out(9, 3, 2, 1) ** 2
    assert _only_layer(prof) == {"add": n_out * 8, "mul": n_out}


@pytest.mark.parametrize("pool,x,window", [
    (nn.MaxPool1d(3), torch.randn(1, 2, 9), 3),
    (nn.MaxPool3d(2), torch.randn(1, 2, 4, 4, 4), 8),
    (nn.MaxPool3d((1, 2, 3)), torch.randn(1, 2, 4, 4, 6), 6),
])
def test_maxpool_1d_3d_window_sizes(pool, x, window):
    y = pool(x)
    assert _only_layer(profile(pool, x)) == {"compare": y[:1].numel() * (window - 1)}


@pytest.mark.parametrize("pool,x,window", [
    (nn.AvgPool1d(3), torch.randn(1, 2, 9), 3),
    (nn.AvgPool3d(2), torch.randn(1, 2, 4, 4, 4), 8),
])
def test_avgpool_1d_3d_window_sizes(pool, x, window):
    n_out = pool(x)[:1].numel()
    assert _only_layer(profile(pool, x)) == {"add": n_out * (window - 1), "mul": n_out}


def test_adaptive_avgpool_counts():
    c, h, w = 6, 7, 5
    prof = profile(nn.AdaptiveAvgPool2d(1), torch.randn(2, c, h, w))
    assert _only_layer(prof) == {"add": c * h * w - c, "mul": c}


def test_adaptive_maxpool_counts():
    c, h, w = 6, 7, 5
    prof = profile(nn.AdaptiveMaxPool2d(1), torch.randn(2, c, h, w))
    assert _only_layer(prof) == {"compare": c * h * w - c}


def test_flatten_and_dropout_are_free_but_listed():
    net = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Identity(), nn.Linear(12, 2, bias=False))
    prof = profile(net, torch.randn(4, 3, 2, 2))
    assert prof.ledger.layers() == ["0", "1", "2", "3"]
    for name in ("0", "1", "2"):
        assert prof.ledger.layer(name) == {}
    assert prof.ledger.count("mac") == 24
    assert prof.kinds["0"] == "Flatten" and prof.kinds["1"] == "Dropout" and prof.kinds["3"] == "Linear"
    assert prof.uncosted == []


def test_dropout_is_inactive_during_profiling():
    # The profile runs in eval mode: a p=0.999 dropout would otherwise zero almost every input; the
    # counts do not depend on values, but the model's outputs inside profiling must be deterministic.
    net = nn.Sequential(nn.Dropout(0.999), nn.Linear(10, 3))
    net.train()
    a = profile(net, torch.ones(1, 10)).ledger.to_dict()
    b = profile(net, torch.ones(1, 10)).ledger.to_dict()
    assert a == b
    assert net.training


# ---------------------------------------------------------------------------------------------- residual adds
class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)

    def forward(self, x):
        return self.conv(x) + x


class _InplaceResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv(x)
        out += x
        return out


class _MethodResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.add(self.conv(x), x).add_(x)   # two adds, function and in-place method


@pytest.mark.parametrize("cls,n_adds", [(_Residual, 1), (_InplaceResidual, 1), (_MethodResidual, 2)])
def test_residual_add_is_booked_to_the_module(cls, n_adds):
    x = torch.randn(2, 3, 5, 6)
    prof = profile(cls(), x)
    n = 3 * 5 * 6
    assert prof.ledger.layer(cls.__name__) == {"add": n_adds * n}
    # the network's own operations: a row named after its class, of its own kind (a bare layer keeps its kind)
    assert prof.kinds[cls.__name__] == OWN_OPS and prof.kinds["conv"] == "Conv2d"
    conv = prof.ledger.layer("conv")
    assert conv["mac"] == n * 3 * 9
    assert "add" not in conv  # no bias: the residual add must not land on the conv


class _Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = _Residual()
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        return self.fc(torch.flatten(self.block(x), 1))


def test_nested_residual_add_goes_to_the_inner_module():
    prof = profile(_Outer(), torch.randn(1, 3, 4, 4))
    assert prof.ledger.layer("block") == {"add": 3 * 4 * 4}
    assert "_Outer" not in prof.ledger.layers()  # the top module did no work of its own
    assert prof.kinds["block"] == "_Residual's own ops" and prof.kinds["block.conv"] == "Conv2d"


class _TwiceReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 4, bias=False)

    def forward(self, x):
        return self.relu(self.fc(self.relu(x)))


def test_reused_module_is_counted_every_call():
    prof = profile(_TwiceReLU(), torch.randn(1, 8))
    assert prof.ledger.layer("relu") == {"compare": 8 + 4}
    assert prof.ledger.layer("fc")["mac"] == 32


def test_adds_outside_any_module_are_not_booked():
    # Nothing runs outside the model's forward, and the ledger has no anonymous layer.
    prof = profile(nn.Linear(4, 4, bias=False), torch.randn(1, 4))
    assert prof.ledger.layers() == ["Linear"]
    assert prof.ledger.count("add") == 0


# ---------------------------------------------------------------------------------------------- unknown modules
class _Sin(nn.Module):
    """A leaf module no rule covers whose forward calls a function no rule knows (the log-gamma function)."""

    def forward(self, x):
        return torch.lgamma(x)


class _WithSin(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.sin = _Sin()

    def forward(self, x):
        return self.sin(self.fc(x))


def test_unknown_leaf_is_listed_as_uncosted():
    prof = profile(_WithSin(), torch.randn(1, 4))
    assert prof.uncosted == ["sin"]
    assert "sin" in prof.ledger.layers()
    assert prof.ledger.layer("sin") == {}
    assert prof.kinds["sin"] == "_Sin"
    assert prof.ledger.layer("fc")["mac"] == 16


def test_unknown_leaf_called_twice_is_listed_once():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.sin = _Sin()

        def forward(self, x):
            return self.sin(self.sin(x))

    prof = profile(Twice(), torch.randn(1, 4))
    assert prof.uncosted == ["sin"]


def test_empty_sequential_is_a_free_identity():
    # ResNet identity shortcuts are ``nn.Sequential()``: a leaf that does nothing, not unknown work.
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1, bias=False)
            self.shortcut = nn.Sequential()

        def forward(self, x):
            return self.conv(x) + self.shortcut(x)

    prof = profile(Block(), torch.randn(1, 2, 3, 3))
    assert prof.uncosted == []
    assert prof.ledger.layer("shortcut") == {}
    assert prof.ledger.layer("Block") == {"add": 18}


# ---------------------------------------------------------------------------------------------- zoo
def test_lenet5_macs():
    prof = profile(zoo.build("lenet5"), torch.randn(1, 1, 28, 28))
    led = prof.ledger
    per_layer = {"features.0": 117_600, "features.3": 240_000, "classifier.1": 48_000,
                 "classifier.3": 10_080, "classifier.5": 840}
    assert {l: led.count("mac", l) for l in per_layer} == per_layer
    # the analytic form of each of those
    assert per_layer["features.0"] == 6 * 28 * 28 * 1 * 25
    assert per_layer["features.3"] == 16 * 10 * 10 * 6 * 25
    assert per_layer["classifier.1"] == 400 * 120
    assert led.count("mac") == 416_520
    assert led.count("compare", "features.1") == 6 * 28 * 28            # ReLU
    assert led.count("compare", "features.2") == 6 * 14 * 14 * 3        # 2x2 max-pool
    assert led.count("compare", "features.5") == 16 * 5 * 5 * 3
    assert led.layer("classifier.0") == {}                              # Flatten
    assert prof.uncosted == []


def _resnet20_macs(in_channels: int, size: int, widths=(16, 32, 64), blocks=3, num_classes=10) -> int:
    macs = size * size * widths[0] * in_channels * 9  # stem
    cin = widths[0]
    for stage, w in enumerate(widths):
        for b in range(blocks):
            stride = 2 if (stage > 0 and b == 0) else 1
            size = (size + 2 - 3) // stride + 1                 # 3x3, padding 1
            macs += size * size * w * cin * 9                  # conv1
            macs += size * size * w * w * 9                    # conv2
            if stride != 1 or cin != w:
                macs += size * size * w * cin                  # 1x1 projection shortcut
            cin = w
    return macs + cin * num_classes


def test_resnet20_macs_match_analytic_count():
    prof = profile(zoo.build("resnet20"), torch.randn(2, 1, 28, 28))
    expected = _resnet20_macs(1, 28)
    # the same count written out stage by stage, as a guard on the helper itself
    assert expected == (28 * 28 * 16 * 9                                              # stem
                        + 3 * 2 * 28 * 28 * 16 * 16 * 9                               # stage 1
                        + 14 * 14 * 32 * (16 * 9 + 32 * 9 + 16) + 2 * 2 * 14 * 14 * 32 * 32 * 9   # stage 2
                        + 7 * 7 * 64 * (32 * 9 + 64 * 9 + 32) + 2 * 2 * 7 * 7 * 64 * 64 * 9       # stage 3
                        + 64 * 10)                                                    # fc
    assert expected == 31_021_952
    assert prof.ledger.count("mac") == expected
    assert prof.uncosted == []
    # residual adds: one per block, booked to the block, of its output size
    assert prof.ledger.layer("layer1.0") == {"add": 16 * 28 * 28}
    assert prof.ledger.layer("layer2.0") == {"add": 32 * 14 * 14}
    assert prof.ledger.layer("layer3.2") == {"add": 64 * 7 * 7}
    # the block's ReLU is used twice
    assert prof.ledger.layer("layer3.2.relu") == {"compare": 2 * 64 * 7 * 7}
    assert prof.ledger.count("add") == (
        3 * (16 * 28 * 28 + 32 * 14 * 14 + 64 * 7 * 7)                    # residual adds
        + sum(prof.ledger.count("mul", l) for l in prof.ledger.layers()
              if prof.kinds.get(l) == "BatchNorm2d")                       # batch-norm adds
        + (64 * 7 * 7 - 64)                                                # global average pool
        + 10)                                                              # fc bias


def test_resnet20_cifar_shape():
    prof = profile(zoo.build("resnet20", in_channels=3, image_size=32), torch.randn(1, 3, 32, 32))
    assert prof.ledger.count("mac") == _resnet20_macs(3, 32)


def test_mobilenetv2_residual_and_depthwise():
    prof = profile(zoo.build("mobilenetv2_small"), torch.randn(1, 1, 28, 28))
    assert prof.uncosted == []
    # block 2 (second 24-channel block, stride 1, 24->24): a residual add of 24x28x28
    assert prof.ledger.layer("features.5") == {"add": 24 * 28 * 28}
    # its depthwise 3x3 conv: hidden = 24*6 = 144 channels at 28x28, one input channel each
    assert prof.ledger.count("mac", "features.5.block.3") == 144 * 28 * 28 * 9
    assert prof.kinds["features.5.block.3"] == "Conv2d"


@pytest.mark.parametrize("name", zoo.model_names())
def test_zoo_models_are_fully_costed(name):
    if name in snn_zoo.EVENT_MODELS:   # event frames (T, 2, H, W)
        prof = profile(zoo.build_for(name, (2, 2, 32, 32), 11), torch.rand(1, 2, 2, 32, 32).round())
        assert prof.uncosted == [] and prof.ledger.count("mac") > 0
        return
    shape = (1, 8, 8) if name == "mlp" else (1, 28, 28)
    prof = profile(zoo.build(name, image_size=shape[-1]), torch.randn(1, *shape))
    assert prof.uncosted == []
    assert prof.ledger.count("mac") > 0


@pytest.mark.parametrize("mode", [True, False])
def test_profile_restores_mode_and_removes_hooks(mode):
    model = zoo.build("resnet20")
    model.train(mode)
    bn_mean = model.bn1.running_mean.clone()
    profile(model, torch.rand(4, 1, 28, 28))
    assert model.training is mode
    assert all(m.training is mode for m in model.modules())
    for m in model.modules():
        assert len(m._forward_hooks) == 0
        assert len(m._forward_pre_hooks) == 0
    # profiling ran in eval mode: batch-norm statistics are untouched
    assert torch.equal(model.bn1.running_mean, bn_mean)
    assert int(model.bn1.num_batches_tracked) == 0


def test_profile_restores_mixed_submodule_modes():
    model = zoo.build("resnet20")
    model.train()
    model.bn1.eval()              # e.g. frozen batch-norm while fine-tuning
    model.layer2.eval()
    before = {n: m.training for n, m in model.named_modules()}
    profile(model, torch.rand(1, 1, 28, 28))
    assert {n: m.training for n, m in model.named_modules()} == before


def test_hooks_removed_even_when_forward_fails():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            raise RuntimeError("boom")

    model = Bad().train()
    with pytest.raises(RuntimeError, match="boom"):
        profile(model, torch.randn(1, 4))
    assert model.training
    assert all(len(m._forward_hooks) == 0 and len(m._forward_pre_hooks) == 0 for m in model.modules())


def test_profile_does_not_change_outputs():
    torch.manual_seed(1)
    model = zoo.build("lenet5").eval()
    x = torch.rand(3, 1, 28, 28)
    before = model(x)
    profile(model, x)
    assert torch.equal(model(x), before)
