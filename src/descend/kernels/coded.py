"""Fused kernels of rules whose slots are stored compressed: decode on load, encode on store,
inside the kernel's one pass over memory.

A variant with :attr:`~descend.kernels.variant.Variant.coded` formats gets a kernel written
here instead of :func:`descend.kernels.fused.kernel_source`'s: the same call of the rule's own
``update`` per element, but each slot is read through its codec's decode and written through
its encode (:mod:`descend.kernels._numba_codecs`, the element forms of
:mod:`descend.kernels.codecs`). The elements are walked in blocks of
:data:`~descend.kernels.codecs.INT8_BLOCK`: an ``"int8"`` slot's new values wait in a buffer
until its block is done, then are coded against the block's new scale. Segments start at block
boundaries (:class:`~descend.kernels.table.TensorTable`'s ``align``).

Operand rows (:func:`coded_rows`): the parameter, the gradient, each active slot's storage
tensors (its value tensor, then its companions), then one row per compressed slot holding the
key of that slot's random stream for this step (a number, not an address).
"""

from __future__ import annotations

from dataclasses import dataclass

from descend.kernels.codecs import CODECS, INT8_BLOCK
from descend.kernels.codegen import scalar_arguments
from descend.kernels.variant import Variant
from descend.rules.spec import Rule


@dataclass(frozen=True)
class SlotRows:
    """Where one active slot lives in the table: its format, storage rows, key row."""

    format: str
    rows: tuple[int, ...]
    key_row: int | None


def storage_names(slot: str, format: str) -> list[str]:
    """The state keys of a slot stored in ``format``: the slot's own, then its companions."""
    return [slot, *(f"{slot}.{companion}" for companion in CODECS[format].companions)]


def coded_rows(variant: Variant) -> tuple[list[SlotRows | None], int]:
    """Each of the rule's slots' rows (``None`` if not active) and the number of rows."""
    formats = variant.formats or ("float32",) * len(variant.active)
    layout: list[tuple[str, list[int]] | None] = []
    row = 2
    for active, name in zip(variant.active, formats, strict=True):
        if not active:
            layout.append(None)
            continue
        count = 1 + len(CODECS[name].companions)
        layout.append((name, list(range(row, row + count))))
        row += count
    slots: list[SlotRows | None] = []
    for entry in layout:
        if entry is None:
            slots.append(None)
            continue
        name, rows = entry
        key_row = None
        if name != "float32":
            key_row, row = row, row + 1
        slots.append(SlotRows(name, tuple(rows), key_row))
    return slots, row


def coded_kernel_source(rule: Rule, variant: Variant, element_functions: str) -> str:
    """The kernel module of ``rule`` under a coded ``variant`` (see the module docstring);
    ``element_functions`` is the rule's update as kernel source (with its imports)."""
    dtype = variant.dtype
    itemsize = 4 if dtype == "float32" else 8
    slots, _ = coded_rows(variant)
    lines = [f"{name} = scalars[row, {column}]" for column, name in enumerate(variant.runtime)]
    lines += [
        f"x0 = carray({dtype}_pointer(addresses[0, t] + start * {itemsize}), n)",
        f"x1 = carray({dtype}_pointer(addresses[1, t] + start * {itemsize}), n)",
    ]
    decode, arguments, store, finish = [], ["x0[i]", "x1[i]"], ["x0[i] = result[0]"], []
    blocks = f"(start + n + {INT8_BLOCK - 1}) // {INT8_BLOCK}"
    result = 1
    for k, slot in enumerate(slots):
        if slot is None:
            arguments.append("0.0")
            continue
        rows = slot.rows
        value = f"result[{result}]"
        result += 1
        if slot.key_row is not None:
            lines.append(f"key{k} = addresses[{slot.key_row}, t]")
        if slot.format == "float32":
            lines.append(
                f"s{k} = carray({dtype}_pointer(addresses[{rows[0]}, t] + start * {itemsize}), n)"
            )
            arguments.append(f"s{k}[i]")
            store.append(f"s{k}[i] = {value}")
        elif slot.format in ("bfloat16", "bfloat16-nearest"):
            encode = "encode_bf16" if slot.format == "bfloat16" else "encode_bf16_nearest"
            lines.append(f"s{k} = carray(uint16_pointer(addresses[{rows[0]}, t] + start * 2), n)")
            decode.append(f"v{k} = np.{dtype}(decode_bf16(s{k}[i]))")
            arguments.append(f"v{k}")
            store.append(f"s{k}[i] = {encode}({value}, key{k}, start + i)")
        elif slot.format == "bf16+ecc":
            lines.append(f"s{k} = carray(uint16_pointer(addresses[{rows[0]}, t] + start * 2), n)")
            lines.append(f"e{k} = carray(int8_pointer(addresses[{rows[1]}, t] + start), n)")
            decode.append(f"v{k} = np.{dtype}(decode_ecc(s{k}[i], e{k}[i]))")
            arguments.append(f"v{k}")
            store.append(f"s{k}[i], e{k}[i] = encode_ecc({value})")
        elif slot.format == "int8":
            lines.append(f"s{k} = carray(uint8_pointer(addresses[{rows[0]}, t] + start), n)")
            lines.append(f"c{k} = carray(float32_pointer(addresses[{rows[1]}, t]), {blocks})")
            decode.append(f"v{k} = np.{dtype}(decode_int8(s{k}[i], c{k}[block], sm, um))")
            arguments.append(f"v{k}")
            store.append(f"b{k}[i - first] = np.float32({value})")
            finish.append(
                f"c{k}[block] = encode_int8_block(b{k}, last - first, s{k}, first, tables)"
            )
        else:
            raise ValueError(f"no fused kernel stores the format {slot.format!r}")
    arguments += scalar_arguments(rule, variant)
    buffers = [
        f"    b{k} = np.empty({INT8_BLOCK}, dtype=np.float32)"
        for k, slot in enumerate(slots)
        if slot is not None and slot.format == "int8"
    ]
    if buffers:
        buffers += [
            "    tables = (SM.copy(), UM.copy(), SMID.copy(), UMID.copy(), SS.copy(), US.copy())",
            "    sm, um = tables[0], tables[1]",
        ]
    indent = " " * 16
    body = [indent + line for line in lines]
    body += [
        indent + f"for first in range(0, n, {INT8_BLOCK}):",
        indent + f"    last = min(first + {INT8_BLOCK}, n)",
        indent + f"    block = (start + first) // {INT8_BLOCK}",
        indent + "    for i in range(first, last):",
        *(indent + " " * 8 + line for line in decode),
        indent + " " * 8 + f"result = _update({', '.join(arguments)})",
        *(indent + " " * 8 + line for line in store),
        *(indent + " " * 4 + line for line in finish),
    ]
    return f'''"""Fused {dtype} kernel of rule {rule.name!r}, coded slots; made by descend."""
# variant {variant!r}
import numpy as np
from numba import carray, njit

from descend.kernels._numba_support import {dtype}_pointer, float32_pointer
from descend.kernels._numba_support import uint16_pointer, int8_pointer, uint8_pointer
from descend.kernels._numba_support import add as _add, sub as _sub, mul as _mul
from descend.kernels._numba_support import div as _div, power as _power, neg as _neg
from descend.kernels._numba_codecs import decode_bf16, encode_bf16, encode_bf16_nearest
from descend.kernels._numba_codecs import decode_ecc, encode_ecc
from descend.kernels._numba_codecs import decode_int8, encode_int8_block, int8_tables

SM, UM, SMID, UMID, SS, US = int8_tables()
{element_functions}


_update = njit(inline="always", error_model="numpy")(_rule_update)


@njit(nogil=True, cache=True, error_model="numpy", boundscheck=False)
def kernel(addresses, item_start, segment_tensor, segment_start, segment_stop, tensor_row,
           scalars, first_item, last_item):
{chr(10).join(buffers) if buffers else "    pass"}
    for item in range(first_item, last_item):
        for segment in range(item_start[item], item_start[item + 1]):
            t = segment_tensor[segment]
            start = segment_start[segment]
            n = segment_stop[segment] - start
            if n > 0:
                row = tensor_row[t]
{chr(10).join(body)}
'''
