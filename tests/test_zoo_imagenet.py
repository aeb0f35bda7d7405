"""ImageNet-size definitions for cost-only runs (workloads/zoo_imagenet.py): the published sizes."""

import pytest
import torch

from cimsim.errors import ConfigError
from cimsim.workloads import zoo_imagenet

# parameters of the published networks at 1000 classes (AlexNet one-tower 61.1 M, VGG-16 138.4 M, ResNet-50
# 25.6 M, MobileNetV2 1.0 3.5 M: Krizhevsky 2012 / Simonyan & Zisserman 2015 / He 2016 / Sandler 2018 Table 3)
PUBLISHED_M = {"alexnet": 61.1, "vgg16": 138.4, "resnet50": 25.6, "mobilenetv2_imagenet": 3.5}


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
