"""A toy architecture in one file (tests/_toy_arch.py), registered here, passes every contract check."""

import pytest

import cimsim
from _toy_arch import ToyAnalogSum
from cimsim.arch.base import register, unregister
from test_contracts import CHECKS, check_a_run_adds_up_and_round_trips


@pytest.fixture
def toy():
    register(ToyAnalogSum)
    yield cimsim.arch.get("toy-analog-sum")
    unregister("toy-analog-sum")


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__[6:])
def test_the_toy_meets_every_contract(toy, check):
    check(toy)


def test_a_toy_run_adds_up_converts_once_per_mvm_and_round_trips(toy, tmp_path):
    check_a_run_adds_up_and_round_trips(toy, tmp_path)
    assert "toy-analog-sum" in cimsim.arch.names()
    spec = toy.crossbar_spec()
    assert not spec.conversion.per_cycle and spec.conversion.cycles == 0


def test_the_registry_refuses_a_second_class_under_the_same_name(toy):
    class Other(ToyAnalogSum):
        pass

    with pytest.raises(cimsim.ConfigError, match="already registered"):
        register(Other)
