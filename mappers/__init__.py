"""Mappers (``cimsim.mappers``): turn a ``torch.nn.Module`` into a simulated one and evaluate it.

Today: event profiling of any module (:func:`profile`) and the digital reference evaluation
(:func:`evaluate_reference`). The crossbar mapper (``cimsim.map``) arrives with the mapper milestone.
"""

from cimsim.mappers.profile import Profile, profile
from cimsim.mappers.reference import evaluate_reference, float_accuracy
from cimsim.mappers.evaluate import evaluate

__all__ = ["Profile", "profile", "evaluate", "evaluate_reference", "float_accuracy"]
