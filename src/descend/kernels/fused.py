"""The fused CPU executor: one parallel, compiled pass over memory per step, generated from a rule.

Nothing here restates an optimizer's math. For a rule and a *variant* (the dtype, which slots are
active, and the scalars whose values decide an ``if``), :func:`kernel_source` writes a small Python
module that compiles the rule's own ``update`` with Numba and calls it once per element inside a
``prange`` loop. Flags are written into that source as constants, so the compiler removes the
branches they switch off; every other scalar is read from a table at run time, so a learning-rate
schedule never triggers a recompile. The module goes to a cache directory (see :func:`cache_dir`)
and is compiled with ``cache=True``: a fresh process loads the machine code from disk.

One call covers a whole list of tensors. The tensors are described by a table of raw addresses
(:class:`TensorTable`); their elements, taken end to end, are cut into work items of equal size
(:data:`WORK_ITEM`), each a run of *segments* (a piece of one tensor), and the threads share the
items. Numba is imported only when a kernel is first needed.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import os
import sys
import tempfile
import textwrap
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from descend.rules.spec import Rule

#: Dtypes the fused executor computes on (arithmetic in float64 inside the kernel).
FUSED_DTYPES: dict[torch.dtype, str] = {torch.float32: "float32", torch.float64: "float64"}
#: Elements per parallel work item: large enough to amortize the per-item bookkeeping, small
#: enough that even a one-tensor step splits evenly over the threads.
WORK_ITEM = 1 << 16
#: Elements each extra thread must have before a call runs in parallel. Below it the
#: calling thread does the whole step: waking a second thread costs more than it saves, and on
#: a busy machine a sleeping thread may wait a whole scheduler tick to run.
PARALLEL_GRAIN = 1 << 20
#: Environment variable naming the kernel cache directory.
CACHE_ENV = "DESCEND_CACHE_DIR"
#: Environment variable that, when set to an integer, fixes the number of kernel threads;
#: otherwise kernels use ``torch.get_num_threads()``.
THREADS_ENV = "DESCEND_NUM_THREADS"


@cache
def fused_available() -> bool:
    """Whether Numba can be imported, so that the fused executor can run at all."""
    return importlib.util.find_spec("numba") is not None


def supports(tensor: torch.Tensor) -> bool:
    """Whether the fused executor can update this tensor (a CPU float32/float64 tensor)."""
    return tensor.device.type == "cpu" and tensor.dtype in FUSED_DTYPES


def cache_dir() -> Path:
    """Where generated kernels and their compiled code live.

    ``$DESCEND_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/descend/kernels``, else
    ``~/.cache/descend/kernels``.
    """
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "descend" / "kernels"


def kernel_threads() -> int:
    """Threads a kernel call uses: ``$DESCEND_NUM_THREADS``, else ``torch.get_num_threads()``."""
    value = os.environ.get(THREADS_ENV)
    if value:
        try:
            threads = int(value)
        except ValueError:
            raise ValueError(f"{THREADS_ENV}={value!r} is invalid: expected a positive "
                             "integer") from None
        if threads < 1:
            raise ValueError(f"{THREADS_ENV}={value!r} is invalid: expected a positive integer")
        return threads
    return torch.get_num_threads()


# -- variants -------------------------------------------------------------------------------------


@cache
def condition_names(rule: Rule) -> frozenset[str]:
    """The scalars the rule's ``update`` tests in an ``if`` (statement or expression)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(rule.update)))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If | ast.IfExp | ast.While):
            names.update(n.id for n in ast.walk(node.test) if isinstance(n, ast.Name))
    return frozenset(names) & frozenset(rule.scalar_names)


@dataclass(frozen=True)
class Variant:
    """What a compiled kernel is specialized on.

    ``active`` marks the rule's slots that exist; ``constants`` are scalars written into the
    kernel as literals (every boolean flag, and zero values of scalars an ``if`` tests, which
    switch a feature such as weight decay off); ``runtime`` names the scalars read from the
    scalar table, in its column order.
    """

    dtype: str
    active: tuple[bool, ...]
    constants: tuple[tuple[str, bool | float], ...]
    runtime: tuple[str, ...]


def variant_of(rule: Rule, scalars: Mapping[str, Any], dtype: torch.dtype,
               active: Sequence[bool]) -> Variant:
    """The kernel variant that runs ``rule`` with these scalars on tensors of ``dtype``."""
    if dtype not in FUSED_DTYPES:
        raise ValueError(f"dtype={dtype} is not supported by the fused executor: expected one "
                         f"of {', '.join(map(str, FUSED_DTYPES))}")
    tested = condition_names(rule)
    constants: list[tuple[str, bool | float]] = []
    runtime: list[str] = []
    for name in rule.scalar_names:
        value = scalars[name]
        if isinstance(value, bool):
            constants.append((name, value))
        elif name in tested and float(value) == 0.0:
            constants.append((name, 0.0))
        else:
            runtime.append(name)
    return Variant(FUSED_DTYPES[dtype], tuple(bool(a) for a in active), tuple(constants),
                   tuple(runtime))


def runtime_row(variant: Variant, scalars: Mapping[str, Any]) -> list[float]:
    """The scalar-table row for one step: the variant's runtime scalars as floats."""
    return [float(scalars[name]) for name in variant.runtime]


# -- code generation ------------------------------------------------------------------------------


def _importable(rule: Rule) -> bool:
    """Whether generated code can import the rule's update function by module and name."""
    function = rule.update
    module = sys.modules.get(function.__module__)
    return (function.__module__ != "__main__" and module is not None
            and getattr(module, function.__qualname__, None) is function)


@cache
def _rule_fingerprint(rule: Rule) -> str:
    """A hash of the source the rule's update comes from, so an edited rule gets new kernels."""
    module = inspect.getmodule(rule.update)
    try:
        text = inspect.getsource(module) if module is not None else ""
    except (OSError, TypeError):
        text = ""
    text += inspect.getsource(rule.update)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_OPERATORS = {ast.Add: "_add", ast.Sub: "_sub", ast.Mult: "_mul", ast.Div: "_div",
              ast.Pow: "_power"}


class _TorchRounding(ast.NodeTransformer):
    """Rewrite ``a op b`` into ``_op(a, b)``: operators that round as torch does."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        name = _OPERATORS.get(type(node.op))
        if name is None:
            raise ValueError(f"operator {type(node.op).__name__} is not allowed in a rule's "
                             f"update: expected one of + - * / **")
        call = ast.Call(ast.Name(name, ast.Load()), [node.left, node.right], [])
        return ast.copy_location(call, node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.USub):
            return ast.copy_location(ast.Call(ast.Name("_neg", ast.Load()), [node.operand], []),
                                     node)
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        if not isinstance(node.target, ast.Name):
            raise ValueError("a rule's update may only assign to plain names")
        value = ast.BinOp(ast.Name(node.target.id, ast.Load()), node.op, node.value)
        assign = ast.Assign([ast.Name(node.target.id, ast.Store())], value)
        return self.visit(ast.copy_location(assign, node))


@cache
def element_function_source(rule: Rule) -> str:
    """The rule's ``update`` rewritten for the kernel, as source text named ``_rule_update``.

    Mechanical changes only: keyword-only parameters become positional (Numba cannot pass
    keywords), the docstring goes, and each arithmetic operator becomes a call that rounds as
    torch does (:mod:`descend.kernels._numba_support`). The operations and their order are the
    rule's own.
    """
    if rule.update.__code__.co_freevars:
        raise ValueError(f"rule {rule.name!r}: update must be a plain function, not a closure "
                         f"(it reads {', '.join(rule.update.__code__.co_freevars)})")
    tree = ast.parse(textwrap.dedent(inspect.getsource(rule.update)))
    function = tree.body[0]
    if not isinstance(function, ast.FunctionDef):
        raise ValueError(f"rule {rule.name!r}: update must be defined with def")
    function.name = "_rule_update"
    function.decorator_list = []
    function.returns = None
    function.args.args += function.args.kwonlyargs
    function.args.kwonlyargs, function.args.kw_defaults = [], []
    for argument in function.args.args:
        argument.annotation = None
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        function.body = body[1:] or [ast.Pass()]
    function = ast.fix_missing_locations(_TorchRounding().visit(function))
    return ast.unparse(function)


def _rule_globals(rule: Rule) -> list[str]:
    """Module-level names the rule's update reads (``sqrt``, ``maximum``, ...)."""
    return sorted(set(rule.update.__code__.co_names) & set(rule.update.__globals__))


def kernel_source(rule: Rule, variant: Variant, *, importable: bool = True) -> str:
    """The Python source of the kernel module for ``rule`` under ``variant``.

    With ``importable`` the module imports the names the rule reads from the rule's module and
    compiles with ``cache=True``; otherwise the caller supplies them in the module namespace.
    """
    constants = dict(variant.constants)
    pointer = f"{variant.dtype}_pointer"
    itemsize = 4 if variant.dtype == "float32" else 8
    # Operand rows of the address table: p, g, then each active slot.
    slot_rows: list[int | None] = []
    row = 2
    for is_active in variant.active:
        slot_rows.append(row if is_active else None)
        row += bool(is_active)
    arguments = ["x0[i]", "x1[i]"]
    arguments += ["0.0" if r is None else f"x{r}[i]" for r in slot_rows]
    arguments += [repr(constants[name]) if name in constants else name
                  for name in rule.scalar_names]
    scalar_lines = [f"{name} = scalars[row, {column}]"
                    for column, name in enumerate(variant.runtime)]
    array_lines = [f"x{r} = carray({pointer}(addresses[{r}, t] + offset), n)"
                   for r in range(row)]
    store_lines = ["x0[i] = result[0]"]
    store_lines += [f"x{r}[i] = result[{index + 1}]"
                    for index, r in enumerate(slot_rows) if r is not None]
    names = _rule_globals(rule)
    import_lines = (f"from {rule.update.__module__} import {', '.join(names)}"
                    if importable and names else "")
    body = "\n".join(
        [" " * 16 + line for line in scalar_lines + array_lines]
        + [" " * 16 + "for i in range(n):",
           " " * 20 + f"result = _update({', '.join(arguments)})"]
        + [" " * 20 + line for line in store_lines])
    return f'''"""Fused {variant.dtype} kernel of the {rule.name!r} rule, generated by descend."""
# rule fingerprint {_rule_fingerprint(rule)}; variant {variant!r}
from numba import carray, njit, prange

from descend.kernels._numba_support import {pointer}
from descend.kernels._numba_support import add as _add, sub as _sub, mul as _mul
from descend.kernels._numba_support import div as _div, power as _power, neg as _neg
{import_lines}


{element_function_source(rule)}


_update = njit(inline="always", error_model="numpy")(_rule_update)


@njit(parallel=True, nogil=True, cache={importable}, error_model="numpy", boundscheck=False)
def kernel(addresses, item_start, segment_tensor, segment_start, segment_stop, tensor_row,
           scalars):
    for item in prange(item_start.shape[0] - 1):
        for segment in range(item_start[item], item_start[item + 1]):
            t = segment_tensor[segment]
            start = segment_start[segment]
            n = segment_stop[segment] - start
            if n > 0:
                offset = start * {itemsize}
                row = tensor_row[t]
{body}
'''


_kernels: dict[tuple[Rule, Variant], Any] = {}
_lock = threading.Lock()


def get_kernel(rule: Rule, variant: Variant):
    """The compiled kernel for ``rule`` under ``variant``, from memory, disk or the compiler."""
    key = (rule, variant)
    kernel = _kernels.get(key)
    if kernel is not None:
        return kernel
    with _lock:
        kernel = _kernels.get(key)
        if kernel is None:
            kernel = _load_kernel(rule, variant)
            _kernels[key] = kernel
    return kernel


def _load_kernel(rule: Rule, variant: Variant):
    if not fused_available():
        raise RuntimeError("the fused backend needs Numba (pip install numba)")
    if not _importable(rule):
        # A rule defined in a script or a function: compile in memory, without the disk cache.
        source = kernel_source(rule, variant, importable=False)
        namespace: dict[str, Any] = {name: rule.update.__globals__[name]
                                     for name in _rule_globals(rule)}
        exec(compile(source, f"<descend kernel {rule.name}>", "exec"), namespace)
        return namespace["kernel"]
    source = kernel_source(rule, variant)
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    name = f"descend_kernel_{rule.name}_{variant.dtype}_{digest}"
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    if not path.exists():
        # Write then rename, so a concurrent process never imports a half-written file, and
        # never rewrite an existing file: Numba's disk cache is keyed on its modification time.
        with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False) as f:
            f.write(source)
        os.replace(f.name, path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.kernel


# -- work tables ----------------------------------------------------------------------------------


def segments(sizes: np.ndarray, work_item: int = WORK_ITEM,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut tensors of ``sizes`` elements, laid end to end, into work items of equal size.

    Returns ``(item_start, segment_tensor, segment_start, segment_stop)``: work item ``w`` is
    segments ``item_start[w]:item_start[w + 1]``; segment ``s`` covers elements
    ``segment_start[s]:segment_stop[s]`` of tensor ``segment_tensor[s]``.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    ends = np.cumsum(sizes)
    total = int(ends[-1]) if len(sizes) else 0
    starts = ends - sizes
    if total == 0:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(1, dtype=np.int64), empty, empty, empty
    cuts = np.arange(0, total, work_item, dtype=np.int64)
    bounds = np.union1d(np.concatenate([starts[sizes > 0], cuts]), [total])
    lower, upper = bounds[:-1], bounds[1:]
    tensor = np.searchsorted(ends, lower, side="right").astype(np.int64)
    item = lower // work_item
    item_start = np.searchsorted(item, np.arange(item[-1] + 2), side="left").astype(np.int64)
    return item_start, tensor, lower - starts[tensor], upper - starts[tensor]


class TensorTable:
    """Raw addresses and the work split of a list of same-dtype tensors sharing one layout.

    ``addresses[k, i]`` is the address of operand ``k`` (0 the parameter, 1 the gradient, then
    each active slot) of tensor ``i``. Each operand of a tensor must be dense with the same
    strides as the parameter (:func:`flat_compatible`), so that the kernel can walk all of them
    as flat arrays of ``sizes[i]`` elements.
    """

    def __init__(self, sizes: Sequence[int], operands: int) -> None:
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.addresses = np.zeros((operands, len(self.sizes)), dtype=np.int64)
        self.work = segments(self.sizes)

    def subset_work(self, indices: np.ndarray) -> tuple[np.ndarray, tuple]:
        """Addresses and work split for only the tensors at ``indices``."""
        return self.addresses[:, indices], segments(self.sizes[indices])


def run_kernel(kernel, addresses: np.ndarray, work: tuple, tensor_row: np.ndarray,
               scalars: np.ndarray) -> None:
    """Call a compiled kernel with up to ``kernel_threads()`` threads.

    Each thread gets at least :data:`PARALLEL_GRAIN` elements (work items hold
    :data:`WORK_ITEM` elements each, all but the last full).
    """
    import numba

    items = work[0].shape[0] - 1
    enough = max(1, items * WORK_ITEM // PARALLEL_GRAIN)
    threads = min(kernel_threads(), numba.config.NUMBA_NUM_THREADS, enough)
    if numba.get_num_threads() != threads:
        numba.set_num_threads(threads)
    kernel(addresses, *work, tensor_row, scalars)


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


# -- stateless entry point ------------------------------------------------------------------------


def update_tensors_fused(
    rule: Rule,
    scalars: Mapping[str, Any],
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    slots: Sequence[Sequence[torch.Tensor | None]],
) -> None:
    """Apply one step of ``rule`` in place, like :func:`~descend.kernels.update_tensors`.

    Every tensor must satisfy :func:`supports`; mixed dtypes are fine (one kernel call per
    dtype). Tensors that cannot be walked as flat arrays (strided views, a gradient laid out
    differently from its parameter) are copied into contiguous buffers and back.
    """
    if not (len(params) == len(grads) == len(slots)):
        raise ValueError(f"got {len(params)} params, {len(grads)} grads and {len(slots)} slot "
                         "lists: expected the same number of each")
    active = tuple(state is not None for state in (slots[0] if slots else ()))
    by_dtype: dict[torch.dtype, list[tuple]] = {}
    copies: list[tuple[torch.Tensor, torch.Tensor]] = []
    for param, grad, state in zip(params, grads, slots, strict=True):
        if not supports(param):
            raise ValueError(f"the fused executor cannot update a {param.dtype} tensor on "
                             f"{param.device}: expected a CPU tensor of dtype float32 or "
                             "float64")
        operands = [param, grad, *(s for s in state if s is not None)]
        if not flat_compatible(operands):
            contiguous = [t.contiguous() for t in operands]
            copies += [(original, copy) for original, copy in zip(operands, contiguous,
                                                                   strict=True)
                       if copy is not original and original is not grad]
            operands = contiguous
        by_dtype.setdefault(param.dtype, []).append(operands)
    for dtype, entries in by_dtype.items():
        variant = variant_of(rule, scalars, dtype, active)
        table = TensorTable([ops[0].numel() for ops in entries], len(entries[0]))
        for index, operands in enumerate(entries):
            table.addresses[:, index] = [t.data_ptr() for t in operands]
        run_kernel(get_kernel(rule, variant), table.addresses, table.work,
                   np.zeros(len(entries), dtype=np.int64),
                   np.asarray([runtime_row(variant, scalars)], dtype=np.float64))
    for original, copy in copies:
        original.copy_(copy)
