"""Numba helpers that generated kernels import: raw addresses as typed pointers, and the
arithmetic operators a rule's expressions are rewritten to.

Imported only by the fused executor and the kernels it generates, so ``import descend`` never
loads Numba.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

# Numba's typing and lowering objects (types, contexts, IR builders) are dynamic: ``Any`` below.
#: What an intrinsic's typing function returns: the signature and its code generator.
Typing = tuple[Any, Callable[[Any, Any, Any, Any], Any]] | None


def _pointer_intrinsic(element: Any) -> Any:
    """An intrinsic turning an int64 address into a pointer to ``element`` (a Numba type)."""
    # Numba's CPointer class is unannotated.
    pointer_type = types.CPointer(element)  # type: ignore[no-untyped-call]

    def as_pointer(typingctx: Any, address: Any) -> Typing:
        """``address`` (an int64 from ``Tensor.data_ptr()``) as a typed pointer."""
        if not isinstance(address, types.Integer):
            return None
        signature = pointer_type(types.int64)

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return builder.inttoptr(args[0], context.get_value_type(pointer_type))

        return signature, codegen

    return intrinsic(as_pointer)


#: ``float32_pointer(address)``: a ``float32*`` usable with ``numba.carray``.
float32_pointer = _pointer_intrinsic(types.float32)
#: ``float64_pointer(address)``: a ``float64*`` usable with ``numba.carray``.
float64_pointer = _pointer_intrinsic(types.float64)
#: Pointers to the storage of compressed slots (:mod:`descend.kernels.codecs`): bf16 bits,
#: int8 correction bytes and codes, and float32 block scales.
uint16_pointer = _pointer_intrinsic(types.uint16)
int8_pointer = _pointer_intrinsic(types.int8)
uint8_pointer = _pointer_intrinsic(types.uint8)


def _float_bits(typingctx: Any, value: Any) -> Typing:
    """The bits of a float32 as an int64 in ``[0, 2**32)`` (a bit cast, no conversion)."""
    if value != types.float32:
        return None
    signature = types.int64(types.float32)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        word = builder.bitcast(args[0], ir.IntType(32))
        return builder.zext(word, ir.IntType(64))

    return signature, codegen


def _bits_float(typingctx: Any, bits: Any) -> Typing:
    """The float32 whose bits are the low 32 bits of an integer (a bit cast)."""
    if not isinstance(bits, types.Integer):
        return None
    signature = types.float32(types.int64)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        word = builder.trunc(args[0], ir.IntType(32))
        return builder.bitcast(word, ir.FloatType())

    return signature, codegen


#: ``float_bits(x)`` in compiled code: the codecs' ``float_bits`` for one float32.
float_bits: Any = intrinsic(_float_bits)
#: ``bits_float(bits)`` in compiled code: the codecs' ``bits_float`` for one value.
bits_float: Any = intrinsic(_bits_float)


def add(a: Any, b: Any) -> Any:
    """``a + b`` rounded as torch rounds it (see :func:`_rounded`)."""
    return a + b


def sub(a: Any, b: Any) -> Any:
    """``a - b`` rounded as torch rounds it."""
    return a - b


def mul(a: Any, b: Any) -> Any:
    """``a * b`` rounded as torch rounds it."""
    return a * b


def div(a: Any, b: Any) -> Any:
    """``a / b`` rounded as torch rounds it."""
    return a / b


def power(a: Any, b: Any) -> Any:
    """``a ** b`` rounded as torch rounds it."""
    return a**b


def neg(a: Any) -> Any:
    """``-a``."""
    return -a


def _single(*operands: Any) -> bool:
    """Whether any operand is a float32 element (Numba types)."""
    return any(operand == types.float32 for operand in operands)


def _rounded(
    function: Callable[..., Any], single: Callable[..., Any], double: Callable[..., Any]
) -> Any:
    """Give ``function`` a Numba implementation with torch's rounding.

    A rule computes on tensor elements and on Python scalars. torch evaluates scalar-only
    subexpressions (``1 - beta2``) in double precision, and a float32 tensor op in float32 with
    the scalar operand cast to float32 first. The kernel keeps elements in their tensor dtype
    and scalars in float64, and these operators cast like torch, so a fused float32 step rounds
    exactly as the reference (torch-op) executor does.
    """

    # Numba requires an overload's typing function and the implementation it returns to have
    # the same signature, annotations included; the implementations are lambdas, so neither
    # is annotated (here and in the overloads below).
    @overload(function, inline="always")
    def implementation(a, b):  # type: ignore[no-untyped-def]
        return single if _single(a, b) else double

    return implementation


_rounded(add, lambda a, b: np.float32(a) + np.float32(b), lambda a, b: a + b)
_rounded(sub, lambda a, b: np.float32(a) - np.float32(b), lambda a, b: a - b)
_rounded(mul, lambda a, b: np.float32(a) * np.float32(b), lambda a, b: a * b)
_rounded(div, lambda a, b: np.float32(a) / np.float32(b), lambda a, b: a / b)
_rounded(power, lambda a, b: np.float32(a) ** np.float32(b), lambda a, b: a**b)


@overload(neg, inline="always")
def _neg(a):  # type: ignore[no-untyped-def]  # see _rounded
    return lambda a: -a


def _fused_multiply_add(typingctx: Any, a: Any, b: Any, c: Any) -> Typing:
    """``a * b + c`` rounded once (LLVM's ``llvm.fma``), for three floats of one type."""
    if not (a == b == c and isinstance(a, types.Float)):
        return None
    signature = a(a, b, c)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        kind = args[0].type
        function = builder.module.declare_intrinsic(
            "llvm.fma", [kind], ir.FunctionType(kind, [kind, kind, kind])
        )
        return builder.call(function, args)

    return signature, codegen


#: ``fused_multiply_add(a, b, c)`` in compiled code (typed ``Any``: Numba's stub of an
#: intrinsic's call counts the typing context among the arguments).
fused_multiply_add: Any = intrinsic(_fused_multiply_add)


def lerp(start: Any, end: Any, weight: Any) -> Any:
    """``torch.lerp(start, end, weight)`` with a scalar weight, as torch's CPU kernel computes
    it: ``fma(weight, end - start, start)`` if ``|weight| < 0.5``, else
    ``fma(weight - 1, end - start, end)``, in the elements' dtype."""
    return start + weight * (end - start)


@overload(lerp, inline="always")
def _lerp(start, end, weight):  # type: ignore[no-untyped-def]  # see _rounded
    if _single(start, end):

        def single(start, end, weight):  # type: ignore[no-untyped-def]  # see _rounded
            w = np.float32(weight)
            difference = np.float32(end) - np.float32(start)
            if abs(w) < np.float32(0.5):
                return fused_multiply_add(w, difference, np.float32(start))
            return fused_multiply_add(w - np.float32(1.0), difference, np.float32(end))

        return single

    def double(start, end, weight):  # type: ignore[no-untyped-def]  # see _rounded
        w = np.float64(weight)
        difference = np.float64(end) - np.float64(start)
        if abs(w) < 0.5:
            return fused_multiply_add(w, difference, np.float64(start))
        return fused_multiply_add(w - 1.0, difference, np.float64(end))

    return double


def fma(a: Any, b: Any, c: Any) -> Any:
    """``a * b + c`` rounded once, as torch computes ``torch.add(c, b, alpha=a)`` and
    ``torch.addcmul(c, a, b)``: in float32 when any operand is a float32 element (a float64
    scalar rounded to float32 first, as torch rounds a Python scalar), else in float64."""
    return a * b + c


@overload(fma, inline="always")
def _fma(a, b, c):  # type: ignore[no-untyped-def]  # see _rounded
    if _single(a, b, c):
        return lambda a, b, c: fused_multiply_add(np.float32(a), np.float32(b), np.float32(c))
    return lambda a, b, c: fused_multiply_add(np.float64(a), np.float64(b), np.float64(c))


def sign(x: Any) -> Any:
    """``torch.sign(x)`` for one float: -1, 0 or 1 by the sign of ``x``, and 0 for NaN (NumPy's
    ``sign`` gives NaN there), in ``x``'s dtype."""
    return np.sign(x) if x == x else np.zeros_like(x)


@overload(sign, inline="always")
def _sign(x):  # type: ignore[no-untyped-def]  # see _rounded
    if x == types.float32:
        return lambda x: np.sign(x) if x == x else np.float32(0.0)
    return lambda x: np.sign(x) if x == x else np.float64(0.0)


def _address_of_object(typingctx: Any, function: Any, obj: Any) -> Typing:
    """``function(obj)`` for a C function ``void *(PyObject *)`` at address ``function``, both
    int64: the address it returns, as an int64 (see :mod:`descend.kernels.tensor_addresses`)."""
    if not (isinstance(function, types.Integer) and isinstance(obj, types.Integer)):
        return None
    signature = types.int64(types.int64, types.int64)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        pointer = ir.IntType(8).as_pointer()
        callee = builder.inttoptr(args[0], ir.FunctionType(pointer, [pointer]).as_pointer())
        address = builder.call(callee, [builder.inttoptr(args[1], pointer)])
        return builder.ptrtoint(address, ir.IntType(64))

    return signature, codegen


#: ``address_of_object(function, obj)`` in compiled code (typed ``Any``: see
#: :data:`fused_multiply_add`).
address_of_object: Any = intrinsic(_address_of_object)
