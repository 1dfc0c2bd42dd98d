"""The code generation the compiled executors share: a rule's functions rewritten as kernel
source, the operand rows of a variant, and the generated module executed from its cached file.

Nothing here restates an optimizer's math. :func:`rewritten` turns a rule's ``update`` (or a
helper it calls) into source a compiler accepts, changing its form only: keyword-only parameters
made positional (Numba and Triton pass arguments by position), no docstring or annotations, and
each arithmetic operator a call of a function that rounds as torch does (each executor's support
module defines them). :func:`element_source` collects the rewritten functions of a rule and the
imports of the primitives they use, from the column of
:data:`descend.rules.elementwise.PRIMITIVES` that names an executor's implementations; the fused
(:mod:`descend.kernels.fused`) and Triton (:mod:`descend.kernels.triton`) executors each wrap
them in their own kernel.

A cautious step (:mod:`descend.kernels.caution`) compiles into the same kernels: a variant
whose ``caution`` names a pass gets the helpers of :data:`CAUTION_HELPERS` beside the rule's,
and each executor's kernel calls them on the rule's result in registers
(:func:`caution_maximize` says which way the gradient points).
"""

from __future__ import annotations

import ast
import hashlib
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from descend.kernels.variant import Variant, function_tree
from descend.rules.caution import cautious_agreement, cautious_parameter
from descend.rules.elementwise import PRIMITIVES, elementwise_names, helpers_used
from descend.rules.spec import Rule

#: The helpers a kernel of a cautious step calls on the rule's result: the agreement of each
#: component with the gradient, and the masked and rescaled parameter.
CAUTION_HELPERS = (cautious_agreement, cautious_parameter)

#: The call each arithmetic operator becomes in kernel source.
_OPERATORS: dict[type[ast.operator], str] = {
    ast.Add: "_add",
    ast.Sub: "_sub",
    ast.Mult: "_mul",
    ast.Div: "_div",
    ast.Pow: "_power",
}


class _TorchRounding(ast.NodeTransformer):
    """Rewrite ``a op b`` into ``_op(a, b)``: operators that round as torch does."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        name = _OPERATORS.get(type(node.op))
        if name is None:
            raise ValueError(
                f"operator {type(node.op).__name__} is not allowed in a rule's "
                f"update: expected one of + - * / **"
            )
        call = ast.Call(ast.Name(name, ast.Load()), [node.left, node.right], [])
        return ast.copy_location(call, node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.USub):
            return ast.copy_location(
                ast.Call(ast.Name("_neg", ast.Load()), [node.operand], []), node
            )
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        if not isinstance(node.target, ast.Name):
            raise ValueError("a rule's update may only assign to plain names")
        value = ast.BinOp(ast.Name(node.target.id, ast.Load()), node.op, node.value)
        assign = ast.Assign([ast.Name(node.target.id, ast.Store())], value)
        rewritten: ast.AST = self.visit(ast.copy_location(assign, node))
        return rewritten


def rewritten(function: Callable[..., Any], name: str) -> str:
    """``function`` as kernel source named ``name``: keyword-only parameters made positional
    (compiled kernels cannot pass keywords), no docstring or annotations, and each arithmetic
    operator a call that rounds as torch does. The operations and their order are the
    function's own."""
    if function.__code__.co_freevars:
        raise ValueError(
            f"{function.__qualname__} must be a plain function, not a closure "
            f"(it reads {', '.join(function.__code__.co_freevars)})"
        )
    definition = ast.parse(ast.unparse(function_tree(function))).body[0]
    assert isinstance(definition, ast.FunctionDef)  # function_tree parsed a def
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


@dataclass(frozen=True)
class ElementSource:
    """A rule's elementwise functions as kernel source, for one executor's primitives.

    ``imports`` are ``from module import attribute as name`` lines binding each primitive the
    functions use; ``helpers`` are ``(name, source)`` of each helper the update calls, callees
    first; ``update`` is the rule's ``update`` named ``_rule_update``.
    """

    imports: tuple[str, ...]
    helpers: tuple[tuple[str, str], ...]
    update: str


@cache
def element_source(rule: Rule, column: str, caution: bool = False) -> ElementSource:
    """The rewritten functions of ``rule`` and imports of the primitives they use, from the
    ``column`` (``"numba"``, ``"triton"``) of :data:`descend.rules.elementwise.PRIMITIVES`;
    with ``caution``, the :data:`CAUTION_HELPERS` (and the helpers they call) too."""
    called = list(helpers_used(rule.update))
    if caution:
        for extra in CAUTION_HELPERS:
            for function in (*helpers_used(extra), extra):
                if function not in called:
                    called.append(function)
    functions = (*called, rule.update)
    primitives = sorted({name for function in functions for name in elementwise_names(function)[0]})
    imports = []
    for name in primitives:
        module, attribute = PRIMITIVES[name][column].split(":")
        imports.append(f"from {module} import {attribute} as {name}")
    helpers = tuple(
        (helper.__name__, rewritten(helper, helper.__name__)) for helper in functions[:-1]
    )
    return ElementSource(tuple(imports), helpers, rewritten(rule.update, "_rule_update"))


def check_dtype(executor: str, variant: Variant, dtypes: Collection[str]) -> None:
    """Refuse a variant whose dtype the executor has no kernel for."""
    if variant.dtype not in dtypes:
        raise ValueError(
            f"dtype={variant.dtype} is not supported by the {executor} executor: "
            f"expected one of {', '.join(dtypes)}"
        )


def slot_rows(variant: Variant) -> tuple[list[int | None], int]:
    """The address-table row of each of the rule's slots (``None`` if not active) and the
    number of operand rows: the parameter is row 0, the gradient row 1, then each active
    slot."""
    rows: list[int | None] = []
    row = 2
    for is_active in variant.active:
        rows.append(row if is_active else None)
        row += bool(is_active)
    return rows, row


def scalar_arguments(rule: Rule, variant: Variant) -> list[str]:
    """The scalar arguments of the call of ``_rule_update``, in the rule's order: a constant of
    the variant as a literal, every other scalar by its name."""
    constants = dict(variant.constants)
    return [repr(constants[name]) if name in constants else name for name in rule.scalar_names]


def caution_maximize(variant: Variant) -> bool:
    """Whether a cautious kernel of ``variant`` compares the step with ``-g`` (the rule's
    ``maximize`` flag, a constant of every variant of a rule that has it)."""
    return bool(dict(variant.constants).get("maximize", False))


def module_name(prefix: str, rule: Rule, variant: Variant, source: str) -> str:
    """The name of a generated kernel module (and its cached file): the executor's
    ``prefix``, the rule, the dtype and a hash of the source."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    caution = f"_{variant.caution}" if variant.caution else ""
    return f"{prefix}_{rule.name}_{variant.dtype}{caution}_{digest}"


def execute_module(name: str, path: Path, source: str) -> ModuleType:
    """Execute the generated ``source`` as module ``name``, registered in ``sys.modules``.

    The source generated here is executed, never the file's bytes: ``path`` (the cached file
    holding exactly this source) only gives compilers a file to read and key their caches on.
    """
    module = ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    except Exception:
        sys.modules.pop(name, None)
        raise
    return module


def numba_kernel_entry(setup: Sequence[str] = (), caution: bool = False) -> str:
    """The fused (Numba) kernels' entry point, as module source: the rule's ``_update`` inlined,
    then ``kernel``, which runs ``setup`` (lines at 4 spaces) once and walks its work items'
    segments down to a segment's tensor ``t``, first element ``start``, length ``n`` and scalar
    row ``row``; the caller's body follows at 16 spaces. One walk for the plain and the coded
    kernels, which differ only in what they do with a segment. With ``caution`` the kernel
    takes one more argument, ``caution`` (a float64 array: a count per segment written by the
    count pass, a scale per tensor read by the apply pass), after ``scalars``."""
    extra = " caution," if caution else ""
    return "\n".join(
        [
            '_update = njit(inline="always", error_model="numpy")(_rule_update)',
            "",
            "",
            '@njit(nogil=True, cache=True, error_model="numpy", boundscheck=False)',
            "def kernel(addresses, item_start, segment_tensor, segment_start, segment_stop, "
            "tensor_row,",
            f"           scalars,{extra} first_item, last_item):",
            *setup,
            "    for item in range(first_item, last_item):",
            "        for segment in range(item_start[item], item_start[item + 1]):",
            "            t = segment_tensor[segment]",
            "            start = segment_start[segment]",
            "            n = segment_stop[segment] - start",
            "            if n > 0:",
            "                row = tensor_row[t]",
        ]
    )
