"""Address tables: what a compiled kernel walks, for a list of tensors laid end to end.

The tensors' elements, taken end to end, are cut into work items of equal size
(:data:`WORK_ITEM`), each a run of *segments* (a piece of one tensor), so that any number of
threads (or GPU programs) can share one step evenly whatever the tensors' sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt
import torch

from descend.kernels.variant import runtime_row, variant_of
from descend.rules.spec import Rule

if TYPE_CHECKING:
    from descend.kernels.executor import Executor

#: Elements per work item: large enough to amortize the per-item bookkeeping, small enough
#: that even a one-tensor step splits evenly over the threads.
WORK_ITEM = 1 << 16

#: An int64 array: sizes, addresses, positions.
Int64Array: TypeAlias = npt.NDArray[np.int64]
#: ``(item_start, segment_tensor, segment_start, segment_stop)``: see :func:`segments`.
WorkSplit: TypeAlias = tuple[Int64Array, Int64Array, Int64Array, Int64Array]


def segments(sizes: npt.ArrayLike, work_item: int = WORK_ITEM, align: int = 1) -> WorkSplit:
    """Cut tensors of ``sizes`` elements, laid end to end, into work items of (about) equal
    size.

    Returns ``(item_start, segment_tensor, segment_start, segment_stop)``: work item ``w`` is
    segments ``item_start[w]:item_start[w + 1]``; segment ``s`` covers elements
    ``segment_start[s]:segment_stop[s]`` of tensor ``segment_tensor[s]``. Every segment starts
    at a multiple of ``align`` of its tensor (a cut inside a tensor moves back to one), so a
    block of ``align`` elements (an ``"int8"`` slot's, with one scale) is never split.
    """
    lengths = np.asarray(sizes, dtype=np.int64)
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if len(lengths) else 0
    starts = ends - lengths
    if total == 0:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(1, dtype=np.int64), empty, empty, empty
    cuts = np.arange(0, total, work_item, dtype=np.int64)
    if align > 1:
        inside = np.searchsorted(ends, cuts, side="right")
        cuts = starts[inside] + (cuts - starts[inside]) // align * align
    bounds = np.union1d(np.concatenate([starts[lengths > 0], cuts]), [total])
    lower, upper = bounds[:-1], bounds[1:]
    tensor = np.searchsorted(ends, lower, side="right").astype(np.int64)
    item = lower // work_item
    item_start = np.searchsorted(item, np.arange(item[-1] + 2), side="left").astype(np.int64)
    return item_start, tensor, lower - starts[tensor], upper - starts[tensor]


class TensorTable:
    """Raw addresses and the work split of a list of same-dtype tensors sharing one layout.

    ``addresses[k, i]`` is the address of operand ``k`` (0 the parameter, 1 the gradient, then
    each active slot's storage; then, for compressed slots, the key of each one's random
    stream) of tensor ``i``. Each operand of a tensor must be dense with the same
    strides as the parameter (:func:`flat_compatible`), so that the kernel can walk all of them
    as flat arrays of ``sizes[i]`` elements.

    ``device`` is where the tensors live; ``derived`` holds what an executor derives from the
    table and keeps while it lives (a GPU executor's device copy of it).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        operands: int,
        device: torch.device | None = None,
        align: int = 1,
    ) -> None:
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.addresses = np.zeros((operands, len(self.sizes)), dtype=np.int64)
        #: Segments start at multiples of this many elements of their tensor.
        self.align = align
        self.work = segments(self.sizes, align=align)
        self.device = torch.device("cpu") if device is None else device
        self.derived: dict[str, object] = {}

    def subset_work(self, indices: Int64Array) -> tuple[Int64Array, WorkSplit]:
        """Addresses and work split for only the tensors at ``indices``."""
        return (
            np.ascontiguousarray(self.addresses[:, indices]),
            segments(self.sizes[indices], align=self.align),
        )


def flat_compatible(tensors: Sequence[torch.Tensor | None]) -> bool:
    """Whether these tensors (``None`` skipped) can be walked as flat arrays in the same order.

    True when all are contiguous, or when all are dense and non-overlapping with the same strides
    (channels-last weights and their gradients, for example).
    """
    present = [t for t in tensors if t is not None]
    if all(t.is_contiguous() for t in present):
        return True
    strides = present[0].stride()
    return dense(present[0]) and all(t.stride() == strides for t in present[1:])


def addressable(tensor: torch.Tensor) -> bool:
    """Whether ``tensor.data_ptr()`` is where its elements are, so a kernel may walk it: not for
    a wrapper subclass (a DTensor's elements are in its local tensor; its own address is 0)."""
    if type(tensor) is torch.Tensor or type(tensor) is torch.nn.Parameter:
        return True
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass

    return not is_traceable_wrapper_subclass(tensor)


def dense(tensor: torch.Tensor) -> bool:
    """Whether the tensor's elements fill a block of memory exactly once, in some order."""
    expected = 1
    for stride, size in sorted(zip(tensor.stride(), tensor.shape, strict=True)):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def step_in_tables(
    executor: Executor,
    rule: Rule,
    scalars: Mapping[str, Any],
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    slots: Sequence[Sequence[torch.Tensor | None]],
    kernel_dtypes: Mapping[torch.dtype, str],
    check_operands: Callable[[torch.Tensor, Sequence[tuple[str, torch.Tensor]]], None],
    cautious: bool = False,
) -> None:
    """One step of ``rule`` in place over tensor lists, as a compiled executor runs it: the
    body of the fused and Triton executors' ``step`` (with ``cautious``, a cautious step in
    the rule's own kernels: ``executor.cautious_kernels``, see :mod:`descend.kernels.caution`).

    Every tensor must have the same active slots, and every operand is checked against its
    parameter (``check_operands`` raises, naming it) before anything is written. Tensors are
    grouped by dtype and device, one table and one ``executor.launch`` of
    ``executor.kernel(rule, variant)`` per group; ``kernel_dtypes`` names each dtype's kernel
    dtype. Tensors that cannot be walked as flat arrays (strided views, a gradient laid out
    unlike its parameter) are copied into contiguous buffers and back.
    """
    if not (len(params) == len(grads) == len(slots)):
        raise ValueError(
            f"got {len(params)} params, {len(grads)} grads and {len(slots)} "
            "slot lists: expected the same number of each"
        )
    active = tuple(state is not None for state in (slots[0] if slots else ()))
    for index, (param, grad, state) in enumerate(zip(params, grads, slots, strict=True)):
        if tuple(s is not None for s in state) != active:
            raise ValueError(
                f"tensor {index} has slots {[s is not None for s in state]}, "
                f"tensor 0 {list(active)}: expected the same active slots"
            )
        check_operands(
            param,
            [(f"the gradient of tensor {index}", grad)]
            + [(f"slot {k} of tensor {index}", s) for k, s in enumerate(state) if s is not None],
        )
    groups: dict[tuple[torch.dtype, torch.device], list[list[torch.Tensor]]] = {}
    copies: list[tuple[torch.Tensor, torch.Tensor]] = []
    for param, grad, state in zip(params, grads, slots, strict=True):
        operands = [param, grad, *(s for s in state if s is not None)]
        if not flat_compatible(operands):
            contiguous = [t.contiguous() for t in operands]
            copies += [
                (original, copy)
                for original, copy in zip(operands, contiguous, strict=True)
                if copy is not original and original is not grad
            ]
            operands = contiguous
        groups.setdefault((param.dtype, param.device), []).append(operands)
    for (dtype, device), entries in groups.items():
        variant = variant_of(rule, scalars, kernel_dtypes[dtype], active)
        table = TensorTable([ops[0].numel() for ops in entries], len(entries[0]), device)
        for index, operands in enumerate(entries):
            table.addresses[:, index] = [t.data_ptr() for t in operands]
        kernel = executor.cautious_kernels(rule, variant) if cautious else None
        executor.launch(
            kernel or executor.kernel(rule, variant),
            table,
            np.zeros(len(entries), dtype=np.int64),
            np.asarray([runtime_row(variant, scalars)], dtype=np.float64),
        )
    for original, copy in copies:
        original.copy_(copy)
