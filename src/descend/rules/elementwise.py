"""What an update rule may call besides arithmetic: primitives and elementwise helpers.

*Primitives* are the non-arithmetic functions of one element (``sqrt``, ``maximum``, ``sign``,
...). :data:`PRIMITIVES` has one row per primitive and one column per executor, naming the
implementation that executor binds; adding a primitive is adding a row. Bound here to NumPy,
the module-level names work on arrays and on Python or NumPy scalars, so a rule's ``update``
can be called directly on NumPy data.

*Helpers* are small pure functions of elements that several rules share, written in the same
restricted language as a rule (arithmetic, ``if`` on scalars, primitives, other helpers), and
registered with :func:`helper`. Every executor compiles them with the rule that calls them: the
reference executor binds them like the rule, the compiled executors inline them.

:func:`bind` gives an executor its copy of a rule's function: the same code object, evaluated
in a namespace that holds only the primitives and helpers the function uses, bound for that
executor. No rule is ever re-typed for an executor.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable
from functools import cache
from typing import Any

#: What an elementwise function computes on (see :data:`descend.rules.spec.Element`).
Element = Any
#: A function in the rule language: a primitive, a helper or an update.
Function = Callable[..., Any]

#: The executors a primitive has an implementation for, in :data:`PRIMITIVES`' column order.
EXECUTORS = ("numpy", "torch", "numba", "triton")


def numpy_lerp(start: Element, end: Element, weight: float) -> Element:
    """``torch.lerp(start, end, weight)`` for NumPy values and a scalar ``weight``::

        start + weight * (end - start)          if |weight| < 0.5
        end - (end - start) * (1 - weight)      otherwise

    (torch computes each form with one fused multiply-add; NumPy rounds twice.)
    """
    if -0.5 < weight < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1 - weight)


def numpy_sign(x: Element) -> Element:
    """``torch.sign(x)`` for NumPy values: -1, 0 or 1 by the sign of ``x``, and 0 for NaN
    (NumPy's own ``sign`` gives NaN), as every executor's ``sign`` does."""
    if type(x) is float:  # a Python float (not NumPy's float64, a subclass): the lab's points
        return 0.0 if x != x else float((x > 0) - (x < 0))
    import numpy as np  # here: NumPy loads with the NumPy column, not with the rules

    signs = np.sign(x)
    return np.where(signs == signs, signs, np.zeros_like(signs))[()]


def numpy_fma(a: Element, b: Element, c: Element) -> Element:
    """``a * b + c`` for NumPy values (NumPy has no fused multiply-add: it rounds twice, where
    the compiled executors and torch round once)."""
    return a * b + c


#: Primitive name -> implementation per executor, as ``"module:attribute"``.
#: ``lerp(start, end, weight)`` interpolates with a scalar weight as ``torch.lerp`` does (its
#: compiled forms use the same fused multiply-add, so they match torch bit for bit).
#: ``fma(a, b, c)`` is ``a * b + c`` rounded once: what torch computes for ``c.add(b,
#: alpha=a)`` and ``c.addcmul(a, b)``, so a rule that writes torch.optim's operations with it
#: rounds as torch.optim does. ``sqrt`` is correctly rounded in every executor (torch's own
#: CPU ``sqrt`` is not: see :mod:`descend.kernels.torch_support`).
#: ``numba`` compiles NumPy's scalar functions; ``triton`` binds ``@triton.jit`` wrappers of
#: ``triton.language`` (its interpreter needs jitted functions, not the builtins themselves).
# A table, one row per primitive and one column per executor: kept as laid out.
# fmt: off
PRIMITIVES: dict[str, dict[str, str]] = {
    name: dict(zip(EXECUTORS, row, strict=True)) for name, row in {
        #           numpy            torch            numba            triton
        "sqrt":    ("numpy:sqrt",    "descend.kernels.torch_support:sqrt", "numpy:sqrt",    "descend.kernels.triton_support:sqrt"),  # noqa: E501
        "maximum": ("numpy:maximum", "torch:maximum", "numpy:maximum", "descend.kernels.triton_support:maximum"),  # noqa: E501
        "minimum": ("numpy:minimum", "torch:minimum", "numpy:minimum", "descend.kernels.triton_support:minimum"),  # noqa: E501
        "sign":    ("descend.rules.elementwise:numpy_sign", "torch:sign", "descend.kernels._numba_support:sign", "descend.kernels.triton_support:sign"),  # noqa: E501
        "abs":     ("numpy:abs",     "torch:abs",     "numpy:abs",     "descend.kernels.triton_support:abs"),  # noqa: E501
        "lerp":    ("descend.rules.elementwise:numpy_lerp", "torch:lerp", "descend.kernels._numba_support:lerp", "descend.kernels.triton_support:lerp"),  # noqa: E501
        "fma":     ("descend.rules.elementwise:numpy_fma", "descend.kernels.torch_support:fma", "descend.kernels._numba_support:fma", "descend.kernels.triton_support:fma"),  # noqa: E501
    }.items()
}
# fmt: on

#: Registered helpers by name (see :func:`helper`).
HELPERS: dict[str, Function] = {}


def implementation(name: str, executor: str) -> Function:
    """The function an executor binds for the primitive ``name``."""
    try:
        module, attribute = PRIMITIVES[name][executor].split(":")
    except KeyError:
        raise KeyError(
            f"no primitive {name!r} for executor {executor!r}; primitives: "
            f"{', '.join(PRIMITIVES)}; executors: {', '.join(EXECUTORS)}"
        ) from None
    found: Function = getattr(importlib.import_module(module), attribute)
    return found


# The NumPy column as module-level names (``from descend.rules.elementwise import sqrt``), so a
# rule's ``update`` runs as written on NumPy arrays and scalars.
sqrt: Function = implementation("sqrt", "numpy")
maximum: Function = implementation("maximum", "numpy")
minimum: Function = implementation("minimum", "numpy")
sign: Function = implementation("sign", "numpy")
# The rule language's ``abs`` (it shadows the builtin in this module only).
abs: Function = implementation("abs", "numpy")
lerp: Function = implementation("lerp", "numpy")
fma: Function = implementation("fma", "numpy")
if set(PRIMITIVES) - set(globals()):
    raise ImportError(
        f"primitives without a NumPy name here: {sorted(set(PRIMITIVES) - set(globals()))}"
    )


def helper(function: Function) -> Function:
    """Register ``function`` as an elementwise helper that rules may call.

    It must be a plain module-level ``def`` in a rule's language; executors find it by name,
    so helper names are unique.
    """
    if function.__code__.co_freevars:
        raise ValueError(f"helper {function.__name__!r} must be a plain function, not a closure")
    existing = HELPERS.get(function.__name__)
    if existing is not None and existing.__code__ is not function.__code__:
        raise ValueError(f"a helper named {function.__name__!r} is already registered")
    HELPERS[function.__name__] = function
    return function


def elementwise_names(function: Function) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The primitives and helpers ``function`` reads by global name, each sorted."""
    names = set(function.__code__.co_names)
    return (tuple(sorted(names & set(PRIMITIVES))), tuple(sorted(names & set(HELPERS))))


def helpers_used(function: Function) -> tuple[Function, ...]:
    """Every helper ``function`` calls, directly or through other helpers, callees first."""
    ordered: list[Function] = []

    def visit(current: Function) -> None:
        for name in elementwise_names(current)[1]:
            callee = HELPERS[name]
            if callee not in ordered:
                visit(callee)
                ordered.append(callee)

    visit(function)
    return tuple(ordered)


@cache
def bind(function: Function, executor: str) -> Function:
    """A copy of ``function`` whose primitives and helpers are ``executor``'s.

    The copy's globals hold nothing else, so a name a rule's module happens to import (say a
    hyperparameter factory called like one of the rule's parameters) can never leak into a
    compiled kernel.
    """
    primitives, helper_names = elementwise_names(function)
    namespace: dict[str, object] = {"__builtins__": __builtins__, "__name__": function.__module__}
    namespace.update({name: implementation(name, executor) for name in primitives})
    namespace.update({name: bind(HELPERS[name], executor) for name in helper_names})
    copy = types.FunctionType(
        function.__code__, namespace, function.__name__, function.__defaults__, function.__closure__
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__doc__ = function.__doc__
    copy.__qualname__ = function.__qualname__
    copy.__module__ = function.__module__
    return copy
