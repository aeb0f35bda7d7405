"""The spiking ResNet-20 (snn_resnet20): shape, residual adds of currents, exact mapping every step; the
layer-by-layer progressive schedule of the sense-amp fine-tune; the GPU-ready training loop's draws and budget."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch

import cimsim
from cimsim import augment as augment_mod
from cimsim.mappers import snn_qat
from cimsim.spiking import LIF
from cimsim.workloads import train, zoo
from cimsim.workloads.snn_zoo import SpikingResNet20

sys.path.insert(0, str(Path(__file__).parent))
from test_adcless_snn import data, lossless_baseline, tiny_snn, traces   # noqa: E402


def test_resnet20_has_the_shape_of_resnet20_with_lif_neurons():
    net = zoo.build_for("snn_resnet20", (1, 28, 28), 10)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(isinstance(m, LIF) for m in net.modules()) == 19                 # stem + 2 x 9 blocks
    assert len([c for c in convs if c.kernel_size == (3, 3)]) == 19             # ResNet-20: 19 convs + the fc
    assert [c.stride for c in convs if c.kernel_size == (1, 1)] == [(2, 2)] * 2  # shortcuts where shapes change
    assert sorted({c.out_channels for c in convs}) == [16, 32, 64] and net.time_steps == 10
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def small_resnet(t=2):
    torch.manual_seed(4)
    return SpikingResNet20(1, 8, 5, time_steps=t, widths=(4, 6, 8), blocks_per_stage=1).eval()


def test_ideal_crossbars_equal_the_quantized_resnet_every_time_step_and_only_spikes_drive_the_blocks():
    """The root test on the residual network: spikes and membranes of every LIF at every step equal the quantized
    network's in integer arithmetic; the residual adds currents, so every conv after the stem takes 1-bit rows."""
    net, x = small_resnet(), torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = cimsim.map(net, lossless_baseline(), calibration=x, seed=1, progress=False)
    analog, digital = traces(m.set_mode("analog"), x), traces(m.set_mode("digital"), x)
    assert len(analog) == 2 * 7                                                # 7 LIF layers, 2 steps
    for (n, s1, u1), (_, s2, u2) in zip(analog, digital):
        assert torch.equal(s1, s2) and torch.equal(u1, u2), n
    assert all(float(s.sum()) > 0 for _, s, _ in analog)
    bits = {n: layer.crossbars[0].spec.input_bits for n, layer in m.mapped_layers.items()}
    assert bits.pop("step.conv1") == 8 and bits.pop("step.fc") == 8            # the image; the pooled rates
    assert set(bits.values()) == {1} and len(bits) == 8                        # 6 block convs + 2 shortcuts


def test_progressive_stages_binarize_from_the_input_and_end_like_direct():
    r = snn_qat.SnnFinetuneRecipe(schedule="progressive", stage_share=0.5)
    assert r.stages(100, 5) == [(1, 13), (2, 13), (3, 13), (4, 13), (5, 100)]   # ceil(50 / 4) per stage
    assert snn_qat.SnnFinetuneRecipe(schedule="direct").stages(100, 5) == [(5, 100)]
    assert snn_qat.SnnFinetuneRecipe(stage_share=0).stages(100, 5) == [(5, 100)]
    x, y = data(16)
    ds = SimpleNamespace(x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
    cfg = snn_qat.SAConfig.from_arch(cimsim.arch.get("adcless-snn"))
    seen = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda mod, inp: seen.append(tuple(m.fraction for m in snn_qat.sa_layers(mod).values()))
        if isinstance(mod, type(tiny_snn())) and mod.training else None)
    try:
        metas = {s: snn_qat.finetune(tiny_snn(), cfg, ds, snn_qat.SnnFinetuneRecipe(
            epochs=2, batch_size=4, schedule=s, stage_share=1.0), progress=False)[1] for s in ("direct", "progressive")}
    finally:
        hook.remove()
    assert metas["direct"]["final_phase_steps"] == metas["progressive"]["final_phase_steps"] == 8
    assert metas["progressive"]["stages"] == [[1, 4], [2, 4], [3, 8]] and metas["progressive"]["steps"] == 16
    assert seen[:8] == [(1.0, 1.0, 1.0)] * 8                                    # direct: all binarized
    assert seen[8:] == [(1.0, 0.0, 0.0)] * 4 + [(1.0, 1.0, 0.0)] * 4 + [(1.0, 1.0, 1.0)] * 8


def test_an_epochs_augmentation_drawn_at_once_equals_batch_by_batch():
    r = train.recipe_for("snn_vgg", "fashion-mnist")
    assert r.crop_pad == 2 and r.flip
    x = torch.rand(10, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    one = torch.cat([augment_mod.augment(x[i:i + 4], r, g1) for i in (0, 4, 8)])
    d = augment_mod.epoch_draws([4, 4, 2], r, g2, "cpu")
    assert torch.equal(one, augment_mod.apply(x, r, d)) and not torch.equal(one, x)


def test_time_budget_trains_the_epochs_that_fit():
    res = train.train("mlp", "digits", epochs=3, time_budget=1e-6, progress=False)
    assert res.metadata["epochs"] == 1 and res.metadata["epochs_requested"] == 3
    assert len(res.metadata["history"]) == 1 and "--epochs 1" in res.metadata["command"]
