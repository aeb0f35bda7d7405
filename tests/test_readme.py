"""What the README promises a new user holds: its crossbar example's stated error, its subcommand table, and the
messages a first run may meet (a missing CIFAR-10 says where to unpack it)."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from cimsim.cli import COMMANDS
from cimsim.errors import DatasetError
from cimsim.workloads import datasets

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _python_block() -> str:
    return re.search(r"### Python\n\n```python\n(.*?)```", README, re.S).group(1)


def test_the_crossbar_example_gives_the_error_the_readme_states():
    code = _python_block()
    tile = code[code.index("# one crossbar tile"):]
    scope: dict = {}
    exec(compile("import cimsim\n" + tile, "README.md", "exec"), scope)
    stated = re.search(r"# ([\d.]+) % RMS: the 8-bit ADC's full-scale range\s*\n\s*# alone gives ([\d.]+) %", tile)
    assert scope["err"] == pytest.approx(float(stated.group(1)) / 100, abs=0.0005)   # seed 0: 7.96 % (8.27 % on average over seeds)
    # without the read noise, the ADC alone: the README's second figure
    from cimsim.devices import ReRAM

    spec = dataclasses.replace(scope["spec"], cell=ReRAM(read_sigma_frac=0.0))
    y = scope["cimsim"].Crossbar(scope["W"], spec, seed=0)(scope["x"])
    ref = scope["x"] @ scope["W"].T
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) == pytest.approx(float(stated.group(2)) / 100, abs=0.0005)


def test_the_subcommand_table_lists_what_exists():
    table = re.search(r"^\| subcommand \| what it does \| state \|\n(.*?)\n\n", README, re.M | re.S).group(1)
    rows = dict(re.findall(r"^\| `(\w+)` \| .*? \| (.*?) \|$", table, re.M))
    assert set(rows) == set(COMMANDS)
    assert "`hcim`" in rows["archs"] and "`hcim`" in rows["run"]
    assert "`numba`" in rows["bench"] and "`torch`" in rows["bench"]


def test_a_missing_cifar10_says_where_to_unpack_it(isolated_data, tmp_path):
    with pytest.raises(DatasetError) as exc:
        datasets.load("cifar10", data_dir=tmp_path)
    msg = str(exc.value)
    assert f"looked in {tmp_path}, {tmp_path / 'cifar-10-batches-py'}" in msg
    assert "unpack it into a directory DIR, so that DIR/cifar-10-batches-py/ holds data_batch_1 .. data_batch_5" in msg
    assert msg.endswith("then pass --data-dir DIR or set CIMSIM_DATA=DIR") and "\n" not in msg
