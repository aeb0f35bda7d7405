"""The default batch size (cimsim.mappers.batching): 64 on the CPU; on a GPU the largest power of two up to 1024 whose
estimated working set fits a quarter of the device's memory, from the network's layer shapes (checked here against a
hand count) and the device's total memory (a stand-in device here: the rule, not a GPU, is under test)."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from cimsim.mappers import batching


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


# conv: 64 positions x (12 B x 9 window inputs + 64 B x 4 channels); linear: 1 x (12 x 256 + 64 x 10) = 3,712 B
CONV_BYTES = 64 * (12 * 9 + 64 * 4)


def test_bytes_per_example_is_the_largest_layers_hand_count():
    assert CONV_BYTES == 23_296
    assert batching.engine_bytes_per_example(small_net(), (1, 8, 8)) == CONV_BYTES


def test_a_layer_called_at_every_time_step_counts_every_call_and_the_network_is_untouched():
    class Stepped(nn.Module):   # a spiking network's shape: one layer called once per time step, with state
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 8)
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x):
            self.calls += 1
            return sum(self.fc(x.flatten(1)) for _ in range(5))

    net = Stepped()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert batching.engine_bytes_per_example(net, (4, 4)) == 5 * (12 * 16 + 64 * 8)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())   # the probe ran on a copy


def test_the_cpu_keeps_64():
    assert batching.default_batch(small_net(), (1, 8, 8), "cpu")[0] == 64


@pytest.mark.parametrize("total,want", [(4 * 1024 * CONV_BYTES, 1024), (4 * 1024 * CONV_BYTES - 1, 512),
                                        (4 * 100 * CONV_BYTES, 64), (4 * CONV_BYTES, 1), (10 ** 12, 1024)])
def test_a_gpu_gets_the_largest_power_of_two_that_fits_a_quarter_of_its_memory(monkeypatch, total, want):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: SimpleNamespace(name="stand-in GPU", total_memory=total))
    batch, how = batching.default_batch(small_net(), (1, 8, 8), "cuda")
    assert batch == want
    assert "stand-in GPU" in how and "per example" in how
