"""Matrix methods with AdamW groups: the param groups a matrix method should not step (biases,
norms, embeddings) are stepped exactly as ``torch.optim.AdamW`` steps them, as the reference
``MuonWithAuxAdam`` does. Muon, Shampoo, SOAP and PSGD-Kron share this base."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch.optim.optimizer import ParamsT

from descend.optim.base import RuleOptimizer
from descend.rules.adam import ADAMW
from descend.rules.spec import Hyper, Rule

#: What a param group with ``use_muon=False`` starts from: ``torch.optim.AdamW``'s defaults.
MUON_AUXILIARY_DEFAULTS: dict[str, Any] = dict(
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=1e-2,
    amsgrad=False,
    maximize=False,
    foreach=None,
    capturable=False,
    differentiable=False,
    fused=None,
    decoupled_weight_decay=True,
)


class _WithAdamWGroups(RuleOptimizer):
    """A matrix method with AdamW groups for the parameters it should not step.

    A param group whose flag (:attr:`group_flag`: ``use_muon``, ``use_shampoo``, ...) is False
    is stepped as ``torch.optim.AdamW`` would step it, from AdamW's defaults
    (:data:`MUON_AUXILIARY_DEFAULTS`: same keys, defaults and numbers), as the reference
    ``MuonWithAuxAdam`` does; :meth:`split_parameters` makes such groups from a model's
    parameters, and ``descend bench`` uses it for every class that has it.
    """

    #: The param-group flag: True (the default) steps the group with the class's rule.
    group_flag: ClassVar[Hyper]
    #: The fewest and most dimensions (``None``: no most) of the parameters
    #: :meth:`split_parameters` gives to the rule.
    split_ndims: ClassVar[tuple[int, int | None]] = (2, 2)

    @classmethod
    def split_parameters(cls, params: ParamsT) -> list[dict[str, Any]]:
        """A model's parameters as the usual recipe groups them: the weights the method is for
        (:attr:`split_ndims`) in one group, every other parameter in a group with the flag
        False (AdamW); empty groups are left out. Param-group dicts pass through unchanged."""
        # Tensors, or param-group dicts (which pass through): what torch.optim accepts.
        items: list[Any] = list(params)
        if any(isinstance(item, Mapping) for item in items):
            return items
        fewest, most = cls.split_ndims
        matrices = [
            p
            for p in items
            if fewest <= p.ndim and (most is None or p.ndim <= most) and not p.is_complex()
        ]
        others = [p for p in items if not any(p is m for m in matrices)]
        groups: list[dict[str, Any]] = [{"params": matrices}] if matrices else []
        if others:
            groups.append({"params": others, cls.group_flag.name: False})
        return groups

    def _uses_rule(self, group: Mapping[str, Any]) -> bool:
        flag = self.group_flag
        uses: bool = flag.check(group.get(flag.name, True))  # a flag's check gives a bool
        return uses

    def rule_for(self, group: Mapping[str, Any]) -> Rule:
        """The class's rule, or AdamW's for a group whose flag is False."""
        assert self.rule is not None
        return self.rule if self._uses_rule(group) else ADAMW

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; one whose flag is False starts from AdamW's defaults."""
        if not self._uses_rule(param_group):
            param_group = {**MUON_AUXILIARY_DEFAULTS, **param_group}
        super().add_param_group(param_group)
