"""One rule for the architectures whose readout needs a fine-tuned network (hcim's partial-sum QAT, adcless-snn's
sense amps), in ``cimsim run`` and ``cimsim compare`` (cimsim.networks.load_network): the network fine-tuned for the
architecture's setting; hcim without one refused before any work, naming the fine-tune and ``--float-network``;
``--float-network`` maps the float network, and the report / table / JSON say whose accuracy it is."""

import json

import pytest
import torch
from torch import nn

import cimsim
from _cli_helpers import assert_one_line_user_error, run_cli
from cimsim import networks
from cimsim.mappers import qat, snn_qat
from cimsim.workloads import datasets, train

HCIM8 = cimsim.arch.get("hcim", weight_bits=8, input_bits=8, node_nm=32)   # compare's common point (8 bits, 32 nm)
SMALL = ["--model", "mlp", "--dataset", "digits", "--limit", "30", "--json"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path))
    return train.user_dir()


def _psq_for_hcim8(home):
    """A PSQ network for hcim at 8 bits made from the shipped mlp-digits (prepared, not trained), where 'cimsim
    run' and 'cimsim compare' look for it."""
    model, meta = train.load_checkpoint(train.SHIPPED_DIR / "mlp-digits.pt")
    x = next(iter(datasets.load("digits").loader("train", batch_size=64, limit=64, shuffle=False)))[0]
    cfg = qat.PSQConfig.from_arch(HCIM8)
    psq = qat.prepare(model, cfg, [x])
    out = {**meta, "psq": {**cfg.__dict__}, "batchnorm_folded": psq.psq_folded, "base_checkpoint": "mlp-digits.pt",
           "base_test_accuracy": meta["test_accuracy"]}
    return networks.save_psq_checkpoint(home / networks.psq_checkpoint_name("mlp", "digits", cfg), psq, out)


def test_compare_refuses_hcim_without_its_fine_tune_before_any_work_as_run_does(home, capsys, monkeypatch):
    from cimsim import mappers
    monkeypatch.setattr(mappers, "evaluate", lambda *a, **k: pytest.fail("an architecture ran before the refusal"))
    code, _, err = run_cli(capsys, "compare", "--arch", "isaac,hcim", *SMALL)
    assert_one_line_user_error(code, err, "no PSQ fine-tuned checkpoint mlp-digits-psq-ternary-w8a8c1d1r128t0.5.pt "
                               "for hcim; make it with "
                               "'cimsim finetune --arch hcim --model mlp --dataset digits --set weight_bits=8 "
                               "--set input_bits=8'", "or pass --float-network to run the float network")
    code, _, err = run_cli(capsys, "run", "--arch", "hcim", "--set", "weight_bits=8", "--set", "input_bits=8", *SMALL)
    assert_one_line_user_error(code, err, "no PSQ fine-tuned checkpoint mlp-digits-psq-ternary-w8a8c1d1r128t0.5.pt",
                               "--set weight_bits=8 --set input_bits=8'", "or pass --float-network")


def test_compare_runs_hcims_fine_tune_as_run_does_and_the_float_network_only_when_asked(home, capsys):
    ckpt = _psq_for_hcim8(home)
    same = ["--calibration", "256", "--batch-size", "64"]            # compare's defaults
    code, out, err = run_cli(capsys, "compare", "--arch", "isaac,hcim", *SMALL)
    assert code == 0, err
    rows = json.loads(out)["architectures"]
    assert (rows["hcim"]["network"], rows["hcim"]["network_note"]) == ("fine-tuned", None)
    assert (rows["isaac"]["network"], rows["isaac"]["network_note"]) == ("float", None)
    code, out, err = run_cli(capsys, "run", "--arch", "hcim", "--set", "weight_bits=8", "--set", "input_bits=8",
                             *SMALL, *same)
    assert code == 0, err
    run_report = json.loads(out)
    assert run_report["config"]["checkpoint"] == str(ckpt) and "network_note" not in run_report["config"]
    assert rows["hcim"]["accuracy"] == run_report["accuracy"]         # the same network, mapped the same way

    code, out, err = run_cli(capsys, "compare", "--arch", "isaac,hcim", "--float-network", *SMALL)
    assert code == 0, err
    rows = json.loads(out)["architectures"]
    note = ("the float network without hcim's partial-sum fine-tune (calibrated scales): its accuracy is not hcim's; "
            "'cimsim finetune --arch hcim' makes the fine-tune")
    assert (rows["hcim"]["network"], rows["hcim"]["network_note"]) == ("float, not fine-tuned", note)
    assert (rows["isaac"]["network"], rows["isaac"]["network_note"]) == ("float", None)
    code, out, err = run_cli(capsys, "run", "--arch", "hcim", "--set", "weight_bits=8", "--set", "input_bits=8",
                             "--float-network", *SMALL, *same)
    assert code == 0, err
    run_report = json.loads(out)
    assert run_report["config"]["network_note"] == note
    assert run_report["config"]["checkpoint"] == str(train.SHIPPED_DIR / "mlp-digits.pt")
    assert rows["hcim"]["accuracy"] == run_report["accuracy"]

    code, out, err = run_cli(capsys, "compare", "--arch", "isaac,hcim", "--float-network", *SMALL[:-1])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[2].split()[0] == "accuracy" and lines[2].rstrip().endswith("% *")
    assert lines[3].split() == ["network", "float", "float,", "not", "fine-tuned"]
    assert lines[-1] == "* hcim: " + note
    code, out, err = run_cli(capsys, "run", "--arch", "hcim", "--set", "weight_bits=8", "--set", "input_bits=8",
                             "--float-network", *SMALL[:-1])
    assert code == 0, err
    assert "  network               " + note in out.splitlines()


def test_a_compare_of_architectures_without_fine_tunes_shows_no_network_row(capsys):
    code, out, err = run_cli(capsys, "compare", "--arch", "isaac,cascade", *SMALL[:-1])
    assert code == 0, err
    assert not any(l.startswith("network") or l.startswith("*") for l in out.splitlines())


@pytest.mark.parametrize("argv,needles", [
    (["run", "--arch", "hcim", "--float-network", "--checkpoint", "x.pt"],
     ["--float-network and --checkpoint x.pt both name the network", "give --checkpoint (run as it is), or "
      "--float-network"]),
    (["compare", "--arch", "isaac,hcim", "--float-network", "--model", "mlp", "--input-shape", "1,8,8", "--simulate"],
     ["--float-network goes with runs with accuracy (no --input-shape)"]),
])
def test_float_network_with_what_contradicts_it_is_one_line(capsys, argv, needles):
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_user_error(code, err, *needles)


def test_missing_fine_tune_names_the_float_network_on_the_architectures_that_need_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    x = torch.rand(8, 1, 4, 4)
    hcim, snn = cimsim.arch.get("hcim"), cimsim.arch.get("adcless-snn")
    assert networks.missing_fine_tune(cimsim.arch.get("isaac"), model) is None
    assert networks.missing_fine_tune(hcim, model).startswith("the float network without hcim's partial-sum fine-tune")
    assert networks.missing_fine_tune(snn, model).startswith("the float network without adcless-snn's sense-amp "
                                                             "fine-tune (calibrated sense-amp scales)")
    assert networks.missing_fine_tune(hcim, qat.prepare(model, qat.PSQConfig.from_arch(hcim), [x])) is None
    assert networks.missing_fine_tune(snn, snn_qat.prepare(model, snn_qat.SAConfig.from_arch(snn), [x])) is None
    assert [networks.fine_tune_kind(cimsim.arch.get(a)) for a in ("isaac", "hcim", "adcless-snn", "snn-hpadc")] == \
        [None, "psq", "sa", None]


def test_the_python_compare_labels_a_float_network_on_hcim():
    """compare() given one network (the notebooks' way): the architectures that need a fine-tune and get the float
    network say so in the result and the table; the others are the network as given."""
    from cimsim.cli.compare import compare, table

    model, _ = train.load_checkpoint(train.SHIPPED_DIR / "mlp-digits.pt")
    data = datasets.load("digits")
    loader = list(data.loader("test", batch_size=16, limit=16))
    with pytest.warns(UserWarning, match="hcim: no learned partial-sum scale factors for net.1, net.3, net.5"):
        res = compare(model, ["isaac", "hcim"], loader, list(data.loader("train", batch_size=16, limit=16)),
                      progress=False)
    rows = res["architectures"]
    assert (rows["isaac"]["network"], rows["isaac"]["network_note"]) == (None, None)
    assert rows["hcim"]["network"] == "float, not fine-tuned"
    assert rows["hcim"]["network_note"] == networks.missing_fine_tune(HCIM8, model)
    assert res["reports"]["hcim"].config["network_note"] == rows["hcim"]["network_note"]
    lines = table(res).splitlines()
    assert lines[2].split() == ["network", "as", "given", "float,", "not", "fine-tuned"]
    assert lines[-1] == "* hcim: " + rows["hcim"]["network_note"]
