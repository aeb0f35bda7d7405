"""The mapper: BN folding, quantization, exactness of mapped layers, unsupported layers, reports."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from cimsim.mappers import fold_batchnorm, quantize_weights


def lossless(**kw):
    """ISAAC with ideal cells and an ADC wide enough for the worst-case column sum (3 * 128 -> 9 bits)."""
    base = dict(cell="ideal", adc_bits=9, adc_range="full", weight_bits=8, input_bits=8)
    base.update(kw)
    return cimsim.arch.get("isaac", **base)


# --------------------------------------------------------------------------------------- a third-party model
# Written the way torchvision writes ResNet (Bottleneck blocks with expansion 4, a downsample branch of
# conv1x1 + BatchNorm, adaptive average pooling), independent of cimsim's zoo.
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, width_per_group=64):
        super().__init__()
        width = int(planes * (width_per_group / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self, layers=(1, 1), num_classes=10, groups=1):
        super().__init__()
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(8, layers[0], groups=groups)
        self.layer2 = self._make_layer(16, layers[1], stride=2, groups=groups)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16 * Bottleneck.expansion, num_classes)

    def _make_layer(self, planes, blocks, stride=1, groups=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride,
                                                 bias=False), nn.BatchNorm2d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, groups=groups)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes, groups=groups) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _warm_bn(model, x, steps=5):
    """Give every BatchNorm non-trivial running statistics (and affine parameters), then eval()."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.data = 0.5 + torch.rand(m.weight.shape, generator=g)
            m.bias.data = 0.2 * torch.randn(m.bias.shape, generator=g)
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(x)
    return model.eval()


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 16, 16)
    return _warm_bn(TinyResNet(), x), x


# --------------------------------------------------------------------------------------------- folding
def test_fold_batchnorm_keeps_the_function(resnet):
    model, x = resnet
    import copy
    work = copy.deepcopy(model)
    folded = fold_batchnorm(work, x)
    # every BN of the model follows a conv, so every one is folded (stem, 3 per block, 2 downsample)
    assert len(folded) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 9
    assert not any(isinstance(m, nn.BatchNorm2d) for m in work.modules())
    with torch.no_grad():
        np.testing.assert_allclose(work(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_bn_not_after_a_layer_is_left_alone():
    model = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    _warm_bn(model, torch.randn(16, 4))
    assert fold_batchnorm(model, torch.randn(16, 4)) == []
    assert isinstance(model[0], nn.BatchNorm1d)


def test_quantize_weights_per_channel():
    w = torch.tensor([[0.5, -1.0, 0.25], [0.01, 0.02, -0.03]])
    q, s = quantize_weights(w, 8)
    assert q.tolist() == [[64, -127, 32], [42, 85, -127]]
    assert s.tolist() == pytest.approx([1.0 / 127, 0.03 / 127], rel=1e-6)   # 0.03 is a float32


# --------------------------------------------------------------------------------------------- exactness
def _both_modes(mapped, x):
    analog = mapped.set_mode("analog")(x)
    digital = mapped.set_mode("digital")(x)
    mapped.set_mode("analog")
    return analog, digital


def test_third_party_resnet_matches_the_quantized_model_exactly(resnet):
    model, x = resnet
    mapped = cimsim.map(model, lossless(), calibration=x)
    assert len(mapped.mapped_layers) == 10          # stem + 3 convs x 2 blocks + 2 downsample convs + fc
    analog, digital = _both_modes(mapped, x)
    assert torch.equal(analog, digital)
    # and the quantized model is the float model up to 8-bit quantization error
    with torch.no_grad():
        ref = model(x)
    assert float((digital - ref).abs().max()) < 0.05 * float(ref.abs().max())


@pytest.mark.parametrize("signed", ["offset", "differential", "twos"])
def test_conv_variants_exact(signed):
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(2, 6, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=2, dilation=2, groups=6), nn.BatchNorm2d(6), nn.ReLU(),   # depthwise
        nn.Conv2d(6, 4, (1, 3), padding="same"), nn.Flatten(1, 2),
        nn.Conv1d(4 * 5, 5, 3, stride=2), nn.Flatten(), nn.Linear(5 * 2, 3))
    x = torch.randn(5, 2, 10, 10)
    _warm_bn(model, x)
    mapped = cimsim.map(model, lossless(signed=signed, rows=16, cols=16), calibration=x)
    analog, digital = _both_modes(mapped, x)
    assert torch.equal(analog, digital)
    with torch.no_grad():
        ref = model(x)
    assert float((digital - ref).abs().max()) < 0.05 * float(ref.abs().max())
    assert mapped.mapped_layers["2"].plan.groups == 6
    assert mapped.mapped_layers["0"].plan.input_signed          # randn inputs are signed
    assert not mapped.mapped_layers["2"].plan.input_signed       # after ReLU


def test_lossy_adc_changes_outputs_and_low_bits_hurt_more(resnet):
    model, x = resnet
    errs = []
    for bits in (3, 6):
        mapped = cimsim.map(model, lossless(adc_bits=bits, adc_range="calibrated"), calibration=x)
        analog, digital = _both_modes(mapped, x)
        errs.append(float((analog - digital).abs().mean()))
    assert errs[0] > errs[1] > 0


# --------------------------------------------------------------------------------------------- unsupported
class WithTranspose(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.fc = nn.Linear(2 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.up(torch.relu(self.conv(x)))).flatten(1))


def test_unsupported_layer_warns_once_and_stays_digital():
    torch.manual_seed(0)
    model = WithTranspose().eval()
    x = torch.randn(6, 1, 4, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mapped = cimsim.map(model, lossless(), calibration=x)
    msgs = [str(w.message) for w in caught if "kept digital" in str(w.message)]
    assert len(msgs) == 1 and "up (ConvTranspose2d" in msgs[0]
    assert set(mapped.mapped_layers) == {"conv", "fc"}
    analog, digital = _both_modes(mapped, x)
    assert torch.equal(analog, digital)
    loader = [(x, torch.zeros(6, dtype=torch.long))]
    rep = mapped.evaluate(loader, progress=False)
    up = next(r for r in rep.layers if r["name"] == "up")
    assert up["kind"] == "ConvTranspose2d" and up["energy_j"] > 0      # costed as digital MACs
    assert rep.config["kept_digital"] == {"up": "ConvTranspose2d is not a layer the crossbar mapper places"}


# --------------------------------------------------------------------------------------------- reports
def test_report_adds_up_and_counts_conversions(resnet):
    model, x = resnet
    arch = lossless(adc_bits=6, adc_range="calibrated")
    mapped = cimsim.map(model, arch, calibration=x)
    y = torch.arange(len(x)) % 10
    rep = mapped.evaluate([(x[:4], y[:4]), (x[4:], y[4:])], progress=False)
    assert rep.n_examples == 8
    assert sum(r["energy_j"] for r in rep.layers) == pytest.approx(rep.energy_j, rel=1e-12)
    assert sum(rep.components.values()) == pytest.approx(rep.energy_j, rel=1e-12)
    assert sum(r["latency_s"] for r in rep.layers) == pytest.approx(rep.latency_s, rel=1e-12)
    # conversions per inference: positions x cycles (8) x row blocks x physical columns of every crossbar
    for name, layer in mapped.mapped_layers.items():
        row = next(r for r in rep.layers if r["name"] == name)
        expect = sum(layer.plan.positions * 8 * len(xb.row_blocks) * xb.physical_columns for xb in layer.crossbars)
        assert row["conversions"] == pytest.approx(expect, rel=1e-12)
    # the ADC's energy is the conversions times the (ISAAC-calibrated) SAR model's energy per conversion
    conv = sum(r["conversions"] for r in rep.layers if "conversions" in r)
    assert rep.components["adc"] == pytest.approx(conv * arch.adc_energy_j(), rel=1e-9)
    assert rep.config["batchnorm_folded"] and rep.area_m2 == pytest.approx(arch.area_m2)


def test_latency_follows_the_hierarchy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    x = torch.rand(4, 1, 8, 8)
    y = torch.zeros(4, dtype=torch.long)
    fast = cimsim.map(model, lossless(), calibration=x).evaluate([(x, y)], progress=False)
    # a chip with 2 crossbars cannot replicate the conv: its 36 positions stream through one copy
    small = lossless(tiles=1, imas_per_tile=1, xbars_per_ima=2)
    slow = cimsim.map(model, small, calibration=x).evaluate([(x, y)], progress=False)
    mvm = 8 * 100e-9                                          # 8 input bits x 100 ns
    assert next(r for r in slow.layers if r["name"] == "0")["latency_s"] == pytest.approx(36 * mvm)
    assert next(r for r in fast.layers if r["name"] == "0")["latency_s"] == pytest.approx(mvm)
    assert slow.throughput_inf_per_s == pytest.approx(1 / (36 * mvm))


def test_bad_inputs():
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ConfigError, match="calibration"):
        cimsim.map(model, lossless())
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        cimsim.map("model", lossless(), calibration=torch.randn(2, 4))
    with pytest.raises(ConfigError, match="no crossbars"):
        cimsim.map(model, cimsim.arch.get("digital"), calibration=torch.randn(2, 4))
    with pytest.raises(ConfigError, match="no Linear or Conv"):
        cimsim.map(nn.Sequential(nn.ReLU()), lossless(), calibration=torch.randn(2, 4))
    mapped = cimsim.map(model, lossless(), calibration=torch.randn(2, 4))
    with pytest.raises(ConfigError, match="mode"):
        mapped.set_mode("exact")


@pytest.mark.parametrize("first", [nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(2, 4, 3, padding=1, groups=2),
                                   nn.Conv2d(2, 2, (3, 2), stride=(2, 1), padding=(1, 0), groups=2)])
def test_calibration_patches_are_the_drawn_rows_of_all_patches(monkeypatch, first):
    # the ADC calibration rows: a draw without replacement from every patch of every calibration batch, group by
    # group; read batch by batch from the activations (all groups at once, or one at a time), they must equal the
    # rows picked from the whole stack of quantized patches
    from cimsim.mappers import mapper

    torch.manual_seed(0)
    model = nn.Sequential(first, nn.Flatten(), nn.LazyLinear(4)).eval()
    batches = [torch.randn(n, 2, 6, 6) for n in (5, 1, 7)]   # signed activations
    model(batches[0])
    mapped = cimsim.map(model, cimsim.arch.get("isaac", rows=16, cell="ideal"), calibration=batches[0])
    for name in ("0", "2"):
        layer = mapped.mapped_layers[name]
        with torch.no_grad():
            acts = batches if name == "0" else [model[1](model[0](a)) for a in batches]
        G, K = layer.plan.groups, layer.plan.in_features
        stack = torch.cat([layer._patches(layer.quantize_input(a))[0] for a in acts]).numpy().astype(np.int64)
        everything = stack.reshape(len(stack), G, K).transpose(1, 0, 2)
        assert everything.shape[1] == (13 * (36 if first.stride == (1, 1) else 15) if name == "0" else 13)
        assert (stack < 0).any()
        for draw, chunk in ((10, 1 << 24), (300, 1 << 24), (300, 1)):   # chunk 1: one group at a time
            if draw >= everything.shape[1]:
                continue
            monkeypatch.setattr(mapper, "ADC_CALIBRATION_ROWS", draw)
            monkeypatch.setattr(mapper, "PATCH_CHUNK_BYTES", chunk)
            got = list(mapper._calibration_groups(layer, acts, np.random.default_rng(4)))
            want = everything[:, np.sort(np.random.default_rng(4).choice(everything.shape[1], draw, replace=False))]
            assert all(p.dtype == np.int64 and p.flags.c_contiguous for p in got)
            assert np.array_equal(np.stack(got), want)
        monkeypatch.setattr(mapper, "ADC_CALIBRATION_ROWS", 10_000)   # fewer rows than that: all of them, in order
        assert np.array_equal(np.stack(list(mapper._calibration_groups(layer, acts, np.random.default_rng(4)))),
                              everything)


@pytest.mark.parametrize("conv", [nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0)),
                                  nn.Conv2d(4, 4, 3, dilation=2, padding="same", groups=2),
                                  nn.Conv2d(3, 2, 1, stride=2), nn.Conv1d(3, 4, 5, stride=2, padding=2)])
def test_patches_are_unfolds_values_in_its_order(conv):
    # the strided-view patches (one copy) equal F.unfold's, row for row and column for column
    torch.manual_seed(1)
    model = nn.Sequential(conv).eval()
    x = torch.randint(0, 15, (3, conv.in_channels, 9, 8) if isinstance(conv, nn.Conv2d) else (3, conv.in_channels, 11))
    mapped = cimsim.map(model, cimsim.arch.get("isaac", rows=16, cell="ideal"), calibration=x.float())
    layer = mapped.mapped_layers["0"]
    got, shape = layer._patches(x.float())
    x2 = x.float().unsqueeze(2) if isinstance(conv, nn.Conv1d) else x.float()
    k = (1, conv.kernel_size[0]) if isinstance(conv, nn.Conv1d) else conv.kernel_size
    s = (1, conv.stride[0]) if isinstance(conv, nn.Conv1d) else conv.stride
    d = (1, conv.dilation[0]) if isinstance(conv, nn.Conv1d) else conv.dilation
    x2 = torch.nn.functional.pad(x2, layer._padding(isinstance(conv, nn.Conv1d), k, d))
    cols = torch.nn.functional.unfold(x2, k, dilation=d, stride=s)
    want = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    assert torch.equal(got, want) and got.shape[0] == 3 * int(np.prod(shape[2:]))
    from cimsim.mappers import mapper
    assert mapper._patch_count(layer, x.float()) == got.shape[0]


@pytest.mark.parametrize("conv", [nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0)),
                                  nn.Conv2d(4, 4, 3, dilation=2, padding="same", groups=2),
                                  nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Conv2d(3, 2, 1, stride=2),
                                  nn.Conv1d(3, 4, 5, stride=2, padding=2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_drawn_codes_are_the_quantized_patches_rows(conv, dtype):
    """The calibration's drawn patch rows, read from the activation itself (cimsim.kernels_host.drawn_patch_codes):
    the rows of the quantized activation's patches, group-major, value for value: ties of the division (k + 1/2 of the
    step) rounded to even as torch.round, codes clamped at both ends, signed codes, any float type."""
    from cimsim.mappers import mapper

    torch.manual_seed(1)
    model = nn.Sequential(conv).eval()
    shape = (3, conv.in_channels, 9, 8) if isinstance(conv, nn.Conv2d) else (3, conv.in_channels, 11)
    mapped = cimsim.map(model, cimsim.arch.get("isaac", rows=16, cell="ideal", input_bits=6),
                        calibration=torch.randn(shape))
    layer = mapped.mapped_layers["0"]
    step = layer.plan.input_scale
    x = (torch.randn(shape, dtype=torch.float64) * 20 * step).to(dtype)
    ties = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 3.5, 1e6, -1e6], dtype=torch.float64) * step
    x.view(-1)[:8] = ties.to(dtype)
    lo, hi = layer.code_range()
    whole = layer._patches(layer.quantize_input(x))[0].numpy().astype(np.int64)
    assert lo < 0 and (whole == lo).any() and (whole == hi).any()
    G = conv.groups
    for rows in (np.arange(whole.shape[0]), np.sort(np.random.default_rng(0).choice(whole.shape[0], 7, replace=False)),
                 np.zeros(0, dtype=np.int64)):
        out = np.full((G, len(rows), whole.shape[1] // G), -99, dtype=np.int64)
        mapper._drawn_codes(layer, x, rows, out)
        want = whole[rows].reshape(len(rows), G, whole.shape[1] // G).transpose(1, 0, 2)
        assert np.array_equal(out, want)
        if G > 1:   # the last groups only
            part = np.full((G - 1, len(rows), whole.shape[1] // G), -99, dtype=np.int64)
            mapper._drawn_codes(layer, x, rows, part, first=1)
            assert np.array_equal(part, want[1:])



@pytest.mark.parametrize("conv", [nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0)),
                                  nn.Conv2d(4, 4, 3, dilation=2, padding="same", groups=2),
                                  nn.Conv2d(3, 2, 1, stride=2), nn.Conv1d(3, 4, 5, stride=2, padding=2),
                                  nn.Conv2d(2, 3, (2, 4), stride=(1, 3), dilation=(2, 1), padding=(3, 2))])
def test_integer_patches_are_the_torch_patches_as_int64(conv):
    """The host path's one-pass int64 patches (cimsim.kernels_host.patch_codes) equal the torch patches converted,
    value for value: signed codes, codes above 2**24 (rounded through float32 as the torch path rounds them), a
    channels-last input."""
    torch.manual_seed(2)
    model = nn.Sequential(conv).eval()
    two_d = isinstance(conv, nn.Conv2d)
    shape = (3, conv.in_channels, 9, 8) if two_d else (3, conv.in_channels, 11)
    mapped = cimsim.map(model, cimsim.arch.get("isaac", rows=16, cell="ideal"),
                        calibration=torch.randint(0, 15, shape).float())
    layer = mapped.mapped_layers["0"]
    x = torch.randint(-(2 ** 15), 2 ** 15, shape).double()
    x.view(-1)[:7] = torch.tensor([2.0 ** 24 + 1, -(2.0 ** 25) - 3, 2.0 ** 30 + 5, 0.0, -1.0, 2.0 ** 24 - 1, 123.0],
                                  dtype=torch.float64)
    inputs = [x, x.to(memory_format=torch.channels_last)] if two_d else [x, x.transpose(1, 2).contiguous().transpose(1, 2)]
    for xi in inputs:
        got, got_shape = layer._integer_patches(xi)
        want, want_shape = layer._patches(xi)
        assert got.dtype == np.int64 and got_shape == want_shape
        assert np.array_equal(got, want.numpy().astype(np.int64))
        # group-major (what the host path's forward cuts): group g's columns as one contiguous array each
        major, major_shape = layer._integer_patches(xi, grouped=True)
        G = conv.groups
        assert major_shape == want_shape and (major.ndim == 3) == (G > 1)
        if G > 1:
            assert major.flags.c_contiguous and major.shape == (G, got.shape[0], got.shape[1] // G)
            assert all(np.array_equal(major[g], got[:, g * major.shape[2]:(g + 1) * major.shape[2]]) for g in range(G))
            top = 2 ** 16 - 1   # the crossbars' 16-bit unsigned inputs
            assert np.array_equal(layer.integer_product(np.clip(major, 0, top)), layer.integer_product(np.clip(got, 0, top)))
            assert np.array_equal(layer.exact_product(major), layer.exact_product(got))
    assert got[0, :].min() < -(2 ** 24) or got.max() > 2 ** 24          # the large codes are in the patches


def test_patch_rows_of_a_linear_layer_on_sequences():
    """A Linear layer on (batch, tokens, features) inputs: its patch rows are the tokens; the drawn ones' codes are
    the whole patches' rows quantized, and the count is batch x tokens."""
    from cimsim.mappers import mapper
    model = nn.Sequential(nn.Linear(6, 3)).eval()
    x = torch.randint(0, 9, (4, 5, 6)).float()
    layer = cimsim.map(model, cimsim.arch.get("isaac", rows=16, cell="ideal"), calibration=x).mapped_layers["0"]
    got, _ = layer._patches(x)
    rows = np.array([0, 7, 19])
    out = np.empty((1, 3, 6), dtype=np.int64)
    mapper._drawn_codes(layer, x, rows, out)
    assert np.array_equal(out[0], layer.quantize_input(got[rows]).numpy()) and mapper._patch_count(layer, x) == 20
    assert got.shape[0] == 20


@pytest.mark.parametrize("bits", [24, 30])
def test_inputs_wider_than_float32_holds_are_cut_exactly(bits):
    """Codes of more than 24 bits (float32 holds integers up to 2**24) are cut in float64: both the torch patches and
    the host path's int64 patches equal F.unfold's in float64, value for value, and a lossless ideal crossbar gives
    the exact product (before, a 30-bit code 2**30 - 1 was rounded to 2**30 and refused as out of range)."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 5)).eval()
    x = torch.rand(8, 1, 6, 6)
    x[0, 0, 0, 0] = x.max() + 1e-3                # one input at the top of the range: the largest code
    spec = cimsim.arch.get("isaac", rows=16, cols=16, cell="ideal", input_bits=bits, weight_bits=8, adc_range="full")
    mapped = cimsim.map(model, spec, calibration=x)
    layer = mapped.mapped_layers["0"]
    xq = layer.quantize_input(x)
    assert float(xq.max()) == 2 ** bits - 1
    cols = torch.nn.functional.unfold(xq.double(), 3, padding=1)
    want = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    assert torch.equal(layer._patches(xq)[0].double(), want)
    assert np.array_equal(layer._integer_patches(xq)[0], want.numpy().astype(np.int64))
    mapped(x)
    assert all(m.rel_error() == 0.0 for m in mapped.mapped_layers.values())


def test_a_depthwise_exact_product_is_blas_group_by_group(monkeypatch):
    """A depthwise layer's exact product (one output column a group: cimsim.kernels_host.one_column_products) equals
    the per-group float64 BLAS products bit for bit, the sign of zero included (an all-zero patch row, cancelling
    terms), on 1 and 3 threads (8,000 rows: split in 3)."""
    torch.manual_seed(3)
    conv = nn.Conv2d(6, 6, 3, padding=1, groups=6)
    mapped = cimsim.map(nn.Sequential(conv).eval(), cimsim.arch.get("isaac", rows=16, cell="ideal"),
                        calibration=torch.randn(2, 6, 9, 9))
    layer = mapped.mapped_layers["0"]
    rng = np.random.default_rng(0)
    patches = rng.integers(-(2 ** 15), 2 ** 15, size=(6, 8000, 9))
    patches[:, 5] = 0
    patches[0, 7] = [1, 1, 0, 0, 0, 0, 0, 0, 0]
    layer.w_exact_t[:2, 0] = [3.0, -3.0]                 # 1 * 3 + 1 * (-3): a zero by cancellation
    want = np.stack([patches[g].astype(np.float64) @ layer.w_exact_t[:, g] for g in range(6)], axis=1)
    assert layer._sums_exact() and (layer.w_exact_t < 0).any()
    for n in ("1", "3"):
        monkeypatch.setenv("CIMSIM_THREADS", n)
        got = layer.exact_product(patches)
        assert np.array_equal(got.view(np.int64), want.view(np.int64))
    assert got[7, 0] == 0.0 and (got[5] == 0).all()
