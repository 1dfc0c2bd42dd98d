"""What a step reads to know that the tensors a kernel walks by address are still as planned.

A plan's kernels write through raw addresses, so before every step the plan confirms, for
every parameter and state tensor it writes, everything the kernel's address arithmetic assumes:
address, shape, strides, dtype and device (:func:`metadata`). Read from Python that is five
attribute reads per tensor (50-200 ns each), most of a step's host time on many small tensors.

So a step checks every tensor's layout in one C++ call over the whole list
(:class:`LayoutGuard`, built on the tensor check that ``torch.compile``'s guards run: it
compares each tensor's Python type, sizes, strides, dtype, device and dispatch keys with the
values it was armed with), then every address in one compiled loop over the same tensors
(:mod:`descend.kernels.tensor_addresses`, safe only on tensors the guard just passed; from
Python while that loop loads or where it cannot run). Equal addresses and a passing guard mean
equal metadata, exactly. A guard that fails on an unchanged layout (the tensor's
``requires_grad`` or the thread's dispatch state changed) only sends the step to the full
comparison, which decides, and re-arms the guard.

The state dicts are confirmed the same way: a step must know that each still holds the very
tensors its plan writes (an identity comparison per tensor and key, 100 ns each here). A dict's
version tag (PEP 509, read in C by the function ``torch.compile``'s dict guards use) changes
whenever an entry is set to another object, added or removed, so while every state dict's tag
is the one read before the last full comparison, the comparison's answer stands
(:class:`DictVersions`; a self-test once per process, :func:`dict_version_reader`, rules the tags
out where a Python release stops keeping them).

Where that check is missing or does not behave as expected (another torch version: a self-test
runs once, see :func:`guard_available`), a step compares four cheaper keys instead
(:func:`fast_keys`): address, byte count, strides and dtype. Equal keys imply an equal walk: a
tensor keeps its device while it keeps its address (memory of another device is another
allocation), and a dense tensor (the only kind a plan holds) with the same strides and byte
count holds the same elements in the same order. What those keys cannot see is a tensor
replaced (``.data =``) by a non-dense view at the same address with the same strides and byte
count (``as_strided`` over the same memory): the kernel then touches no memory outside the
planned block, and torch's own optimizers refuse such a tensor (its shape no longer fits the
gradient's). Any difference in the keys falls back to the full comparison, which decides.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import numpy as np
import torch

from descend.kernels.tensor_addresses import (
    COMPILED_READ_FROM,
    address_reader,
    object_addresses,
)

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


def addresses(tensors: Sequence[torch.Tensor]) -> list[int]:
    """Each tensor's ``data_ptr()``, in one C-level pass."""
    return list(map(_data_ptr, tensors))


def _torch_tensor_check(tensors: Sequence[torch.Tensor]) -> Callable[..., bool]:
    """The C++ check of ``torch.compile``'s guards, armed with every size and stride of
    ``tensors`` (none left free): its ``check(*tensors)``."""
    from torch._C._dynamo.guards import TensorGuards

    # One list of sizes (strides) per tensor, every one fixed (torch's stub types it flat).
    sizes: Any = [list(_size(t)) for t in tensors]
    strides: Any = [list(_stride(t)) for t in tensors]
    guards = TensorGuards(*tensors, dynamic_dims_sizes=sizes, dynamic_dims_strides=strides)
    check: Callable[..., bool] = guards.check
    return check


def _layout_changes() -> list[Callable[[torch.Tensor], object]]:
    """Changes of a 2 x 3 float32 tensor's layout that a guard must see."""

    def replaced(tensor: torch.Tensor, other: torch.Tensor) -> None:
        tensor.data = other

    return [
        lambda t: t.t_(),
        lambda t: t.unsqueeze_(0),
        lambda t: t.resize_(3, 3),
        lambda t: t.resize_(1, 3),
        lambda t: t.as_strided_((3, 2), (1, 3)),
        lambda t: t.set_(torch.zeros(3, 2)),
        lambda t: replaced(t, t.double()),
        lambda t: replaced(t, t.view(torch.int32)),
        lambda t: replaced(t, t.view(6)),
    ]


class _ProbeSubclass(torch.Tensor):
    """A tensor type of its own, which a guard armed on a plain tensor must refuse (see
    :func:`guard_available`)."""


@cache
def guard_available() -> bool:
    """Whether the C++ tensor check exists here and behaves as :class:`LayoutGuard` needs:
    true on the tensors it was armed with, false after each of a list of layout changes and
    on a tensor of another Python type (checked once per process; otherwise every guard
    compares the layouts from Python)."""
    try:
        probe = torch.zeros(2, 3)
        if not _torch_tensor_check([probe, torch.zeros(4)])(probe, torch.zeros(4)):
            return False
        for change in _layout_changes():
            tensor = torch.zeros(2, 3)
            check = _torch_tensor_check([tensor])
            change(tensor)
            if check(tensor):
                return False
        # Another Python type of the same layout (a DTensor gradient where a plain one was).
        if _torch_tensor_check([probe])(probe.as_subclass(_ProbeSubclass)):
            return False
    except (ImportError, AttributeError, TypeError, ValueError, RuntimeError, SystemError):
        # An older or newer torch without this check, or with another signature.
        return False
    return True


@cache
def dict_version_reader() -> Callable[[Any], int] | None:
    """A dict's version tag (PEP 509), read in C, where it behaves as :class:`DictVersions`
    needs: it changes whenever an entry is set to another object, added or removed, stays
    while the dict is unchanged, and differs between dicts (checked once per process); else
    ``None``. (Python 3.12 and later deprecate the tag, and a release may stop keeping it: the
    self-test then fails.)"""
    try:
        from torch._C._dynamo.guards import dict_version
    except ImportError:
        return None
    read: Callable[[Any], int] = dict_version
    try:
        probe: dict[str, object] = defaultdict(dict, {"kept": object(), "edited": object()})
        seen = [read(probe)]
        if read(probe) != seen[0]:
            return None
        edits: list[Callable[[dict[str, object]], object]] = [
            lambda d: d.__setitem__("edited", object()),
            lambda d: d.__setitem__("added", 1),
            lambda d: d.__delitem__("added"),
            lambda d: d.update(edited=object()),
            lambda d: d.pop("edited"),
            lambda d: d.setdefault("edited", object()),
            lambda d: d.popitem(),
            lambda d: d.clear(),
        ]
        for edit in edits:
            edit(probe)
            seen.append(read(probe))
            if seen[-1] == seen[-2]:
                return None
        # Tags are unique across dicts, so a dict put in another's place shows too.
        if read({}) in seen or read({}) == read({}):
            return None
    except (TypeError, ValueError, RuntimeError, SystemError):
        return None
    return read


#: The dict types whose entries are what a version tag covers (a subclass may answer a read
#: from elsewhere than its entries).
PLAIN_DICTS = (dict, defaultdict)


class DictVersions:
    """A check of some dicts' entries, answered again only when a dict changed: each dict's
    version tag, read in C (:func:`dict_version_reader`), against the tags read before the
    check last passed. A step confirms that every state dict still holds the tensors its plan
    writes (an identity comparison per tensor and key); while no state dict changed, one
    version read per dict answers instead."""

    def __init__(self, dicts: Sequence[object]) -> None:
        #: The dicts watched (held, so their tags stay theirs).
        self.dicts = list(dicts)
        plain = all(type(d) in PLAIN_DICTS for d in self.dicts)
        self._reader = dict_version_reader() if plain else None
        self._passed: list[int] | None = None

    def holds(self, check: Callable[[], bool]) -> bool:
        """``check()`` of the dicts, or True at once if no dict changed since it last passed.
        The tags are read before the check, so that an edit during it shows next time."""
        versions = None if self._reader is None else list(map(self._reader, self.dicts))
        if versions is not None and versions == self._passed:
            return True
        if not check():
            return False
        self._passed = versions
        return True


class LayoutGuard:
    """The sizes, strides, dtype and device of a list of tensors, as when armed; checked in
    one C++ call where :func:`guard_available`, else by comparing :func:`layouts`."""

    def __init__(self, tensors: Sequence[torch.Tensor]) -> None:
        self.count = len(tensors)
        self._check = _torch_tensor_check(tensors) if guard_available() else None
        self._layouts = None if self._check is not None else layouts(tensors)

    def holds(self, tensors: Sequence[torch.Tensor]) -> bool:
        """True only if every tensor has the sizes, strides, dtype and device of the tensor
        at its position when armed (false may also mean another ``requires_grad`` or
        dispatch state: compare in full then)."""
        if len(tensors) != self.count:
            return False
        if self._check is None:
            return layouts(tensors) == self._layouts
        return bool(self._check(*tensors))


class Watch:
    """Tensors a kernel writes by address, and the check that they are as when planned."""

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self.tensors = tensors
        self.metadata = metadata(tensors)
        #: One C++ layout check for all of them (see the module docstring), or ``None``:
        #: then the cheaper keys.
        self.guard = LayoutGuard(tensors) if guard_available() else None
        self.keys = fast_keys(tensors) if self.guard is None else ()
        #: The tensors' object and data addresses, for the compiled address check
        #: (:mod:`descend.kernels.tensor_addresses`; the objects live in :attr:`tensors`).
        self.objects = object_addresses(tensors)
        self.expected = np.array(self.metadata[0], dtype=np.int64)

    def current(self) -> bool:
        """Whether every tensor still has the address, shape, strides, dtype and device it
        was planned with: by addresses and the layout guard (else the cheaper keys) when
        they agree, else in full."""
        tensors = self.tensors
        if self.guard is None:
            if fast_keys(tensors) == self.keys:
                return True
            return metadata(tensors) == self.metadata
        # The guard first: the compiled address read is safe only on tensors it passed.
        if self.guard.holds(tensors):
            # Short lists read faster from Python (see COMPILED_READ_FROM).
            reader = address_reader() if len(tensors) >= COMPILED_READ_FROM else None
            if reader is not None:
                if reader.same(self.objects, self.expected):
                    return True
            elif addresses(tensors) == self.metadata[0]:
                return True
        if metadata(tensors) != self.metadata:
            return False
        # Same metadata, so only what the guard reads beside it changed (requires_grad, the
        # dispatch state): arm it afresh so that the next step takes the fast path again.
        self.guard = LayoutGuard(tensors)
        return True
