"""The storage codecs of optimizer state, each written once, for one element.

Every format of :mod:`descend.kernels.codecs` is defined here by a few pure functions of one
element (decode on load, encode on store, the counter-based random stream), written in a small
bit-level language: integer ``& | ^ >> << + - *``, comparisons, and the primitives of
:data:`CODEC_PRIMITIVES` (float32 <-> bits, a branch-free select, a correctly rounded
division, a float32 constant, conversions). Each executor binds those primitives to its own
implementations, as :data:`descend.rules.elementwise.PRIMITIVES` binds ``sqrt`` and ``sign``:
the reference executor binds torch ops (the module-level names here, so the functions run as
written on whole tensors); the fused CPU and Triton kernels compile their source with Numba's
and Triton's primitives (:func:`codec_source`). No executor re-types a codec, so the three
store the same bits given the same seed.

The functions are branch-free (every choice is a :func:`where`) and read no table, so compiled
loops over them vectorize. Integers keep values below ``2**32`` (bit masks after each
multiply): 64-bit integers in Python, NumPy, torch and Triton compute them alike, and the fused
CPU kernels trace them into 32-bit code (:mod:`descend.kernels._numba_codecs`), twice as many
elements per vector register.

What stays per executor is only structure: how a loop walks the elements and how a block of
:data:`INT8_BLOCK` elements is reduced (the largest magnitude's bits, whether any value is
negative) before its values are coded.
"""

from __future__ import annotations

import importlib
import inspect
import textwrap
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

#: Elements per block of the ``"int8"`` format, each with its own float32 scale.
INT8_BLOCK = 256

# -- the primitives ---------------------------------------------------------------------------
#
# ``where(c, a, b)``: a where c holds, else b (both evaluated). ``float_bits(x)``: the bits of a
# float32 as an int64 in [0, 2**32). ``bits_float(b)``: the float32 of the low 32 bits of b.
# ``divide(a, b)``: a / b in float32, correctly rounded. ``f32(c)``: the float constant c as a
# float32. ``to_float32(i)``: an integer as float32. ``to_int(x)``: an integer-valued float as
# int64.
# fmt: off
CODEC_PRIMITIVES: dict[str, dict[str, str]] = {
    name: dict(zip(("torch", "numba", "triton"), row, strict=True)) for name, row in {
        #               torch                 numba                    triton
        "where":      ("codec_torch:where",      "_numba_codecs:where",      "triton_codecs:where"),
        "float_bits": ("codec_torch:float_bits", "_numba_codecs:float_bits", "triton_codecs:float_bits"),  # noqa: E501
        "bits_float": ("codec_torch:bits_float", "_numba_codecs:bits_float", "triton_codecs:bits_float"),  # noqa: E501
        "divide":     ("codec_torch:divide",     "_numba_codecs:divide",     "triton_support:div"),
        "f32":        ("codec_torch:f32",        "_numba_codecs:f32",        "triton_codecs:f32"),
        "to_float32": ("codec_torch:to_float32", "_numba_codecs:to_float32", "triton_codecs:to_float32"),  # noqa: E501
        "to_int":     ("codec_torch:to_int",     "_numba_codecs:to_int",     "triton_codecs:to_int"),  # noqa: E501
    }.items()
}
# fmt: on


def _module(name: str) -> str:
    return f"descend.kernels.{name}"


def _implementation(name: str, executor: str) -> Any:
    module, attribute = CODEC_PRIMITIVES[name][executor].split(":")
    return getattr(importlib.import_module(_module(module)), attribute)


# The torch column as module-level names, so the functions below run as written on torch
# tensors (the reference executor's form).
where = _implementation("where", "torch")
float_bits = _implementation("float_bits", "torch")
bits_float = _implementation("bits_float", "torch")
divide = _implementation("divide", "torch")
f32 = _implementation("f32", "torch")
to_float32 = _implementation("to_float32", "torch")
to_int = _implementation("to_int", "torch")
if set(CODEC_PRIMITIVES) - set(globals()):
    raise ImportError(
        f"primitives without a torch name here: {sorted(set(CODEC_PRIMITIVES) - set(globals()))}"
    )


# -- the random stream ------------------------------------------------------------------------


def mix32(x: Any) -> Any:
    """A 32-bit integer hash (a bijection of ``[0, 2**32)``, Wellons' ``lowbias32``)."""
    x = x & 0xFFFFFFFF
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def element_bits(key: Any, index: Any) -> Any:
    """32 random bits for element ``index`` (below ``2**32``) of the stream ``key``.

    ``key`` is already a full hash of (seed, step, tensor, slot) (chains of :func:`mix32`),
    so for any one element ``index ^ key`` is uniform and independent from step to step, and
    so is its hash (a bijection). The hash's job here is only to make neighbouring elements of
    one step unrelated, which one round of :func:`mix32` does (a single multiply does not: its
    low bits repeat with the index's); a second round before the key bought nothing and cost
    the fused kernels, which are compute-bound on the codec, about 15% of a bf16 step.
    """
    return mix32(index ^ key)


# -- bf16 -------------------------------------------------------------------------------------


def bf16_special(bits: Any) -> Any:
    """The bf16 bits of an inf or NaN float32 (given by its bits): inf kept, NaN quieted."""
    return (bits >> 16) | where((bits & 0x7FFFFF) != 0, 0x40, 0)


def round_nearest(bits: Any) -> Any:
    """bf16 bits of float32 ``bits``, rounded to nearest (ties to even)."""
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return where((bits & 0x7F800000) == 0x7F800000, bf16_special(bits), rounded)


def round_stochastic(bits: Any, random: Any) -> Any:
    """bf16 bits of float32 ``bits``, rounded up with probability equal to the distance from
    the lower neighbour (the low 16 of ``random`` bits decide)."""
    rounded = (bits + (random & 0xFFFF)) >> 16
    return where((bits & 0x7F800000) == 0x7F800000, bf16_special(bits), rounded)


def decode_bf16(high: Any) -> Any:
    """A bf16 value, given by its 16 bits, as float32."""
    return bits_float(high << 16)


def encode_bf16(value: Any, key: Any, index: Any) -> Any:
    """Float32 ``value`` as bf16 bits, rounded stochastically with element ``index``'s bits of
    the stream ``key``."""
    return round_stochastic(float_bits(value), element_bits(key, index))


def encode_bf16_upper(value: Any, key: Any, index: Any) -> Any:
    """Float32 ``value`` as bf16 bits, rounded stochastically with the upper 16 of element
    ``index``'s bits of the stream ``key``: the second of two bf16 slots that share one hash
    per element (:func:`descend.kernels.codecs.shared_streams`), the first reading the lower
    16. The halves of one :func:`mix32` output are unrelated, so each slot's rounding stays
    unbiased and independent of the other's, and a compiled loop hashes once for both."""
    return round_stochastic(float_bits(value), element_bits(key, index) >> 16)


def encode_bf16_nearest(value: Any) -> Any:
    """Float32 ``value`` as bf16 bits, rounded to nearest."""
    return round_nearest(float_bits(value))


# -- bf16 + ecc -------------------------------------------------------------------------------


def half_ulp(high: Any) -> Any:
    """Half the ulp of a bf16 value given by its bits, its reciprocal (both powers of two, so
    dividing by the half ulp is multiplying by the reciprocal, exactly) and whether a
    correction byte is kept for it (a normal value whose half ulp is a normal float32)."""
    exponent = (high >> 7) & 0xFF
    kept = (exponent > 8) & (exponent < 255)
    half = bits_float(where(kept, (exponent - 8) << 23, 0x3F800000))
    return half, bits_float(where(kept, (262 - exponent) << 23, 0x3F800000)), kept


def decode_ecc(high: Any, correction: Any) -> Any:
    """A bf16 value (its bits) and its correction byte as float32 (version
    :data:`ECC_VERSION`: the correction times half the ulp times the float32 of 1/127, that
    product exact, so one rounding before the sum; version 1 divided by 127 instead)."""
    half, _, _ = half_ulp(high)
    return bits_float(high << 16) + to_float32(correction) * (half * f32(1.0 / 127.0))


def encode_ecc(value: Any) -> Any:
    """Float32 ``value`` as bf16 bits rounded to nearest and its correction: the residual in
    units of 1/127 of half the bf16 ulp, rounded to an integer (adding and subtracting
    1.5 * 2**23 rounds ties to even in two IEEE operations); 0 where no byte is kept (an inf,
    a NaN, a tiny value). The residual is at most half the ulp of the rounded value (the
    larger ulp where the value rounded up to a power of two), so the code lies in
    [-127, 127] without a clamp, and a kept value is finite, so the code is."""
    high = round_nearest(float_bits(value))
    _, inverse, kept = half_ulp(high)
    residual = (value - bits_float(high << 16)) * inverse
    code = (residual * f32(127.0) + f32(12582912.0)) - f32(12582912.0)
    return high, to_int(where(kept, code, f32(0.0)))


#: The version of the ``"bf16+ecc"`` decoding, recorded in state dicts (see
#: :func:`decode_ecc`; version 1's stays in :data:`descend.kernels.codecs.OLDER_DECODERS`).
ECC_VERSION = 2


# -- int8 -------------------------------------------------------------------------------------
#
# The code map (version :data:`INT8_VERSION`) is a dynamic tree in base 8, in closed form: below
# the block's largest magnitude, level ``e`` (``e = 0`` at the top) covers magnitudes from
# ``8**-e / 8`` to ``8**-e`` and splits them into ``n = 2**(L - e)`` equal steps, ``L`` the
# deepest level (6 for the signed map, whose 8th bit is the sign; 7 for the unsigned one). A
# magnitude code ``m`` (from 1) is step ``k = m - n + 1`` of level ``e``, ``n = 2**floor(log2
# m)``; its value is ``8**-e / 8 * (1 + 7 k / n)``, a dyadic fraction: exact in float32. Step 0
# of a level is the top of the level below, and code 0 is zero.


def magnitude_bits(value: Any) -> Any:
    """The bits of ``|value|``: a block's largest magnitude is the largest of these (bits and
    magnitudes order alike), and it is below ``0x7F800000`` only if the block is finite."""
    return float_bits(value) & 0x7FFFFFFF


def int8_scale(largest_bits: Any, negative: Any) -> Any:
    """The stored scale of a block from its largest :func:`magnitude_bits` and whether a value
    is negative: its largest magnitude, negated to mean the unsigned map (a block without a
    negative value and not all zero), NaN for a block holding inf or NaN."""
    absmax = bits_float(largest_bits)
    unsigned = where(negative, False, largest_bits > 0)
    scale = where(unsigned, f32(0.0) - absmax, absmax)
    return where(largest_bits < 0x7F800000, scale, bits_float(0x7FC00000))


def encode_int8(value: Any, largest_bits: Any, negative: Any) -> Any:
    """The code of ``value`` in its block (see :func:`int8_scale`): the map's value nearest to
    ``|value| / absmax`` (up to float32 rounding next to a midpoint, ties to the even step; a
    magnitude below 9/16 of the smallest nonzero value codes as zero), plus 128 for a negative
    value of a signed block; 0 for every value of a non-finite block. The level is found from
    the float's exponent and each level's step is a power of two, so no table is read, and the
    divisions are by block constants (one reciprocal a block, hoisted out of a loop). A block
    whose largest magnitude is below 2**-100 (subnormals: their reciprocal overflows float32)
    is lifted by 2**64 first, value and divisor alike, which is exact."""
    finite = largest_bits < 0x7F800000
    lift = where(largest_bits < 0x0D800000, f32(2.0**64), f32(1.0))
    divisor = where(finite & (largest_bits > 0), bits_float(largest_bits) * lift, f32(1.0))
    magnitude = bits_float(magnitude_bits(value)) * lift
    scaled = where(finite, magnitude * divide(f32(1.0), divisor), f32(0.0))
    deepest = where(negative, 6, 7)
    exponent = float_bits(scaled) >> 23
    # floor((126 - exponent) / 3) (a multiply and a shift: exact below 2**15), at most deepest.
    level = ((126 - where(exponent > 126, 126, exponent)) * 0xAAAB) >> 17
    level = where(level > deepest, deepest, level)
    # The step within the level: (scaled * 8**(level + 1) - 1) * steps / 7, steps = 2**(deepest
    # - level), from 0 to steps: below 0 only for the deepest level (one step), by less than
    # 1/7, and above steps by a rounding at most (scaled = 1), so both round into the range.
    steps = bits_float((127 + deepest - level) << 23)
    lifted = scaled * bits_float((130 + deepest + 2 * level) << 23) - steps
    step = (lifted * f32(1.0 / 7.0) + f32(12582912.0)) - f32(12582912.0)
    sign = where(finite & negative & (value < f32(0.0)), 128, 0)
    return to_int(step + steps - f32(1.0)) + sign


def decode_int8(code: Any, scale: Any) -> Any:
    """An int8 code of a block with this stored scale as float32."""
    unsigned = scale < f32(0.0)
    magnitude = where(unsigned, code, code & 127)
    bits = float_bits(to_float32(where(magnitude == 0, 1, magnitude)))
    steps = bits_float(bits & 0x7F800000)
    numerator = to_float32(7 * magnitude + 7) - f32(6.0) * steps
    value = numerator * bits_float(((bits >> 23) * 2 - where(unsigned, 151, 148)) << 23)
    value = where(magnitude == 0, f32(0.0), value)
    value = where(unsigned | (code < 128), value, f32(0.0) - value)
    return value * where(unsigned, f32(0.0) - scale, scale)


#: Every codec function, callees first: the order compiled modules define them in.
CODEC_FUNCTIONS: tuple[Callable[..., Any], ...] = (
    mix32,
    element_bits,
    bf16_special,
    round_nearest,
    round_stochastic,
    decode_bf16,
    encode_bf16,
    encode_bf16_upper,
    encode_bf16_nearest,
    half_ulp,
    decode_ecc,
    encode_ecc,
    magnitude_bits,
    int8_scale,
    encode_int8,
    decode_int8,
)
_BY_NAME = {function.__name__: function for function in CODEC_FUNCTIONS}

#: The version of the int8 code map, recorded in state dicts: 1 was the base-10 dynamic map
#: read from tables (:func:`descend.kernels.codecs.dynamic_map`), 2 is the closed form above.
INT8_VERSION = 2


@cache
def int8_map(signed: bool) -> np.ndarray:
    """The 256 values of the int8 code map (version 2) by code, for a block whose largest
    magnitude is 1: :func:`decode_int8` evaluated on every code."""
    import torch

    codes = torch.arange(256, dtype=torch.int64)
    values: np.ndarray = decode_int8(codes, torch.tensor(1.0 if signed else -1.0)).numpy()
    return values


# -- binding ----------------------------------------------------------------------------------


def function_source(function: Callable[..., Any]) -> str:
    """A codec function's ``def``, without annotations (compilers read none)."""
    source = textwrap.dedent(inspect.getsource(function))
    signature = inspect.signature(function)
    header = f"def {function.__name__}({', '.join(signature.parameters)}):"
    return header + source[source.index(":\n") + 1 :]


@cache
def codec_source(executor: str, decorator: str) -> str:
    """Every codec function as source for ``executor``'s kernels (``"numba"``, ``"triton"``):
    imports of its primitives, then each ``def`` under the line ``decorator``."""
    lines = []
    for name, row in CODEC_PRIMITIVES.items():
        module, attribute = row[executor].split(":")
        lines.append(f"from {_module(module)} import {attribute} as {name}")
    for function in CODEC_FUNCTIONS:
        lines += ["", "", decorator, function_source(function)]
    return "\n".join(lines)


__all__ = [
    "CODEC_FUNCTIONS",
    "CODEC_PRIMITIVES",
    "INT8_BLOCK",
    "ECC_VERSION",
    "INT8_VERSION",
    "codec_source",
    "int8_map",
]
