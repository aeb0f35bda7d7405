"""Progress on stderr, in every mode: a bar on a terminal, plain periodic lines otherwise.

A long run logged to a file, piped, or printing ``--json`` on stdout must still say what it is doing.
:func:`progress` wraps an iterable (or counts by hand with ``update``): on a terminal it is a tqdm bar;
elsewhere it writes one line when it starts, one every ``CIMSIM_PROGRESS_SECONDS`` (default 10 s) with
how far it is and an estimate of the time left, and one when it ends (``each=True``: a line after every
item, for slow items such as the points of a sweep). :func:`stage` does the same for a step without a
count (mapping, calibration): a line when it starts and one with its duration when it ends.
``enabled=False`` silences both (the Python API's ``progress=False``); ``None`` means on.

Lines look like ``cimsim: isaac simulate: 40/157 batches (25 %), 12 s, about 35 s left``; what the caller
sets with ``set_postfix_str`` follows after a semicolon.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Iterable, Iterator, TextIO

DEFAULT_INTERVAL_S = 10.0   # our choice: often enough for a log, rare enough not to flood it


def interval_s() -> float:
    """Seconds between plain progress lines (``$CIMSIM_PROGRESS_SECONDS``, default 10)."""
    try:
        value = float(os.environ.get("CIMSIM_PROGRESS_SECONDS", DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value >= 0 else DEFAULT_INTERVAL_S


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def fmt_duration(seconds: float) -> str:
    """'12 s', '3.5 min', '1.2 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class _Lines:
    """The non-terminal progress: periodic plain lines (see the module docstring)."""

    def __init__(self, iterable, desc: str, total: int | None, unit: str, stream: TextIO, each: bool = False):
        self.iterable, self.desc, self.total, self.unit, self.stream = iterable, desc, total, unit, stream
        self.each = each
        self.postfix = ""
        self.n = 0
        self.started = self.last = time.monotonic()
        self.closed = False
        self._say(f"{desc}: started" + (f", {total} {unit}" if total is not None else ""))

    def _say(self, text: str) -> None:
        try:
            self.stream.write(f"cimsim: {text}\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def _line(self) -> str:
        elapsed = time.monotonic() - self.started
        if self.total:
            left = elapsed / self.n * (self.total - self.n) if self.n else float("nan")
            eta = f", about {fmt_duration(left)} left" if self.n and self.n < self.total else ""
            line = (f"{self.desc}: {self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f} %), "
                    f"{fmt_duration(elapsed)}{eta}")
        else:
            line = f"{self.desc}: {self.n} {self.unit}, {fmt_duration(elapsed)}"
        return f"{line}; {self.postfix}" if self.postfix else line

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.total and self.n >= self.total:
            return   # the closing line ("..., done") says it
        if self.each or now - self.last >= interval_s():
            self.last = now
            self._say(self._line())

    def set_postfix_str(self, text: str) -> None:
        """A note appended to the following lines (tqdm's interface)."""
        self.postfix = str(text)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._say(f"{self._line()}, done")

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Silent:
    def __init__(self, iterable=None):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def progress(iterable: Iterable | None = None, *, desc: str, total: int | None = None, unit: str = "it",
             enabled: bool | None = None, stream: TextIO | None = None, each: bool = False):
    """Iterate ``iterable`` (or, without one, call ``update(n)`` and ``close()``) while reporting progress on
    ``stream`` (stderr). ``total`` defaults to ``len(iterable)`` where it has one. ``each``: off a terminal, a
    line after every item rather than every few seconds."""
    stream = stream if stream is not None else sys.stderr
    if total is None and iterable is not None:
        try:
            total = len(iterable)   # type: ignore[arg-type]
        except TypeError:
            total = None
    if enabled is False:
        return _Silent(iterable)
    if _is_tty(stream):
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, total=total, unit=unit, file=stream, leave=False, dynamic_ncols=True)
    return _Lines(iterable, desc, total, unit, stream, each=each)


@contextlib.contextmanager
def stage(desc: str, *, enabled: bool | None = None, stream: TextIO | None = None):
    """A step without a count: says it starts, and when it ends how long it took."""
    stream = stream if stream is not None else sys.stderr
    if enabled is False:
        yield
        return
    started = time.monotonic()
    try:
        stream.write(f"cimsim: {desc} ...\n")
        stream.flush()
    except (OSError, ValueError):
        pass
    yield
    try:
        stream.write(f"cimsim: {desc}: done in {fmt_duration(time.monotonic() - started)}\n")
        stream.flush()
    except (OSError, ValueError):
        pass
