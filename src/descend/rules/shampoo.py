"""Shampoo: a Kronecker-factored preconditioner, one factor per dimension (Gupta, Koren and
Singer, 2018).

Full-matrix AdaGrad preconditions a weight's gradient by ``(sum g g^T)^(-1/2)`` over all its
entries: for an m x n matrix that is an mn x mn matrix, out of reach. Shampoo keeps one small
statistic per dimension instead, ``L = eps I + sum G G^T`` (m x m) and ``R = eps I + sum G^T G``
(n x n), and steps along ``L^(-1/4) G R^(-1/4)``: the Kronecker product ``L^(1/2) (x) R^(1/2)``
bounds full-matrix AdaGrad's statistic, so the step has its regret bound. An order-k tensor
keeps k factors and takes each one's ``-1/(2k)`` power; a vector is full-matrix AdaGrad
(``k = 1``) and a scalar takes plain gradient steps.

The rule's :class:`~descend.rules.spec.MatrixStage` holds the factors (``pre_cond_i``) and their
inverse roots (``inv_pre_cond_i``) as matrix state: the statistics grow every step, the roots
are recomputed every ``preconditioning_compute_steps`` steps (from a symmetric eigendecomposition,
computed as ``pytorch_optimizer`` does, by SVD, which equals it for these positive-definite
matrices), and the momentum, weight decay and final step are elementwise. The algorithm and
its state are ``pytorch_optimizer.Shampoo``'s, operation for operation.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from descend.rules.common import (
    FIXED_DECAY,
    MAXIMIZE,
    decoupled_decay,
    learning_rate,
    weight_decay,
    weight_decouple,
)
from descend.rules.elementwise import fma, lerp
from descend.rules.spec import Element, Hyper, Listing, MatrixStage, Rule, Slot

if TYPE_CHECKING:
    import torch


def shampoo_gradient(
    u: Element,
    g: Element,
    momentum_buffer: Element,
    *,
    maximize: bool,
    momentum_t: float,
    coupled_decay: float,
) -> tuple[Element, ...]:
    """The gradient Shampoo preconditions (the stage's elementwise part; ``u`` holds x)::

    G <- lerp(g, B, mu) + lambda x     (lambda here only without weight_decouple)

    ``B`` is the previous step's preconditioned direction (the reference's momentum); on the
    first step there is none and ``mu`` is 0.
    """
    if maximize:
        g = -g
    direction = lerp(g, momentum_buffer, momentum_t)
    direction = fma(coupled_decay, u, direction)  # torch's add_(alpha=)
    return direction, momentum_buffer


def inverse_root(matrix: torch.Tensor, power: float, floor: float = 0.0) -> torch.Tensor:
    """``A^(-1/power)`` of a symmetric positive-definite ``A`` from its decomposition
    ``A = U S V^T`` (for such a matrix its eigendecomposition), in float64 for a float64 ``A``
    and float32 otherwise, as ``pytorch_optimizer``'s ``compute_power_svd``.

    A singular value of exactly 0 becomes ``floor`` first. Shampoo's statistic is
    ``eps I + sum G G^T``, whose eigenvalues are at least eps; in float32 a large sum absorbs
    eps (``55.8 + 1e-6`` rounds to ``55.8``), a rank-deficient statistic then has a zero
    singular value, and the reference's root is infinite (NaN parameters from then on).
    Every other value is left as the reference leaves it.
    """
    import torch  # here, not at the top: the rules load without torch (the command line's help)

    dtype = torch.float64 if matrix.dtype == torch.float64 else torch.float32
    u, s, vh = torch.linalg.svd(matrix.to(dtype), full_matrices=False)
    s.masked_fill_(s == 0, floor)
    s.pow_(-1.0 / power)
    root: torch.Tensor = ((u * s.unsqueeze(-2)) @ vh).to(matrix.dtype)
    return root


def shampoo_matrices(param: torch.Tensor, hypers: Mapping[str, Any]) -> dict[str, Any]:
    """One statistic ``eps I`` and one (zero) inverse root per dimension of ``param``."""
    import torch

    state: dict[str, Any] = {}
    for index, size in enumerate(param.shape):
        eye = torch.eye(size, device=param.device).to(param.dtype)
        state[f"pre_cond_{index}"] = eye.mul_(hypers["matrix_eps"])
        state[f"inv_pre_cond_{index}"] = param.new_zeros(size, size)
    return state


def shampoo_statistics(
    u: torch.Tensor, g: torch.Tensor, hypers: Mapping[str, Any], state: MutableMapping[str, Any]
) -> None:
    """``L_i <- L_i + G_(i) G_(i)^T`` for every dimension i (``G_(i)``: G unfolded along i)."""
    for index, size in enumerate(u.shape):
        unfolded = u.movedim(index, 0).reshape(size, -1)
        state[f"pre_cond_{index}"].addmm_(unfolded, unfolded.t())


def shampoo_refresh(hypers: Mapping[str, Any], state: MutableMapping[str, Any]) -> None:
    """``P_i <- L_i^(-1/(2k))`` for each of the k dimensions."""
    order = sum(1 for key in state if key.startswith("pre_cond_"))
    for index in range(order):
        root = inverse_root(state[f"pre_cond_{index}"], 2 * order, hypers["matrix_eps"])
        state[f"inv_pre_cond_{index}"].copy_(root)


def shampoo_precondition(
    u: torch.Tensor, g: torch.Tensor, hypers: Mapping[str, Any], state: MutableMapping[str, Any]
) -> torch.Tensor:
    """``D = G x_1 P_1 x_2 P_2 ... x_k P_k`` (for a matrix, ``P_L G P_R``): each mode
    multiplied by its inverse root, in the reference's order of transposes and products."""
    order = u.dim()
    original_size = u.shape
    direction = u
    for index, size in enumerate(u.shape):
        inverse = state[f"inv_pre_cond_{index}"]
        direction = direction.transpose(0, index).contiguous()
        transposed_size = direction.shape
        direction = direction.view(size, -1)
        if index == order - 1:
            direction = (direction.t() @ inverse).view(original_size)
        else:
            direction = (inverse @ direction).view(transposed_size)
    return direction


def shampoo_update(
    p: Element, g: Element, momentum_buffer: Element, *, lr: float, decay: float
) -> tuple[Element, ...]:
    """One Shampoo step along the preconditioned direction ``D`` (``g`` here)::

    x <- x (1 - alpha lambda)     (with weight_decouple; (1 - lambda) with fixed_decay)
    x <- x - alpha D
    B <- D
    """
    p = p * decay
    p = fma(-lr, g, p)  # torch's add_(alpha=)
    return p, g


def _shampoo_step_scalars(hypers: Mapping[str, Any], step: int) -> dict[str, Any]:
    decoupled = hypers["weight_decouple"]
    rate = hypers["weight_decay"]
    return {
        "momentum_t": hypers["momentum"] if step > 1 else 0.0,
        "coupled_decay": 0.0 if decoupled else rate,
        "decay": decoupled_decay(hypers) if decoupled and rate != 0 else 1.0,
    }


def _every_k_steps(hypers: Mapping[str, Any], step: int) -> bool:
    due: bool = step % hypers["preconditioning_compute_steps"] == 0
    return due


SHAMPOO = Rule(
    name="shampoo",
    update=shampoo_update,
    hypers=(
        learning_rate(1e-3),
        Hyper(
            "momentum",
            0.0,
            "mu: weight of the previous direction B in G = lerp(g, B, mu)",
            low=0.0,
            high=1.0,
        ),
        weight_decay(),
        weight_decouple(False),
        FIXED_DECAY,
        Hyper(
            "preconditioning_compute_steps",
            1,
            "f: recompute the inverse roots every f steps (before that, they are zero)",
            low=1,
            kind=int,
        ),
        Hyper("matrix_eps", 1e-6, "eps: each statistic starts at eps I", low=0.0),
        MAXIMIZE,
    ),
    slots=(Slot("momentum_buffer"),),
    stage=MatrixStage(
        prepare=shampoo_gradient,
        function=shampoo_precondition,
        ndim=None,
        matrices=shampoo_matrices,
        statistics=shampoo_statistics,
        refresh=shampoo_refresh,
        refresh_due=_every_k_steps,
        reads_parameter=True,
    ),
    step_scalars=_shampoo_step_scalars,
    listing=Listing(
        summary="x <- x - lr L^(-1/4) G R^(-1/4): one Kronecker factor per dimension",
        reference="Gupta, Koren and Singer (2018), Shampoo: Preconditioned Stochastic Tensor "
        "Optimization; pytorch_optimizer.Shampoo",
        year=2018,
        # The whole step, stage included (the update's own docstring has only its last part).
        equation="""\
G <- lerp(g, B, mu) + lambda x          (B: the previous direction; lambda x unless decoupled)
L_i <- L_i + G_(i) G_(i)^T              (L_i = eps I at first; G_(i): G unfolded along dim i)
P_i <- L_i^(-1/(2k))                    (every f-th step; k = G's number of dimensions)
D <- G x_1 P_1 ... x_k P_k              (a matrix: D = L^(-1/4) G R^(-1/4))
x <- x (1 - lr lambda) - lr D;  B <- D  (decay with weight_decouple only)""",
        colour="#004488",
        lr_range=(1e-5, 1e-1),
    ),
)
