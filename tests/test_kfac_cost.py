"""cimsim.workloads.kfac_cost: the architecture-level cost of K-FAC's second-order step, crossbars vs a GPU."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cimsim.errors import ConfigError
from cimsim.workloads import kfac
from cimsim.workloads import kfac_cost as C

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


def test_layer_shapes_of_a_torch_model_and_the_imagenet_tables():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    s = C.layer_shapes(model, (2, 6, 6))
    assert [(x.a_dim, x.g_dim, x.positions) for x in s] == [(19, 4, 36), (145, 3, 1)]
    assert s[0].macs == 18 * 4 * 36
    vgg, res = C.vgg16_imagenet(), C.resnet18_imagenet()
    assert len(vgg) == 16 and len(res) == 21                 # 13 convs + 3 FCs; 17 convs + 3 shortcuts + FC
    # parameters: VGG-16 138.4 M, ResNet-18 11.7 M (without BatchNorm) (Simonyan & Zisserman 2015; He et al. 2016)
    assert sum(x.a_dim * x.g_dim for x in vgg) == pytest.approx(138.36e6, rel=1e-3)
    assert sum(x.a_dim * x.g_dim for x in res) == pytest.approx(11.68e6, rel=1e-2)
    # MACs per 224 x 224 image: VGG-16 15.5 G, ResNet-18 1.8 G
    assert sum(x.macs for x in vgg) == pytest.approx(15.47e9, rel=0.01)
    assert sum(x.macs for x in res) == pytest.approx(1.81e9, rel=0.02)


def test_replicas_divide_the_time_not_the_energy_and_pipelining_takes_the_max():
    layers = [C.LayerShape("l", 128, 64)]
    one = C.step_cost(layers, 32, C.CrossbarArch(replicas=1, pipelined=False))
    four = C.step_cost(layers, 32, C.CrossbarArch(replicas=4, pipelined=False))
    assert four["crossbar_parts_s"]["precondition"] == pytest.approx(one["crossbar_parts_s"]["precondition"] / 4)
    assert four["crossbar_parts_s"]["inversion"] == pytest.approx(one["crossbar_parts_s"]["inversion"] / 4)
    for part in ("inversion", "precondition"):
        assert four["crossbar_parts_j"][part] == pytest.approx(one["crossbar_parts_j"][part])
    assert four["crossbar_parts_j"]["program"] == pytest.approx(4 * one["crossbar_parts_j"]["program"])
    assert four["array_sets"] == 4 * one["array_sets"] == 4 * 2
    # the preconditioning: a_dim + g_dim vectors of 16 bits at 100 ns per bit
    assert one["crossbar_parts_s"]["precondition"] == pytest.approx((128 + 64) * 16 * 100e-9)
    # pipelined: one right-hand-side step per max(t_inv, t_vmm) (plus the fill), not their sum
    u = C.block_costs(128, 30.0)
    piped = C.step_cost(layers, 32, C.CrossbarArch(replicas=1))
    want = (128 * u["iterations"] * max(u["t_inv_s"], u["t_vmm_s"]) + min(u["t_inv_s"], u["t_vmm_s"])) / 25
    assert piped["crossbar_parts_s"]["inversion"] == pytest.approx(want)
    assert piped["crossbar_parts_s"]["inversion"] < one["crossbar_parts_s"]["inversion"]


def test_unreplicated_sequential_model_is_the_kfac_simulations_accounting():
    # one refresh and one step of the simulated K-FAC (kfac.KFAC, crossbar inversion) against the model with the
    # same organisation (1 replica, no pipelining, layers one after another, a refresh every step): the
    # preconditioning is the same count of the same vectors (exact time), the inversion the same kind of steps
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 4))
    k = kfac.KFAC(model, inversion="crossbar")
    x, y = torch.rand(32, 30), torch.randint(0, 4, (32,))
    k.set_batch(32)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    k.precondition(0.01)
    sim = k.cost_per_step()
    k.close()
    arch = C.CrossbarArch(replicas=1, pipelined=False, layers_parallel=False, inv_every=1)
    mod = C.step_cost(C.layer_shapes(model, (30,)), 32, arch)
    assert mod["crossbar_parts_s"]["precondition"] == pytest.approx(sim["crossbar_parts_s"]["precondition"])
    assert mod["crossbar_parts_j"]["precondition"] == pytest.approx(sim["crossbar_parts_j"]["precondition"], rel=0.2)
    # the inversion: random kappa-30 blocks against the run's damped blocks: the same order (within 4x)
    r = mod["crossbar_parts_s"]["inversion"] / sim["crossbar_parts_s"]["inversion"]
    assert 0.25 <= r <= 4, r


def test_gpu_launch_bound_when_small_flop_bound_when_large():
    gpu = C.GpuSpec()
    assert gpu.time(1e3, 2, 0.5) == pytest.approx(2 * gpu.launch_s)
    assert gpu.time(1e13, 1, 0.5) == pytest.approx(1e13 / (0.5 * gpu.peak_flops))


def test_the_papers_regime_is_whole_factor_inversion_on_the_gpu():
    # VGG-16: on the same 128-blocks the GPU's second-order work is < 1 % of its step and the crossbars save
    # no energy; against K-FAC on whole factors (fc1's A is 25089 wide) they are over 10x faster and 50x leaner
    r = C.step_cost(C.vgg16_imagenet(), 128, C.CrossbarArch(replicas=1))
    assert r["second_order_fraction"] < 0.01 and r["energy_saving_vs_gpu"] < 2
    assert r["speedup_vs_gpu_full"] > 10 and r["energy_saving_vs_gpu_full"] > 50
    assert 0.05 < r["gpu_full_second_order_fraction"] < 0.5
    # and the Amdahl bound: moving only the second-order work cannot speed the whole step beyond 1 / (1 - f)
    assert r["whole_step_speedup"] <= 1 / (1 - r["second_order_fraction"]) + 1e-12


def test_bad_input_is_one_line():
    with pytest.raises(ConfigError, match="replicas"):
        C.CrossbarArch(replicas=0)
    with pytest.raises(ConfigError, match="no Linear"):
        C.step_cost([], 1)
    with pytest.raises(ConfigError, match="batch"):
        C.step_cost([C.LayerShape("l", 4, 4)], 0)
    assert math.isfinite(C.step_cost([C.LayerShape("l", 4, 4)], 1)["speedup_vs_gpu"])


def test_whole_factors_on_one_array_are_the_block_case():
    # every factor of these layers fits one 128-wide array: inverting "whole" factors is the block case, exactly
    layers = [C.LayerShape("a", 65, 32), C.LayerShape("b", 33, 10)]
    r = C.step_cost(layers, 64, C.CrossbarArch(replicas=2))
    assert r["crossbar_full_time_s"] == pytest.approx(r["crossbar_time_s"], rel=1e-12)
    assert r["crossbar_full_energy_j"] == pytest.approx(r["crossbar_energy_j"], rel=1e-12)
    for part in ("inversion", "program", "precondition"):
        assert r["crossbar_full_parts_j"][part] == pytest.approx(r["crossbar_parts_j"][part], rel=1e-12)
    # tiles: per factor and replica one INV array, the residual's and the inverse's VMM tiles
    assert r["full_array_tiles"] == 2 * 4 * 3


def test_whole_factor_units_scale_as_the_tiles():
    # simulated (not extrapolated) at 256 and 512 wide: one right-hand-side step's energy grows about as the VMM
    # tiles (2^2 -> 4^2, x 4; the INV blocks only x 2), and the steps grow slowly with the blocks (24 -> 29)
    u2, u4 = C.factor_costs(256), C.factor_costs(512)
    assert u2["blocks"] == 2 and u4["blocks"] == 4 and u4["measured_width"] == 512
    assert 3.0 <= u4["e_rhs_step_j"] / u2["e_rhs_step_j"] <= 4.4
    assert u2["converged"] and u4["converged"] and u2["iterations"] <= u4["iterations"] <= u2["iterations"] + 10
    # wider: extrapolated, 2 steps per doubling beyond 512
    assert C.factor_costs(2048)["iterations"] == u4["iterations"] + 2 * 2


def test_like_for_like_on_whole_factors_is_fast_but_not_lean():
    # VGG-16, R = 16: the crossbars inverting whole factors (block-diagonal INV arrays inside a whole-factor
    # refinement) against the GPU on whole factors: >100x faster (measured 147x), but every refinement step runs
    # the whole factor through 24-bit VMM tiles, so more energy than the GPU (measured 0.2x)
    r = C.step_cost(C.vgg16_imagenet(), 128, C.CrossbarArch(replicas=16))
    assert r["speedup_full_vs_gpu_full"] > 100 and r["energy_saving_full_vs_gpu_full"] < 0.5
    assert r["crossbar_full_energy_j"] > r["crossbar_energy_j"]
    assert r["full_iterations_max"] <= 45
