"""The ``torch`` column of :data:`descend.kernels.codec_elements.CODEC_PRIMITIVES`: the bit-level
primitives of the codecs on torch tensors (int64 bits in ``[0, 2**32)``, float32 values)."""

from __future__ import annotations

from typing import Any

import torch

#: Low 32 bits of a 64-bit integer.
MASK32 = 0xFFFFFFFF


def where(condition: torch.Tensor, a: Any, b: Any) -> torch.Tensor:
    """``a`` where ``condition`` holds, else ``b``."""
    return torch.where(condition, a, b)


def float_bits(values: torch.Tensor) -> torch.Tensor:
    """The bits of float32 ``values`` as int64 in ``[0, 2**32)``."""
    return values.to(torch.float32).contiguous().view(torch.int32).to(torch.int64) & MASK32


def bits_float(bits: torch.Tensor | int) -> torch.Tensor:
    """Float32 values of the low 32 of int64 ``bits``."""
    bits = torch.as_tensor(bits, dtype=torch.int64)
    low = bits & MASK32
    return (low - ((low >> 31) << 32)).to(torch.int32).view(torch.float32)


def divide(a: torch.Tensor, b: Any) -> torch.Tensor:
    """``a / b`` in float32, correctly rounded."""
    quotient: torch.Tensor = a / b
    return quotient


def f32(constant: float) -> float:
    """A float constant: torch rounds a Python float to a float32 tensor's dtype."""
    return constant


def to_float32(values: torch.Tensor) -> torch.Tensor:
    """Integers as float32."""
    return values.to(torch.float32)


def to_int(values: torch.Tensor) -> torch.Tensor:
    """Integer-valued floats as int64."""
    return values.to(torch.int64)
