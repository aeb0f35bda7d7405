"""HCiM's learn_thresholds: a learned comparator threshold per column scale (arch/hcim.py, mappers/qat_ops.py
ThresholdDecision): the default is unchanged, the surrogate gradient is the derivative of the dithered decision, the
fine-tuning forward equals the engine with non-uniform thresholds, the reference DACs' costs come from the events."""


import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim import events as ev
from cimsim import networks
from cimsim.cli import main
from cimsim.devices.converters import ISAAC_DAC_AREA_M2, ISAAC_DAC_POWER_W, SenseAmp, TernaryReadout
from cimsim.errors import ConfigError
from cimsim.mappers import psq_finetune as ft
from cimsim.mappers import qat, qat_ops
from tests._hcim_nets import inputs, small_model
from tests.test_psq_finetune import tiny


def spread_thresholds(psq, seed=3):
    """Non-uniform learned thresholds: latent values uniform in [0, 0.97), read on the grid by the forward."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in psq.modules():
            if qat.is_psq(m) and not m.psq_adc:
                m.psq_threshold.copy_(0.97 * torch.rand(m.psq_threshold.shape, generator=g, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------ configuration
def test_the_default_keeps_its_name_and_has_no_thresholds():
    a = cimsim.arch.get("hcim")
    assert not a.learn_thresholds and a.threshold_bits == 5
    cfg = qat.PSQConfig.from_arch(a)
    assert cfg.tag == "psq-ternary-w4a4c1d1r128t0.5" and cfg.initial_threshold == 0.5
    # the bits of an unused reference DAC are not part of the configuration (one configuration, one checkpoint name)
    assert qat.PSQConfig(threshold_bits=3) == qat.PSQConfig() == cfg
    assert "reference_dac" not in a.summary()["breakdown"] and ev.REFERENCE_DAC_DRIVES not in a.event_costs()
    assert ev.REFERENCE_DAC_DRIVES not in a.emitted_events()
    psq = qat.prepare(small_model(), cfg, [inputs()])
    assert not [n for n, _ in psq.named_parameters() if "threshold" in n]
    on = qat.PSQConfig.from_arch(cimsim.arch.get("hcim", learn_thresholds=True))
    assert on.tag == "psq-ternary-w4a4c1d1r128t0.5-lt5"
    assert qat.PSQConfig(learn_thresholds=True, threshold_bits=4, cycle_scales=True, adc_layers="last").tag == \
        "psq-ternary-w4a4c1d1r128t0.5-percycle-adc4last-lt4"
    # where the thresholds start: the configured one on the DAC's grid (multiples of 1/32 below 1)
    assert qat.PSQConfig(learn_thresholds=True, threshold=0.3).initial_threshold == 10 / 32
    assert qat.PSQConfig(learn_thresholds=True, threshold=0.999).initial_threshold == 31 / 32
    assert qat.PSQConfig(learn_thresholds=True, threshold=0.0).initial_threshold == 0.0


@pytest.mark.parametrize("fused", [True, False])
def test_uniform_learned_thresholds_at_the_default_give_the_default_forward_and_gradients(monkeypatch, fused):
    """At their start (0.5 everywhere) the learned thresholds give the default network's outputs and its PS, alpha and
    weight gradients bit for bit; only the thresholds' own gradient is new. Both through the CPU's one-pass kernel
    (tests/test_psq_fused.py) and both in eager torch."""
    monkeypatch.setattr(qat_ops, "FUSED_CPU_DECISIONS", fused)
    x, y = inputs(), torch.arange(6) % 7
    nets = []
    for learn in (False, True):
        psq = qat.prepare(small_model(), qat.PSQConfig(rows=16, learn_thresholds=learn), [x]).train()
        out = psq(x)
        nn.functional.cross_entropy(out, y).backward()
        nets.append((out.detach(), {n: p.grad for n, p in psq.named_parameters()}))
    (o0, g0), (o1, g1) = nets
    assert torch.equal(o0, o1)
    assert set(g1) - set(g0) == {"0.psq_threshold", "3.psq_threshold", "6.psq_threshold"}
    for n in g0:
        assert torch.equal(g0[n], g1[n]), n
    assert all(float(g1[n].abs().sum()) > 0 for n in set(g1) - set(g0))


@pytest.mark.parametrize("bad, match", [({"learn_thresholds": "yes"}, "learn_thresholds"),
                                        ({"learn_thresholds": True, "threshold_bits": 0}, "threshold_bits"),
                                        ({"learn_thresholds": True, "threshold_bits": 2.0}, "threshold_bits"),
                                        ({"learn_thresholds": True, "readout": "binary"}, "ternary")])
def test_bad_configurations_are_refused(bad, match):
    with pytest.raises(ConfigError, match=match):
        qat.PSQConfig(**bad)


@pytest.mark.parametrize("sets, needle", [(["learn_thresholds=maybe"], "learn_thresholds"),
                                          (["learn_thresholds=true", "readout=binary"], "learn_thresholds"),
                                          (["threshold_bits=0"], "threshold_bits"),
                                          (["reference_hold_s=-1"], "reference_hold_s")])
def test_bad_values_on_the_cli_are_one_line_errors(capsys, sets, needle):
    assert main(["archs", "show", "hcim", *[a for s in sets for a in ("--set", s)]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


# ------------------------------------------------------------------------------------------------ the surrogate
def test_grid_thresholds_are_the_dacs_levels_with_a_straight_through_gradient():
    t = torch.tensor([-0.2, 0.0, 0.01, 0.3, 0.5, 0.515625, 0.98, 1.4], requires_grad=True)
    q = qat.grid_thresholds(t, 5)
    assert q.tolist() == [0.0, 0.0, 0.0, 10 / 32, 0.5, 0.5, 31 / 32, 31 / 32]   # 16.5 -> 16: half to even
    q.sum().backward()
    assert torch.equal(t.grad, torch.ones(8))


def test_threshold_gradient_is_the_derivative_of_the_dithered_decision():
    """ThresholdDecision's gradient of t equals the finite difference of the hard decision averaged over a uniform
    dither of the threshold, e ~ U(-w, w) with w = min(t, 1 - t) (a fine midpoint grid of e)."""
    alpha, coef = 2.0, 3.0
    # |u| = |ps| / alpha at least h from every kink of the dithered decision (|u| = t +- w)
    ps = torch.tensor([0.1, 0.55, 0.9, 1.0, 1.3, 1.9, -0.6, -1.05, -1.4, -1.8, 2.6, -2.8], dtype=torch.float64)
    g = torch.tensor([1.0, -2.0, 0.5, 1.5, -1.5, 2.0, 1.0, -0.5, 2.5, 1.0, 3.0, -1.0], dtype=torch.float64)
    u = ps / alpha
    for t0 in (0.3, 0.5, 0.7):
        w = min(t0, 1 - t0)
        t = torch.tensor([t0], dtype=torch.float64, requires_grad=True)
        a = torch.tensor([alpha], dtype=torch.float64, requires_grad=True)
        q = qat.ThresholdDecision.apply(ps, a, t, torch.tensor(coef, dtype=torch.float64), 1.0, 2.0 ** -6)
        assert torch.equal(q.detach(), coef * alpha * ((u > t0).double() - (u < -t0).double()))
        (g * q).sum().backward()
        n = 200_000
        e = (torch.arange(n, dtype=torch.float64) + 0.5) / n * 2 * w - w       # midpoints of U(-w, w)

        def dithered(tt):
            d = (u[:, None] > tt + e).double() - (u[:, None] < -(tt + e)).double()
            return float((g * coef * alpha * d.mean(dim=1)).sum())

        h = 0.02       # the dithered decision is linear in t within h of t0 here: the difference is its slope
        fd = (dithered(t0 + h) - dithered(t0 - h)) / (2 * h)
        assert abs(fd) > 1 and float(t.grad) == pytest.approx(fd, abs=0.03)   # grid of e: 2 / n / (2 h) x sum|g c a|
    # at t = 0.5 the PS and alpha gradients are LSQ's, as the default decision's
    ps2 = ps.clone().requires_grad_(True)
    a1 = torch.tensor([alpha], dtype=torch.float64, requires_grad=True)
    a2 = a1.detach().clone().requires_grad_(True)
    c = torch.tensor(coef, dtype=torch.float64)
    (g * qat.ThresholdDecision.apply(ps2, a1, torch.tensor([0.5], dtype=torch.float64), c, 0.25, 2.0 ** -6)).sum() \
        .backward()
    ps3 = ps.clone().requires_grad_(True)
    (g * qat.ScaledDecision.apply(ps3, a2, c, "ternary", 0.5, 0.25)).sum().backward()
    assert torch.equal(ps2.grad, ps3.grad) and torch.equal(a1.grad, a2.grad)


def test_threshold_gradient_points_where_the_loss_falls():
    """A loss that wants zero outputs raises the threshold of decisions just above it (they become zeros) and
    lowers it where it wants them +-1; one step along the negative gradient does it."""
    ps = torch.tensor([[1.1, 1.2], [-1.15, -1.05]], dtype=torch.float64)     # u = 0.55..0.6 above t = 0.5
    alpha = torch.tensor([[2.0, 2.0]], dtype=torch.float64)
    t = torch.full((1, 2), 0.5, dtype=torch.float64, requires_grad=True)
    q = qat.ThresholdDecision.apply(ps, alpha, t, torch.tensor(1.0, dtype=torch.float64), 1.0, 2.0 ** -6)
    (q ** 2).sum().backward()                   # wants q = 0
    assert (t.grad < 0).all()                   # so t rises
    t2 = (t - 0.1 * t.grad.sign()).detach()
    assert torch.equal(qat.ThresholdDecision.apply(ps, alpha, t2, torch.tensor(1.0, dtype=torch.float64), 1.0,
                                                   2.0 ** -6), torch.zeros(2, 2, dtype=torch.float64))
    t.grad = None
    q = qat.ThresholdDecision.apply(ps, alpha, t, torch.tensor(1.0, dtype=torch.float64), 1.0, 2.0 ** -6)
    ((q - torch.tensor([[0.0, 0.0], [-2.0, -2.0]], dtype=torch.float64)) ** 2).sum().backward()
    assert torch.equal(t.grad[0] < 0, torch.tensor([True, True]))   # the -1s are wanted: their gradient is zero
    ps_far = torch.tensor([[0.0, 2.4]], dtype=torch.float64)            # u = 0 and 1.2: outside the step's width
    t.grad = None
    (qat.ThresholdDecision.apply(ps_far, alpha, t, torch.tensor(1.0, dtype=torch.float64), 1.0, 2.0 ** -6) ** 2) \
        .sum().backward()
    assert torch.equal(t.grad, torch.zeros(1, 2, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------ the engine
@pytest.mark.parametrize("backend, opts", [("numba", {}), ("torch", {}), ("numba", {"cycle_scales": True}),
                                           ("torch", {"cycle_scales": True}), ("numba", {"adc_layers": "last"})])
def test_learned_thresholds_equal_the_mapped_crossbars(backend, opts):
    """Non-uniform learned thresholds: the fine-tuning forward equals the engine (ideal cells) exactly, and they
    change its outputs against uniform ones."""
    model, x = small_model(), inputs()
    arch = cimsim.arch.get("hcim", cell="ideal", rows=16, learn_thresholds=True, **opts)
    cfg = qat.PSQConfig.from_arch(arch)
    assert cfg.learn_thresholds and cfg.threshold_bits == 5
    psq = qat.prepare(model, cfg, [x])
    with torch.no_grad():
        uniform = psq(x)
    spread_thresholds(psq)
    grid = {n: m.thresholds().detach() for n, m in psq.named_modules() if qat.is_psq(m) and not m.psq_adc}
    for t in grid.values():
        assert len(set(t.reshape(-1).tolist())) > 10 and float(t.min()) >= 0 and float(t.max()) <= 31 / 32
        assert torch.equal(t * 32, torch.round(t * 32))
    with torch.no_grad():
        ref = psq(x)
    assert not torch.equal(ref, uniform)
    mapped = cimsim.map(psq, arch, calibration=x, backend=backend, progress=False)
    np.testing.assert_allclose(mapped(x).numpy(), ref.numpy(), rtol=0, atol=1e-12 * float(ref.abs().max()))
    for n, t in grid.items():
        for xb in mapped.mapped_layers[n].crossbars:
            assert np.array_equal(xb.column_thresholds, t.double().numpy().reshape(xb.column_scales.shape))
    # the mapping must be the fine-tuned one: a network without learned thresholds is refused, and the other way round
    with pytest.raises(ConfigError, match="fine-tuned for"):
        cimsim.map(psq, cimsim.arch.get("hcim", cell="ideal", rows=16, **opts), calibration=x, progress=False)
    plain = qat.prepare(model, qat.PSQConfig.from_arch(cimsim.arch.get("hcim", rows=16, **opts)), [x])
    with pytest.raises(ConfigError, match="-lt5"):
        cimsim.map(plain, arch, calibration=x, progress=False)


def test_crossbar_column_thresholds_by_hand_and_refused_values():
    """A 3-row crossbar pair read at per-column thresholds: the decisions by hand (ideal cells, 1-bit inputs)."""
    W = np.array([[3, 1, -2], [-1, 2, 2], [1, 1, 1]])
    spec = cimsim.CrossbarSpec(rows=3, cols=6, cell=cimsim.devices.IdealCell(), cell_bits=2, weight_bits=3,
                               input_bits=1, dac_bits=1, signed="differential", readout=TernaryReadout(delta=0.5),
                               pair_readout=True)
    scales = np.full((1, 1, 3), 2.0)
    thr = np.array([[[0.9, 0.2, 0.6]]])
    x = np.array([[1, 1, 1], [1, 0, 0], [0, 1, 1]])
    for backend in ("numba", "torch"):
        y = cimsim.Crossbar(W, spec, column_scales=scales, column_thresholds=thr, backend=backend)(x)
        ps = x @ W.T                                       # u = ps / 2 against 0.9, 0.2, 0.6
        want = 2.0 * ((ps / 2 > thr[0, 0]).astype(float) - (ps / 2 < -thr[0, 0]).astype(float))
        assert np.array_equal(np.asarray(y, dtype=float), want)
    for kwargs, match in (({"column_thresholds": thr}, "column_scales"),
                          ({"column_scales": scales, "column_thresholds": thr[..., :2]}, "shape"),
                          ({"column_scales": scales, "column_thresholds": -thr}, ">= 0"),
                          ({"column_scales": scales, "column_thresholds": thr.astype(str)}, "real numbers")):
        with pytest.raises(ConfigError, match=match):
            cimsim.Crossbar(W, spec, **kwargs)
    sa = cimsim.CrossbarSpec(**{**spec.__dict__, "readout": SenseAmp()})
    with pytest.raises(ConfigError, match="TernaryReadout"):
        cimsim.Crossbar(W, sa, column_scales=scales, column_thresholds=thr)


# ------------------------------------------------------------------------------------------------ costs
def test_reference_dacs_cost_from_their_events():
    """One reference DAC per column pair: the DAC model at threshold_bits, driving for the comparators' resolution
    time per ternary decision; its energy in the report is its drives times that; area and DCiM bits in the inventory."""
    a0, a = cimsim.arch.get("hcim", rows=16), cimsim.arch.get("hcim", rows=16, learn_thresholds=True)
    e = a.reference_dac().energy_j
    assert e == ISAAC_DAC_POWER_W * 100e-12 * 31                       # 3.9 uW x 100 ps x 31 unit cells, 32 nm
    assert cimsim.arch.get("hcim", learn_thresholds=True, reference_hold_s=100e-9).reference_dac().energy_j == \
        pytest.approx(1000 * e, rel=1e-12)                             # the upper bound: held the whole read
    assert a.event_costs()[ev.REFERENCE_DAC_DRIVES].energy_j == e
    assert "reference_dac" in a.macro_kinds() and ev.REFERENCE_DAC_DRIVES in a.emitted_events()
    rows = {c.kind: c for c in a.inventory()}
    pairs = a.xbars_per_ima * a.cols // 2
    assert rows["reference_dac"].count == pairs
    assert rows["reference_dac"].area_m2 == pytest.approx(pairs * 31 * ISAAC_DAC_AREA_M2, rel=1e-12)
    dcim0 = {c.kind: c for c in a0.inventory()}["dcim"]
    assert rows["dcim"].area_m2 == pytest.approx(dcim0.area_m2 * (16 + 5) / 16, rel=1e-12)   # scales + thresholds
    model, x = small_model(), inputs()
    reps = []
    for arch in (a0, a):
        psq = qat.prepare(model, qat.PSQConfig.from_arch(arch), [x])
        mapped = cimsim.map(psq, arch, calibration=x, progress=False)
        reps.append((mapped.evaluate([(x, torch.zeros(6, dtype=torch.long))], progress=False), mapped))
    (rep0, _), (rep, mapped) = reps
    decisions = rep.config["events_per_inference"]["ternary_conversion"]     # a drive per decision
    assert decisions == sum(mapped.crossbar_events().layer(n)["ternary_conversion"] for n in ("0", "3", "6")) / 6 > 0
    plan = mapped.mapped_layers["6"].plan
    layer_events = dict(mapped.crossbar_events().layer("6"))
    assert a.dataflow_events(plan, layer_events)[ev.REFERENCE_DAC_DRIVES] == layer_events["ternary_conversion"]
    assert ev.REFERENCE_DAC_DRIVES not in a0.dataflow_events(plan, layer_events)
    leak = rep.config["leakage_j"].get("reference_dac", 0)
    assert rep.components["reference_dac"] == pytest.approx(decisions * e + leak, rel=1e-12)
    assert "reference_dac" not in rep0.components
    assert sum(rep.components.values()) == pytest.approx(rep.energy_j, rel=1e-12)


# ------------------------------------------------------------------------------------------------ training, files
def test_finetune_moves_the_thresholds_on_their_grid():
    model, data = tiny()      # the PSQ fine-tune tests' network and data
    cfg = qat.PSQConfig(rows=16, learn_thresholds=True, threshold_bits=4)
    recipe = ft.FinetuneRecipe(epochs=3, batch_size=16, lr=0.05)
    psq, meta = ft.finetune(model, cfg, data, recipe, progress=False)
    ts = [m.thresholds() for m in psq.modules() if qat.is_psq(m)]
    moved = sum(int((t != 0.5).sum()) for t in ts)
    assert moved > 0
    for m in psq.modules():
        if qat.is_psq(m):
            lat = m.psq_threshold.detach()
            assert float(lat.min()) >= 0 and float(lat.max()) <= 15 / 16        # projected into [0, 1)
    assert meta["psq"]["learn_thresholds"] and meta["psq"]["threshold_bits"] == 4


def test_learned_thresholds_round_trip(tmp_path):
    from cimsim.workloads import zoo

    torch.manual_seed(0)
    model = zoo.build_for("lenet5", (1, 28, 28), 10).eval()
    x = torch.rand(8, 1, 28, 28)
    cfg = qat.PSQConfig(learn_thresholds=True)
    psq = qat.prepare(model, cfg, [x])
    spread_thresholds(psq)
    meta = {"model": "lenet5", "dataset": "fashion-mnist", "test_accuracy": 0.9, "input_shape": [1, 28, 28],
            "num_classes": 10, "psq": {**cfg.__dict__}, "batchnorm_folded": psq.psq_folded}
    path = networks.save_psq_checkpoint(tmp_path / "m.pt", psq, meta)
    back, _ = networks.load_psq_checkpoint(path)
    for (n, m), m2 in zip(psq.named_modules(), back.modules()):
        if qat.is_psq(m):
            assert torch.equal(m.psq_threshold, m2.psq_threshold) and torch.equal(m.thresholds(), m2.thresholds())
    with torch.no_grad():
        assert torch.equal(back(x), psq(x))
    assert networks.psq_checkpoint_name("lenet5", "fashion-mnist", cfg) == \
        "lenet5-fashion-mnist-psq-ternary-w4a4c1d1r128t0.5-lt5.pt"
