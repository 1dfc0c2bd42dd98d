"""The hook wrapper around ``step``: what ``torch.optim.Optimizer`` wraps every ``step`` in, at
a twentieth of its cost.

``torch.optim.Optimizer`` wraps a class's ``step`` (once, on first construction) in a function
that opens a profiler range named ``Optimizer.step#<class>.step``, runs the global and the
optimizer's pre-hooks (a pre-hook may return new ``(args, kwargs)``), calls ``step``, calls
``_optimizer_step_code`` (where the profiler's Python tracer looks at the optimizer) and runs
the post-hooks. Its range is a ``torch.autograd.profiler.record_function``, which costs about
11 us a step even when nothing listens: a fifth of a whole step of a small model. The wrapper
here does the same things in the same order, and opens the same range through the profiler's
C-level fast range (what torch's compiled code uses; about 0.5 us, and still recorded by every
listener), falling back to ``record_function`` where that is missing and while
``torch.compile`` traces the step. :func:`patch_step` puts it where torch would put its own,
on the class of the optimizer being built, marked ``hooked`` so that torch leaves it alone.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from itertools import chain
from typing import Any, TypeVar, cast

import torch
from torch.optim import optimizer as torch_optimizer

_Step = TypeVar("_Step", bound=Callable[..., Any])
_Function = TypeVar("_Function", bound=Callable[..., Any])

#: The profiler's C-level range (``None`` on a torch release without it).
_FAST_RANGE: Any = getattr(getattr(torch._C, "_profiler", None), "_RecordFunctionFast", None)


def profiler_range(name: str) -> Any:
    """A context manager that opens the profiler range ``name``: the C-level fast range where
    this torch has one and no ``torch.compile`` trace is running, else ``record_function``."""
    if _FAST_RANGE is None or torch.compiler.is_compiling():
        return torch.autograd.profiler.record_function(name)
    return _FAST_RANGE(name)


def hooked_step(step: _Step) -> _Step:
    """``step`` wrapped as ``torch.optim.Optimizer`` wraps it (profiler range, pre-hooks that
    may replace the arguments, ``_optimizer_step_code``, post-hooks; see the module
    docstring), and marked so that torch does not wrap it again."""

    @functools.wraps(step)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        optimizer = args[0]
        with profiler_range(f"Optimizer.step#{type(optimizer).__name__}.step"):
            for pre_hook in chain(
                torch_optimizer._global_optimizer_pre_hooks.values(),
                optimizer._optimizer_step_pre_hooks.values(),
            ):
                result = pre_hook(optimizer, args, kwargs)
                if result is not None:
                    if isinstance(result, tuple) and len(result) == 2:
                        args, kwargs = result
                    else:
                        raise RuntimeError(
                            f"{step} must return None or a tuple of (new_args, new_kwargs), "
                            f"but got {result}."
                        )
            out = step(*args, **kwargs)
            optimizer._optimizer_step_code()
            for post_hook in chain(
                optimizer._optimizer_step_post_hooks.values(),
                torch_optimizer._global_optimizer_post_hooks.values(),
            ):
                post_hook(optimizer, args, kwargs)
            return out

    wrapper.hooked = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def opaque_to_compile(function: _Function) -> _Function:
    """``torch.compiler.disable``, typed: ``torch.compile`` calls the function as it is (a
    graph break)."""
    disable: Callable[[_Function], Any] = torch.compiler.disable
    return cast(_Function, disable(function))


class _EagerGradMode:
    """``torch.set_grad_enabled`` for an eager step, in fewer Python calls (a step of a
    small model pays about a microsecond for torch's)."""

    __slots__ = ("before", "enabled")

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self) -> None:
        self.before = torch.is_grad_enabled()
        torch._C._set_grad_enabled(self.enabled)

    def __exit__(self, *exc: object) -> None:
        torch._C._set_grad_enabled(self.before)


def grad_mode(enabled: bool, compiling: bool) -> contextlib.AbstractContextManager[None]:
    """A context with autograd recording ``enabled``: torch's ``set_grad_enabled`` while
    ``torch.compile`` traces (``compiling``), which it knows; a cheaper one otherwise."""
    return torch.set_grad_enabled(enabled) if compiling else _EagerGradMode(enabled)


def patch_step(optimizer_class: type[torch.optim.Optimizer]) -> None:
    """Wrap ``optimizer_class.step`` with :func:`hooked_step` unless it is wrapped already:
    what ``torch.optim.Optimizer._patch_step_function`` does with torch's wrapper, on the
    same class (a subclass whose ``step`` calls ``super().step()`` runs its hooks once)."""
    if not getattr(optimizer_class.step, "hooked", None):
        optimizer_class.step = hooked_step(optimizer_class.step)  # type: ignore[method-assign]


__all__ = ["grad_mode", "hooked_step", "opaque_to_compile", "patch_step", "profiler_range"]
