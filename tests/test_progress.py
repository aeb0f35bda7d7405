"""Progress reporting: plain lines on a non-terminal stream, silence when disabled; and its wiring into run,
the digital reference, training and sweeps."""

import io
import json

from _cli_helpers import run_cli

from cimsim.progress import fmt_duration, progress, stage


def test_plain_lines_when_not_a_terminal(monkeypatch):
    monkeypatch.setenv("CIMSIM_PROGRESS_SECONDS", "0")
    out = io.StringIO()
    items = list(progress(range(4), desc="work", unit="batches", stream=out))
    assert items == [0, 1, 2, 3]
    lines = out.getvalue().splitlines()
    assert lines[0] == "cimsim: work: started, 4 batches"
    assert lines[1].startswith("cimsim: work: 1/4 batches (25 %), ") and "left" in lines[1]
    assert lines[-1].startswith("cimsim: work: 4/4 batches (100 %)") and lines[-1].endswith(", done")


def test_lines_are_periodic(monkeypatch):
    monkeypatch.setenv("CIMSIM_PROGRESS_SECONDS", "3600")
    out = io.StringIO()
    list(progress(range(100), desc="work", stream=out))
    assert len(out.getvalue().splitlines()) == 2   # started and done only


def test_manual_updates_and_stage(monkeypatch):
    monkeypatch.setenv("CIMSIM_PROGRESS_SECONDS", "0")
    out = io.StringIO()
    bar = progress(desc="sweep", total=2, unit="points", stream=out)
    bar.update()
    bar.update()
    bar.close()
    bar.close()   # closing twice says done once
    assert out.getvalue().count("done") == 1
    with stage("map lenet5", stream=out):
        pass
    assert "cimsim: map lenet5 ...\n" in out.getvalue() and "map lenet5: done in 0 s" in out.getvalue()


def test_disabled_is_silent():
    out = io.StringIO()
    assert list(progress(range(3), desc="x", enabled=False, stream=out)) == [0, 1, 2]
    with stage("x", enabled=False, stream=out):
        pass
    assert out.getvalue() == ""


def test_durations():
    assert fmt_duration(12.4) == "12 s"
    assert fmt_duration(210) == "3.5 min"
    assert fmt_duration(7200) == "2.0 h"


def test_each_item_and_postfix(monkeypatch):
    monkeypatch.setenv("CIMSIM_PROGRESS_SECONDS", "3600")
    out = io.StringIO()
    bar = progress(desc="sweep", total=3, unit="points", stream=out, each=True)
    for key in ("a", "b", "c"):
        bar.set_postfix_str(f"{key} done")
        bar.update()
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "cimsim: sweep: started, 3 points"
    assert lines[1].startswith("cimsim: sweep: 1/3 points (33 %), ") and lines[1].endswith(" left; a done")
    # the last item's line is the closing one: said once, not twice
    assert lines[3].startswith("cimsim: sweep: 3/3 points (100 %), ") and lines[3].endswith(" s; c done, done")
    assert len(lines) == 4


# ------------------------------------------------------------------------------------------- the wiring
# Under pytest stderr is not a terminal: every run prints plain start / progress / done lines.

def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("cimsim: ")]


def test_run_prints_mapping_calibration_and_simulation_progress_even_with_json(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("CIMSIM_PROGRESS_SECONDS", "0")
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path))
    code, out, err = run_cli(capsys, "run", "--arch", "isaac", "--model", "mlp", "--dataset", "digits", "--limit",
                             "40", "--batch-size", "20", "--calibration", "40", "--json")
    assert code == 0, err
    assert json.loads(out)["n_examples"] == 40   # stdout stays pure JSON
    lines = _lines(err)
    assert lines[0] == "cimsim: isaac map: calibration pass: started, 2 batches"
    assert lines[1].startswith("cimsim: isaac map: calibration pass: 1/2 batches (50 %), ") and "left" in lines[1]
    assert lines[2].startswith("cimsim: isaac map: calibration pass: 2/2 batches (100 %)") and lines[2].endswith("done")
    assert lines[3] == "cimsim: isaac map: program and calibrate: started, 3 layers"   # the last batch said once
    assert any(line.startswith("cimsim: isaac map: program and calibrate: 3/3 layers (100 %)")
               and line.endswith(", done") for line in lines)
    sim = [line for line in lines if "isaac simulate" in line]
    assert sim[0] == "cimsim: isaac simulate: started, 2 batches" and sim[-1].endswith(", done")


def test_the_digital_reference_and_training_report_progress(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("CIMSIM_PROGRESS_SECONDS", "3600")
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path))
    code, out, err = run_cli(capsys, "run", "--arch", "digital", "--model", "mlp", "--dataset", "digits")
    assert code == 0, err
    lines = _lines(err)
    assert lines[0] == "cimsim: digital reference: started, 8 batches"   # 450 test examples, 64 a batch
    assert lines[1].startswith("cimsim: digital reference: 8/8 batches (100 %), ") and lines[1].endswith(" s, done")
    code, out, err = run_cli(capsys, "train", "--model", "mlp", "--dataset", "iris", "--epochs", "2", "--json")
    assert code == 0, err
    lines = _lines(err)
    assert lines[0] == "cimsim: train mlp on iris: started, 14 steps"
    assert lines[1].startswith("cimsim: train mlp on iris: 14/14 steps (100 %)")
    assert lines[1].endswith(" %, done") and "; epoch 2/2: loss " in lines[1]


def test_a_sweep_prints_a_line_per_finished_point_with_what_is_left(capsys, monkeypatch, tmp_path):
    from _sweep_fakes import fake_evaluate
    from cimsim import sweep

    monkeypatch.setenv("CIMSIM_PROGRESS_SECONDS", "3600")
    settings = sweep.Settings(model="lenet5", dataset="fashion-mnist")
    points = sweep.make_points(["isaac"], [4, 6, 8], 1)
    sweep.run_sweep(tmp_path / "s.h5", points, settings, evaluate_point=fake_evaluate)
    lines = _lines(capsys.readouterr().err)
    assert lines[0] == "cimsim: sweep: started, 3 points"
    done = [line for line in lines if line.startswith("cimsim: sweep: ") and "/3 points" in line]
    assert [d.split(" points")[0] for d in done] == ["cimsim: sweep: 1/3", "cimsim: sweep: 2/3",
                                                     "cimsim: sweep: 3/3"]
    assert "about" in done[0] and done[0].endswith("left; isaac_adc4_seed0 done")
    assert done[2].endswith("; isaac_adc8_seed0 done, done")


def test_the_python_api_stays_silent_with_progress_false(capsys):
    import torch
    from torch import nn

    import cimsim

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    x, y = torch.rand(6, 1, 4, 4), torch.zeros(6, dtype=torch.long)
    mapped = cimsim.map(model, cimsim.arch.get("isaac", cell="ideal"), calibration=x, progress=False)
    mapped.evaluate([(x, y)], progress=False)
    assert capsys.readouterr().err == ""
    mapped.evaluate([(x, y)])   # by default it reports
    assert capsys.readouterr().err.startswith("cimsim: isaac simulate: started, 1 batches")
