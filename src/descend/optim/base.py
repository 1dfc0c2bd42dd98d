"""``RuleOptimizer``: a ``torch.optim.Optimizer`` that executes an update rule.

Everything ``torch.optim`` users rely on comes from the base class: param groups, ``state_dict``
and ``load_state_dict``, ``zero_grad``, hooks, closures, learning-rate schedulers and
``GradScaler``. This class adds only what a rule needs: validation of each group's
hyperparameters, lazy per-parameter state in the rule's slots (:mod:`descend.optim.param_state`),
per-step scalars computed once per group and step count, the non-finite-gradient guard, and the
choice of executor; :mod:`descend.optim.loading` checks what it loads and keeps its settings
through pickles. The rule's
extensions (see :mod:`descend.rules`) are handled here for every class: running products live in
each parameter's state beside its step counter, group state is advanced once per step for every
group before any parameter changes, and a matrix stage runs between the stage's elementwise
``prepare`` and the elementwise update, each elementwise part on the parameter's executor.

A step first checks everything it will touch (gradients against their parameters, state against
its parameters, non-finite values when asked to: :mod:`descend.optim.checks`), then works out
every group's step through the group's plan (:mod:`descend.optim.plan`) without changing
anything, and only then changes it: step counters, running products and group state advance as
:class:`~descend.kernels.state.StepState` s, committed with the parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from descend.kernels.executor import Executor, backend_names, executors_for
from descend.kernels.state import StepState
from descend.optim import sharded
from descend.optim.arguments import check_torch_arguments
from descend.optim.arguments import constructor_arguments as constructor_arguments
from descend.optim.caution import cautiously, check_cautious_rule, checked_cautious
from descend.optim.checks import (
    ComplexParameterError,
    ListedOnceCheck,
    NonFiniteGradientError,
    check_counters,
    check_existing_state,
    check_gradients,
    check_new_group,
    has_nonfinite_gradient,
    parameter_label,
    same_values,
    step_dtype,
    with_gradients,
)
from descend.optim.listed import ListedStep
from descend.optim.loading import (
    counters_as_tensors,
    load_converted,
    restore_settings,
    saved_settings,
)
from descend.optim.packing import create_eager_state, create_packed_state
from descend.optim.param_state import remove_created_state
from descend.optim.plan import GroupPlan
from descend.optim.precision import (
    ARGUMENT_DOCS,
    STATE_DICT_KEY,
    BlockCoding,
    requested_precision,
    saved_formats,
    with_precision_arguments,
)
from descend.optim.reductions import reduce_groups
from descend.optim.step_hooks import grad_mode, opaque_to_compile, patch_step
from descend.optim.weights import float32_weights, requested_weights
from descend.rules.spec import Rule, plain_value

#: What an optimizer does when a gradient holds inf or NaN.
NONFINITE_MODES = ("propagate", "raise", "skip")
#: Executors an optimizer can run its rule on (``backend=``).
BACKENDS = backend_names()


#: What a group's prepared step becomes: given every group's advanced group state, the step
#: worked out (nothing changed yet), as the function that performs it.
Staged = Callable[[Mapping[int, Mapping[str, Any]]], Callable[[], None]]


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
    - ``state_precision`` and ``seed``: how the state is stored (``"float32"``, ``"bfloat16"``
      with stochastic rounding, ``"bf16+ecc"``, blockwise ``"int8"``, for every slot or per
      slot) and the seed of the rounding's random stream (:mod:`descend.optim.precision`);
      ``param_precision``: bf16 weights stepped in float32 (:mod:`descend.optim.weights`).
      Every subclass's constructor takes them (added to its signature when it is defined).
    - ``cautious``: keep only the components of each step that agree in sign with the
      gradient, rescaled (Liang et al. 2024), on every executor: :mod:`descend.optim.caution`.

    These settings survive ``load_state_dict``, ``copy.deepcopy`` and pickling.
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
    #: Constructor arguments the generated docstrings describe besides the hyperparameters.
    argument_docs: ClassVar[dict[str, Any]] = dict(ARGUMENT_DOCS)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give the subclass's constructor ``state_precision``, ``seed`` and ``cautious``."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_precision_arguments", False):
            cls.__init__ = with_precision_arguments(init)  # type: ignore[method-assign]
        own = cls.__dict__.get("argument_docs")
        if own is not None:
            cls.argument_docs = {**own, **ARGUMENT_DOCS}

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        *,
        nonfinite: str = "propagate",
        backend: str = "auto",
    ) -> None:
        if nonfinite not in NONFINITE_MODES:
            raise ValueError(
                f"nonfinite={nonfinite!r} is invalid: expected one of "
                f"{', '.join(map(repr, NONFINITE_MODES))}"
            )
        check_torch_arguments(self.rule, defaults)
        self._precision, added = requested_precision(self)
        self.cautious = checked_cautious(added.get("cautious", False))
        self._weights = requested_weights(added)
        self._stream_step = 0
        self._executors: tuple[Executor, ...] = executors_for(backend)
        self.nonfinite = nonfinite
        self.backend = backend
        self.skipped_steps = 0
        self._reset_step_caches()
        # add_param_group, which Optimizer.__init__ calls per group, checks each parameter.
        # (Named, not super(): a drop-in class also derives from its torch.optim class, whose
        # __init__ takes that class's arguments.)
        torch.optim.Optimizer.__init__(self, params, defaults)
        rules = [self.rule, *(self.rule_for(group) for group in self.param_groups)]
        self._precision.check_slots(rules, type(self).__name__)
        if self.eager_state:
            create_eager_state(self)

    def _reset_step_caches(self) -> None:
        """What the step keeps between calls, none of it optimizer state: the plans, the
        group values last checked, and the parameters whose state was created but not yet
        stepped."""
        self._plans: dict[int, GroupPlan] = {}
        #: State entries created during the step under way: (parameter, key), or
        #: (parameter, None) for its whole state dict; removed if the step does not happen.
        self._created_keys: list[tuple[torch.Tensor, str | None]] = []
        self._checked_values: dict[int, tuple[Any, ...]] = {}
        self._unstepped: set[int] = set()
        self._check_listed_once = ListedOnceCheck()

    # -- hyperparameters and parameters -------------------------------------------------------

    def rule_for(self, group: Mapping[str, Any]) -> Rule:
        """The rule that steps this param group: the class's :attr:`rule`, unless a subclass
        gives some groups another (Muon's groups with ``use_muon=False`` run AdamW)."""
        return self.rule

    def rule_hypers(self, group: Mapping[str, Any]) -> dict[str, Any]:
        """The rule's hyperparameters read from a param group (packed keys such as ``betas``
        unpacked, see :attr:`Rule.group_keys`)."""
        return self.rule_for(group).hypers_from_group(group)

    def _step_hypers(
        self,
        group: Mapping[str, Any],
        hypers: Mapping[str, Any],
        advanced: Mapping[int, Mapping[str, Any]] | None = None,
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
        check_cautious_rule(rule, type(self).__name__, getattr(self, "cautious", False))
        params = param_group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        check_new_group(self, params, len(self.param_groups), rule)
        if rule.group_state is not None:
            for name, value in rule.group_state.initial.items():
                param_group.setdefault(name, value)
        super().add_param_group(param_group)

    def _executor_for(self, param: torch.Tensor) -> Executor | None:
        """The first of this optimizer's executors that supports ``param``."""
        probe = sharded.local(param)  # a DTensor's executor walks its local shard
        probe = torch.view_as_real(probe) if probe.is_complex() else probe
        for executor in self._executors:
            if executor.supports(probe):
                return executor
        return None

    # -- state --------------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """torch's pickled state plus descend's own settings (a copy or pickle keeps them)."""
        state = super().__getstate__()
        state.update(saved_settings(self))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled optimizer, or (``load_state_dict`` calls this) loaded state.

        Settings given to the constructor survive a load; groups from older checkpoints get the
        keys they lack from the defaults, and step counters saved as numbers become tensors, as
        ``torch.optim`` does.
        """
        state = dict(state)
        restore_settings(self, state)
        self._executors = executors_for(self.backend)
        self._reset_step_caches()
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        counters_as_tensors(self)

    def _patch_step_function(self) -> None:
        """Wrap this class's ``step`` in descend's hook wrapper, before torch would wrap it in
        its own (:mod:`descend.optim.step_hooks`: the same hooks, a cheaper profiler range)."""
        patch_step(type(self))
        super()._patch_step_function()

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim``'s state dict; with ``nonfinite`` other than ``"propagate"`` also the
        count of skipped steps (so the dict equals torch's, key for key, otherwise)."""
        saved = super().state_dict()
        if self.nonfinite != "propagate" or self.skipped_steps:
            saved["skipped_steps"] = self.skipped_steps
        if self._precision.compressed or self._weights.request:  # records the stream step
            saved[STATE_DICT_KEY] = saved_formats(self)
        return saved

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict saved by this class or by the matching ``torch.optim`` class.

        Every state tensor is checked against its parameter first: a checkpoint of another
        model raises ``ValueError`` naming the parameter, and nothing changes. State in
        another storage format is converted into this optimizer's
        (:func:`~descend.optim.loading.load_converted`).
        """
        load_converted(self, state_dict, super().load_state_dict)

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
        compiling = torch.compiler.is_compiling()
        with grad_mode(differentiable, compiling), float32_weights(self):
            if differentiable or not self._executors[0].compiled:
                self._step(differentiable)
            elif compiling:
                self._step_compiled()
            else:
                # Eager: the compile-opaque wrapper would only cost a few microseconds a step.
                self._step(False)
        return loss

    @opaque_to_compile
    def _step_compiled(self) -> None:
        """A step on compiled executors while ``torch.compile`` traces it: opaque (a graph
        break), since the kernels walk raw addresses."""
        self._step(False)

    def _step(self, differentiable: bool) -> None:
        work = [(group, *with_gradients(group["params"])) for group in self.param_groups]
        self._check_listed_once(self.param_groups)
        self._created_keys = []
        try:
            # Check everything first; change nothing until every group is ready.
            ready = [
                self._prepare_group(group, params, differentiable, grads)
                for group, params, grads in work
                if params
            ]
            if self.nonfinite != "propagate" and has_nonfinite_gradient(
                [p for _, params, _ in work for p in params], self.nonfinite, self._label
            ):
                remove_created_state(self)
                self.skipped_steps += 1
                return
            # Work out every group's step (group state, counters, kernels, scalars) without
            # changing anything, so that an error on the way leaves the optimizer as it was
            # (state created for this step is removed again) ...
            advanced = self._advanced_group_state()
            runs = [stage(advanced) for stage in ready]
        except BaseException:
            remove_created_state(self)
            raise
        self._created_keys = []
        # ... then change it.
        self._stream_step += 1
        for group in self.param_groups:
            group.update(advanced.get(id(group), ()))
        for run in runs:
            run()

    def _advanced_group_state(self) -> dict[int, dict[str, Any]]:
        """Every group's :class:`~descend.rules.spec.GroupState` advanced by one step (groups
        without gradients too, as the reference implementations do), by group id; the groups
        themselves are not changed. A reduction's groups advance the first one's state from
        the sums over all of them (:mod:`descend.optim.reductions`)."""
        if all(self.rule_for(group).group_state is None for group in self.param_groups):
            return {}  # the usual case, every step: nothing to advance or reduce
        advanced, reduced = {}, reduce_groups(self)
        for group in self.param_groups:
            rule = self.rule_for(group)
            if rule.group_state is not None:
                start, sums = reduced.get(id(group), (group, {}))
                current = {name: plain_value(start[name]) for name in rule.group_state.names}
                state = StepState(rule, np.empty(0), {}, current)
                after = state.advance({**self._checked_hypers(group), **sums})
                assert after.group is not None
                advanced[id(group)] = after.group
        return advanced

    def _checked_hypers(self, group: dict[str, Any]) -> dict[str, Any]:
        """The group's hyperparameters, checked against the rule whenever they changed since
        the last step (an edit of ``param_groups`` or a loaded state dict): ``ValueError``
        naming the bad value, before anything changes."""
        rule = self.rule_for(group)
        try:
            hypers = self.rule_hypers(group)
        except KeyError as missing:
            raise ValueError(
                f"parameter group {self._group_index(group)} has no "
                f"{missing.args[0]!r}: expected every hyperparameter of "
                f"{type(self).__name__}"
            ) from None
        except ValueError as error:
            raise ValueError(
                f"parameter group {self._group_index(group)}: {error}; nothing was updated"
            ) from None
        values = tuple(hypers.values())
        checked = self._checked_values.get(id(group))
        if checked is None or not same_values(checked, values):
            try:
                rule.validate(hypers, rule.display_names())
            except ValueError as error:
                raise ValueError(
                    f"parameter group {self._group_index(group)}: {error}; nothing was updated"
                ) from None
            self._checked_values[id(group)] = values
        return hypers

    def _group_index(self, group: Mapping[str, Any]) -> int:
        return next(i for i, candidate in enumerate(self.param_groups) if candidate is group)

    def _prepare_group(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        differentiable: bool = False,
        grads: list[torch.Tensor] | None = None,
    ) -> Staged:
        """Check one group's step; return the function that works it out (see
        :meth:`_step`). Every group steps through its plan: compiled blocks where an
        executor compiles the rule, the listed parameters (:mod:`descend.optim.listed`)
        through the executors' list calls."""
        hypers = self._checked_hypers(group)
        rule = self.rule_for(group)
        plan = self._plans.get(id(group))
        ready = None
        if plan is not None and plan.covers(group, hypers):
            ready = plan.prepare(params, self.state, self._label, grads)
        if plan is None or ready is None:
            plan = self._new_plan(group, params, hypers, rule, differentiable)
            ready = plan.prepare(params, self.state, self._label, grads)
            if ready is None:
                raise AssertionError("a freshly built plan does not cover its group")
        check_counters(ready.blocks, self._label)
        listed = ready.listed
        # The listed parameters are checked now too, so a bad one stops the step before any
        # change.
        rest = ListedStep(self, group, listed, hypers, differentiable) if listed else None
        planned, prepared = plan, ready

        def stage(advanced: Mapping[int, Mapping[str, Any]]) -> Callable[[], None]:
            step_hypers = self._step_hypers(group, hypers, advanced)
            run = planned.stage(prepared, step_hypers, self.cautious)
            run_rest = rest.stage(step_hypers) if rest is not None else None
            # Cautious: the blocks in their kernels, the listed parameters around their calls.
            run_rest = cautiously(run_rest, params, listed, hypers, self, differentiable)
            unstepped = self._unstepped

            def commit() -> None:
                run()
                if unstepped:
                    unstepped.difference_update(map(id, params))
                if run_rest is not None:
                    run_rest()

            return commit

        return stage

    def _new_plan(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        hypers: Mapping[str, Any],
        rule: Rule,
        differentiable: bool,
    ) -> GroupPlan:
        """A new plan of ``group`` (its parameters' state created and checked first): compiled
        blocks unless the step is differentiable, the backend compiles nothing or the rule
        has a matrix stage; then every parameter is listed."""
        compiled = not differentiable and self._executors[0].compiled and rule.stage is None
        check_gradients(params, group, self.sparse_gradients, type(self).__name__, self._label)
        check_existing_state(params, rule, self.state, self._label)
        if compiled:
            create_packed_state(self, params, hypers, group)
        plan = GroupPlan(
            group,
            self.state,
            rule,
            hypers,
            step_dtype(),
            self._executor_for,
            self._unstepped,
            wait_for_kernels=self.backend != "auto",
            compiled=compiled,
            coding=BlockCoding(self),
        )
        self._plans[id(group)] = plan
        return plan

    def _label(self, param: torch.Tensor) -> str:
        """How messages name a parameter (see :func:`~descend.optim.checks.parameter_label`)."""
        return parameter_label(self.param_groups, param)


__all__ = [
    "BACKENDS",
    "NONFINITE_MODES",
    "ComplexParameterError",
    "NonFiniteGradientError",
    "RuleOptimizer",
    "Staged",
]
