"""Optimizers that fit a curvature model by sampling: PSGD-Kron.

:class:`PSGDKron` is a drop-in for ``kron_torch.Kron`` (0.3.3), with AdamW groups for the
parameters given to AdamW, as :class:`~descend.optim.recent.Shampoo` and
:class:`~descend.optim.recent.SOAP` have. Its random probes come from a stream seeded by the
optimizer's ``seed`` (see :func:`descend.rules.psgd_kron.probe_vectors`): two runs with the
same seed take the same steps, and a run resumed from a state dict draws what the
uninterrupted run draws.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch.optim.optimizer import ParamsT

from descend.optim.base import Staged, constructor_arguments
from descend.optim.docstrings import document
from descend.optim.precision import tensor_indices
from descend.optim.recent import _WithAdamWGroups
from descend.rules.psgd_kron import INTEGER_KEYS, PSGD_KRON, STREAM_KEY, seed_key
from descend.rules.spec import Hyper

#: The reference's update-probability schedule: (max_prob, min_prob, decay, flat_start).
DEFAULT_SCHEDULE = (1.0, 0.03, 0.001, 500)
_SCHEDULE_FIELDS = ("max_prob", "min_prob", "decay", "flat_start")


def _schedule_and_probability(value: Any, schedule: Any) -> tuple[Any, Any]:
    """``preconditioner_update_probability`` as descend's hyperparameters: a number or
    ``None`` as given; the reference's schedule object (``kron_torch``'s
    ``precond_update_prob_schedule(...)``) as ``None`` with its four numbers as the schedule.
    Any other callable raises ``ValueError``."""
    if callable(value) and all(hasattr(value, name) for name in _SCHEDULE_FIELDS):
        numbers = tuple(float(getattr(value, name)) for name in _SCHEDULE_FIELDS)
        return None, numbers
    if callable(value):
        raise ValueError(
            f"preconditioner_update_probability={value!r} is invalid: expected None, a "
            "number in (0, 1] or kron_torch's precond_update_prob_schedule(...); give "
            "another schedule as update_prob_schedule=(max_prob, min_prob, decay, flat_start)"
        )
    return value, schedule


class PSGDKron(_WithAdamWGroups):
    """PSGD-Kron (SGD with momentum, preconditioned by Kronecker factors fitted to random
    probes); drop-in for ``kron_torch.Kron``.

    Every shape is preconditioned: a matrix by an upper-triangular factor per side, a tensor
    of three dimensions or more merged into a matrix first (``merge_dims``), a vector or a
    dimension over ``max_size_triangular`` by a diagonal factor, a scalar by a scalar. The
    factors are refitted to the momentum with the probability ``preconditioner_update_probability``
    per step (``None``: the reference's schedule, 1.0 for ``flat_start`` steps, then decaying
    to ``min_prob``; give another as ``update_prob_schedule=(max_prob, min_prob, decay,
    flat_start)``, or pass ``kron_torch``'s ``precond_update_prob_schedule(...)`` object).
    ``descend.PSGDKron.split_parameters(model.parameters())`` gives every weight of two or
    more dimensions to PSGD-Kron and the rest to AdamW (``use_kron=False``), as ``descend
    bench`` does.

    Randomness: the probes and the rebalancing draws come from a stream keyed by the
    constructor's ``seed``, the parameter's position in the param groups when its state is
    created, and its step (:func:`descend.rules.psgd_kron.probe_vectors`); the state keeps
    the first two (``probe_stream``), so a state dict resumes the stream. The reference
    draws from torch's global generator instead.

    Differences from the reference, on purpose: a step counter and a refit counter per
    parameter (the reference counts per optimizer), so a parameter without a gradient at some
    step keeps its own schedule; the momentum is kept in the parameter's shape (the reference
    keeps it merged), so ``mu_dtype`` other than ``None`` is refused (descend keeps state in
    the parameter's dtype); the gradient is left untouched (with
    ``momentum_into_precond_update=False`` the reference adds the probe's noise to ``p.grad``);
    a scalar parameter is preconditioned (the reference fails on it when refitting); state of
    tensors only (the reference's list ``Q`` as ``Q_0, Q_1, ...``, its einsum strings and merged
    shape recomputed from the factors); and nothing is printed.
    """

    rule = PSGD_KRON
    group_flag = Hyper("use_kron", True, "step the group with PSGD-Kron (else AdamW)", kind=bool)
    split_ndims = (2, None)
    argument_docs: ClassVar[dict[str, Hyper | str]] = {
        "mu_dtype": "accepted for compatibility: only ``None`` (the parameter's dtype).",
    }
    complex_parameters = False  # the reference's triangular solve is real

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.0003,
        b1: float = 0.9,
        weight_decay: float = 0.0,
        preconditioner_update_probability: Any = None,
        max_size_triangular: int = 8192,
        min_ndim_triangular: int = 2,
        memory_save_mode: str | None = None,
        momentum_into_precond_update: bool = True,
        precond_lr: float = 0.1,
        precond_init_scale: float = 1.0,
        merge_dims: bool = True,
        mu_dtype: torch.dtype | None = None,
        precond_dtype: torch.dtype | str | None = None,
        update_prob_schedule: tuple[float, float, float, float] = DEFAULT_SCHEDULE,
        *,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        if mu_dtype is not None:
            raise ValueError(
                f"mu_dtype={mu_dtype!r} is invalid: expected None (descend keeps the momentum "
                "in the parameter's dtype)"
            )
        if isinstance(precond_dtype, torch.dtype):
            precond_dtype = str(precond_dtype).removeprefix("torch.")
        preconditioner_update_probability, update_prob_schedule = _schedule_and_probability(
            preconditioner_update_probability, update_prob_schedule
        )
        defaults = constructor_arguments(locals())
        defaults.pop("mu_dtype")
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; a ``precond_dtype`` given as a torch dtype is kept by its name and
        a schedule object as its four numbers, as the constructor keeps them."""
        if isinstance(param_group.get("precond_dtype"), torch.dtype):
            name = str(param_group["precond_dtype"]).removeprefix("torch.")
            param_group = {**param_group, "precond_dtype": name}
        if "preconditioner_update_probability" in param_group:
            value, schedule = _schedule_and_probability(
                param_group["preconditioner_update_probability"],
                param_group.get("update_prob_schedule", self.defaults.get("update_prob_schedule")),
            )
            param_group = {**param_group, "preconditioner_update_probability": value}
            if schedule is not None:
                param_group["update_prob_schedule"] = schedule
        super().add_param_group(param_group)

    def _prepare_group(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        differentiable: bool = False,
        grads: list[torch.Tensor] | None = None,
    ) -> Staged:
        """As every rule optimizer, then give each parameter whose state was just created (or
        loaded without one) its random stream: the key of the seed and its position in the
        param groups, recorded like the state, so a step that does not happen removes it."""
        staged = super()._prepare_group(group, params, differentiable, grads)
        if self._uses_rule(group):
            positions = tensor_indices(self)
            key = seed_key(self._precision.seed)
            for param in params:
                state = self.state.get(param)
                if state is not None and STREAM_KEY not in state:
                    state[STREAM_KEY] = torch.tensor([key, positions[id(param)]])
                    self._created_keys.append((param, STREAM_KEY))
        return staged

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict as every rule optimizer does, keeping the random stream and the
        refit counter as saved: ``torch.optim``'s load casts every state tensor but ``step``
        to its parameter's dtype, and a float (a bfloat16 one above all) cannot hold a seed's
        key."""
        saved = state_dict.get("state") or {}
        integers = {
            index: {key: entry[key] for key in INTEGER_KEYS if key in entry}
            for index, entry in saved.items()
        }
        saved_ids = [index for group in state_dict["param_groups"] for index in group["params"]]
        super().load_state_dict(state_dict)
        params = [param for group in self.param_groups for param in group["params"]]
        for index, param in zip(saved_ids, params, strict=True):
            for key, value in integers.get(index, {}).items():
                self.state[param][key] = value.detach().to("cpu", torch.int64, copy=True)


#: Every optimizer class defined in this module.
__all__ = ["PSGDKron"]
document(PSGDKron)
