"""Fused kernels of rules whose slots are stored compressed: decode on load, encode on store,
inside the kernel's one pass over memory.

A variant with :attr:`~descend.kernels.variant.Variant.coded` formats gets a kernel written
here instead of :func:`descend.kernels.fused.kernel_source`'s: the same call of the rule's own
``update`` per element, but each compressed slot is read through its codec's decode and
written through its encode: the functions of :mod:`descend.kernels.codec_elements`, compiled
into the kernel module by :mod:`descend.kernels._numba_codecs` (traced into 32-bit machine code,
so their loops vectorize in 32-bit lanes), the very functions the reference executor evaluates
with torch's primitives.

The elements are walked in chunks small enough to stay in the L1 cache (a block of
:data:`~descend.kernels.codecs.INT8_BLOCK` when a slot is ``"int8"``: segments start at block
boundaries, :class:`~descend.kernels.table.TensorTable`'s ``align``), in loops that are free of
branches and function calls, so that the compiler vectorizes them. Every slot is decoded inside
the update's own loop (no codec reads a table, so that loop stays vectorized); a
``"bfloat16"``, ``"bfloat16-nearest"`` or ``"bf16+ecc"`` slot is encoded there too. An
``"int8"`` slot's new values go to a float32 buffer of one block, which is then reduced to its
largest magnitude and sign and coded against the new scale.

Operand rows (:func:`coded_rows`): the parameter, the gradient, each active slot's storage
tensors (its value tensor, then its companions), then one row per compressed slot holding the
key of that slot's random stream for this step (a number, not an address), then, for a
variant whose parameters are stored in bf16 (:attr:`~descend.kernels.variant.Variant.weights`),
one *weight row*: the key of the weights' random stream (``"bfloat16"``) or the address of
their int8 correction bytes (``"bf16+ecc"``). Such a kernel reads each weight and its
gradient as bf16 (rows 0 and 1), decodes the weight (with its correction byte) to the
variant's dtype, and stores the rule's new weight through the format's encode, in the same
loop as the slots.
"""

from __future__ import annotations

from dataclasses import dataclass

from descend.kernels.codec_elements import codec_source
from descend.kernels.codecs import CODECS, INT8_BLOCK, shared_streams
from descend.kernels.codegen import caution_maximize, numba_kernel_entry, scalar_arguments
from descend.kernels.variant import Variant
from descend.rules.spec import Rule


@dataclass(frozen=True)
class SlotRows:
    """Where one active slot lives in the table: its format, storage rows, key row; and for a
    ``"bfloat16"`` slot, the number of the slot whose key its rounding reads and whether it
    reads the upper 16 random bits (:func:`~descend.kernels.codecs.shared_streams`: the second
    of a pair shares the first's hash, and its own key row is not read)."""

    format: str
    rows: tuple[int, ...]
    key_row: int | None
    stream: int = 0
    upper: bool = False


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
    streams = shared_streams([entry[0] if entry else "float32" for entry in layout])
    slots: list[SlotRows | None] = []
    for entry, (stream, upper) in zip(layout, streams, strict=True):
        if entry is None:
            slots.append(None)
            continue
        name, rows = entry
        key_row = None
        if name != "float32":
            key_row, row = row, row + 1
        slots.append(SlotRows(name, tuple(rows), key_row, stream, upper))
    return slots, row + bool(variant.weights)


#: The weight formats a coded kernel stores (:attr:`~descend.kernels.variant.Variant.weights`).
WEIGHT_FORMATS = ("bfloat16", "bf16+ecc")


def _weight_lines(
    variant: Variant, row: int, new: str
) -> tuple[list[str], list[str], list[str], str, str]:
    """The lines of a variant whose weights are bf16 (its weight row is ``row``): those before
    the chunk loop, the pointers at the chunk, the store of the new weight ``new``, and the
    update's arguments for the weight and the gradient (decoded)."""
    if variant.weights not in WEIGHT_FORMATS:
        raise ValueError(
            f"weights={variant.weights!r} is invalid: expected one of {WEIGHT_FORMATS}"
        )
    dtype = variant.dtype
    pointers = [
        "w0 = carray(uint16_pointer(addresses[0, t] + base * 2), count)",
        "w1 = carray(uint16_pointer(addresses[1, t] + base * 2), count)",
    ]
    gradient = f"np.{dtype}(decode_bf16(np.int64(w1[j])))"
    if variant.weights == "bfloat16":
        bits = f"encode_bf16(np.float32({new}), weight_key, base + j)"
        return (
            [f"weight_key = addresses[{row}, t]"],
            pointers,
            [f"w0[j] = np.uint16({bits})"],
            f"np.{dtype}(decode_bf16(np.int64(w0[j])))",
            gradient,
        )
    pointers.append(f"we = carray(int8_pointer(addresses[{row}, t] + base), count)")
    store = [
        f"weight_high, weight_correction = encode_ecc(np.float32({new}))",
        "w0[j] = np.uint16(weight_high)",
        "we[j] = np.int8(weight_correction)",
    ]
    weight = f"np.{dtype}(decode_ecc(np.int64(w0[j]), np.int64(we[j])))"
    return [], pointers, store, weight, gradient


#: The version of the code :mod:`descend.kernels._numba_codecs` emits for a traced codec,
#: written into each kernel's source: bumped when that code changes, so that a kernel Numba
#: cached with the old code is compiled afresh.
TRACER_VERSION = 1

#: Elements per chunk of a kernel without an ``"int8"`` slot.
CHUNK = 1024


def _slot_lines(
    k: int, slot: SlotRows, value: str, dtype: str
) -> tuple[list[str], str, list[str], list[str]]:
    """The lines of a compressed slot ``k``: pointers at the chunk, the update's argument (the
    decoded value), the store of its new ``value`` in the update's loop, the lines after that
    loop (an ``"int8"`` block's reduction and encoding)."""
    rows = slot.rows
    at = f"addresses[{rows[0]}, t] + base"
    if slot.format in ("bfloat16", "bfloat16-nearest"):
        pointers = [f"h{k} = carray(uint16_pointer({at} * 2), count)"]
        if slot.format == "bfloat16":
            # The second slot of a pair reads the first's key: the same hash, computed once.
            function = "encode_bf16_upper" if slot.upper else "encode_bf16"
            bits = f"{function}(np.float32({value}), key{slot.stream}, base + j)"
        else:
            bits = f"encode_bf16_nearest(np.float32({value}))"
        argument = f"np.{dtype}(decode_bf16(np.int64(h{k}[j])))"
        return pointers, argument, [f"h{k}[j] = np.uint16({bits})"], []
    if slot.format == "bf16+ecc":
        pointers = [
            f"h{k} = carray(uint16_pointer({at} * 2), count)",
            f"e{k} = carray(int8_pointer(addresses[{rows[1]}, t] + base), count)",
        ]
        argument = f"np.{dtype}(decode_ecc(np.int64(h{k}[j]), np.int64(e{k}[j])))"
        store = [
            f"high, correction = encode_ecc(np.float32({value}))",
            f"h{k}[j] = np.uint16(high)",
            f"e{k}[j] = np.int8(correction)",
        ]
        return pointers, argument, store, []
    if slot.format == "int8":
        # One scale per chunk: the chunk is the block.
        scale = f"addresses[{rows[1]}, t] + base // {INT8_BLOCK} * 4"
        pointers = [
            f"q{k} = carray(uint8_pointer({at}), count)",
            f"c{k} = carray(float32_pointer({scale}), 1)",
            f"scale{k} = c{k}[0]",
        ]
        argument = f"np.{dtype}(decode_int8(np.int64(q{k}[j]), scale{k}))"
        encode = [
            "largest = np.int32(0)",
            "negative = False",
            "for j in range(count):",
            f"    largest = max(largest, magnitude_bits(d{k}[j]))",
            f"    negative = negative | (d{k}[j] < np.float32(0.0))",
            "for j in range(count):",
            f"    q{k}[j] = np.uint8(encode_int8(d{k}[j], largest, negative))",
            f"c{k}[0] = int8_scale(largest, negative)",
        ]
        return pointers, argument, [f"d{k}[j] = np.float32({value})"], encode
    raise ValueError(f"no fused kernel stores the format {slot.format!r}")


def coded_kernel_source(rule: Rule, variant: Variant, element_functions: str) -> str:
    """The kernel module of ``rule`` under a coded ``variant`` (see the module docstring);
    ``element_functions`` is the rule's update as kernel source (with its imports)."""
    dtype = variant.dtype
    itemsize = 4 if dtype == "float32" else 8
    slots, rows = coded_rows(variant)
    chunk = INT8_BLOCK if "int8" in variant.formats else CHUNK
    lines = [f"{name} = scalars[row, {column}]" for column, name in enumerate(variant.runtime)]
    caution = variant.caution
    if caution and not variant.weights:
        raise ValueError(
            f"rule {rule.name!r}: no fused kernel runs a cautious step on compressed slots "
            "of float parameters"
        )
    new = "_cautious" if caution == "apply" else "result[0]"
    if variant.weights:
        if dtype != "float32":
            raise ValueError(f"bf16 weights are stepped in float32, not in {dtype}")
        before, pointers, store, weight, gradient = _weight_lines(variant, rows - 1, new)
        lines += before
        arguments = [weight, gradient]
    else:
        pointers = [
            f"x{r} = carray({dtype}_pointer(addresses[{r}, t] + base * {itemsize}), count)"
            for r in (0, 1)
        ]
        arguments, store = ["x0[j]", "x1[j]"], [f"x0[j] = {new}"]
    # A cautious pass compares the step with the gradient: both decoded once, then named.
    operands = [f"_x = {arguments[0]}", f"_g = {arguments[1]}"] if caution else []
    if caution:
        arguments = ["_x", "_g"]
    encode: list[str] = []
    buffers = []
    for k, slot in enumerate(slots):
        if slot is None:
            arguments.append("0.0")
            continue
        value = f"result[{k + 1}]"
        if slot.key_row is not None:
            lines.append(f"key{k} = addresses[{slot.key_row}, t]")
        if slot.format == "float32":
            at = f"addresses[{slot.rows[0]}, t] + base * {itemsize}"
            pointers.append(f"s{k} = carray({dtype}_pointer({at}), count)")
            arguments.append(f"s{k}[j]")
            store.append(f"s{k}[j] = {value}")
            continue
        more, argument, stored, encoding = _slot_lines(k, slot, value, dtype)
        pointers += more
        if slot.format == "int8":
            buffers.append(f"    d{k} = np.empty({chunk}, dtype=np.float32)")
        arguments.append(argument)
        store += stored
        encode += encoding
    arguments += scalar_arguments(rule, variant)
    agreement = f"_keep = cautious_agreement(_x, result[0], _g, {caution_maximize(variant)})"
    after: list[str] = []
    if caution == "count":  # the step in registers, counted, nothing stored
        lines += ["_kept = 0", "_unknown = 0"]
        store = [
            agreement,
            "_kept += np.int64(_keep > 0.5)",
            "_unknown += np.int64(_keep != _keep)",
        ]
        encode, buffers = [], []
        after = ["caution[segment] = np.float64(_kept) if _unknown == 0 else np.nan"]
    elif caution == "apply":  # the cautious weight stored, with the tensor's scale
        lines.append("_scale = caution[t]")
        store = [agreement, "_cautious = cautious_parameter(_x, result[0], _keep, _scale)", *store]
    indent = " " * 16
    body = [indent + line for line in lines]
    body += [
        indent + f"for first in range(0, n, {chunk}):",
        indent + f"    count = min({chunk}, n - first)",
        indent + "    base = start + first",
        *(indent + "    " + line for line in pointers),
        indent + "    for j in range(count):",
        *(indent + " " * 8 + line for line in operands),
        indent + " " * 8 + f"result = _update({', '.join(arguments)})",
        *(indent + " " * 8 + line for line in store),
        *(indent + "    " + line for line in encode),
        *(indent + line for line in after),
    ]
    codecs = codec_source("numba", "@traced")
    kind = f"{caution} pass of a cautious step" if caution else "kernel"
    return f'''"""Fused {dtype} {kind} of rule {rule.name!r}, coded slots; made by descend."""
# variant {variant!r}
import numpy as np
from numba import carray, njit

from descend.kernels._numba_support import {dtype}_pointer, float32_pointer
from descend.kernels._numba_support import uint16_pointer, int8_pointer, uint8_pointer
from descend.kernels._numba_support import add as _add, sub as _sub, mul as _mul
from descend.kernels._numba_support import div as _div, power as _power, neg as _neg
from descend.kernels._numba_codecs import traced  # codecs traced by version {TRACER_VERSION}
{codecs}
{element_functions}


{numba_kernel_entry(buffers, caution=bool(caution))}
{chr(10).join(body)}
'''
