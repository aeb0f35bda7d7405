"""Progress reporting: plain lines on a non-terminal stream, silence when disabled."""

import io

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
