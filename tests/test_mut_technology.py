"""Technology scaling between table nodes (added by a mutation audit: the interpolation law was not pinned).

devices/technology.py: nominal supplies between Stillmaker & Baas's table entries are interpolated linearly in
log(node). At the geometric mean of two neighbouring nodes the weight is exactly 1/2, so the supply is the mean of
the two tabulated ones; a linear interpolation in the node itself would put 54.08 nm at 0.454 of the way from 45 nm.
"""

import math

import pytest

from cimsim.devices.technology import NOMINAL_VDD_V, energy_scale, nominal_vdd_v


@pytest.mark.parametrize("a,b", [(45, 65), (65, 90), (90, 130), (16, 22), (130, 180)])
def test_supply_at_the_geometric_mean_of_two_table_nodes_is_their_mean(a, b):
    mid = math.sqrt(a * b)
    assert nominal_vdd_v(mid) == pytest.approx((NOMINAL_VDD_V[a] + NOMINAL_VDD_V[b]) / 2, rel=1e-12)


def test_supply_a_quarter_of_the_way_in_log_node():
    # n = a * (b / a)**0.25: weight 1/4 in log(node)
    a, b = 45, 65
    n = a * (b / a) ** 0.25
    assert nominal_vdd_v(n) == pytest.approx(1.0 + 0.25 * (1.1 - 1.0), rel=1e-12)


def test_energy_scale_to_an_interpolated_node():
    # E ~ node * Vdd**2: from 45 nm (1.0 V) to sqrt(45 * 65) nm (1.05 V)
    mid = math.sqrt(45 * 65)
    assert energy_scale(45, mid) == pytest.approx(mid / 45 * 1.05 ** 2, rel=1e-12)
