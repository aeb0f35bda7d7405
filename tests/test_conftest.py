import pytest


def test_approx_is_relative_for_tiny_si_values():
    assert 3e-15 != pytest.approx(1.6e-15)          # would pass with pytest's default abs=1e-12
    assert 1.6e-15 * (1 + 1e-9) == pytest.approx(1.6e-15)
    assert 1e-9 == pytest.approx(0.0, abs=1e-6)      # an explicit abs still works
