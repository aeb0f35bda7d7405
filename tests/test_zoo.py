import pytest
import torch
from torch import nn

from cimsim.errors import ConfigError
from cimsim.workloads import snn_zoo, zoo

SHAPES = [(1, 28), (3, 32), (1, 32), (3, 28)]
IMAGE_MODELS = [n for n in zoo.model_names() if n not in snn_zoo.EVENT_MODELS]   # event models: test_event_nets.py


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("channels,size", SHAPES)
def test_every_model_runs_on_every_input_shape(name, channels, size):
    torch.manual_seed(0)
    net = zoo.build(name, in_channels=channels, image_size=size, num_classes=7).eval()
    out = net(torch.rand(3, channels, size, size))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", zoo.model_names())
def test_models_are_plain_torch_nn(name):
    net = zoo.build_for(name, (5, 2, 64, 64), 11) if name in snn_zoo.EVENT_MODELS else zoo.build(name)
    for mod in net.modules():
        # spiking networks: their own module and cimsim's LIF neurons and encoders (cimsim.spiking)
        assert type(mod).__module__.startswith(("torch.nn", "cimsim.workloads.zoo", "cimsim.workloads.snn_zoo",
                                                "cimsim.spiking")), type(mod)


def _params(net):
    return sum(p.numel() for p in net.parameters())


def test_parameter_counts():
    # LeNet-5: conv 1*6*25+6, conv 6*16*25+16, fc 400*120+120, 120*84+84, 84*10+10
    assert _params(zoo.build("lenet5")) == 156 + 2416 + 48120 + 10164 + 850
    # MLP on 8x8 digits: 64-256-128-10
    assert _params(zoo.build("mlp", image_size=8)) == 64 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    # ResNet-20 (option-B shortcuts) lies near the 0.27 M parameters of He et al. 2016, Table 6
    assert 0.26e6 < _params(zoo.build("resnet20")) < 0.28e6


def test_resnet20_has_20_weighted_layers_on_the_main_path():
    net = zoo.build("resnet20")
    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and "shortcut" not in n]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == 20
    shortcuts = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and "shortcut" in n]
    assert len(shortcuts) == 2  # one per downsampling stage


def test_mobilenetv2_uses_depthwise_separable_convs():
    net = zoo.build("mobilenetv2_small")
    depthwise = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == sum(n for _, _, n, _ in zoo.MobileNetV2Small.SETTINGS)
    assert all(m.groups == m.in_channels == m.out_channels for m in depthwise)


def test_vit_mini_is_a_vision_transformer():
    net = zoo.build("vit_mini")
    # patch embedding 1*4*4*64+64; class token 64 and 50 position embeddings of 64; 4 blocks of attention
    # (3*64*64+3*64 packed projections, 64*64+64 output), two LayerNorms (2*128) and the MLP (64*128+128, 128*64+64);
    # the final LayerNorm (128) and the classifier (64*10+10)
    block = 3 * 64 * 64 + 3 * 64 + 64 * 64 + 64 + 2 * 128 + 64 * 128 + 128 + 128 * 64 + 64
    assert _params(net) == 1088 + 64 + 50 * 64 + 4 * block + 128 + 650
    attention = [m for m in net.modules() if isinstance(m, nn.MultiheadAttention)]
    assert len(attention) == 4 and all(m.num_heads == 4 and m.batch_first for m in attention)
    assert zoo.build("vit_mini", in_channels=3, image_size=32).tokens.pos.shape == (1, 65, 64)   # 8x8 patches + 1


def test_names_and_aliases():
    assert zoo.canonical_name("LeNet-5") == "lenet5"
    assert zoo.canonical_name("vgg-small") == "vgg_small"
    assert zoo.canonical_name("ResNet20") == "resnet20"
    with pytest.raises(ConfigError, match="choose one of mlp, lenet5"):
        zoo.canonical_name("alexnet")


@pytest.mark.parametrize("kwargs,needle", [
    ({"in_channels": 2}, "in_channels"), ({"image_size": 64}, "size"), ({"num_classes": 1}, "num_classes")])
def test_bad_build_arguments(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        zoo.build("lenet5", **kwargs)


def test_build_for_tabular_needs_mlp():
    net = zoo.build_for("mlp", (4,), 3)
    assert net(torch.rand(5, 4)).shape == (5, 3)
    with pytest.raises(ConfigError, match="--model mlp"):
        zoo.build_for("lenet5", (4,), 3)
