"""The CPU fine-tune's decisions summed in one pass (mappers/qat_ops.py DecisionSum, cimsim/kernels_psq.py): the
eager ScaledDecision's (and, with learned thresholds, ThresholdDecision's) elementwise values and gradient of the
partial sums bit for bit, their sums (the output, the column scales' and thresholds' gradients) within float rounding,
the same numbers on any number of threads, and a whole PSQ network's outputs and gradients as the eager path gives
them."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from cimsim.kernels_psq import BLOCK
from cimsim.mappers import qat, qat_ops
from tests._hcim_nets import inputs, small_model


def case(T, M, S, O, per_cycle, dtype, seed=0):
    """Partial sums on a half-integer grid (so some sit exactly on the thresholds +-0.5 alpha and on |u| = 1),
    column scales, the cycles' and slices' place values, the output's gradient."""
    g = torch.Generator().manual_seed(seed)
    ps = torch.randint(-12, 13, (T * M, S * O), generator=g).to(dtype) / 2
    alpha = torch.randint(1, 5, (T if per_cycle else 1, 1, S, O), generator=g).to(dtype) / 2
    alpha[..., 0] = 1.0     # output 0: u = ps, on both boundaries
    coef = (2.0 ** torch.arange(T, dtype=dtype))[:, None, None, None] * (2.0 ** torch.arange(S, dtype=dtype))[
        None, None, :, None]
    gy = torch.randn(M, O, generator=g, dtype=torch.float64).to(dtype)
    return ps, alpha, coef, gy


MIN_WIDTH = 2.0 ** -6   # half a step of a 5-bit threshold grid (qat's default)


def run(fn, ps, alpha, coef, gy, readout, threshold=0.5, t=None):
    """(output, gradient of ps, of alpha[, of t]) of ``fn`` (:func:`fused` or :func:`eager`)."""
    ps, alpha = ps.clone().requires_grad_(True), alpha.clone().requires_grad_(True)
    t = None if t is None else t.clone().requires_grad_(True)
    gs = 1.0 / math.sqrt(ps.shape[0])
    y = fn(ps, alpha, coef, readout, threshold, gs, t)
    y.backward(gy)
    return (y.detach(), ps.grad, alpha.grad) + (() if t is None else (t.grad,))


def fused(ps, alpha, coef, readout, threshold, gs, t=None):
    return qat_ops.DecisionSum.apply(ps, alpha, t, coef, readout, threshold, gs, MIN_WIDTH)


def eager(ps, alpha, coef, readout, threshold, gs, t=None):
    T, S, O = coef.shape[0], alpha.shape[2], alpha.shape[3]
    if t is not None:
        return qat_ops.ThresholdDecision.apply(ps.reshape(T, -1, S, O), alpha, t, coef, gs, MIN_WIDTH).sum(dim=(0, 2))
    return qat_ops.ScaledDecision.apply(ps.reshape(T, -1, S, O), alpha, coef, readout, threshold, gs).sum(dim=(0, 2))


@pytest.mark.parametrize("readout", ["ternary", "binary"])
@pytest.mark.parametrize("per_cycle", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_decisions_equal_the_eager_ones(readout, per_cycle, dtype):
    T, M, S, O = 4, 37, 3, 5
    ps, alpha, coef, gy = case(T, M, S, O, per_cycle, dtype)
    y0, gp0, ga0 = run(eager, ps, alpha, coef, gy, readout)
    y1, gp1, ga1 = run(fused, ps, alpha, coef, gy, readout)
    u = (ps.reshape(T, M, S, O) / alpha)
    assert bool((u == 0.5).any()) and bool((u.abs() == 1).any())   # the boundaries are in the case
    assert y1.shape == (M, O) and y1.dtype == dtype and gp1.shape == ps.shape and ga1.shape == alpha.shape
    assert torch.equal(gp1, gp0)                      # elementwise: bit for bit
    # the sums: every term a multiple of alpha x 2**k, so these small sums are exact in any order
    assert torch.equal(y1, y0)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    assert torch.allclose(ga1, ga0, rtol=tol, atol=tol * float(ga0.abs().max()))
    assert float(ga0.abs().max()) > 0


@pytest.mark.parametrize("per_cycle", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_learned_thresholds_equal_the_eager_ones(per_cycle, dtype):
    """Learned thresholds on their 5-bit grid, 0 and 31/32 among them (where the dither's width is clipped to
    MIN_WIDTH): ThresholdDecision's outputs and PS gradient bit for bit, its alpha and threshold gradients within
    rounding."""
    T, M, S, O = 3, 41, 2, 5
    ps, alpha, coef, gy = case(T, M, S, O, per_cycle, dtype, seed=4)
    g = torch.Generator().manual_seed(9)
    t = torch.randint(0, 32, alpha.shape, generator=g).to(dtype) / 32
    t.view(-1)[:2] = torch.tensor([0.0, 31 / 32], dtype=dtype)
    y0, gp0, ga0, gt0 = run(eager, ps, alpha, coef, gy, "ternary", t=t)
    y1, gp1, ga1, gt1 = run(fused, ps, alpha, coef, gy, "ternary", t=t)
    assert torch.equal(y1, y0) and torch.equal(gp1, gp0)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    for a, b in ((ga1, ga0), (gt1, gt0)):
        assert a.shape == b.shape and float(b.abs().max()) > 0
        assert torch.allclose(a, b, rtol=tol, atol=tol * float(b.abs().max()))
    # at 0.5 everywhere the thresholds' decisions are the fixed threshold's, through either Function
    half = torch.full_like(t, 0.5)
    assert torch.equal(run(fused, ps, alpha, coef, gy, "ternary", t=half)[0], run(fused, ps, alpha, coef, gy,
                                                                                   "ternary")[0])


def test_fused_decisions_on_real_valued_sums_within_rounding():
    """Off the grid (real-valued partial sums and scales) the sums differ from eager torch's by float rounding only."""
    T, M, S, O = 4, 300, 4, 6
    g = torch.Generator().manual_seed(5)
    ps = torch.randn(T * M, S * O, generator=g) * 3
    alpha = torch.rand(1, 1, S, O, generator=g) + 0.5
    _, _, coef, gy = case(T, M, S, O, False, torch.float32)
    y0, gp0, ga0 = run(eager, ps, alpha, coef, gy, "ternary")
    y1, gp1, ga1 = run(fused, ps, alpha, coef, gy, "ternary")
    assert torch.equal(gp1, gp0)
    scale = float((alpha * coef).abs().sum())                 # bound on any output's terms' magnitudes
    assert float((y1 - y0).abs().max()) <= 64 * 2 ** -24 * scale
    assert torch.allclose(ga1, ga0, rtol=1e-5, atol=1e-5 * float(ga0.abs().max()))
    assert not torch.equal(y1, torch.zeros_like(y1))


def test_blocks_and_threads_do_not_change_the_numbers():
    """Positions in blocks of BLOCK (three here, the last one short): the same outputs and gradients, bit for bit,
    on one thread and on three."""
    T, M, S, O = 2, 2 * BLOCK + 7, 2, 3
    g = torch.Generator().manual_seed(2)
    ps = torch.randn(T * M, S * O, generator=g)
    alpha = torch.rand(T, 1, S, O, generator=g) + 0.5
    _, _, coef, gy = case(T, M, S, O, True, torch.float32, seed=2)
    before = torch.get_num_threads()
    try:
        out = []
        for n in (1, 3):
            torch.set_num_threads(n)
            out.append(run(fused, ps, alpha, coef, gy, "ternary"))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*out):
        assert torch.equal(a, b)
    y0, gp0, ga0 = run(eager, ps, alpha, coef, gy, "ternary")
    assert torch.equal(out[0][1], gp0)
    assert torch.allclose(out[0][0], y0, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("cycle_scales", [False, True])
@pytest.mark.parametrize("learn_thresholds", [False, True])
def test_a_psq_network_trains_the_same_through_either_path(monkeypatch, cycle_scales, learn_thresholds):
    """A small HCiM network (float64): outputs equal and every parameter's gradient within float64 rounding, with the
    fused decisions and with eager torch's."""
    x, y = inputs(), torch.arange(6) % 7
    cfg = qat.PSQConfig(rows=16, cycle_scales=cycle_scales, learn_thresholds=learn_thresholds)
    nets = []
    for fused in (True, False):
        monkeypatch.setattr(qat_ops, "FUSED_CPU_DECISIONS", fused)
        psq = qat.prepare(small_model(), cfg, [x]).train()
        out = psq(x)
        nn.functional.cross_entropy(out, y).backward()
        nets.append((out.detach(), {n: p.grad for n, p in psq.named_parameters()}))
    (o0, g0), (o1, g1) = nets
    assert torch.allclose(o0, o1, rtol=1e-12, atol=1e-12)
    assert set(g0) == set(g1) and any("psq_alpha" in n for n in g0)
    assert any("psq_threshold" in n for n in g0) == learn_thresholds
    for n in g0:
        assert torch.allclose(g0[n], g1[n], rtol=1e-9, atol=1e-12 * max(1.0, float(g1[n].abs().max()))), n
        assert np.isfinite(g0[n].numpy()).all()


def test_the_eager_path_stays_where_the_kernel_does_not_apply(monkeypatch):
    """Non-contiguous partial sums, or the switch off: ScaledDecision in eager torch (the same numbers)."""
    calls = []
    original = qat_ops.DecisionSum.apply
    monkeypatch.setattr(qat_ops.DecisionSum, "apply", lambda *a: calls.append(1) or original(*a))
    ps, alpha, coef, gy = case(2, 5, 2, 3, False, torch.float32)
    qat_ops.decision_sum(ps, alpha, coef, "ternary", 0.5, 1.0)
    assert calls == [1]
    qat_ops.decision_sum(ps.t().contiguous().t(), alpha, coef, "ternary", 0.5, 1.0)
    monkeypatch.setattr(qat_ops, "FUSED_CPU_DECISIONS", False)
    y = qat_ops.decision_sum(ps, alpha, coef, "ternary", 0.5, 1.0)
    assert calls == [1]
    assert torch.equal(y, eager(ps, alpha, coef, "ternary", 0.5, 1.0))


@pytest.mark.parametrize("dtype, T", [(torch.float32, 8), (torch.float32, 16), (torch.float64, 4)])
def test_the_inputs_straight_through_term_carried_by_the_pass_is_the_eager_sum(monkeypatch, dtype, T):
    """``decision_sum(..., ste=(z, shares))`` on the CPU (the one pass's backward forms ``sum_t shares_t
    grad_ps_t`` cycle after cycle) against the term added in eager torch before the pass (a broadcast product and
    its reduction over cycles): the outputs, the partial sums' and the term's gradients bit for bit; and the eager
    fallback (``FUSED_CPU_DECISIONS = False``) takes the same ``ste`` argument to the same numbers."""
    rng = np.random.default_rng(T)
    M, S, O = 700, 4, 12
    ps0 = torch.as_tensor(np.round(rng.normal(0, 3, size=(T * M, S * O))), dtype=dtype)
    alpha = torch.as_tensor(rng.uniform(0.5, 1.5, size=(1, 1, S, O)), dtype=dtype)
    coef = torch.as_tensor(rng.uniform(0.1, 1, size=(T, 1, S, 1)), dtype=dtype)
    shares = torch.as_tensor(rng.uniform(0, 1, size=T), dtype=dtype)
    g = torch.as_tensor(rng.normal(size=(M, O)), dtype=dtype)

    def run(mode):
        ps = ps0.clone().requires_grad_(True)
        z = torch.zeros(M, S * O, dtype=dtype, requires_grad=True)
        if mode == "added":
            pt = (ps.reshape(T, -1, S * O) + shares[:, None, None] * z[None]).reshape(ps.shape)
            y = qat_ops.decision_sum(pt, alpha, coef, "ternary", 0.5, 1.0)
        else:
            y = qat_ops.decision_sum(ps, alpha, coef, "ternary", 0.5, 1.0, ste=(z, shares))
        y.backward(g)
        return y.detach(), ps.grad, z.grad

    carried, added = run("carried"), run("added")
    assert float(carried[2].abs().max()) > 0
    for a, b in zip(carried, added):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    monkeypatch.setattr(qat_ops, "FUSED_CPU_DECISIONS", False)
    torch.testing.assert_close(run("carried")[2], added[2], rtol=0, atol=0)


@pytest.mark.parametrize("bits, dac, signed, dtype", [(4, 1, False, torch.float32), (8, 1, True, torch.float32),
                                                      (5, 2, False, torch.float64), (7, 2, True, torch.float64),
                                                      (8, 3, True, torch.float32)])
def test_stacked_planes_are_the_planes_one_after_another(monkeypatch, bits, dac, signed, dtype):
    """:func:`qat_ops.stacked_planes` (one numba pass on the CPU) against ``torch.cat`` of :func:`qat_ops.bit_planes`
    (floor and remainder a plane): the same values bit for bit, unsigned and two's complement inputs over their whole
    range (a narrower last digit where the DAC's bits do not divide the inputs'), 1 and 3 threads; inputs that
    carry a gradient keep the eager planes (their straight-through terms)."""
    cfg = qat.PSQConfig(input_bits=bits, dac_bits=dac)
    rng = np.random.default_rng(bits * 10 + dac)
    lo, hi = (-2 ** (bits - 1), 2 ** (bits - 1)) if signed else (0, 2 ** bits)
    x = torch.as_tensor(rng.integers(lo, hi, size=(BLOCK + 300, 37)), dtype=dtype)
    x[0, :2] = torch.tensor([lo, hi - 1], dtype=dtype)
    want = torch.cat(qat_ops.bit_planes(x, cfg, signed)[0])
    for threads in (1, 3):
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
        got = qat_ops.stacked_planes(x, cfg, signed)
        assert got.dtype == dtype and got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    xg = x.clone().requires_grad_(True)
    torch.testing.assert_close(qat_ops.stacked_planes(xg, cfg, signed).detach(), want, rtol=0, atol=0)
