"""The GPU executor: one Triton kernel launch per step over all tensors of a group, generated
from the rule.

Nothing here restates an optimizer's math. For a rule and a *variant* (see
:mod:`descend.kernels.variant`), :func:`kernel_source` writes a small Python module holding the
rule's own ``update`` (and the helpers it calls) as ``@triton.jit`` functions, rewritten only in
form: keyword-only parameters made positional (Triton passes arguments by position), arithmetic
operators made calls that round as torch does (:mod:`descend.kernels.triton_support`), and no
docstring. The module's globals are only the elementwise names (primitives and helpers) and the
support functions, so no name of the rule's own module can reach the compiler. Flags, and the
zero values that switch a feature off, are written into the call as constants, so the compiler
drops the branches they switch off; every other scalar is a float64 kernel argument, so a
learning-rate schedule never recompiles. The module is cached on disk like the fused CPU
kernels (:mod:`descend.kernels.cache`), and Triton caches the compiled code, so a new process
starts from its disk cache. The rewriting of the rule's functions and the operand checks are
shared with the fused executor (:mod:`descend.kernels.codegen`, :mod:`descend.kernels.operands`).

One launch covers many tensors. The kernel walks an address table (:class:`TensorTable`: one row
per operand, parameter, gradient, then each active slot, one column per tensor) and a list of
*chunks*, ``(tensor, start, stop)`` rows of at most :attr:`TritonExecutor.chunk` elements; each
program of the launch updates one chunk, loading elements in float32 (float64 for float64
tensors), computing, and rounding the results back to the tensor's dtype. The chunk list depends
only on the tensors' sizes and is uploaded once per table; the address table is uploaded again,
with one non-blocking copy from pinned memory, only when an address in it changed (a gradient
freed and reallocated elsewhere). A program runs the whole blocks of its chunk without a mask
and its partial last block, if any, with one; when every address is 16-byte aligned the compiler
turns the unmasked accesses into 16-byte loads and stores.

With ``TRITON_INTERPRET=1`` Triton runs kernels in its NumPy interpreter; the executor then
updates CPU tensors (and refuses CUDA ones), so tests drive the same code on machines without a
GPU. ``backend="auto"`` never picks the interpreter.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import cache

import numpy as np
import torch

from descend.kernels.cache import KernelStore, cache_dir, cached_source
from descend.kernels.caution import caution_scales, check_caution_array
from descend.kernels.codegen import (
    caution_maximize,
    check_dtype,
    element_source,
    execute_module,
    module_name,
    scalar_arguments,
    slot_rows,
)
from descend.kernels.executor import (
    CautiousKernels,
    CompiledExecutor,
    Executor,
    IndexArray,
    Kernel,
    Scalars,
    ScalarTable,
    SlotLists,
)
from descend.kernels.table import TensorTable, addressable
from descend.kernels.triton_coded import coded_launch, coded_triton_source

# chunk_list is read through this module too (tests, callers of the executor).
from descend.kernels.triton_tables import DeviceTable, chunk_list  # noqa: F401
from descend.kernels.variant import CAUTION_PASSES, Variant
from descend.rules.spec import Rule

#: Parameter dtypes the Triton executor updates, by the name a variant uses.
TRITON_DTYPES: dict[torch.dtype, str] = {
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float32: "float32",
    torch.float64: "float64",
}
#: Environment variable that makes Triton run kernels in its interpreter, on CPU tensors.
INTERPRET_ENV = "TRITON_INTERPRET"
#: Names the generated kernel uses itself, so no rule scalar may take them.
_RESERVED = frozenset({"kernel", "triton", "tl", "ALIGNED", "CHUNK", "BLOCK"})


@cache
def triton_available() -> bool:
    """Whether Triton can be imported."""
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter (``TRITON_INTERPRET`` set to a true value,
    read as Triton reads it)."""
    return os.environ.get(INTERPRET_ENV, "0").strip().lower() in ("1", "true", "yes", "on", "y")


def supports(tensor: torch.Tensor) -> bool:
    """Whether the Triton executor can update this tensor: a CUDA tensor of a float dtype (a CPU
    one when interpreting)."""
    return (
        tensor.dtype in TRITON_DTYPES
        and tensor.device.type == ("cpu" if interpreting() else "cuda")
        and addressable(tensor)
    )


def _refusal() -> str:
    dtypes = "float16, bfloat16, float32 or float64"
    if interpreting():
        return (
            f"with {INTERPRET_ENV}=1 the triton executor runs on CPU tensors of dtype "
            f"{dtypes} (Triton's interpreter cannot read GPU memory)"
        )
    return f"the triton executor runs on CUDA tensors of dtype {dtypes}"


# -- code generation ------------------------------------------------------------------------------


@cache
def element_function_source(rule: Rule, caution: bool = False) -> str:
    """The rule's ``update`` as ``@triton.jit`` source named ``_rule_update``, preceded by the
    helpers it calls (each jitted too; with ``caution``, the caution helpers too) and imports
    of the primitives they use."""
    parts = element_source(rule, "triton", caution)
    lines = list(parts.imports)
    for _, source in parts.helpers:
        lines += ["", "", "@triton.jit", source]
    lines += ["", "", "@triton.jit", parts.update]
    return "\n".join(lines)


def _block_lines(rule: Rule, variant: Variant, masked: bool) -> list[str]:
    """One block of a program's loop: load, the rule's update, store; in a cautious pass (see
    :mod:`descend.kernels.caution`) the rule's result, rounded to the parameter's dtype as a
    store would, is compared with the gradient: the count pass adds the block's agreeing
    components to ``_kept`` and stores nothing, the apply pass stores the cautious
    parameter (with the tensor's scale ``_scale``) and the slots."""
    rows, _ = slot_rows(variant)
    results = [f"_r{k}" for k in range(1 + len(variant.active))]
    stored = [(0, "_r0")] + [(r, results[k + 1]) for k, r in enumerate(rows) if r is not None]
    load = "_load_masked({}, _mask)" if masked else "_load({})"
    store = "_store_masked({}, {}, _mask)" if masked else "_store({}, {})"
    lines = [f"_offs = _start + {'_full' if masked else '_i'} + tl.arange(0, BLOCK)"]
    if masked:
        lines.append("_mask = _offs < _stop")
    if variant.caution:
        lines += [f"_p = {load.format('_x0 + _offs')}", f"_g = {load.format('_x1 + _offs')}"]
        arguments = ["_p", "_g"]
    else:
        arguments = [load.format("_x0 + _offs"), load.format("_x1 + _offs")]
    arguments += ["0.0" if r is None else load.format(f"_x{r} + _offs") for r in rows]
    arguments += scalar_arguments(rule, variant)
    lines.append(f"{', '.join(results)} = _rule_update({', '.join(arguments)})")
    if variant.caution:
        lines.append(f"_new = _rounded(_r0, tl.{variant.dtype})")
        lines.append(f"_keep = cautious_agreement(_p, _new, _g, {caution_maximize(variant)})")
        if variant.caution == "count":
            if masked:
                # Lanes past the chunk computed the rule on zeros: they count nothing.
                lines.append("_keep = tl.where(_mask, _keep, 0.0)")
            # Each block's count is an integer of at most BLOCK: exact in float32.
            return [*lines, "_kept += tl.sum(_keep.to(tl.float32), axis=0)"]
        lines.append("_r0 = cautious_parameter(_p, _new, _keep, _scale)")
    return lines + [store.format(f"_x{r} + _offs", value) for r, value in stored]


def kernel_source(rule: Rule, variant: Variant) -> str:
    """The Python source of the Triton kernel module for ``rule`` under ``variant``.

    The kernel's parameters are the address table, the chunk list, the number of tensors in the
    table, the variant's run-time scalars (float64) and three compile-time constants: whether
    every address is 16-byte aligned, the chunk size and the block size (elements per
    iteration of a program's loop). A pass of a cautious step (``variant.caution``) also takes
    ``_caution`` after the number of tensors: a float64 array receiving each program's count
    (the count pass) or holding each tensor's scale (the apply pass).
    """
    check_dtype("triton", variant, TRITON_DTYPES.values())
    clashing = [name for name in rule.scalar_names if name.startswith("_") or name in _RESERVED]
    if clashing:
        raise ValueError(
            f"rule {rule.name!r}: scalar(s) {', '.join(clashing)} clash with the "
            "names of the generated kernel (no leading underscore, nor "
            f"{', '.join(sorted(_RESERVED))})"
        )
    caution = bool(variant.caution)
    if caution and variant.caution not in CAUTION_PASSES:
        raise ValueError(
            f"caution={variant.caution!r} is invalid: expected one of {CAUTION_PASSES}"
        )
    elements = element_function_source(rule, caution)
    if interpreting() and "_power(" in elements:
        raise ValueError(
            f"rule {rule.name!r} uses **, which Triton's interpreter cannot run "
            f"(it has no pow); unset {INTERPRET_ENV} and run it on a GPU"
        )
    if variant.coded:
        if caution:
            raise ValueError(
                f"rule {rule.name!r}: no Triton kernel runs a cautious step on compressed slots"
            )
        return coded_triton_source(rule, variant, elements)
    _, operands = slot_rows(variant)
    pointer = f"tl.pointer_type(tl.{variant.dtype})"
    header = [
        "_pid = tl.program_id(0).to(tl.int64)",
        "_tensor = tl.load(_chunks + 3 * _pid)",
        "_start = tl.multiple_of(tl.load(_chunks + 3 * _pid + 1), CHUNK)",
        "_stop = tl.load(_chunks + 3 * _pid + 2)",
    ]
    header += [
        f"_x{r} = tl.load(_table + {r} * _count + _tensor).to({pointer})" for r in range(operands)
    ]
    header.append("if ALIGNED:")
    header += [f"    _x{r} = tl.multiple_of(_x{r}, 16)" for r in range(operands)]
    header += [f"{name} = _scalar({name})" for name in variant.runtime]
    if variant.caution == "count":
        header.append("_kept = tl.zeros((), dtype=tl.float32)")
    elif variant.caution == "apply":
        header.append("_scale = tl.load(_caution + _tensor)")
    # Whole blocks without a mask (a mask with a bound unknown at compile time keeps the
    # compiler from 16-byte accesses), then the chunk's partial last block, if any, masked.
    header.append("_full = (_stop - _start) // BLOCK * BLOCK")
    header.append("for _i in range(0, _full, BLOCK):")
    header += ["    " + line for line in _block_lines(rule, variant, masked=False)]
    header.append("if _start + _full < _stop:")
    header += ["    " + line for line in _block_lines(rule, variant, masked=True)]
    if variant.caution == "count":
        header.append("tl.store(_caution + _pid, _kept.to(tl.float64))")
    # Run-time scalars are declared float64: Triton would pass a Python float as float32.
    parameters = ", ".join(
        [
            "_table",
            "_chunks",
            "_count",
            *(["_caution"] if caution else []),
            *(f"{name}: tl.float64" for name in variant.runtime),
            "ALIGNED: tl.constexpr",
            "CHUNK: tl.constexpr",
            "BLOCK: tl.constexpr",
        ]
    )
    kernel_body = "\n".join("    " + line for line in header)
    kind = f"{variant.caution} pass of a cautious step" if caution else "kernel"
    return f'''"""Triton {variant.dtype} {kind} of the {rule.name!r} rule, generated by descend."""
# variant {variant!r}
import triton
import triton.language as tl

from descend.kernels.triton_support import add as _add, sub as _sub, mul as _mul
from descend.kernels.triton_support import div as _div, power as _power, neg as _neg
from descend.kernels.triton_support import load as _load, load_masked as _load_masked
from descend.kernels.triton_support import store as _store, store_masked as _store_masked
from descend.kernels.triton_support import scalar as _scalar, rounded as _rounded
{elements}


@triton.jit(do_not_specialize=["_count"])
def kernel({parameters}):
{kernel_body}
'''


def _load_kernel(key: tuple[Rule, Variant, bool]) -> Kernel:
    """Make the ``@triton.jit`` kernel of ``key`` (rule, variant, interpreting)."""
    rule, variant, _ = key
    if not triton_available():
        raise RuntimeError("the triton backend needs Triton: pip install triton")
    source = kernel_source(rule, variant)
    name = module_name("descend_triton", rule, variant, source)
    # Triton reads a jitted function's source from its file (inspect.getsource), so the module
    # is executed from a file in the cache holding exactly this source.
    path = cached_source(cache_dir(), f"{name}.py", source)
    kernel = execute_module(name, path, source).kernel
    # A kernel with compressed slots also reads the codecs' tables (see _launch).
    kernel.reads_codec_tables = variant.coded
    return kernel


#: The Triton kernels in memory, by rule, variant and whether Triton interprets them.
KERNELS: KernelStore[tuple[Rule, Variant, bool]] = KernelStore(
    _load_kernel, "descend-triton-loader"
)


def get_kernel(rule: Rule, variant: Variant) -> Kernel:
    """The ``@triton.jit`` kernel for ``rule`` under ``variant`` (Triton compiles it, or loads
    it from its disk cache, on the first launch for a device)."""
    return KERNELS.get((rule, variant, interpreting()))


# -- the executor ---------------------------------------------------------------------------------


class TritonExecutor(CompiledExecutor):
    """Runs a rule as one Triton kernel launch per group, dtype, device and step count.

    ``chunk`` (elements per program) and ``block`` (elements per loop iteration, a power of
    two dividing ``chunk``) shape the launch; ``num_warps`` is Triton's.
    """

    name = "triton"
    dtypes = TRITON_DTYPES
    codecs = True
    fuses_caution = True
    weights = True

    def __init__(self, chunk: int = 8192, block: int = 1024, num_warps: int = 4) -> None:
        self.chunk = chunk
        self.block = block
        self.num_warps = num_warps

    def available(self) -> bool:
        """Whether Triton is installed and there is a CUDA device (or the interpreter is on)."""
        return triton_available() and (interpreting() or torch.cuda.is_available())

    def unavailable_reason(self) -> str:
        """What is missing."""
        if not triton_available():
            return "it needs Triton: pip install triton (or use backend='auto')"
        return (
            f"no CUDA device is available (set {INTERPRET_ENV}=1 to run Triton's "
            "interpreter on CPU tensors, or use backend='auto')"
        )

    def automatic(self) -> Executor | None:
        """Itself, except under the interpreter, which ``auto`` never uses."""
        return None if interpreting() else self

    def supports(self, tensor: torch.Tensor) -> bool:
        """CUDA tensors of float16, bfloat16, float32 or float64 (CPU ones when interpreting)."""
        return supports(tensor)

    def refusal(self, tensor: torch.Tensor) -> str:
        """What the Triton executor runs."""
        return _refusal()

    def requirement(self) -> str:
        """What a parameter must be (see :meth:`refusal`)."""
        return _refusal()

    def kernel(self, rule: Rule, variant: Variant) -> Kernel:
        """The ``@triton.jit`` kernel of ``rule`` for ``variant``."""
        return get_kernel(rule, variant)

    def launch(
        self,
        kernel: Kernel,
        table: TensorTable,
        rows: IndexArray,
        scalars: ScalarTable,
        indices: IndexArray | None = None,
    ) -> None:
        """Run ``kernel`` over the tensors of ``table`` (those at ``indices``, if given), one
        launch per distinct row of ``scalars``; ``rows[i]`` is the row the i-th tensor reads.

        Uploads the table's addresses if they changed since the last launch over it.
        """
        device_table = table.derived.get(self.name)
        if not isinstance(device_table, DeviceTable):
            device_table = table.derived[self.name] = DeviceTable(table)
        device_table.refresh(table)
        if len(scalars) == 1:
            self._launch(kernel, table, device_table, indices, scalars[0])
            return
        for row in range(len(scalars)):
            chosen = np.flatnonzero(rows == row)
            if len(chosen):
                self._launch(
                    kernel,
                    table,
                    device_table,
                    chosen if indices is None else indices[chosen],
                    scalars[row],
                )

    def _launch(
        self,
        kernel: Kernel,
        table: TensorTable,
        device_table: DeviceTable,
        indices: IndexArray | None,
        row: ScalarTable,
    ) -> None:
        first = kernel.count if isinstance(kernel, CautiousKernels) else kernel
        chunk, block, tables = coded_launch(first, table.device, self.chunk, self.block)
        chunks, count = device_table.chunks(table, indices, chunk)
        if count == 0:
            return
        head = (device_table.addresses, chunks, device_table.count)
        tail = (*tables, *row.tolist())
        options = dict(
            ALIGNED=device_table.aligned,
            CHUNK=chunk,
            BLOCK=block,
            num_warps=self.num_warps,
            enable_fp_fusion=False,
        )
        device = table.device
        guard: AbstractContextManager[object] = nullcontext()
        if device.type == "cuda":
            device_table.use_on_current_stream()
            if device.index != torch.cuda.current_device():
                guard = torch.cuda.device(device)  # Triton launches on the current device.
        with guard:
            if not isinstance(kernel, CautiousKernels):
                kernel[(count,)](*head, *tail, **options)
                return
            # A cautious step: each program writes its chunk's count; the counts, integers,
            # are summed per tensor exactly whatever the order; the apply pass reads each
            # tensor's scale.
            partials = torch.empty(count, dtype=torch.float64, device=device)
            check_caution_array("counts", partials, count, device)
            kernel.count[(count,)](*head, partials, *tail, **options)
            kept = torch.zeros(device_table.count, dtype=torch.float64, device=device)
            kept.index_add_(0, chunks[:, 0], partials)
            scales = caution_scales(kept, device_table.device_sizes(table), kernel.dtype)
            check_caution_array("scales", scales, device_table.count, device)
            kernel.apply[(count,)](*head, scales, *tail, **options)


def update_tensors_triton(
    rule: Rule,
    scalars: Scalars,
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    slots: SlotLists,
) -> None:
    """One step of ``rule`` on the Triton executor (see :meth:`TritonExecutor.step`)."""
    EXECUTOR.step(rule, None, scalars, params, grads, slots)


#: The Triton executor.
EXECUTOR = TritonExecutor()
