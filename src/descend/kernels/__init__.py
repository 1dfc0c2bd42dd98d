"""Executors of a rule over many tensors at once."""

from descend.kernels.reference import numpy_update, torch_update, update_tensors

__all__ = ["numpy_update", "torch_update", "update_tensors"]
