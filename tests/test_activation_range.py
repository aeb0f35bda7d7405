"""The mapper's activation range: the 99.99th percentile of |activation| over every calibration value, numpy's
linear percentile bit for bit, selected without sorting everything (cimsim.calibration.tensor_percentile)."""

import numpy as np
import pytest
import torch

from cimsim.calibration import tensor_percentile
from cimsim.mappers import qat_calibrate as qc


def _numpy(x: torch.Tensor, p: float) -> float:
    return float(np.percentile(x.double().abs().numpy(), p))


def _cases():
    g = torch.Generator().manual_seed(0)
    relu = torch.relu(torch.randn(300_001, generator=g))                       # half zeros, continuous top
    signed = torch.randn(123_457, generator=g) * 3
    ties = torch.randint(0, 16, (200_000,), generator=g).float() * 0.25        # few distinct values, many ties
    heavy = torch.randn(100_003, generator=g) ** 5                              # a long tail
    half = torch.randn(70_000, generator=g).half()
    bf16 = torch.randn(50_000, generator=g).bfloat16()
    return {"relu": relu, "signed": signed, "ties": ties, "heavy": heavy, "float16": half, "bfloat16": bf16,
            "small": torch.tensor([0.5, -2.0, 3.0]), "one": torch.tensor([-1.25]), "two": torch.tensor([1.0, 4.0]),
            "zeros": torch.zeros(5000), "ramp": torch.arange(10_001, dtype=torch.float32)}


@pytest.mark.parametrize("name", list(_cases()))
@pytest.mark.parametrize("p", [qc.ACTIVATION_PERCENTILE, 99.0, 50.0, 0.0, 100.0, 99.9999])
def test_tensor_percentile_is_numpys_bit_for_bit(name, p):
    x = _cases()[name]
    assert tensor_percentile(x.abs(), p) == _numpy(x, p)


def test_threshold_filter_and_full_selection_agree():
    """The CPU's prefilter (a threshold from a strided sample, percentile_in_place) changes only the speed: sorted
    inputs, either way, and a 2-d view give the same number."""
    g = torch.Generator().manual_seed(1)
    x = torch.relu(torch.randn(2_500_000, generator=g))
    ascending = torch.sort(x).values
    descending = ascending.flip(0)
    for v in (x, ascending, descending, x.reshape(50, -1)):
        assert tensor_percentile(v.abs(), qc.ACTIVATION_PERCENTILE) == _numpy(v.reshape(-1), qc.ACTIVATION_PERCENTILE)


def test_activation_range_reads_every_value():
    """Beyond 2,000,000 values (where a sample was drawn before) the range is every value's percentile: a
    thousand values 1..1000 among 2.5 M zeros set it where they do among all of them (a sample of 2 M would hold
    about 800 of them: 735.0001 against 750.0001 with seed 0)."""
    x = torch.zeros(2_500_000)
    x[::2_500] = torch.arange(1, 1001, dtype=torch.float32)
    scale, signed = qc.activation_range(x, 8)
    assert not signed and 740 < scale * 255 < 760                  # rank 2,499,750 of 2,500,000: about 750
    assert scale == _numpy(x, qc.ACTIVATION_PERCENTILE) / 255
    scale_s, signed_s = qc.activation_range(-x, 8)                 # negative: signed, 127 codes a side
    assert signed_s and scale_s == _numpy(x, qc.ACTIVATION_PERCENTILE) / 127


def test_activation_range_of_zeros_and_a_tiny_tail():
    assert qc.activation_range(torch.zeros(1000), 4) == (1.0 / 15, False)
    x = torch.zeros(100_000)
    x[7] = 3.0                                                     # below the 99.99th percentile's rank: 0 there
    assert qc.activation_range(x, 4) == (3.0 / 15, False)



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_gpus_values_give_the_same_range():
    """On a GPU the selection runs there (no copy of the values to the host): the same number as on the CPU."""
    g = torch.Generator().manual_seed(2)
    x = torch.relu(torch.randn(3_000_001, generator=g))
    p = qc.ACTIVATION_PERCENTILE
    assert tensor_percentile(x.cuda(), p) == tensor_percentile(x.clone(), p) == _numpy(x, p)
    assert qc.activation_range(x.cuda(), 8) == qc.activation_range(x, 8)
