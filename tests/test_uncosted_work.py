"""Work the mapper does not place on crossbars is never left out of the costs silently: each case is named in one
warning line that says it is not costed, attributed to the user's call, and listed in the calibration info."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.mappers.mapper import KeptDigitalWarning, UncostedWorkWarning


class BareParameter(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(64, 16) * 0.1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(torch.relu(x @ self.w))


class FunctionalWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.fc = nn.Linear(64, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(torch.relu(F.linear(x, self.l1.weight)))


class Recurrent(nn.Module):
    def __init__(self, proj_size=0):
        super().__init__()
        self.rnn = nn.LSTM(8, 16, batch_first=True, proj_size=proj_size)
        self.fc = nn.Linear(proj_size or 16, 4)

    def forward(self, x):
        return self.fc(self.rnn(x.reshape(-1, 8, 8))[0][:, -1])


class Embedded(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.fc = nn.Embedding(16, 4), nn.Linear(64 * 4, 4)

    def forward(self, x):
        return self.fc(self.emb((x.abs() * 15).long().clamp(max=15)).flatten(1))


class LogGamma(nn.Module):
    """A forward calling a torch function no cost rule knows (the log-gamma function)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 4)

    def forward(self, x):
        return self.fc(torch.lgamma(x))


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.fc = nn.Linear(64, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.l1(x)))


def _map(model):
    torch.manual_seed(0)
    arch = cimsim.arch.get("isaac", cell="ideal", weight_bits=8, input_bits=8)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        mapped = cimsim.map(model, arch, calibration=torch.rand(8, 64), backend="count", progress=False)
    return mapped, [w for w in rec if issubclass(w.category, (KeptDigitalWarning, UncostedWorkWarning))]


@pytest.mark.parametrize("net, category, name, uncosted", [
    (lambda: Recurrent(proj_size=4), KeptDigitalWarning, "rnn (LSTM", ["rnn"]),   # projections: no rule
    (LogGamma, UncostedWorkWarning,
     "LogGamma.lgamma() (torch function lgamma called in LogGamma's forward: no cost model)",
     ["LogGamma.lgamma()"]),
])
def test_work_outside_the_crossbars_is_named_in_one_line_as_not_costed(net, category, name, uncosted):
    mapped, warned = _map(net())
    assert len(warned) == 1 and warned[0].category is category
    text = str(warned[0].message)
    assert "\n" not in text and name in text and "NOT costed" in text
    assert warned[0].filename == __file__     # the user's call, not torch's decorator
    assert mapped.calibration_info["uncosted_layers"] == uncosted
    assert list(mapped.mapped_layers) == ["fc"]


@pytest.mark.parametrize("net, name, row, macs", [
    (BareParameter, "w (a parameter used in BareParameter's forward, not by a layer: computed and costed as digital "
     "work)", "BareParameter.matmul()", 64 * 16),
    (FunctionalWeight, "l1 (never called through its forward", "FunctionalWeight.linear()", 64 * 16),
])
def test_work_with_a_layers_weight_outside_it_is_costed_as_digital_work_and_named(net, name, row, macs):
    mapped, warned = _map(net())
    assert len(warned) == 1 and warned[0].category is KeptDigitalWarning
    text = str(warned[0].message)
    assert name in text and "NOT costed" not in text and warned[0].filename == __file__
    assert mapped.calibration_info["uncosted_layers"] == []
    report = mapped.evaluate([(torch.rand(4, 64), torch.zeros(4, dtype=torch.int64))])
    events = report.config["ledger"][row]
    assert events["mac"] == macs and events["weight_read"] == 64 * 16   # one example's product with the parameter
    assert {r["name"]: r["energy_j"] for r in report.layers}[row] > 0


def test_an_embedding_is_a_costed_table_look_up():
    mapped, warned = _map(Embedded())
    assert warned == [] and mapped.calibration_info["uncosted_layers"] == []
    report = mapped.evaluate([(torch.rand(4, 64), torch.zeros(4, dtype=torch.int64))])
    assert report.config["ledger"]["emb"] == {"weight_read": 64 * 4, "act_write": 64 * 4}


def test_a_network_of_mapped_layers_warns_nothing_and_lists_nothing_uncosted():
    mapped, warned = _map(Plain())
    assert warned == []
    assert mapped.calibration_info["uncosted_layers"] == []
    assert list(mapped.mapped_layers) == ["l1", "fc"]


def test_the_report_table_says_what_it_left_out():
    mapped, _ = _map(LogGamma())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = mapped.evaluate([(torch.rand(4, 64), torch.zeros(4, dtype=torch.int64))])
    assert ("    not costed          LogGamma.lgamma() (their work is left out of energy and latency)"
            in report.table())
    plain, _ = _map(Plain())
    assert "not costed" not in plain.evaluate([(torch.rand(4, 64), torch.zeros(4, dtype=torch.int64))]).table()


class ReadsMetadata(nn.Module):
    """A forward that reads its layers' weights' metadata (dtype, shape, numel) but computes only through them."""

    def __init__(self):
        super().__init__()
        self.bn, self.fc = nn.BatchNorm1d(64), nn.Linear(64, 10)
        self.dtype, self.width = None, None

    def forward(self, x):
        x = x.to(self.bn.weight.dtype)
        assert self.bn.weight.shape[0] == 64 and self.bn.weight.numel() == 64
        return self.fc(self.bn(x))


def test_reading_a_layers_metadata_is_no_uncosted_work():
    mapped, warned = _map(ReadsMetadata())
    assert warned == [] and mapped.calibration_info["uncosted_layers"] == []


def test_the_report_table_says_how_many_macs_ran_off_the_crossbars():
    mapped, _ = _map(BareParameter())
    report = mapped.evaluate([(torch.rand(4, 64), torch.zeros(4, dtype=torch.int64))])
    # x @ w: 64 x 16 products digitally; fc: 16 x 4 on the crossbars
    assert "    digital MACs        1,024 of 1,088 run digitally, off the crossbars" in report.table()
    plain, _ = _map(Plain())
    assert "digital MACs" not in plain.evaluate([(torch.rand(4, 64), torch.zeros(4, dtype=torch.int64))]).table()


def test_a_recurrent_layer_is_kept_digital_and_costed_step_by_step():
    mapped, warned = _map(Recurrent())
    assert len(warned) == 1 and warned[0].category is KeptDigitalWarning
    assert "rnn (LSTM" in str(warned[0].message) and "NOT costed" not in str(warned[0].message)
    assert mapped.calibration_info["uncosted_layers"] == []
    report = mapped.evaluate([(torch.rand(4, 64), torch.zeros(4, dtype=torch.int64))])
    # 8 steps of 4 gates x 16 units over 8 inputs and 16 hidden values; 5 sigmoid/tanh evaluations a unit and step
    assert report.config["ledger"]["rnn"]["mac"] == 8 * 4 * 16 * (8 + 16)
    assert report.config["ledger"]["rnn"]["nonlinear"] == 8 * 5 * 16
