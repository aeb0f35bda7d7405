"""HCiM: the architecture spec and its costs, partial-sum QAT (cimsim.mappers.qat), mapping and the CLI."""

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.cli import main
from cimsim.errors import CheckpointError, ConfigError
from cimsim import networks
from cimsim.mappers import qat


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 6, 3, stride=2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(6 * 3 * 3, 7)).double().eval()


# ------------------------------------------------------------------------------------------------ arch
def test_hcim_is_registered_without_an_adc():
    assert "hcim" in cimsim.arch.names()
    a = cimsim.arch.get("hcim")
    assert "adc.bits" not in a.params() and not a.has_adc
    assert (a.weight_bits, a.input_bits, a.cell_bits, a.rows, a.cols, a.readout) == (4, 4, 1, 128, 128, "ternary")
    spec = a.crossbar_spec()
    assert spec.pair_readout and spec.signed == "differential"
    kinds = a.summary()["breakdown"]
    assert "comparator" in kinds and "dcim" in kinds and "adc" not in kinds and "sample_hold" not in kinds
    # 2 comparators per column pair (ternary), 64 pairs x 8 crossbars per IMA
    comp = next(c for c in a.inventory() if c.kind == "comparator")
    assert comp.count == 8 * 64 * 2
    assert cimsim.arch.get("hcim", readout="binary").comparator().energy_j == pytest.approx(a.comparator().energy_j / 2)


@pytest.mark.parametrize("bad, match", [({"readout": "quaternary"}, "readout"), ({"threshold": 1.5}, "threshold"),
                                        ({"adc_bits": 4}, "hcim has no ADC"), ({"cols": 127}, "even")])
def test_bad_hcim_parameters(bad, match):
    with pytest.raises(ConfigError, match=match):
        cimsim.arch.get("hcim", **bad)


# ------------------------------------------------------------------------------------------------ PSQ = engine
@pytest.mark.parametrize("readout", ["ternary", "binary"])
def test_psq_forward_equals_the_mapped_crossbars(readout):
    """The fine-tuning forward computes what the engine computes (ideal cells), to float rounding."""
    model = small_model()
    x = torch.rand(6, 2, 8, 8, dtype=torch.float64) - 0.2            # signed inputs of the first layer
    arch = cimsim.arch.get("hcim", cell="ideal", rows=16, readout=readout, weight_bits=5, cell_bits=2)
    psq = qat.prepare(model, qat.PSQConfig.from_arch(arch), [x])
    assert psq.psq_folded == [["0", "1"]]
    with torch.no_grad():
        ref = psq(x)
    mapped = cimsim.map(psq, arch, calibration=x)
    assert mapped.mapped_layers["0"].plan.input_signed
    np.testing.assert_allclose(mapped(x).numpy(), ref.numpy(), rtol=0, atol=1e-12 * float(ref.abs().max()))
    # the scales programmed are the learned ones: (row blocks, slices, outputs)
    xb = mapped.mapped_layers["6"].crossbars[0]
    assert xb.column_scales.shape == (4, 2 * 7)
    np.testing.assert_array_equal(xb.column_scales.reshape(4, 2, 7), psq[6].psq_alpha.detach().numpy())


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_first_layer_at_8_bits_equals_the_mapped_crossbars(backend):
    """first_input_bits=8: the first layer streams 8 bit planes (8 cycles of 1-bit DACs) through the same ternary
    readout, the others 4; the fine-tuning forward equals the engine (ideal cells), its costs count 8 cycles."""
    model = small_model()
    x = torch.rand(6, 2, 8, 8, dtype=torch.float64) - 0.2
    arch = cimsim.arch.get("hcim", cell="ideal", rows=16, first_input_bits=8)
    cfg = qat.PSQConfig.from_arch(arch)
    assert cfg.first_input_bits == 8 and cfg.tag == "psq-ternary-w4a4f8c1d1r16t0.5"
    psq = qat.prepare(model, cfg, [x])
    assert [psq[i].psq_input_bits for i in (0, 3, 6)] == [8, 4, 4]
    assert psq[0].psq_alpha.shape == (2, 3, 5)            # the scales per (row block, slice, output) as before
    # the first layer's input step spans 8 bits: 127 signed codes over the calibrated range (4 bits: 7)
    ranges4 = qat.prepare(model, qat.PSQConfig(rows=16), [x])[0].input_scale
    assert float(psq[0].input_scale) == pytest.approx(float(ranges4) * 7 / 127, rel=1e-12)
    with torch.no_grad():
        ref = psq(x)
    codes = torch.round(x / psq[0].input_scale).unique()
    assert len(codes) > 16                                  # more than 4 bits of input codes reach the crossbars
    mapped = cimsim.map(psq, arch, calibration=x, backend=backend)
    np.testing.assert_allclose(mapped(x).numpy(), ref.numpy(), rtol=0, atol=1e-12 * float(ref.abs().max()))
    first, second = mapped.mapped_layers["0"], mapped.mapped_layers["3"]
    assert first.plan.input_bits == 8 and second.plan.input_bits == 0
    assert first.crossbars[0].spec.input_bits == 8 and second.crossbars[0].spec.input_bits == 4
    # the same network at 4 bits: the first layer's read cycles and decisions double, the others stay
    psq4 = qat.prepare(model, qat.PSQConfig(rows=16), [x])
    m4 = cimsim.map(psq4, cimsim.arch.get("hcim", cell="ideal", rows=16), calibration=x, backend=backend)
    r8, r4 = (m.evaluate([(x, torch.zeros(6, dtype=torch.long))], progress=False) for m in (mapped, m4))
    for layer, ratio in (("0", 2), ("3", 1), ("6", 1)):
        e8, e4 = mapped.crossbar_events().layer(layer), m4.crossbar_events().layer(layer)
        for k in ("array_read_cycles", "ternary_conversion"):     # per cycle, whatever the data
            assert e4[k] > 0 and e8[k] == ratio * e4[k], (layer, k)
    assert mapped.crossbar_events().layer("0")["dac_drives"] > m4.crossbar_events().layer("0")["dac_drives"]
    lat = [{d["name"]: d["latency_s"] for d in r.layers} for r in (r8, r4)]
    assert lat[0]["0"] == pytest.approx(2 * lat[1]["0"], rel=1e-12) and lat[0]["3"] == pytest.approx(lat[1]["3"])
    # the fine-tuned bits must match the mapped ones; a mismatch of the setting is refused
    with pytest.raises(ConfigError, match="fine-tuned for psq-ternary-w4a4f8c1d1r16t0.5"):
        cimsim.map(psq, cimsim.arch.get("hcim", rows=16), calibration=x)
    # first_input_bits = input_bits is the default configuration (one name, one checkpoint)
    assert qat.PSQConfig(first_input_bits=4) == qat.PSQConfig()
    with pytest.raises(ConfigError, match="first_input_bits"):
        cimsim.arch.get("hcim", first_input_bits=5, dac_bits=2, input_bits=4)


@pytest.mark.parametrize("backend, first", [("numba", 0), ("torch", 0), ("numba", 8), ("torch", 8)])
def test_scales_per_input_cycle_equal_the_mapped_crossbars(backend, first):
    """cycle_scales: one scale factor per (row block, cycle, slice, output); the fine-tuning forward equals the
    engine (ideal cells), each cycle's decisions scaled by its own factor."""
    model = small_model()
    x = torch.rand(6, 2, 8, 8, dtype=torch.float64) - 0.2
    arch = cimsim.arch.get("hcim", cell="ideal", rows=16, cycle_scales=True, first_input_bits=first)
    cfg = qat.PSQConfig.from_arch(arch)
    assert cfg.tag == f"psq-ternary-w4a4{'f8' if first else ''}c1d1r16t0.5-percycle"
    psq = qat.prepare(model, cfg, [x])
    T0 = first or 4
    assert psq[0].psq_alpha.shape == (2, T0, 3, 5) and psq[6].psq_alpha.shape == (4, 4, 3, 7)
    with torch.no_grad():     # factors that differ from cycle to cycle (initialised per cycle already)
        for i in (0, 3, 6):
            psq[i].psq_alpha.mul_(torch.linspace(0.7, 1.4, psq[i].psq_alpha.shape[1],
                                                 dtype=torch.float64)[None, :, None, None])
        ref = psq(x)
    assert not torch.equal(psq[6].psq_alpha[:, 0], psq[6].psq_alpha[:, 1])
    mapped = cimsim.map(psq, arch, calibration=x, backend=backend)
    np.testing.assert_allclose(mapped(x).numpy(), ref.numpy(), rtol=0, atol=1e-12 * float(ref.abs().max()))
    xb = mapped.mapped_layers["6"].crossbars[0]
    np.testing.assert_array_equal(xb.column_scales.reshape(4, 4, 3, 7), psq[6].psq_alpha.detach().numpy())
    # the gradient of every factor comes from its own cycle's partial sums; the DCiM array holds 4x the factors
    psq.train()
    nn.functional.cross_entropy(psq(x.requires_grad_()), torch.arange(6) % 7).backward()
    g = psq[6].psq_alpha.grad
    assert g.shape == (4, 4, 3, 7) and not torch.equal(g[:, 0], g[:, 3])
    dcim = lambda a: next(c for c in a.inventory() if c.kind == "dcim").area_m2  # noqa: E731
    assert dcim(arch) == pytest.approx(max(4, first) * dcim(cimsim.arch.get("hcim", rows=16)), rel=1e-12)
    from cimsim.readouts import ConversionScope
    spec = cimsim.arch.get("hcim", cell="ideal", rows=16).crossbar_spec()
    spec = cimsim.CrossbarSpec(**{**spec.__dict__, "conversion": ConversionScope(cycles=0)})
    with pytest.raises(ConfigError, match="per input cycle need one conversion per cycle"):
        cimsim.Crossbar(np.ones((3, 20), dtype=np.int64), spec, column_scales=np.ones((2, 4, 3, 3)))


def test_psq_training_step_moves_weights_and_scales():
    model = small_model().float()
    x = torch.rand(16, 2, 8, 8)
    y = torch.arange(16) % 7
    psq = qat.prepare(model, qat.PSQConfig(rows=16), [x]).train()
    qat.set_noise(psq, 0.02)
    loss = nn.functional.cross_entropy(psq(x), y)
    loss.backward()
    for name in ("3.weight", "3.psq_alpha", "6.weight", "6.psq_alpha", "0.weight"):
        g = dict(psq.named_parameters())[name].grad
        assert g is not None and torch.isfinite(g).all() and float(g.abs().sum()) > 0, name
    with pytest.raises(ConfigError, match="noise_frac"):
        qat.set_noise(psq, 2.0)


def test_decisions_straight_through():
    cfg = qat.PSQConfig(threshold=0.5)
    u = torch.tensor([-2.0, -0.5, -0.49, 0.0, 0.5, 0.51, 3.0])
    assert qat.decide(u, cfg).tolist() == [-1, 0, 0, 0, 0, 1, 1]
    assert qat.decide(u, qat.PSQConfig(readout="binary")).tolist() == [-1, -1, -1, -1, 1, 1, 1]


def test_mapping_without_learned_scales_warns_and_calibrates():
    model = small_model()
    x = torch.rand(6, 2, 8, 8, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mapped = cimsim.map(model, cimsim.arch.get("hcim", cell="ideal", rows=16), calibration=x)
    psq = [w for w in caught if "no learned partial-sum scale factors for 0, 3, 6" in str(w.message)]
    assert len(psq) == 1 and psq[0].filename == __file__   # the user's call, not torch's decorator
    assert all(xb.column_scales.min() >= 1.0 for layer in mapped.mapped_layers.values() for xb in layer.crossbars)


def test_mismatched_fine_tuning_is_refused():
    model = small_model()
    x = torch.rand(6, 2, 8, 8, dtype=torch.float64)
    psq = qat.prepare(model, qat.PSQConfig(rows=16), [x])
    with pytest.raises(ConfigError, match="fine-tuned for psq-ternary-w4a4c1d1r16t0.5"):
        cimsim.map(psq, cimsim.arch.get("hcim", rows=32), calibration=x)


def test_the_digital_reference_is_the_given_float_network():
    model = small_model()
    x = torch.rand(12, 2, 8, 8, dtype=torch.float64)
    arch = cimsim.arch.get("hcim", rows=16)
    psq = qat.prepare(model, qat.PSQConfig.from_arch(arch), [x])
    with torch.no_grad():
        for p in psq.parameters():        # the PSQ weights drift away from the float network's
            p.add_(0.3 * torch.randn_like(p))
    with torch.no_grad():
        base_pred = model(x).argmax(1)
        psq_off_pred = qat.set_psq(__import__("copy").deepcopy(psq), False)(x).argmax(1)
    y = base_pred.clone()            # labels the float network gets all right
    batch = [(x, y)]
    rep = cimsim.map(psq, arch, calibration=x, reference=model, reference_note="the base").evaluate(batch, progress=False)
    assert rep.digital_accuracy == 1.0 and rep.config["digital_reference"] == "the base"
    assert "digital reference     the base" in rep.table()
    default = cimsim.map(psq, arch, calibration=x).evaluate(batch, progress=False)
    assert default.digital_accuracy == pytest.approx(float((psq_off_pred == y).double().mean()))
    assert default.digital_accuracy < 1.0
    assert default.config["digital_reference"].startswith("the PSQ network with partial-sum quantization off")
    plain = cimsim.map(model, cimsim.arch.get("isaac", rows=16), calibration=x).evaluate(batch, progress=False)
    assert plain.config["digital_reference"] == "the network itself in floating point"
    assert "digital reference " not in plain.table().split("\n", 3)[3]   # only the accuracy line names it
    with pytest.raises(ConfigError, match="reference must be a torch.nn.Module"):
        cimsim.map(psq, arch, calibration=x, reference="lenet5")


def test_shipped_psq_checkpoint_is_compared_with_its_float_base(tmp_path, monkeypatch):
    import shutil

    from cimsim.workloads import train

    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path / "home"))
    name = "lenet5-fashion-mnist-psq-ternary-w4a4c1d1r128t0.5"
    ckpt = train.SHIPPED_DIR / f"{name}.pt"
    _, meta = networks.load_any_checkpoint(ckpt)
    kw = networks.reference_kwargs(meta, ckpt)
    base, base_meta = train.load_checkpoint(train.SHIPPED_DIR / meta["base_checkpoint"])
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(kw["reference"](x), base(x))
    assert kw["reference_note"] == "lenet5-fashion-mnist.pt, the float network this checkpoint was fine-tuned from"
    assert networks.reference_kwargs({"model": "lenet5"}, ckpt) == {}       # a plain checkpoint: itself
    # a base that is missing, or a file of that name with another recorded accuracy, is not used
    for changed in ({"base_checkpoint": "gone.pt"}, {"base_test_accuracy": 0.5}):
        kw = networks.reference_kwargs({**meta, **changed}, tmp_path / f"{name}.pt")
        assert "reference" not in kw
        assert kw["reference_note"].startswith("the PSQ network with partial-sum quantization off")
    assert "base checkpoint gone.pt not found" in networks.reference_kwargs(
        {**meta, "base_checkpoint": "gone.pt"}, ckpt)["reference_note"]
    # a base beside the PSQ checkpoint counts first
    shutil.copy(train.SHIPPED_DIR / meta["base_checkpoint"], tmp_path / meta["base_checkpoint"])
    shutil.copy(train.SHIPPED_DIR / meta["base_checkpoint"].replace(".pt", ".json"), tmp_path)
    assert "reference" in networks.reference_kwargs(meta, tmp_path / f"{name}.pt")


# ------------------------------------------------------------------------------------------------ costs
def test_hcim_energy_comes_from_its_events():
    model = small_model()
    x = torch.rand(6, 2, 8, 8, dtype=torch.float64)
    arch = cimsim.arch.get("hcim", rows=16)
    psq = qat.prepare(model, qat.PSQConfig.from_arch(arch), [x])
    mapped = cimsim.map(psq, arch, calibration=x)
    rep = mapped.evaluate([(x, torch.zeros(6, dtype=torch.long))], progress=False)
    ev = rep.config["events_per_inference"]
    assert "sample_holds" not in ev and not any("adc" in k for k in ev)
    assert 0 < ev["nonzero_decisions"] < ev["ternary_conversion"]
    assert rep.components["dcim"] == pytest.approx(ev["nonzero_decisions"] * arch.dcim_add_energy_j(), rel=1e-12)
    assert rep.components["comparator"] == pytest.approx(ev["ternary_conversion"] * arch.comparator().energy_j,
                                                         rel=1e-12)
    assert "shift_add" not in rep.components or rep.components["shift_add"] < rep.components["dcim"]
    assert sum(rep.components.values()) == pytest.approx(rep.energy_j, rel=1e-12)
    # latency: 4 bit-serial cycles of 100 ns per MVM (the DCiM keeps up)
    first = next(r for r in rep.layers if r["name"] == "0")
    assert first["latency_s"] == pytest.approx(4 * 100e-9)


def test_macro_and_chip_level_energies_come_from_the_same_events():
    """The compute macro (crossbar + readout + partial-sum processing) of HCiM and of an ISAAC baseline with
    the same bits: its energy is the run's own event counts times the event energies (plus the macro
    components' static energy), macro + the rest = the chip total, and the DACs, registers, buffers and
    interconnect stay out of it."""
    from cimsim import events as ev

    model = small_model()
    x = torch.rand(6, 2, 8, 8, dtype=torch.float64)
    hcim = cimsim.arch.get("hcim", rows=16)
    isaac = cimsim.arch.get("isaac", adc_bits=4, weight_bits=4, input_bits=4, cell_bits=1, rows=16,
                            signed="differential")
    psq = qat.prepare(model, qat.PSQConfig.from_arch(hcim), [x])
    reps = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, arch in (("hcim", hcim), ("isaac", isaac)):
            reps[name] = cimsim.map(psq, arch, calibration=x).evaluate([(x, torch.zeros(6, dtype=torch.long))],
                                                                       progress=False)
    assert set(reps["hcim"].macro_components) == {"crossbar", "comparator", "dcim"}
    assert set(reps["isaac"].macro_components) == {"crossbar", "adc", "sample_hold", "shift_add"}
    for name, arch in (("hcim", hcim), ("isaac", isaac)):
        rep = reps[name]
        e, leak, costs = rep.config["events_per_inference"], rep.config["leakage_j"], arch.event_costs()
        v_step2 = arch.cell.read_voltage_v ** 2
        crossbar = e[ev.CELL_READ_CONDUCTANCE_S] * v_step2
        if name == "hcim":
            dynamic = (crossbar + e["ternary_conversion"] * arch.comparator().energy_j
                       + e[ev.NONZERO_DECISIONS] * arch.dcim_add_energy_j())
        else:
            conv = e["sar-adc_conversion_4b"]
            dynamic = (crossbar + conv * arch.adc_energy_j() + conv * costs[ev.SAMPLE_HOLDS].energy_j
                       + e[ev.SHIFT_ADDS] * costs[ev.SHIFT_ADDS].energy_j)
        static = sum(v for k, v in leak.items() if k in rep.macro_components)
        assert rep.macro_energy_j == pytest.approx(dynamic + static, rel=1e-12), name
        rest = sum(v for k, v in rep.components.items() if k not in rep.macro_components)
        assert rep.macro_energy_j + rest == pytest.approx(rep.energy_j, rel=1e-12)
        assert {"dac", "register", "edram", "bus"} <= set(rep.components) - set(rep.macro_components)
        assert "compute macro" in rep.table()
    # the macro differs far more between the designs than the chip does
    macro_ratio = reps["isaac"].macro_energy_j / reps["hcim"].macro_energy_j
    chip_ratio = reps["isaac"].energy_j / reps["hcim"].energy_j
    assert macro_ratio > chip_ratio > 1


# ------------------------------------------------------------------------------------------------ checkpoints, CLI
def test_psq_fine_tunes_attention_projections_and_its_checkpoint_rebuilds_them(tmp_path):
    """A transformer's q/k/v/out projections are PSQ layers (split out of nn.MultiheadAttention as the mapper splits
    them), the encoder runs them layer by layer, and the checkpoint loads into the same structure."""
    from cimsim.workloads import zoo

    torch.manual_seed(0)
    model = zoo.build_for("vit_mini", (1, 28, 28), 10).eval()
    x = torch.rand(8, 1, 28, 28)
    cfg = qat.PSQConfig()
    psq = qat.prepare(model, cfg, [x])
    layers = {n for n, m in psq.named_modules() if qat.is_psq(m)}
    assert {f"encoder.layers.3.self_attn.{p}_proj" for p in ("q", "k", "v", "out")} <= layers
    assert len(layers) == 1 + 4 * 6 + 1   # patch embedding, 4 x (4 projections + 2 MLP layers), classifier
    calls = []
    for n, m in psq.named_modules():
        if qat.is_psq(m):
            m.register_forward_pre_hook(lambda mod, inp, n=n: calls.append(n))
    with torch.no_grad():
        y = psq(x)
    assert set(calls) == layers    # no fused path reads a weight around its PSQ layer
    meta = {"model": "vit_mini", "dataset": "fashion-mnist", "test_accuracy": 0.9, "input_shape": [1, 28, 28],
            "num_classes": 10, "psq": {**cfg.__dict__}, "batchnorm_folded": psq.psq_folded}
    back, _ = networks.load_psq_checkpoint(networks.save_psq_checkpoint(tmp_path / "v.pt", psq, meta))
    with torch.no_grad():
        assert torch.equal(back(x), y)


@pytest.mark.parametrize("options", [{}, {"first_input_bits": 8, "cycle_scales": True}])
def test_psq_checkpoint_round_trip(tmp_path, options):
    from cimsim.workloads import zoo

    torch.manual_seed(0)
    model = zoo.build_for("lenet5", (1, 28, 28), 10).eval()
    x = torch.rand(8, 1, 28, 28)
    cfg = qat.PSQConfig(**options)
    psq = qat.prepare(model, cfg, [x])
    meta = {"model": "lenet5", "dataset": "fashion-mnist", "test_accuracy": 0.9, "input_shape": [1, 28, 28],
            "num_classes": 10, "psq": {**cfg.__dict__},
            "batchnorm_folded": psq.psq_folded}
    path = networks.save_psq_checkpoint(tmp_path / "m.pt", psq, meta)
    back, meta2 = networks.load_psq_checkpoint(path)
    assert meta2["psq"]["readout"] == "ternary"
    bits = {n: m.psq_input_bits for n, m in back.named_modules() if qat.is_psq(m)}
    assert bits == {"features.0": 8 if options else 4, "features.3": 4, "classifier.1": 4, "classifier.3": 4,
                    "classifier.5": 4}
    with torch.no_grad():
        assert torch.equal(back(x), psq(x))
    if options:   # the checkpoint of the other setting is not found under this one's name
        assert networks.psq_checkpoint_name("lenet5", "fashion-mnist", cfg) == \
            "lenet5-fashion-mnist-psq-ternary-w4a4f8c1d1r128t0.5-percycle.pt"
    assert json.loads((tmp_path / "m.json").read_text())["model"] == "lenet5"
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(CheckpointError) as err:
        networks.load_psq_checkpoint(tmp_path / "bad.pt")
    assert str(err.value).endswith("is not a checkpoint (not a torch zip archive, which torch.save writes); give a "
                                   ".pt file written by 'cimsim train' or 'cimsim finetune'")


def test_missing_psq_checkpoint_names_the_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path))
    with pytest.raises(CheckpointError, match="cimsim finetune --arch hcim --model lenet5 --dataset fashion-mnist"):
        networks.find_psq_checkpoint("lenet5", "fashion-mnist", qat.PSQConfig(weight_bits=5))
    assert main(["run", "--arch", "hcim", "--set", "weight_bits=5", "--dataset", "synthetic", "--model", "mlp"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cimsim finetune --arch hcim --model mlp --dataset synthetic --set weight_bits=5" in err
    assert main(["finetune", "--arch", "isaac"]) == 2
    assert ("isaac has no learned readout scales: use 'cimsim run --arch isaac', or --method admm to prune a network "
            "for it") in capsys.readouterr().err


def test_the_fine_tunes_default_settings_are_their_architectures_defaults():
    """``PSQConfig()`` and ``SAConfig()`` cite no sources of their own: their defaults are those of the architectures
    they must match (``hcim``, ``adcless-snn``), where each is cited. A default changed on one side only fails here."""
    import dataclasses
    from cimsim.mappers import qat, snn_qat
    hcim, snn = cimsim.arch.get("hcim"), cimsim.arch.get("adcless-snn")
    psq, sa = qat.PSQConfig(), snn_qat.SAConfig()
    arch_name = {"adc_bits": "adc_layer_bits"}
    for f in dataclasses.fields(psq):
        assert getattr(psq, f.name) == getattr(hcim, arch_name.get(f.name, f.name)), f.name
    for f in dataclasses.fields(sa):
        assert getattr(sa, f.name) == getattr(snn, {"threshold": "sa_threshold"}.get(f.name, f.name)), f.name
