"""The ``cimsim`` command line: one module per subcommand, each with ``register(sub)`` (its options) and
``run(args)`` (its work); :mod:`cimsim.cli.common` holds what they share.

Every subcommand has ``--help``; ``--json`` writes machine-readable output to stdout (progress and
messages go to stderr, a warning as one line). A user error prints one line naming the problem and the fix
and exits 2, without a traceback. Parsing imports nothing heavy, and the subcommands check the names they
are given (:mod:`cimsim.cli.names`) before torch and numba load inside ``run``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from importlib import import_module

from cimsim._version import __version__
from cimsim.cli.common import (EXIT_USER_ERROR, GuardedStdout, Parser, StdoutError, UsageError, out_of_memory,
                               resolve_model)
from cimsim.engine_threads import cpu_product
from cimsim.errors import CimsimError

# the subcommands, in the order 'cimsim --help' lists them
COMMANDS = ("run", "sweep", "compare", "finetune", "archs", "devices", "bench", "train", "plot", "onchip", "linalg")


# the subcommands for which running out of memory is a user error, one line whose fix is a smaller --batch-size
MEMORY_BOUND = ("finetune", "train")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="cimsim", description="Simulate trained PyTorch networks on analog compute-in-memory "
               "hardware: accuracy, energy, latency and area per layer and per component.")
    p.add_argument("--version", action="version", version=f"cimsim {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        import_module(f"cimsim.cli.{name}").register(sub)
    return p


def _warn_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning on the command line: one line on stderr (Python's own adds the file and the source line)."""
    try:
        print(f"cimsim: warning: {' '.join(str(message).split())}", file=sys.stderr)
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    stdout = sys.stdout
    if stdout is not None:   # None: file descriptor 1 closed (prints go nowhere, as Python does)
        sys.stdout = GuardedStdout(stdout)   # a refused write to stdout: one line, exit 2 (StdoutError)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warn_one_line
            return _main(argv)
    finally:
        sys.stdout = stdout


def _stdout_lost(stream) -> None:
    """Standard output refused a write: what it still buffers goes nowhere, so that Python's flush at exit does
    not fail again (with a traceback and exit status 120)."""
    try:
        if stream is sys.__stdout__:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, stream.fileno())
            os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            prog = f"cimsim {args.command}" if args.command else "cimsim"
            raise UsageError(f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see '{prog} --help')")
        if args.command is None:
            # no command is a usage error, as argparse treats a missing required argument: a short usage on
            # stderr and status 2, so that a script sees the failure and stdout stays clean; --help prints the
            # help to stdout with status 0
            raise UsageError(f"usage: cimsim COMMAND [options], COMMAND one of {', '.join(COMMANDS)} "
                             "(see 'cimsim --help', or 'cimsim COMMAND --help')")
        resolve_model(args)   # --model left out: the default, or a --checkpoint's own model
        if getattr(args, "data_dir", None) is not None and getattr(args, "dataset", None):
            from cimsim import datafiles   # before torch loads: a --data-dir that cannot hold the set, in one line
            from cimsim.cli import names
            datafiles.check_data_dir(names.check_dataset(args.dataset), args.data_dir)
        cpu_product()   # a bad $CIMSIM_CPU_PRODUCT is refused before any work, not when the engine first reads it
        status = int(args.func(args) or 0)
        if sys.stdout is not None:
            sys.stdout.flush()   # a refusal of what is still buffered is this command's too (StdoutError)
        return status
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USER_ERROR
    except CimsimError as exc:
        if isinstance(exc, StdoutError) or isinstance(exc.__context__, StdoutError):   # (then a file write failed)
            _stdout_lost(getattr(sys.stdout, "stream", sys.stdout))
        cmd = getattr(locals().get("args"), "command", None)
        msg = " ".join(str(exc).split())   # one line, whatever the message holds
        print(f"cimsim {cmd}: error: {msg}" if cmd else f"cimsim: error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("cimsim: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as exc:
        # training runs out of memory at a batch too large for the machine: one line with the fix, no traceback
        args = locals().get("args")
        cmd = getattr(args, "command", None)
        line = out_of_memory(exc, getattr(args, "batch_size_used", getattr(args, "batch_size", None))) \
            if cmd in MEMORY_BOUND else None
        if line is None:
            raise
        print(f"cimsim {cmd}: error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        return 0


__all__ = ["main", "build_parser", "EXIT_USER_ERROR"]
