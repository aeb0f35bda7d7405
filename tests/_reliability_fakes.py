"""Point evaluations for the reliability sweep tests (module level, so they pickle into worker processes)."""

import os
import signal
import time
from pathlib import Path

from _sweep_fakes import fake_report


def pid_then_wait(point, settings):
    """Record this worker's pid in $SWEEP_PIDS/<pid>, then wait for ever (the test kills the sweep)."""
    Path(os.environ["SWEEP_PIDS"], str(os.getpid())).touch()
    while True:
        time.sleep(0.1)


def die_once(point, settings):
    """The first attempt at point 'isaac_adc2_seed0' kills its own worker process (kill -9) mid-point;
    $SWEEP_MARK records that it did, so the retry on another worker succeeds."""
    mark = Path(os.environ["SWEEP_MARK"])
    if point.key == "isaac_adc2_seed0" and not mark.exists():
        mark.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    return fake_report(point)
