"""The citations are resolvable inside the repository: nothing in the package, its notebooks and docs, or the
output of ``cimsim devices`` cites a file outside it (users do not have the project's shared notes), and every
``docs/references.md#anchor`` a citation names exists."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

from _cli_helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent
REFERENCES = ROOT / "docs" / "references.md"
SCANNED = ("cimsim", "devices", "arch", "mappers", "workloads", "notebooks", "docs")
SUFFIXES = {".py", ".ipynb", ".md", ".cfg"}
# the project's shared notes, however reached, and relative paths (resolved from the citing file: a path that
# climbs out of the repository is outside it; docs/ including ../README.md is not)
NOTES = re.compile(r"papers\.md")
RELATIVE = re.compile(r"(?:\.\./)+[\w./-]*")
# in command output there is no citing file: any relative climb is outside
OUTSIDE = re.compile(r"\.\./|papers\.md")
ANCHOR = re.compile(r"references\.md#([A-Za-z0-9_-]+)")
# Files whose citations their owners move to docs/references.md in their own branches (issue 15, item 5).
# Remove an entry once its file is clean.
ELSEWHERE: set[str] = set()


def _files():
    out = [ROOT / name for name in ("README.md", "BENCHMARKS.md", "setup.cfg") if (ROOT / name).is_file()]
    for folder in SCANNED:
        out += [p for p in sorted((ROOT / folder).rglob("*"))
                if p.suffix in SUFFIXES and p.is_file() and "_build" not in p.parts and "__pycache__" not in p.parts]
    return out


def _anchors() -> set[str]:
    ids = re.findall(r'<a id="([^"]+)"></a>', REFERENCES.read_text())
    assert len(ids) == len(set(ids)), "an anchor of docs/references.md is defined twice"
    return set(ids)


def test_no_file_of_the_package_cites_a_path_outside_the_repository():
    files = _files()
    assert len(files) > 50   # the scan sees the package
    bad = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel in ELSEWHERE:
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            climbs = [m for m in RELATIVE.findall(line) if ROOT not in (path.parent / m).resolve().parents]
            if NOTES.search(line) or climbs:
                bad.append(f"{rel}:{i}: {line.strip()[:100]}")
    assert not bad, "citations outside the repository (cite docs/references.md#...):\n" + "\n".join(bad)


def test_every_cited_anchor_of_the_references_exists():
    anchors = _anchors()
    assert {"isaac", "hcim", "adc-less-snn", "neurosim", "mosfet-synapse", "domain-wall-synapse"} <= anchors
    cited = {}
    for path in _files():
        for name in ANCHOR.findall(path.read_text(errors="replace")):
            cited.setdefault(name, path.relative_to(ROOT).as_posix())
    assert len(cited) >= 5
    missing = {name: where for name, where in cited.items() if name not in anchors}
    assert not missing, f"anchors cited but not defined in docs/references.md: {missing}"


def test_in_page_links_of_the_references_resolve():
    text = REFERENCES.read_text()
    links = set(re.findall(r"\]\(#([A-Za-z0-9_-]+)\)", text))
    assert links and links <= _anchors()


def _module_of(class_name: str) -> str:
    for module in ("cell", "reram", "mosfet", "domain_wall", "converters", "peripherals", "analog_accumulators"):
        if hasattr(importlib.import_module(f"cimsim.devices.{module}"), class_name):
            return f"devices/{module}.py"
    raise AssertionError(f"no device module defines {class_name}")


def test_cimsim_devices_output_cites_nothing_outside_the_repository(capsys):
    code, out, err = run_cli(capsys, "devices", "--json")
    assert code == 0, err
    models = json.loads(out)
    assert len(models) >= 10
    checked = 0
    for m in models:
        if _module_of(m["class"]) in ELSEWHERE:
            continue
        for p in m["params"]:
            assert not OUTSIDE.search(p["source"]), (m["kind"], p["name"], p["source"])
            for name in ANCHOR.findall(p["source"]):
                assert name in _anchors(), (m["kind"], p["name"], name)
            checked += 1
    assert checked >= 40


@pytest.mark.parametrize("kind", ["reram", "ideal", "mosfet", "domain-wall"])
def test_device_citations_point_into_the_references(capsys, kind):
    code, out, err = run_cli(capsys, "devices", "show", kind, "--json")
    assert code == 0, err
    assert "docs/references.md#" in out
