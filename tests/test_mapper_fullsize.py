"""Full-size check of issue 5 (slow; run on a GPU: python -m pytest -m slow tests/test_mapper_fullsize.py).

At ISAAC's defaults with an 8-bit ADC, the mapped accuracy over the whole Fashion-MNIST test set is within
1 point of the digital reference for LeNet-5, VGG-small and ResNet-20 (measured figures in BENCHMARKS.md).
"""

import pytest
import torch

import cimsim
from cimsim.workloads import datasets, train

pytestmark = pytest.mark.slow
CUDA = torch.cuda.is_available()


@pytest.mark.parametrize("model_name", ["lenet5", "vgg_small", "resnet20"])
def test_isaac_8bit_adc_within_one_point_of_the_digital_reference(model_name):
    try:
        data = datasets.load("fashion-mnist")
    except cimsim.DatasetError:
        pytest.skip("Fashion-MNIST is not installed")
    model, _ = train.load_checkpoint(train.find_checkpoint(model_name, "fashion-mnist"))
    mapped = cimsim.map(model, cimsim.arch.get("isaac", adc_bits=8),
                        calibration=data.loader("train", batch_size=500, limit=512),
                        backend="torch" if CUDA else "numba", device="cuda" if CUDA else "cpu")
    rep = mapped.evaluate(data.loader("test", batch_size=500), progress=False)
    assert rep.n_examples == 10_000
    assert abs(rep.accuracy - rep.digital_accuracy) <= 0.01
