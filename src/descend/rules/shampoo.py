"""Shampoo: a Kronecker-factored preconditioner, one factor per dimension (Gupta, Koren and
Singer, 2018), with distributed Shampoo's grafting and blocking (Shi et al., 2023).

Full-matrix AdaGrad preconditions a weight's gradient by ``(sum g g^T)^(-1/2)`` over all its
entries: for an m x n matrix that is an mn x mn matrix, out of reach. Shampoo keeps one small
statistic per dimension instead, ``L ~ sum G G^T`` (m x m) and ``R ~ sum G^T G`` (n x n), and
steps along ``L^(-1/4) G R^(-1/4)``: the Kronecker product ``L^(1/2) (x) R^(1/2)`` bounds
full-matrix AdaGrad's statistic, so the step has its regret bound. An order-k tensor keeps k
factors and takes each one's ``-1/(2k)`` power.

Two choices of :mod:`descend.rules.grafting` make it practical, as in distributed Shampoo:
each block's direction takes the *norm* of Adam's (or AdaGrad's, or SGD's) direction, so the
learning rate is that method's; and a tensor is reshaped (small dimensions merged) and cut into
blocks of at most ``max_preconditioner_dim`` per dimension, each with factors of its own. With
grafting, vectors and scalars take the grafted method's step, and so does every tensor before
its first inverse roots (``start_preconditioning_step``). ``beta1`` filters the gradient both
directions see (Adam's bias-corrected first moment), ``beta2`` averages the statistics.

With ``grafting=None, max_preconditioner_dim=None, betas=(0, 1)`` the algorithm and its state
are ``pytorch_optimizer.Shampoo``'s, operation for operation: statistics summed from
``eps I``, a vector preconditioned by full-matrix AdaGrad, a scalar by nothing, and inverse
roots that are zero until their first computation.

The rule's :class:`~descend.rules.spec.MatrixStage` holds the factors (``pre_cond_i``; with
several blocks ``block_j_pre_cond_i``) and their inverse roots (``inv_pre_cond_i``) as matrix
state: the statistics grow every step, the roots are recomputed every
``preconditioning_compute_steps`` steps from a symmetric decomposition (computed as
``pytorch_optimizer`` does, by SVD, which equals the eigendecomposition for these
positive-definite matrices). The momentum, the filtered gradient, the grafted method's second
moment, the weight decay and the final step are elementwise; the grafted direction and the
norms are torch operations on the whole tensor.
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
from descend.rules.grafting import (
    GRAFTING_METHODS,
    bias_correction,
    block_shapes,
    block_slices,
    graft,
    grafted_direction,
    grafted_only,
    merged_shape,
)
from descend.rules.spec import Constraint, Element, Hyper, Listing, MatrixStage, Rule, Slot

if TYPE_CHECKING:
    import torch


def shampoo_gradient(
    u: Element,
    g: Element,
    momentum_buffer: Element,
    exp_avg: Element,
    exp_avg_sq: Element,
    *,
    maximize: bool,
    buffered: bool,
    momentum_t: float,
    coupled_decay: float,
    beta1: float,
    moments: bool,
    moment_keep: float,
    moment_weight: float,
) -> tuple[Element, ...]:
    """The gradient Shampoo gathers statistics of, and what grafting keeps (the stage's
    elementwise part; ``u`` holds x)::

    G <- lerp(g, B, mu) + lambda x       (lambda here only without weight_decouple)
    M <- lerp(M, G, 1 - beta1)           (with beta1 > 0: the filtered gradient)
    V <- keep V + weight G * G           (grafting onto Adam: beta2', 1 - beta2'; AdaGrad: 1, 1)

    ``B`` is the previous step's direction (``pytorch_optimizer``'s momentum), kept with
    momentum, without grafting (as that reference keeps it) and where it would be the only
    slot; on the first step there is none and ``mu`` is 0. ``V`` rounds as ``torch.optim.Adam``'s
    ``v.mul_(beta2).addcmul_(g, g, value=1 - beta2)``.
    """
    if maximize:
        g = -g
    direction = g
    if buffered:
        direction = lerp(g, momentum_buffer, momentum_t)
    direction = fma(coupled_decay, u, direction)  # torch's add_(alpha=)
    if beta1 != 0:
        exp_avg = lerp(exp_avg, direction, 1 - beta1)
    if moments:
        exp_avg_sq = fma(moment_weight * direction, direction, moment_keep * exp_avg_sq)
    return direction, momentum_buffer, exp_avg, exp_avg_sq


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


def factor_key(kind: str, block: int, dim: int, blocks: int) -> str:
    """The state key of a block's factor (``kind``: ``pre_cond`` or ``inv_pre_cond``):
    ``pre_cond_1`` for a tensor of one block (``pytorch_optimizer``'s key),
    ``block_2_pre_cond_1`` with several."""
    return f"{kind}_{dim}" if blocks == 1 else f"block_{block}_{kind}_{dim}"


def preconditioned_blocks(shape: tuple[int, ...], hypers: Mapping[str, Any]) -> list[Any]:
    """The shape of each block a tensor of ``shape`` keeps factors for (none for a tensor that
    takes the grafted step alone)."""
    if grafted_only(shape, hypers):
        return []
    return block_shapes(shape, hypers["max_preconditioner_dim"])


def block_views(tensor: torch.Tensor, hypers: Mapping[str, Any]) -> list[torch.Tensor]:
    """``tensor`` merged and cut into its blocks (views, for a contiguous tensor)."""
    max_dim = hypers["max_preconditioner_dim"]
    merged = tensor.reshape(merged_shape(tuple(tensor.shape), max_dim))
    return [merged[piece] for piece in block_slices(tuple(merged.shape), max_dim)]


def shampoo_matrices(param: torch.Tensor, hypers: Mapping[str, Any]) -> dict[str, Any]:
    """One statistic and one (zero) inverse root per dimension of each block of ``param``:
    the statistic starts at ``eps I`` when it is a sum (``beta2 = 1``, ``pytorch_optimizer``'s
    form) and at 0 when it is a moving average (the refresh adds ``eps I`` then)."""
    import torch

    state: dict[str, Any] = {}
    shapes = preconditioned_blocks(tuple(param.shape), hypers)
    for block, shape in enumerate(shapes):
        for index, size in enumerate(shape):
            eye = torch.eye(size, device=param.device).to(param.dtype)
            start = eye.mul_(hypers["matrix_eps"] if hypers["beta2"] == 1.0 else 0.0)
            state[factor_key("pre_cond", block, index, len(shapes))] = start
            state[factor_key("inv_pre_cond", block, index, len(shapes))] = param.new_zeros(
                size, size
            )
    return state


def shampoo_statistics(
    u: torch.Tensor, g: torch.Tensor, hypers: Mapping[str, Any], state: MutableMapping[str, Any]
) -> None:
    """``L_i <- beta2 L_i + (1 - beta2) G_(i) G_(i)^T`` for every dimension i of every block
    (``G_(i)``: the block unfolded along i; ``L_i <- L_i + G_(i) G_(i)^T`` for ``beta2 = 1``)."""
    if grafted_only(tuple(u.shape), hypers):
        return
    beta2 = hypers["beta2"]
    views = block_views(u, hypers)
    for block, view in enumerate(views):
        for index, size in enumerate(view.shape):
            unfolded = view.movedim(index, 0).reshape(size, -1)
            statistic = state[factor_key("pre_cond", block, index, len(views))]
            if beta2 == 1.0:
                statistic.addmm_(unfolded, unfolded.t())
            else:
                statistic.addmm_(unfolded, unfolded.t(), beta=beta2, alpha=1.0 - beta2)


def factor_groups(state: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each block's statistics in ``state``, by the prefix of its keys (``""`` for a tensor of
    one block, ``"block_2_"``), in the order of their dimensions."""
    groups: dict[str, list[str]] = {}
    for key in state:
        prefix, found, dim = key.rpartition("pre_cond_")
        if found and dim.isdigit() and not prefix.endswith("inv_"):
            groups.setdefault(prefix, []).append(key)
    return {
        prefix: sorted(keys, key=lambda key: int(key.rpartition("_")[2]))
        for prefix, keys in groups.items()
    }


def shampoo_refresh(hypers: Mapping[str, Any], state: MutableMapping[str, Any]) -> None:
    """``P_i <- (L_i / (1 - beta2^t) + eps I)^(-1/(2k))`` for each of a block's k dimensions
    (``L_i^(-1/(2k))`` for a sum, which holds its ``eps I``)."""
    import torch

    eps = hypers["matrix_eps"]
    for prefix, keys in factor_groups(state).items():
        for key in keys:
            statistic = state[key]
            if hypers["beta2"] != 1.0:
                size = statistic.shape[0]
                eye = torch.eye(size, dtype=statistic.dtype, device=statistic.device)
                statistic = statistic / hypers["factor_correction"] + eps * eye
            root = inverse_root(statistic, 2 * len(keys), eps)
            state[prefix + "inv_" + key[len(prefix) :]].copy_(root)


def precondition(tensor: torch.Tensor, inverses: list[torch.Tensor]) -> torch.Tensor:
    """``D = G x_1 P_1 x_2 P_2 ... x_k P_k`` (for a matrix, ``P_L G P_R``): each mode
    multiplied by its inverse root, in ``pytorch_optimizer``'s order of transposes and
    products."""
    order = tensor.dim()
    original_size = tensor.shape
    direction = tensor
    for index, size in enumerate(tensor.shape):
        inverse = inverses[index]
        direction = direction.transpose(0, index).contiguous()
        transposed_size = direction.shape
        direction = direction.view(size, -1)
        if index == order - 1:
            direction = (direction.t() @ inverse).view(original_size)
        else:
            direction = (inverse @ direction).view(transposed_size)
    return direction


def shampoo_direction(
    u: torch.Tensor, g: torch.Tensor, hypers: Mapping[str, Any], state: MutableMapping[str, Any]
) -> torch.Tensor:
    """Each block's preconditioned filtered gradient, grafted (``u`` holds G)::

    F <- M / (1 - beta1^t)          (F = G without the filter)
    A <- the grafted method's direction of F
    D_b <- (F_b x_1 P_1 ... x_k P_k) |A_b| / (|F_b x_1 P_1 ... x_k P_k| + 1e-16)   per block b

    and ``D = A`` for a vector, a scalar, and every tensor before ``start_preconditioning_step``
    (with grafting; without it, ``D`` has no grafted norm and is 0 before the first roots).
    """

    filtered = state["exp_avg"] / hypers["filter_correction"] if hypers["beta1"] != 0 else u
    shape = tuple(u.shape)
    grafting = hypers["grafting"] is not None
    if grafting:
        grafted = grafted_direction(filtered, hypers, state)
        if not hypers["preconditioning"] or grafted_only(shape, hypers):
            out: torch.Tensor = grafted
            return out
    views = block_views(filtered, hypers)
    grafted_views = block_views(grafted, hypers) if grafting else views
    directions = []
    for block, (view, grafted_view) in enumerate(zip(views, grafted_views, strict=True)):
        keys = (factor_key("inv_pre_cond", block, i, len(views)) for i in range(view.dim()))
        direction = precondition(view, [state[key] for key in keys])
        directions.append(graft(direction, grafted_view) if grafting else direction)
    if len(directions) == 1:
        return directions[0].reshape(shape)
    max_dim = hypers["max_preconditioner_dim"]
    merged = filtered.new_empty(merged_shape(shape, max_dim))
    for piece, direction in zip(
        block_slices(tuple(merged.shape), max_dim), directions, strict=True
    ):
        merged[piece] = direction
    return merged.reshape(shape)


def shampoo_update(
    p: Element,
    g: Element,
    momentum_buffer: Element,
    exp_avg: Element,
    exp_avg_sq: Element,
    *,
    lr: float,
    decay: float,
    buffered: bool,
) -> tuple[Element, ...]:
    """One Shampoo step along the grafted, preconditioned direction ``D`` (``g`` here)::

    x <- x (1 - alpha lambda)     (with weight_decouple; (1 - lambda) with fixed_decay)
    x <- x - alpha D
    B <- D                        (where B is kept)
    """
    p = p * decay
    p = fma(-lr, g, p)  # torch's add_(alpha=)
    if buffered:
        momentum_buffer = g
    return p, momentum_buffer, exp_avg, exp_avg_sq


def start_step(hypers: Mapping[str, Any]) -> int:
    """The step the inverse roots are first computed at (``start_preconditioning_step``, or
    the refresh period when ``None``, as the reference's -1)."""
    start = hypers["start_preconditioning_step"]
    return int(hypers["preconditioning_compute_steps"] if start is None else start)


def _shampoo_step_scalars(hypers: Mapping[str, Any], step: int) -> dict[str, Any]:
    decoupled = hypers["weight_decouple"]
    rate = hypers["weight_decay"]
    method = hypers["grafting"]
    adam = method == "adam"
    graft_beta2 = hypers["grafting_beta2"]
    return {
        "buffered": _with_buffer(hypers),
        "momentum_t": hypers["momentum"] if step > 1 else 0.0,
        "coupled_decay": 0.0 if decoupled else rate,
        "decay": decoupled_decay(hypers) if decoupled and rate != 0 else 1.0,
        "moments": method in ("adam", "adagrad"),
        "moment_keep": graft_beta2 if adam else 1.0,
        "moment_weight": 1.0 - graft_beta2 if adam else 1.0,
        "filter_correction": bias_correction(hypers["beta1"], step),
        "graft_correction": bias_correction(graft_beta2, step) if adam else 1.0,
        "factor_correction": bias_correction(hypers["beta2"], step),
        "preconditioning": step >= start_step(hypers),
    }


def _refresh_due(hypers: Mapping[str, Any], step: int) -> bool:
    # The reference's schedule: first at the start step, then every f-th step after it.
    start, every = start_step(hypers), hypers["preconditioning_compute_steps"]
    return step == start or (step > start and step % every == 0)


def _with_buffer(hypers: Mapping[str, Any]) -> bool:
    # Also when no other slot would exist: a stage's matrices are created with the slots.
    alone = not (_with_beta1(hypers) or _with_moments(hypers))
    return bool(hypers["momentum"] != 0 or hypers["grafting"] is None or alone)


def _with_beta1(hypers: Mapping[str, Any]) -> bool:
    return bool(hypers["beta1"] != 0)


def _with_moments(hypers: Mapping[str, Any]) -> bool:
    return hypers["grafting"] in ("adam", "adagrad")


SHAMPOO = Rule(
    name="shampoo",
    update=shampoo_update,
    hypers=(
        learning_rate(1e-3),
        Hyper(
            "beta1",
            0.9,
            "filter G: M <- lerp(M, G, 1 - beta1), divided by 1 - beta1^t (0: no filter)",
            low=0.0,
            high=1.0,
            high_open=True,
        ),
        Hyper(
            "beta2",
            0.999,
            "L <- beta2 L + (1 - beta2) G G^T, divided by 1 - beta2^t (1: the sum eps I + "
            "sum G G^T)",
            low=0.0,
            high=1.0,
        ),
        Hyper(
            "momentum",
            0.0,
            "mu: weight of the previous direction B in G = lerp(g, B, mu)",
            low=0.0,
            high=1.0,
        ),
        weight_decay(),
        weight_decouple(True),
        FIXED_DECAY,
        Hyper(
            "preconditioning_compute_steps",
            100,
            "f: recompute the inverse roots every f steps",
            low=1,
            kind=int,
        ),
        Hyper(
            "start_preconditioning_step",
            None,
            "the first step with inverse roots, before which a grafted run takes the grafted "
            "method's steps (None: f)",
            low=1,
            kind=int,
            optional=True,
        ),
        Hyper("matrix_eps", 1e-12, "eps: added to each statistic as eps I", low=0.0),
        Hyper(
            "grafting",
            "adam",
            "the method whose step norm each block takes (None: no grafting)",
            choices=GRAFTING_METHODS,
        ),
        Hyper(
            "grafting_beta2",
            0.999,
            "beta2 of Adam's second moment, for grafting='adam'",
            low=0.0,
            high=1.0,
            high_open=True,
        ),
        Hyper("grafting_eps", 1e-8, "eps of Adam's or AdaGrad's denominator", low=0.0),
        Hyper(
            "max_preconditioner_dim",
            8192,
            "merge small dimensions up to this size, cut larger ones into blocks of it "
            "(None: neither)",
            low=1,
            kind=int,
            optional=True,
        ),
        MAXIMIZE,
    ),
    slots=(
        Slot("momentum_buffer", active=_with_buffer),
        Slot("exp_avg", active=_with_beta1),
        Slot("exp_avg_sq", active=_with_moments),
    ),
    constraints=(
        Constraint(
            lambda h: start_step(h) >= h["preconditioning_compute_steps"],
            "start_preconditioning_step must be at least preconditioning_compute_steps",
        ),
    ),
    stage=MatrixStage(
        prepare=shampoo_gradient,
        function=shampoo_direction,
        ndim=None,
        matrices=shampoo_matrices,
        statistics=shampoo_statistics,
        refresh=shampoo_refresh,
        refresh_due=_refresh_due,
        reads_parameter=True,
    ),
    step_scalars=_shampoo_step_scalars,
    listing=Listing(
        summary="x <- x - lr L^(-1/4) G R^(-1/4), each block grafted onto Adam's step norm",
        reference="Gupta, Koren and Singer (2018), Shampoo: Preconditioned Stochastic Tensor "
        "Optimization; Shi et al. (2023), distributed Shampoo (facebookresearch/optimizers); "
        "pytorch_optimizer.Shampoo",
        year=2018,
        # The whole step, stage included (the update's own docstring has only its last part).
        equation="""\
G <- lerp(g, B, mu) + lambda x          (B: the previous direction; lambda x unless decoupled)
M <- lerp(M, G, 1 - beta1);  F <- M / (1 - beta1^t)          (F = G with beta1 = 0)
L_i <- beta2 L_i + (1 - beta2) G_(i) G_(i)^T  per block      (beta2 = 1: L_i = eps I + sum)
P_i <- (L_i / (1 - beta2^t) + eps I)^(-1/(2k))              (every f-th step from step s)
A <- Adam's F / (sqrt(V / (1 - beta2'^t)) + eps')            (or AdaGrad's, or F for SGD)
D_b <- F_b x_1 P_1 ... x_k P_k, scaled to |A_b|  per block   (D = A before s; vectors: D = A)
x <- x (1 - lr lambda) - lr D;  B <- D  (decay with weight_decouple only)""",
        colour="#004488",
        group_keys={"betas": ("beta1", "beta2")},
        lr_range=(1e-5, 1e-1),
    ),
)
