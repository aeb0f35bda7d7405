"""The mapper's activation range: the 99.99th percentile of |activation| over every calibration value, numpy's
linear percentile bit for bit, selected without sorting (mappers/qat_calibrate.top_percentile)."""

import numpy as np
import pytest
import torch

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
    return {"relu": relu, "signed": signed, "ties": ties, "heavy": heavy, "float16": half,
            "small": torch.tensor([0.5, -2.0, 3.0]), "one": torch.tensor([-1.25]), "two": torch.tensor([1.0, 4.0]),
            "zeros": torch.zeros(5000), "ramp": torch.arange(10_001, dtype=torch.float32)}


@pytest.mark.parametrize("name", list(_cases()))
@pytest.mark.parametrize("p", [qc.ACTIVATION_PERCENTILE, 99.0, 50.0, 0.0, 100.0, 99.9999])
def test_top_percentile_is_numpys_bit_for_bit(name, p):
    x = _cases()[name]
    assert qc.top_percentile(x, p) == _numpy(x, p)


def test_threshold_filter_and_full_selection_agree():
    """The CPU's prefilter (a threshold from every 64th value) changes only the speed: where a sorted input puts
    the sampled threshold above too many values' ranks it falls back to the whole selection, same number."""
    g = torch.Generator().manual_seed(1)
    x = torch.relu(torch.randn(2_500_000, generator=g))
    ascending = torch.sort(x).values
    descending = ascending.flip(0)
    for v in (x, ascending, descending, x.reshape(50, -1)):
        assert qc.top_percentile(v, qc.ACTIVATION_PERCENTILE) == _numpy(v.reshape(-1), qc.ACTIVATION_PERCENTILE)


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


def test_no_values_is_refused():
    with pytest.raises(ValueError, match="no values"):
        qc.top_percentile(torch.zeros(0), 50.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_gpus_values_give_the_same_range():
    """On a GPU the selection runs there (no copy of the values to the host): the same number as on the CPU."""
    g = torch.Generator().manual_seed(2)
    x = torch.relu(torch.randn(3_000_001, generator=g))
    assert qc.top_percentile(x.cuda(), qc.ACTIVATION_PERCENTILE) == qc.top_percentile(x, qc.ACTIVATION_PERCENTILE)
    assert qc.activation_range(x.cuda(), 8) == qc.activation_range(x, 8)
