"""Deterministic point evaluations for the sweep tests (module level, so they pickle into worker processes).

``fake_report(point)`` is a closed form of the point: accuracy rises with ADC bits towards the reference,
energy doubles per bit, seeds shift both a little. ``gated`` evaluates point 0 of a grid at once and
then waits for a gate file that never comes, so a test can kill the sweep while a point is running.
"""

import math
import os
import time
from pathlib import Path

from cimsim import sweep
from cimsim.report import Report

REFERENCE = 0.9065
# the fixed settings of the sweep tests' files, and their grid: ISAAC at some ADC bits and the digital reference
SETTINGS = sweep.Settings(model="lenet5", dataset="fashion-mnist", checkpoint="/ckpt/lenet5.pt",
                          checkpoint_sha256="ab" * 32, limit=100, overrides={"mac_units": "1024"},
                          calibration=64, batch_size=50)


def grid(bits=(1, 2, 3), seeds=2):
    return sweep.make_points(["isaac", "digital"], list(bits), seeds)


def fake_report(point) -> Report:
    b = point.adc_bits
    if b is None:
        acc, energy = REFERENCE, 5.0e-6
    else:
        acc = REFERENCE - 0.8 * math.exp(-(b - 1) / 1.2) - 0.004 * point.seed
        energy = 1e-7 * 2 ** b * (1 + 0.05 * point.seed)
    return Report(accuracy=acc, digital_accuracy=REFERENCE, energy_j=energy, latency_s=1e-6 * (1 + (b or 0)),
                  throughput_inf_per_s=1e6 / (1 + (b or 0)), area_m2=1e-6,
                  layers=[{"name": "fc", "kind": "Linear", "macs": 100, "energy_j": energy, "latency_s": 1e-6}],
                  components={"adc": energy}, config={"arch": point.arch, "arch_params": {"adc_bits": b}},
                  n_examples=100)


def fake_evaluate(point, settings) -> Report:
    return fake_report(point)


def gated_evaluate(point, settings) -> Report:
    """The first point returns at once; every later one says so ($SWEEP_GATE.waiting) and waits for $SWEEP_GATE.

    Points run one after another, so once ``.waiting`` exists the first point is in the file.
    """
    marker = Path(os.environ["SWEEP_GATE"])
    started = Path(str(marker) + ".started")
    if started.exists():
        Path(str(marker) + ".waiting").touch()
        while not marker.exists():
            time.sleep(0.05)
    started.touch()
    return fake_report(point)
