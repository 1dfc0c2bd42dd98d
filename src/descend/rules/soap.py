"""SOAP: Adam run in the eigenbasis of Shampoo's preconditioner (Vyas et al., 2024).

Shampoo with exponent 1/2 preconditions by ``L^(-1/2) G R^(-1/2)``. Written in the
eigenbases ``Q_L`` of L and ``Q_R`` of R, that is a diagonal rescaling of the rotated gradient
``G' = Q_L^T G Q_R``: Adafactor in Shampoo's eigenbasis. SOAP runs Adam there instead: it keeps
Adam's second moment ``V`` of the rotated gradients (so the diagonal scaling adapts every step,
not only when the basis is renewed), rotates the momentum into the basis, divides, and rotates
back. The basis is the slow part: the statistics ``L`` and ``R`` are exponential averages of
``G G^T`` and ``G^T G``, and the eigenbasis is renewed every ``precondition_frequency`` steps
(the first time by ``eigh``, afterwards by one step of power iteration and a QR
decomposition, with ``V`` re-ordered to follow the estimated eigenvalues).

The rule's :class:`~descend.rules.spec.MatrixStage` keeps ``GG_i`` (the statistic of
dimension i; none for a dimension left unrotated) and ``Q_i`` (its basis) as matrix state;
the momentum, the final step and the decay are elementwise, and the rotated second moment is
the rule language's ``lerp`` evaluated by torch on the rotated tensor. The algorithm, its
options (``merge_dims``, ``precondition_1d``, ``max_precondition_dim``, ``data_format``,
``normalize_gradient``, ``correct_bias``) and its state are ``pytorch_optimizer.SOAP``'s (its
lists ``GG`` and ``Q`` kept as one tensor per dimension, as torch.optim keeps state): the first
step only gathers statistics and sets the basis, and QR runs in float32 (the reference casts
for the orthogonality of Q; descend does the same, so float64 runs agree with it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, MutableMapping
from functools import cache
from itertools import chain
from typing import TYPE_CHECKING, Any

from descend.rules.common import MAXIMIZE, decay_rate, epsilon, learning_rate
from descend.rules.elementwise import bind, fma, lerp
from descend.rules.spec import Element, Hyper, Listing, MatrixStage, Rule, Slot

if TYPE_CHECKING:
    import torch


def soap_momentum(
    u: Element, g: Element, exp_avg: Element, exp_avg_sq: Element, *, maximize: bool, w1: float
) -> tuple[Element, ...]:
    """The momentum SOAP rotates (the stage's elementwise part), in the parameter's basis::

    M <- lerp(M, g, 1 - beta1)     (no change on the first step, which gathers statistics)
    """
    if maximize:
        g = -g
    exp_avg = lerp(exp_avg, g, w1)
    return exp_avg, exp_avg, exp_avg_sq


def rotated_second_moment(v: Element, g: Element, *, w2: float) -> tuple[Element]:
    """Adam's second moment of the rotated gradient ``G'``::

    V <- lerp(V, G' * G', 1 - beta2)
    """
    return (lerp(v, g * g, w2),)


@cache
def _torch_second_moment() -> Callable[..., tuple[Any, ...]]:
    """:func:`rotated_second_moment` bound to torch (bound when first used: the rules load
    without torch)."""
    return bind(rotated_second_moment, "torch")


def merged_shape(shape: tuple[int, ...], max_dim: int) -> list[int]:
    """``shape`` with neighbouring dimensions merged while their product stays at most
    ``max_dim`` (``pytorch_optimizer``'s ``merge_small_dims``): ``(1, 2, 768, 1, 2048)`` with
    1024 gives ``[2, 768, 2048]``. A tensor that fits one dimension whole stays one dimension
    of its size (the reference gives ``[1]``, which only a one-element tensor can take)."""
    merged: list[int] = []
    product = 1
    for size in shape:
        product *= size
        if product > max_dim:
            merged.append(product // size)
            product = size
    merged.append(product)
    return merged if len(merged) > 1 else [math.prod(shape)]


def _channels_last(hypers: Mapping[str, Any], tensor: torch.Tensor) -> bool:
    return bool(hypers["data_format"] == "channels_last" and tensor.dim() == 4)


def _merged(tensor: torch.Tensor, hypers: Mapping[str, Any]) -> torch.Tensor:
    if _channels_last(hypers, tensor):
        tensor = tensor.permute(0, 3, 1, 2)
    return tensor.reshape(merged_shape(tuple(tensor.shape), hypers["max_precondition_dim"]))


def project(
    tensor: torch.Tensor, hypers: Mapping[str, Any], bases: list[Any], backward: bool = False
) -> torch.Tensor:
    """``Q_1^T ... Q_k^T`` applied to each mode of ``tensor`` (``Q_L^T G Q_R`` for a
    matrix), or with ``backward`` the rotation back (``Q_L G' Q_R^T``); a dimension without a
    basis is carried along unrotated."""
    import torch  # here, not at the top: the rules load without torch (the command line's help)

    original_shape = tensor.shape
    permuted_shape = original_shape
    permute = _channels_last(hypers, tensor)
    if hypers["merge_dims"]:
        if permute:
            permuted_shape = tensor.permute(0, 3, 1, 2).shape
        tensor = _merged(tensor, hypers)
    for basis in bases:
        if len(basis) > 0:
            tensor = torch.tensordot(tensor, basis, dims=[[0], [1 if backward else 0]])
        else:
            tensor = tensor.permute([*range(1, tensor.dim()), 0])
    if hypers["merge_dims"]:
        if permute:
            return tensor.reshape(permuted_shape).permute(0, 2, 3, 1)
        return tensor.reshape(original_shape)
    return tensor


def _statistics_shape(param: torch.Tensor, hypers: Mapping[str, Any]) -> list[int | None]:
    """The size of each statistic (``None``: that dimension is not rotated)."""
    limit = hypers["max_precondition_dim"]
    if param.dim() == 1:
        size = param.shape[0]
        return [size if hypers["precondition_1d"] and size <= limit else None]
    shape = tuple(_merged(param, hypers).shape) if hypers["merge_dims"] else tuple(param.shape)
    return [size if size <= limit else None for size in shape]


def _statistics(state: Mapping[str, Any], count: int) -> list[Any]:
    """The statistic of each dimension (``[]``: not rotated)."""
    return [state.get(f"GG_{index}", []) for index in range(count)]


def _bases(state: Mapping[str, Any], count: int) -> list[Any]:
    """The basis of each dimension (``[]``: not rotated, or no basis yet)."""
    return [state.get(f"Q_{index}", []) for index in range(count)]


def soap_matrices(param: torch.Tensor, hypers: Mapping[str, Any]) -> dict[str, Any]:
    """A zero statistic ``GG_i`` for each rotated dimension i (of the merged shape, with
    ``merge_dims``); the bases ``Q_i`` come with the first refresh."""
    return {
        f"GG_{index}": param.new_zeros(size, size)
        for index, size in enumerate(_statistics_shape(param, hypers))
        if size is not None
    }


def soap_statistics(
    u: torch.Tensor, g: torch.Tensor, hypers: Mapping[str, Any], state: MutableMapping[str, Any]
) -> None:
    """``L <- lerp(L, G G^T, 1 - beta_s)`` and ``R <- lerp(R, G^T G, 1 - beta_s)`` (one
    statistic per rotated dimension: the gradient contracted with itself over all others)."""
    import torch

    shampoo_beta = hypers["shampoo_beta"]
    weight = 1.0 - (hypers["beta2"] if shampoo_beta is None else shampoo_beta)
    statistics = _statistics(state, len(_statistics_shape(g, hypers)))
    if g.dim() == 1:
        if len(statistics[0]) > 0:
            statistics[0].lerp_((g.unsqueeze(1) @ g.unsqueeze(0)).to(statistics[0].dtype), weight)
        return
    if hypers["merge_dims"]:
        g = _merged(g, hypers)
    for index, statistic in enumerate(statistics):
        if len(statistic) > 0:
            others = [*chain(range(index), range(index + 1, g.dim()))]
            outer = torch.tensordot(g, g, dims=[others, others])
            statistic.lerp_(outer.to(statistic.dtype), weight)


def eigenbases(statistics: list[Any]) -> list[Any]:
    """The eigenvectors of each statistic, largest eigenvalue first (``eigh`` of
    ``L + 1e-30 I``)."""
    import torch

    bases: list[Any] = []
    for statistic in statistics:
        if len(statistic) == 0:
            bases.append([])
            continue
        eye = torch.eye(statistic.shape[0], device=statistic.device, dtype=statistic.dtype)
        _, vectors = torch.linalg.eigh(statistic + 1e-30 * eye)
        bases.append(torch.flip(vectors, dims=[1]))
    return bases


def power_iteration_bases(
    hypers: Mapping[str, Any], state: MutableMapping[str, Any], count: int
) -> list[Any]:
    """One power-iteration step from each basis, ``Q <- qr(L Q)``, its columns ordered by the
    estimated eigenvalues ``diag(Q^T L Q)``; the second moment is re-ordered to match. QR runs
    in float32, as the reference runs it."""
    import torch

    exp_avg_sq = state["exp_avg_sq"]
    original_shape = exp_avg_sq.shape
    permuted_shape = original_shape
    if _channels_last(hypers, exp_avg_sq):
        permuted_shape = exp_avg_sq.permute(0, 3, 1, 2).shape
    moment = _merged(exp_avg_sq, hypers) if hypers["merge_dims"] else exp_avg_sq
    bases: list[Any] = []
    pairs = zip(_statistics(state, count), _bases(state, count), strict=True)
    for index, (statistic, basis) in enumerate(pairs):
        if len(statistic) == 0:
            bases.append([])
            continue
        product = statistic @ basis
        estimate = (basis * product).sum(dim=0)
        order = torch.argsort(estimate, descending=True)
        moment = moment.index_select(index, order)
        q, _ = torch.linalg.qr(product.index_select(1, order).to(torch.float32))
        bases.append(q.to(product.dtype))
    if hypers["merge_dims"]:
        if _channels_last(hypers, exp_avg_sq):
            moment = moment.reshape(permuted_shape).permute(0, 2, 3, 1)
        else:
            moment = moment.reshape(original_shape)
    exp_avg_sq.copy_(moment)
    return bases


def soap_refresh(hypers: Mapping[str, Any], state: MutableMapping[str, Any]) -> None:
    """The bases from the statistics: by ``eigh`` the first time, then by power iteration."""
    count = len(_statistics_shape(state["exp_avg_sq"], hypers))
    statistics = _statistics(state, count)
    first = all(f"Q_{index}" not in state for index in range(count))
    bases = eigenbases(statistics) if first else power_iteration_bases(hypers, state, count)
    for index, basis in enumerate(bases):
        if len(basis) > 0:
            state[f"Q_{index}"] = basis


def soap_direction(
    u: torch.Tensor, g: torch.Tensor, hypers: Mapping[str, Any], state: MutableMapping[str, Any]
) -> torch.Tensor:
    """Adam's direction in the basis, rotated back (``u`` holds M)::

    G' <- Q_L^T g Q_R;   V <- lerp(V, G' * G', 1 - beta2)
    N <- Q_L ((Q_L^T M Q_R) / (sqrt(V) + eps)) Q_R^T
    N <- N / (rms(N) + eps)        (with normalize_gradient)

    On the first step, before any basis, V stays as it is (its weight is 0) and the step size
    is 0.
    """
    import torch

    if hypers["maximize"]:
        g = -g
    bases = _bases(state, len(_statistics_shape(u, hypers)))
    exp_avg_sq = state["exp_avg_sq"]
    rotated = project(g, hypers, bases)
    (moment,) = _torch_second_moment()(exp_avg_sq, rotated, w2=hypers["w2"])
    exp_avg_sq.copy_(moment)
    denominator = exp_avg_sq.sqrt().add_(hypers["eps"])
    direction = project(project(u, hypers, bases) / denominator, hypers, bases, backward=True)
    if hypers["normalize_gradient"]:
        direction.div_(torch.mean(direction.square()).sqrt_().add_(hypers["eps"]))
    return direction


def soap_update(
    p: Element,
    g: Element,
    exp_avg: Element,
    exp_avg_sq: Element,
    *,
    step_size: float,
    decay: float,
) -> tuple[Element, ...]:
    """One SOAP step along the rotated-back Adam direction ``N`` (``g`` here)::

    x <- x - alpha sqrt(1 - beta2^(t-1)) / (1 - beta1^(t-1)) N
    x <- x (1 - alpha lambda)

    (step t counts the first, statistics-only step: t - 1 updates have been taken.)
    """
    p = fma(-step_size, g, p)  # torch's add_(alpha=)
    p = p * decay
    return p, exp_avg, exp_avg_sq


def _soap_step_scalars(hypers: Mapping[str, Any], step: int) -> dict[str, Any]:
    if step <= 1:  # the first step gathers statistics and sets the basis: nothing moves
        return {"w1": 0.0, "w2": 0.0, "step_size": 0.0, "decay": 1.0}
    beta1, beta2, lr = hypers["beta1"], hypers["beta2"], hypers["lr"]
    step_size = lr
    if hypers["correct_bias"]:
        updates = step - 1
        step_size *= math.sqrt(1.0 - math.pow(beta2, updates)) / (1.0 - math.pow(beta1, updates))
    rate = hypers["weight_decay"]
    decay = 1.0 - rate * lr if rate else 1.0
    return {"w1": 1.0 - beta1, "w2": 1.0 - beta2, "step_size": step_size, "decay": decay}


def _refresh_due(hypers: Mapping[str, Any], step: int) -> bool:
    # After the first step (the first basis), then after every f-th update.
    return step == 1 or (step - 1) % hypers["precondition_frequency"] == 0


SOAP = Rule(
    name="soap",
    update=soap_update,
    hypers=(
        learning_rate(3e-3),
        decay_rate("beta1", 0.95, "decay rate of the momentum M"),
        decay_rate("beta2", 0.95, "decay rate of the rotated second moment V"),
        Hyper(
            "shampoo_beta",
            None,
            "beta_s: decay rate of the statistics L, R (None: beta2)",
            low=0.0,
            high=1.0,
            optional=True,
        ),
        Hyper(
            "weight_decay",
            1e-2,
            "lambda: decoupled decay after the step, x <- x (1 - lr lambda)",
            low=0.0,
        ),
        Hyper(
            "precondition_frequency",
            10,
            "f: renew the eigenbasis every f updates",
            low=1,
            kind=int,
        ),
        Hyper(
            "max_precondition_dim",
            10000,
            "dimensions larger than this are not rotated",
            low=1,
            kind=int,
        ),
        Hyper(
            "merge_dims",
            False,
            "merge neighbouring dimensions while their product fits max_precondition_dim",
            kind=bool,
        ),
        Hyper("precondition_1d", False, "rotate vectors too (else: Adam)", kind=bool),
        Hyper("correct_bias", True, "Adam's bias corrections in the step size", kind=bool),
        Hyper("normalize_gradient", False, "divide N by its root mean square", kind=bool),
        Hyper(
            "data_format",
            "channels_first",
            "layout of 4-D weights for merge_dims",
            choices=("channels_first", "channels_last"),
        ),
        epsilon(1e-8),
        MAXIMIZE,
    ),
    slots=(Slot("exp_avg"), Slot("exp_avg_sq")),
    stage=MatrixStage(
        prepare=soap_momentum,
        function=soap_direction,
        ndim=None,
        matrices=soap_matrices,
        statistics=soap_statistics,
        refresh=soap_refresh,
        refresh_due=_refresh_due,
        refresh_after_update=True,
    ),
    step_scalars=_soap_step_scalars,
    listing=Listing(
        summary="Adam in the eigenbasis of Shampoo's factors, renewed every f steps",
        reference="Vyas et al. (2024), SOAP: Improving and Stabilizing Shampoo using Adam; "
        "pytorch_optimizer.SOAP",
        year=2024,
        # The whole step, stage included (the update's own docstring has only its last part).
        equation="""\
L <- lerp(L, g g^T, 1 - beta_s);  R <- lerp(R, g^T g, 1 - beta_s)
Q_L, Q_R <- eigenbases of L, R        (every f-th step: one power iteration and QR)
M <- lerp(M, g, 1 - beta1);  G' <- Q_L^T g Q_R;  V <- lerp(V, G' * G', 1 - beta2)
N <- Q_L ((Q_L^T M Q_R) / (sqrt(V) + eps)) Q_R^T
x <- (x - lr sqrt(1 - beta2^t) / (1 - beta1^t) N) (1 - lr lambda)
(the first step only sets L, R and Q; t counts the updates after it)""",
        colour="#997700",
        group_keys={"betas": ("beta1", "beta2")},
        lr_range=(1e-5, 1e-1),
    ),
)
