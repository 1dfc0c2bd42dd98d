"""Optimizers newer than the lecture: Lion, Schedule-Free SGD and AdamW, Muon, AdEMAMix, and the
matrix methods Shampoo (written in :mod:`descend.optim.shampoo`, exported here) and SOAP.

Each is a drop-in for its reference implementation: :class:`Lion` for ``lion_pytorch.Lion``,
:class:`AdEMAMix` and :class:`SOAP` for ``pytorch_optimizer``'s classes (and :class:`Shampoo`,
given that reference's arguments),
:class:`SGDScheduleFree` and :class:`AdamWScheduleFree` for the ``schedulefree`` package's
classes, :class:`Muon` for ``torch.optim.Muon`` (with AdamW groups for the parameters Muon does
not step, as the reference ``MuonWithAuxAdam``). Where a class differs from its reference on
purpose, its docstring says how and why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch.optim.optimizer import ParamsT

from descend.optim.adamw_groups import MUON_AUXILIARY_DEFAULTS as MUON_AUXILIARY_DEFAULTS
from descend.optim.adamw_groups import _WithAdamWGroups as _WithAdamWGroups
from descend.optim.base import RuleOptimizer, constructor_arguments
from descend.optim.docstrings import document
from descend.optim.shampoo import ACCEPTED_KEYWORDS
from descend.optim.shampoo import Shampoo as Shampoo
from descend.rules.ademamix import ADEMAMIX
from descend.rules.elementwise import bind
from descend.rules.lion import LION
from descend.rules.muon import MUON, NS_COEFFICIENTS, NS_EPS, NS_STEPS
from descend.rules.schedulefree import SF_ADAMW, SF_SGD, evaluation_point, training_point
from descend.rules.soap import SOAP as SOAP_RULE
from descend.rules.spec import Hyper

_LION_DECOUPLED = Hyper(
    "decoupled_weight_decay",
    False,
    "as lion_pytorch, divide weight_decay by the constructor's lr, so the decay per step is "
    "lr / lr0 * weight_decay and follows a schedule's shape, not its scale",
    kind=bool,
)


class Lion(RuleOptimizer):
    """Lion (the sign of an interpolated momentum); drop-in for ``lion_pytorch.Lion``.

    Its learning rate is typically 3-10x smaller than AdamW's, its weight decay 3-10x larger.
    """

    rule = LION
    argument_docs: ClassVar[dict[str, Hyper | str]] = {
        "use_triton": "accepted for compatibility; descend chooses its executor with ``backend``.",
        "decoupled_weight_decay": _LION_DECOUPLED,
    }
    extra_settings = ("decoupled_weight_decay", "initial_lr")
    complex_parameters = False  # lion_pytorch's sign of a complex number is z / |z|

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        use_triton: bool = False,
        decoupled_weight_decay: bool = False,
        *,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        #: Divide weight_decay by ``initial_lr`` (lion_pytorch's decoupled weight decay).
        self.decoupled_weight_decay = _LION_DECOUPLED.check(decoupled_weight_decay)
        #: The constructor's learning rate.
        self.initial_lr = float(self.rule.hyper("lr").check(lr))
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay)
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)

    def rule_hypers(self, group: Mapping[str, Any]) -> dict[str, Any]:
        """The group's hyperparameters, with ``weight_decay / lr0`` when decoupled."""
        hypers = super().rule_hypers(group)
        if self.decoupled_weight_decay:
            hypers["weight_decay"] = hypers["weight_decay"] / self.initial_lr
        return hypers


class AdEMAMix(RuleOptimizer):
    """AdEMAMix (Adam plus a slow momentum); drop-in for ``pytorch_optimizer.AdEMAMix``.

    ``t_alpha_beta3=None`` (the default, as the reference's) means no warm-up of alpha and
    beta3; the paper warms both up over the whole run for long trainings. One difference from
    the reference, on purpose: a step counter per parameter (``state["step"]``, as every
    ``torch.optim`` class keeps it) instead of one per group, so a parameter without a gradient
    at some step keeps its own bias correction; the reference's ``maximize`` and coupled weight
    decay also overwrite ``p.grad`` in place, and descend leaves gradients untouched.
    """

    rule = ADEMAMIX
    argument_docs: ClassVar[dict[str, Hyper | str]] = {
        "foreach": "accepted for compatibility; descend chooses its executor with ``backend``.",
    }
    complex_parameters = False  # the reference refuses complex parameters

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float, float] = (0.9, 0.999, 0.9999),
        weight_decay: float = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        alpha: float = 5.0,
        t_alpha_beta3: float | None = None,
        eps: float = 1e-8,
        maximize: bool = False,
        foreach: bool | None = None,
        *,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        defaults = constructor_arguments(locals())
        defaults.pop("foreach")
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)


class _ScheduleFree(RuleOptimizer):
    """The ``train()``/``eval()`` switch and checkpoints shared by the Schedule-Free classes.

    The parameters hold the training point y while training and the averaged point x while
    evaluating; the state holds z (see :mod:`descend.rules.schedulefree`). Call ``eval()``
    before evaluating or saving the model's evaluation weights, and ``train()`` before training
    again; ``step()`` in eval mode raises ``RuntimeError``.

    Differences from the ``schedulefree`` package, both deliberate: an optimizer starts in
    train mode (``schedulefree`` starts in eval mode and refuses to step until ``train()`` is
    called; its reference versions start in train mode), and the switch is exact: ``eval()``
    keeps the training point y in the state (one parameter-sized copy while in eval mode),
    and ``train()`` restores it bit for bit if the parameter still holds the x made from it
    (otherwise, say after loading other weights, it computes y from x and z as
    ``schedulefree`` does). So ``state_dict()`` always carries the evaluation weights' recipe:
    in train mode, z and the group's ``train_mode`` give ``x = y + (1 - 1/beta)(z - y)``; in
    eval mode the parameters are x and the state also holds y. A checkpoint of the parameters
    and the optimizer taken in either mode resumes exactly where an uninterrupted run would be.
    """

    @classmethod
    def _defaults_with_group_state(cls, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor's arguments, the rule's group state at its start (as the reference
        package's defaults hold it) and the train-mode flag."""
        assert cls.rule is not None and cls.rule.group_state is not None
        return {
            **constructor_arguments(arguments),
            **cls.rule.group_state.initial,
            "train_mode": True,
        }

    #: The hyperparameter beta that places y between z and x.
    interpolation: ClassVar[str]
    complex_parameters = False  # schedulefree squares complex gradients as complex numbers
    #: State key of the training point kept while in eval mode.
    TRAINING_POINT: ClassVar[str] = "y"

    @torch.no_grad()
    def eval(self) -> None:
        """Switch every group to eval mode: parameters go from y to x."""
        to_x = bind(evaluation_point, "torch")
        for group in self.param_groups:
            if not group["train_mode"]:
                continue
            beta = float(self.rule_hypers(group)[self.interpolation])
            for param in group["params"]:
                state = self.state.get(param)
                if state and "z" in state:
                    state[self.TRAINING_POINT] = param.detach().clone()
                    param.copy_(to_x(param, state["z"], beta=beta))
            group["train_mode"] = False

    @torch.no_grad()
    def train(self) -> None:
        """Switch every group to train mode: parameters go from x back to y."""
        to_x = bind(evaluation_point, "torch")
        to_y = bind(training_point, "torch")
        for group in self.param_groups:
            if group["train_mode"]:
                continue
            beta = float(self.rule_hypers(group)[self.interpolation])
            for param in group["params"]:
                state = self.state.get(param)
                if not state or "z" not in state:
                    continue
                kept = state.pop(self.TRAINING_POINT, None)
                if kept is not None and torch.equal(param, to_x(kept, state["z"], beta=beta)):
                    param.copy_(kept)
                else:
                    param.copy_(to_y(param, state["z"], beta=beta))
            group["train_mode"] = True

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step (train mode only; ``RuntimeError`` in eval mode, before any change)."""
        if not all(group["train_mode"] for group in self.param_groups):
            raise RuntimeError(
                f"{type(self).__name__} is in eval mode (its parameters hold "
                "the averaged weights x): call optimizer.train() before "
                "training, optimizer.eval() before evaluating"
            )
        return super().step(closure)


class SGDScheduleFree(_ScheduleFree):
    """Schedule-Free SGD; drop-in for ``schedulefree.SGDScheduleFree``.

    ``z`` takes SGD steps, the evaluation point ``x`` averages them and the gradient is taken at
    the training point ``y`` between the two (see :mod:`descend.rules.schedulefree`). No
    learning-rate schedule is needed: the averaging plays its part. See :class:`_ScheduleFree`
    for ``train()``/``eval()`` and checkpoints.
    """

    rule = SF_SGD
    interpolation = "momentum"

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2,
        foreach: bool | None = True,
        *,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        defaults = self._defaults_with_group_state(locals())
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)


class AdamWScheduleFree(_ScheduleFree):
    """Schedule-Free AdamW; drop-in for ``schedulefree.AdamWScheduleFree``.

    As :class:`SGDScheduleFree`, with the z step normalized as Adam's and ``beta1`` placing y
    between z and x.
    """

    rule = SF_ADAMW
    interpolation = "beta1"

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        foreach: bool | None = True,
        *,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        defaults = self._defaults_with_group_state(locals())
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)


class Muon(_WithAdamWGroups, torch.optim.Muon):
    """Muon (momentum orthogonalized by Newton-Schulz), for 2-D weights; drop-in for
    ``torch.optim.Muon``, with AdamW groups for the other parameters.

    Muon is meant for the 2-D weights of hidden layers; biases, norms, embeddings and the
    output layer usually train with AdamW. Put them in a param group with ``use_muon=False``
    and that group is stepped as ``torch.optim.AdamW`` would step it (same keys, defaults and
    numbers; it takes ``lr``, ``betas``, ``eps``, ``weight_decay``, ``amsgrad``, ``maximize``,
    defaulting to AdamW's), as the reference ``MuonWithAuxAdam`` does::

        hidden = [p for p in model.body.parameters() if p.ndim == 2]
        others = [p for p in model.parameters() if all(p is not h for h in hidden)]
        optimizer = descend.Muon([
            dict(params=hidden, lr=0.02),
            dict(params=others, use_muon=False, lr=3e-4, betas=(0.9, 0.95), weight_decay=0),
        ])
    """

    rule = MUON
    group_flag = Hyper("use_muon", True, "step the group with Muon (else with AdamW)", kind=bool)
    torch_equivalent = ("torch.optim.Muon", {})
    stage_hint = "; give the other parameters to AdamW in a param group with use_muon=False"

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = NS_EPS,
        ns_steps: int = NS_STEPS,
        adjust_lr_fn: str | None = None,
        *,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        defaults = constructor_arguments(locals())
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)


class SOAP(_WithAdamWGroups):
    """SOAP (Adam in the eigenbasis of Shampoo's factors); drop-in for
    ``pytorch_optimizer.SOAP``.

    The first step gathers the statistics and sets the eigenbasis without moving the
    parameters (as the paper's and the reference's code do); bias corrections count from the
    second. Vectors are stepped by Adam unless ``precondition_1d``; a dimension longer than
    ``max_precondition_dim`` is not rotated; ``merge_dims`` merges neighbouring small dimensions
    (a convolution's kernel dimensions) into one factor. Each factor is as large as its
    dimension squared, and the eigenbasis costs an ``eigh`` (then a QR) per factor every
    ``precondition_frequency`` steps. A group with ``use_soap=False`` is stepped by AdamW, and
    ``split_parameters`` makes one of the vectors, as for :class:`Shampoo`.

    Differences from the reference, on purpose: a step counter per parameter (the reference
    counts per group), gradients left untouched (the reference negates ``p.grad`` in place for
    ``maximize``), state of tensors only (the reference's lists ``GG`` and ``Q`` are kept as
    ``GG_i`` and ``Q_i``, one per rotated dimension), and ``merge_dims`` on a tensor whose
    dimensions all merge into one: the reference reshapes it to ``[1]`` and fails; descend
    keeps it as one dimension of its size.
    """

    rule = SOAP_RULE
    group_flag = Hyper("use_soap", True, "step the group with SOAP (else with AdamW)", kind=bool)
    split_ndims = (2, None)
    argument_docs: ClassVar[dict[str, Hyper | str]] = {"kwargs": ACCEPTED_KEYWORDS}
    complex_parameters = False  # the reference refuses complex parameters

    def __init__(
        self,
        params: ParamsT,
        lr: float = 3e-3,
        betas: tuple[float, float] = (0.95, 0.95),
        shampoo_beta: float | None = None,
        weight_decay: float = 1e-2,
        precondition_frequency: int = 10,
        max_precondition_dim: int = 10000,
        merge_dims: bool = False,
        precondition_1d: bool = False,
        correct_bias: bool = True,
        normalize_gradient: bool = False,
        data_format: str = "channels_first",
        eps: float = 1e-8,
        maximize: bool = False,
        *,
        nonfinite: str = "propagate",
        backend: str = "auto",
        **kwargs: Any,
    ) -> None:
        defaults = constructor_arguments(locals())
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)


#: Every optimizer class defined in this module, in the registry's order of rules.
_DEFINED_HERE = [
    name
    for name, value in list(globals().items())
    if isinstance(value, type)
    and issubclass(value, RuleOptimizer)
    and value.__module__ == __name__
    and not name.startswith("_")
]
document(*(globals()[name] for name in _DEFINED_HERE))
#: Every optimizer class of this module, Shampoo's (written in :mod:`descend.optim.shampoo`)
#: included, in the registry's order of rules.
__all__ = [*_DEFINED_HERE[: _DEFINED_HERE.index("SOAP")], "Shampoo", "SOAP"]
