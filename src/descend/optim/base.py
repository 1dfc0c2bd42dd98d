"""``RuleOptimizer``: a ``torch.optim.Optimizer`` that executes an update rule.

Everything ``torch.optim`` users rely on comes from the base class: param groups, ``state_dict``
and ``load_state_dict``, ``zero_grad``, hooks, closures, learning-rate schedulers and
``GradScaler``. This class adds only what a rule needs: validation of each group's
hyperparameters, lazy per-parameter state in the rule's slots, per-step scalars computed once per
group and step count, the non-finite-gradient guard, and the choice of executor. The rule's
extensions (see :mod:`descend.rules`) are handled here for every class: running products live in
each parameter's state beside its step counter, group state is advanced once per step for every
group before any parameter changes, and a matrix stage runs between the stage's elementwise
``prepare`` and the elementwise update, each elementwise part on the parameter's executor.

A step first checks everything it will touch (gradients against their parameters, state against
its parameters, non-finite values when asked to) and only then changes anything.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from descend.kernels.executor import Executor, backend_names, executors_for
from descend.optim import sharded
from descend.optim.plan import STALE, GroupPlan, check_gradient, check_representable
from descend.rules.spec import Rule, plain_value

#: What an optimizer does when a gradient holds inf or NaN.
NONFINITE_MODES = ("propagate", "raise", "skip")
#: Executors an optimizer can run its rule on (``backend=``).
BACKENDS = backend_names()


#: What a group's prepared step becomes: given every group's advanced group state, the step
#: worked out (nothing changed yet), as the function that performs it.
Staged = Callable[[Mapping[int, Mapping[str, Any]]], Callable[[], None]]


class NonFiniteGradientError(FloatingPointError):
    """A gradient held inf or NaN and the optimizer was built with ``nonfinite="raise"``."""


class ComplexParameterError(ValueError, RuntimeError):
    """A complex parameter given to an optimizer that steps real ones only. Both a
    ``ValueError`` (a bad argument, as descend reports them) and the ``RuntimeError`` that
    ``torch.optim`` raises for it (``torch.optim.Muon``), so either ``except`` catches it."""


class RuleOptimizer(torch.optim.Optimizer):
    """Base class of descend's optimizers; subclasses set ``rule`` and map their arguments.

    Extra keyword arguments of every descend optimizer:

    - ``nonfinite``: ``"propagate"`` (default, like ``torch.optim``: inf/NaN flow into the
      parameters), ``"raise"`` (raise :class:`NonFiniteGradientError` naming the parameter,
      before anything changes) or ``"skip"`` (leave every parameter and state tensor untouched
      and count the step in ``skipped_steps``). Checked with one pass over the gradients and
      one device synchronization per step.
    - ``backend``: which executor runs the rule. ``"reference"`` applies the rule with torch
      ops, tensor by tensor. ``"fused"`` runs it as one compiled pass over all of a group's
      tensors (:mod:`descend.kernels.fused`; needs Numba, and CPU float32 or float64
      parameters, else ``ValueError`` naming the parameter). ``"triton"`` runs it as one
      Triton kernel launch per group on the GPU (:mod:`descend.kernels.triton`; needs Triton,
      and CUDA parameters of a float dtype). ``"auto"`` (default) gives each parameter to the
      first available compiled executor that supports it (fused, then Triton), and the others
      to the reference executor, whose results then match ``torch.optim``'s default
      (for-loop) path. Kernel threads follow ``torch.get_num_threads()`` unless
      ``$DESCEND_NUM_THREADS`` is set.

    Both settings survive ``load_state_dict``, ``copy.deepcopy`` and pickling.
    """

    rule: ClassVar[Rule]
    #: Added to the error for a parameter of the wrong dimension under a rule with a stage.
    stage_hint: ClassVar[str] = ""
    #: Whether complex parameters are stepped as ``torch.view_as_real`` (as ``torch.optim``
    #: does); a class whose reference treats them otherwise refuses them.
    complex_parameters: ClassVar[bool] = True
    #: Further instance attributes (constructor settings outside the param groups) that
    #: survive ``load_state_dict``, ``copy.deepcopy`` and pickling, like ``nonfinite``.
    extra_settings: ClassVar[tuple[str, ...]] = ()
    #: Create every parameter's state at construction, as ``torch.optim.Adagrad`` does.
    eager_state: ClassVar[bool] = False
    #: How sparse gradients are stepped: ``None`` refuses them; ``"dense"`` steps with the
    #: gradient made dense (``torch.optim.SGD``'s results); ``"entries"`` updates only the
    #: gradient's stored entries, parameter and state alike (``torch.optim.Adagrad``'s).
    sparse_gradients: ClassVar[str | None] = None
    #: The ``torch.optim`` class (dotted name) that computes the same iterates at a constant
    #: learning rate, and the arguments it needs besides the hyperparameters both share; used by
    #: benchmarks and tests to find the reference of each optimizer.
    torch_equivalent: ClassVar[tuple[str, dict[str, Any]] | None] = None

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
        check_torch_arguments(self.rule, defaults)
        self._executors: tuple[Executor, ...] = executors_for(backend)
        self.nonfinite = nonfinite
        self.backend = backend
        self.skipped_steps = 0
        self._reset_step_caches()
        # add_param_group, which Optimizer.__init__ calls per group, checks each parameter.
        # (Named, not super(): a drop-in class also derives from its torch.optim class, whose
        # __init__ takes that class's arguments.)
        torch.optim.Optimizer.__init__(self, params, defaults)
        if self.eager_state:
            for group in self.param_groups:
                hypers = self.rule_hypers(group)
                for param in group["params"]:
                    self._ensure_state(param, hypers, group)

    def _reset_step_caches(self) -> None:
        """What the step keeps between calls, none of it optimizer state: the plans, the
        group values last checked, and the parameters whose state was created but not yet
        stepped."""
        self._plans: dict[int, GroupPlan] = {}
        #: State entries created during the step under way: (parameter, key), or
        #: (parameter, None) for its whole state dict; removed if the step does not happen.
        self._created_keys: list[tuple[torch.Tensor, str | None]] = []
        self._checked_values: dict[int, tuple] = {}
        self._unstepped: set[int] = set()

    # -- hyperparameters and parameters -------------------------------------------------------

    def rule_for(self, group: Mapping[str, Any]) -> Rule:
        """The rule that steps this param group: the class's :attr:`rule`, unless a subclass
        gives some groups another (Muon's groups with ``use_muon=False`` run AdamW)."""
        return self.rule

    def rule_hypers(self, group: Mapping[str, Any]) -> dict[str, Any]:
        """The rule's hyperparameters read from a param group (packed keys such as ``betas``
        unpacked, see :attr:`Rule.group_keys`)."""
        return self.rule_for(group).hypers_from_group(group)

    def _step_hypers(self, group: Mapping[str, Any], hypers: Mapping[str, Any],
                     advanced: Mapping[int, Mapping[str, Any]] | None = None
                     ) -> dict[str, Any]:
        """``hypers`` with the group's state (:class:`~descend.rules.spec.GroupState`), as the
        rule's step scalars read them: as ``advanced`` holds it for this step, if given (see
        :meth:`_advanced_group_state`), else as the group holds it."""
        state = self.rule_for(group).group_state
        if state is None:
            return dict(hypers)
        if advanced is not None and id(group) in advanced:
            return {**hypers, **advanced[id(group)]}
        return {**hypers, **{name: group[name] for name in state.names}}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group after checking its hyperparameters (defaults filled in) against the rule
        and each of its parameters against the backend; nothing is added on an error."""
        merged = {**self.defaults, **param_group}
        rule = self.rule_for(merged)
        rule.validate(self.rule_hypers(merged), rule.display_names())
        params = param_group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        tensors = [p[1] if isinstance(p, tuple) else p for p in params]
        if len({id(p) for p in tensors}) != len(tensors):
            raise ValueError("a parameter appears twice in one parameter group: each parameter "
                             "may be listed once (it would otherwise be stepped twice)")
        group_index = len(self.param_groups)
        for index, (param, entry) in enumerate(zip(tensors, params, strict=True)):
            if isinstance(param, torch.Tensor):
                where = (f"parameter {entry[0]!r}" if isinstance(entry, tuple)
                         else f"param_groups[{group_index}]['params'][{index}]")
                self._check_parameter(param, where, rule)
        if rule.group_state is not None:
            for name, value in rule.group_state.initial.items():
                param_group.setdefault(name, value)
        super().add_param_group(param_group)

    def _check_parameter(self, param: torch.Tensor, where: str, rule: Rule) -> None:
        if param.layout != torch.strided:
            raise ValueError(f"{where} (shape {tuple(param.shape)}) is a {param.layout} "
                             "tensor: descend optimizers update dense (strided) parameters; "
                             "sparse gradients of dense parameters are supported where "
                             "torch.optim supports them")
        if not (param.is_floating_point() or param.is_complex()):
            raise ValueError(f"{where} (shape {tuple(param.shape)}) has dtype {param.dtype}: "
                             "expected a floating-point or complex tensor (an update would "
                             "truncate it)")
        if param.is_complex() and not self.complex_parameters:
            raise ComplexParameterError(
                f"{where} (shape {tuple(param.shape)}) is a complex tensor: "
                f"{type(self).__name__} updates real parameters only (its reference does not "
                "step complex numbers as two real ones)")
        if rule.stage is not None and (param.ndim != rule.stage.ndim or param.is_complex()):
            kind = "a complex tensor" if param.is_complex() else f"{param.ndim}-D"
            error = ComplexParameterError if param.is_complex() else ValueError
            raise error(f"{where} (shape {tuple(param.shape)}) is {kind}: "
                             f"{type(self).__name__} updates real {rule.stage.ndim}-D "
                             f"parameters only{self.stage_hint}")
        sharded.check_parameter(param, where, type(self).__name__, rule.stage is not None)
        if self._executor_for(param) is None:
            (executor,) = self._executors
            raise ValueError(f"backend={self.backend!r} cannot update {where}, a {param.dtype} "
                             f"tensor on {param.device} (shape {tuple(param.shape)}): "
                             f"{executor.refusal(param)}; use backend='auto' to update the "
                             "others with the reference executor")

    def _executor_for(self, param: torch.Tensor) -> Executor | None:
        """The first of this optimizer's executors that supports ``param``."""
        probe = sharded.local(param)  # a DTensor's executor walks its local shard
        probe = torch.view_as_real(probe) if probe.is_complex() else probe
        for executor in self._executors:
            if executor.supports(probe):
                return executor
        return None

    # -- state --------------------------------------------------------------------------------

    def _ensure_state(self, param: torch.Tensor, hypers: Mapping[str, Any],
                      group: Mapping[str, Any]) -> tuple[dict | None, bool]:
        """The parameter's state with every slot active under ``hypers`` (and a step counter
        and running products if the rule counts steps), and whether a slot was created now.

        A parameter that needs no state gets none, as in ``torch.optim``. Existing state
        tensors are checked against the parameter (``ValueError`` naming both on a mismatch).
        """
        rule = self.rule_for(group)
        slots = rule.active_slots(hypers)
        if not slots and not rule.counts_steps and param not in self.state:
            return None, False
        created_keys = self._created_keys
        if param not in self.state:
            created_keys.append((param, None))
        state = self.state[param]
        if rule.counts_steps and "step" not in state:
            # A torch.optim checkpoint may hold slots but no counter: it is past its first step.
            has_history = any(slot.name in state for slot in rule.slots)
            state["step"] = torch.tensor(float(has_history), dtype=_step_dtype())
            created_keys.append((param, "step"))
        for product in rule.products:
            if product.name not in state:
                state[product.name] = torch.tensor(product.initial, dtype=_step_dtype())
                created_keys.append((param, product.name))
        created = False
        for slot in slots:
            tensor = state.get(slot.name)
            if tensor is None:
                state[slot.name] = slot.initial(param, hypers)
                created_keys.append((param, slot.name))
                created = True
                self._unstepped.add(id(param))
            elif (not isinstance(tensor, torch.Tensor) or tensor.shape != param.shape
                  or tensor.dtype != param.dtype or tensor.device != param.device):
                raise ValueError(
                    f"state[{slot.name!r}] of {self._label(param)} is "
                    f"{_describe(tensor)}, but the parameter is {_describe(param)}: expected "
                    "the same shape, dtype and device (was the state loaded from another "
                    "model?); nothing was updated")
            else:
                sharded.check_state(tensor, param, slot.name, self._label)
        return state, created

    def __getstate__(self) -> dict[str, Any]:
        """torch's pickled state plus descend's own settings (a copy or pickle keeps them)."""
        state = super().__getstate__()
        state.update(nonfinite=self.nonfinite, backend=self.backend,
                     skipped_steps=self.skipped_steps)
        state.update({name: getattr(self, name) for name in self.extra_settings})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled optimizer, or (``load_state_dict`` calls this) loaded state.

        Settings given to the constructor survive a load; groups from older checkpoints get the
        keys they lack from the defaults, and step counters saved as numbers become tensors, as
        ``torch.optim`` does.
        """
        state = dict(state)
        current = self.__dict__
        self.nonfinite = state.pop("nonfinite", current.get("nonfinite", "propagate"))
        self.backend = state.pop("backend", current.get("backend", "auto"))
        self.skipped_steps = state.pop("skipped_steps", current.get("skipped_steps", 0))
        for name in self.extra_settings:
            setattr(self, name, state.pop(name, current.get(name)))
        self._executors = executors_for(self.backend)
        self._reset_step_caches()
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        scalar_keys = {"step", *(product.name for group in self.param_groups
                                 for product in self.rule_for(group).products)}
        for param_state in self.state.values():
            for key in scalar_keys & param_state.keys():
                value = param_state[key]
                if not isinstance(value, torch.Tensor):
                    param_state[key] = torch.tensor(float(value), dtype=_step_dtype())

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim``'s state dict; with ``nonfinite`` other than ``"propagate"`` also the
        count of skipped steps (so the dict equals torch's, key for key, otherwise)."""
        saved = super().state_dict()
        if self.nonfinite != "propagate" or self.skipped_steps:
            saved["skipped_steps"] = self.skipped_steps
        return saved

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict saved by this class or by the matching ``torch.optim`` class.

        Every state tensor is checked against its parameter first: a checkpoint of another
        model raises ``ValueError`` naming the parameter, and nothing changes.
        """
        self._check_loaded_state(state_dict)
        skipped = int(state_dict.get("skipped_steps", 0))
        super().load_state_dict({key: value for key, value in state_dict.items()
                                 if key != "skipped_steps"})
        self.skipped_steps = skipped

    def _check_loaded_state(self, state_dict: Mapping[str, Any]) -> None:
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"load_state_dict expects an optimizer state dict (a mapping "
                             f"with 'state' and 'param_groups'), got {_describe(state_dict)}; "
                             "nothing was loaded")
        groups = state_dict.get("param_groups")
        saved_state = state_dict.get("state")
        if not isinstance(groups, list) or not isinstance(saved_state, Mapping):
            raise ValueError("not an optimizer state dict: expected the keys 'state' and "
                             "'param_groups'")
        if len(groups) != len(self.param_groups):
            raise ValueError(f"the state dict has {len(groups)} parameter groups, this "
                             f"optimizer {len(self.param_groups)}; nothing was loaded")
        for index, (saved, group) in enumerate(zip(groups, self.param_groups, strict=True)):
            rule = self.rule_for(group)
            slot_names = {slot.name: slot for slot in rule.slots}
            ids = saved.get("params", [])
            if len(ids) != len(group["params"]):
                raise ValueError(f"parameter group {index} of the state dict has {len(ids)} "
                                 f"parameters, this optimizer's {len(group['params'])}; "
                                 "nothing was loaded")
            loaded = {**group, **{k: v for k, v in saved.items() if k != "params"}}
            try:
                hypers = self.rule_hypers(loaded)
                rule.validate(hypers, rule.display_names())
            except (ValueError, KeyError) as error:
                raise ValueError(f"parameter group {index} of the state dict: {error}; "
                                 "nothing was loaded") from None
            for key, param in zip(ids, group["params"], strict=True):
                entry = saved_state.get(key)
                if not entry:
                    continue
                for name, value in entry.items():
                    slot = slot_names.get(name)
                    if slot is None:
                        continue
                    if value is None and not (slot.unconditional and slot.active(hypers)):
                        continue  # not created yet (torch.optim.SGD saves such a buffer)
                    if not isinstance(value, torch.Tensor):
                        raise ValueError(
                            f"the state dict's {name!r} for {self._label(param)} is "
                            f"{_describe(value)}: expected a tensor of the parameter's shape "
                            "(a damaged checkpoint?); nothing was loaded")
                    if value.shape != param.shape:
                        raise ValueError(
                            f"the state dict's {name!r} for {self._label(param)} has shape "
                            f"{tuple(value.shape)}, but the parameter has shape "
                            f"{tuple(param.shape)} (a checkpoint of another model?); nothing "
                            "was loaded")
                    sharded.check_state(value, param, name, self._label, loading=True)
                for slot in rule.active_slots(hypers):
                    if slot.name not in entry and slot.unconditional:
                        raise ValueError(
                            f"the state dict has state for {self._label(param)} but no "
                            f"{slot.name!r}, which {type(self).__name__} keeps for every "
                            "parameter (a checkpoint of another optimizer?); nothing was loaded")

    # -- the step -----------------------------------------------------------------------------

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; return the closure's loss, if given.

        With ``differentiable=True`` (as in ``torch.optim``) the step runs the reference
        executor with autograd recording, so gradients flow through the update.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        differentiable = bool(self.defaults.get("differentiable", False))
        with torch.set_grad_enabled(differentiable):
            if differentiable or not self._executors[0].compiled:
                self._step(differentiable)
            else:
                self._step_compiled()
        return loss

    @torch.compiler.disable
    def _step_compiled(self) -> None:
        """A step on compiled executors: opaque to ``torch.compile`` (a graph break), since
        the kernels walk raw addresses."""
        self._step(False)

    def _step(self, differentiable: bool) -> None:
        work = [(group, [p for p in group["params"] if p.grad is not None])
                for group in self.param_groups]
        self._check_listed_once()
        self._created_keys = []
        try:
            # Check everything first; change nothing until every group is ready.
            ready = [self._prepare_group(group, params, differentiable)
                     for group, params in work if params]
            if self.nonfinite != "propagate" and self._has_nonfinite_gradient(work):
                self._remove_created_state()
                self.skipped_steps += 1
                return
            # Work out every group's step (group state, counters, kernels, scalars) without
            # changing anything, so that an error on the way leaves the optimizer as it was
            # (state created for this step is removed again) ...
            advanced = self._advanced_group_state()
            runs = [stage(advanced) for stage in ready]
        except BaseException:
            self._remove_created_state()
            raise
        self._created_keys = []
        # ... then change it.
        for group in self.param_groups:
            group.update(advanced.get(id(group), ()))
        for run in runs:
            run()

    def _remove_created_state(self) -> None:
        """Undo the state this step created, for a step that does not happen."""
        for param, key in reversed(self._created_keys):
            state = self.state.get(param)
            if state is None:
                continue
            if key is None:
                if not state:
                    del self.state[param]
            else:
                state.pop(key, None)
        self._created_keys = []

    def _check_listed_once(self) -> None:
        """Refuse a parameter listed twice in the param groups (appended or assigned after
        construction): the constructor refuses it, since it would be stepped twice. One set of
        ids per step; the slow search for the culprit only when there is one."""
        groups = self.param_groups
        listed = [id(param) for group in groups for param in group["params"]]
        if len(set(listed)) == len(listed):
            return
        seen: set[int] = set()
        for index, group in enumerate(groups):
            for position, param in enumerate(group["params"]):
                if id(param) in seen:
                    raise ValueError(
                        f"param_groups[{index}]['params'][{position}] (shape "
                        f"{tuple(param.shape)}) is listed twice in the parameter groups: each "
                        "parameter may be listed once (it would otherwise be stepped twice); "
                        "nothing was updated")
                seen.add(id(param))

    def _advanced_group_state(self) -> dict[int, dict[str, Any]]:
        """Every group's :class:`~descend.rules.spec.GroupState` advanced by one step (groups
        without gradients too, as the reference implementations do), by group id; the groups
        themselves are not changed."""
        advanced = {}
        for group in self.param_groups:
            state = self.rule_for(group).group_state
            if state is not None:
                values = {key: plain_value(value) for key, value in
                          self._step_hypers(group, self._checked_hypers(group)).items()}
                advanced[id(group)] = state.advance(values)
        return advanced

    def _checked_hypers(self, group: dict[str, Any]) -> dict[str, Any]:
        """The group's hyperparameters, checked against the rule whenever they changed since
        the last step (an edit of ``param_groups`` or a loaded state dict): ``ValueError``
        naming the bad value, before anything changes."""
        rule = self.rule_for(group)
        try:
            hypers = self.rule_hypers(group)
        except KeyError as missing:
            raise ValueError(f"parameter group {self._group_index(group)} has no "
                             f"{missing.args[0]!r}: expected every hyperparameter of "
                             f"{type(self).__name__}") from None
        except ValueError as error:
            raise ValueError(f"parameter group {self._group_index(group)}: {error}; nothing "
                             "was updated") from None
        values = tuple(hypers.values())
        checked = self._checked_values.get(id(group))
        if checked is None or not _same_values(checked, values):
            try:
                rule.validate(hypers, rule.display_names())
            except ValueError as error:
                raise ValueError(f"parameter group {self._group_index(group)}: {error}; "
                                 "nothing was updated") from None
            self._checked_values[id(group)] = values
        return hypers

    def _group_index(self, group: Mapping[str, Any]) -> int:
        return next(i for i, candidate in enumerate(self.param_groups) if candidate is group)

    def _has_nonfinite_gradient(self, work: list[tuple[dict, list[torch.Tensor]]]) -> bool:
        """One pass over the gradients (one device synchronization per device)."""
        # DTensors are checked shard by shard, and the ranks agree (see descend.optim.sharded).
        grads = [p.grad for _, params in work for p in params]
        local = [_real(grad) for grad in sharded.local_tensors(grads)]
        if not sharded.agree([any(map(_any_nonfinite, _by_device_and_dtype(local)))], grads)[0]:
            return False
        if self.nonfinite == "skip":
            return True
        found = sharded.agree([_any_nonfinite([grad]) for grad in local], grads)
        params = [param for _, params in work for param in params]
        for param, nonfinite in zip(params, found, strict=True):
            if nonfinite:
                raise NonFiniteGradientError(
                    f"non-finite gradient (inf or NaN) in {self._label(param)}; nothing "
                    "was updated")
        return False

    def _prepare_group(self, group: dict[str, Any], params: list[torch.Tensor],
                       differentiable: bool = False) -> Staged:
        """Check one group's step; return the function that works it out (see
        :meth:`_step`)."""
        hypers = self._checked_hypers(group)
        rule = self.rule_for(group)
        if differentiable or not self._executors[0].compiled or rule.stage is not None:
            return self._prepare_unplanned(group, params, hypers, differentiable)
        plan = self._plans.get(id(group))
        ready = STALE
        if plan is not None and plan.covers(group, hypers):
            ready = plan.prepare(params, self.state, self._label)
        if ready is STALE:
            self._check_gradients(params, group)
            self._check_existing_state(params, rule)
            for param in params:
                if not param.grad.is_sparse and not param.is_complex():
                    self._ensure_state(param, hypers, group)
            plan = GroupPlan(group, self.state, rule, hypers, _step_dtype(),
                             self._executor_for, self._unstepped,
                             wait_for_kernels=self.backend != "auto")
            self._plans[id(group)] = plan
            ready = plan.prepare(params, self.state, self._label)
            if ready is STALE:
                raise AssertionError("a freshly built plan does not cover its group")
        self._check_counters(plan, ready)
        leftovers = ready[3]
        # The leftovers are checked now too, so a bad one stops the step before any change.
        rest = self._prepare_unplanned(group, leftovers, hypers) if leftovers else None

        def stage(advanced: Mapping[int, Mapping[str, Any]]) -> Callable[[], None]:
            step_hypers = self._step_hypers(group, hypers, advanced)
            run = plan.stage(ready, step_hypers)
            run_rest = rest(advanced) if rest is not None else None
            unstepped = self._unstepped

            def commit() -> None:
                run()
                if unstepped:
                    unstepped.difference_update(map(id, params))
                if run_rest is not None:
                    run_rest()

            return commit

        return stage

    def _check_counters(self, plan: GroupPlan, ready: Any) -> None:
        """Refuse step counters set to what no step can follow (negative), naming the
        parameter; the plan's counters are read as one array per block."""
        for block in ready[0]:
            if block.counted and len(block.step_values) and not block.step_values.min() >= 0:
                worst = int(np.argmin(np.nan_to_num(block.step_values, nan=-np.inf)))
                param = block.params[worst]
                _check_counter(block.step_views[worst], lambda p=param: self._label(p))

    def _check_existing_state(self, params: list[torch.Tensor], rule: Rule) -> None:
        """Before any state is created for ``params``: refuse elements that share memory
        (:meth:`_check_writable`) and step counters no step can follow."""
        self._check_writable(params)
        if rule.counts_steps:
            for param in params:
                state = self.state.get(param)
                if state and "step" in state:
                    _check_counter(state["step"], lambda p=param: self._label(p))

    def _check_writable(self, params: list[torch.Tensor]) -> None:
        """Refuse a parameter or state tensor whose elements share memory (an expanded
        tensor: an update would write one element several times, and torch refuses it too)
        or do not all lie inside its storage (a storage resized under it)."""
        for param in params:
            state = self.state.get(param, {})
            tensors = [("", param), *((f"state[{name!r}] of ", value)
                                      for name, value in state.items()
                                      if isinstance(value, torch.Tensor) and value.ndim)]
            for prefix, tensor in tensors:
                local = sharded.local(tensor)
                if not _inside_storage(local):
                    raise ValueError(
                        f"{prefix}{self._label(param)} reaches past the end of its storage "
                        f"({local.untyped_storage().nbytes()} bytes for shape "
                        f"{tuple(local.shape)}, strides {local.stride()}, offset "
                        f"{local.storage_offset()}: was the storage resized?); nothing was "
                        "updated")
                if torch._debug_has_internal_overlap(tensor) == 1:
                    raise ValueError(
                        f"{prefix}{self._label(param)} has elements that refer to the same "
                        f"memory location (strides {tensor.stride()}, an expanded tensor?): "
                        "an in-place update would write them several times; clone it "
                        "first; nothing was updated")

    def _check_gradients(self, params: list[torch.Tensor], group: Mapping[str, Any]) -> None:
        for param in params:
            grad = param.grad
            if grad.is_sparse:
                if self.sparse_gradients is None:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse "
                                       f"gradients ({self._label(param)})")
                group_decay = group.get("weight_decay", 0)
                if group_decay:
                    # torch.optim refuses it too (Adagrad by name, SGD in its sparse add).
                    raise RuntimeError(
                        f"weight_decay={group_decay} is not compatible with the sparse "
                        f"gradient of {self._label(param)}; nothing was updated")
                if grad.shape != param.shape or grad.dtype != param.dtype:
                    check_gradient(param, grad, self._label)
            else:
                check_gradient(param, grad, self._label)

    def _prepare_unplanned(self, group: dict[str, Any], params: list[torch.Tensor],
                           hypers: Mapping[str, Any], differentiable: bool = False) -> Staged:
        """Check the step of parameters no plan covers; return the function that works it out.
        Each is stepped by its executor's list call, one call per step count (and running
        products) and executor."""
        self._check_gradients(params, group)
        rule = self.rule_for(group)
        self._check_existing_state(params, rule)
        entries = [(param, self._ensure_state(param, hypers, group)[0]) for param in params]

        def stage(advanced: Mapping[int, Mapping[str, Any]]) -> Callable[[], None]:
            step_hypers = self._step_hypers(group, hypers, advanced)
            plain = {name: plain_value(value) for name, value in step_hypers.items()}
            slot_names = [slot.name for slot in rule.slots]
            active = {slot.name for slot in rule.active_slots(hypers)}
            buckets: dict[tuple, tuple[list, list, list]] = defaultdict(lambda: ([], [], []))
            sparse = []
            products_after = []
            for param, state in entries:
                if rule.counts_steps:
                    step = int(state["step"].item()) + 1
                else:
                    step = 1 if id(param) in self._unstepped else 2
                products = []
                for product in rule.products:
                    # In the product's dtype, as torch does.
                    value = state[product.name] * product.factor(step_hypers, step)
                    products_after.append((state[product.name], value))
                    products.append(value.item())
                grad = param.grad
                slots = [state[name] if name in active else None for name in slot_names]
                if grad.is_sparse:
                    sparse.append((param, grad, slots, step))
                    continue
                if not differentiable:
                    param, grad, slots = sharded.local_operands(param, grad, slots)
                if param.is_complex():
                    param, grad = torch.view_as_real(param), torch.view_as_real(grad)
                    slots = [None if s is None else torch.view_as_real(s) for s in slots]
                executor = (self._reference_executor() if differentiable
                            else self._executor_for(param))
                bucket = buckets[step, tuple(products), executor]
                bucket[0].append(param)
                bucket[1].append(grad)
                bucket[2].append(slots)
            names = [product.name for product in rule.products]
            calls = []
            for (step, products, executor), (bucket_params, grads, slots) in buckets.items():
                values = {**step_hypers, **dict(zip(names, products, strict=True))}
                scalars = rule.scalars(values, step, differentiable)
                for dtype in {p.dtype for p in bucket_params}:
                    check_representable(plain, scalars, dtype)
                executor.check_ready()
                calls.append((executor, values, step, scalars, bucket_params, grads, slots))
            sparse_scalars = [rule.scalars(step_hypers, step) for *_, step in sparse]

            def commit() -> None:
                # The updates first: they read no counter, and a kernel that fails to compile
                # then leaves the counters as they were.
                for executor, values, step, scalars, bucket_params, grads, slots in calls:
                    if rule.stage is not None:
                        grads = self._run_stage(rule, executor, values, step, grads, slots)
                    executor.step(rule, None, scalars, bucket_params, grads, slots)
                for (param, grad, slots, _), scalars in zip(sparse, sparse_scalars,
                                                            strict=True):
                    self._step_sparse(rule, param, grad, slots, scalars)
                if rule.counts_steps:
                    for _, state in entries:
                        state["step"] += 1
                for value, after in products_after:
                    value.copy_(after)
                self._unstepped.difference_update(id(param) for param, _ in entries)

            return commit

        return stage

    @staticmethod
    def _run_stage(rule: Rule, executor: Executor, values: Mapping[str, Any], step: int,
                   grads: list[torch.Tensor], slots: list[list[torch.Tensor | None]]
                   ) -> list[torch.Tensor]:
        """The :class:`~descend.rules.spec.MatrixStage` of one bucket: the elementwise
        ``prepare`` on the executor, then the matrix function tensor by tensor; returns what
        the update sees in place of each gradient."""
        prepare = rule.prepare_rule
        buffers = [torch.empty_like(grad) for grad in grads]
        executor.step(prepare, None, prepare.scalars(values, step), buffers, grads, slots)
        plain = {name: plain_value(value) for name, value in values.items()}
        return [rule.stage.function(buffer, plain) for buffer in buffers]

    def _step_sparse(self, rule: Rule, param: torch.Tensor, grad: torch.Tensor,
                     slots: list[torch.Tensor | None], scalars: Mapping[str, Any]) -> None:
        """Step a parameter whose gradient is sparse, as :attr:`sparse_gradients` says."""
        reference = self._reference_executor()
        if self.sparse_gradients == "dense":
            reference.step(rule, None, scalars, [param], [grad.to_dense()], [slots])
            return
        grad = grad.coalesce()
        where = tuple(grad.indices())
        values = grad.values()
        param_entries = param[where]
        slot_entries = [None if s is None else s[where] for s in slots]
        reference.step(rule, None, scalars, [param_entries], [values], [slot_entries])
        param[where] = param_entries
        for slot, entries in zip(slots, slot_entries, strict=True):
            if slot is not None:
                slot[where] = entries

    @staticmethod
    def _reference_executor() -> Executor:
        from descend.kernels.executor import get_executor

        return get_executor("reference")

    def _label(self, param: torch.Tensor) -> str:
        """How messages name a parameter: by name when the optimizer was built from
        ``named_parameters()``, else by its place in the param groups."""
        for group_index, group in enumerate(self.param_groups):
            for index, candidate in enumerate(group["params"]):
                if candidate is param:
                    names = group.get("param_names")
                    if names:
                        return f"parameter {names[index]!r} (shape {tuple(param.shape)})"
                    return (f"param_groups[{group_index}]['params'][{index}] (shape "
                            f"{tuple(param.shape)}; build the optimizer from "
                            "model.named_parameters() to see names)")
        return f"a parameter of shape {tuple(param.shape)}"


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} of shape {tuple(value.shape)} on {value.device}"
    return f"a {type(value).__name__}"


def _inside_storage(tensor: torch.Tensor) -> bool:
    """Whether every element of ``tensor`` lies inside its storage (offset, shape and strides
    against the storage's size): what an update through its address may write."""
    if tensor.numel() == 0:
        return True
    extent = 1 + sum((size - 1) * stride
                     for size, stride in zip(tensor.shape, tensor.stride(), strict=True))
    end = (tensor.storage_offset() + extent) * tensor.element_size()
    return end <= tensor.untyped_storage().nbytes()


def _same_values(a: tuple, b: tuple) -> bool:
    """Whether two tuples of hyperparameter values are the same: equal numbers, flags and
    strings, identical other objects. A tensor counts as changed (its value may have been
    edited in place), so tensor hyperparameters are checked every step."""
    return len(a) == len(b) and all(
        x is y and not isinstance(x, torch.Tensor)
        or type(x) is type(y) and isinstance(x, int | float | str) and x == y
        for x, y in zip(a, b, strict=True))


def _check_counter(step: Any, label: Callable[[], str]) -> None:
    """Refuse a step counter no step can follow: not one number, or negative."""
    if not isinstance(step, torch.Tensor) or step.numel() != 1:
        raise ValueError(f"state['step'] of {label()} is {_describe(step)}: expected a "
                         "one-element tensor counting the steps taken; nothing was updated")
    value = float(step)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"state['step'] of {label()} is {value:g}: expected a count of "
                         "steps taken (>= 0); nothing was updated")


def _real(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.is_sparse:
        tensor = tensor.coalesce().values()
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


def _by_device_and_dtype(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    groups: dict[tuple, list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.device, tensor.dtype), []).append(tensor)
    return list(groups.values())


def _any_nonfinite(tensors: list[torch.Tensor]) -> bool:
    """Whether any of these same-device tensors holds inf or NaN (one synchronization)."""
    if not tensors:
        return False
    device = tensors[0].device
    found = torch.zeros(1, device=device)
    if tensors[0].dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        # One fused pass per device and dtype: GradScaler's check, with a scale of exactly 1.
        torch._amp_foreach_non_finite_check_and_unscale_(tensors, found,
                                                         torch.ones(1, device=device))
        return bool(found.item())
    return any(not bool(torch.isfinite(t).all()) for t in tensors)


def _step_dtype() -> torch.dtype:
    """The dtype ``torch.optim`` uses for step counters."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def check_torch_arguments(rule: Rule, defaults: Mapping[str, Any]) -> None:
    """Refuse what ``torch.optim`` refuses, with the same exception type, and what descend
    does not implement (``capturable=True``).

    Tensor hyperparameters must hold one element; a tensor learning rate or tensor betas with
    ``foreach=True`` (and ``capturable=False``), and ``fused=True`` with ``foreach=True`` or
    ``differentiable=True``, are refused as torch refuses them; a packed key (``betas``) holds
    either only floats or only tensors.
    """
    foreach, fused = defaults.get("foreach"), defaults.get("fused")
    if defaults.get("capturable"):
        raise ValueError("capturable=True is not supported by descend optimizers (CUDA-graph "
                         "capture of the step); expected capturable=False")
    names = [("lr", defaults.get("lr"))]
    for key in rule.group_keys:
        packed = defaults.get(key)
        if isinstance(packed, tuple | list):
            kinds = {isinstance(value, torch.Tensor) for value in packed}
            if len(kinds) > 1:
                raise ValueError(f"{key} must be either all floats or all Tensors")
            names += [(f"{key}[{index}]", value) for index, value in enumerate(packed)]
    for name, value in names:
        if isinstance(value, torch.Tensor):
            if foreach:
                raise ValueError(f"{name} as a Tensor is not supported for capturable=False "
                                 "and foreach=True")
            if value.numel() != 1:
                raise ValueError(f"Tensor {name} must be 1-element")
    if fused and defaults.get("differentiable"):
        raise RuntimeError("`fused` does not support `differentiable`")
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
