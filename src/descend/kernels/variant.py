"""What a compiled kernel is specialized on, the same for every compiled executor.

A compiled executor (Numba on the CPU, Triton on the GPU) turns a rule's ``update`` into a kernel
for one *variant*: the dtype it walks, which of the rule's slots exist, and the scalars whose
values decide an ``if`` (flags, and zero values that switch a feature such as weight decay off),
written into the kernel as constants so the compiler removes the branches they switch off. Every
other scalar is a run-time argument, so a learning-rate schedule never recompiles.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from descend.rules.elementwise import HELPERS
from descend.rules.spec import Rule


@cache
def function_tree(function: Callable[..., Any]) -> ast.FunctionDef:
    """The parsed ``def`` of a rule's update or a helper."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    definition = tree.body[0]
    if not isinstance(definition, ast.FunctionDef):
        raise ValueError(f"{function.__qualname__} must be defined with def")
    return definition


def _parameter_names(definition: ast.FunctionDef) -> list[str]:
    arguments = definition.args
    return [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]


@cache
def tested_parameters(function: Callable[..., Any]) -> frozenset[str]:
    """Parameters of ``function`` whose value decides an ``if`` in it or in a helper it calls."""
    definition = function_tree(function)
    parameters = set(_parameter_names(definition))
    tested: set[str] = set()
    for node in ast.walk(definition):
        if isinstance(node, ast.If | ast.IfExp | ast.While):
            tested.update(n.id for n in ast.walk(node.test) if isinstance(n, ast.Name))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in HELPERS
        ):
            callee = HELPERS[node.func.id]
            callee_parameters = _parameter_names(function_tree(callee))
            decided = tested_parameters(callee)
            passed = list(zip(callee_parameters, node.args, strict=False))
            passed += [
                (keyword.arg, keyword.value) for keyword in node.keywords if keyword.arg is not None
            ]
            for name, value in passed:
                if name in decided:
                    tested.update(n.id for n in ast.walk(value) if isinstance(n, ast.Name))
    return frozenset(tested & parameters)


@cache
def condition_names(rule: Rule) -> frozenset[str]:
    """The scalars of ``rule`` that decide an ``if``, in its update or in a helper it calls."""
    return tested_parameters(rule.update) & frozenset(rule.scalar_names)


@dataclass(frozen=True)
class Variant:
    """What a compiled kernel is specialized on.

    ``dtype`` names the parameters' element type (``"float32"``, ``"bfloat16"``, ...);
    ``active`` marks the rule's slots that exist; ``constants`` are scalars written into the
    kernel as literals (every boolean flag, and zero values of scalars an ``if`` tests);
    ``runtime`` names the scalars passed at run time, in the order of the scalar row;
    ``formats`` the storage format of each of the rule's slots (see
    :mod:`descend.kernels.codecs`; empty: every slot in the parameters' dtype); ``caution``
    which pass of a cautious step the kernel is (:data:`CAUTION_PASSES`, see
    :mod:`descend.kernels.caution`; empty: the plain step); ``weights`` the storage format
    of the parameters themselves when it is not ``dtype`` (``"bfloat16"``, ``"bf16+ecc"``,
    see :mod:`descend.optim.weights`: the kernel decodes each weight and its gradient from
    bf16, computes in ``dtype`` and stores the weight through the format's codec; empty: the
    parameters and gradients are ``dtype``).
    """

    dtype: str
    active: tuple[bool, ...]
    constants: tuple[tuple[str, bool | float], ...]
    runtime: tuple[str, ...]
    formats: tuple[str, ...] = ()
    caution: str = ""
    weights: str = ""

    @property
    def coded(self) -> bool:
        """Whether some slot, or the parameters (:attr:`weights`), are stored in a compressed
        format: the kernel decodes and encodes them (:mod:`descend.kernels.coded`)."""
        return bool(self.weights) or any(name != "float32" for name in self.formats)


#: The kernels of a cautious step: ``"count"`` computes the rule's step in registers and sums,
#: per segment, the components that agree with the gradient, writing nothing else;
#: ``"apply"`` is the plain kernel whose parameter store is the cautious one.
CAUTION_PASSES = ("count", "apply")


def variant_of(
    rule: Rule, scalars: Mapping[str, Any], dtype: str, active: Sequence[bool]
) -> Variant:
    """The kernel variant that runs ``rule`` with these scalars on tensors of ``dtype``."""
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
    return Variant(dtype, tuple(bool(a) for a in active), tuple(constants), tuple(runtime))


def variant_holds(variant: Variant, rule: Rule, scalars: Mapping[str, Any]) -> bool:
    """Whether ``variant`` still runs ``rule`` with these scalars: whether
    :func:`variant_of` would return it again (for the same dtype and slots), checked without
    building a new one."""
    for name, value in variant.constants:
        current = scalars[name]
        if isinstance(value, bool):
            if current is not value:
                return False
        elif isinstance(current, bool) or float(current) != 0.0:
            return False
    tested = condition_names(rule)
    for name in variant.runtime:
        current = scalars[name]
        if isinstance(current, bool) or (name in tested and float(current) == 0.0):
            return False
    return True


def runtime_row(variant: Variant, scalars: Mapping[str, Any]) -> list[float]:
    """The run-time scalars of one step, as floats in the variant's order."""
    return [float(scalars[name]) for name in variant.runtime]
