"""The addresses of many tensors, read and compared in one compiled loop.

A step confirms the address of every tensor its kernels walk (:mod:`descend.optim.watch`).
From Python that is one ``Tensor.data_ptr()`` call per tensor (60-100 ns: a bound-method call
through torch's argument parser), and Adam on 1000 tensors reads 4000 of them a step. torch
ships the same read as a C function for its compiled code
(``torch._C._dynamo.guards._torchinductor_pyobject_tensor_data_ptr``: ``void *(PyObject *)``,
given by its address); a Numba loop over the tensors' object addresses calls it directly, at a
few nanoseconds a tensor.

That function raises a C++ exception, which no compiled caller can catch (the process would
end), for an object that is not a tensor or a tensor without storage (sparse, nested, meta
or a wrapper subclass). So it is called only on tensors that have just passed a
:class:`~descend.optim.watch.LayoutGuard`: each has the exact Python type, dispatch keys, dtype,
device, sizes and strides of a dense tensor the plan was built on, so each has a storage and
its ``data_ptr()`` cannot raise. The objects stay alive meanwhile: the caller holds them in a
list for the whole call (their ``id`` is their address). The loop runs with the GIL held, as
``data_ptr()`` from Python would.

The loop is compiled once per machine, in the background (a step meanwhile reads addresses from
Python), and cached on disk like the kernels (:mod:`descend.kernels.cache`). Where the C
function or Numba is missing, torch is a release not checked (:data:`CHECKED_TORCH`), or the
loop's self-test on probe tensors disagrees with ``data_ptr()``, :func:`address_reader` stays
``None`` and steps read from Python; where the layout guard is missing, no caller reaches the
loops.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from descend.kernels.cache import KernelStore, MachineCode, cache_dir, cached_source, file_lock

#: The module compiled for the loops (its text is part of its file name, so a change recompiles).
SOURCE = '''"""Tensor addresses read in one compiled loop; made by descend."""
from numba import njit

from descend.kernels._numba_support import address_of_object


@njit(cache=True, error_model="numpy", boundscheck=False)
def same_addresses(objects, expected, function):
    """Whether the tensor at each object address has the expected data address."""
    for i in range(objects.shape[0]):
        if address_of_object(function, objects[i]) != expected[i]:
            return False
    return True


@njit(cache=True, error_model="numpy", boundscheck=False)
def read_addresses(objects, out, function):
    """The data address of the tensor at each object address, into ``out``."""
    for i in range(objects.shape[0]):
        out[i] = address_of_object(function, objects[i])
'''


#: torch releases whose C read was checked to return, never raise, on every tensor a layout
#: guard can pass: a C++ exception in the compiled loop would end the process, and whether
#: ``data_ptr()`` raises on a dense tensor whose storage was resized away (it returns 0 here)
#: has changed between releases. Other releases read addresses from Python.
CHECKED_TORCH = ("2.13.",)
#: Below this many tensors, reading addresses from Python costs no more than the compiled loop:
#: its call costs about 1.5 us before the first tensor, and it reads the rest only a little
#: faster than Python (76 against 100 us for 1000 tensors), so the two meet near 64.
COMPILED_READ_FROM = 64


def _c_function() -> int | None:
    """The address of torch's ``void *(PyObject *)`` data-pointer read, if this torch has it
    and is one of :data:`CHECKED_TORCH`."""
    if not torch.__version__.startswith(CHECKED_TORCH):
        return None
    try:
        from torch._C._dynamo import guards
    except ImportError:
        return None
    address = getattr(guards, "_torchinductor_pyobject_tensor_data_ptr", None)
    return address if isinstance(address, int) and address > 0 else None


def object_addresses(tensors: Sequence[torch.Tensor]) -> npt.NDArray[np.int64]:
    """The address of each tensor's Python object (its ``id``), as the loops take them."""
    return np.fromiter(map(id, tensors), dtype=np.int64, count=len(tensors))


class AddressReader:
    """The compiled loops, bound to torch's data-pointer read.

    Only for tensors that just passed a layout guard armed on dense tensors (see the module
    docstring); anything else may end the process.
    """

    def __init__(self, module: Any, function: int) -> None:
        self._same = module.same_addresses
        self._read = module.read_addresses
        self._function = function

    def same(self, objects: npt.NDArray[np.int64], expected: npt.NDArray[np.int64]) -> bool:
        """Whether the tensors at ``objects`` (from :func:`object_addresses` of a list the
        caller holds) still have the data addresses ``expected``."""
        return bool(self._same(objects, expected, self._function))

    def read(self, tensors: Sequence[torch.Tensor]) -> npt.NDArray[np.int64]:
        """Each tensor's ``data_ptr()``."""
        out = np.empty(len(tensors), dtype=np.int64)
        self._read(object_addresses(tensors), out, self._function)
        return out


def _self_test(reader: AddressReader) -> bool:
    """Whether the loops agree with ``data_ptr()`` on probe tensors: plain, a parameter, views
    at an offset and of another dtype, and an empty one."""
    base = torch.zeros(64)
    probes = [
        base,
        torch.nn.Parameter(torch.ones(3, 5)),
        base[7:],
        base.view(torch.int32)[3:9],
        torch.empty(0),
    ]
    expected = np.array([t.data_ptr() for t in probes], dtype=np.int64)
    if not np.array_equal(reader.read(probes), expected):
        return False
    changed = expected.copy()
    changed[2] += 4
    objects = object_addresses(probes)
    return reader.same(objects, expected) and not reader.same(objects, changed)


def _load(_: str) -> AddressReader | bool:
    """Compile (or load from the disk cache) the loops and test them; ``False`` where they
    cannot serve (see the module docstring)."""
    from descend.kernels.codegen import execute_module
    from descend.kernels.fused import fused_available

    function = _c_function()
    if function is None or not fused_available():
        return False
    name = "descend_tensor_addresses_" + hashlib.sha256(SOURCE.encode()).hexdigest()[:20]
    path = cached_source(cache_dir(), f"{name}.py", SOURCE)
    machine_code = MachineCode(path)
    with file_lock(path.with_suffix(".lock")):
        machine_code.verify()
        module = execute_module(name, path, SOURCE)
        from numba import types

        index = types.Array(types.int64, 1, "C")
        module.same_addresses.compile((index, index, types.int64))
        module.read_addresses.compile((index, index, types.int64))
        machine_code.record()
    reader = AddressReader(module, function)
    return reader if _self_test(reader) else False


#: The loops in memory (one entry), loaded in the background on first use.
READERS: KernelStore[str] = KernelStore(_load, "descend-address-reader")


@cache
def _unavailable() -> bool:
    """Whether the loops can be ruled out without compiling anything."""
    from descend.kernels.fused import fused_available

    return _c_function() is None or not fused_available()


def address_reader() -> AddressReader | None:
    """The compiled address loops if they are ready here; ``None`` while they load in the
    background, or where they cannot serve (then steps read addresses from Python)."""
    if _unavailable():
        return None
    try:
        reader = READERS.if_ready("reader")
    except Exception:  # noqa: BLE001 - a failed compile leaves the Python reads, which are exact
        READERS.kernels["reader"] = False
        return None
    return reader or None
