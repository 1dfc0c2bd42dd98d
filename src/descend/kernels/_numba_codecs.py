"""The ``numba`` column of :data:`descend.kernels.codec_elements.CODEC_PRIMITIVES`: the codecs
compiled for the fused CPU kernels as 32-bit machine code.

Numba types every integer expression as 64-bit, and LLVM then vectorizes a loop over the
codecs in 64-bit lanes: half as many elements per register, and 64-bit multiplies that AVX2
does not have at all. The codec language keeps every integer below ``2**32`` (see
:mod:`descend.kernels.codec_elements`), so its arithmetic is exactly 32-bit arithmetic. Here
each codec function is *traced* instead of typed: :func:`traced` (the decorator of the codec
functions in a generated kernel module) runs the function's own code once on
:class:`Word` values, which emit LLVM instructions on 32-bit integers, 1-bit conditions and
float32 values as the function's operators and primitives run, and the result is a Numba
intrinsic whose body is those instructions, inlined into the kernel's loop. The semantics are
the codec language's: ``>>`` is a logical shift, integer comparisons are unsigned (every
integer is non-negative below ``2**32``), float comparisons are IEEE ones (``!=`` holds for
NaN), the float arithmetic is float32 and rounds as torch does (no fast-math), and an integer
result is an int32 (codes below ``2**31``, the signed correction of ``"bf16+ecc"``), so a
kernel's reduction over results (an int8 block's largest magnitude) runs in 32-bit lanes too.

Imported only by generated kernels, so ``import descend`` never loads Numba.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import FunctionType
from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from descend.kernels.codec_elements import CODEC_PRIMITIVES

_I1, _I32, _I64, _F32 = ir.IntType(1), ir.IntType(32), ir.IntType(64), ir.FloatType()
_MASK32 = 0xFFFFFFFF
_UNSIGNED = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}


class Word:
    """One traced value: an LLVM value of a 32-bit integer, a condition (1 bit) or a float32,
    with the codec language's operators."""

    # NumPy scalars (``np.float32(0.0) - word``) hand the operation to Word's reflected one.
    __array_ufunc__ = None
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, builder: ir.IRBuilder, value: ir.Value) -> None:
        self.builder = builder
        self.value = value

    @property
    def kind(self) -> str:
        """``"int"``, ``"bool"`` or ``"float"``."""
        kind = self.value.type
        return "int" if kind == _I32 else "bool" if kind == _I1 else "float"

    def _operand(self, other: object) -> ir.Value:
        return _constant(other, self.value.type)

    def _binary(self, other: object, operation: str, reflected: bool = False) -> Word:
        a, b = self.value, self._operand(other)
        if reflected:
            a, b = b, a
        kind = self.kind
        builder = self.builder
        if kind == "float":
            emit = {"+": builder.fadd, "-": builder.fsub, "*": builder.fmul}.get(operation)
        else:
            emit = {
                "&": builder.and_,
                "|": builder.or_,
                "^": builder.xor,
                "+": builder.add,
                "-": builder.sub,
                "*": builder.mul,
                ">>": builder.lshr,
                "<<": builder.shl,
            }.get(operation)
            if kind == "bool" and operation not in "&|^":
                emit = None
        if emit is None:
            raise TypeError(f"the codec language has no {operation!r} on {kind} values")
        return Word(builder, emit(a, b))

    def _compare(self, other: object, operation: str) -> Word:
        a, b = self.value, self._operand(other)
        if self.kind == "float":
            if operation == "!=":
                return Word(self.builder, self.builder.fcmp_unordered("!=", a, b))
            return Word(self.builder, self.builder.fcmp_ordered(operation, a, b))
        return Word(self.builder, self.builder.icmp_unsigned(_UNSIGNED[operation], a, b))

    def __and__(self, other: object) -> Word:
        return self._binary(other, "&")

    def __rand__(self, other: object) -> Word:
        return self._binary(other, "&", True)

    def __or__(self, other: object) -> Word:
        return self._binary(other, "|")

    def __ror__(self, other: object) -> Word:
        return self._binary(other, "|", True)

    def __xor__(self, other: object) -> Word:
        return self._binary(other, "^")

    def __rxor__(self, other: object) -> Word:
        return self._binary(other, "^", True)

    def __add__(self, other: object) -> Word:
        return self._binary(other, "+")

    def __radd__(self, other: object) -> Word:
        return self._binary(other, "+", True)

    def __sub__(self, other: object) -> Word:
        return self._binary(other, "-")

    def __rsub__(self, other: object) -> Word:
        return self._binary(other, "-", True)

    def __mul__(self, other: object) -> Word:
        return self._binary(other, "*")

    def __rmul__(self, other: object) -> Word:
        return self._binary(other, "*", True)

    def __rshift__(self, other: object) -> Word:
        return self._binary(other, ">>")

    def __lshift__(self, other: object) -> Word:
        return self._binary(other, "<<")

    def __lt__(self, other: object) -> Word:
        return self._compare(other, "<")

    def __le__(self, other: object) -> Word:
        return self._compare(other, "<=")

    def __gt__(self, other: object) -> Word:
        return self._compare(other, ">")

    def __ge__(self, other: object) -> Word:
        return self._compare(other, ">=")

    def __eq__(self, other: object) -> Word:  # type: ignore[override]
        return self._compare(other, "==")

    def __ne__(self, other: object) -> Word:  # type: ignore[override]
        return self._compare(other, "!=")


def _constant(value: object, like: ir.Type | None = None) -> ir.Value:
    """``value`` (a Word, a Python bool, int or float, a NumPy float32) as an LLVM value, of
    type ``like`` where the constant's own type does not say it."""
    if isinstance(value, Word):
        return value.value
    if isinstance(value, bool | np.bool_):
        return ir.Constant(_I1, int(value))
    if isinstance(value, int | np.integer) and like != _F32:
        return ir.Constant(_I32, int(value) & _MASK32)
    if isinstance(value, float | np.floating | int):
        return ir.Constant(_F32, float(np.float32(value)))
    raise TypeError(f"the codec language has no value {value!r} of type {type(value).__name__}")


# -- the primitives, traced -------------------------------------------------------------------


def where(condition: Word, a: object, b: object) -> Word:
    """``a`` where ``condition`` holds, else ``b`` (a select)."""
    like = next((x.value.type for x in (a, b) if isinstance(x, Word)), None)
    value = condition.builder.select(condition.value, _constant(a, like), _constant(b, like))
    return Word(condition.builder, value)


def float_bits(value: Word) -> Word:
    """The bits of a float32."""
    return Word(value.builder, value.builder.bitcast(value.value, _I32))


def bits_float(bits: Word | int) -> Word | np.float32:
    """The float32 of 32 bits (a constant stays a constant)."""
    if isinstance(bits, Word):
        return Word(bits.builder, bits.builder.bitcast(bits.value, _F32))
    return np.uint32(bits & _MASK32).view(np.float32)


def divide(a: object, b: object) -> Word:
    """``a / b`` in float32, correctly rounded."""
    builder = next(x.builder for x in (a, b) if isinstance(x, Word))
    return Word(builder, builder.fdiv(_constant(a, _F32), _constant(b, _F32)))


def f32(constant: float) -> np.float32:
    """A float32 constant."""
    return np.float32(constant)


def to_float32(value: Word) -> Word:
    """A (signed) integer as float32."""
    return Word(value.builder, value.builder.sitofp(value.value, _F32))


def to_int(value: Word) -> Word:
    """An integer-valued float32 as an integer."""
    return Word(value.builder, value.builder.fptosi(value.value, _I32))


# -- codec functions as intrinsics ------------------------------------------------------------


def _argument(builder: ir.IRBuilder, kind: Any, value: ir.Value) -> Word:
    """A kernel's argument of Numba type ``kind`` as a Word."""
    if isinstance(kind, types.Boolean):
        return Word(builder, value)
    if isinstance(kind, types.Integer):
        width: int = getattr(kind, "bitwidth")  # noqa: B009 (Numba's types are unannotated)
        if width > 32:
            return Word(builder, builder.trunc(value, _I32))
        extend = builder.sext if getattr(kind, "signed") else builder.zext  # noqa: B009
        return Word(builder, value if width == 32 else extend(value, _I32))
    if kind == types.float32:
        return Word(builder, value)
    raise TypeError(f"a codec takes no argument of type {kind}")


def _result(builder: ir.IRBuilder, word: Word) -> tuple[Any, ir.Value]:
    """A traced result as a Numba type and value."""
    if word.kind == "int":
        return types.int32, word.value
    if word.kind == "bool":
        return types.boolean, word.value
    return types.float32, word.value


def _trace(
    function: Callable[..., Any], context: Any, builder: ir.IRBuilder, kinds: Any, args: Any
) -> list[tuple[Any, ir.Value]]:
    """Run ``function`` on Words of ``args``: its results as (Numba type, value) pairs."""
    words = [_argument(builder, kind, value) for kind, value in zip(kinds, args, strict=True)]
    result = function(*words)
    results = result if isinstance(result, tuple) else (result,)
    return [_result(builder, word) for word in results]


def _return_type(function: Callable[..., Any], context: Any, kinds: Any) -> Any:
    """What ``function`` returns for arguments of Numba types ``kinds``, found by tracing it
    into a scratch function."""
    scratch = ir.Function(
        ir.Module(),
        ir.FunctionType(ir.VoidType(), [context.get_value_type(kind) for kind in kinds]),
        "scratch",
    )
    builder = ir.IRBuilder(scratch.append_basic_block())
    results = [kind for kind, _ in _trace(function, context, builder, kinds, scratch.args)]
    return results[0] if len(results) == 1 else types.Tuple(results)  # type: ignore[no-untyped-call]


def codec_intrinsic(function: Callable[..., Any]) -> Any:
    """``function`` (a codec of the codec language, calling traced primitives) as a Numba
    intrinsic that emits its traced instructions inline."""

    def typing(typingctx: Any, *kinds: Any) -> Any:
        from numba.core.registry import cpu_target

        try:
            returned = _return_type(function, cpu_target.target_context, kinds)
        except TypeError:
            return None

        def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
            results = _trace(function, context, builder, signature.args, args)
            if len(results) == 1:
                return results[0][1]
            return context.make_tuple(builder, signature.return_type, [v for _, v in results])

        return returned(*kinds), codegen

    # Numba reads the arity of an intrinsic from its typing function's parameters.
    names = ", ".join(inspect.signature(function).parameters)
    namespace: dict[str, Any] = {"typing": typing}
    exec(
        f"def {function.__name__}(typingctx, {names}):\n    return typing(typingctx, {names})",
        namespace,
    )
    return intrinsic(namespace[function.__name__])


def traced(function: FunctionType) -> Any:
    """The decorator of the codec functions in a generated kernel module: ``function`` as an
    intrinsic (:func:`codec_intrinsic`). Traced, it runs with the module's primitives (this
    column's) and calls the *plain* codec functions defined before it, not their intrinsics."""
    module = function.__globals__
    scope: dict[str, Any] = module.setdefault(
        "_codec_scope", {name: module[name] for name in CODEC_PRIMITIVES}
    )
    plain = FunctionType(function.__code__, scope, function.__name__, function.__defaults__)
    scope[function.__name__] = plain
    return codec_intrinsic(plain)
