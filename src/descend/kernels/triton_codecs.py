"""The ``triton`` column of :data:`descend.kernels.codec_elements.CODEC_PRIMITIVES`: the
bit-level primitives of the codecs as ``@triton.jit`` functions (integers as int64 blocks with
values below ``2**32``, values as float32 blocks). The correctly rounded division is
:func:`descend.kernels.triton_support.div`. Imported only when a Triton kernel with compressed
slots is built.
"""

# Triton reads the annotations of these functions and their parameters take Triton values,
# not Python ones: they stay unannotated.
# mypy: disable-error-code="no-untyped-def, untyped-decorator"

import triton
import triton.language as tl


@triton.jit
def _int64(x):
    """``x`` (a block or a compile-time integer) as int64."""
    return x.to(tl.int64) if isinstance(x, tl.tensor) else tl.full((), x, tl.int64)


@triton.jit
def where(condition, a, b):
    """``a`` where ``condition`` holds, else ``b``."""
    return tl.where(condition, a, b)


@triton.jit
def float_bits(x):
    """The bits of float32 ``x`` as int64 in ``[0, 2**32)``."""
    return x.to(tl.float32).to(tl.int32, bitcast=True).to(tl.int64) & 0xFFFFFFFF


@triton.jit
def bits_float(bits):
    """The float32 of the low 32 bits of ``bits``."""
    return _int64(bits).to(tl.int32).to(tl.float32, bitcast=True)


@triton.jit
def f32(constant):
    """A float constant as a float32 scalar."""
    return tl.full((), constant, tl.float32)


@triton.jit
def to_float32(x):
    """Integers as float32."""
    return x.to(tl.float32)


@triton.jit
def to_int(x):
    """Integer-valued floats as int64."""
    return x.to(tl.int64)
