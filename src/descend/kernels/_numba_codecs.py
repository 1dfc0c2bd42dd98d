"""The codecs of :mod:`descend.kernels.codecs` for one element, as fused kernels bind them.

Each function computes, for one element (or one block of ``"int8"``), exactly the IEEE
operations and integer bit manipulations of its codec's torch form, in the same order, so a
fused step stores the same bytes as the reference executor (the tests compare them bit for
bit). The random stream is the codecs' own :func:`~descend.kernels.codecs.element_bits`,
compiled as it is. Imported only by generated kernels, so ``import descend`` never loads Numba.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from descend.kernels._numba_support import bits_float, float_bits
from descend.kernels.codecs import ROUNDING_CONSTANT, code_tables, mix32

SIGNED_MAP, SIGNED_MIDDLES, UNSIGNED_MAP, UNSIGNED_MIDDLES = code_tables()
_inline = njit(inline="always", error_model="numpy")
_mix32 = _inline(mix32)


@_inline
def random_bits(key: Any, index: Any) -> Any:
    """:func:`~descend.kernels.codecs.element_bits` (the same hash, compiled)."""
    return _mix32(_mix32(index) ^ key)


@_inline
def _round_nearest(bits: Any) -> Any:
    """bf16 bits of float32 ``bits``, rounded to nearest (ties to even); inf and NaN kept."""
    if (bits & 0x7F800000) == 0x7F800000:
        return (bits >> 16) | (0x40 if (bits & 0x7FFFFF) != 0 else 0)
    return (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16


@_inline
def decode_bf16(stored: Any) -> Any:
    """A bf16 value (its 16 bits) as float32."""
    return bits_float(np.int64(stored) << 16)


@_inline
def encode_bf16(value: Any, key: Any, index: Any) -> Any:
    """``value`` (float32) as bf16 bits, rounded stochastically with element ``index``'s
    random bits under ``key``."""
    bits = float_bits(np.float32(value))
    if (bits & 0x7F800000) == 0x7F800000:
        return np.uint16((bits >> 16) | (0x40 if (bits & 0x7FFFFF) != 0 else 0))
    return np.uint16(((bits + (random_bits(key, index) & 0xFFFF)) >> 16) & 0xFFFF)


@_inline
def encode_bf16_nearest(value: Any, key: Any, index: Any) -> Any:
    """``value`` (float32) as bf16 bits, rounded to nearest."""
    return np.uint16(_round_nearest(float_bits(np.float32(value))) & 0xFFFF)


@_inline
def _half_ulp(high: Any) -> Any:
    exponent = (high >> 7) & 0xFF
    if exponent > 8 and exponent < 255:
        return bits_float((exponent - 8) << 23), True
    return np.float32(1.0), False


@_inline
def decode_ecc(stored: Any, correction: Any) -> Any:
    """A bf16 value and its correction byte as float32."""
    high = np.int64(stored)
    half, _ = _half_ulp(high)
    return bits_float(high << 16) + (np.float32(correction) * half) / np.float32(127.0)


@_inline
def encode_ecc(value: Any) -> Any:
    """``value`` (float32) as bf16 bits rounded to nearest and its correction byte."""
    value = np.float32(value)
    high = _round_nearest(float_bits(value))
    half, kept = _half_ulp(high)
    residual = (value - bits_float(high << 16)) / half
    code = (residual * np.float32(127.0) + np.float32(ROUNDING_CONSTANT)) - np.float32(
        ROUNDING_CONSTANT
    )
    if not kept or not np.isfinite(code):
        code = np.float32(0.0)
    code = min(max(code, np.float32(-127.0)), np.float32(127.0))
    return np.uint16(high & 0xFFFF), np.int8(code)


def _bucket_starts(middles: np.ndarray) -> np.ndarray:
    """For each bf16 bucket of float32 values (the top 16 bits), how many ``middles`` lie
    below its smallest value: where the search for a value's code starts. At most a few
    midpoints lie inside one bucket, so a code is a table read and a step or two."""
    high = np.arange(1 << 16, dtype=np.int64)
    negative = (high >> 15) == 1
    bits = np.where(negative, (high << 16) | 0xFFFF, high << 16).astype(np.uint32)
    lowest = bits.view(np.float32)
    starts = np.searchsorted(middles, np.where(np.isfinite(lowest), lowest, 0.0), side="left")
    return starts.astype(np.int64)


SIGNED_STARTS = _bucket_starts(SIGNED_MIDDLES)
UNSIGNED_STARTS = _bucket_starts(UNSIGNED_MIDDLES)


def int8_tables() -> tuple[np.ndarray, ...]:
    """The maps, midpoints and bucket starts a kernel copies once per call (a kernel reads
    local arrays faster than global ones)."""
    return (
        SIGNED_MAP,
        UNSIGNED_MAP,
        SIGNED_MIDDLES,
        UNSIGNED_MIDDLES,
        SIGNED_STARTS,
        UNSIGNED_STARTS,
    )


@_inline
def decode_int8(code: Any, scale: Any, signed_map: Any, unsigned_map: Any) -> Any:
    """An int8 code of a block with this scale as float32."""
    if scale < 0:
        return unsigned_map[code] * abs(scale)
    return signed_map[code] * abs(scale)


@_inline
def _code(value: Any, middles: Any, starts: Any) -> Any:
    """The number of ``middles`` below ``value`` (``torch.bucketize``), from the count below
    the smallest value of ``value``'s bf16 bucket."""
    code = starts[float_bits(value) >> 16]
    while code < 255 and middles[code] < value:
        code += 1
    return code


@_inline
def encode_int8_block(values: Any, count: Any, codes: Any, first: Any, tables: Any) -> Any:
    """Code ``values[:count]`` (float32) into ``codes[first:first + count]``; return the
    block's scale. ``tables``: local copies of :func:`int8_tables`."""
    _, _, signed_middles, unsigned_middles, signed_starts, unsigned_starts = tables
    finite = True
    signed = False
    absmax = np.float32(0.0)
    for k in range(count):
        value = values[k]
        if not np.isfinite(value):
            finite = False
        if value < 0:
            signed = True
        magnitude = abs(value)
        if magnitude > absmax:
            absmax = magnitude
    zero = np.float32(0.0)
    if not finite:
        if signed:
            code = _code(zero, signed_middles, signed_starts)
        else:
            code = _code(zero, unsigned_middles, unsigned_starts)
        for k in range(count):
            codes[first + k] = np.uint8(code)
        return np.float32(np.nan)
    usable = absmax > 0
    divisor = absmax if usable else np.float32(1.0)
    if signed:
        for k in range(count):
            codes[first + k] = np.uint8(_code(values[k] / divisor, signed_middles, signed_starts))
        return absmax
    for k in range(count):
        codes[first + k] = np.uint8(_code(values[k] / divisor, unsigned_middles, unsigned_starts))
    return absmax if not usable else -absmax
