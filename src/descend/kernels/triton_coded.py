"""Triton kernels of rules whose slots are stored compressed: decode on load, encode on store,
inside the launch's one pass over memory.

A variant with :attr:`~descend.kernels.variant.Variant.coded` formats gets its Triton kernel
from :func:`coded_triton_source`: the loop of :func:`descend.kernels.triton.kernel_source`
(each program walks its chunk a block at a time, whole blocks unmasked, then the masked rest),
but each compressed slot is loaded through its codec's decode and stored through its encode:
the functions of :mod:`descend.kernels.codec_elements`, jitted with Triton's primitives
(:mod:`descend.kernels.triton_codecs`), the very functions the reference executor evaluates
on torch tensors. For ``"int8"`` the block of a loop iteration is viewed as rows of
:data:`~descend.kernels.codecs.INT8_BLOCK` elements (chunks start at multiples of it), each row
reduced to its largest magnitude and sign; elements past the tensor's end count as zeros, as
the reference's padding does. Operand rows are those of :func:`descend.kernels.coded.coded_rows`.

A variant whose weights are bf16 (:attr:`~descend.kernels.variant.Variant.weights`) loads the
weight and gradient as bf16 bits, decodes them (the weight with its correction byte) with the
same codec functions, and stores the new weight through the format's encode, keyed by the
element's index in its tensor as the fused kernel and the reference are.
"""

from __future__ import annotations

from typing import Any

import torch

from descend.kernels.codec_elements import INT8_BLOCK, codec_source
from descend.kernels.coded import SlotRows, coded_rows
from descend.kernels.codegen import scalar_arguments
from descend.kernels.variant import Variant
from descend.rules.spec import Rule

#: The pointer type of each storage tensor of a format, in storage order.
_POINTERS = {
    "bfloat16": ("uint16",),
    "bfloat16-nearest": ("uint16",),
    "bf16+ecc": ("uint16", "int8"),
    "int8": ("uint8", "float32"),
}


def _load(pointer: str, masked: bool) -> str:
    return f"tl.load({pointer}, mask=_mask, other=0)" if masked else f"tl.load({pointer})"


def _store(pointer: str, value: str, masked: bool) -> str:
    mask = ", mask=_mask" if masked else ""
    return f"tl.store({pointer}, {value}{mask})"


def _slot_code(
    k: int, slot: SlotRows, result: str, dtype: str, masked: bool
) -> tuple[list[str], str, list[str]]:
    """The decode lines of compressed slot ``k``, the update's argument, the encode lines."""
    at = [f"_s{k}_{n} + _offs" for n in range(len(slot.rows))]
    compute = "tl.float64" if dtype == "float64" else "tl.float32"
    decode: list[str] = []
    if slot.format in ("bfloat16", "bfloat16-nearest"):
        decode.append(f"_d{k} = decode_bf16({_load(at[0], masked)}.to(tl.int64))")
    elif slot.format == "bf16+ecc":
        high, low = _load(at[0], masked), _load(at[1], masked)
        decode.append(f"_d{k} = decode_ecc({high}.to(tl.int64), {low}.to(tl.int64))")
    else:
        scale = _load(f"_s{k}_1 + _offs // {INT8_BLOCK}", masked)
        decode.append(f"_d{k} = decode_int8({_load(at[0], masked)}.to(tl.int64), {scale})")
    value = f"_v{k}"
    encode = [f"{value} = ({result}).to(tl.float32)"]
    if slot.format == "bfloat16":
        # The second slot of a pair reads the first's key (see SlotRows).
        function = "encode_bf16_upper" if slot.upper else "encode_bf16"
        bits = f"{function}({value}, _key{slot.stream}, _offs)"
        encode.append(_store(at[0], f"{bits}.to(tl.uint16)", masked))
    elif slot.format == "bfloat16-nearest":
        encode.append(_store(at[0], f"encode_bf16_nearest({value}).to(tl.uint16)", masked))
    elif slot.format == "bf16+ecc":
        encode.append(f"_h{k}, _e{k} = encode_ecc({value})")
        encode.append(_store(at[0], f"_h{k}.to(tl.uint16)", masked))
        encode.append(_store(at[1], f"_e{k}.to(tl.int8)", masked))
    else:
        rows = f"(BLOCK // {INT8_BLOCK}, {INT8_BLOCK})"
        if masked:
            encode.append(f"{value} = tl.where(_mask, {value}, 0.0)")
        encode += [
            f"_m{k} = tl.max(tl.reshape(magnitude_bits({value}), {rows}), axis=1)",
            f"_m{k} = tl.reshape(tl.broadcast_to(_m{k}[:, None], {rows}), (BLOCK,))",
            f"_n{k} = tl.max(tl.reshape(({value} < 0.0).to(tl.int32), {rows}), axis=1)",
            f"_n{k} = tl.reshape(tl.broadcast_to(_n{k}[:, None], {rows}), (BLOCK,)) > 0",
            f"_c{k} = encode_int8({value}, _m{k}, _n{k})",
            _store(at[0], f"_c{k}.to(tl.uint8)", masked),
            _store(f"_s{k}_1 + _offs // {INT8_BLOCK}", f"int8_scale(_m{k}, _n{k})", masked),
        ]
    return decode, f"_d{k}.to({compute})", encode


def _weight_code(weights: str, masked: bool) -> tuple[list[str], list[str]]:
    """The update's arguments for a bf16 weight and its gradient (decoded) and the lines that
    store the new weight ``_r0`` through the weight format's encode."""
    gradient = f"decode_bf16({_load('_x1 + _offs', masked)}.to(tl.int64))"
    high = f"{_load('_x0 + _offs', masked)}.to(tl.int64)"
    stores = ["_w = (_r0).to(tl.float32)"]
    if weights == "bfloat16":
        stores.append(_store("_x0 + _offs", "encode_bf16(_w, _wkey, _offs).to(tl.uint16)", masked))
        return [f"decode_bf16({high})", gradient], stores
    correction = f"{_load('_we + _offs', masked)}.to(tl.int64)"
    stores += [
        "_wh, _wc = encode_ecc(_w)",
        _store("_x0 + _offs", "_wh.to(tl.uint16)", masked),
        _store("_we + _offs", "_wc.to(tl.int8)", masked),
    ]
    return [f"decode_ecc({high}, {correction})", gradient], stores


def coded_triton_source(rule: Rule, variant: Variant, element_functions: str) -> str:
    """The Triton kernel module of ``rule`` under a coded ``variant`` (see the module
    docstring); ``element_functions`` is the rule's update as ``@triton.jit`` source."""
    dtype = variant.dtype
    slots, rows = coded_rows(variant)
    if variant.weights and dtype != "float32":
        raise ValueError(f"bf16 weights are stepped in float32, not in {dtype}")
    pointer = "tl.pointer_type(tl.uint16)" if variant.weights else f"tl.pointer_type(tl.{dtype})"
    header = [
        "_pid = tl.program_id(0).to(tl.int64)",
        "_tensor = tl.load(_chunks + 3 * _pid)",
        "_start = tl.multiple_of(tl.load(_chunks + 3 * _pid + 1), CHUNK)",
        "_stop = tl.load(_chunks + 3 * _pid + 2)",
    ]
    for r in (0, 1):
        header.append(f"_x{r} = tl.load(_table + {r} * _count + _tensor).to({pointer})")
    weight_row = f"tl.load(_table + {rows - 1} * _count + _tensor)"
    if variant.weights == "bfloat16":
        header.append(f"_wkey = {weight_row}")
    elif variant.weights:
        header.append(f"_we = {weight_row}.to(tl.pointer_type(tl.int8))")
    for k, slot in enumerate(slots):
        if slot is None:
            continue
        kinds = (dtype,) if slot.format == "float32" else _POINTERS[slot.format]
        for n, (row, kind) in enumerate(zip(slot.rows, kinds, strict=True)):
            address = f"tl.load(_table + {row} * _count + _tensor)"
            header.append(f"_s{k}_{n} = {address}.to(tl.pointer_type(tl.{kind}))")
        if slot.key_row is not None:
            header.append(f"_key{k} = tl.load(_table + {slot.key_row} * _count + _tensor)")
    header += [f"{name} = _scalar({name})" for name in variant.runtime]

    def body(masked: bool) -> list[str]:
        load = "_load_masked({}, _mask)" if masked else "_load({})"
        store = "_store_masked({}, {}, _mask)" if masked else "_store({}, {})"
        lines = [f"_offs = _start + {'_full' if masked else '_i'} + tl.arange(0, BLOCK)"]
        if masked:
            lines.append("_mask = _offs < _stop")
        if variant.weights:
            arguments, stores = _weight_code(variant.weights, masked)
        else:
            arguments = [load.format("_x0 + _offs"), load.format("_x1 + _offs")]
            stores = [store.format("_x0 + _offs", "_r0")]
        for k, slot in enumerate(slots):
            if slot is None:
                arguments.append("0.0")
            elif slot.format == "float32":
                arguments.append(load.format(f"_s{k}_0 + _offs"))
                stores.append(store.format(f"_s{k}_0 + _offs", f"_r{k + 1}"))
            else:
                decode, argument, encode = _slot_code(k, slot, f"_r{k + 1}", dtype, masked)
                lines += decode
                arguments.append(argument)
                stores += encode
        arguments += scalar_arguments(rule, variant)
        results = ", ".join(f"_r{k}" for k in range(1 + len(slots)))
        lines.append(f"{results} = _rule_update({', '.join(arguments)})")
        return lines + stores

    header.append("_full = (_stop - _start) // BLOCK * BLOCK")
    header.append("for _i in range(0, _full, BLOCK):")
    header += ["    " + line for line in body(masked=False)]
    header.append("if _start + _full < _stop:")
    header += ["    " + line for line in body(masked=True)]
    parameters = ", ".join(
        [
            "_table",
            "_chunks",
            "_count",
            *(f"{name}: tl.float64" for name in variant.runtime),
            "ALIGNED: tl.constexpr",
            "CHUNK: tl.constexpr",
            "BLOCK: tl.constexpr",
        ]
    )
    kernel_body = "\n".join("    " + line for line in header)
    codecs = codec_source("triton", "@triton.jit")
    return f'''"""Triton {dtype} kernel of the {rule.name!r} rule, coded slots; made by descend."""
# variant {variant!r}
import triton
import triton.language as tl

from descend.kernels.triton_support import add as _add, sub as _sub, mul as _mul
from descend.kernels.triton_support import div as _div, power as _power, neg as _neg
from descend.kernels.triton_support import load as _load, load_masked as _load_masked
from descend.kernels.triton_support import store as _store, store_masked as _store_masked
from descend.kernels.triton_support import scalar as _scalar
{codecs}
{element_functions}


@triton.jit(do_not_specialize=["_count"])
def kernel({parameters}):
{kernel_body}
'''


def coded_launch(
    kernel: Any, device: torch.device, chunk: int, block: int
) -> tuple[int, int, tuple[torch.Tensor, ...]]:
    """The chunk, block and extra table arguments of a launch of ``kernel``: unchanged for a
    kernel without compressed slots; else a block of at least :data:`INT8_BLOCK` elements (an
    int8 block is reduced within one iteration) and a chunk of at least one block. No codec
    reads a table (the int8 map is computed), so there are no extra arguments."""
    if not getattr(kernel, "reads_codec_tables", False):
        return chunk, block, ()
    block = max(block, INT8_BLOCK)
    return max(chunk, block), block, ()
