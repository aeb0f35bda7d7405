"""What every subcommand of the ``cimsim`` command line shares: one-line usage errors, argument types,
up-front checks of output folders, and strict JSON output."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from cimsim.errors import CimsimError, ConfigError

EXIT_USER_ERROR = 2


class UsageError(Exception):
    """A malformed command line (argparse's complaint, made one line)."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse's own prints the usage block and the message)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")

    def _get_value(self, action, arg_string):
        # argparse names a type that raised ValueError by its Python name ('invalid <lambda> value', 'invalid float
        # value'); say what the option expects instead: a type's own ``expects`` text, or the number it parses
        type_func = self._registry_get("type", action.type, action.type)
        if not callable(type_func):
            return super()._get_value(action, arg_string)
        try:
            return type_func(arg_string)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentError(action, str(exc)) from None
        except (TypeError, ValueError):
            what = getattr(type_func, "expects", None) or _EXPECTED.get(type_func, "a valid value")
            raise argparse.ArgumentError(action, f"expected {what}, got {arg_string!r}") from None


_EXPECTED = {int: "a whole number", float: "a number"}


def node_or_own(text: str) -> str:
    """A technology node in nm (a positive number) or 'own' (each architecture's own node)."""
    if text.strip().lower() == "own":
        return "own"
    value = _float(text, "a technology node in nm (e.g. 32) or 'own'")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a technology node in nm (e.g. 32) or 'own', got {text!r}")
    return str(value)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def bounded_int(low: int, high: int, why: str):
    """An argparse type: a whole number in [low, high]; ``why`` says where the upper bound comes from."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number in [{low}, {high:,}], got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number in [{low}, {high:,}] ({why}), got {value:,}")
        return value
    return parse


# Upper bounds of sizes set on the command line: memory follows them, so they are bounded where they are read.
MAX_BATCH = 65_536          # examples per batch (our bound: a 65,536-image CIFAR batch of activations is GBs)
MAX_CALIBRATION = 10_000    # calibration examples: every mapped layer's inputs for all of them stay in memory
batch_size = bounded_int(1, MAX_BATCH, "examples per batch; memory grows with it")
BATCH_HELP = ("examples per batch (default 64 on the CPU; with --device cuda sized to the GPU: the largest power of "
              "two up to 1024 whose estimated working set fits a quarter of its memory)")


def batch_for(command: str, requested: int | None, model, input_shape: tuple[int, ...], device: str) -> int:
    """``--batch-size`` where given, else the device's default (:func:`cimsim.mappers.batching.default_batch`),
    said on stderr where it was sized to a GPU."""
    if requested is not None:
        return requested
    from cimsim.mappers.batching import default_batch   # torch: loaded by then

    batch, how = default_batch(model, input_shape, device)
    if device == "cuda":
        print(f"cimsim {command}: batch size {batch} ({how}; --batch-size sets it)", file=sys.stderr)
    return batch
# The one rule of 'cimsim run' and 'cimsim compare' for architectures whose readout needs a fine-tuned network
# (cimsim.networks.load_network; 'cimsim sweep' follows it too, without the opt-in)
FINE_TUNE_RULE = ("hcim and adcless-snn run the network 'cimsim finetune --arch ARCH' made for their setting (found by "
                  "model and dataset); where there is none, hcim is refused (a float network's accuracy through its "
                  "comparators is not hcim's) and adcless-snn maps the float network with calibrated sense-amp scales "
                  "and says so. --float-network maps the float network on every architecture instead; the output "
                  "then says whose accuracy it is.")
FLOAT_NETWORK_HELP = ("map the float network (found by model and dataset) even on hcim and adcless-snn, not the "
                      "network fine-tuned for their readout: their accuracy is then the float network's with "
                      "calibrated scales, and the output says so (what the fine-tune buys)")
calibration_size = bounded_int(1, MAX_CALIBRATION, "calibration keeps every layer's inputs in memory")


def nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r} (not finite)")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates): nan, inf, 0 and negatives are refused at parsing."""
    value = _float(text, "a finite number > 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def nonneg_float(text: str) -> float:
    """A finite number >= 0."""
    value = _float(text, "a finite number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A finite number in [0, 1] (noise as a fraction of a range)."""
    value = _float(text, "a number in [0, 1]")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def output_path(text: str | None, option: str = "--out", **kw) -> Path | None:
    """An output path checked before any work (:func:`cimsim.fileio.check_output_path`); None stays None,
    an empty one is refused."""
    if text is None:
        return None
    from cimsim.fileio import check_output_path
    return check_output_path(text, option, **kw)


def checkpoint_output(text: str | None, option: str = "--out") -> Path | None:
    """A checkpoint's --out, checked with the JSON metadata written beside it (``NAME.json``)."""
    out = output_path(text, option, example="model.pt")
    if out is not None:
        if out.suffix.lower() == ".json":
            raise ConfigError(f"{option} {out} ends in .json, the name of the metadata written beside a checkpoint; "
                              "give a name ending in .pt")
        output_path(str(out.with_suffix(".json")), f"{option}'s metadata file")
    return out


def require_device(device: str) -> None:
    """'cuda' only where torch sees a GPU (else one line, before any work)."""
    if device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: torch sees no CUDA GPU on this machine; use --device cpu")


def key_value(text: str) -> tuple[str, str]:
    if "=" not in text or text.startswith("="):
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


# the model of a run that names none (our choice since the first release: the smallest shipped convolutional network,
# the README's examples)
DEFAULT_MODEL = "lenet5"


def data_options(sp, limit_help: str = "use only the first N test examples") -> None:
    """--model, --dataset, --data-dir, --limit and --json, as the network-running subcommands take them. --model left
    out is :data:`DEFAULT_MODEL`, or a --checkpoint's own model (:func:`resolve_model`, :func:`model_to_check`)."""
    from cimsim.cli.names import DATASETS, EVENT_DATASETS, MODELS   # the registries' names (tests/test_cli_names.py)

    sp.add_argument("--model", default=None,
                    help=f"zoo model: {', '.join(MODELS)} (spiking: the snn_ ones; default {DEFAULT_MODEL}, or with "
                         "--checkpoint the checkpoint's own)")
    sp.set_defaults(model_given=None)   # set by resolve_model
    sp.add_argument("--dataset", default="fashion-mnist",
                    help=f"{', '.join(DATASETS)} (event data: {', '.join(EVENT_DATASETS)}; default fashion-mnist)")
    sp.add_argument("--data-dir", help="directory with the dataset files (overrides $CIMSIM_DATA)")
    sp.add_argument("--limit", type=positive_int, metavar="N", help=limit_help)
    sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def resolve_model(args) -> None:
    """For a subcommand with :func:`data_options`: ``args.model_given`` records whether --model was given, and a
    --model left out becomes :data:`DEFAULT_MODEL`."""
    if "model_given" in vars(args) and args.model_given is None:
        args.model_given = args.model is not None
        if args.model is None:
            args.model = DEFAULT_MODEL


def model_to_check(args) -> str | None:
    """The model a --checkpoint must hold: --model where given, None where it was left out (the checkpoint's own
    is used); without --checkpoint, the model to find a checkpoint for."""
    return args.model if args.model_given or not getattr(args, "checkpoint", None) else None


def strict_json(obj):
    """Non-finite floats become null: strict JSON parsers (JavaScript, jq) reject Infinity and NaN."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


class StdoutError(CimsimError):
    """Standard output refused a write (a full disk or device behind a redirection, an I/O error)."""


class GuardedStdout:
    """``sys.stdout`` while a command runs: a write or flush the system refuses becomes :class:`StdoutError` (one
    line, exit 2); a closed pipe (``| head``) stays BrokenPipeError, which the command line ends quietly."""

    def __init__(self, stream):
        self.stream = stream

    def _guard(self, op, *a):
        try:
            return op(*a)
        except BrokenPipeError:
            raise
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StdoutError(f"cannot write to standard output ({reason}); send it where there is room, "
                              "e.g. another file") from None

    def write(self, text):
        return self._guard(self.stream.write, text)

    def flush(self):
        return self._guard(self.stream.flush)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def show_then_write(show, write) -> None:
    """Show a result on stdout, then write its file: a failed write follows the result already shown, and a result
    that stdout refused is still written before that error is raised."""
    try:
        show()
        sys.stdout.flush()
    except StdoutError:
        write()
        raise
    write()


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(strict_json(obj), indent=2, default=str, allow_nan=False) + "\n")


def add_command(sub, name: str, help_: str, func, desc: str | None = None):
    """A subcommand parser whose ``func`` runs it."""
    sp = sub.add_parser(name, help=help_, description=desc or help_)
    sp.set_defaults(func=func)
    return sp


def out_of_memory(exc: BaseException, batch: int | None) -> str | None:
    """One line naming the problem and the fix when ``exc`` is an allocator's refusal (Python's MemoryError, torch's
    OutOfMemoryError on the GPU, the CPU allocator's "can't allocate memory" RuntimeError); None otherwise.
    ``batch``: the batch size the work ran at, when known."""
    import re

    torch = sys.modules.get("torch")   # torch's error types only where torch is loaded (it raised, or nothing did)
    gpu_type = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    text = str(exc)
    if (gpu_type is not None and isinstance(exc, gpu_type)) or (isinstance(exc, RuntimeError)
                                                                 and "CUDA out of memory" in text):
        where = "GPU"
        m = re.search(r"[Tt]ried to allocate ([0-9.]+ ?[KMGT]?i?B)", text)
        size = m.group(1) if m else None
    elif isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and "can't allocate memory" in text):
        where = "host"
        m = re.search(r"tried to allocate (\d+) bytes", text)
        size = f"{int(m.group(1)) / 1e9:.2f} GB" if m else None
    else:
        return None
    what = f"out of {where} memory" + (f" (an allocation of {size} was refused)" if size else "")
    if batch is None:
        return f"{what}: pass a smaller --batch-size than the default"
    if batch <= 1:
        return f"{what} at batch size 1: the network does not fit; use a machine with more memory"
    return f"{what} at batch size {batch}: pass a smaller --batch-size, e.g. --batch-size {batch // 2}"
