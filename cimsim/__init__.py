"""cimsim: accuracy, energy, latency and area of trained PyTorch networks on analog compute-in-memory hardware.

The public façade. Heavy modules (torch, numba) load on first use, so ``import cimsim`` and the CLI's
``--help`` stay fast.
"""

import sys as _sys
from importlib import abc as _abc
from importlib import import_module
from importlib import util as _util
from pathlib import Path as _Path

from cimsim._version import __version__
from cimsim.errors import CimsimError, ConfigError, DatasetError, CheckpointError

# setup.cfg maps the repo's sibling folders (devices/, arch/, mappers/, workloads/) into this namespace.
# Installed, they sit inside the package (a wheel) or an editable install's finder maps them. Imported
# straight from a source checkout (the repo root on sys.path, no install), a finder maps exactly those four
# names to the folders beside this package, so every module loads once (the root itself is never put on the
# package path: that made a second copy of each module reachable as cimsim.cimsim.*).
_ROOT = _Path(__file__).resolve().parent.parent
_SIBLINGS = ("devices", "arch", "mappers", "workloads")


class _SiblingFolders(_abc.MetaPathFinder):
    """``cimsim.devices`` -> ``<repo>/devices`` (and arch, mappers, workloads) in a source checkout."""

    def find_spec(self, fullname, path=None, target=None):
        head, _, name = fullname.partition(".")
        if head != __name__ or name not in _SIBLINGS:
            return None
        folder = _ROOT / name
        return _util.spec_from_file_location(fullname, folder / "__init__.py",
                                             submodule_search_locations=[str(folder)])


if (_ROOT / "setup.cfg").is_file() and all((_ROOT / f / "__init__.py").is_file() for f in _SIBLINGS):
    if not any(isinstance(f, _SiblingFolders) for f in _sys.meta_path):
        _sys.meta_path.insert(0, _SiblingFolders())

_LAZY = {
    "Report": ("cimsim.report", "Report"),
    "EventLedger": ("cimsim.ledger", "EventLedger"),
    "Crossbar": ("cimsim.crossbar", "Crossbar"),
    "CrossbarSpec": ("cimsim.spec", "CrossbarSpec"),
    "map": ("cimsim.mappers.mapper", "map_model"),
    "arch": ("cimsim.arch", None),
    "devices": ("cimsim.devices", None),
    "mappers": ("cimsim.mappers", None),
    "workloads": ("cimsim.workloads", None),
}

__all__ = ["__version__", "CimsimError", "ConfigError", "DatasetError", "CheckpointError", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        module, attr = _LAZY[name]
        mod = import_module(module)
        value = mod if attr is None else getattr(mod, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cimsim' has no attribute {name!r}")
