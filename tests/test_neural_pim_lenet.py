"""Neural-PIM and CASCADE against ISAAC on the shipped LeNet-5 (Fashion-MNIST) at 8-bit weights and inputs, 32 nm,
equal area (cimsim compare): energy ordering on a few examples, and (slow) Neural-PIM's accuracy on the whole
test set within 0.5 point of ISAAC's (the paper: no accuracy loss)."""

import os
from pathlib import Path

import pytest

from cimsim.cli.compare import compare
from cimsim.networks import load_model_and_data

FMNIST = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not FMNIST.is_dir() and not os.environ.get("CIMSIM_DATA"),
                                reason="needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")


def _compare(limit):
    model, meta, data, ckpt = load_model_and_data("lenet5", "fashion-mnist")
    loader = list(data.loader("test", batch_size=250, limit=limit))
    calibration = list(data.loader("train", batch_size=128, limit=128, shuffle=False))
    return compare(model, ["isaac", "cascade", "neural-pim"], loader, calibration, equal_area="isaac", progress=False)


def test_analog_accumulation_spends_less_energy_than_converting_every_cycle():
    """On 20 examples: Neural-PIM < CASCADE < ISAAC in energy per inference; ISAAC's energy is mostly its ADCs and
    Neural-PIM's NNADCs take a far smaller share."""
    rows = _compare(20)["architectures"]
    e = {n: r["energy_j"] for n, r in rows.items()}
    assert e["neural-pim"] < e["cascade"] < e["isaac"]
    assert rows["isaac"]["energy_split"]["adc"] > 0.5
    assert rows["neural-pim"]["energy_split"]["adc"] < 0.25


@pytest.mark.slow
def test_neural_pim_keeps_isaacs_accuracy_on_the_test_set():
    rows = _compare(None)["architectures"]
    assert abs(rows["neural-pim"]["accuracy"] - rows["isaac"]["accuracy"]) <= 0.005
