"""Grafting and blocking for a Kronecker-factored preconditioner, as distributed Shampoo does
them (Shi et al., 2023; ``facebookresearch/optimizers``).

*Blocking*: a tensor is first reshaped, its dimensions of size 1 dropped and neighbouring
dimensions merged from the last one backwards while their product stays at most
``max_preconditioner_dim`` (a convolution's ``(out, in, kh, kw)`` becomes ``(out, in kh kw)``);
then every dimension still larger than that is cut into blocks of at most that size, and each
block keeps factors of its own. Merging stops at two dimensions (the reference's
``target_parameter_dimensionality=2``), so a weight matrix stays a matrix: with the reference's
default of 1 a small matrix would merge into one vector with an ``mn x mn`` factor.

*Grafting*: each block's Shampoo direction is rescaled to the norm of another method's
direction on the same block (Agarwal et al., 2020), which gives Shampoo that method's step size
and learning rate: Adam's ``G / (sqrt(V / (1 - beta2^t)) + eps)``, AdaGrad's
``G / (sqrt(sum g^2) + eps)`` or SGD's ``G`` (``G``: the filtered gradient both methods see).
Before the first inverse roots exist, and for vectors and scalars, the step is the grafted
method's alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from itertools import product
from typing import Any

from descend.rules.elementwise import bind, sqrt
from descend.rules.spec import Element

#: The methods a Shampoo direction can take its step size from (``None``: none).
GRAFTING_METHODS = ("adam", "adagrad", "sgd", None)
#: Added to a block's Shampoo norm before dividing by it, as the reference adds it.
NORM_FLOOR = 1e-16
#: The fewest dimensions merging stops at: weight matrices stay matrices.
TARGET_DIMENSIONS = 2


def merged_shape(shape: tuple[int, ...], max_dim: int | None) -> tuple[int, ...]:
    """The shape a tensor is preconditioned in (``None``: its own).

    Dimensions of size 1 are dropped (a tensor of ones becomes ``(1,)``, a scalar too); then,
    from the last dimension backwards, each is merged into the one after it while their product
    is at most ``max_dim`` and more than :data:`TARGET_DIMENSIONS` dimensions would remain:
    ``(32, 3, 64, 64)`` with 8192 gives ``(96, 4096)``, ``(4, 3, 3, 3)`` gives ``(4, 27)``.
    """
    if max_dim is None:
        return tuple(shape)
    if 0 in shape:
        return (0,)
    squeezed = [size for size in reversed(shape) if size != 1] or [1]
    merged = [squeezed[0]]
    for done, size in enumerate(squeezed[1:], start=1):
        remaining = len(squeezed) - done
        if len(merged) + remaining > TARGET_DIMENSIONS and merged[-1] * size <= max_dim:
            merged[-1] *= size
        else:
            merged.append(size)
    return tuple(reversed(merged))


def block_slices(shape: tuple[int, ...], max_dim: int | None) -> list[tuple[slice, ...]]:
    """The blocks of a tensor of (merged) ``shape``: every dimension cut into pieces of at most
    ``max_dim`` (the last one shorter), in the reference's order (the first dimension's pieces
    outermost). One block, the whole tensor, with ``None``."""
    if max_dim is None:
        return [tuple(slice(None) for _ in shape)]
    pieces = [
        [slice(start, min(start + max_dim, size)) for start in range(0, size, max_dim)]
        or [slice(0, 0)]
        for size in shape
    ]
    return [tuple(block) for block in product(*pieces)]


def block_shapes(shape: tuple[int, ...], max_dim: int | None) -> list[tuple[int, ...]]:
    """The shape of each block of a tensor of ``shape`` (merged first)."""
    merged = merged_shape(shape, max_dim)
    return [
        tuple(len(range(*piece.indices(size))) for piece, size in zip(block, merged, strict=True))
        for block in block_slices(merged, max_dim)
    ]


def grafted_only(shape: tuple[int, ...], hypers: Any) -> bool:
    """Whether a tensor of ``shape`` takes the grafted method's step alone: with grafting,
    a vector or a scalar (after merging)."""
    merged = merged_shape(shape, hypers["max_preconditioner_dim"])
    return hypers["grafting"] is not None and len(merged) <= 1


def adaptive_direction(g: Element, v: Element, *, correction: float, eps: float) -> Element:
    """Adam's or AdaGrad's direction from its second moment ``v``::

    D = G / (sqrt(v / c) + eps)      (c = 1 - beta2^t for Adam, 1 for AdaGrad)
    """
    return g / (sqrt(v / correction) + eps)


@cache
def _torch_adaptive_direction() -> Callable[..., Any]:
    """:func:`adaptive_direction` bound to torch (when first used: the rules load without
    torch)."""
    return bind(adaptive_direction, "torch")


def grafted_direction(filtered: Any, hypers: Any, state: Any) -> Any:
    """The grafted method's direction for the filtered gradient ``G`` (torch): Adam's and
    AdaGrad's from the second moment the rule keeps (``exp_avg_sq``), SGD's ``G`` itself."""
    method = hypers["grafting"]
    if method == "sgd":
        return filtered
    correction = hypers["graft_correction"] if method == "adam" else 1.0
    return _torch_adaptive_direction()(
        filtered, state["exp_avg_sq"], correction=correction, eps=hypers["grafting_eps"]
    )


def graft(direction: Any, grafted: Any) -> Any:
    """``direction`` rescaled to the norm of ``grafted`` (a block each, torch):
    ``D |A| / (|D| + 1e-16)``."""
    import torch  # here, not at the top: the rules load without torch (the command line's help)

    scale = torch.linalg.vector_norm(grafted) / (torch.linalg.vector_norm(direction) + NORM_FLOOR)
    return direction * scale


def bias_correction(beta: float, step: int) -> float:
    """``1 - beta^t`` for a moving average with ``beta < 1``; 1 for a sum (``beta = 1``)."""
    return 1.0 - math.pow(beta, step) if beta < 1.0 else 1.0
