"""The executor interface: what every way of running a rule over tensors provides.

An executor says which tensors it can update (:meth:`Executor.supports`) and applies one step of
a rule to lists of them (:meth:`Executor.step`). Compiled executors (the fused CPU one, the GPU
one) derive from :class:`CompiledExecutor`: they also run the cached *plans* of
:mod:`descend.optim.plan`, compiling a kernel per rule variant (:meth:`Executor.kernel`) and
launching it over an address table (:meth:`Executor.launch`). These are exactly the calls the
plan makes, with the types it passes.

Optimizers choose executors by *backend* name: ``"auto"`` asks every available compiled executor
in :data:`AUTO_ORDER` and then the reference executor, which supports everything; a named
backend asks only that executor (see :func:`executors_for`).
"""

from __future__ import annotations

import importlib
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt
import torch

from descend.kernels.operands import Operand, check_operands
from descend.kernels.table import Int64Array, TensorTable, step_in_tables
from descend.kernels.variant import Variant
from descend.rules.spec import Rule

#: A compiled kernel: a Numba dispatcher or a Triton JIT function, opaque to everyone but the
#: executor that made it.
Kernel: TypeAlias = Any


class CautiousKernels(NamedTuple):
    """The two kernels of a cautious step of a rule (see :mod:`descend.kernels.caution`), which
    a compiled executor's :meth:`~Executor.launch` runs in place of one plain kernel: ``count``
    (its variant's ``caution`` is ``"count"``), then ``apply``, over parameters of ``dtype``."""

    count: Any
    apply: Any
    dtype: torch.dtype


#: Tensor positions in an address table, or rows of a scalar table (int64).
IndexArray: TypeAlias = Int64Array
#: Run-time scalars of a launch: one float64 row per distinct step, in a variant's order.
ScalarTable: TypeAlias = npt.NDArray[np.float64]
#: The keyword arguments of a rule's ``update`` for one step (see ``Rule.scalars``).
Scalars: TypeAlias = Mapping[str, Any]
#: Each parameter's state tensors in the rule's slot order, ``None`` for an inactive slot.
SlotLists: TypeAlias = Sequence[Sequence[torch.Tensor | None]]


#: The torch dtype of each dtype name a variant uses.
_TORCH_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}


class Executor(ABC):
    """Base class of executors; subclasses set :attr:`name` and implement the methods."""

    #: The backend name that selects this executor (``backend="fused"``).
    name: ClassVar[str] = ""
    #: Whether the executor runs cached plans (compiled kernels over address tables).
    compiled: ClassVar[bool] = False
    #: Whether its kernels decode and encode compressed slots themselves (a variant's
    #: ``formats``); otherwise such slots are decoded around its list calls.
    codecs: ClassVar[bool] = False
    #: Whether it compiles a cautious step into the rule's own kernels (:meth:`cautious_kernels`,
    #: for variants without compressed slots); otherwise a cautious step is its plain step
    #: followed by the correction passes of :func:`descend.kernels.caution.apply_caution`.
    fuses_caution: ClassVar[bool] = False
    #: Whether its kernels read and store bf16 weights themselves (a variant's ``weights``,
    #: ``param_precision``); otherwise such weights are stepped on float32 masters around its
    #: step (:mod:`descend.optim.weights`).
    weights: ClassVar[bool] = False
    #: Whether it also compiles a cautious step into the kernels of bf16 weights (variants
    #: with ``weights``, whose slots may be compressed); otherwise such a step runs on
    #: float32 masters.
    fuses_weight_caution: ClassVar[bool] = False

    def available(self) -> bool:
        """Whether the executor can run at all here (its compiler is installed, ...)."""
        return True

    def unavailable_reason(self) -> str:
        """Why :meth:`available` is false, and what to install."""
        return ""

    def automatic(self) -> Executor | None:
        """The executor ``backend="auto"`` asks in this one's place (``None``: skip it): itself,
        unless it would also take tensors that ``auto`` should give to another executor."""
        return self

    @abstractmethod
    def supports(self, tensor: torch.Tensor) -> bool:
        """Whether the executor can update this parameter (its device and dtype)."""

    def refusal(self, tensor: torch.Tensor) -> str:
        """What this executor runs, for the error when a parameter is not supported."""
        return f"the {self.name} executor cannot update it"

    @abstractmethod
    def step(
        self,
        rule: Rule,
        variant: Variant | None,
        scalars: Scalars,
        params: Sequence[torch.Tensor],
        grads: Sequence[torch.Tensor],
        slots: SlotLists,
    ) -> None:
        """Apply one step of ``rule`` in place to each parameter and its active slots.

        ``slots[i]`` holds parameter i's state tensors in the rule's slot order, ``None`` for a
        slot that is not active; ``scalars`` are the keyword arguments of ``rule.update``.
        ``variant`` may be ``None``: an executor that needs one derives it from the tensors.
        """

    def check_ready(self) -> None:
        """Raise ``ValueError`` if the executor cannot run now (a bad setting in the
        environment), so that a step fails before it changes anything. By default: ready."""
        return None

    # -- what a plan calls on a compiled executor (see CompiledExecutor) ----------------------

    def kernel(self, rule: Rule, variant: Variant) -> Kernel:
        """The compiled kernel of ``rule`` for ``variant`` (compiled executors only)."""
        raise NotImplementedError(f"the {self.name} executor compiles no kernels")

    def kernel_if_ready(self, rule: Rule, variant: Variant) -> Kernel | None:
        """The kernel if it can be had without waiting, else ``None`` after starting to load
        or compile it in the background (compiled executors only). Raises what an earlier
        background attempt raised. By default: :meth:`kernel`, waiting for it."""
        return self.kernel(rule, variant)

    def cautious_kernels(
        self, rule: Rule, variant: Variant, wait: bool = True
    ) -> CautiousKernels | None:
        """The kernels of a cautious step of ``rule`` for ``variant`` (a plain variant), which
        :meth:`launch` accepts in place of a kernel (executors that :attr:`fuses_caution`
        only). Without ``wait``: ``None`` while one of them loads (see
        :meth:`kernel_if_ready`)."""
        fused = not variant.coded or (bool(variant.weights) and self.fuses_weight_caution)
        if not self.fuses_caution or not fused:
            raise NotImplementedError(
                f"the {self.name} executor compiles no cautious kernels for {variant!r}"
            )
        pair = []
        for caution in ("count", "apply"):
            passed = replace(variant, caution=caution)
            kernel = self.kernel(rule, passed) if wait else self.kernel_if_ready(rule, passed)
            if kernel is None:
                return None
            pair.append(kernel)
        return CautiousKernels(pair[0], pair[1], _TORCH_DTYPES[variant.dtype])

    def launch(
        self,
        kernel: Kernel,
        table: TensorTable,
        rows: IndexArray,
        scalars: ScalarTable,
        indices: IndexArray | None = None,
    ) -> None:
        """Run ``kernel`` (or the :class:`CautiousKernels` of a cautious step) over an address
        table (compiled executors only): ``rows[i]`` is the row of ``scalars`` the i-th tensor
        reads, ``indices`` the tensors of the table to run (all if ``None``)."""
        raise NotImplementedError(f"the {self.name} executor launches no kernels")


class CompiledExecutor(Executor):
    """An executor that compiles a rule into kernels over address tables (fused CPU, GPU).

    Subclasses set :attr:`dtypes` and implement :meth:`supports`, :meth:`requirement`,
    :meth:`kernel` and :meth:`launch`; :meth:`step` and the operand checks are written here
    once for all of them.
    """

    compiled: ClassVar[bool] = True
    #: Parameter dtypes the executor compiles kernels for, by the name a variant uses.
    dtypes: ClassVar[Mapping[torch.dtype, str]] = {}

    @abstractmethod
    def requirement(self) -> str:
        """What a parameter must be for this executor, ending an error message
        (``"expected a CPU tensor of dtype float32 or float64"``)."""

    @abstractmethod
    def kernel(self, rule: Rule, variant: Variant) -> Kernel:
        """The compiled kernel of ``rule`` for ``variant`` (from memory, disk or compiler)."""

    @abstractmethod
    def launch(
        self,
        kernel: Kernel,
        table: TensorTable,
        rows: IndexArray,
        scalars: ScalarTable,
        indices: IndexArray | None = None,
    ) -> None:
        """Run ``kernel`` over the tensors of ``table`` (those at ``indices``, if given);
        ``rows[i]`` is the row of ``scalars`` the i-th tensor reads."""

    def check_operands(self, param: torch.Tensor, operands: Sequence[Operand]) -> None:
        """Refuse, naming it, any operand a kernel walking ``param`` would read or write
        wrongly (see :func:`descend.kernels.operands.check_operands`)."""
        check_operands(self.name, self.supports, self.requirement, param, operands)

    def step(
        self,
        rule: Rule,
        variant: Variant | None,
        scalars: Scalars,
        params: Sequence[torch.Tensor],
        grads: Sequence[torch.Tensor],
        slots: SlotLists,
    ) -> None:
        """Apply one step of ``rule`` in place, like the reference executor.

        Every operand is checked against its parameter first (:meth:`check_operands`); mixed
        dtypes and devices are fine (one launch per dtype and device; ``variant`` may be
        ``None``, else its dtype is ignored). Tensors that cannot be walked as flat arrays
        (strided views, a gradient laid out unlike its parameter) are copied into contiguous
        buffers and back.
        """
        step_in_tables(self, rule, scalars, params, grads, slots, self.dtypes, self.check_operands)


#: Compiled executors that ``backend="auto"`` asks, in order, before the reference executor.
AUTO_ORDER = ("fused", "triton")
#: Where each executor is defined, imported on first use so ``import descend`` stays light.
_MODULES = {
    "reference": "descend.kernels.reference",
    "fused": "descend.kernels.fused",
    "triton": "descend.kernels.triton",
}
_instances: dict[str, Executor] = {}
#: Executors ``auto`` has said, once per process, that it must do without.
_warned: set[str] = set()


def backend_names() -> tuple[str, ...]:
    """Every value the ``backend`` argument of an optimizer accepts."""
    return ("auto", *_MODULES)


def get_executor(name: str) -> Executor:
    """The executor called ``name``; ``ValueError`` lists the valid names."""
    executor = _instances.get(name)
    if executor is None:
        if name not in _MODULES:
            raise ValueError(
                f"backend={name!r} is invalid: expected one of "
                f"{', '.join(map(repr, backend_names()))}"
            )
        module = importlib.import_module(_MODULES[name])
        executor = _instances[name] = module.EXECUTOR
    return executor


def executors_for(backend: str) -> tuple[Executor, ...]:
    """The executors a backend asks, in order; each parameter goes to the first that supports it.

    Raises ``ValueError`` for an unknown backend or a named one that is not available here.
    """
    if backend == "auto":
        chosen = []
        for name in AUTO_ORDER:
            try:
                executor = get_executor(name)
            except ImportError:
                continue
            automatic = executor.automatic() if executor.available() else None
            if automatic is not None:
                chosen.append(automatic)
            elif name == "fused" and not _warned:
                # The CPU step then runs on torch ops: a few times slower on many tensors.
                _warned.add(name)
                warnings.warn(
                    f"backend='auto' runs CPU parameters on the reference executor "
                    f"(torch ops), since the fused executor is unavailable: "
                    f"{executor.unavailable_reason()}",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return (*chosen, get_executor("reference"))
    executor = get_executor(backend)
    if not executor.available():
        raise ValueError(f"backend={backend!r} is not available: {executor.unavailable_reason()}")
    return (executor,)
