"""The fused CPU executor: one compiled pass over memory per step, generated from a rule.

Nothing here restates an optimizer's math. For a rule and a *variant* (see
:mod:`descend.kernels.variant`), :func:`kernel_source` writes a small Python module that
compiles the rule's own ``update`` (and the helpers it calls) with Numba and calls it once per
element. Flags are written into that source as constants, so the compiler removes the branches
they switch off; every other scalar is read from a table at run time, so a learning-rate schedule
never triggers a recompile. The module goes to a cache directory (see
:mod:`descend.kernels.cache`), named by the hash of its source and checked against it on every
load, and is compiled with ``cache=True``: a fresh process loads the machine code from disk.
What the fused and Triton executors share (the rewriting of a rule's functions, the cache, the
compile lock, the operand checks) is written once in :mod:`descend.kernels.codegen`,
:mod:`descend.kernels.cache` and :mod:`descend.kernels.operands`.

One call covers a whole list of tensors. The tensors are described by a table of raw addresses
(:class:`TensorTable`); their elements, taken end to end, are cut into work items of equal size
(:data:`WORK_ITEM`), each a run of *segments* (a piece of one tensor).

Threads: the kernels are compiled without Numba's parallel threading layer. Numba's OpenMP
layer, once started, resets the OpenMP thread count that torch's own kernels read (undoing
``torch.set_num_threads``) and leaves its workers spin-waiting; beside a busy neighbour process
that made every later torch op in the process tens of times slower. Instead a large step is
shared between the calling thread and a few threads of :mod:`descend.kernels.cpu_threads`,
which sleep when idle. Numba is imported only when a kernel is first needed.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
import numpy.typing as npt
import torch

from descend.kernels import cpu_threads
from descend.kernels.cache import (
    CACHE_ENV,
    KernelStore,
    MachineCode,
    cache_dir,
    cached_source,
    file_lock,
    process_stopped,
)
from descend.kernels.caution import caution_scales, check_caution_array
from descend.kernels.coded import coded_kernel_source
from descend.kernels.codegen import (
    caution_maximize,
    check_dtype,
    element_source,
    execute_module,
    module_name,
    numba_kernel_entry,
    scalar_arguments,
    slot_rows,
)
from descend.kernels.executor import (
    CautiousKernels,
    CompiledExecutor,
    IndexArray,
    Kernel,
    Scalars,
    ScalarTable,
    SlotLists,
)
from descend.kernels.table import WORK_ITEM, TensorTable, WorkSplit, addressable
from descend.kernels.variant import CAUTION_PASSES, Variant
from descend.rules.spec import Rule

__all__ = [
    "CACHE_ENV",
    "EXECUTOR",
    "FUSED_DTYPES",
    "PARALLEL_GRAIN",
    "THREADS_ENV",
    "FusedExecutor",
    "cache_dir",
    "element_function_source",
    "fused_available",
    "get_kernel",
    "kernel_source",
    "kernel_threads",
    "run_kernel",
    "supports",
    "update_tensors_fused",
]

#: Dtypes the fused executor computes on (elements in their own dtype, scalars in float64).
FUSED_DTYPES: dict[torch.dtype, str] = {torch.float32: "float32", torch.float64: "float64"}
#: Elements each extra thread must have before a call runs in parallel. Below it the
#: calling thread does the whole step: waking a second thread costs more than it saves.
PARALLEL_GRAIN = 1 << 20
#: Environment variable that, when set to an integer, fixes the number of kernel threads;
#: otherwise kernels use ``torch.get_num_threads()``.
THREADS_ENV = "DESCEND_NUM_THREADS"
#: The compile lock and its stopped-holder test (:mod:`descend.kernels.cache`), also reached
#: through this module.
_file_lock = file_lock
_stopped = process_stopped


@cache
def fused_available() -> bool:
    """Whether Numba can be imported, so that the fused executor can run at all."""
    return importlib.util.find_spec("numba") is not None


def supports(tensor: torch.Tensor) -> bool:
    """Whether the fused executor can update this tensor (a CPU float32/float64 tensor whose
    address is its elements': not a DTensor, whose local tensor is the one to walk)."""
    return tensor.device.type == "cpu" and tensor.dtype in FUSED_DTYPES and addressable(tensor)


#: :data:`THREADS_ENV` as CPython's ``os.environ`` keys its mapping (``None`` elsewhere).
_THREADS_KEY = os.environ.encodekey(THREADS_ENV) if hasattr(os.environ, "encodekey") else None


def _threads_setting() -> str | None:
    """``os.environ.get(THREADS_ENV)``, read every step. ``os.environ.get`` raises and catches a
    ``KeyError`` inside when the variable is unset (the usual case, about a microsecond), so
    CPython's mapping behind ``os.environ`` is read directly where it is there."""
    environ = os.environ
    data = getattr(environ, "_data", None)
    if isinstance(data, dict) and _THREADS_KEY is not None and hasattr(environ, "decodevalue"):
        raw = data.get(_THREADS_KEY)
        return None if raw is None else environ.decodevalue(raw)
    return environ.get(THREADS_ENV)


def kernel_threads() -> int:
    """Threads a kernel call uses: ``$DESCEND_NUM_THREADS``, else ``torch.get_num_threads()``."""
    value = _threads_setting()
    if value:
        try:
            threads = int(value)
        except ValueError:
            raise ValueError(
                f"{THREADS_ENV}={value!r} is invalid: expected a positive integer"
            ) from None
        if threads < 1:
            raise ValueError(f"{THREADS_ENV}={value!r} is invalid: expected a positive integer")
        return threads
    return torch.get_num_threads()


# -- code generation ------------------------------------------------------------------------------


@cache
def element_function_source(rule: Rule, caution: bool = False) -> str:
    """The rule's ``update`` as kernel source named ``_rule_update``, preceded by the helpers it
    calls (each compiled to be inlined; with ``caution``, the caution helpers too) and imports
    of the primitives they use."""
    parts = element_source(rule, "numba", caution)
    lines = list(parts.imports)
    for name, source in parts.helpers:
        lines += ["", "", source, f"{name} = njit(inline='always', error_model='numpy')({name})"]
    lines += ["", "", parts.update]
    return "\n".join(lines)


def _caution_loop(variant: Variant, arguments: list[str], stores: list[str]) -> list[str]:
    """The element loop of a segment in a cautious pass (see :mod:`descend.kernels.caution`),
    from the plain loop's ``arguments`` of ``_update`` and its slot ``stores``.

    ``"count"``: the rule's step in registers, nothing stored; the segment's number of
    agreeing components goes to ``caution[segment]`` (NaN if an agreement is NaN, as a float
    sum would be). Both counts are integer sums, which the compiler vectorizes and which do
    not depend on the order. ``"apply"``: the plain loop, storing the cautious parameter with
    the tensor's scale ``caution[t]``.
    """
    call = f"result = _update({', '.join(arguments)})"
    maximize = caution_maximize(variant)
    agreement = f"_keep = cautious_agreement(x0[i], result[0], x1[i], {maximize})"
    if variant.caution == "count":
        return [
            "_kept = 0",
            "_unknown = 0",
            "for i in range(n):",
            "    " + call,
            "    " + agreement,
            "    _kept += np.int64(_keep > 0.5)",
            "    _unknown += np.int64(_keep != _keep)",
            "caution[segment] = np.float64(_kept) if _unknown == 0 else np.nan",
        ]
    return [
        "_scale = caution[t]",
        "for i in range(n):",
        "    " + call,
        "    " + agreement,
        "    x0[i] = cautious_parameter(x0[i], result[0], _keep, _scale)",
        *("    " + line for line in stores),
    ]


def kernel_source(rule: Rule, variant: Variant) -> str:
    """The Python source of the kernel module for ``rule`` under ``variant``.

    The module is self-contained (the rule's code is inlined), so it is cached on disk for
    rules defined anywhere, scripts and tests included. A variant with a ``caution`` pass
    gets that pass of a cautious step (:func:`_caution_loop`).
    """
    check_dtype("fused", variant, FUSED_DTYPES.values())
    caution = bool(variant.caution)
    if caution and variant.caution not in CAUTION_PASSES:
        raise ValueError(
            f"caution={variant.caution!r} is invalid: expected one of {CAUTION_PASSES}"
        )
    if variant.coded:  # (a cautious pass only with bf16 weights: see coded_kernel_source)
        return coded_kernel_source(rule, variant, element_function_source(rule, caution))
    pointer = f"{variant.dtype}_pointer"
    itemsize = 4 if variant.dtype == "float32" else 8
    rows, operands = slot_rows(variant)
    arguments = ["x0[i]", "x1[i]"]
    arguments += ["0.0" if r is None else f"x{r}[i]" for r in rows]
    arguments += scalar_arguments(rule, variant)
    scalar_lines = [
        f"{name} = scalars[row, {column}]" for column, name in enumerate(variant.runtime)
    ]
    array_lines = [
        f"x{r} = carray({pointer}(addresses[{r}, t] + offset), n)" for r in range(operands)
    ]
    slot_stores = [
        f"x{r}[i] = result[{index + 1}]" for index, r in enumerate(rows) if r is not None
    ]
    if caution:
        loop = _caution_loop(variant, arguments, slot_stores)
    else:
        loop = [
            "for i in range(n):",
            f"    result = _update({', '.join(arguments)})",
            "    x0[i] = result[0]",
            *("    " + line for line in slot_stores),
        ]
    body = "\n".join(
        " " * 16 + line
        for line in [f"offset = start * {itemsize}", *scalar_lines, *array_lines] + loop
    )
    kind = f"{variant.caution} pass of a cautious step" if caution else "kernel"
    return f'''"""Fused {variant.dtype} {kind} of the {rule.name!r} rule, generated by descend."""
# variant {variant!r}
{"import numpy as np" + chr(10) if caution else ""}from numba import carray, njit

from descend.kernels._numba_support import {pointer}
from descend.kernels._numba_support import add as _add, sub as _sub, mul as _mul
from descend.kernels._numba_support import div as _div, power as _power, neg as _neg
{element_function_source(rule, caution)}


{numba_kernel_entry(caution=caution)}
{body}
'''


def _load_kernel(key: tuple[Rule, Variant]) -> Kernel:
    """Load the kernel of ``key`` from the disk cache, or compile it, under the compile lock."""
    rule, variant = key
    if not fused_available():
        raise RuntimeError(
            "the fused backend needs Numba, a dependency of descend that is "
            "missing here: pip install numba"
        )
    source = kernel_source(rule, variant)
    name = module_name("descend_kernel", rule, variant, source)
    path = cached_source(cache_dir(), f"{name}.py", source)
    machine_code = MachineCode(path)
    # One process at a time compiles or loads a kernel, so processes starting together (workers
    # of one job) never see each other's half-written cache as damage.
    with file_lock(path.with_suffix(".lock")):
        machine_code.verify()
        try:
            kernel = _compile_module(name, path, source, bool(variant.caution))
        except Exception as error:
            if not machine_code.files():
                raise
            warnings.warn(
                f"the compiled code cached for {path.name} could not be loaded "
                f"({type(error).__name__}: {error}); recompiling it",
                RuntimeWarning,
                stacklevel=3,
            )
            machine_code.remove()
            kernel = _compile_module(name, path, source, bool(variant.caution))
        machine_code.record()
    return kernel


#: The fused kernels in memory; a kernel not there loads (in the background, for
#: :meth:`FusedExecutor.kernel_if_ready`) from the disk cache or the compiler.
KERNELS: KernelStore[tuple[Rule, Variant]] = KernelStore(_load_kernel, "descend-kernel-loader")


def get_kernel(rule: Rule, variant: Variant) -> Kernel:
    """The compiled kernel for ``rule`` under ``variant``, from memory, disk or the compiler."""
    return KERNELS.get((rule, variant))


def _compile_module(name: str, path: Path, source: str, caution: bool = False) -> Kernel:
    """Execute the generated ``source`` as module ``name`` and compile its kernel now (with
    ``caution``: a pass of a cautious step, which takes one more float64 array).

    The source generated here is compiled, never the file's bytes: the file only gives Numba's
    disk cache a stable path and modification time to key the machine code on.
    """
    from numba import types

    module: ModuleType = execute_module(name, path, source)
    try:
        index = types.Array(types.int64, 1, "C")
        extra = (types.Array(types.float64, 1, "C"),) if caution else ()
        module.kernel.compile(
            (
                types.Array(types.int64, 2, "C"),
                index,
                index,
                index,
                index,
                index,
                types.Array(types.float64, 2, "C"),
                *extra,
                types.int64,
                types.int64,
            )
        )
    except Exception:
        sys.modules.pop(name, None)
        raise
    return module.kernel


def run_kernel(
    kernel: Kernel,
    addresses: IndexArray,
    work: WorkSplit,
    tensor_row: IndexArray,
    scalars: ScalarTable,
    *caution: npt.NDArray[np.float64],
) -> None:
    """Call a compiled kernel over every work item, on up to ``kernel_threads()`` threads
    (a pass of a cautious step also gets its ``caution`` array).

    Each thread gets at least :data:`PARALLEL_GRAIN` elements (work items hold
    :data:`WORK_ITEM` elements each, all but the last full); the calling thread always works.
    """
    items = work[0].shape[0] - 1
    enough = items * WORK_ITEM // PARALLEL_GRAIN
    threads = min(kernel_threads(), enough) if enough > 1 else 1
    if threads == 1:
        kernel(addresses, *work, tensor_row, scalars, *caution, 0, items)
    else:
        arguments = (addresses, *work, tensor_row, scalars, *caution)
        cpu_threads.share(lambda first, last: kernel(*arguments, first, last), items, threads)


# -- the executor ---------------------------------------------------------------------------------


class FusedExecutor(CompiledExecutor):
    """Runs a rule as one compiled Numba pass over all tensors of a dtype (CPU float32/64).

    Its :meth:`step` (from :class:`CompiledExecutor`) checks every operand against its
    parameter first; mixed dtypes are fine (one kernel call per dtype).
    """

    name = "fused"
    dtypes = FUSED_DTYPES
    codecs = True
    fuses_caution = True
    weights = True
    fuses_weight_caution = True

    def available(self) -> bool:
        """Whether Numba is installed."""
        return fused_available()

    def unavailable_reason(self) -> str:
        """What to install."""
        return (
            "it needs Numba, a dependency of descend that is missing here: pip install "
            "numba (or use backend='auto')"
        )

    def supports(self, tensor: torch.Tensor) -> bool:
        """CPU float32 and float64 tensors."""
        return supports(tensor)

    def refusal(self, tensor: torch.Tensor) -> str:
        """What the fused executor runs."""
        return "the fused executor runs on CPU float32 and float64 tensors"

    def requirement(self) -> str:
        """What a parameter must be."""
        return "expected a CPU tensor of dtype float32 or float64"

    def check_ready(self) -> None:
        """``$DESCEND_NUM_THREADS`` must be a positive integer if set."""
        kernel_threads()

    def kernel(self, rule: Rule, variant: Variant) -> Kernel:
        """The compiled kernel (memory, disk cache or compiler)."""
        return get_kernel(rule, variant)

    def kernel_if_ready(self, rule: Rule, variant: Variant) -> Kernel | None:
        """The kernel if it is in memory; else ``None``, with a background thread loading it
        from the disk cache or compiling it (importing Numba on the way: about half a second
        warm, a second or more cold). Raises what a background attempt raised."""
        return KERNELS.if_ready((rule, variant))

    def launch(
        self,
        kernel: Kernel,
        table: TensorTable,
        rows: IndexArray,
        scalars: ScalarTable,
        indices: IndexArray | None = None,
    ) -> None:
        """Run ``kernel`` over the tensors of ``table`` (those at ``indices``, if given).

        ``rows[i]`` is the row of ``scalars`` the i-th tensor reads.
        """
        if indices is None:
            addresses, work, sizes = table.addresses, table.work, table.sizes
        else:
            (addresses, work), sizes = table.subset_work(indices), table.sizes[indices]
        if not isinstance(kernel, CautiousKernels):
            run_kernel(kernel, addresses, work, rows, scalars)
            return
        # A cautious step: the count pass writes one count per segment (each segment belongs
        # to one work item, so to one thread), summed per tensor here; the apply pass reads
        # each tensor's scale.
        counts = np.empty(len(work[1]), dtype=np.float64)
        check_caution_array("counts", counts, len(work[1]))
        run_kernel(kernel.count, addresses, work, rows, scalars, counts)
        kept = np.bincount(work[1], weights=counts, minlength=len(sizes))
        scales = caution_scales(
            torch.from_numpy(kept), torch.from_numpy(sizes), kernel.dtype
        ).numpy()
        check_caution_array("scales", scales, len(sizes))
        run_kernel(kernel.apply, addresses, work, rows, scalars, scales)


def update_tensors_fused(
    rule: Rule,
    scalars: Scalars,
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    slots: SlotLists,
) -> None:
    """One step of ``rule`` on the fused executor (see :meth:`FusedExecutor.step`)."""
    EXECUTOR.step(rule, None, scalars, params, grads, slots)


#: The fused CPU executor.
EXECUTOR = FusedExecutor()
