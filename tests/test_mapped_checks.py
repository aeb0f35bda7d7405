"""A mapped network refuses what it cannot run with one ConfigError naming the expected form (mappers.mapped_checks)."""

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import ConfigError


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval()


@pytest.fixture(scope="module")
def mapped():
    arch = cimsim.arch.get("isaac", cell="ideal", adc_bits=9, adc_range="full", weight_bits=8, input_bits=8)
    x = torch.rand(8, 1, 6, 6)
    return cimsim.map(_net(), arch, calibration=x, progress=False), x, torch.arange(8) % 3


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
def test_non_floating_inputs_are_refused(mapped, dtype):
    mm, x, y = mapped
    with pytest.raises(ConfigError, match=rf"^inputs must be a floating tensor, got {dtype}: pass x.float\(\)$"):
        mm((x > 0.5).to(dtype))
    with pytest.raises(ConfigError, match=f"floating tensor, got {dtype}"):
        mm.evaluate([((x > 0.5).to(dtype), y)], progress=False)


@pytest.mark.parametrize("mode", ["digital", "float"])
def test_evaluate_outside_the_analog_mode_is_refused(mapped, mode):
    mm, x, y = mapped
    mm.set_mode(mode)
    try:
        with pytest.raises(ConfigError, match=r"evaluate simulates and costs the analog run; call set_mode\('analog'\)"):
            mm.evaluate([(x, y)], progress=False)
        assert mm(x).dtype == torch.float32   # the model itself still runs in that mode
    finally:
        mm.set_mode("analog")
    assert mm.evaluate([(x, y)], progress=False).n_examples == 8


def test_bad_network_inputs_name_the_expected_form(mapped):
    mm, x, _ = mapped
    net = r"inputs must have shape \(B, 1, 6, 6\) \(the calibration batches' shape\), got "
    with pytest.raises(ConfigError, match=net + r"\(8, 36\)"):
        mm(x.flatten(1))
    with pytest.raises(ConfigError, match=net + r"\(1, 6, 6\): add the batch dimension"):
        mm(x[0])
    with pytest.raises(ConfigError, match=net + r"\(2, 3, 6, 6\)"):
        mm(torch.rand(2, 3, 6, 6))
    mm.calibration_info.pop("input_shape")   # a map that recorded none (older): the first layer names its own
    conv = r"layer '0' \(Conv2d\) takes inputs of shape \(B, 1, H, W\) \(1 input channel\), got "
    with pytest.raises(ConfigError, match=conv + r"\(2, 3, 6, 6\)"):
        mm(torch.rand(2, 3, 6, 6))
    with pytest.raises(ConfigError, match=r"inputs must hold at least one example.*got shape \(0, 1, 6, 6\)"):
        mm(x[:0])
    with pytest.raises(ConfigError, match=r"inputs must be a floating torch tensor.*numpy.ndarray of shape "
                                          r"\(8, 1, 6, 6\): pass torch.from_numpy\(x\).float\(\)"):
        mm(x.numpy())


def test_a_linear_layer_names_its_features():
    arch = cimsim.arch.get("isaac", cell="ideal", adc_bits=9, adc_range="full", weight_bits=8, input_bits=8)
    mm = cimsim.map(nn.Sequential(nn.Linear(5, 2)), arch, calibration=torch.rand(4, 5), progress=False)
    with pytest.raises(ConfigError, match=r"inputs must have shape \(B, 5\) \(the calibration batches' shape\)"):
        mm(torch.rand(4, 6))
    mm.calibration_info.pop("input_shape")
    with pytest.raises(ConfigError, match=r"layer '0' \(Linear\) takes inputs of shape \(B, 5\) \(5 features\), "
                                          r"got \(4, 6\)"):
        mm(torch.rand(4, 6))


@pytest.mark.parametrize("bad, message", [
    (lambda x, y: [x], r"batches must be pairs \(x, y\).*got a torch.float32 tensor.*pass \[\(x, y\)\], not \(x, y\)"),
    (lambda x, y: x, r"evaluate takes an iterable of \(x, y\) batches, got a torch.float32 tensor.*pass \[\(x, y\)\]"),
    (lambda x, y: (x, y), r"batches must be pairs \(x, y\).*pass \[\(x, y\)\], not \(x, y\)"),
    (lambda x, y: [(x, y, y)], r"batches must be pairs \(x, y\).*got a tuple \(a 3-item batch\)"),
    (lambda x, y: [{"x": x, "y": y}], r"batches must be pairs \(x, y\).*got a dict"),
    (lambda x, y: {"x": x}, r"evaluate takes an iterable of \(x, y\) batches .*got a dict"),
    (lambda x, y: [(x.flatten(1), y)], r"layer '0' \(Conv2d\) takes inputs of shape \(B, 1, H, W\)"),
    (lambda x, y: [(x, y[:3])], r"y must be integer class labels of shape \(8,\).*got a torch.int64 tensor of "
                                r"shape \(3,\)"),
    (lambda x, y: [(x, nn.functional.one_hot(y, 3))], r"not one-hot: y.argmax\(1\).*shape \(8, 3\)"),
    (lambda x, y: [(x, y.float())], r"y must be integer class labels of shape \(8,\)"),
    (lambda x, y: [(x, y.numpy())], r"y must be a tensor of integer class labels.*pass torch.as_tensor\(y\)"),
    (lambda x, y: [(x, y.tolist())], r"y must be a tensor.*got a list: pass torch.as_tensor\(y\)"),
    (lambda x, y: [(x, torch.rand(8, 2, 6, 6)[:4])], r"flow targets y must have shape \(8, 2, H, W\)"),
])
def test_bad_evaluate_batches_name_the_expected_form(mapped, bad, message):
    mm, x, y = mapped
    with pytest.raises(ConfigError, match=message):
        mm.evaluate(bad(x, y), progress=False)


def test_bad_config_and_outputs_are_refused(mapped):
    mm, x, y = mapped
    with pytest.raises(ConfigError, match=r"^config must be a dict of report keys \(or None\), got a list$"):
        mm.evaluate([(x, y)], progress=False, config=[1])

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def forward(self, x):
            out = self.net(x)
            return out, out

    arch = cimsim.arch.get("isaac", cell="ideal", adc_bits=9, adc_range="full", weight_bits=8, input_bits=8)
    pair = cimsim.map(Pair().eval(), arch, calibration=x, progress=False)
    with pytest.raises(ConfigError, match=r"the network must return one tensor \(the logits\), got a tuple"):
        pair.evaluate([(x, y)], progress=False)


@pytest.mark.parametrize("value, word", [(float("nan"), "NaN"), (float("inf"), "infinite values"),
                                         (float("-inf"), "infinite values")])
def test_non_finite_inputs_are_refused(mapped, value, word):
    mm, x, y = mapped
    bad = x.clone()
    bad[1, 0, 2, 3] = value
    message = rf"^layer '0': the inputs hold {word}; give the network finite inputs"
    with pytest.raises(ConfigError, match=message):
        mm(bad)
    with pytest.raises(ConfigError, match=message):
        mm.evaluate([(bad, y)], progress=False)
    arch = cimsim.arch.get("isaac")
    with pytest.raises(ConfigError, match="hold NaN|hold infinite|input scale is"):
        cimsim.map(_net(), arch, calibration=torch.full_like(x, value), progress=False)
    assert np.isfinite(mm(x).numpy()).all()


def test_inputs_of_the_calibrations_kind_are_taken_whatever_their_dtype_or_extent():
    """A network calibrated on integers (token ids, bytes it converts itself) takes integers; the check compares the
    number of dimensions and the channels, so other extents (time steps, image size) may differ."""
    arch = cimsim.arch.get("isaac", cell="ideal", weight_bits=8, input_bits=8)

    class Bytes(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 2)

        def forward(self, x):
            return self.fc(x.float() / 255)

    mm = cimsim.map(Bytes(), arch, calibration=torch.randint(0, 256, (4, 5), dtype=torch.uint8), progress=False)
    assert mm(torch.randint(0, 256, (3, 5), dtype=torch.uint8)).shape == (3, 2)

    class Steps(nn.Module):   # (B, T, C, H, W) summed over T
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3)

        def forward(self, x):
            return sum(self.conv(x[:, t]) for t in range(x.shape[1])).flatten(1)

    mm = cimsim.map(Steps(), arch, calibration=torch.rand(2, 4, 2, 6, 6), progress=False)
    assert mm(torch.rand(2, 7, 2, 8, 8)).shape == (2, 3 * 6 * 6)
    with pytest.raises(ConfigError, match=r"inputs must have shape \(B, 4, 2, 6, 6\)"):
        mm(torch.rand(2, 4, 3, 6, 6))   # another number of channels
