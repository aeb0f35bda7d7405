"""Evaluate a network on the digital reference architecture and build its Report."""

from __future__ import annotations

import time

import torch
from torch import nn

from cimsim.mappers.profile import profile
from cimsim.metrics import batch_score, is_flow
from cimsim.progress import progress as progress_bar
from cimsim.provenance import describe
from cimsim.report import Report, cost_report


@torch.no_grad()
def float_accuracy(model: nn.Module, loader, progress: bool | None = None, desc: str = "evaluate") -> tuple[float, int]:
    """Top-1 accuracy of ``model`` in floating point over ``loader``; returns (accuracy, examples).
    ``progress=False`` silences the progress report on stderr."""
    model.eval()
    correct = total = 0
    for x, y in progress_bar(loader, desc=desc, unit="batches", enabled=progress):
        correct += batch_score(model(x), y)   # correct predictions, or the summed AEE of flow (cimsim.metrics)
        total += len(y)
    return (correct / total if total else float("nan")), total


def evaluate_reference(model: nn.Module, loader, spec, progress: bool | None = None,
                       config: dict | None = None) -> Report:
    """Run ``model`` in fp32 over ``loader`` and cost one inference on the digital ``spec``.

    The accuracy and the digital reference accuracy are the same number here by definition; energy and
    latency come from the events of one inference (:func:`cimsim.mappers.profile.profile`) costed by
    ``spec.cost`` (:func:`cimsim.report.cost_report`).
    """
    started = time.perf_counter()
    first, first_y = next(iter(loader))
    prof = profile(model, first)
    acc, n = float_accuracy(model, loader, progress=progress, desc=f"{spec.name} reference")
    report = cost_report(spec, prof.ledger, {}, prof.kinds)
    report.accuracy = report.digital_accuracy = acc
    report.n_examples = n
    if is_flow(first_y):   # a flow network: the "accuracy" above is its average endpoint error
        report.accuracy = report.digital_accuracy = float("nan")
        report.config["aee_px"] = report.config["digital_aee_px"] = acc
    report.config = {"arch": spec.name, "arch_params": spec.params(), **(config or {}), **report.config,
                     "uncosted_layers": prof.uncosted, "input_shape": list(first.shape[1:]),
                     "wall_seconds": round(time.perf_counter() - started, 3)}
    report.config = {**describe(model, loader), **report.config}   # the network's and data's names (provenance)
    return report
