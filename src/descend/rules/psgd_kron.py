"""PSGD-Kron: preconditioned SGD with a Kronecker-factored preconditioner fitted to random
probes (Li, 2018 and 2019; the ``kron-torch`` form of Evan Walters).

PSGD looks for the preconditioner ``P`` that makes the preconditioned gradient as well
scaled as a Newton step, without ever forming a Hessian: it minimises
``E[h^T P h + v^T P^(-1) v]`` over pairs of a random probe ``v`` and the response ``h`` to it.
The Kronecker form keeps ``P = Q^T Q`` with ``Q = Q_1 (x) Q_2 (x) ... (x) Q_k``, one factor
per dimension of the (merged) gradient: an upper-triangular ``Q_i`` for a dimension small
enough (``max_size_triangular``) in a tensor of enough dimensions (``min_ndim_triangular``),
a diagonal one otherwise (or where ``memory_save_mode`` says so). Written for a matrix, with
the debiased momentum ``M`` as ``h`` (gradient whitening: the curvature it fits is the
momentum's covariance) and a Gaussian probe ``V``::

    A   = Q_1 M Q_2^T               B   = Q_1^(-T) V Q_2^(-1)
    Q_1 <- Q_1 - eta / ||A A^T + B B^T||_2 * triu(A A^T - B B^T) Q_1      (Q_2 likewise)
    D   = Q_1^T Q_1 M Q_2^T Q_2 = P M

Each factor moves along the relative gradient of the criterion on the group of triangular
matrices, with a step ``eta`` (``precond_lr``) normalised by a lower bound of the spectral
norm; the preconditioner is refitted with probability ``p_t`` per step (``1.0`` for the first
500 steps, then decaying towards 0.03), and the factors' norms are rebalanced about every
hundredth refit.

The rule's :class:`~descend.rules.spec.MatrixStage`: the elementwise ``prepare`` updates the
momentum ``m``, and the matrix ``function`` (torch, on the parameter's device) debiases it,
refits the factors when due (kept as the matrix state ``Q_0, Q_1, ...``: the reference's
list ``Q``, one tensor per entry, as descend keeps state), preconditions, clips the step's
RMS at 1.1 and adds the weight decay of a weight with two dimensions or more; the final step
is elementwise. Every
operation is ``kron_torch.Kron``'s (0.3.3), in its order, with two differences on purpose:
the probes and the rebalancing draws come from a seeded stream of descend's (see
:func:`probe_vectors`), and the gradient is left untouched (the reference adds the probe's
noise to ``p.grad`` in place when ``momentum_into_precond_update`` is False).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from descend.rules.common import learning_rate
from descend.rules.elementwise import fma
from descend.rules.kronecker import MEMORY_SAVE_MODES, diagonal_dims, expressions, merged_shape
from descend.rules.spec import Element, Hyper, Listing, MatrixStage, Rule, Slot

if TYPE_CHECKING:
    import torch

#: ``precond_dtype``: the factors' dtype by name (``None``: float32, as the reference).
PRECOND_DTYPES = (None, "float32", "float64", "bfloat16")
#: The probability of rebalancing the factors' norms at a step that refits them.
BALANCE_PROBABILITY = 0.01
#: The stream number of the rebalancing draws (parameters' streams are their indices, >= 0).
BALANCE_STREAM = -1
#: State key of the random stream: an int64 pair, the key of the optimizer's seed
#: (:func:`seed_key`) and the parameter's stream number.
STREAM_KEY = "probe_stream"
#: State key of the steps since the factors were last refitted (an int64 count).
COUNTER_KEY = "update_counter"
#: The state entries that hold integers.
INTEGER_KEYS = (STREAM_KEY, COUNTER_KEY)


def kron_momentum(
    u: Element, g: Element, momentum_buffer: Element, *, b1: float, w1: float
) -> tuple[Element, ...]:
    """The momentum (the stage's elementwise part; ``u`` holds x, which the function reads
    for the weight decay)::

    m <- b1 m + (1 - b1) g
    """
    momentum_buffer = fma(w1, g, momentum_buffer * b1)  # torch's mul_(b1).add_(g, alpha=)
    return u, momentum_buffer


def kron_update(
    p: Element, g: Element, momentum_buffer: Element, *, lr: float
) -> tuple[Element, ...]:
    """The step along the preconditioned, clipped and decayed direction ``D`` (``g`` here)::

    x <- x - lr D
    """
    p = fma(-lr, g, p)  # torch's add_(alpha=)
    return p, momentum_buffer


def precond_dtype(hypers: Mapping[str, Any]) -> torch.dtype:
    """The factors' dtype: ``precond_dtype`` by name, float32 for ``None``."""
    import torch  # here, not at the top: the rules load without torch (the command line's help)

    dtype: torch.dtype = getattr(torch, hypers["precond_dtype"] or "float32")
    return dtype


def kron_matrices(param: torch.Tensor, hypers: Mapping[str, Any]) -> dict[str, Any]:
    """The factors ``Q_i`` of ``param`` (merged, with ``merge_dims``) at ``s^(1/k)`` times
    the identity (``s``: ``precond_init_scale``; k factors; a diagonal factor as the vector
    of its diagonal), and the refit counter at 0 (on the CPU, as the reference keeps its
    counters: reading it costs no device synchronization)."""
    import torch

    dtype = precond_dtype(hypers)
    scale = hypers["precond_init_scale"]
    counter = {COUNTER_KEY: torch.zeros((), dtype=torch.int64)}
    if param.dim() == 0:
        return {"Q_0": scale * torch.ones_like(param, dtype=dtype), **counter}
    shape = merged_shape(tuple(param.shape), hypers["merge_dims"])
    scale = scale ** (1 / len(shape))
    factors = {
        f"Q_{index}": scale * torch.ones(size, dtype=dtype, device=param.device)
        if is_diagonal
        else scale * torch.eye(size, dtype=dtype, device=param.device)
        for index, (size, is_diagonal) in enumerate(
            zip(shape, diagonal_dims(shape, hypers), strict=True)
        )
    }
    return {**factors, **counter}


# -- the random stream ------------------------------------------------------------------------


def seed_key(seed: int) -> int:
    """The key of a run's seed (any non-negative integer) kept in the state: a 62-bit hash,
    which an int64 holds."""
    digest = hashlib.blake2b(f"{seed}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2


def draw_seed(seed: int, stream: int, step: int) -> int:
    """A 32-bit seed for the draws of one stream at one step of a run seeded ``seed``: a
    hash, so that nearby seeds, streams and steps give unrelated draws, and a resumed run
    (which keeps its step counters) draws what the uninterrupted one draws."""
    digest = hashlib.blake2b(f"{seed}:{stream}:{step}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def balance_draw(seed: int, step: int) -> float:
    """The uniform number in [0, 1) that decides whether step ``step`` rebalances the
    factors (below :data:`BALANCE_PROBABILITY`): the same for every parameter of a run, as
    the reference draws one per step."""
    return draw_seed(seed, BALANCE_STREAM, step) / 2**32


def probe_vectors(like: torch.Tensor, seed: int, stream: int, step: int) -> torch.Tensor:
    """The Gaussian probe ``V`` (``like``'s shape, dtype and device) of parameter ``stream``
    at step ``step``: drawn by a torch generator on ``like``'s device seeded with
    :func:`draw_seed`."""
    import torch

    generator = torch.Generator(device=like.device).manual_seed(draw_seed(seed, stream, step))
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)


# -- the preconditioner -----------------------------------------------------------------------


def update_probability(hypers: Mapping[str, Any], index: int) -> Any:
    """The probability of a refit at the step after ``index`` steps: the constant
    ``preconditioner_update_probability``, or (``None``) the reference's schedule
    ``clamp(p_max exp(-decay (n - flat_start)), p_min, p_max)``, in float32 as it computes
    it."""
    import torch

    constant = hypers["preconditioner_update_probability"]
    if constant is not None:
        return constant
    f32 = torch.float32
    high = torch.tensor(hypers["max_prob"], dtype=f32)
    decay = torch.tensor(hypers["prob_decay"], dtype=f32)
    flat = torch.tensor(hypers["flat_start"], dtype=f32)
    steps = torch.tensor(index, dtype=torch.int32).to(dtype=f32)
    probability = high * torch.exp(-decay * (steps - flat))
    return probability.clamp_(min=torch.tensor(hypers["min_prob"], dtype=f32), max=high)


def refit_due(hypers: Mapping[str, Any], state: MutableMapping[str, Any], step: int) -> bool:
    """Count one more step since the last refit; a refit is due once the count reaches
    ``1 / p`` (in the reference's arithmetic: an int32 count against float32), and the count
    starts again from 0."""
    import torch

    counter = state[COUNTER_KEY]
    count = int(counter) + 1
    due = bool(torch.tensor(count, dtype=torch.int32) >= 1 / update_probability(hypers, step - 1))
    counter.fill_(0 if due else count)
    return due


def balance_factors(factors: list[torch.Tensor]) -> None:
    """Rescale the factors to equal largest magnitudes (their geometric mean), leaving their
    Kronecker product as it is."""
    import torch

    norms = torch.stack([factor.norm(float("inf")) for factor in factors])
    geometric_mean = norms.log().mean().exp()
    torch._foreach_mul_(factors, list(geometric_mean / norms))


def norm_lower_bound(matrix: torch.Tensor, largest: torch.Tensor) -> torch.Tensor:
    """A cheap lower bound of the spectral norm of a symmetric ``matrix`` (scaled in place by
    its largest magnitude ``largest``): one power step from its largest column."""
    import torch

    matrix /= largest
    column = torch.einsum("ij,ij->j", matrix, matrix)
    vector = torch.index_select(matrix, 1, torch.argmax(column)).flatten().contiguous()
    vector = torch.einsum("i,ij->j", vector, matrix)
    vector /= vector.norm()
    bound: torch.Tensor = torch.einsum("j,kj->k", vector, matrix).norm()
    bound *= largest
    return bound


def _solve_upper_right(values: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``values @ factor^(-1)`` for an upper-triangular ``factor``, solved in float32 as the
    reference solves it (whatever the dtype), along the last dimension."""
    import torch

    solved = torch.linalg.solve_triangular(
        factor.float(),
        values.reshape(-1, values.size(-1)).float(),
        upper=True,
        left=False,
        unitriangular=False,
    )
    result: torch.Tensor = solved.to(dtype=factor.dtype).reshape_as(values)
    return result


def refit_factors(
    factors: list[torch.Tensor],
    momentum: torch.Tensor,
    probe: torch.Tensor,
    hypers: Mapping[str, Any],
) -> None:
    """One step of each factor along the criterion's relative gradient, from the pair
    ``(probe V, momentum M)``. ``M`` first gets a little of ``V`` (``sqrt(eps_32) mean|M|``
    times it, in place, as the reference does: the preconditioned direction then carries it
    too), so that a zero gradient still gives a well-posed fit."""
    import torch

    dtype = momentum.dtype
    order = momentum.dim()
    expression_a, per_factor, _ = expressions(
        None if order == 0 else tuple(factor.dim() < 2 for factor in factors)
    )
    eps = torch.tensor(torch.finfo(torch.float32).eps, dtype=dtype, device=momentum.device)
    momentum += eps.sqrt() * momentum.abs().mean() * probe
    # A scalar's probe is its own transpose (kron_torch cannot permute a 0-d tensor and fails
    # there; pytorch_optimizer's Kron takes this branch).
    conjugate = probe.permute(*range(1, order), 0) if order else probe
    for index, factor in enumerate(factors):
        if factor.dim() < 2:
            conjugate = conjugate / factor
        else:
            conjugate = _solve_upper_right(conjugate, factor)
        if index < order - 1:
            conjugate = torch.transpose(conjugate, index, order - 1)
    response = torch.einsum(expression_a, *factors, momentum)
    rate = torch.tensor(hypers["precond_lr"], dtype=dtype, device=momentum.device)
    tiny = torch.tensor(torch.finfo(dtype).tiny, dtype=dtype, device=momentum.device)
    for factor, subscripts in zip(factors, per_factor, strict=True):
        from_response = torch.einsum(subscripts, response, response)
        from_probe = torch.einsum(subscripts, conjugate, conjugate)
        step, total = from_response - from_probe, from_response + from_probe
        step *= rate
        largest = total.norm(float("inf"))
        if factor.dim() < 2:
            step *= factor / largest.clamp_(min=tiny)
        else:
            torch.triu(step, out=step)
            bound = torch.where(largest > 0, norm_lower_bound(total, largest), largest)
            step /= bound.clamp_(min=tiny)
            step = torch.mm(step, factor)
        factor.sub_(step)


def factors_of(state: MutableMapping[str, Any], dtype: torch.dtype) -> list[torch.Tensor]:
    """The factors ``Q_0, Q_1, ...`` in the preconditioner's dtype (a state dict loaded by
    ``torch.optim``'s rules holds them in the parameter's dtype: they are cast back once)."""
    count = sum(1 for key in state if key.startswith("Q_"))
    for index in range(count):
        if state[f"Q_{index}"].dtype != dtype:
            state[f"Q_{index}"] = state[f"Q_{index}"].to(dtype)
    return [state[f"Q_{index}"] for index in range(count)]


def stream_of(state: Mapping[str, Any]) -> tuple[int, int]:
    """The parameter's random stream: its seed's key and stream number (0 and 0 for a state
    made without them: the optimizer class gives every parameter its own)."""
    stream = state.get(STREAM_KEY)
    if stream is None:
        return 0, 0
    return int(stream[0]), int(stream[1])


def kron_direction(
    u: torch.Tensor, g: torch.Tensor, hypers: Mapping[str, Any], state: MutableMapping[str, Any]
) -> torch.Tensor:
    """The step's direction from the momentum (``u`` holds x): debias, refit the factors
    when due (rebalancing them first, now and then), precondition, clip and decay::

    M <- m / (1 - b1^t)
    D <- Q^T Q M;   D <- D min(1, 1.1 / (rms(D) + 1e-12));   D <- D + lambda x   (2-D+)
    """
    import torch

    dtype = precond_dtype(hypers)
    factors = factors_of(state, dtype)
    step = int(hypers["t"])
    shape = [] if u.dim() == 0 else [factor.shape[0] for factor in factors]
    due = refit_due(hypers, state, step)
    seed, stream = stream_of(state)
    balance = due and balance_draw(seed, step) < BALANCE_PROBABILITY
    momentum = (state["momentum_buffer"] / hypers["bias_correction1"]).to(dtype=dtype)
    momentum = momentum.reshape(shape)
    if len(shape) > 1 and balance:
        balance_factors(factors)
    if due:
        if hypers["momentum_into_precond_update"]:
            fitted = momentum
        else:
            fitted = g.reshape(shape).to(dtype=dtype, copy=True)
        probe = probe_vectors(fitted, seed, stream, step)
        refit_factors(factors, fitted, probe, hypers)
    _, _, expression_p = expressions(
        None if u.dim() == 0 else tuple(factor.dim() < 2 for factor in factors)
    )
    direction = torch.einsum(expression_p, *factors, *factors, momentum)
    one = torch.tensor(1.0, dtype=direction.dtype, device=direction.device)
    direction.mul_(torch.minimum(one, 1.1 / direction.square().mean().sqrt().add(1e-12)))
    direction = direction.reshape(u.shape)
    if hypers["weight_decay"] != 0 and u.dim() >= 2:
        direction.add_(u, alpha=hypers["weight_decay"])
    return direction.to(dtype=u.dtype)


def _kron_step_scalars(hypers: Mapping[str, Any], step: int) -> dict[str, Any]:
    b1 = hypers["b1"]
    return {"w1": 1 - b1, "bias_correction1": 1 - b1**step, "t": step}


PSGD_KRON = Rule(
    name="psgd_kron",
    update=kron_update,
    hypers=(
        learning_rate(3e-4),
        Hyper("b1", 0.9, "b1: decay of the momentum m", low=0.0, high=1.0, high_open=True),
        Hyper(
            "weight_decay",
            0.0,
            "lambda: D <- D + lambda x after the clip, for weights of two dimensions or more",
            low=0.0,
        ),
        Hyper(
            "preconditioner_update_probability",
            None,
            "p: refit the factors every 1/p steps (None: the schedule update_prob_schedule)",
            low=0.0,
            high=1.0,
            low_open=True,
            optional=True,
        ),
        Hyper("max_prob", 1.0, "schedule: p at first", low=0.0, high=1.0, low_open=True),
        Hyper("min_prob", 0.03, "schedule: the least p", low=0.0, high=1.0, low_open=True),
        Hyper("prob_decay", 0.001, "schedule: decay rate of p after flat_start", low=0.0),
        Hyper("flat_start", 500.0, "schedule: steps at p = max_prob", low=0.0),
        Hyper(
            "max_size_triangular",
            8192,
            "dimensions larger than this get a diagonal factor",
            low=0,
            kind=int,
        ),
        Hyper(
            "min_ndim_triangular",
            2,
            "tensors with fewer (merged) dimensions get diagonal factors only",
            low=0,
            kind=int,
        ),
        Hyper(
            "memory_save_mode",
            None,
            "which further factors are diagonal (one_diag: the largest dimension's; "
            "smart_one_diag: that one if it is strictly the largest; all_diag: all)",
            choices=MEMORY_SAVE_MODES,
        ),
        Hyper(
            "momentum_into_precond_update",
            True,
            "fit the factors to the debiased momentum (else to the gradient)",
            kind=bool,
        ),
        Hyper("precond_lr", 0.1, "eta: step size of the factors' fit", low=0.0),
        Hyper("precond_init_scale", 1.0, "s: Q starts at s times the identity", low=0.0),
        Hyper("merge_dims", True, "merge a tensor of 3+ dimensions into a matrix", kind=bool),
        Hyper(
            "precond_dtype",
            None,
            "dtype of the factors and of the preconditioning (None: float32)",
            choices=PRECOND_DTYPES,
        ),
    ),
    slots=(Slot("momentum_buffer"),),
    stage=MatrixStage(
        prepare=kron_momentum,
        function=kron_direction,
        ndim=None,
        matrices=kron_matrices,
        reads_parameter=True,
    ),
    step_scalars=_kron_step_scalars,
    listing=Listing(
        summary="x <- x - lr Q^T Q m: SGD preconditioned by Kronecker factors fitted to probes",
        aliases=("kron",),
        reference="Li (2018), Preconditioned Stochastic Gradient Descent; Li (2019), "
        "Preconditioner on Matrix Lie Group for SGD; kron_torch.Kron",
        year=2019,
        # The whole step, stage included (the update's own docstring has only its last part).
        equation="""\
m <- b1 m + (1 - b1) g
M <- m / (1 - b1^t)
(every 1/p_t steps, p_t 1 for 500 steps then decaying to 0.03; V ~ N(0, I), seeded:)
M <- M + sqrt(eps) mean(abs(M)) V
A <- Q_1 M Q_2^T
B <- Q_1^(-T) V Q_2^(-1)
Q_i <- Q_i - eta triu(A_i A_i^T - B_i B_i^T) Q_i / norm(A_i A_i^T + B_i B_i^T)
(end of the refit; A_i, B_i: A and B unfolded along dimension i)
D <- Q_1^T Q_1 M Q_2^T Q_2
D <- D min(1, 1.1 / rms(D))
x <- x - lr (D + lambda x)            (lambda x for weights of two dimensions or more)""",
        colour="#994455",
        group_keys={"update_prob_schedule": ("max_prob", "min_prob", "prob_decay", "flat_start")},
        lr_range=(1e-5, 1e-1),
    ),
)
