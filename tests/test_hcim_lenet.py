"""HCiM on the shipped PSQ fine-tuned LeNet-5 (Fashion-MNIST): the CLI path, energy ordering against the
4-bit and 7-bit ADC baselines, and (slow) the full-test-set checks of BENCHMARKS.md."""

import json
import os
from pathlib import Path

import pytest

import cimsim
from cimsim.cli import main
from cimsim import networks
from cimsim.mappers import qat

FMNIST = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not FMNIST.is_dir() and not os.environ.get("CIMSIM_DATA"),
                                reason="needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")
HCIM = cimsim.arch.get("hcim")
SAME = dict(weight_bits=HCIM.weight_bits, input_bits=HCIM.input_bits, cell_bits=HCIM.cell_bits, rows=HCIM.rows,
            cols=HCIM.cols, signed="differential")
PAPER_SAVING = {"isaac7": 0.28, "isaac4": 0.12}   # HCiM, arXiv 2403.13577: up to 28 % / 12 % less energy


@pytest.fixture(autouse=True)
def _home(monkeypatch, tmp_path):   # the shipped checkpoint, never one in the user's directory
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path))


def _shipped():
    return networks.find_psq_checkpoint("lenet5", "fashion-mnist", qat.PSQConfig.from_arch(HCIM))


def test_the_lenet5_checkpoint_ships_with_its_metadata():
    path = _shipped()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["command"].startswith("cimsim finetune --arch hcim --model lenet5 --dataset fashion-mnist")
    for k in ("seed", "epochs", "test_accuracy", "psq", "base_test_accuracy"):
        assert k in meta
    assert qat.PSQConfig(**meta["psq"]) == qat.PSQConfig()   # fields added since take their defaults


def test_cli_run_finds_the_hcim_checkpoint(capsys):
    assert main(["run", "--arch", "hcim", "--model", "lenet5", "--dataset", "fashion-mnist", "--limit", "20",
                 "--calibration", "256", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["config"]["checkpoint"].endswith(_shipped().name)
    assert rep["config"]["arch"] == "hcim" and rep["accuracy"] >= 0.6
    assert "comparator" in rep["components"] and "adc" not in rep["components"]


def test_cli_maps_the_psq_checkpoint_onto_an_adc_baseline(capsys):
    """`cimsim run --arch isaac --checkpoint <a PSQ checkpoint>` maps the fine-tuned network onto the baseline (it was
    refused as "not a cimsim checkpoint"): the report of cimsim.map on the same network and configuration."""
    from cimsim.workloads import load_dataset

    sets = [a for k, v in SAME.items() for a in ("--set", f"{k}={v}")]
    assert main(["run", "--arch", "isaac", "--adc-bits", "4", *sets, "--model", "lenet5", "--dataset", "fashion-mnist",
                 "--checkpoint", str(_shipped()), "--limit", "64", "--calibration", "128", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    data = load_dataset("fashion-mnist")
    model, _ = networks.load_psq_checkpoint(_shipped())
    assert any(qat.is_psq(m) for m in model.modules())
    mine = cimsim.map(model, cimsim.arch.get("isaac", adc_bits=4, **SAME),
                      calibration=data.loader("train", batch_size=64, limit=128, shuffle=False), progress=False)
    want = mine.evaluate(data.loader("test", batch_size=64, limit=64), progress=False)
    assert rep["config"]["checkpoint"] == str(_shipped()) and "adc" in rep["components"]
    assert rep["accuracy"] == want.accuracy and rep["energy_j"] == pytest.approx(want.energy_j, rel=1e-12)


def energies(limit):
    from cimsim.workloads import load_dataset

    data = load_dataset("fashion-mnist")
    model, _ = networks.load_psq_checkpoint(_shipped())
    cal = data.loader("train", batch_size=256, limit=512, shuffle=False)
    archs = {"hcim": HCIM, "isaac4": cimsim.arch.get("isaac", adc_bits=4, **SAME),
             "isaac7": cimsim.arch.get("isaac", adc_bits=7, **SAME)}
    return {n: cimsim.map(model, a, calibration=cal).evaluate(data.loader("test", batch_size=250, limit=limit),
                                                              progress=False) for n, a in archs.items()}


def test_hcim_spends_less_than_a_4_bit_adc_which_spends_less_than_a_7_bit_one():
    """HCiM's done-when ordering on the same network (100 test images): HCiM < isaac 4-bit < isaac 7-bit in
    energy per inference, the readout itself by more than 2x, and every shared component within 5 %."""
    r = energies(100)
    assert r["hcim"].energy_j < r["isaac4"].energy_j < r["isaac7"].energy_j
    # the readout itself: comparators + scale-factor adds against ADC + sample-and-hold + shift-and-add
    readout = lambda rep: sum(rep.components.get(c, 0.0) for c in ("comparator", "dcim", "adc", "sample_hold",  # noqa: E731
                                                                    "shift_add"))
    assert readout(r["hcim"]) < 0.5 * readout(r["isaac4"]) < 0.5 * readout(r["isaac7"])
    # the crossbar reads (ISAAC Table 6's cell) follow each design's own activations but stay a small share
    for rep in r.values():
        assert rep.components["crossbar"] < 0.06 * rep.energy_j
    # the shared components spend the same dynamic energy (their static energy follows each design's timing,
    # occupancy and register sizes)
    dynamic = lambda rep, c: rep.components[c] - rep.config["leakage_j"].get(c, 0.0)  # noqa: E731
    for c in ("register", "edram", "bus", "activation", "pooling"):
        assert dynamic(r["hcim"], c) == pytest.approx(dynamic(r["isaac4"], c), rel=0.05)
    # macro level (crossbar + readout + partial-sum processing) against chip level, from the same runs: the
    # saving is a factor in the macro, a fraction of the chip (README, HCiM: 20x / 2.5x against 1.9x / 1.08x)
    for base in ("isaac4", "isaac7"):
        macro = r[base].energy_at("macro") / r["hcim"].energy_at("macro")
        chip = r[base].energy_at("chip") / r["hcim"].energy_at("chip")
        assert macro > 2 and macro > 2 * chip and chip > 1, (base, macro, chip)


@pytest.mark.slow
def test_full_test_set_accuracy_and_energy_ratios():
    """BENCHMARKS.md, HCiM: accuracy within 2 points of the digital reference; energy ordering and ratios."""
    from cimsim.workloads import train

    _, float_meta = train.load_checkpoint(train.find_checkpoint("lenet5", "fashion-mnist"))
    r = energies(None)
    assert r["hcim"].n_examples == 10000
    assert r["hcim"].accuracy >= float_meta["test_accuracy"] - 0.02 - 1e-9   # 2 points, float rounding aside
    assert r["hcim"].energy_j < r["isaac4"].energy_j < r["isaac7"].energy_j
    for base, paper in PAPER_SAVING.items():
        ours = 1 - r["hcim"].energy_j / r[base].energy_j
        macro = r[base].macro_energy_j / r["hcim"].macro_energy_j
        print(f"energy saved vs {base}: ours {100 * ours:.1f} % (chip), {macro:.2f}x (macro); paper "
              f"{100 * paper:.0f} % / {100 * paper:.0f}x")
        assert macro > 2 * r[base].energy_j / r["hcim"].energy_j
