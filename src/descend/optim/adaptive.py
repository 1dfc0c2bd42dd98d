"""Adaptive methods past Adam: MARS (variance-reduced AdamW) and Prodigy (Adam that learns its
step size).

:class:`MARS` is a drop-in for ``pytorch_optimizer.MARS`` (its ``adamw`` form), :class:`Prodigy`
for ``prodigyopt.Prodigy``. Where a class differs from its reference on purpose, its docstring
says how and why.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch.optim.optimizer import ParamsT

from descend.optim.base import RuleOptimizer, constructor_arguments
from descend.optim.docstrings import document
from descend.rules.mars import MARS as MARS_RULE
from descend.rules.prodigy import PRODIGY
from descend.rules.spec import Hyper

_ACCEPTED = "accepted for compatibility; descend picks its executor with ``backend``."


class MARS(RuleOptimizer):
    """MARS in its AdamW form (AdamW on the gradient corrected by its change since the last
    step, clipped to norm 1 per tensor); drop-in for ``pytorch_optimizer.MARS`` with
    ``mars_type="adamw"``.

    Tensors of two or more dimensions take the corrected gradient; vectors and scalars (biases,
    norms) run plain AdamW with ``betas_1d``, ``weight_decay_1d`` and the learning rate
    ``lr * lr_1d_factor``, unless ``optimize_1d``. As in the reference, ``lr_1d_factor`` is
    ``lr_1d / lr`` at construction and kept in every param group, so a schedule of ``lr``
    scales the vectors' learning rate too.

    Differences from the reference, on purpose: a step counter per parameter (the reference
    counts per group), gradients left untouched (the reference negates ``p.grad`` for
    ``maximize`` and adds the coupled decay term to it in place), and only the ``adamw`` form
    with ``cautious=False`` (``mars_type`` ``"lion"`` or ``"shampoo"`` and ``cautious=True``
    raise ``ValueError``); complex parameters are refused.
    """

    rule = MARS_RULE
    argument_docs: ClassVar[dict[str, Hyper | str]] = {
        "lr_1d": Hyper(
            "lr_1d",
            3e-3,
            "vectors' learning rate at construction (sets lr_1d_factor = lr_1d / lr)",
            low=0.0,
        ),
        "cautious": "must be False (the reference's cautious masking is not offered here).",
        "foreach": _ACCEPTED,
        "kwargs": "accepted and ignored, as the reference accepts and ignores them.",
    }
    complex_parameters = False  # is_grad_2d would count the real view's extra dimension

    def __init__(
        self,
        params: ParamsT,
        lr: float = 3e-3,
        betas: tuple[float, float] = (0.95, 0.99),
        gamma: float = 0.025,
        mars_type: str = "adamw",
        optimize_1d: bool = False,
        lr_1d: float = 3e-3,
        betas_1d: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.0,
        weight_decay_1d: float = 1e-1,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        ams_bound: bool = False,
        cautious: bool = False,
        eps: float = 1e-8,
        maximize: bool = False,
        foreach: bool | None = None,
        *,
        nonfinite: str = "propagate",
        backend: str = "auto",
        **kwargs: Any,
    ) -> None:
        if cautious is not False:
            raise ValueError(f"cautious={cautious!r} is not supported by MARS; expected False")
        lr = self.rule.hyper("lr").check(lr)
        lr_1d = self.argument_docs["lr_1d"].check(lr_1d)  # type: ignore[union-attr]
        if float(lr) == 0.0:
            raise ValueError("lr=0 is invalid for MARS: lr_1d_factor = lr_1d / lr needs lr > 0")
        defaults = constructor_arguments(locals())
        for name in ("foreach", "cautious"):
            defaults.pop(name)
        defaults["lr_1d_factor"] = lr_1d / lr
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)


class Prodigy(RuleOptimizer):
    """Prodigy (Adam whose step size d lr is estimated from the run); drop-in for
    ``prodigyopt.Prodigy``. Leave ``lr`` at 1 unless the run is unstable; ``d_coef`` is the
    preferred knob.

    One d is estimated for the whole model, from sums over every parameter of every group: the
    groups share ``betas``, ``beta3``, ``use_bias_correction``, ``growth_rate``, ``decouple``,
    ``d0`` and ``d_coef`` (``ValueError`` otherwise), and every group's ``lr`` is the largest
    or 0. Each group holds
    the estimate (``d``, ``d_max``, ``d_numerator``, ``k``, and after a step ``d_hat``,
    ``d_denom``) as the reference's groups do, with the step's ``d_prev`` and ``dlr``.

    Differences from the reference, on purpose: ``s`` and ``p0`` have the parameter's shape
    (the reference keeps them flattened, and ``p0`` of an all-zero parameter as one zero);
    gradients are left untouched (the reference adds the coupled decay term to ``p.grad`` in
    place); complex parameters are refused; ``fsdp_in_use`` must be False and ``slice_p`` 1
    (the statistics use every element); an unbounded ``growth_rate`` is None by default (the
    reference's ``float("inf")`` is accepted and kept as None).
    """

    rule = PRODIGY
    argument_docs: ClassVar[dict[str, Hyper | str]] = {
        "fsdp_in_use": "must be False (descend does not all-reduce the estimate's sums).",
        "slice_p": "must be 1: the sums use every element.",
    }
    complex_parameters = False  # the reference's dot products are of real tensors

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        beta3: float | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decouple: bool = True,
        use_bias_correction: bool = False,
        safeguard_warmup: bool = False,
        d0: float = 1e-6,
        d_coef: float = 1.0,
        growth_rate: float | None = None,
        fsdp_in_use: bool = False,
        slice_p: int = 1,
        *,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        if fsdp_in_use is not False:
            raise ValueError(f"fsdp_in_use={fsdp_in_use!r} is not supported; expected False")
        if isinstance(slice_p, bool) or slice_p != 1:
            raise ValueError(f"slice_p={slice_p!r} is not supported; expected 1")
        growth_rate = _unbounded(growth_rate)
        defaults = constructor_arguments(locals())
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group whose estimate starts at the constructor's ``d0``, as the reference's
        (``d = d_max = d0``); a ``growth_rate`` of inf is kept as None (unbounded)."""
        d0 = self.defaults.get("d0", PRODIGY.defaults["d0"])
        param_group.setdefault("d", d0)
        param_group.setdefault("d_max", d0)
        if "growth_rate" in param_group:
            param_group["growth_rate"] = _unbounded(param_group["growth_rate"])
        super().add_param_group(param_group)


def _unbounded(growth_rate: Any) -> Any:
    """None for an unbounded growth rate given as the reference's ``float("inf")``."""
    if isinstance(growth_rate, float) and growth_rate == float("inf"):
        return None
    return growth_rate


#: Every optimizer class defined in this module, in the registry's order of rules.
__all__ = ["Prodigy", "MARS"]
document(MARS, Prodigy)
