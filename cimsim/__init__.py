"""cimsim: accuracy, energy, latency and area of trained PyTorch networks on analog compute-in-memory hardware.

The public façade. Heavy modules (torch, numba) load on first use, so ``import cimsim`` and the CLI's
``--help`` stay fast.
"""

from importlib import import_module
from pathlib import Path as _Path

from cimsim._version import __version__
from cimsim.errors import CimsimError, ConfigError, DatasetError, CheckpointError

# setup.cfg maps the repo's sibling folders (devices/, arch/, mappers/, workloads/) into this namespace.
# Installed, they sit inside the package. Imported straight from a source checkout (the repo root on
# sys.path, e.g. a wheel installed but Python started in the repo), add the root to the package path so
# `cimsim.devices` still resolves to devices/.
_ROOT = _Path(__file__).resolve().parent.parent
if (_ROOT / "setup.cfg").is_file() and (_ROOT / "devices" / "__init__.py").is_file():
    __path__.append(str(_ROOT))  # noqa: F821 (the package's own __path__)

_LAZY = {
    "Report": ("cimsim.report", "Report"),
    "EventLedger": ("cimsim.ledger", "EventLedger"),
    "Crossbar": ("cimsim.crossbar", "Crossbar"),
    "CrossbarSpec": ("cimsim.crossbar", "CrossbarSpec"),
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
