"""The layout of a Kronecker-factored preconditioner (PSGD-Kron's, kron_torch's): which shape
the factors precondition, which of them are diagonal, and the einsum subscripts that apply
them.

A tensor of three dimensions or more is merged into a matrix first; each dimension then has a
factor, an upper-triangular matrix or (for a dimension too large, of size 1, in a tensor of
too few dimensions, or as ``memory_save_mode`` says) a diagonal kept as a vector. The
subscripts are ``kron_torch``'s letter for letter, so that torch contracts in its order.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np

#: ``memory_save_mode``: which factors are diagonal besides those too large or in a vector.
MEMORY_SAVE_MODES = (None, "smart_one_diag", "one_diag", "all_diag")

_LETTERS = string.ascii_lowercase + string.ascii_uppercase


def merged_shape(shape: tuple[int, ...], merge_dims: bool) -> tuple[int, ...]:
    """The shape the factors precondition: a tensor of three dimensions or more merged into
    a matrix, ``(prod(s[:-1]), s[-1])`` or ``(s[0], prod(s[1:]))``, whichever is closer to
    square as the reference measures it (the first unless its difference is larger)."""
    if len(shape) <= 2 or not merge_dims:
        return tuple(shape)
    first = [int(np.prod(shape[:-1])), shape[-1]]
    second = [shape[0], int(np.prod(shape[1:]))]
    return tuple(first if first[1] - first[0] <= second[1] - second[0] else second)


def diagonal_dims(shape: tuple[int, ...], hypers: Mapping[str, Any]) -> tuple[bool, ...]:
    """Which factor of a tensor of ``shape`` (merged) is diagonal: a dimension of size 1 or
    over ``max_size_triangular``, every dimension of a tensor with fewer than
    ``min_ndim_triangular``, and the ones ``memory_save_mode`` picks (``one_diag``: the
    largest; ``smart_one_diag``: the largest if strictly larger than the second; ``all_diag``:
    all)."""
    mode = hypers["memory_save_mode"]
    chosen = [mode == "all_diag"] * len(shape)
    largest = int(np.argsort(shape)[::-1][0]) if shape else 0
    ordered = sorted(shape)
    if mode == "one_diag" or (
        mode == "smart_one_diag" and len(shape) > 1 and ordered[-1] > ordered[-2]
    ):
        chosen[largest] = True
    return tuple(
        chosen[index]
        or size == 1
        or size > hypers["max_size_triangular"]
        or len(shape) < hypers["min_ndim_triangular"]
        for index, size in enumerate(shape)
    )


@cache
def expressions(diagonal: tuple[bool, ...] | None) -> tuple[str, tuple[str, ...], str]:
    """The einsum subscripts of a tensor whose factors are diagonal where ``diagonal`` says
    (``None``: a scalar): ``A = Q M`` (each mode multiplied by its factor), each factor's
    ``A_(i) A_(i)^T`` (its diagonal, for a diagonal factor), and ``P M = Q^T Q M``. They are
    the reference's strings letter for letter, so torch contracts in the same order."""
    if diagonal is None:
        return ",->", (",->",), ",,->"
    order = len(diagonal)
    factors_a, inner_a, outer_a = [], "", ""
    per_factor = []
    left_p, right_p, inner_p, outer_p = [], [], "", ""
    for index, is_diagonal in enumerate(diagonal):
        own, mate, other = _LETTERS[index], _LETTERS[index + 13], _LETTERS[index + 26]
        first = "".join(mate if j == index else _LETTERS[j] for j in range(order))
        if is_diagonal:
            factors_a.append(own)
            inner_a += own
            outer_a += own
            per_factor.append(f"{first},{first}->{mate}")
            left_p.append(mate)
            right_p.append(mate)
            inner_p += mate
            outer_p += mate
        else:
            second = "".join(other if j == index else _LETTERS[j] for j in range(order))
            factors_a.append(own + mate)
            inner_a += mate
            outer_a += own
            per_factor.append(f"{first},{second}->{mate}{other}")
            left_p.append(own + mate)
            right_p.append(own + other)
            inner_p += other
            outer_p += mate
    expression_a = ",".join(factors_a) + f",{inner_a}->{outer_a}"
    expression_p = ",".join(left_p) + "," + ",".join(right_p) + f",{inner_p}->{outer_p}"
    return expression_a, tuple(per_factor), expression_p
