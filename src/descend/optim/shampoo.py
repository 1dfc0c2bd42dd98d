"""Shampoo, grafted and blocked as distributed Shampoo recommends, and a drop-in for
``pytorch_optimizer.Shampoo`` given that reference's arguments
(:data:`PYTORCH_OPTIMIZER_ARGUMENTS`)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch.optim.optimizer import ParamsT

from descend.optim.adamw_groups import _WithAdamWGroups
from descend.optim.base import constructor_arguments
from descend.optim.docstrings import document
from descend.rules.shampoo import SHAMPOO
from descend.rules.spec import Hyper

#: The arguments that make :class:`Shampoo` ``pytorch_optimizer.Shampoo`` (4.x) at its own
#: defaults, operation for operation: no grafting, no filter, summed statistics from
#: ``1e-6 I``, inverse roots every step, no blocks, coupled weight decay.
PYTORCH_OPTIMIZER_ARGUMENTS: dict[str, Any] = dict(
    lr=1e-3,
    betas=(0.0, 1.0),
    weight_decouple=False,
    preconditioning_compute_steps=1,
    matrix_eps=1e-6,
    grafting=None,
    max_preconditioner_dim=None,
)

#: What the class says of the reference's keyword arguments it does not take.
ACCEPTED_KEYWORDS = "accepted and ignored, as the reference accepts and ignores them."


class Shampoo(_WithAdamWGroups):
    """Shampoo (one Kronecker factor of the gradient's statistics per dimension, each applied
    as its inverse root), grafted onto Adam's step norm as distributed Shampoo
    (``facebookresearch/optimizers``) recommends; with :data:`PYTORCH_OPTIMIZER_ARGUMENTS`
    a drop-in for ``pytorch_optimizer.Shampoo``.

    The defaults follow distributed Shampoo's README configuration for replacing Adam: ``lr``
    1e-3, ``betas=(0.9, 0.999)`` (its ``betas``: the gradient filter and the statistics'
    average), ``matrix_eps`` 1e-12 (its ``epsilon``), ``preconditioning_compute_steps`` 100
    (its ``precondition_frequency``; the first roots at that step, its
    ``start_preconditioning_step=-1``), ``max_preconditioner_dim`` 8192, Adam grafting with
    ``grafting_beta2`` 0.999 and ``grafting_eps`` 1e-8 (its ``AdamPreconditionerConfig``), and
    decoupled weight decay (its ``WeightDecayType.DECOUPLED``), 0 by default. Every block's
    direction takes the norm of Adam's direction on it, so ``lr`` is Adam's; vectors and scalars,
    and every parameter before the first inverse roots, take Adam's step itself. The state is
    Adam's (``exp_avg``, ``exp_avg_sq``) plus each block's factors and roots; the previous
    direction (``momentum_buffer``) is kept only with ``momentum``, without grafting, or where
    no other state would be.

    What differs from distributed Shampoo: merging stops at two dimensions (its
    ``target_parameter_dimensionality=2``; its default 1 merges a small matrix into one vector
    and preconditions it by an ``mn x mn`` factor); vectors and scalars are not preconditioned
    but take the grafted method's step; the roots come from an SVD of the statistic (its
    eigendecomposition, for these symmetric positive-definite matrices); a step counter per
    parameter; state tensors in the parameter's dtype (its factors are float32 by default).

    With :data:`PYTORCH_OPTIMIZER_ARGUMENTS` (``grafting=None, max_preconditioner_dim=None,
    betas=(0.0, 1.0)``, ...) every shape is preconditioned as ``pytorch_optimizer.Shampoo``
    does: a matrix by ``L^(-1/4) G R^(-1/4)``, an order-k tensor by one factor per dimension at
    power ``-1/(2k)``, a vector by full-matrix AdaGrad and a scalar not at all, with inverse
    roots that are zero before their first computation. Differences from that reference, on
    purpose: a step counter per parameter (the reference counts per group), so a parameter
    without a gradient at some step keeps its own refresh schedule; gradients are left
    untouched (the reference negates, mixes and decays ``p.grad`` in place); with ``maximize``
    and momentum the first step's direction is ``-g`` (the reference starts its momentum at the
    gradient before negating it, which gives ``(2 mu - 1) g``). Where float32 rounding leaves a
    statistic with a zero singular value (its ``matrix_eps`` absorbed by a large sum), the
    reference's inverse root is infinite and its parameters become NaN; descend takes
    ``matrix_eps`` for that value, the least the statistic's eigenvalues can be (see
    :func:`descend.rules.shampoo.inverse_root`).

    Each factor is as large as its dimension squared: give embeddings and wide output layers to
    AdamW in a group with ``use_shampoo=False`` (as Muon's ``use_muon=False``);
    ``descend.Shampoo.split_parameters(model.parameters())`` gives every weight of two or more
    dimensions to Shampoo and the rest to AdamW, as ``descend bench`` does.
    """

    rule = SHAMPOO
    group_flag = Hyper(
        "use_shampoo", True, "step the group with Shampoo (else with AdamW)", kind=bool
    )
    split_ndims = (2, None)
    argument_docs: ClassVar[dict[str, Hyper | str]] = {"kwargs": ACCEPTED_KEYWORDS}
    complex_parameters = False  # the reference refuses complex parameters

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        preconditioning_compute_steps: int = 100,
        matrix_eps: float = 1e-12,
        maximize: bool = False,
        betas: tuple[float, float] = (0.9, 0.999),
        grafting: str | None = "adam",
        grafting_beta2: float = 0.999,
        grafting_eps: float = 1e-8,
        max_preconditioner_dim: int | None = 8192,
        start_preconditioning_step: int | None = None,
        *,
        nonfinite: str = "propagate",
        backend: str = "auto",
        **kwargs: Any,
    ) -> None:
        defaults = constructor_arguments(locals())
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)


__all__ = ["ACCEPTED_KEYWORDS", "PYTORCH_OPTIMIZER_ARGUMENTS", "Shampoo"]
document(Shampoo)
