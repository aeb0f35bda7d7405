"""The work a network's own forward does with torch functions is counted, as the same work done by layers is.

Every count here is written out by hand from the operation's definition (the rules of cimsim.mappers.profile_ops),
and a function and its layer form must give the same events.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim import events as ev
from cimsim.mappers.profile import profile
from cimsim.mappers.profile_ops import canonical, function_events, norm_events, softmax_events
from cimsim.spiking import LIF


def _totals(model, x):
    prof = profile(model, x)
    return prof, {k: v for k, v in prof.ledger.totals().items()}


class _ClassicFunctional(nn.Module):
    """The PyTorch MNIST example's style: activations and pooling called as functions."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 5), nn.Conv2d(8, 16, 5)
        self.fc = nn.Linear(256, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return F.log_softmax(self.fc(torch.flatten(x, 1)), dim=1)


class _ClassicModules(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 5), nn.Conv2d(8, 16, 5)
        self.fc = nn.Linear(256, 10)
        self.pool1, self.pool2, self.relu1, self.relu2 = nn.MaxPool2d(2), nn.MaxPool2d(2), nn.ReLU(), nn.ReLU()
        self.out = nn.LogSoftmax(dim=1)

    def forward(self, x):
        x = self.relu1(self.pool1(self.conv1(x)))
        x = self.relu2(self.pool2(self.conv2(x)))
        return self.out(self.fc(torch.flatten(x, 1)))


def test_functions_in_a_forward_cost_what_the_same_layers_cost():
    x = torch.randn(1, 1, 28, 28)
    prof, functional = _totals(_ClassicFunctional(), x)
    _, modules = _totals(_ClassicModules(), x)
    assert functional == modules
    assert prof.uncosted == []
    led = prof.ledger
    # 8x24x24 -> 8x12x12 pooled (3 comparisons per 2x2 window), then 16x8x8 -> 16x4x4
    assert led.layer("_ClassicFunctional.max_pool2d()") == {"compare": 3 * (8 * 12 * 12 + 16 * 4 * 4)}
    assert led.layer("_ClassicFunctional.relu()") == {"compare": 8 * 12 * 12 + 16 * 4 * 4}
    # log-softmax of 10 values: 10 exps and one log, 9 adds for the sum and 10 subtractions
    assert led.layer("_ClassicFunctional.log_softmax()") == {"nonlinear": 11, "add": 19}
    assert prof.kinds["_ClassicFunctional.max_pool2d()"] == "max_pool2d()"
    assert prof.functions["_ClassicFunctional.relu()"] == ("relu", "_ClassicFunctional")


class _Attention(nn.Module):
    """Single-head self-attention written out: the products of activations run digitally."""

    def __init__(self, d=8):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):                       # x: (batch, tokens, d)
        q, k, v = self.q(x), self.k(x), self.v(x)
        a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        return self.norm(x + F.gelu(a @ v))


def test_attention_products_softmax_gelu_and_layer_norm_are_counted():
    tokens, d = 5, 8
    prof = profile(_Attention(d), torch.randn(1, tokens, d))
    led = prof.ledger
    assert prof.uncosted == []
    # q k^T: tokens x tokens outputs of d products each; a v: tokens x d outputs of tokens products each
    assert led.count("mac", "_Attention.matmul()") == tokens * tokens * d + tokens * d * tokens
    assert led.count("act_read", "_Attention.matmul()") == 2 * tokens * d + (tokens * tokens + tokens * d)
    assert led.layer("_Attention.div()") == {"mul": tokens * tokens}
    # softmax over 5 values in 5 rows: an exp and a divide per value, 4 adds per row
    assert led.layer("_Attention.softmax()") == {"nonlinear": 25, "add": 20, "mul": 25}
    # GELU x * Phi(x): an erf, two multiplies (x / sqrt 2, x * ...) and an add (1 + erf) per value
    assert led.layer("_Attention.gelu()") == {"nonlinear": 40, "mul": 80, "add": 40}
    assert led.layer("_Attention") == {"add": 40}                     # the residual add stays the module's own
    # layer norm of 5 rows of 8: mean, variance, normalise, affine (3n + n adds, 2n + 2 rows + n multiplies)
    n = tokens * d
    assert led.layer("norm") == {"add": 4 * n, "mul": 3 * n + 2 * tokens, "nonlinear": tokens}
    assert led.layer("norm") == norm_events(n, tokens, True)
    assert prof.kinds["norm"] == "LayerNorm"


def test_layers_and_functions_share_one_rule():
    x = torch.randn(2, 6, 4, 4)
    cases = [(nn.Sigmoid(), torch.sigmoid), (nn.Tanh(), torch.tanh), (nn.SiLU(), F.silu), (nn.GELU(), F.gelu),
             (nn.Hardswish(), F.hardswish), (nn.Hardsigmoid(), F.hardsigmoid),
             (nn.Softmax(dim=1), lambda t: t.softmax(1)),
             (nn.GroupNorm(3, 6), lambda t: F.group_norm(t, 3, torch.ones(6), torch.zeros(6))),
             (nn.InstanceNorm2d(6), F.instance_norm), (nn.ELU(), F.elu), (nn.Mish(), F.mish)]
    for layer, fn in cases:
        class Fn(nn.Module):
            def forward(self, t, fn=fn):
                return fn(t)
        layer_prof = profile(layer, x)
        fn_prof = profile(Fn(), x)
        assert layer_prof.uncosted == [] and fn_prof.uncosted == [], layer
        assert layer_prof.ledger.totals() == fn_prof.ledger.totals(), layer
        assert layer_prof.ledger.totals(), layer     # none of them is free


@pytest.mark.parametrize("call, expected", [
    (lambda x: x * 2, {"mul": 24}),
    (lambda x: 1 - x, {"add": 24}),
    (lambda x: x.clamp(0, 1), {"compare": 48}),
    (lambda x: x.clamp(min=0), {"compare": 24}),
    (lambda x: x.pow(2), {"mul": 24}),
    (lambda x: x ** 3, {"nonlinear": 24}),
    (lambda x: x.sum(-1), {"add": 24 - 6}),
    (lambda x: x.mean((1, 2)), {"add": 24 - 2, "mul": 2}),
    (lambda x: x.amax(1), {"compare": 24 - 8}),
    (lambda x: torch.max(x, x.flip(0)), {"compare": 24}),
    (lambda x: x.max(2).values, {"compare": 24 - 6}),
    (lambda x: F.adaptive_avg_pool1d(x, 1), {"add": 24 - 6, "mul": 6}),
    (lambda x: F.avg_pool1d(x, 2), {"add": 12, "mul": 12}),
    (lambda x: torch.bmm(x, x.transpose(1, 2)), {"mac": 2 * 3 * 3 * 4, "act_read": 48, "act_write": 18}),
    (lambda x: torch.einsum("bij,bkj->bik", x, x), {"mac": 2 * 3 * 3 * 4, "act_read": 48, "act_write": 18}),
    (lambda x: F.interpolate(x, scale_factor=2, mode="linear"), {"mul": 2 * 48, "add": 48}),
    (lambda x: F.interpolate(x, scale_factor=2), {"act_read": 24, "act_write": 48}),
    (lambda x: torch.cat([x, x]).reshape(-1).view(2, -1)[:, 1:].contiguous(), {}),
])
def test_function_counts_by_hand(call, expected):
    class Fn(nn.Module):
        def forward(self, t):
            return call(t[0])     # the batch's one (2, 3, 4) example: 24 values (indexing is free)
    prof = profile(Fn(), torch.randn(1, 2, 3, 4))
    assert prof.uncosted == []
    assert {k: v for k, v in prof.ledger.totals().items() if v} == expected


def test_scaled_dot_product_attention_is_its_products_and_softmax():
    q = torch.randn(1, 2, 5, 4)
    k, v = torch.randn(1, 2, 7, 4), torch.randn(1, 2, 7, 3)
    out = F.scaled_dot_product_attention(q, k, v)
    e = function_events(F.scaled_dot_product_attention, (q, k, v), {}, out)
    scores = 2 * 5 * 7
    assert e[ev.MAC] == scores * (4 + 3)
    assert e[ev.NONLINEAR] == scores and e[ev.ADD] == scores - 2 * 5
    assert e[ev.MUL] == scores + scores      # the softmax's divides and the 1/sqrt(d) scaling
    # memory traffic as the steps written out: q, k, v and the scores read, the scores and the output written
    assert e == {**softmax_events(scores, 7), ev.MAC: 490, ev.MUL: 140, ev.ACT_READ: 40 + 56 + 42 + scores,
                 ev.ACT_WRITE: scores + 30}


def test_names_are_read_through_operator_and_in_place_forms():
    assert canonical(torch.Tensor.__radd__) == "add"
    assert canonical(torch.Tensor.add_) == "add"
    assert canonical(torch.Tensor.__rmatmul__) == "matmul"
    assert canonical(torch.rsqrt) == "rsqrt"          # a name starting with r is not an operator's reflection
    assert canonical(F.max_pool2d) == "max_pool2d"


def test_an_unknown_function_is_not_costed_and_named_by_its_row():
    class Gammas(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(torch.lgamma(x))

    prof = profile(Gammas(), torch.randn(1, 4))
    assert prof.uncosted == ["Gammas.lgamma()"]
    assert prof.functions["Gammas.lgamma()"] == ("lgamma", "Gammas")
    assert prof.ledger.layer("Gammas.lgamma()") == {}


def test_a_custom_leaf_made_of_known_functions_is_costed():
    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act = nn.Linear(4, 6), Swish()

        def forward(self, x):
            return self.act(self.fc(x))

    prof = profile(Net(), torch.randn(1, 4))
    assert prof.uncosted == []
    assert prof.ledger.layer("act") == {"nonlinear": 6, "mul": 6}
    assert prof.ledger.layer("act") == profile(nn.SiLU(), torch.randn(1, 6)).ledger.layer("SiLU")


def test_a_spiking_neuron_is_counted_once_by_its_own_rule():
    # LIF: per neuron and step a multiply, an input add, a reset subtract and a comparison (its profile_events);
    # the torch additions inside its forward are not counted a second time
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.lif = nn.Linear(4, 3), LIF()

        def forward(self, x):
            total = 0
            for _ in range(5):
                spikes, _ = self.lif(self.fc(x))
                total = total + spikes
            return total

    prof = profile(Net(), torch.randn(1, 4))
    assert prof.ledger.layer("lif") == {"mul": 15, "add": 30, "compare": 15}
    assert prof.ledger.layer("Net") == {"add": 15}


def test_isaac_runs_pooling_functions_on_the_pooling_unit_and_sigmoids_on_the_activation_unit():
    arch = cimsim.arch.get("isaac")
    out = arch.digital_events("Net.max_pool2d()", "max_pool2d()", {"compare": 12})
    assert out == {ev.POOLING_OPS: 12}
    out = arch.digital_events("Net.sigmoid()", "sigmoid()", {"nonlinear": 10})
    assert out == {ev.ACTIVATION_OPS: 10}
    out = arch.digital_events("Net.relu()", "relu()", {"compare": 7})
    assert out == {ev.ACTIVATION_OPS: 7}


def test_the_digital_reference_spends_six_multiply_adds_on_a_transcendental():
    from cimsim.ledger import EventLedger
    arch = cimsim.arch.get("digital")
    cost = arch.cost(EventLedger({"act": {"nonlinear": 168}}), {}, {"act": "sigmoid()"})
    assert cost.energy_per_layer["act"] == pytest.approx(168 * 6 * (3.7e-12 + 0.9e-12), rel=1e-12)
    assert cost.latency_per_layer["act"] == pytest.approx(6 / 200e6, rel=1e-12)   # 1008 ops on 168 MAC units


def test_multi_head_attention_is_costed_as_its_projections_scores_and_softmax():
    class Block(nn.Module):
        def __init__(self, e=16, heads=4):
            super().__init__()
            self.attn, self.fc = nn.MultiheadAttention(e, heads, batch_first=True), nn.Linear(e, 10)

        def forward(self, x):
            x = x.reshape(x.shape[0], 4, 16)
            return self.fc(self.attn(x, x, x, need_weights=False)[0].mean(1))

    prof = profile(Block(), torch.randn(1, 64))
    assert prof.uncosted == []
    row = prof.ledger.layer("attn.multi_head_attention_forward()")
    tokens, e, heads = 4, 16, 4
    # q, k, v and output projections: 4 x tokens x e x e; scores and weighted values: 2 x tokens x tokens x e
    assert row["mac"] == 4 * tokens * e * e + 2 * tokens * tokens * e
    scores = heads * tokens * tokens
    assert row["nonlinear"] == scores                                      # the softmax's exps
    assert row["add"] == (scores - heads * tokens) + 4 * tokens * e         # softmax sums, four projections' biases
    assert row["mul"] == scores + tokens * e                                # softmax divides, queries scaled
    assert row["weight_read"] == 3 * e * e + 3 * e + e * e + e              # in_proj and out_proj, with biases
    # memory traffic as the steps written out: the inputs, q, k, v, the scores and the weighted values read; q, k,
    # v, the scores, the weighted values and the output written
    assert row["act_read"] == 3 * tokens * e + 4 * tokens * e + scores
    assert row["act_write"] == 3 * tokens * e + scores + tokens * e + tokens * e


def _fn(call):
    class Fn(nn.Module):
        def forward(self, t):
            return call(t)
    return Fn()


def test_a_leaf_that_returns_its_input_is_free_not_uncosted():
    class DropPath(nn.Module):          # stochastic depth in inference: the input, untouched
        def forward(self, x):
            return x

    net = nn.Sequential(nn.Linear(4, 4), DropPath())
    prof = profile(net, torch.randn(1, 4))
    assert prof.uncosted == [] and prof.ledger.layer("1") == {}


def test_a_layer_called_with_keywords_is_counted():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.norm = nn.Linear(4, 6), nn.LayerNorm(6)

        def forward(self, x):
            return self.norm(input=self.fc(input=x))

    prof = profile(Net(), torch.randn(1, 4))
    assert prof.uncosted == [] and prof.ledger.count("mac", "fc") == 24
    assert prof.ledger.layer("norm") == norm_events(6, 1, True)


@pytest.mark.filterwarnings("ignore:Implicit dimension choice for softmax")
def test_reflected_power_softmax_default_dim_mish_and_norm_variants():
    x = torch.randn(1, 2, 4, 4)     # 32 values
    assert profile(_fn(lambda t: 2 ** t), x).ledger.totals() == {"nonlinear": 32}      # exp2, not a square
    # torch's implicit softmax dimension of a 4-d input is 1: 16 rows of 2 values
    implicit = profile(nn.Softmax(), x).ledger.totals()
    assert implicit == {"nonlinear": 32, "add": 16, "mul": 32}
    assert implicit == profile(_fn(lambda t: torch.softmax(t, 1)), x).ledger.totals()
    # mish = x tanh(softplus(x)): exp and log1p (softplus), tanh, one multiply
    assert profile(nn.Mish(), x).ledger.totals() == {"nonlinear": 96, "mul": 32}
    # RMS norm over the last 4: a square, a sum, the scaling and the weight per value; a divide and an rsqrt a row
    assert profile(nn.RMSNorm(4), x).ledger.totals() == {"add": 32, "mul": 3 * 32 + 8, "nonlinear": 8}
    # a layer norm without a bias adds no bias
    no_bias = profile(nn.LayerNorm(4, bias=False), x).ledger.totals()
    assert no_bias == {"add": 3 * 32, "mul": 3 * 32 + 2 * 8, "nonlinear": 8}


def test_adaptive_pooling_counts_its_overlapping_windows():
    # 4 -> 3 per dimension: windows [0, 2), [1, 3), [2, 4): 6 inputs read per dimension, 36 per channel for 9 outputs
    x = torch.randn(1, 2, 4, 4)
    assert profile(nn.AdaptiveAvgPool2d(3), x).ledger.totals() == {"add": 2 * (36 - 9), "mul": 18}
    assert profile(nn.AdaptiveMaxPool2d(3), x).ledger.totals() == {"compare": 2 * (36 - 9)}
    assert profile(_fn(lambda t: F.adaptive_avg_pool2d(t, 3)), x).ledger.totals() == {"add": 54, "mul": 18}
    # dividing sizes: every input once
    assert profile(nn.AdaptiveAvgPool2d(2), x).ledger.totals() == {"add": 32 - 8, "mul": 8}


def test_functional_dropout_left_on_is_a_draw_and_a_multiply_and_off_is_free():
    x = torch.randn(1, 8)
    assert profile(_fn(lambda t: F.dropout(t, 0.5)), x).ledger.totals() == {"compare": 8, "mul": 8}
    assert profile(_fn(lambda t: F.dropout(t, 0.5, training=False)), x).ledger.totals() == {}
    assert profile(nn.Dropout(0.5), x).ledger.totals() == {}          # the layer in inference


def test_a_digital_layers_operations_on_one_unit_take_turns_and_the_units_work_in_parallel():
    from cimsim.ledger import EventLedger
    arch = cimsim.arch.get("isaac")
    rates = arch.unit_rates()
    t = arch.timing(EventLedger({"x": {"add": 1000, "mul": 3000}}), {}, {"x": "x's own ops"}).latency_per_layer
    assert t["x"] == pytest.approx(1000 / rates["add"] + 3000 / rates["mul"], rel=1e-12)   # both on the adders
    t = arch.timing(EventLedger({"x": {"add": 1000, "activation_ops": 5000}}), {}, {"x": "x"}).latency_per_layer
    assert t["x"] == pytest.approx(max(1000 / rates["add"], 5000 / rates["activation_ops"]), rel=1e-12)


def test_a_parameter_only_copied_is_no_work_and_one_added_is_costed_digital_work():
    class Tokens(nn.Module):            # a ViT's class token and position embedding
        def __init__(self):
            super().__init__()
            self.cls, self.pos = nn.Parameter(torch.zeros(1, 1, 4)), nn.Parameter(torch.zeros(1, 3, 4))
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x.reshape(-1, 2, 4)], 1) + self.pos
            return self.fc(x.mean(1))

    prof = profile(Tokens(), torch.randn(1, 8))
    assert prof.digital == {"pos": "Tokens"} and prof.unowned == {} and prof.uncosted == []
    assert prof.ledger.layer("Tokens") == {"add": 12}


def test_a_gru_is_counted_layer_by_layer_direction_by_direction_step_by_step():
    gru = nn.GRU(8, 16, num_layers=2, bidirectional=True, batch_first=True)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru, self.fc = gru, nn.Linear(32, 4)

        def forward(self, x):
            return self.fc(self.gru(x)[0][:, -1])

    steps = 5
    prof = profile(Net(), torch.randn(1, steps, 8))
    row = prof.ledger.layer("gru")
    # 3 gates x 16 units over (8 inputs + 16 hidden) in layer 1, (32 + 16) in layer 2; two directions; every step
    assert row["mac"] == 2 * steps * 3 * 16 * ((8 + 16) + (32 + 16))
    assert row["nonlinear"] == 2 * 2 * steps * 3 * 16        # 2 sigmoids and a tanh a unit
    assert row["weight_read"] == steps * sum(p.numel() for p in gru.parameters())
    assert prof.uncosted == []
