"""Numba helpers that generated kernels import: raw addresses as typed pointers, and the
arithmetic operators a rule's expressions are rewritten to.

Imported only by the fused executor and the kernels it generates, so ``import descend`` never
loads Numba.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import intrinsic, overload


def _pointer_intrinsic(element: types.Type):
    pointer_type = types.CPointer(element)

    @intrinsic
    def as_pointer(typingctx, address):
        """``address`` (an int64 from ``Tensor.data_ptr()``) as a typed pointer."""
        if not isinstance(address, types.Integer):
            return None
        signature = pointer_type(types.int64)

        def codegen(context, builder, sig, args):
            return builder.inttoptr(args[0], context.get_value_type(pointer_type))

        return signature, codegen

    return as_pointer


#: ``float32_pointer(address)``: a ``float32*`` usable with ``numba.carray``.
float32_pointer = _pointer_intrinsic(types.float32)
#: ``float64_pointer(address)``: a ``float64*`` usable with ``numba.carray``.
float64_pointer = _pointer_intrinsic(types.float64)


def add(a, b):
    """``a + b`` rounded as torch rounds it (see :func:`_rounded`)."""
    return a + b


def sub(a, b):
    """``a - b`` rounded as torch rounds it."""
    return a - b


def mul(a, b):
    """``a * b`` rounded as torch rounds it."""
    return a * b


def div(a, b):
    """``a / b`` rounded as torch rounds it."""
    return a / b


def power(a, b):
    """``a ** b`` rounded as torch rounds it."""
    return a**b


def neg(a):
    """``-a``."""
    return -a


def _single(*operands: types.Type) -> bool:
    return any(operand == types.float32 for operand in operands)


def _rounded(function, single, double):
    """Give ``function`` a Numba implementation with torch's rounding.

    A rule computes on tensor elements and on Python scalars. torch evaluates scalar-only
    subexpressions (``1 - beta2``) in double precision, and a float32 tensor op in float32 with
    the scalar operand cast to float32 first. The kernel keeps elements in their tensor dtype
    and scalars in float64, and these operators cast like torch, so a fused float32 step rounds
    exactly as the reference (torch-op) executor does.
    """

    @overload(function, inline="always")
    def implementation(a, b):
        return single if _single(a, b) else double

    return implementation


_rounded(add, lambda a, b: np.float32(a) + np.float32(b), lambda a, b: a + b)
_rounded(sub, lambda a, b: np.float32(a) - np.float32(b), lambda a, b: a - b)
_rounded(mul, lambda a, b: np.float32(a) * np.float32(b), lambda a, b: a * b)
_rounded(div, lambda a, b: np.float32(a) / np.float32(b), lambda a, b: a / b)
_rounded(power, lambda a, b: np.float32(a) ** np.float32(b), lambda a, b: a**b)


@overload(neg, inline="always")
def _neg(a):
    return lambda a: -a
