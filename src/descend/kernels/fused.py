"""The fused CPU executor: one compiled pass over memory per step, generated from a rule.

Nothing here restates an optimizer's math. For a rule and a *variant* (see
:mod:`descend.kernels.variant`), :func:`kernel_source` writes a small Python module that
compiles the rule's own ``update`` (and the helpers it calls) with Numba and calls it once per
element. Flags are written into that source as constants, so the compiler removes the branches
they switch off; every other scalar is read from a table at run time, so a learning-rate schedule
never triggers a recompile. The module goes to a cache directory (see :func:`cache_dir`), named
by the hash of its source and checked against it on every load, and is compiled with
``cache=True``: a fresh process loads the machine code from disk.

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

import ast
import contextlib
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from descend.kernels import cpu_threads
from descend.kernels.executor import Executor
from descend.kernels.table import WORK_ITEM, TensorTable, addressable, step_in_tables
from descend.kernels.variant import Variant, function_tree
from descend.rules.elementwise import PRIMITIVES, elementwise_names, helpers_used
from descend.rules.spec import Rule

#: Dtypes the fused executor computes on (elements in their own dtype, scalars in float64).
FUSED_DTYPES: dict[torch.dtype, str] = {torch.float32: "float32", torch.float64: "float64"}
#: Elements each extra thread must have before a call runs in parallel. Below it the
#: calling thread does the whole step: waking a second thread costs more than it saves.
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
    """Whether the fused executor can update this tensor (a CPU float32/float64 tensor whose
    address is its elements': not a DTensor, whose local tensor is the one to walk)."""
    return (tensor.device.type == "cpu" and tensor.dtype in FUSED_DTYPES
            and addressable(tensor))


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


# -- code generation ------------------------------------------------------------------------------


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


def _rewritten(function: Callable, name: str) -> str:
    """``function`` as kernel source named ``name``: keyword-only parameters made positional
    (Numba cannot pass keywords), no docstring or annotations, and each arithmetic operator a
    call that rounds as torch does (:mod:`descend.kernels._numba_support`). The operations and
    their order are the function's own."""
    if function.__code__.co_freevars:
        raise ValueError(f"{function.__qualname__} must be a plain function, not a closure "
                         f"(it reads {', '.join(function.__code__.co_freevars)})")
    definition = ast.parse(ast.unparse(function_tree(function))).body[0]
    definition.name = name
    definition.decorator_list = []
    definition.returns = None
    definition.args.args += definition.args.kwonlyargs
    definition.args.kwonlyargs, definition.args.kw_defaults = [], []
    for argument in definition.args.args:
        argument.annotation = None
    body = definition.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        definition.body = body[1:] or [ast.Pass()]
    return ast.unparse(ast.fix_missing_locations(_TorchRounding().visit(definition)))


@cache
def element_function_source(rule: Rule) -> str:
    """The rule's ``update`` as kernel source named ``_rule_update``, preceded by the helpers it
    calls (each compiled to be inlined) and imports of the primitives they use."""
    functions = (*helpers_used(rule.update), rule.update)
    primitives = sorted({name for function in functions
                         for name in elementwise_names(function)[0]})
    lines = []
    for name in primitives:
        module, attribute = PRIMITIVES[name]["numba"].split(":")
        lines.append(f"from {module} import {attribute} as {name}")
    for helper in functions[:-1]:
        lines += ["", "", _rewritten(helper, helper.__name__),
                  f"{helper.__name__} = njit(inline='always', error_model='numpy')"
                  f"({helper.__name__})"]
    lines += ["", "", _rewritten(rule.update, "_rule_update")]
    return "\n".join(lines)


def kernel_source(rule: Rule, variant: Variant) -> str:
    """The Python source of the kernel module for ``rule`` under ``variant``.

    The module is self-contained (the rule's code is inlined), so it is cached on disk for
    rules defined anywhere, scripts and tests included.
    """
    if variant.dtype not in FUSED_DTYPES.values():
        raise ValueError(f"dtype={variant.dtype} is not supported by the fused executor: "
                         f"expected one of {', '.join(FUSED_DTYPES.values())}")
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
    body = "\n".join(
        [" " * 16 + line for line in scalar_lines + array_lines]
        + [" " * 16 + "for i in range(n):",
           " " * 20 + f"result = _update({', '.join(arguments)})"]
        + [" " * 20 + line for line in store_lines])
    return f'''"""Fused {variant.dtype} kernel of the {rule.name!r} rule, generated by descend."""
# variant {variant!r}
from numba import carray, njit

from descend.kernels._numba_support import {pointer}
from descend.kernels._numba_support import add as _add, sub as _sub, mul as _mul
from descend.kernels._numba_support import div as _div, power as _power, neg as _neg
{element_function_source(rule)}


_update = njit(inline="always", error_model="numpy")(_rule_update)


@njit(nogil=True, cache=True, error_model="numpy", boundscheck=False)
def kernel(addresses, item_start, segment_tensor, segment_start, segment_stop, tensor_row,
           scalars, first_item, last_item):
    for item in range(first_item, last_item):
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
#: Kernels being loaded in the background, and what failed there (raised on the next ask).
_background: dict[tuple[Rule, Variant], threading.Thread] = {}
_background_failures: dict[tuple[Rule, Variant], BaseException] = {}
_background_lock = threading.Lock()


def _finish_background_loads() -> None:
    """Before this process forks: let kernels loading in the background finish, so that no
    child starts with a lock (ours or Numba's compiler lock) held by a thread it does not
    have."""
    for thread in list(_background.values()):
        if thread is not threading.current_thread():
            thread.join(LOCK_TIMEOUT_SECONDS)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_finish_background_loads)


def _load_in_background(rule: Rule, variant: Variant) -> None:
    """Load or compile a kernel for :meth:`FusedExecutor.kernel_if_ready` (a non-daemon
    thread: a process that ends meanwhile waits for it rather than cutting a compile short)."""
    try:
        get_kernel(rule, variant)
    except BaseException as error:  # handed to the step that asks next
        with _background_lock:
            _background_failures[(rule, variant)] = error
    finally:
        with _background_lock:
            _background.pop((rule, variant), None)


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
        raise RuntimeError("the fused backend needs Numba, a dependency of descend that is "
                           "missing here: pip install numba")
    source = kernel_source(rule, variant)
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    name = f"descend_kernel_{rule.name}_{variant.dtype}_{digest}"
    path = _cached_source(cache_dir(), f"{name}.py", source)
    machine_code = MachineCode(path)
    # One process at a time compiles or loads a kernel, so processes starting together (workers
    # of one job) never see each other's half-written cache as damage.
    with _file_lock(path.with_suffix(".lock")):
        machine_code.verify()
        try:
            kernel = _compile_module(name, path, source)
        except Exception as error:
            if not machine_code.files():
                raise
            warnings.warn(f"the compiled code cached for {path.name} could not be loaded "
                          f"({type(error).__name__}: {error}); recompiling it", RuntimeWarning,
                          stacklevel=3)
            machine_code.remove()
            kernel = _compile_module(name, path, source)
        machine_code.record()
    return kernel


#: Seconds a process waits for another one compiling the same kernel before it says so, and
#: before it compiles the kernel itself without the lock. A holder that is stopped (Ctrl-Z)
#: is not waited for at all.
LOCK_NOTICE_SECONDS = 30.0
LOCK_TIMEOUT_SECONDS = 600.0


@contextlib.contextmanager
def _file_lock(path: Path, notice: float | None = None,
               timeout: float | None = None) -> Iterator[None]:
    """An exclusive lock between processes on ``path`` (where the OS offers ``fcntl``).

    Never waits forever: the holder writes its process id into the file, and a waiter goes on
    without the lock at once if that process is stopped, else warns after ``notice`` seconds
    (default :data:`LOCK_NOTICE_SECONDS`) and goes on after ``timeout`` seconds
    (:data:`LOCK_TIMEOUT_SECONDS`). At worst two processes then compile the same kernel, and
    one of them recompiles what it finds half-written.
    """
    notice = LOCK_NOTICE_SECONDS if notice is None else notice
    timeout = LOCK_TIMEOUT_SECONDS if timeout is None else timeout
    try:
        import fcntl
    except ImportError:  # no advisory locks here: concurrent compiles may warn, nothing worse
        yield
        return
    with open(path, "a+") as handle:
        locked = _acquire(fcntl, handle, path, notice, timeout)
        try:
            if locked:
                handle.seek(0)
                handle.truncate()
                handle.write(str(os.getpid()))
                handle.flush()
            yield
        finally:
            if locked:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _acquire(fcntl: Any, handle: Any, path: Path, notice: float, timeout: float) -> bool:
    """Take the lock on ``handle``, polling; ``False`` if its holder is stopped or
    ``timeout`` passed first (each with a warning)."""
    start = time.monotonic()
    noticed = False
    delay = 0.01
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        holder = _holder(path)
        if holder is not None and _stopped(holder):
            warnings.warn(f"process {holder} holds {path} but is stopped; compiling the kernel "
                          "without waiting for it", RuntimeWarning, stacklevel=5)
            return False
        waited = time.monotonic() - start
        if waited >= timeout:
            warnings.warn(f"gave up waiting after {waited:.0f} s for process {holder} holding "
                          f"{path}; compiling the kernel without it", RuntimeWarning,
                          stacklevel=5)
            return False
        if not noticed and waited >= notice:
            warnings.warn(f"waiting for process {holder} compiling the same kernel (lock "
                          f"{path}); will go on without it after {timeout:.0f} s",
                          RuntimeWarning, stacklevel=5)
            noticed = True
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _holder(path: Path) -> int | None:
    """The process id a lock's holder wrote into it, if any."""
    try:
        return int(path.read_text().strip() or "x")
    except (OSError, ValueError):
        return None


def _stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (Ctrl-Z, SIGSTOP) or traced, where /proc tells."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:][:1] in ("T", "t")


def _compile_module(name: str, path: Path, source: str):
    """Execute the generated ``source`` as module ``name`` and compile its kernel now.

    The source generated here is compiled, never the file's bytes: the file only gives Numba's
    disk cache a stable path and modification time to key the machine code on.
    """
    from numba import types

    module = type(sys)(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
        index = types.Array(types.int64, 1, "C")
        module.kernel.compile((types.Array(types.int64, 2, "C"), index, index, index, index,
                               index, types.Array(types.float64, 2, "C"), types.int64,
                               types.int64))
    except Exception:
        sys.modules.pop(name, None)
        raise
    return module.kernel


class MachineCode:
    """The machine code Numba caches for one kernel file, checked against a manifest.

    Numba stores compiled code as pickles beside the source (``__pycache__``), and loading a
    pickle can run code. :meth:`record` writes the SHA-256 of each file after a successful
    compile; :meth:`verify` removes, before they are loaded, files that do not match it (with a
    warning) or that no manifest vouches for.
    """

    def __init__(self, source_path: Path) -> None:
        self.source_path = source_path
        self.manifest = source_path.with_suffix(".sha256")

    def files(self) -> list[Path]:
        """The cached machine-code files of this kernel."""
        return sorted((self.source_path.parent / "__pycache__").glob(
            f"{self.source_path.stem}.*"))

    def digests(self) -> dict[str, str]:
        """File name -> SHA-256 of its content."""
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in self.files()}

    def verify(self) -> None:
        """Remove cached machine code that the manifest does not vouch for."""
        files = self.files()
        if not files:
            return
        try:
            expected = json.loads(self.manifest.read_text())
        except (FileNotFoundError, ValueError):
            expected = None
        if expected is not None and expected == self.digests():
            return
        if expected is not None:
            warnings.warn(f"the compiled code cached for {self.source_path.name} does not "
                          "match its manifest; recompiling it", RuntimeWarning, stacklevel=4)
        self.remove()

    def remove(self) -> None:
        """Delete the cached machine code and its manifest."""
        for path in (*self.files(), self.manifest):
            path.unlink(missing_ok=True)

    def record(self) -> None:
        """Write the manifest of the machine code now cached."""
        with tempfile.NamedTemporaryFile("w", dir=self.manifest.parent, suffix=".tmp",
                                         delete=False) as f:
            json.dump(self.digests(), f)
        os.replace(f.name, self.manifest)


def _cached_source(directory: Path, filename: str, source: str) -> Path:
    """The path of ``filename`` in the cache holding exactly ``source``.

    A file whose content differs (corrupted, truncated, edited) is replaced, with a warning,
    along with the machine code Numba cached for it. Written to a temporary file, then renamed,
    so a concurrent process never sees a half-written file; an intact file is never rewritten,
    because Numba's disk cache is keyed on its modification time.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except OSError as error:
        raise ValueError(f"the kernel cache directory {directory} cannot be used ({error}): "
                         f"set ${CACHE_ENV} to a writable directory; nothing was "
                         "updated") from None
    path = directory / filename
    try:
        intact = path.read_text() == source
        present = True
    except (FileNotFoundError, UnicodeDecodeError):
        intact, present = False, path.exists()
    if intact:
        return path
    if present:
        warnings.warn(f"the cached kernel {path} does not match its generated source; "
                      "recompiling it", RuntimeWarning, stacklevel=4)
        for stale in (directory / "__pycache__").glob(f"{path.stem}.*"):
            stale.unlink(missing_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False) as f:
        f.write(source)
    os.replace(f.name, path)
    return path


def run_kernel(kernel, addresses: np.ndarray, work: tuple, tensor_row: np.ndarray,
               scalars: np.ndarray) -> None:
    """Call a compiled kernel over every work item, on up to ``kernel_threads()`` threads.

    Each thread gets at least :data:`PARALLEL_GRAIN` elements (work items hold
    :data:`WORK_ITEM` elements each, all but the last full); the calling thread always works.
    """
    items = work[0].shape[0] - 1
    enough = items * WORK_ITEM // PARALLEL_GRAIN
    threads = min(kernel_threads(), enough) if enough > 1 else 1
    if threads == 1:
        kernel(addresses, *work, tensor_row, scalars, 0, items)
    else:
        arguments = (addresses, *work, tensor_row, scalars)
        cpu_threads.share(lambda first, last: kernel(*arguments, first, last), items, threads)


# -- the executor ---------------------------------------------------------------------------------


def check_operands(param: torch.Tensor, operands: Sequence[tuple[str, torch.Tensor]]) -> None:
    """Refuse, naming it, any operand a kernel walking ``param`` would read or write wrongly.

    Every operand must be a CPU tensor of the parameter's dtype and shape: the kernel walks
    ``param.numel()`` elements of the parameter's type from each operand's address.
    """
    if not addressable(param):
        raise ValueError(f"the fused executor cannot update a {type(param).__name__}, whose "
                         "address is not its elements': expected a plain tensor (a DTensor's "
                         "local tensor)")
    if not supports(param):
        raise ValueError(f"the fused executor cannot update a {param.dtype} tensor on "
                         f"{param.device}: expected a CPU tensor of dtype float32 or float64")
    for label, tensor in operands:
        if not addressable(tensor):
            raise ValueError(f"{label} is a {type(tensor).__name__}, whose address is not its "
                             "elements': expected a plain tensor (a DTensor's local tensor)")
        if (tensor.device != param.device or tensor.dtype != param.dtype
                or tensor.shape != param.shape or tensor.is_sparse):
            raise ValueError(
                f"{label} is a {'sparse ' if tensor.is_sparse else ''}{tensor.dtype} tensor of "
                f"shape {tuple(tensor.shape)} on {tensor.device}, but its parameter is "
                f"{param.dtype} of shape {tuple(param.shape)} on {param.device}: expected the "
                "same dtype, shape and device")


class FusedExecutor(Executor):
    """Runs a rule as one compiled Numba pass over all tensors of a dtype (CPU float32/64)."""

    name = "fused"
    compiled = True

    def available(self) -> bool:
        """Whether Numba is installed."""
        return fused_available()

    def unavailable_reason(self) -> str:
        """What to install."""
        return ("it needs Numba, a dependency of descend that is missing here: pip install "
                "numba (or use backend='auto')")

    def supports(self, tensor: torch.Tensor) -> bool:
        """CPU float32 and float64 tensors."""
        return supports(tensor)

    def refusal(self, tensor: torch.Tensor) -> str:
        """What the fused executor runs."""
        return "the fused executor runs on CPU float32 and float64 tensors"

    def step(self, rule: Rule, variant: Variant | None, scalars: Mapping[str, Any],
             params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
             slots: Sequence[Sequence[torch.Tensor | None]]) -> None:
        """Apply one step of ``rule`` in place, like the reference executor.

        Every operand is checked against its parameter first (:func:`check_operands`); mixed
        dtypes are fine (one kernel call per dtype; ``variant`` may be ``None``, else its dtype
        is ignored). Tensors that cannot be walked as flat arrays (strided views, a gradient
        laid out unlike its parameter) are copied into contiguous buffers and back.
        """
        step_in_tables(self, rule, scalars, params, grads, slots, FUSED_DTYPES, check_operands)

    def check_ready(self) -> None:
        """``$DESCEND_NUM_THREADS`` must be a positive integer if set."""
        kernel_threads()

    def kernel(self, rule: Rule, variant: Variant):
        """The compiled kernel (memory, disk cache or compiler)."""
        return get_kernel(rule, variant)

    def kernel_if_ready(self, rule: Rule, variant: Variant):
        """The kernel if it is in memory; else ``None``, with a background thread loading it
        from the disk cache or compiling it (importing Numba on the way: about half a second
        warm, a second or more cold). Raises what a background attempt raised."""
        key = (rule, variant)
        kernel = _kernels.get(key)
        if kernel is not None:
            return kernel
        with _background_lock:
            failure = _background_failures.pop(key, None)
            if failure is not None:
                raise failure
            if key not in _background:
                thread = threading.Thread(target=_load_in_background, args=(rule, variant),
                                          name="descend-kernel-loader")
                _background[key] = thread
                thread.start()
        return _kernels.get(key)

    def launch(self, kernel, table: TensorTable, rows: np.ndarray, scalars: np.ndarray,
               indices: np.ndarray | None = None) -> None:
        """Run ``kernel`` over the tensors of ``table`` (those at ``indices``, if given).

        ``rows[i]`` is the row of ``scalars`` the i-th tensor reads.
        """
        if indices is None:
            addresses, work = table.addresses, table.work
        else:
            addresses, work = table.subset_work(indices)
        run_kernel(kernel, addresses, work, rows, scalars)


def update_tensors_fused(rule: Rule, scalars: Mapping[str, Any],
                         params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
                         slots: Sequence[Sequence[torch.Tensor | None]]) -> None:
    """One step of ``rule`` on the fused executor (see :meth:`FusedExecutor.step`)."""
    EXECUTOR.step(rule, None, scalars, params, grads, slots)


#: The fused CPU executor.
EXECUTOR = FusedExecutor()
