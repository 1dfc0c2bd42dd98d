"""The operand checks of a compiled step: what every compiled executor confirms before a kernel
walks raw addresses.

A compiled kernel walks ``param.numel()`` elements of the parameter's dtype from the address of
the parameter, its gradient and each active state slot. :func:`check_operands` refuses, naming
it, any operand that this walk would read or write wrongly: one whose address is not where its
elements are (a DTensor), or whose device, dtype or shape differ from the parameter's, or a
sparse one. The layout (strides) is left to :func:`descend.kernels.table.flat_compatible`, which
copies what cannot be walked as a flat array. Written once, used by the fused and Triton
executors alike (:class:`descend.kernels.executor.CompiledExecutor`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

import torch

from descend.kernels.table import addressable

#: An operand of a step and how errors name it: ``("the gradient of tensor 3", grad)``.
Operand: TypeAlias = tuple[str, torch.Tensor]


def check_operands(
    executor: str,
    supports: Callable[[torch.Tensor], bool],
    requirement: Callable[[], str],
    param: torch.Tensor,
    operands: Sequence[Operand],
) -> None:
    """Refuse, naming it, any operand a kernel walking ``param`` would read or write wrongly.

    ``executor`` names the executor in errors; ``supports`` says whether it can update
    ``param`` at all, and ``requirement()`` ends the error when it cannot (``"expected a CPU
    tensor ..."``). Every operand must be a plain tensor with the parameter's device, dtype and
    shape: the kernel walks ``param.numel()`` elements of the parameter's type from each
    operand's address.
    """
    if not addressable(param):
        raise ValueError(
            f"the {executor} executor cannot update a {type(param).__name__}, "
            "whose address is not its elements': expected a plain tensor (a "
            "DTensor's local tensor)"
        )
    if not supports(param):
        raise ValueError(
            f"the {executor} executor cannot update a {param.dtype} tensor on "
            f"{param.device}: {requirement()}"
        )
    for label, tensor in operands:
        if not addressable(tensor):
            raise ValueError(
                f"{label} is a {type(tensor).__name__}, whose address is not its "
                "elements': expected a plain tensor (a DTensor's local tensor)"
            )
        if (
            tensor.device != param.device
            or tensor.dtype != param.dtype
            or tensor.shape != param.shape
            or tensor.is_sparse
        ):
            raise ValueError(
                f"{label} is a {'sparse ' if tensor.is_sparse else ''}{tensor.dtype} tensor of "
                f"shape {tuple(tensor.shape)} on {tensor.device}, but its parameter is "
                f"{param.dtype} of shape {tuple(param.shape)} on {param.device}: expected the "
                "same dtype, shape and device"
            )
