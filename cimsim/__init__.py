"""cimsim: accuracy, energy, latency and area of trained PyTorch networks on analog compute-in-memory hardware.

The public façade. Heavy modules (torch, numba) load on first use, so ``import cimsim`` and the CLI's
``--help`` stay fast.
"""

from importlib import import_module

from cimsim._version import __version__
from cimsim.errors import CimsimError, ConfigError, DatasetError, CheckpointError

_LAZY = {
    "Report": ("cimsim.report", "Report"),
    "EventLedger": ("cimsim.ledger", "EventLedger"),
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
