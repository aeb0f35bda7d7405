"""The tiled chips' inter-layer pipeline (arch/tiled.py ``copies`` and ``timing``; ISAAC sec. 5), pinned on a chip
small enough to count by hand (added by a mutation audit: a copy count that fills the chip exactly, a number of
positions its copies do not divide, and the occupancy of a replicated layer were not pinned).

ISAAC with one tile: 12 IMAs x 8 crossbars = 96 crossbars, 16-bit inputs streamed one bit a cycle at 100 ns, so
one MVM takes 16 x 100 ns = 1.6 us. A layer of one array copied k times runs ``ceil(positions / k)`` MVMs one
after another (a copy cannot run a fraction of an MVM) and occupies ``k x arrays`` of the 96 crossbars.
"""

import pytest

import cimsim
from cimsim import events as ev
from cimsim.cost import LayerPlan
from cimsim.ledger import EventLedger


def _timing(positions):
    a = cimsim.arch.get("isaac", tiles=1)
    assert a.crossbars == 96 and a.input_bits == 16 and a.dac_bits == 1 and a.cycle_s == pytest.approx(100e-9)
    plan = LayerPlan("fc", "Linear", in_features=128, out_features=16, groups=1, positions=positions, arrays=1)
    return a.timing(EventLedger({"fc": {ev.ARRAY_READ_CYCLES: 1.0}}), {"fc": plan}, {"fc": "Linear"}), a


def test_positions_that_fill_the_chip_exactly_get_one_copy_per_crossbar():
    # 96 positions, 96 crossbars: 96 copies fit (96 <= 96), one MVM each; the layer holds the whole chip
    t, a = _timing(96)
    assert t.copies["fc"] == 96
    assert t.latency_per_layer["fc"] == pytest.approx(1 * 16 * a.cycle_s, rel=1e-12)
    assert t.occupancy["fc"] == pytest.approx(1.0, rel=1e-12)


def test_positions_the_copies_do_not_divide_take_the_rounded_up_number_of_mvms():
    # 97 positions: 97 copies do not fit; at most 2 MVMs per copy needs ceil(97 / 2) = 49 copies (49 <= 96), and 49
    # copies run 97 positions in ceil(97 / 49) = 2 MVMs (48 copies run two, one runs one): 2 x 1.6 us
    t, a = _timing(97)
    assert t.copies["fc"] == 49
    assert t.latency_per_layer["fc"] == pytest.approx(2 * 16 * a.cycle_s, rel=1e-12)
    assert t.occupancy["fc"] == pytest.approx(49 / 96, rel=1e-12)
