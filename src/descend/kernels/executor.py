"""The executor interface: what every way of running a rule over tensors provides.

An executor says which tensors it can update (:meth:`Executor.supports`) and applies one step of
a rule to lists of them (:meth:`Executor.step`). Compiled executors (the fused CPU one, the GPU
one) also run cached *plans* (:mod:`descend.kernels.plan`): they compile a kernel per rule
variant (:meth:`Executor.kernel`) and launch it over an address table (:meth:`Executor.launch`).

Optimizers choose executors by *backend* name: ``"auto"`` asks every available compiled executor
in :data:`AUTO_ORDER` and then the reference executor, which supports everything; a named
backend asks only that executor (see :func:`executors_for`).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from descend.kernels.variant import Variant
from descend.rules.spec import Rule


class Executor:
    """Base class of executors; subclasses set :attr:`name` and implement the methods."""

    #: The backend name that selects this executor (``backend="fused"``).
    name: str = ""
    #: Whether the executor runs cached plans (compiled kernels over address tables).
    compiled: bool = False

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

    def supports(self, tensor: torch.Tensor) -> bool:
        """Whether the executor can update this parameter (its device and dtype)."""
        raise NotImplementedError

    def refusal(self, tensor: torch.Tensor) -> str:
        """What this executor runs, for the error when a parameter is not supported."""
        return f"the {self.name} executor cannot update it"

    def step(self, rule: Rule, variant: Variant, scalars: Mapping[str, Any],
             params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
             slots: Sequence[Sequence[torch.Tensor | None]]) -> None:
        """Apply one step of ``rule`` in place to each parameter and its active slots.

        ``slots[i]`` holds parameter i's state tensors in the rule's slot order, ``None`` for a
        slot that is not active; ``scalars`` are the keyword arguments of ``rule.update``.
        """
        raise NotImplementedError

    def check_ready(self) -> None:
        """Raise ``ValueError`` if the executor cannot run now (a bad setting in the
        environment), so that a step fails before it changes anything."""

    # -- compiled executors -------------------------------------------------------------------

    def kernel(self, rule: Rule, variant: Variant) -> Any:
        """The compiled kernel of ``rule`` for ``variant`` (compiled executors only)."""
        raise NotImplementedError

    def kernel_if_ready(self, rule: Rule, variant: Variant) -> Any | None:
        """The kernel if it can be had without waiting, else ``None`` after starting to load
        or compile it in the background (compiled executors only). Raises what an earlier
        background attempt raised. By default: :meth:`kernel`, waiting for it."""
        return self.kernel(rule, variant)

    def launch(self, kernel: Any, table: Any, rows: Any, scalars: Any,
               indices: Any = None) -> None:
        """Run ``kernel`` over an address table (compiled executors only): ``rows[i]`` is the
        row of ``scalars`` the i-th tensor reads, ``indices`` the tensors of the table to run
        (all if ``None``)."""
        raise NotImplementedError


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
            raise ValueError(f"backend={name!r} is invalid: expected one of "
                             f"{', '.join(map(repr, backend_names()))}")
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
                warnings.warn(f"backend='auto' runs CPU parameters on the reference executor "
                              f"(torch ops), since the fused executor is unavailable: "
                              f"{executor.unavailable_reason()}", RuntimeWarning,
                              stacklevel=3)
        return (*chosen, get_executor("reference"))
    executor = get_executor(backend)
    if not executor.available():
        raise ValueError(f"backend={backend!r} is not available: "
                         f"{executor.unavailable_reason()}")
    return (executor,)
