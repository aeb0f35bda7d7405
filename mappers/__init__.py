"""Mappers (``cimsim.mappers``): turn a ``torch.nn.Module`` into a simulated one and evaluate it.

* :func:`map` (also ``cimsim.map``): a trained network onto an architecture's crossbars -> :class:`MappedModel`;
* :func:`evaluate`: one entry for every architecture (digital reference or mapped) -> Report;
* :func:`profile`: the events of one inference of any module;
* :mod:`~cimsim.mappers.qat`: hardware-aware training (partial-sum quantization, noise injection);
* :mod:`~cimsim.mappers.psq_finetune`: PSQ fine-tuning (cosine schedule, distillation, frozen parts).
"""

from cimsim.mappers.profile import Profile, profile
from cimsim.mappers.reference import evaluate_reference, float_accuracy
from cimsim.mappers.evaluate import evaluate
from cimsim.mappers import psq_finetune, qat
from cimsim.cost import LayerPlan
from cimsim.mappers.mapper import MappedLayer, MappedModel, fold_batchnorm, map_model, quantize_weights

map = map_model  # noqa: A001 (cimsim.mappers.map, as the design names it)

__all__ = ["qat", "psq_finetune", "Profile", "profile", "evaluate", "evaluate_reference", "float_accuracy", "map", "map_model",
           "MappedModel", "MappedLayer", "LayerPlan", "fold_batchnorm", "quantize_weights"]
