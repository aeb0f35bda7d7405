"""User-facing messages of a user audit: refusals in option terms, no Python internals (class names,
``<lambda>``, exception text), exit status 2, one line."""

from dataclasses import fields

import pytest

import cimsim.arch as archs
from _cli_helpers import assert_one_line_user_error, run_cli
from cimsim.arch import params
from cimsim.devices import catalog
from cimsim.errors import ConfigError

PYTHON_WORDS = ("__init__", "object has no attribute", "unexpected keyword", "<lambda>", "Error:")


@pytest.mark.parametrize("argv,needles", [
    (["run", "--set", "adc=reram"],
     ["isaac: adc takes a converter kind (sar-adc, flash-adc", "not 'reram' (a cell)"]),
    (["run", "--set", "dac=sar-adc"], ["isaac: dac takes a DAC kind (dac), not 'sar-adc' (a converter)"]),
    (["run", "--set", "cell=bus"], ["cell takes a cell kind (ideal, reram, mosfet, domain-wall), not 'bus' (a bus)"]),
    (["run", "--arch", "cascade", "--set", "adc=sar-adc"],
     ["cascade: adc = sar-adc does not fit cascade: its adc takes buffered-sar-adc"]),
    (["run", "--set", "adc=ideal-readout"], ["adc = ideal-readout does not fit isaac: its adc takes one of sar-adc"]),
])
def test_a_component_of_the_wrong_role_is_refused_by_role(capsys, argv, needles):
    code, out, err = run_cli(capsys, *argv, "--limit", "5")
    assert_one_line_user_error(code, err, *needles)
    assert not any(w in err for w in PYTHON_WORDS), err


def test_no_component_swap_leaks_a_python_message():
    for name in archs.names():
        arch = archs.get(name)
        for f in fields(arch):
            if not params._is_component(f):
                continue
            for kind in catalog.kinds():
                try:
                    params.apply(arch, {f.name: kind})
                except ConfigError as exc:
                    assert not any(w in str(exc) for w in PYTHON_WORDS), (name, f.name, kind, str(exc))


SHIPPED = "workloads/checkpoints/lenet5-fashion-mnist"


def _bad_checkpoints(tmp_path):
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    data = (root / f"{SHIPPED}.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[:20000])
    (tmp_path / "rand.pt").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "x.json").write_text('{"a": 1}')
    return {
        "folder": (tmp_path, "is a folder, not a file"),
        "device": ("/dev/null", "is not a regular file"),
        "random": (tmp_path / "rand.pt", "is not a checkpoint (not a torch zip archive"),
        "json": (tmp_path / "x.json", "is not a checkpoint (not a torch zip archive"),
        "metadata": (root / f"{SHIPPED}.json", "is the metadata written beside a checkpoint"),
        "truncated": (tmp_path / "trunc.pt", "is damaged (truncated"),
    }


@pytest.mark.parametrize("case", ["folder", "device", "random", "json", "metadata", "truncated"])
@pytest.mark.parametrize("arch", ["isaac", "hcim", "adcless-snn"])
def test_a_checkpoint_that_is_no_checkpoint_is_named_for_what_it_is(capsys, tmp_path, case, arch):
    path, needle = _bad_checkpoints(tmp_path)[case]
    code, out, err = run_cli(capsys, "run", "--arch", arch, "--checkpoint", path, "--limit", "5")
    assert_one_line_user_error(code, err, needle)
    assert "does not exist" not in err and "OSError" not in err and "Python objects" not in err


@pytest.mark.parametrize("argv,needles", [
    (["compare", "--node", "abc"], ["argument --node: expected a technology node in nm (e.g. 32) or 'own', got 'abc'"]),
    (["devices", "show", "sar-adc", "--node", "x"], ["argument --node: expected a number, got 'x'"]),
    (["archs", "isaac"], ["'isaac' is not an action: to show an architecture, run 'cimsim archs show isaac'"]),
    (["archs", "isac"], ["run 'cimsim archs show isaac'"]),
    (["archs", "show"], ["'show' needs an architecture: one of digital, isaac"]),
    (["devices", "sar-adc"], ["'sar-adc' is not an action: to show a device, run 'cimsim devices show sar-adc'"]),
    (["devices", "nonsense"], ["unknown action 'nonsense'", "'cimsim devices show KIND'"]),
    (["devices", "plot"], ["'devices plot' needs an ADC kind: sar-adc or flash-adc"]),
    (["devices", "--bits", "4"], ["--bits sets one model's parameters", "'cimsim devices show sar-adc --bits ...'"]),
    (["linalg"], ["linalg needs an action: 'bench'", "or 'kfac-cost'"]),
    (["linalg", "bench", "--network", "vgg16"],
     ["--network is an option of 'cimsim linalg kfac-cost', not of 'bench'"]),
    (["linalg", "kfac-cost", "--size", "8", "--seed", "1"],
     ["--size, --seed are options of 'cimsim linalg bench', not of 'kfac-cost'"]),
    (["linalg", "bench", "--cond", "2,,3"], ["got '2,,3' (an empty item: drop the extra comma)"]),
    (["linalg", "kfac-cost", "--kappa", "3,"], ["(an empty item"]),
    (["linalg", "bench", "--method", "richardson", "--window", "2"], ["drop --window or use --method gcr"]),
    ([], ["usage: cimsim COMMAND [options], COMMAND one of run, sweep", "'cimsim --help'"]),
])
def test_usage_errors_name_the_problem_in_option_terms(capsys, argv, needles):
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_user_error(code, err, *needles)
    assert out == "" and not any(w in err for w in PYTHON_WORDS), err


def test_no_argparse_type_is_named_by_its_python_name(capsys):
    """Every option with a type refuses a word with what it expects, never 'invalid <lambda> value' or 'invalid
    float value'."""
    from cimsim.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, sp in sub.choices.items():
        for action in sp._actions:
            if action.type is None or not action.option_strings:
                continue
            code, out, err = run_cli(capsys, name, action.option_strings[-1], "x!y")
            assert code == 2 and "invalid" not in err and "<lambda>" not in err, (name, err)


@pytest.mark.parametrize("argv,needles", [
    (["finetune", "--average-lr-scale", "0"], ["argument --average-lr-scale: expected a number in (0, 1], got '0'"]),
    (["finetune", "--average-lr-scale", "1.5"], ["argument --average-lr-scale: expected a number in (0, 1], got '1.5'"]),
    (["finetune", "--average", "5", "--epochs", "2", "--limit", "5"],
     ["--average 5 would average all 2 epochs and leave none to train before it: give --average below --epochs"]),
    (["finetune", "--arch", "isaac"], ["(hcim's partial sums, adcless-snn's sense amps)", "'cimsim run --arch isaac'"]),
])
def test_finetune_refusals_speak_in_options(capsys, argv, needles):
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_user_error(code, err, *needles)
    assert "FinetuneRecipe" not in err and "[0, 1]" not in err


def _help(capsys, *argv) -> str:
    from cimsim.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_texts_say_what_options_do(capsys):
    train_help = _help(capsys, "train")
    assert "NAME.json" in train_help and "NAME.prev.pt" in train_help
    assert "train on the first N training examples only" in train_help
    finetune_help = _help(capsys, "finetune")
    assert "NAME.prev.pt" in finetune_help and "fine-tune on the first N training examples only" in finetune_help
    assert "mnist needs --data-dir" not in _help(capsys, "onchip")
    bench_help = _help(capsys, "bench")
    assert "issue" not in bench_help and "temporary folder" in bench_help
    assert "use only the first N test examples" in _help(capsys, "run")


def test_the_sweep_file_benchmark_names_its_window(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    code, out, err = run_cli(capsys, "bench", "--sweep-file", "3")
    assert code == 0 and "over the first 3," in out and "over the last 3 " in out and "first 100" not in out
