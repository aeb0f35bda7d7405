"""Workloads (``cimsim.workloads``): offline datasets, the model zoo, training with cached checkpoints."""

from cimsim.workloads.datasets import Dataset, dataset_names, load as load_dataset, make_synthetic
from cimsim.workloads.zoo import build as build_model, build_for, model_names

__all__ = ["Dataset", "dataset_names", "load_dataset", "make_synthetic", "build_model", "build_for", "model_names"]
