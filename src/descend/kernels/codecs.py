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
  same stream. A step's bf16 slots of one tensor pair up (:func:`shared_streams`): the two of
  a pair round with the lower and the upper 16 bits of one hash per element, so a compiled
  step hashes once for both (the hash was a quarter of an AdamW step's time).
- ``"bfloat16-nearest"``: bf16 rounded to nearest (ties to even): the negative control, whose
  small updates vanish once they fall below half a bf16 ulp.
- ``"bf16+ecc"``: bf16 rounded to nearest plus an int8 *error-correction* byte (3 bytes): the
  byte holds the rounding residual in units of 1/127 of half the bf16 ulp, so the pair decodes
  to float32 with a relative error of at most about 2^-16 (as HeavyBall's ``ecc="bf16+8"``).
- ``"int8"``: blockwise 8-bit (1 byte plus 4 bytes per block of :data:`INT8_BLOCK` = 256
  elements): each block keeps one float32 scale (its largest magnitude) and a code per element
  into a nonlinear map. The map (version :data:`INT8_VERSION`, :func:`int8_map`) is a
  *dynamic tree* map as in the 8-bit optimizers of Dettmers et al. (2022), in base 8 instead
  of bitsandbytes' base 10: levels a factor of 8 apart below the scale, each split linearly,
  with more values in the upper levels (64 steps between 1/8 and 1 of the scale, as many as
  the base-10 map has between 1/10 and 1). Base 8 makes every value a dyadic fraction, so
  encode and decode are arithmetic on the float's bits, with no table (they vectorize); the
  base-10 map was version 1, still decoded when an older state dict loads. A dynamic map is
  chosen over a power-law companding map because Adam's second moment spans many decades
  within a block: a value a million times below the block's largest still gets a nonzero code
  (a companded code of 255 levels rounds it to zero, and ``sqrt(v) + eps`` then divides by
  almost nothing). A block with no negative value uses the unsigned map (eight levels, 255
  nonzero codes; the scale is stored negated to say so), any other block the signed one (a
  sign bit and seven levels), so signed first moments and non-negative second moments each
  get the map that suits them without being told which is which. Codes are the nearest map
  value, deterministic. A block holding inf or NaN stores a NaN scale: the non-finite value
  spreads within its own block only, never to another block's scale. Tensors under
  :data:`INT8_MINIMUM` (4096) elements stay float32, as bitsandbytes does.

Each format is written once, for one element, in :mod:`descend.kernels.codec_elements`; the
encoders and decoders here evaluate those very functions on whole torch tensors (the reference
executor's form, also what any executor's list call and a state-dict conversion use), and the
fused CPU and Triton kernels compile them into their one pass over memory, so every executor
stores the same bits. :func:`mix32`, the random stream's hash, uses only ``& ^ >> * +`` on
64-bit integers and runs as it is on Python ints and NumPy or torch int64 arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from descend.kernels import codec_elements as elements
from descend.kernels.codec_elements import (
    ECC_VERSION,
    INT8_BLOCK,
    INT8_VERSION,
    element_bits,
    int8_map,
    mix32,
)

#: Tensors with fewer elements keep ``"int8"`` slots in float32 (bitsandbytes' threshold).
INT8_MINIMUM = 4096
#: The seed of the random stream unless an optimizer is given another.
DEFAULT_SEED = 0

#: Storage tensors of one slot: the first has the parameter's shape.
Stored = tuple[torch.Tensor, ...]


def stream_keys(seed: int, step: int, tensors: np.ndarray, slot: int) -> np.ndarray:
    """The keys of the random bits that store one slot of each of ``tensors`` (their indices,
    int64) at one step: :func:`stream_key` of each, in one pass."""
    key = mix32(seed ^ 0x9E3779B9)
    key = mix32(key ^ (seed >> 32))
    key = mix32(key ^ step)
    keys: np.ndarray = mix32(mix32(key ^ tensors) ^ slot)
    return keys


def stream_key(seed: int, step: int, tensor: int, slot: int) -> int:
    """The key of the random bits that store one slot of one tensor at one step."""
    return int(stream_keys(seed, step, np.asarray([tensor], dtype=np.int64), slot)[0])


def shared_streams(formats: Sequence[str]) -> list[tuple[int, bool]]:
    """For each slot of a step, by number (``formats``: each slot's format, ``"float32"`` for
    an inactive one), the number of the slot whose stream key rounds it and whether it reads
    the upper 16 random bits of each element (:func:`~descend.kernels.codec_elements.
    encode_bf16_upper`): the ``"bfloat16"`` slots pair up in order, the second of each pair
    rounding with the upper bits of the first's stream; every other slot keeps its own."""
    streams = [(number, False) for number in range(len(formats))]
    stochastic = [number for number, name in enumerate(formats) if CODECS[name].stochastic]
    for first, second in zip(stochastic[::2], stochastic[1::2], strict=False):
        streams[second] = (first, True)
    return streams


# -- the codecs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    """One storage format of a slot.

    ``encode(values, key, upper=False)`` stores float32 ``values`` (any shape) with the random
    stream ``key`` (see :func:`stream_key`), its upper 16 bits per element where ``upper``
    (:func:`shared_streams`; both ignored by deterministic formats), and returns the storage
    tensors, the first of ``values``' shape; ``decode(stored)`` returns float32 values of that
    shape. ``companions`` name the storage tensors after the first, kept in the optimizer's
    state under ``"<slot>.<companion>"``. ``minimum`` is the size under which a tensor keeps
    the slot uncompressed; ``storage`` the dtype of the first storage tensor.
    """

    name: str
    summary: str
    storage: torch.dtype | None
    encode: Callable[..., Stored]
    decode: Callable[[Stored], torch.Tensor]
    companions: tuple[str, ...] = ()
    stochastic: bool = False
    minimum: int = 0
    version: int = 1

    @property
    def layout(self) -> tuple[torch.dtype | None, tuple[str, ...]]:
        """What the stored tensors are: formats with one layout decode alike (the rounding
        that wrote them is not recorded)."""
        return self.storage, self.companions

    def applies(self, numel: int) -> bool:
        """Whether a tensor of ``numel`` elements is stored in this format (else float32)."""
        return self.storage is not None and numel >= self.minimum


_bf16 = elements.encode_bf16
_bf16_upper = elements.encode_bf16_upper
_bf16_nearest = elements.encode_bf16_nearest
_bf16_value = elements.decode_bf16
_ecc = elements.encode_ecc
_ecc_value = elements.decode_ecc
_magnitude_bits = elements.magnitude_bits
_int8_scale = elements.int8_scale
_int8 = elements.encode_int8
_int8_value = elements.decode_int8


def _bf16_tensor(high: torch.Tensor) -> torch.Tensor:
    """A bf16 tensor of int64 bits in ``[0, 2**16)``."""
    return (high - ((high >> 15) << 16)).to(torch.int16).view(torch.bfloat16)


def _bf16_bits(values: torch.Tensor) -> torch.Tensor:
    """The bits of a bf16 tensor as int64 in ``[0, 2**16)``."""
    return values.contiguous().view(torch.int16).to(torch.int64) & 0xFFFF


def _float32(values: torch.Tensor) -> torch.Tensor:
    return values.to(torch.float32).contiguous()


def _encode_bf16(values: torch.Tensor, key: int, upper: bool = False) -> Stored:
    index = torch.arange(values.numel(), dtype=torch.int64, device=values.device)
    encode = _bf16_upper if upper else _bf16
    return (_bf16_tensor(encode(_float32(values), key, index.view(values.shape))),)


def _encode_bf16_nearest(values: torch.Tensor, key: int, upper: bool = False) -> Stored:
    return (_bf16_tensor(_bf16_nearest(_float32(values))),)


def _decode_bf16(stored: Stored) -> torch.Tensor:
    return stored[0].to(torch.float32)


def _encode_ecc(values: torch.Tensor, key: int, upper: bool = False) -> Stored:
    high, correction = _ecc(_float32(values))
    return _bf16_tensor(high), correction.to(torch.int8)


def _decode_ecc(stored: Stored) -> torch.Tensor:
    result: torch.Tensor = _ecc_value(_bf16_bits(stored[0]), stored[1].to(torch.int64))
    return result


def _decode_ecc_version1(stored: Stored) -> torch.Tensor:
    """Version 1's decoding: the correction times half the ulp, divided by 127."""
    high = _bf16_bits(stored[0])
    half, _, _ = elements.half_ulp(high)
    correction = stored[1].to(torch.float32)
    result: torch.Tensor = elements.bits_float(high << 16) + correction * half / 127.0
    return result


def _blocks(values: torch.Tensor) -> torch.Tensor:
    """``values`` flattened, zero-padded to whole blocks, one block per row."""
    flat = values.reshape(-1)
    count = -(-flat.numel() // INT8_BLOCK)
    padded = flat.new_zeros(count * INT8_BLOCK)
    padded[: flat.numel()] = flat
    return padded.view(count, INT8_BLOCK)


def _encode_int8(values: torch.Tensor, key: int, upper: bool = False) -> Stored:
    blocks = _blocks(_float32(values))
    # The block reductions: the largest magnitude's bits and whether a value is negative.
    largest = _magnitude_bits(blocks).amax(dim=1, keepdim=True)
    negative = (blocks < 0).any(dim=1, keepdim=True)
    codes = _int8(blocks, largest, negative)
    stored = codes.reshape(-1)[: values.numel()].to(torch.uint8).view(values.shape)
    return stored, _int8_scale(largest, negative).reshape(-1)


def _decode_int8(stored: Stored) -> torch.Tensor:
    codes, scale = stored
    values: torch.Tensor = _int8_value(_blocks(codes.to(torch.int64)), scale[:, None])
    return values.reshape(-1)[: codes.numel()].view(codes.shape)


# -- int8, version 1 (decoded when an older state dict is loaded) -----------------------------


def dynamic_map(signed: bool) -> np.ndarray:
    """The 256 values of version 1's int8 map (the base-10 dynamic map), ascending, in float32:
    seven decades below 1 (``10**-6`` to ``10**0``); decade ``i`` (from the lowest) holds the
    midpoints of ``2**i + 1`` (signed: each with both signs) or ``2**(i + 1) + 1`` (unsigned)
    points spaced evenly from 0.1 to 1, scaled to the decade; then 0 and 1. A code was the
    value's index here."""
    values = [0.0, 1.0]
    for decade in range(7):
        points = (2**decade if signed else 2 ** (decade + 1)) + 1
        bounds = np.linspace(0.1, 1.0, points)
        middles = 10.0 ** (decade - 6) * (bounds[:-1] + bounds[1:]) / 2
        values += middles.tolist()
        if signed:
            values += (-middles).tolist()
    return np.sort(np.asarray(values, dtype=np.float64)).astype(np.float32)


def _decode_int8_version1(stored: Stored) -> torch.Tensor:
    """Version 1's codes as float32: the map's value (the unsigned map where the scale is
    negative) times the scale's magnitude."""
    codes, scale = stored
    maps = torch.from_numpy(np.concatenate([dynamic_map(True), dynamic_map(False)]))
    blocks = _blocks(codes.to(torch.int64))
    unsigned = scale[:, None] < 0
    values = maps.to(codes.device)[blocks + torch.where(unsigned, 256, 0)]
    values = values * torch.where(unsigned, -scale[:, None], scale[:, None])
    return values.reshape(-1)[: codes.numel()].view(codes.shape)


#: Decoders of formats whose encoding changed, by format and version: a state dict saved with
#: one of these loads through it (every other older version is refused, naming it).
OLDER_DECODERS: dict[tuple[str, int], Callable[[Stored], torch.Tensor]] = {
    ("int8", 1): _decode_int8_version1,
    ("bf16+ecc", 1): _decode_ecc_version1,
}


def _identity(values: torch.Tensor, key: int, upper: bool = False) -> Stored:
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
            version=ECC_VERSION,
        ),
        Codec(
            "int8",
            "blockwise 8-bit dynamic map (base 8), one float32 scale per 256 elements",
            torch.uint8,
            _encode_int8,
            _decode_int8,
            companions=("scale",),
            minimum=INT8_MINIMUM,
            version=INT8_VERSION,
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


def saved_version(record: Mapping[str, Any], name: str) -> int:
    """The version of format ``name`` that wrote a state dict whose format record (what
    :func:`descend.optim.precision.saved_formats` writes) is ``record``: its
    ``"format_versions"`` entry, 1 for a record from before versions were recorded."""
    versions = record.get("format_versions")
    return int(versions.get(name, 1)) if isinstance(versions, Mapping) else 1


def saved_decoder(
    record: Mapping[str, Any], name: str, where: str
) -> Callable[[tuple[torch.Tensor, ...]], torch.Tensor]:
    """The decoder of slots a state dict (with this record) stores in format ``name``: the
    codec's own, or the one of :data:`OLDER_DECODERS` for an older
    encoding; ``ValueError`` naming ``where``, the format and its version for any other."""
    codec = CODECS[name]
    version = saved_version(record, name)
    if version == codec.version:
        return codec.decode
    decoder = OLDER_DECODERS.get((name, version))
    if decoder is None:
        readable = sorted({codec.version} | {v for n, v in OLDER_DECODERS if n == name})
        raise ValueError(
            f"{where} is stored as {name!r} version {version}, which this descend cannot "
            f"decode: it reads {name!r} versions {', '.join(map(str, readable))}; "
            "nothing was loaded"
        )
    return decoder


__all__ = [
    "CODECS",
    "DEFAULT_SEED",
    "FORMATS",
    "INT8_BLOCK",
    "ECC_VERSION",
    "INT8_MINIMUM",
    "INT8_VERSION",
    "OLDER_DECODERS",
    "Codec",
    "dynamic_map",
    "int8_map",
    "element_bits",
    "get_codec",
    "mix32",
    "saved_decoder",
    "saved_version",
    "shared_streams",
    "stream_key",
    "stream_keys",
]
