"""What a step reads to know that the tensors a kernel walks by address are still as planned.

A plan's kernels write through raw addresses, so before every step the plan confirms, for
every parameter and state tensor it writes, everything the kernel's address arithmetic assumes:
address, shape, strides, dtype and device (:func:`metadata`). Read in full that is five
attribute reads per tensor, most of a step's host time on many small tensors, so a step first
compares four of them (:func:`fast_keys`): address, byte count, strides and dtype. Equal keys
imply an equal walk: a tensor keeps its device while it keeps its address (memory of another
device is another allocation), and a dense tensor (the only kind a plan holds) with the same
strides and byte count holds the same elements in the same order. What the keys cannot see is
a tensor replaced (``.data =``) by a non-dense view at the same address with the same strides
and byte count (``as_strided`` over the same memory): the kernel then touches no memory
outside the planned block, and torch's own optimizers refuse such a tensor (its shape no
longer fits the gradient's). Any difference in the keys falls back to the full comparison,
which decides.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch

_data_ptr = torch.Tensor.data_ptr
_size = torch.Tensor.size
_stride = torch.Tensor.stride
_dtype = operator.attrgetter("dtype")
_device = operator.attrgetter("device")
_nbytes = operator.attrgetter("nbytes")


def metadata(tensors: Sequence[torch.Tensor]) -> tuple[list[Any], ...]:
    """Everything a kernel's address arithmetic relies on about tensors it walks by address:
    where each starts, its shape and strides, its element type and its device.

    Together these fix the set of addresses a kernel touches; a valid tensor with these
    values lies inside its storage, so a storage swapped or resized shows as another address
    (``set_`` and ``resize_`` checks keep it so). Read column by column (one C-level pass per
    attribute).
    """
    return (list(map(_data_ptr, tensors)), *layouts(tensors))


def layouts(tensors: Sequence[torch.Tensor]) -> tuple[list[Any], ...]:
    """What a gradient must share with its parameter: shape, strides, dtype and device."""
    return (
        list(map(_size, tensors)),
        list(map(_stride, tensors)),
        list(map(_dtype, tensors)),
        list(map(_device, tensors)),
    )


def fast_keys(tensors: Sequence[torch.Tensor]) -> tuple[list[Any], ...]:
    """Address, byte count, strides and dtype of each tensor (see the module docstring)."""
    return (
        list(map(_data_ptr, tensors)),
        list(map(_nbytes, tensors)),
        list(map(_stride, tensors)),
        list(map(_dtype, tensors)),
    )


class Watch:
    """Tensors a kernel writes by address, and the check that they are as when planned."""

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self.tensors = tensors
        self.metadata = metadata(tensors)
        self.keys = fast_keys(tensors)

    def current(self) -> bool:
        """Whether every tensor still has the address, shape, strides, dtype and device it
        was planned with: by the cheaper keys when they are unchanged, else in full."""
        if fast_keys(self.tensors) == self.keys:
            return True
        return metadata(self.tensors) == self.metadata
