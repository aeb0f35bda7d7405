"""ImageNet-size definitions for cost-only runs (workloads/zoo_imagenet.py): the published sizes."""

import pytest
import torch

from cimsim.errors import ConfigError
from cimsim.workloads import zoo_imagenet

# parameters of the published networks at 1000 classes (AlexNet one-tower 61.1 M, VGG-16 138.4 M, ResNet-50
# 25.6 M, MobileNetV2 1.0 3.5 M, ViT-B/16 86.6 M: Krizhevsky 2012 / Simonyan & Zisserman 2015 / He 2016 / Sandler
# 2018 Table 3 / Dosovitskiy 2021 Table 1, "86M", 86,567,656 in its reference code's count)
PUBLISHED_M = {"alexnet": 61.1, "vgg16": 138.4, "resnet50": 25.6, "mobilenetv2_imagenet": 3.5, "vit_b16": 86.6}


@pytest.mark.parametrize("name", zoo_imagenet.model_names())
def test_parameter_counts_match_the_papers(name):
    with torch.device("meta"):     # counted without allocating (VGG-16 holds 138 M weights)
        m = zoo_imagenet.build(name)
    assert sum(p.numel() for p in m.parameters()) / 1e6 == pytest.approx(PUBLISHED_M[name], abs=0.06)


@pytest.mark.parametrize("name", ["resnet50", "mobilenetv2_imagenet"])
def test_small_images_run(name):
    with torch.no_grad():
        out = zoo_imagenet.build(name, (3, 32, 32), num_classes=10).eval()(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_bad_names_and_shapes_are_refused():
    with pytest.raises(ConfigError, match="unknown ImageNet-size model 'resnet51'"):
        zoo_imagenet.build("resnet51")
    with pytest.raises(ConfigError, match="square images"):
        zoo_imagenet.build("resnet50", (3, 16, 16))


def test_vit_b16_is_the_published_network_and_its_attention_is_mapped():
    from cimsim.mappers.profile import profile
    from cimsim.mappers.unfuse import unfuse

    torch.manual_seed(0)
    net = zoo_imagenet.build("vit_b16").eval()
    assert sum(p.numel() for p in net.parameters()) == 86_567_656
    unfuse(net)      # as the mapper does: 12 x 4 projections + 2 MLP layers + patch embedding + head on crossbars
    layers = [n for n, m in net.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert len(layers) == 12 * 6 + 2
    prof = profile(net, torch.rand(1, 3, 224, 224))
    assert prof.uncosted == []
    # 17.56 G multiply-accumulates at 224x224 (197 tokens), as counted for ViT-B/16 in the literature (17.6 GFLOPs
    # reported as MACs): patch embedding 196 x 768 x 768, per layer 4 x 197 x 768^2 projections + 2 x 197 x 768 x 3072
    # MLP + 2 x 197^2 x 768 attention products, the head 768 x 1000
    per_layer = 4 * 197 * 768 ** 2 + 2 * 197 * 768 * 3072 + 2 * 197 ** 2 * 768
    assert prof.ledger.count("mac") == 196 * 768 * 768 + 12 * per_layer + 768 * 1000 == 17_563_828_224
