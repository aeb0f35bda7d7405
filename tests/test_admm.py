"""ADMM crossbar-aware block pruning (arXiv 1908.11691) and the masked mapping (cimsim.mappers.admm)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from cimsim.mappers import admm
from cimsim.packed import PackedTile


def test_blocks_follow_the_architectures_array():
    assert admm.ADMMConfig.from_arch(cimsim.arch.get("isaac"), 8) == admm.ADMMConfig(128, 16, 8.0, 16)  # 8 slices
    assert admm.ADMMConfig.from_arch(cimsim.arch.get("isaac", rows=32, cols=32, weight_bits=8), 4).block_outputs == 8
    assert admm.ADMMConfig.from_arch(cimsim.arch.get("sme"), 2).block_outputs == 9     # 14 columns per weight
    with pytest.raises(ConfigError, match="compression"):
        admm.ADMMConfig(4, 2, 0.5, 8)


def test_the_block_mask_keeps_the_largest_whole_blocks():
    """8 outputs x 12 inputs in blocks of 2 outputs x 4 inputs: 4 x 3 = 12 blocks of 8 weights. Compression 4 keeps
    24 weights: the 3 blocks of largest norm."""
    w = torch.ones(8, 12) * 0.01
    w[0:2, 4:8] = 1.0
    w[6:8, 0:4] = -2.0
    w[2:4, 8:12] = 0.5
    m = admm.block_mask(w, admm.ADMMConfig(4, 2, 4.0, 8))
    expect = torch.zeros(8, 12)
    expect[0:2, 4:8] = expect[6:8, 0:4] = expect[2:4, 8:12] = 1
    assert torch.equal(m, expect)
    p = admm.project(w, admm.ADMMConfig(4, 2, 4.0, 3))        # 3-bit grid: levels -3 .. 3 per output channel
    assert torch.equal(p != 0, expect.bool())
    scale = p.abs().amax(dim=1, keepdim=True) / 3
    ratio = torch.where(scale > 0, p / scale, torch.zeros_like(p))
    assert torch.allclose(ratio, ratio.round(), atol=1e-6)
    # a block at the edge is smaller: 5 outputs in blocks of 2 leave a 1-output block
    assert admm.block_mask(torch.ones(5, 4), admm.ADMMConfig(4, 2, 5.0, 8)).sum() == 8


def test_the_masked_mapping_allocates_only_non_zero_blocks_and_is_exact():
    """ISAAC with an ideal cell and a full-range 8-bit ADC is lossless at 4-bit weights, 2-bit cells, 16-bit ADC...:
    the masked network equals the quantized network bit for bit; the arrays are the non-zero blocks."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 40), nn.ReLU(), nn.Linear(40, 10)).eval()
    arch = cimsim.arch.get("isaac", cell="ideal", rows=16, cols=16, weight_bits=4, input_bits=4, cell_bits=2,
                           adc_bits=12, adc_range="full")
    cfg = admm.ADMMConfig.from_arch(arch, 4.0)
    assert (cfg.block_rows, cfg.block_outputs) == (16, 8)
    with torch.no_grad():
        net[1].weight.mul_(admm.block_mask(net[1].weight, cfg))     # 5 x 4 blocks: keep 5 of 20
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    mapped = cimsim.map(net, arch, calibration=x, seed=0, progress=False)
    layer = mapped.mapped_layers["1"]
    assert isinstance(layer.crossbars[0], PackedTile)
    assert layer.layout_counts == {"xbars_dense": 20, "xbars_masked": 5} and layer.plan.arrays == 5
    assert not isinstance(mapped.mapped_layers["3"].crossbars[0], PackedTile)       # dense layer: a Crossbar
    assert torch.equal(mapped(x), mapped.set_mode("digital")(x))
    rep = mapped.set_mode("analog").evaluate([(x, torch.zeros(6, dtype=torch.long))], progress=False)
    rows = {r["name"]: r for r in rep.layers}
    assert (rows["1"]["xbars_dense"], rows["1"]["arrays"]) == (20, 5)
    assert rows["3"]["xbars_dense"] == rows["3"]["xbars_masked"] == rows["3"]["arrays"] == 6     # left dense: 3 x 2
    assert rows["2"]["xbars_dense"] == 0                                                          # the ReLU


def test_the_allocation_prunes_convolutions_less_than_fully_connected_layers():
    """LeNet-5 (conv 150, conv 2400, fc 48000, fc 10080, fc 840 weights; first and last dense) at 17.7x: the kept
    weights add up to the target, and each pruned layer keeps in proportion to SHARE_CONV (conv) x size ** 1/4."""
    model = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5), nn.Flatten(), nn.Linear(400, 120),
                          nn.Linear(120, 84), nn.Linear(84, 10))
    cfg = admm.ADMMConfig(32, 4, 17.7, 16)
    layers = admm._layers(model, cfg)
    assert list(layers) == ["1", "3", "4"]
    comp = admm.layer_compression(model, layers, cfg)
    sizes = {"1": 2400, "3": 48000, "4": 10080}
    kept = {n: sizes[n] / comp[n] for n in sizes}
    assert sum(kept.values()) + 150 + 840 == pytest.approx(61470 / 17.7)
    share = {"1": admm.SHARE_CONV * 2400 ** 0.25, "3": 48000 ** 0.25, "4": 10080 ** 0.25}
    for n in sizes:
        assert kept[n] / kept["3"] == pytest.approx(share[n] / share["3"])
    assert comp["1"] == pytest.approx(2.6806, abs=1e-4) and comp["3"] == pytest.approx(50.703, abs=1e-3)
    # at 4x the convolution's share exceeds its size: it stays dense and the rest goes to the FC layers
    comp4 = admm.layer_compression(model, layers, replace(cfg, compression=4))
    assert comp4["1"] == 1.0 and 2400 + sum(sizes[n] / comp4[n] for n in ("3", "4")) + 990 == pytest.approx(61470 / 4)


def test_admm_prunes_to_the_target_and_retrains():
    """A separable 4-class task, a 32-64-32-4 MLP (4224 weights). The first and last layers stay dense (2176
    weights), so 1.5x in all leaves 2816 - 2176 = 640 weights to the middle layer: 20 of its 64 blocks of 8 inputs
    x 4 outputs, whole; the accuracy survives the retraining."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 32, generator=g) * 2

    def split(n):
        y = torch.randint(0, 4, (n,), generator=g)
        return centers[y] + torch.randn(n, 32, generator=g), y
    (xtr, ytr), (xte, yte) = split(1000), split(400)
    data = SimpleNamespace(x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for _ in range(5):
        for i in range(0, 1000, 100):
            loss = nn.functional.cross_entropy(net(xtr[i:i + 100]), ytr[i:i + 100])
            opt.zero_grad()
            loss.backward()
            opt.step()
    cfg = admm.ADMMConfig(8, 4, 1.5, 8)
    pruned, info = admm.admm_prune(net, cfg, data, admm.ADMMRecipe(admm_epochs=2, retrain_epochs=2, batch_size=100),
                                   progress=False)
    w = pruned[2].weight.detach()
    assert info["layer_compression"] == {"2": pytest.approx(2048 / 640)}
    assert torch.equal(w != 0, admm.block_mask(w, replace(cfg, compression=3.2)).bool() & (w != 0))   # whole blocks
    assert [info["layers"][n]["kept"] for n in ("0", "2", "4")] == [2048, 640, 128]
    assert info["compression"] == pytest.approx(1.5) and not info["layers"]["0"]["pruned"]
    assert info["test_accuracy_before"] > 0.95 and info["test_accuracy"] >= info["test_accuracy_before"] - 0.03
    assert net[2].weight.count_nonzero() == 64 * 32                                   # the caller's model untouched
    with pytest.raises(ConfigError, match="out of reach"):
        admm.admm_prune(net, admm.ADMMConfig(8, 4, 2.0, 8), data)


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.attn, self.head = nn.Linear(8, 32), nn.MultiheadAttention(32, 4, batch_first=True), \
            nn.Linear(32, 4)

    def forward(self, x):   # (B, 32) -> 4 tokens of 8
        h = self.embed(x.reshape(x.shape[0], 4, 8))
        return self.head(self.attn(h, h, h, need_weights=False)[0].mean(1))


def test_admm_prunes_attention_projections_as_mapped_and_returns_torchs_attention():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(200, 32, generator=g), torch.randint(0, 4, (200,), generator=g)
    data = SimpleNamespace(x_train=x, y_train=y, x_test=x[:50], y_test=y[:50])
    torch.manual_seed(0)
    net = _Attention()
    cfg = admm.ADMMConfig(8, 4, 1.5, 8)
    pruned, info = admm.admm_prune(net, cfg, data, admm.ADMMRecipe(admm_epochs=1, retrain_epochs=1, batch_size=100),
                                   progress=False)
    projections = {f"attn.{p}_proj" for p in ("q", "k", "v", "out")}
    assert set(info["layer_compression"]) == projections        # the first and last layers stay dense
    assert pruned.state_dict().keys() == net.state_dict().keys()   # packed again: torch's names
    q = pruned.attn.in_proj_weight.detach()[:32]                      # the query projection's rows, pruned in blocks
    assert torch.equal(q != 0, admm.block_mask(q, replace(cfg, compression=info["layer_compression"]["attn.q_proj"]))
                       .bool() & (q != 0))
    kept = sum(info["layers"][n]["kept"] for n in projections)
    assert kept < 4 * 32 * 32 and info["compression"] == pytest.approx(1.5, rel=0.02)


def test_cli_finetune_admm_saves_a_checkpoint_that_run_maps(capsys, tmp_path):
    from _cli_helpers import assert_one_line_user_error, run_cli

    out = tmp_path / "lenet5-admm.pt"
    code, text, err = run_cli(capsys, "finetune", "--method", "admm", "--arch", "isaac", "--set", "rows=32",
                              "--set", "cols=32", "--model", "lenet5", "--dataset", "fashion-mnist", "--compression",
                              "4", "--epochs", "1", "--limit", "256", "--test-limit", "200", "--out", out)
    assert code == 0, err
    assert "ADMM blocks of 32 inputs x 4 outputs" in text and out.exists()
    from cimsim.workloads import train
    model, meta = train.load_checkpoint(out)
    assert meta["compression"] >= 3.5
    assert meta["layers"]["classifier.1"]["compression"] >= 3.9      # 400 x 120: 4x by whole blocks
    code, _, err = run_cli(capsys, "finetune", "--model", "lenet5", "--compression", "4")
    assert_one_line_user_error(code, err, "--compression is a knob of ADMM pruning")
    code, _, err = run_cli(capsys, "finetune", "--method", "admm", "--model", "lenet5")
    assert_one_line_user_error(code, err, "--method admm needs --compression")
    code, _, err = run_cli(capsys, "finetune", "--method", "admm", "--model", "lenet5", "--compression", "4",
                           "--distill", "0.5")       # refused, not ignored
    assert_one_line_user_error(code, err, "--distill: an option of the partial-sum fine-tune (--method psq), not of "
                               "ADMM pruning; leave it out")
    code, _, err = run_cli(capsys, "finetune", "--method", "admm", "--model", "lenet5", "--compression", "4",
                           "--schedule", "direct")
    assert_one_line_user_error(code, err, "--schedule: an option of the hardware-aware fine-tunes (hcim, adcless-snn), not of ADMM")
