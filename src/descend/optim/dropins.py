"""Drop-in replacements for ``torch.optim`` classes, and the notes' velocity-form momentum.

Each drop-in class takes the same constructor arguments, with the same defaults, as the
``torch.optim`` class of the same name, keeps the same param-group keys and per-parameter state
keys (so checkpoints load both ways), and computes the same numbers. A drop-in class is also a
subclass of its ``torch.optim`` class (``isinstance(descend.Adam(...), torch.optim.Adam)``), so
code that checks the class treats it as what it replaces: its state and param groups are
key-for-key torch's, only ``step`` runs descend's executors. ``foreach`` and ``fused`` are
accepted for compatibility; descend picks its own executor through ``backend``.

:class:`Momentum` and :class:`Nesterov` are the notes' forms of momentum, which differ from
``torch.optim.SGD``'s when the learning rate changes.
"""

from __future__ import annotations

import torch
from torch.optim.optimizer import ParamsT

from descend.optim.base import RuleOptimizer, constructor_arguments
from descend.optim.docstrings import document
from descend.rules.adagrad import ADAGRAD
from descend.rules.adam import ADAM, ADAMW
from descend.rules.momentum import NESTEROV, SGD_MOMENTUM
from descend.rules.nadam import NADAM
from descend.rules.radam import RADAM
from descend.rules.rmsprop import RMSPROP
from descend.rules.sgd import SGD as SGD_RULE


class SGD(RuleOptimizer, torch.optim.SGD):
    """Stochastic gradient descent, optionally with momentum; drop-in for ``torch.optim.SGD``.

    With ``momentum = 0`` this is the notes' plain SGD, ``x <- x - lr * g``.
    """

    rule = SGD_RULE
    torch_equivalent = ("torch.optim.SGD", {})
    sparse_gradients = "dense"

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        defaults = constructor_arguments(locals())
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)


class Momentum(RuleOptimizer):
    """SGD+Momentum in the notes' velocity form (not the same as ``torch.optim.SGD``'s).

    The velocity carries the learning rates of past steps: when alpha changes (a schedule), only
    new gradients see the new value. ``torch.optim.SGD(momentum=rho)`` instead keeps
    ``b <- rho * b + g`` and steps ``x <- x - alpha * b``, so an lr change rescales the whole
    accumulated history at once. With a constant alpha both give the same iterates; the
    momentum must stay below 1 to converge.
    """

    rule = SGD_MOMENTUM
    torch_equivalent = ("torch.optim.SGD", {})

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)


class Nesterov(Momentum):
    """Nesterov momentum in the notes' change-of-variables form.

    With a constant alpha this matches ``torch.optim.SGD(momentum=rho, nesterov=True)``;
    like :class:`Momentum`, a change of alpha affects only new gradients.
    """

    rule = NESTEROV
    torch_equivalent = ("torch.optim.SGD", {"nesterov": True})


class Adagrad(RuleOptimizer, torch.optim.Adagrad):
    """AdaGrad; drop-in for ``torch.optim.Adagrad``."""

    rule = ADAGRAD
    torch_equivalent = ("torch.optim.Adagrad", {})
    eager_state = True
    sparse_gradients = "entries"

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        defaults = constructor_arguments(locals())
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)


class RMSprop(RuleOptimizer, torch.optim.RMSprop):
    """RMSProp; drop-in for ``torch.optim.RMSprop`` (``alpha`` is the notes' decay rate rho)."""

    rule = RMSPROP
    torch_equivalent = ("torch.optim.RMSprop", {})

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        defaults = constructor_arguments(locals())
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)


class Adam(RuleOptimizer, torch.optim.Adam):
    """Adam with bias correction; drop-in for ``torch.optim.Adam``.

    ``decoupled_weight_decay=True`` decays the weights as :class:`AdamW` does.
    """

    rule = ADAM
    torch_equivalent = ("torch.optim.Adam", {})

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        defaults = constructor_arguments(locals())
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)


class AdamW(Adam, torch.optim.AdamW):
    """Adam with decoupled weight decay; drop-in for ``torch.optim.AdamW``.

    The decay is always decoupled: ``x <- x * (1 - lr * weight_decay)`` before the Adam step.
    """

    rule = ADAMW
    torch_equivalent = ("torch.optim.AdamW", {})

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
            nonfinite=nonfinite,
            backend=backend,
        )


class NAdam(RuleOptimizer, torch.optim.NAdam):
    """NAdam (Adam with Nesterov momentum); drop-in for ``torch.optim.NAdam``.

    The state holds ``step``, ``mu_product`` (``prod_{i<=t} mu_i``, a 0-d tensor as in torch),
    ``exp_avg`` and ``exp_avg_sq``.
    """

    rule = NADAM
    torch_equivalent = ("torch.optim.NAdam", {})

    def __init__(
        self,
        params: ParamsT,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        defaults = constructor_arguments(locals())
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)


class RAdam(RuleOptimizer, torch.optim.RAdam):
    """RAdam (rectified Adam); drop-in for ``torch.optim.RAdam``."""

    rule = RADAM
    torch_equivalent = ("torch.optim.RAdam", {})

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        defaults = constructor_arguments(locals())
        super().__init__(params, defaults, nonfinite=nonfinite, backend=backend)


#: Every optimizer class defined in this module, in the registry's order of rules.
__all__ = [
    name
    for name, value in list(globals().items())
    if isinstance(value, type)
    and issubclass(value, RuleOptimizer)
    and value.__module__ == __name__
    and not name.startswith("_")
]
document(*(globals()[name] for name in __all__))
