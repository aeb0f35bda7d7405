"""Errors a user can cause and fix.

Every exception raised for bad input (a wrong config value, a missing file, an unknown
name) derives from :class:`CimsimError`. Its message is one line that names the problem and
the fix; the CLI prints it and exits with status 2, with no traceback. Anything else that
escapes is a bug in cimsim and keeps its traceback.
"""


class CimsimError(Exception):
    """A user error: the message names the problem and how to fix it."""


class ConfigError(CimsimError, ValueError):
    """A configuration value is unknown or out of range."""


class DatasetError(CimsimError):
    """A dataset is missing or its files are corrupt."""


class CheckpointError(CimsimError):
    """A checkpoint is missing, corrupt or does not fit the model."""


def check_seed(seed) -> None:
    """A seed is a non-negative integer (or None: fresh entropy); anything else is one ConfigError."""
    import numbers

    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise ConfigError(f"seed must be a non-negative integer (or None), got {seed!r}")


class NotBuiltYet(CimsimError):
    """A part of cimsim that a later milestone fills in."""


def _internal_prefixes() -> tuple[str, ...]:
    """The folders whose frames a warning skips: cimsim's packages (its top-level folders), torch, contextlib."""
    import contextlib
    import os
    import sys

    names = ("cimsim", "cimsim.devices", "cimsim.arch", "cimsim.mappers", "cimsim.workloads", "torch")
    dirs = [os.path.dirname(sys.modules[n].__file__) + os.sep for n in names
            if getattr(sys.modules.get(n), "__file__", None)]
    return (*dirs, contextlib.__file__)


def warn_user(message, category=UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside cimsim and torch (the user's code), however many
    decorators (``@torch.no_grad``, ...) and cimsim frames lie between: filters by module then match the user's."""
    import sys
    import warnings

    prefixes, frame, level = _internal_prefixes(), sys._getframe(1), 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(prefixes):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
