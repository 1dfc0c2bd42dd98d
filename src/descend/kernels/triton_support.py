"""Triton functions that generated GPU kernels import: primitives, torch-rounding operators,
loads and stores.

A rule's ``update`` is compiled by the Triton executor (:mod:`descend.kernels.triton`) with each
arithmetic operator rewritten into a call of :func:`add`, :func:`sub`, :func:`mul`, :func:`div`,
:func:`power` or :func:`neg`. These compute what the torch-op (reference) executor computes:

- an operation on two scalars (hyperparameters, per-step values, literals) in float64, as
  Python evaluates ``1 - beta2``;
- an operation involving elements in the elements' compute dtype (float32 for float16,
  bfloat16 and float32 tensors, float64 for float64 ones), the scalar operand rounded to that
  dtype first, as torch does for ``tensor * python_float``;
- division and square root correctly rounded (Triton's ``/`` and ``tl.sqrt`` are approximate
  on NVIDIA GPUs), and ``maximum``/``minimum`` propagating NaN like ``torch.maximum``.

Kernels are launched without floating-point contraction, so no two operations fuse into one
with a different rounding: a float32 step gives the reference executor's bits.

Elements are loaded into the compute dtype (:func:`load`) and rounded back to the tensor's dtype
on store (:func:`store`); float32 to bfloat16 rounds to nearest even by integer arithmetic, as
``c10::BFloat16`` does, because Triton's interpreter truncates instead.

Imported only when a Triton kernel is built, so ``import descend`` never loads Triton. The
functions are ``@triton.jit``-compiled at import, so ``TRITON_INTERPRET`` must be set (or not)
before the first kernel is built.
"""

# Triton reads the annotations of these functions (``tl.constexpr`` marks a compile-time
# argument) and their parameters take Triton values, not Python ones: they stay unannotated.
# mypy: disable-error-code="no-untyped-def, untyped-decorator"

import triton
import triton.language as tl
from triton.language.extra import libdevice

# -- operands -------------------------------------------------------------------------------------


@triton.jit
def _as(x, dtype: tl.constexpr):
    """``x`` (a tensor or a compile-time constant) as a tensor of ``dtype``."""
    return x.to(dtype) if isinstance(x, tl.tensor) else tl.full((), x, dtype)


@triton.jit
def _value(x):
    """A compile-time constant as a float64 scalar (Python's float); a tensor unchanged."""
    return x if isinstance(x, tl.tensor) else tl.full((), x, tl.float64)


@triton.jit
def _pair(a, b):
    """``a`` and ``b`` in the dtype torch computes ``a op b`` in (see the module docstring)."""
    # Annotated constexpr: a plain assignment would turn the flag into a run-time tensor.
    a_block: tl.constexpr = isinstance(a, tl.tensor) and len(a.shape) > 0
    b_block: tl.constexpr = isinstance(b, tl.tensor) and len(b.shape) > 0
    if a_block:
        x = a
        y = _as(b, a.dtype)
    elif b_block:
        x = _as(a, b.dtype)
        y = b
    else:
        x = _as(a, tl.float64)
        y = _as(b, tl.float64)
    return x, y


@triton.jit
def scalar(x):
    """A run-time scalar argument as a float64 scalar (the interpreter passes Python floats,
    which it would otherwise round to float32)."""
    return tl.full((), x, tl.float64)


# -- arithmetic operators -------------------------------------------------------------------------


@triton.jit
def add(a, b):
    """``a + b`` rounded as torch rounds it."""
    x, y = _pair(a, b)
    return x + y


@triton.jit
def sub(a, b):
    """``a - b`` rounded as torch rounds it."""
    x, y = _pair(a, b)
    return x - y


@triton.jit
def mul(a, b):
    """``a * b`` rounded as torch rounds it."""
    x, y = _pair(a, b)
    return x * y


@triton.jit
def div(a, b):
    """``a / b``, correctly rounded (Triton's float32 ``/`` is approximate)."""
    x, y = _pair(a, b)
    return tl.div_rn(x, y) if x.dtype == tl.float32 else x / y


@triton.jit
def power(a, b):
    """``a ** b`` (CUDA's ``pow``; Triton's interpreter has none)."""
    x, y = _pair(a, b)
    x, y = tl.broadcast(x, y)
    return libdevice.pow(x, y)


@triton.jit
def neg(a):
    """``-a``."""
    return -_value(a)


# -- primitives (the ``triton`` column of descend.rules.elementwise.PRIMITIVES) -------------------


@triton.jit
def sqrt(x):
    """Correctly rounded square root (``tl.sqrt`` is approximate for float32)."""
    value = _value(x)
    return tl.sqrt_rn(value) if value.dtype == tl.float32 else tl.sqrt(value)


@triton.jit
def maximum(a, b):
    """Elementwise maximum; NaN if either operand is NaN, as ``torch.maximum``."""
    x, y = _pair(a, b)
    return tl.maximum(x, y, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def minimum(a, b):
    """Elementwise minimum; NaN if either operand is NaN, as ``torch.minimum``."""
    x, y = _pair(a, b)
    return tl.minimum(x, y, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def sign(x):
    """-1, 0 or 1 by the sign of ``x``; 0 for NaN, as ``torch.sign``."""
    value = _value(x)
    return tl.where(value > 0, 1.0, tl.where(value < 0, -1.0, 0.0)).to(value.dtype)


@triton.jit
def lerp(start, end, weight):
    """``torch.lerp(start, end, weight)`` with a scalar weight, as torch computes it:
    ``fma(weight, end - start, start)`` if ``|weight| < 0.5``, else
    ``fma(weight - 1, end - start, end)``, in the elements' compute dtype."""
    x, y = _pair(start, end)
    w = _as(weight, x.dtype)
    difference = y - x
    return tl.where(tl.abs(w) < 0.5, tl.fma(w, difference, x), tl.fma(w - 1.0, difference, y))


@triton.jit
def fma(a, b, c):
    """``a * b + c`` rounded once, as torch computes ``torch.add(c, b, alpha=a)`` and
    ``torch.addcmul(c, a, b)``: in the elements' compute dtype, a scalar operand rounded to it
    first (float64 when all three are scalars)."""
    x, y = _pair(a, b)
    x, z = _pair(x, c)
    y, z = _pair(y, z)
    x, y = _pair(x, y)
    return tl.fma(x, y, z)


@triton.jit
def abs(x):  # shadows the builtin: the primitive's name in rules
    """``|x|``."""
    return tl.abs(_value(x))


# -- loads and stores -----------------------------------------------------------------------------


@triton.jit
def _widen(value):
    """Elements in their compute dtype: float64 stays, every narrower float becomes float32."""
    return value if value.dtype == tl.float64 else value.to(tl.float32)


@triton.jit
def _to_bfloat16(x):
    """float32 -> bfloat16, rounding to nearest even (``c10::BFloat16``'s rounding)."""
    bits = x.to(tl.uint32, bitcast=True)
    rounded = (bits + (((bits >> 16) & 1) + 0x7FFF)) >> 16
    rounded = tl.where(x != x, 0x7FC0, rounded)
    return rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def _narrow(value, dtype: tl.constexpr):
    """A computed value rounded to the tensor dtype ``dtype``."""
    value = _value(value)
    return _to_bfloat16(value.to(tl.float32)) if dtype == tl.bfloat16 else value.to(dtype)


@triton.jit
def load(pointer):
    """Elements at ``pointer`` (a block of pointers), in their compute dtype."""
    return _widen(tl.load(pointer))


@triton.jit
def load_masked(pointer, mask):
    """Elements at ``pointer`` where ``mask`` holds (0 elsewhere), in their compute dtype."""
    return _widen(tl.load(pointer, mask=mask, other=0.0))


@triton.jit
def store(pointer, value):
    """Store ``value`` at ``pointer``, rounded to the tensor's dtype."""
    tl.store(pointer, _narrow(value, pointer.dtype.element_ty))


@triton.jit
def store_masked(pointer, value, mask):
    """Store ``value`` at ``pointer`` where ``mask`` holds, rounded to the tensor's dtype."""
    tl.store(pointer, _narrow(value, pointer.dtype.element_ty), mask=mask)


@triton.jit
def rounded(value, dtype: tl.constexpr):
    """``value`` as it reads back after a store to a tensor of ``dtype`` (in its compute
    dtype): what a cautious kernel compares, in registers, with the rule's stored result."""
    return _widen(_narrow(value, dtype))
