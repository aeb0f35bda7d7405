"""The repo's top-level folders import as one namespace, installed or straight from the checkout."""

import configparser
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"cimsim.devices": "devices", "cimsim.arch": "arch", "cimsim.mappers": "mappers",
          "cimsim.workloads": "workloads"}


def test_setup_cfg_maps_the_folders_into_the_namespace():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = [l.strip() for l in cfg["options"]["package_dir"].strip().splitlines()]
    mapping = dict(l.replace(" ", "").split("=") for l in lines)
    assert mapping == {"cimsim": "cimsim", **MAPPED}
    assert set(cfg["options.extras_require"]) >= {"test", "dist", "notebooks"}
    assert "cimsim = cimsim.cli:main" in cfg["options.entry_points"]["console_scripts"]


def test_constraints_pin_the_cpu_torch():
    pins = [l.strip() for l in (ROOT / "constraints.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert "torch==2.13.0" in pins


def test_imports_from_a_plain_source_checkout():
    """No install at all: the checkout's root on sys.path, site's .pth hooks (the editable finder) off."""
    deps = [p for p in site.getsitepackages()]
    code = (f"import sys; sys.path[:0] = [{str(ROOT)!r}] + {deps!r}\n"
            "import cimsim, cimsim.devices, cimsim.arch, cimsim.mappers, cimsim.workloads\n"
            "for name, folder in " + repr(MAPPED) + ".items():\n"
            "    mod = sys.modules[name]\n"
            f"    assert mod.__file__ == {str(ROOT)!r} + '/' + folder + '/__init__.py', (name, mod.__file__)\n"
            "print('ok')")
    res = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd="/")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


@pytest.mark.slow
def test_built_wheel_holds_the_namespace_and_the_checkpoints(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True)
    wheel = next(tmp_path.glob("cimsim-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("cli", "devices", "arch", "mappers", "workloads"):
        assert f"cimsim/{folder}/__init__.py" in names
    shipped = {p.name for p in (ROOT / "workloads" / "checkpoints").iterdir()}
    assert {f"cimsim/workloads/checkpoints/{n}" for n in shipped} <= names
    assert not any(n.startswith(("devices/", "arch/", "tests/")) for n in names)


@pytest.mark.parametrize("plain", [True, False], ids=["plain checkout", "installed"])
def test_every_module_loads_once(plain):
    """One copy of every module: nothing reachable as cimsim.cimsim.* (the checkout root is not on the package
    path), and the error classes are the same objects however they are reached."""
    deps = [p for p in site.getsitepackages()]
    head = (f"import sys; sys.path[:0] = [{str(ROOT)!r}] + {deps!r}\n" if plain else "import sys\n")
    code = (head + "import importlib, cimsim, cimsim.arch, cimsim.mappers, cimsim.workloads, cimsim.cli\n"
            "from cimsim.errors import ConfigError\n"
            "for name in ('cimsim.cimsim', 'cimsim.cimsim.errors', 'cimsim.tests', 'cimsim.notebooks'):\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except ModuleNotFoundError:\n"
            "        continue\n"
            "    raise SystemExit(f'{name} is importable: a second copy')\n"
            "files = [m.__file__ for n, m in list(sys.modules.items()) if n.startswith('cimsim') and getattr(m, '__file__', None)]\n"
            "assert len(files) == len(set(files)), sorted(f for f in files if files.count(f) > 1)\n"
            "assert cimsim.ConfigError is ConfigError is sys.modules['cimsim.arch.base'].ConfigError\n"
            "print('ok')")
    res = subprocess.run([sys.executable, *(["-S"] if plain else []), "-c", code], capture_output=True, text=True,
                         cwd="/")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
