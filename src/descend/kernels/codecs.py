"""Storage formats of optimizer state: how a slot is kept between steps, one codec each.

A rule computes on its slots in float32 (float64 for float64 parameters) and never knows how
they are stored. A *codec* says how: ``encode`` turns a slot's float values into the tensors
kept in the optimizer's state, ``decode`` turns them back, and every executor binds the same
codec around the rule's update (decode on load, encode on store), as it binds the primitives of
:mod:`descend.rules.elementwise`. A new format is one :class:`Codec` in :data:`CODECS`.

The formats (:data:`FORMATS`):

- ``"float32"``: the slot as ``torch.optim`` keeps it, in the parameter's dtype (nothing
  encoded; the default).
- ``"bfloat16"``: bf16 (2 bytes), written with *stochastic rounding*: a value between two
  bf16 neighbours is rounded up with probability equal to its distance from the lower one, so
  the expected stored value is the float32 value (no drift of small updates). The random bits
  are a pure function of ``(seed, step, tensor, slot, element)`` (:func:`stream_key`,
  :func:`element_bits`), so every executor draws the same bits and a resumed run continues the
  same stream.
- ``"bfloat16-nearest"``: bf16 rounded to nearest (ties to even): the negative control, whose
  small updates vanish once they fall below half a bf16 ulp.
- ``"bf16+ecc"``: bf16 rounded to nearest plus an int8 *error-correction* byte (3 bytes): the
  byte holds the rounding residual in units of 1/127 of half the bf16 ulp, so the pair decodes
  to float32 with a relative error of at most about 2^-16 (as HeavyBall's ``ecc="bf16+8"``).
- ``"int8"``: blockwise 8-bit (1 byte plus 4 bytes per block of :data:`INT8_BLOCK` = 256
  elements): each block keeps one float32 scale (its largest magnitude) and a code per element
  into a nonlinear map. The map is the *dynamic* (tree) quantization map of 8-bit optimizers
  (Dettmers et al., 2022, as bitsandbytes builds it; built here from that description,
  :func:`dynamic_map`): seven decades below the scale, each split linearly, with more values in
  the upper decades. It is chosen over a power-law companding map because Adam's second moment
  spans many decades within a block: a value a million times below the block's largest still
  gets a nonzero code (a companded code of 255 levels rounds it to zero, and ``sqrt(v) + eps``
  then divides by almost nothing). A block with no negative value uses the unsigned map (256
  non-negative codes, twice the resolution; the scale is stored negated to say so), any other
  block the signed one, so signed first moments and non-negative second moments each get the
  map that suits them without being told which is which. Codes are the nearest map value
  (ties to the lower), deterministic. A block holding inf or NaN stores a NaN scale: the
  non-finite value spreads within its own block only, never to another block's scale.
  Tensors under :data:`INT8_MINIMUM` (4096) elements stay float32, as bitsandbytes does.

The arithmetic is written here for torch tensors: the reference executor (and any executor's
list call) decodes a slot, runs the rule and encodes it with these functions. The fused CPU
kernel binds the element forms of :mod:`descend.kernels._numba_codecs`, which perform the same
IEEE operations and bit manipulations in the same order (the tests compare the stored bytes of
both, bit for bit). :func:`mix32`, the random stream's hash, uses only ``& ^ >> * +`` on 64-bit
integers, which Python, NumPy, Numba, Triton and torch compute identically; the kernel
compiles this very function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch

#: Low 32 bits of a 64-bit integer.
MASK32 = 0xFFFFFFFF
#: Elements per block of the ``"int8"`` format, each with its own float32 scale.
INT8_BLOCK = 256
#: Tensors with fewer elements keep ``"int8"`` slots in float32 (bitsandbytes' threshold).
INT8_MINIMUM = 4096
#: The seed of the random stream unless an optimizer is given another.
DEFAULT_SEED = 0

#: Storage tensors of one slot: the first has the parameter's shape.
Stored = tuple[torch.Tensor, ...]


def mix32(x: Any) -> Any:
    """A 32-bit integer hash (a bijection of ``[0, 2**32)``, Wellons' ``lowbias32``) of a
    Python int, a NumPy/torch int64 array or a compiled int64: the same value on each."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & MASK32
    return x ^ (x >> 16)


def stream_key(seed: int, step: int, tensor: int, slot: int) -> int:
    """The key of the random bits that store one slot of one tensor at one step."""
    key = mix32(seed ^ 0x9E3779B9)
    key = mix32(key ^ (seed >> 32))
    key = mix32(key ^ step)
    key = mix32(key ^ tensor)
    return int(mix32(key ^ slot))


def element_bits(key: Any, index: Any) -> Any:
    """32 random bits for element ``index`` (below ``2**32``) under ``key``."""
    return mix32(mix32(index) ^ key)


# -- bit views --------------------------------------------------------------------------------


def float_bits(values: torch.Tensor) -> torch.Tensor:
    """The bits of float32 ``values`` as int64 in ``[0, 2**32)``."""
    return values.view(torch.int32).to(torch.int64) & MASK32


def bits_float(bits: torch.Tensor) -> torch.Tensor:
    """Float32 values of int64 ``bits`` in ``[0, 2**32)``."""
    return (bits - ((bits >> 31) << 32)).to(torch.int32).view(torch.float32)


def bf16_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """A bf16 tensor of int64 ``bits`` in ``[0, 2**16)``."""
    return (bits - ((bits >> 15) << 16)).to(torch.int16).view(torch.bfloat16)


def bf16_bits(values: torch.Tensor) -> torch.Tensor:
    """The bits of a bf16 tensor as int64 in ``[0, 2**16)``."""
    return values.view(torch.int16).to(torch.int64) & 0xFFFF


def round_bf16(bits: torch.Tensor, random: torch.Tensor | None) -> torch.Tensor:
    """bf16 bits of float32 ``bits``: stochastically rounded with 16 ``random`` bits per
    element, or to nearest (ties to even) when ``random`` is None. Inf stays inf; NaN stays
    NaN (quiet)."""
    exponent_ones = (bits & 0x7F800000) == 0x7F800000
    if random is None:
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    else:
        rounded = (bits + (random & 0xFFFF)) >> 16
    special = (bits >> 16) | torch.where((bits & 0x7FFFFF) != 0, 0x40, 0)
    return torch.where(exponent_ones, special, rounded)


#: Adding and subtracting 1.5 * 2**23 rounds a float32 of magnitude below 2**22 to an integer
#: (ties to even) in two IEEE operations, which every executor computes alike.
ROUNDING_CONSTANT = 12582912.0


def round_to_integer(values: Any) -> Any:
    """Float32 ``values`` (magnitude below 2**22) rounded to integers, ties to even."""
    return (values + ROUNDING_CONSTANT) - ROUNDING_CONSTANT


# -- the codecs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    """One storage format of a slot.

    ``encode(values, key)`` stores float32 ``values`` (any shape) with the random stream
    ``key`` (see :func:`stream_key`; ignored by deterministic formats) and returns the storage
    tensors, the first of ``values``' shape; ``decode(stored)`` returns float32 values of that
    shape. ``companions`` name the storage tensors after the first, kept in the optimizer's
    state under ``"<slot>.<companion>"``. ``minimum`` is the size under which a tensor keeps
    the slot uncompressed; ``storage`` the dtype of the first storage tensor.
    """

    name: str
    summary: str
    storage: torch.dtype | None
    encode: Callable[[torch.Tensor, int], Stored]
    decode: Callable[[Stored], torch.Tensor]
    companions: tuple[str, ...] = ()
    stochastic: bool = False
    minimum: int = 0

    @property
    def layout(self) -> tuple[torch.dtype | None, tuple[str, ...]]:
        """What the stored tensors are: formats with one layout decode alike (the rounding
        that wrote them is not recorded)."""
        return self.storage, self.companions

    def applies(self, numel: int) -> bool:
        """Whether a tensor of ``numel`` elements is stored in this format (else float32)."""
        return self.storage is not None and numel >= self.minimum


def _random_bits(values: torch.Tensor, key: int) -> torch.Tensor:
    index = torch.arange(values.numel(), dtype=torch.int64, device=values.device)
    bits: torch.Tensor = element_bits(key, index)
    return bits.view(values.shape)


def _encode_bf16(values: torch.Tensor, key: int) -> Stored:
    bits = float_bits(values.to(torch.float32).contiguous())
    return (bf16_from_bits(round_bf16(bits, _random_bits(values, key))),)


def _encode_bf16_nearest(values: torch.Tensor, key: int) -> Stored:
    bits = float_bits(values.to(torch.float32).contiguous())
    return (bf16_from_bits(round_bf16(bits, None)),)


def _decode_bf16(stored: Stored) -> torch.Tensor:
    return stored[0].to(torch.float32)


def _half_ulp(high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the ulp of bf16 values given by their bits, and where an ECC byte is kept
    (normal values whose half ulp is a normal float32)."""
    exponent = (high >> 7) & 0xFF
    kept = (exponent > 8) & (exponent < 255)
    half = bits_float(torch.where(kept, (exponent - 8) << 23, 0x3F800000))
    return half, kept


def _encode_ecc(values: torch.Tensor, key: int) -> Stored:
    values = values.to(torch.float32).contiguous()
    high = round_bf16(float_bits(values), None)
    rounded = bits_float(high << 16)
    half, kept = _half_ulp(high)
    residual = (values - rounded) / half
    code = round_to_integer(residual * 127.0).clamp(-127.0, 127.0)
    code = torch.where(kept & torch.isfinite(code), code, 0.0)
    return bf16_from_bits(high), code.to(torch.int8)


def _decode_ecc(stored: Stored) -> torch.Tensor:
    high = bf16_bits(stored[0])
    rounded = bits_float(high << 16)
    half, _ = _half_ulp(high)
    return rounded + (stored[1].to(torch.float32) * half) / 127.0


def dynamic_map(signed: bool) -> np.ndarray:
    """The 256 values of the dynamic quantization map, ascending, in float32.

    Seven decades below 1 (``10**-6`` to ``10**0``); decade ``i`` (from the lowest) holds the
    midpoints of ``2**i + 1`` (signed: each with both signs) or ``2**(i + 1) + 1``
    (unsigned) points spaced evenly from 0.1 to 1, scaled to the decade; then 0 and 1.
    """
    values = [0.0, 1.0]
    for decade in range(7):
        points = (2**decade if signed else 2 ** (decade + 1)) + 1
        bounds = np.linspace(0.1, 1.0, points)
        middles = 10.0 ** (decade - 6) * (bounds[:-1] + bounds[1:]) / 2
        values += middles.tolist()
        if signed:
            values += (-middles).tolist()
    table = np.sort(np.asarray(values, dtype=np.float64)).astype(np.float32)
    assert len(table) == 256 and len(np.unique(table)) == 256
    return table


@cache
def code_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(signed map, its midpoints, unsigned map, its midpoints)`` in float32: a value is
    coded as the number of midpoints below it (ties to the lower code)."""
    tables = []
    for signed in (True, False):
        table = dynamic_map(signed)
        wide = table.astype(np.float64)
        tables += [table, ((wide[:-1] + wide[1:]) / 2).astype(np.float32)]
    return tables[0], tables[1], tables[2], tables[3]


@cache
def _device_tables(device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(table).to(device) for table in code_tables())


def _blocks(values: torch.Tensor) -> torch.Tensor:
    """``values`` flattened, zero-padded to whole blocks, one block per row."""
    flat = values.reshape(-1)
    count = -(-flat.numel() // INT8_BLOCK)
    padded = flat.new_zeros(count * INT8_BLOCK)
    padded[: flat.numel()] = flat
    return padded.view(count, INT8_BLOCK)


def _encode_int8(values: torch.Tensor, key: int) -> Stored:
    signed_map, signed_mid, _, unsigned_mid = _device_tables(values.device)
    blocks = _blocks(values.to(torch.float32))
    finite = torch.isfinite(blocks).all(dim=1)
    absmax = torch.where(finite, blocks.abs().amax(dim=1), 0.0)
    signed = (blocks < 0).any(dim=1)
    usable = finite & (absmax > 0)
    scaled = blocks / torch.where(usable, absmax, 1.0)[:, None]
    scaled = torch.where(finite[:, None], scaled, 0.0).contiguous()
    flat = scaled.view(-1)
    codes = torch.where(
        signed[:, None],
        torch.bucketize(flat, signed_mid).view_as(scaled),
        torch.bucketize(flat, unsigned_mid).view_as(scaled),
    )
    scale = torch.where(signed | ~usable, absmax, -absmax)
    scale = torch.where(finite, scale, torch.nan)
    stored = codes.reshape(-1)[: values.numel()].to(torch.uint8).view(values.shape)
    return stored, scale


def _decode_int8(stored: Stored) -> torch.Tensor:
    codes, scale = stored
    signed_map, _, unsigned_map, _ = _device_tables(codes.device)
    index = _blocks(codes.to(torch.int64))
    table = torch.where((scale < 0)[:, None], unsigned_map[index], signed_map[index])
    values = table * scale.abs()[:, None]
    return values.reshape(-1)[: codes.numel()].view(codes.shape)


def _identity(values: torch.Tensor, key: int) -> Stored:
    return (values,)


def _identity_decode(stored: Stored) -> torch.Tensor:
    return stored[0]


#: Every storage format, by name.
CODECS: dict[str, Codec] = {
    codec.name: codec
    for codec in (
        Codec(
            "float32",
            "the parameter's dtype, as torch.optim keeps it",
            None,
            _identity,
            _identity_decode,
        ),
        Codec(
            "bfloat16",
            "bf16 with stochastic rounding (2 bytes)",
            torch.bfloat16,
            _encode_bf16,
            _decode_bf16,
            stochastic=True,
        ),
        Codec(
            "bfloat16-nearest",
            "bf16 rounded to nearest, the negative control (2 bytes)",
            torch.bfloat16,
            _encode_bf16_nearest,
            _decode_bf16,
        ),
        Codec(
            "bf16+ecc",
            "bf16 plus an int8 correction byte (3 bytes, relative error about 2^-16)",
            torch.bfloat16,
            _encode_ecc,
            _decode_ecc,
            companions=("ecc",),
        ),
        Codec(
            "int8",
            "blockwise 8-bit dynamic map, one float32 scale per 256 elements",
            torch.uint8,
            _encode_int8,
            _decode_int8,
            companions=("scale",),
            minimum=INT8_MINIMUM,
        ),
    )
}
#: The names ``state_precision=`` accepts.
FORMATS = tuple(CODECS)


def get_codec(name: object) -> Codec:
    """The codec called ``name``; ``ValueError`` naming it and the formats otherwise."""
    codec = CODECS.get(name) if isinstance(name, str) else None
    if codec is None:
        raise ValueError(
            f"state format {name!r} is unknown: expected one of {', '.join(map(repr, FORMATS))}"
        )
    return codec


__all__ = [
    "CODECS",
    "DEFAULT_SEED",
    "FORMATS",
    "INT8_BLOCK",
    "INT8_MINIMUM",
    "Codec",
    "code_tables",
    "dynamic_map",
    "element_bits",
    "get_codec",
    "mix32",
    "stream_key",
]
