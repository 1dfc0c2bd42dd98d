"""``RuleOptimizer``: a ``torch.optim.Optimizer`` that executes an update rule.

Everything ``torch.optim`` users rely on comes from the base class: param groups, ``state_dict``
and ``load_state_dict``, ``zero_grad``, hooks, closures, learning-rate schedulers and
``GradScaler``. This class adds only what a rule needs: validation of each group's
hyperparameters, lazy per-parameter state in the rule's slots, per-step scalars computed once per
group and step count, the non-finite-gradient guard, and the choice of executor.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch

from descend.kernels import update_tensors
from descend.kernels.fused import fused_available, supports, update_tensors_fused
from descend.optim.fused_plan import STALE, GroupPlan
from descend.rules.spec import Rule

#: What an optimizer does when a gradient holds inf or NaN.
NONFINITE_MODES = ("propagate", "raise", "skip")
#: Executors an optimizer can run its rule on.
BACKENDS = ("auto", "reference", "fused")


class NonFiniteGradientError(FloatingPointError):
    """A gradient held inf or NaN and the optimizer was built with ``nonfinite="raise"``."""


class RuleOptimizer(torch.optim.Optimizer):
    """Base class of descend's optimizers; subclasses set ``rule`` and map their arguments.

    Extra keyword arguments of every descend optimizer:

    - ``nonfinite``: ``"propagate"`` (default, like ``torch.optim``: inf/NaN flow into the
      parameters), ``"raise"`` (raise :class:`NonFiniteGradientError` naming the parameter,
      before anything changes) or ``"skip"`` (leave every parameter and state tensor untouched
      and count the step in ``skipped_steps``).
    - ``backend``: which executor runs the rule. ``"reference"`` applies the rule with torch
      ops, tensor by tensor. ``"fused"`` runs it as one compiled, multi-threaded pass over all
      of a group's tensors (:mod:`descend.kernels.fused`; needs Numba, and CPU float32 or
      float64 parameters, else ``ValueError``). ``"auto"`` (default) uses the fused executor
      for CPU float32/float64 parameters when Numba is installed and the reference executor
      for everything else: other devices, and float16/bfloat16, whose results then match
      ``torch.optim``'s default (for-loop) path. Kernel threads follow
      ``torch.get_num_threads()`` unless ``$DESCEND_NUM_THREADS`` is set.
    """

    rule: ClassVar[Rule]
    #: Create every parameter's state at construction, as ``torch.optim.Adagrad`` does.
    eager_state: ClassVar[bool] = False

    def __init__(
        self,
        params: Iterable,
        defaults: dict[str, Any],
        *,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        if nonfinite not in NONFINITE_MODES:
            raise ValueError(f"nonfinite={nonfinite!r} is invalid: expected one of "
                             f"{', '.join(map(repr, NONFINITE_MODES))}")
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is invalid: expected one of "
                             f"{', '.join(map(repr, BACKENDS))}")
        if backend == "fused" and not fused_available():
            raise ValueError("backend='fused' needs Numba, which is not installed: install "
                             "numba, or use backend='auto' or 'reference'")
        self.nonfinite = nonfinite
        self.backend = backend
        self.skipped_steps = 0
        self._fused_plans: dict[int, Any] = {}
        # add_param_group, which super().__init__ calls per group, checks fusability.
        super().__init__(params, defaults)
        if self.eager_state:
            for group in self.param_groups:
                hypers = self.rule_hypers(group)
                for param in group["params"]:
                    self._ensure_state(param, hypers)

    # -- hyperparameters ----------------------------------------------------------------------

    def rule_hypers(self, group: Mapping[str, Any]) -> dict[str, Any]:
        """The rule's hyperparameters read from a param group (subclasses rename as needed)."""
        return {hyper.name: group[hyper.name] for hyper in self.rule.hypers}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group after checking its hyperparameters (defaults filled in) against the rule."""
        merged = {**self.defaults, **param_group}
        self.rule.validate(self.rule_hypers(merged))
        super().add_param_group(param_group)
        if self.backend == "fused":
            for param in self.param_groups[-1]["params"]:
                _check_fusable(param)

    # -- state --------------------------------------------------------------------------------

    def _ensure_state(self, param: torch.Tensor, hypers: Mapping[str, Any]) -> dict[str, Any]:
        """The parameter's state, with a step counter and every slot active under ``hypers``."""
        state = self.state[param]
        if "step" not in state:
            # A torch.optim.SGD checkpoint has a buffer but no counter: it is past its first step.
            has_history = any(slot.name in state for slot in self.rule.slots)
            state["step"] = torch.tensor(float(has_history), dtype=_step_dtype())
        for slot in self.rule.active_slots(hypers):
            if slot.name not in state:
                state[slot.name] = torch.full_like(
                    param, slot.initial_value(hypers), memory_format=torch.preserve_format)
        return state

    def __getstate__(self) -> dict[str, Any]:
        """torch's pickled state plus descend's own settings (a copy or pickle keeps them)."""
        state = super().__getstate__()
        state.update(nonfinite=self.nonfinite, backend=self.backend,
                     skipped_steps=self.skipped_steps)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled optimizer; fused plans are rebuilt on the next step."""
        state = dict(state)
        self.nonfinite = state.pop("nonfinite", "propagate")
        self.backend = state.pop("backend", "auto")
        self.skipped_steps = state.pop("skipped_steps", 0)
        self._fused_plans = {}
        super().__setstate__(state)

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim``'s state dict plus the count of skipped non-finite steps."""
        saved = super().state_dict()
        saved["skipped_steps"] = self.skipped_steps
        return saved

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict saved by this class or by the matching ``torch.optim`` class."""
        super().load_state_dict(state_dict)
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))

    # -- the step -----------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; return the closure's loss, if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = [
            (group, [p for p in group["params"] if p.grad is not None])
            for group in self.param_groups
        ]
        if self.nonfinite != "propagate" and self._has_nonfinite_gradient(work):
            self.skipped_steps += 1
            return loss
        for group, params in work:
            if params:
                self._step_group(group, params)
        return loss

    def _has_nonfinite_gradient(self, work: list[tuple[dict, list[torch.Tensor]]]) -> bool:
        for group_index, (group, params) in enumerate(work):
            for param in params:
                if bool(torch.isfinite(param.grad).all()):
                    continue
                if self.nonfinite == "skip":
                    return True
                raise NonFiniteGradientError(
                    f"non-finite gradient (inf or NaN) in {_param_label(group, group_index, param)}"
                    "; nothing was updated")
        return False

    def _step_group(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        hypers = self.rule_hypers(group)
        if self.backend == "reference" or not fused_available():
            self._step_buckets(group, params, hypers)
            return
        plan = self._fused_plans.get(id(group))
        if plan is None or not plan.is_current(group, self.state, hypers):
            plan = self._new_plan(group, params, hypers)
        leftover = self._step_buckets_for(group, hypers)
        if plan.step(params, hypers, leftover) is STALE:
            plan = self._new_plan(group, params, hypers)
            if plan.step(params, hypers, leftover) is STALE:
                raise AssertionError("a freshly built fused plan does not cover its group")

    def _new_plan(self, group: dict[str, Any], params: list[torch.Tensor],
                  hypers: Mapping[str, Any]) -> GroupPlan:
        """A fused plan for the group, after giving every stepping parameter its state."""
        for param in params:
            if param.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            if self.backend == "fused":
                _check_fusable(param)
            self._ensure_state(param, hypers)
        plan = GroupPlan(group, self.state, self.rule, hypers, _step_dtype())
        self._fused_plans[id(group)] = plan
        return plan

    def _step_buckets_for(self, group: dict[str, Any], hypers: Mapping[str, Any]):
        return lambda params: self._step_buckets(group, params, hypers)

    def _step_buckets(self, group: dict[str, Any], params: list[torch.Tensor],
                      hypers: Mapping[str, Any]) -> None:
        """Step each parameter's own counter and update it, one executor call per step count.

        The reference executor handles every tensor under ``backend="reference"`` and those the
        fused executor does not support under ``"auto"``; supported tensors that are not laid
        out flat (strided views) go to the fused executor, which copies them.
        """
        slot_names = [slot.name for slot in self.rule.slots]
        buckets: dict[tuple[int, bool], tuple[list, list, list]] = defaultdict(
            lambda: ([], [], []))
        active = {slot.name for slot in self.rule.active_slots(hypers)}
        fused = self.backend != "reference" and fused_available()
        for param in params:
            if param.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            state = self._ensure_state(param, hypers)
            state["step"] += 1
            bucket = buckets[int(state["step"].item()), fused and supports(param)]
            bucket[0].append(param)
            bucket[1].append(param.grad)
            bucket[2].append([state[name] if name in active else None for name in slot_names])
        for (step, use_fused), (bucket_params, grads, slots) in buckets.items():
            scalars = self.rule.scalars(hypers, step)
            executor = update_tensors_fused if use_fused else update_tensors
            executor(self.rule, scalars, bucket_params, grads, slots)


def _check_fusable(param: torch.Tensor) -> None:
    """Refuse, under ``backend="fused"``, a parameter the fused executor cannot update."""
    if not supports(param):
        raise ValueError(f"backend='fused' cannot update a {param.dtype} parameter on "
                         f"{param.device} (shape {tuple(param.shape)}): the fused executor "
                         "runs on CPU float32 and float64 tensors; use backend='auto' to "
                         "update the others with the reference executor")


def _step_dtype() -> torch.dtype:
    """The dtype ``torch.optim`` uses for step counters."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _param_label(group: Mapping[str, Any], group_index: int, param: torch.Tensor) -> str:
    index = next(i for i, p in enumerate(group["params"]) if p is param)
    names = group.get("param_names")
    if names:
        return f"parameter {names[index]!r} (shape {tuple(param.shape)})"
    return (f"param_groups[{group_index}]['params'][{index}] (shape {tuple(param.shape)}; build "
            "the optimizer from model.named_parameters() to see names)")


def reject_unsupported(**flags: Any) -> None:
    """Refuse ``torch.optim`` flags whose behaviour descend does not implement."""
    for name, value in flags.items():
        if value:
            raise ValueError(f"{name}={value!r} is not supported by descend optimizers; "
                             f"expected {name}=False")
