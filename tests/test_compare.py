"""``cimsim compare`` (cimsim/cli/compare.py): side by side, equal area, ratios beside the papers', cost-only mode."""

import json

import pytest

import cimsim
from _cli_helpers import assert_one_line_user_error, run_cli
from cimsim.arch.scaling import tile_area_m2
from cimsim.cli.compare import COST_ONLY, PAPER_RATIOS, build_archs, summarize
from cimsim.report import Report


def _report(energy, throughput, macs, comps):
    return Report(accuracy=0.9, digital_accuracy=0.9, energy_j=energy, latency_s=1e-3, throughput_inf_per_s=throughput,
                  area_m2=1e-4, layers=[{"name": "fc", "macs": macs}], components=comps)


def test_ratios_are_efficiency_and_throughput_against_the_first_and_the_papers_pairs():
    reps = {"isaac": _report(4e-6, 100.0, 1000, {"adc": 3e-6, "edram": 1e-6}),
            "cascade": _report(2e-6, 150.0, 1000, {"adc": 1e-6, "edram": 1e-6}),
            "neural-pim": _report(1e-6, 300.0, 1000, {"nns_a": 0.5e-6, "edram": 0.5e-6})}
    archs = {n: cimsim.arch.get(n) for n in reps}
    res = summarize(reps, archs, cost_only=False)
    rows = res["architectures"]
    assert rows["isaac"]["ops_per_j"] == pytest.approx(2000 / 4e-6)
    assert rows["neural-pim"]["vs_isaac"] == pytest.approx({"energy_efficiency": 4.0, "throughput": 3.0})
    assert rows["isaac"]["energy_split"] == pytest.approx({"adc": 0.75, "edram": 0.25})
    pairs = {(p["arch"], p["baseline"]): p for p in res["paper_ratios"]}
    assert set(pairs) == set(PAPER_RATIOS)
    assert pairs[("neural-pim", "cascade")]["ours"] == pytest.approx({"energy_efficiency": 2.0, "throughput": 2.0})
    assert pairs[("cascade", "isaac")]["paper"] == {"energy_efficiency": 3.5, "throughput": 1.86}
    assert summarize(reps, archs, cost_only=True)["architectures"]["isaac"]["accuracy"] is None


def test_common_point_and_equal_area():
    archs = build_archs(["isaac", "cascade", "neural-pim"], "8", "32.0", {"adc_bits": "7"}, "isaac")
    ref = cimsim.arch.get("isaac", weight_bits=8, input_bits=8, adc_bits=7)
    for name, a in archs.items():
        assert (a.weight_bits, a.input_bits, a.node_nm) == (8, 8, 32)
        assert abs(a.area_m2 - ref.area_m2) <= tile_area_m2(a)[0] / 2 + 1e-18, name
    assert archs["isaac"].tiles == 168 and archs["cascade"].adc.bits == 7
    assert build_archs(["isaac"], "8", "32.0", {"input_bits": "4"}, None)["isaac"].input_bits == 4   # --set wins
    own = build_archs(["cascade"], "own", "own", {}, None)["cascade"]
    assert own == cimsim.arch.get("cascade")


def test_cost_only_run_on_synthetic_inputs(capsys):
    code, out, err = run_cli(capsys, "compare", "--arch", "isaac,neural-pim", "--model", "mlp", "--input-shape", "1,8,8",
                             "--equal-area", "isaac", "--limit", "2", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["mode"] == COST_ONLY and res["input_shape"] == [1, 8, 8]
    rows = res["architectures"]
    assert rows["isaac"]["accuracy"] is None and rows["neural-pim"]["energy_j"] > 0
    assert rows["neural-pim"]["area_m2"] == pytest.approx(rows["isaac"]["area_m2"], rel=0.01)
    assert [(p["arch"], p["baseline"]) for p in res["paper_ratios"]] == [("neural-pim", "isaac")]
    code, out, err = run_cli(capsys, "compare", "--arch", "isaac,neural-pim", "--model", "mlp", "--input-shape", "1,8,8")
    assert code == 0 and COST_ONLY in out and "neural-pim vs isaac" in out and "5.36x" in out


def test_a_parameter_no_architecture_has_is_refused(capsys):
    code, out, err = run_cli(capsys, "compare", "--model", "mlp", "--input-shape", "1,8,8", "--set", "adcbits=3")
    assert_one_line_user_error(code, err, "--set adcbits: none of isaac, cascade, neural-pim has this parameter")


def test_a_digital_reference_cannot_set_the_area(capsys):
    code, out, err = run_cli(capsys, "compare", "--arch", "isaac", "--model", "mlp", "--input-shape", "1,8,8",
                             "--equal-area", "digital")
    assert_one_line_user_error(code, err, "digital has no tiles")


def test_cost_only_counts_by_default_and_simulates_on_request(capsys):
    """Counting tiles in cost-only mode (cimsim/crossbar_count.py); --simulate runs the engine. On a small MLP the
    two agree on the tiles and the throughput, and on the energy within 2 % (the counted run's activations are the
    quantized network's, the simulated one's carry the hardware's errors: their digits differ a little)."""
    args = ("compare", "--arch", "isaac,cascade,neural-pim", "--model", "mlp", "--input-shape", "1,8,8", "--limit", "4",
            "--equal-area", "isaac", "--json")
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert json.loads(out)["engine"] == "counted"
    counted = json.loads(out)["architectures"]
    code, out, err = run_cli(capsys, *args, "--simulate")
    assert code == 0, err
    assert json.loads(out)["engine"] == "simulated"
    simulated = json.loads(out)["architectures"]
    for name, row in counted.items():
        assert row["tiles"] == simulated[name]["tiles"]
        assert row["throughput_inf_per_s"] == simulated[name]["throughput_inf_per_s"]
        assert row["energy_j"] == pytest.approx(simulated[name]["energy_j"], rel=0.02), name
    code, out, err = run_cli(capsys, "compare", "--model", "lenet5", "--simulate")
    assert_one_line_user_error(code, err, "--simulate goes with --input-shape")


def test_a_network_larger_than_one_chip_runs_on_the_same_number_of_chips_everywhere(capsys):
    """With one tile per chip, CASCADE (80 arrays of 64x64) needs 3 chips for the MLP's 198 arrays, ISAAC (96 arrays of
    128x128) holds it in one: by default both get 3 chips (equal total area), CASCADE's layers straddle them and its
    links carry bytes; ``--chips 1`` keeps one chip each (CASCADE then holds one copy of each layer at most)."""
    args = ("compare", "--arch", "isaac,cascade", "--model", "mlp", "--input-shape", "1,8,8", "--set", "tiles=1", "--json")
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    rows = json.loads(out)["architectures"]
    assert (rows["isaac"]["chips"], rows["isaac"]["chips_to_hold"]) == (3, 1)
    assert (rows["cascade"]["chips"], rows["cascade"]["chips_to_hold"]) == (3, 3)
    one = cimsim.arch.get("cascade", weight_bits=8, input_bits=8, node_nm=32, tiles=1)
    assert rows["cascade"]["area_m2"] == pytest.approx(3 * one.area_m2, rel=1e-12)
    assert rows["cascade"]["energy_split"]["hyper_transport"] > 0
    assert rows["isaac"]["energy_split"].get("hyper_transport", 0) == 0      # ISAAC's copies stay on its first chip
    code, out, err = run_cli(capsys, *args, "--chips", "1")
    assert code == 0, err
    assert {r["chips"] for r in json.loads(out)["architectures"].values()} == {1}
    code, out, err = run_cli(capsys, "compare", "--model", "mlp", "--input-shape", "1,8,8", "--chips", "0")
    assert_one_line_user_error(code, err, "--chips '0': give 'auto' or a positive whole number of chips")


@pytest.mark.parametrize("argv,needles", [
    (["--arch", "isaac,hcim", "--model", "lenet5", "--input-shape", "1,28,28"], ["hcim maps packed tiles or per-column", "--simulate"]),
    (["--arch", "sme,adcless-snn", "--model", "lenet5", "--input-shape", "1,28,28"], ["sme, adcless-snn map packed", "leave them out"]),
    (["--arch", "isaac", "--set", "node_nm=65"], ["--set node_nm and --node 32.0 both set it"]),
    (["--arch", "isaac", "--set", "weight_bits=4"], ["--set weight_bits and --precision 8 both set it"]),
])
def test_settings_compare_cannot_honour_are_refused_before_any_work(capsys, monkeypatch, argv, needles):
    """Cost-only counting cannot stand for packed tiles or per-column scales (it failed after the first
    architecture's run, naming an internal option); a --set the common --precision / --node would overwrite in the
    header and the JSON is refused. Both before anything loads."""
    from cimsim import networks
    monkeypatch.setattr(networks, "load_model_and_data", lambda *a, **k: pytest.fail("loaded before refusing"))
    code, out, err = run_cli(capsys, "compare", *argv)
    assert_one_line_user_error(code, err, *needles)


def test_an_imagenet_definition_without_input_shape_says_to_run_it_cost_only(capsys):
    code, out, err = run_cli(capsys, "compare", "--model", "resnet50")
    assert_one_line_user_error(code, err, "resnet50 is a network definition without trained weights",
                               "--input-shape 3,224,224")
