"""Executors of a rule over many tensors: reference (torch ops), fused CPU (Numba), GPU (Triton).

:mod:`descend.kernels.executor` defines the interface and chooses executors by backend name;
:mod:`descend.kernels.variant` what a compiled kernel is specialized on. The compiled executors
share one core: :mod:`descend.kernels.codegen` (a rule's functions as kernel source),
:mod:`descend.kernels.cache` (kernels on disk and in memory, the compile lock) and
:mod:`descend.kernels.operands` (the checks before a kernel walks raw addresses). Their own
modules import their compilers only when first used.
"""

from descend.kernels.executor import (
    CompiledExecutor,
    Executor,
    backend_names,
    executors_for,
    get_executor,
)
from descend.kernels.reference import numpy_step, numpy_update, torch_update, update_tensors
from descend.kernels.variant import Variant, variant_of

__all__ = [
    "CompiledExecutor",
    "Executor",
    "Variant",
    "backend_names",
    "executors_for",
    "get_executor",
    "numpy_step",
    "numpy_update",
    "torch_update",
    "update_tensors",
    "variant_of",
]
