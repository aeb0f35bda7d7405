"""One entry point that evaluates a network on any architecture and returns its :class:`~cimsim.Report`.

``evaluate(model, arch, loader, calibration=..., seed=...)`` is what the CLI's ``run`` and ``sweep`` call:
the digital reference runs the float network and costs its events; an analog architecture maps the
network onto crossbars (:func:`cimsim.mappers.map`) and simulates it.
"""

from __future__ import annotations

from torch import nn

from cimsim.arch.base import Architecture
from cimsim.errors import ConfigError
from cimsim.mappers.reference import evaluate_reference
from cimsim.report import Report


def evaluate(model: nn.Module, arch, loader, *, calibration=None, seed: int = 0, progress: bool | None = None,
             config: dict | None = None, backend: str = "numba", device: str = "cpu",
             reference: nn.Module | None = None, reference_note: str | None = None) -> Report:
    """Accuracy, energy, latency and area of ``model`` on ``arch`` over ``loader``.

    ``calibration`` (an iterable of ``(x, y)`` batches, by convention from the training split) sets the
    activation and ADC ranges of an analog mapping; ``seed`` draws every device and readout random number;
    ``backend``/``device`` choose the crossbar engine (numba on the CPU, or torch on ``cpu``/``cuda``);
    ``reference``/``reference_note``: the digital reference network of the report (see
    :func:`cimsim.mappers.map_model`).
    """
    if not isinstance(arch, Architecture):
        raise ConfigError(f"evaluate needs an architecture (cimsim.arch.get(NAME)), got {type(arch).__name__}")
    if not arch.maps_to_crossbars:
        return evaluate_reference(model, loader, arch, progress=progress, config=config)
    from cimsim.mappers.mapper import map_model

    mapped = map_model(model, arch, calibration if calibration is not None else loader, seed=seed,
                       backend=backend, device=device, reference=reference, reference_note=reference_note,
                       progress=progress)
    cfg = dict(config or {})
    if calibration is None:
        cfg["calibration_source"] = "first batches of the evaluation loader (no calibration loader given)"
    return mapped.evaluate(loader, progress=progress, config=cfg)
