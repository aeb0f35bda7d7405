"""Spiking neurons and encoders (cimsim.spiking): snnTorch Leaky semantics, surrogate gradients, encoders."""

from __future__ import annotations

import math

import pytest
import torch

from cimsim.errors import ConfigError
from cimsim.spiking import (LIF, DirectEncoder, LatencyEncoder, RateEncoder, Surrogate, TimeLoop, convert_snntorch,
                            counter_uniform, from_snntorch, is_spiking, neuron_kinds, reset_states)

# A trace worked by hand from the equations (beta 0.5, threshold 1; dyadic numbers, so exact in float32):
# subtract: U = .625, .9375, 1.09375 (spike), .546875 - 1 = -.453125, -.2265625 + 1.5 = 1.2734375 (spike)
# zero:     the same to step 2, then U_2 is zeroed: 0 + 0 = 0, 0 + 1.5 = 1.5 (spike)
# none:     .625, .9375, 1.09375, .546875, 1.7734375; spikes wherever U > 1
CURRENT = [0.625, 0.625, 0.625, 0.0, 1.5]
TRACES = {
    "subtract": ([0.625, 0.9375, 1.09375, -0.453125, 1.2734375], [0, 0, 1, 0, 1]),
    "zero": ([0.625, 0.9375, 1.09375, 0.0, 1.5], [0, 0, 1, 0, 1]),
    "none": ([0.625, 0.9375, 1.09375, 0.546875, 1.7734375], [0, 0, 1, 0, 1]),
}


@pytest.mark.parametrize("reset", list(TRACES))
def test_lif_follows_the_stored_trace(reset):
    lif = LIF(beta=0.5, threshold=1.0, reset=reset)
    mem = lif.init_leaky()
    us, ss = [], []
    for c in CURRENT:
        spk, mem = lif(torch.tensor([c]), mem)
        us.append(float(mem))
        ss.append(int(spk))
    assert us == TRACES[reset][0] and ss == TRACES[reset][1]


def test_lif_init_hidden_keeps_its_own_state_and_resets():
    lif = LIF(beta=0.5, threshold=1.0, init_hidden=True)
    spikes = [int(lif(torch.tensor([c]))) for c in CURRENT]
    assert spikes == TRACES["subtract"][1]
    reset_states(torch.nn.Sequential(lif))
    assert [int(lif(torch.tensor([c]))) for c in CURRENT] == spikes
    with pytest.raises(ConfigError, match="init_hidden"):
        lif(torch.tensor([0.1]), torch.zeros(1))


@pytest.mark.parametrize("surrogate", [Surrogate.atan(2.0), Surrogate.atan(3.0), Surrogate.fast_sigmoid(25.0),
                                       Surrogate.fast_sigmoid(5.0)])
def test_surrogate_gradients_follow_their_formulas(surrogate):
    u = torch.linspace(-1, 1, 41, dtype=torch.float64, requires_grad=True)
    s = surrogate(u)
    assert torch.equal(s, (u > 0).double())
    s.sum().backward()
    a = surrogate.slope
    if surrogate.kind == "atan":
        expect = a / 2 / (1 + (math.pi / 2 * a * u.detach()) ** 2)
    else:
        expect = 1 / (a * u.detach().abs() + 1) ** 2
    torch.testing.assert_close(u.grad, expect, rtol=1e-12, atol=0)


def test_bad_neuron_and_encoder_settings_are_refused():
    with pytest.raises(ConfigError, match="reset"):
        LIF(reset="sometimes")
    with pytest.raises(ConfigError, match="threshold"):
        LIF(threshold=0.0)
    with pytest.raises(ConfigError, match="surrogate"):
        Surrogate("sigmoid")
    with pytest.raises(ConfigError, match="time_steps"):
        RateEncoder(0)
    with pytest.raises(ConfigError, match="kind"):
        RateEncoder(4, kind="gaussian")


def test_rate_encoding_has_the_right_rate_and_is_the_same_in_any_batch():
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    enc = RateEncoder(50, seed=7)
    s = enc(x)
    assert s.shape == (50, 64, 1, 8, 8) and set(s.unique().tolist()) <= {0.0, 1.0}
    # 50 Bernoulli draws per element: the mean rate over 64*64 elements is within 0.005 of the mean intensity
    # (its standard error is about 0.001)
    assert abs(float(s.mean()) - float(x.mean())) < 0.005
    # each element's count over 50 steps is Binomial(50, x): the z-scores have unit variance (within 10 %)
    z = (s.sum(0) - 50 * x) / torch.sqrt(50 * x * (1 - x)).clamp(min=1e-3)
    assert 0.9 < float(z[(x > 0.05) & (x < 0.95)].var()) < 1.1
    assert torch.equal(enc(x[10:20]), s[:, 10:20])                 # an example's spikes do not depend on the batch
    assert not torch.equal(RateEncoder(50, seed=8)(x), s)           # another seed, other spikes
    # identical examples get identical spikes; different elements of one example are not copies of each other
    twin = torch.cat([x[:1], x[:1]])
    assert torch.equal(enc(twin)[:, 0], enc(twin)[:, 1])
    u = counter_uniform(3, 0, torch.full((1, 4096), 0.5))
    assert abs(float(u.mean()) - 0.5) < 0.02 and float(u.min()) >= 0 and float(u.max()) < 1


def test_poisson_rate_direct_and_latency_encoders():
    x = torch.full((1, 10000), 0.5)
    s = RateEncoder(20, kind="poisson", gain=1.0, seed=1)(x)
    assert abs(float(s.mean()) - (1 - math.exp(-0.5))) < 0.01   # 2e5 draws: standard error 0.001
    d = DirectEncoder(3)(x)
    assert d.shape == (3, 1, 10000) and torch.equal(d[2], x)
    lat = LatencyEncoder(4)(torch.tensor([[0.0, 0.2, 0.5, 1.0]]))
    # x = 0 never fires; 0.2 -> step floor(0.8 * 4) = 3; 0.5 -> 2; 1.0 -> 0
    assert lat[:, 0].T.tolist() == [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [1, 0, 0, 0]]


def test_time_loop_counts_spikes_and_spiking_is_recognised():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 3), LIF(beta=0.8, init_hidden=True))
    loop = TimeLoop(net, DirectEncoder(5)).eval()
    x = torch.rand(4, 6) * 2
    with torch.no_grad():
        first = loop(x)
        assert torch.equal(loop(x), first)      # states reset between inferences
        assert 0 <= float(first.min()) and float(first.max()) <= 5
    assert is_spiking(loop) and not is_spiking(torch.nn.Linear(2, 2))
    assert "LIF" in neuron_kinds()


# ---------------------------------------------------------------------------------------------- snnTorch
snntorch = pytest.importorskip("snntorch")


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("grad", ["default", "fast_sigmoid", "atan3"])
def test_lif_equals_snntorch_leaky_spikes_membranes_and_gradients(reset, grad):
    from snntorch import surrogate

    sg = {"default": None, "fast_sigmoid": surrogate.fast_sigmoid(slope=25), "atan3": surrogate.atan(alpha=3.0)}[grad]
    ref = snntorch.Leaky(beta=0.8, threshold=0.7, reset_mechanism=reset, spike_grad=sg)
    lif = from_snntorch(ref)
    cur = torch.randn(12, 4, 7, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.3
    c1, c2 = cur.clone().requires_grad_(), cur.clone().requires_grad_()
    m1, m2 = ref.init_leaky(), lif.init_leaky()
    s1, s2, u1, u2 = [], [], [], []
    for t in range(12):
        a, m1 = ref(c1[t], m1)
        b, m2 = lif(c2[t], m2)
        s1.append(a), s2.append(b), u1.append(m1), u2.append(m2)
    s1, s2, u1, u2 = map(torch.stack, (s1, s2, u1, u2))
    assert torch.equal(s1, s2) and torch.equal(u1, u2)
    assert 0.1 < float(s1.detach().mean()) < 0.9         # the trace exercises firing and resets
    (s1.sum() + u1.pow(2).sum()).backward()
    (s2.sum() + u2.pow(2).sum()).backward()
    assert torch.equal(c1.grad, c2.grad)


def test_snntorch_models_convert_with_learnable_parameters():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), snntorch.Leaky(beta=0.6, learn_beta=True, learn_threshold=True,
                                                                     init_hidden=True))
    assert is_spiking(net)
    assert convert_snntorch(net) == ["1"]
    lif = net[1]
    assert isinstance(lif, LIF) and isinstance(lif.beta, torch.nn.Parameter) and lif.init_hidden
    assert float(lif.beta.detach()) == pytest.approx(0.6)
