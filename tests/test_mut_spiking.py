"""LIF edge cases pinned by hand (added by a mutation audit: the spike at exactly the threshold, the clamp of beta and
the reset's count of digital work were not pinned).

cimsim/spiking.py follows snnTorch's Leaky (reset_delay=True): S_t = H(U_t - theta) with H(u) = 1 only for u > 0,
U_t = clamp(beta, 0, 1) U_{t-1} + I_t - R_t theta, R_t = H(U_{t-1} - theta).
"""

import pytest
import torch

from cimsim.spiking import LIF


def _run(lif, currents):
    spk, mem = [], []
    m = None
    for c in currents:
        s, m = lif(torch.tensor([c]), m)
        spk.append(float(s.detach()[0]))
        mem.append(float(m.detach()[0]))
    return spk, mem


def test_a_membrane_exactly_at_threshold_does_not_fire():
    # theta = 1, beta = 0.5, currents 1, 1, 0: U = 1 (H(0) = 0: no spike), U = 0.5 + 1 = 1.5 (spike), then the reset
    # subtracts theta: U = 0.75 + 0 - 1 = -0.25 (no spike). Every number is exact in float32.
    spk, mem = _run(LIF(beta=0.5, threshold=1.0), [1.0, 1.0, 0.0])
    assert spk == [0.0, 1.0, 0.0]
    assert mem == [1.0, 1.5, -0.25]


@pytest.mark.parametrize("beta,expected", [(1.5, [1.0, 2.0, 3.0]), (-0.5, [1.0, 1.0, 1.0])])
def test_beta_outside_the_unit_interval_is_clamped(beta, expected):
    # a learnable beta may leave [0, 1]; the update uses clamp(beta, 0, 1): beta 1.5 integrates (1, 2, 3), beta -0.5
    # forgets (1, 1, 1). Threshold 10: no spike, no reset.
    _, mem = _run(LIF(beta=beta, threshold=10.0, reset="none", learn_beta=True), [1.0, 1.0, 1.0])
    assert mem == expected


@pytest.mark.parametrize("reset,adds", [("subtract", 2), ("zero", 1), ("none", 1)])
def test_profile_counts_the_subtractive_reset_as_a_second_add(reset, adds):
    # per neuron and step: a multiply (leak), an add (input), a compare (fire); a subtractive reset one more add
    ev = LIF(reset=reset).profile_events(torch.zeros(3, 5))
    assert ev == {"mul": 15, "add": 15 * adds, "compare": 15}
