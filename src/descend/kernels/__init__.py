"""Executors of a rule over many tensors: reference (torch ops), fused CPU (Numba), GPU (Triton).

:mod:`descend.kernels.executor` defines the interface and chooses executors by backend name;
:mod:`descend.kernels.variant` what a compiled kernel is specialized on; the compiled
executors' modules import their compilers only when first used.
"""

from descend.kernels.executor import Executor, backend_names, executors_for, get_executor
from descend.kernels.reference import numpy_step, numpy_update, torch_update, update_tensors
from descend.kernels.variant import Variant, variant_of

__all__ = ["Executor", "Variant", "backend_names", "executors_for", "get_executor",
           "numpy_step", "numpy_update", "torch_update", "update_tensors", "variant_of"]
