"""Where a mapped network loses accuracy, layer by layer: the report's ``rel_error`` and ``clip_rate`` columns.

``rel_error``: each mapped layer's relative RMS output error against the exact integer product of the same
inputs, accumulated during the run (:meth:`cimsim.mappers.MappedLayer.rel_error`); NaN for a layer not on
crossbars. ``clip_rate``: where the engine's ledger counts ADC conversions that clipped, that count over the
layer's conversions (NaN for a layer not on crossbars); the column is absent when the ledger has no such event.
"""

from __future__ import annotations

import math

import numpy as np

from cimsim.events import CLIPPED_CONVERSIONS
from cimsim.ledger import EventLedger
from cimsim.report import Report


def add_layer_quality(report: Report, errors: dict[str, float], ledger: EventLedger) -> Report:
    """Add the ``rel_error`` column (``errors``: mapped layer -> relative error) and, where ``ledger`` counts
    clipped conversions, the ``clip_rate`` column (clipped / the row's ``conversions``) to ``report``'s layers."""
    clipping = any(CLIPPED_CONVERSIONS in ledger.layer(n) for n in ledger.layers())
    for row in report.layers:
        name = row["name"]
        row["rel_error"] = errors.get(name, math.nan)
        if clipping:
            conversions = row.get("conversions", 0)
            mapped = name in errors and conversions
            row["clip_rate"] = ledger.layer(name).get(CLIPPED_CONVERSIONS, 0.0) / conversions if mapped else math.nan
    return report


def sum_of_squares(v: np.ndarray, scale: np.ndarray | None = None) -> float:
    """``float(np.square(v * scale).sum())`` for a fresh array ``v`` the caller gives up (``scale`` None: 1), the same
    numbers with the products and squares formed in place: one temporary of a layer's outputs fewer (the error sums of
    :meth:`cimsim.mappers.MappedLayer.record_error`)."""
    if scale is not None:
        v *= scale
    np.multiply(v, v, out=v)
    return float(v.sum())
