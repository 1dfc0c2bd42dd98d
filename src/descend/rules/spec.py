"""What a rule is: an elementwise update function plus the spec of its hyperparameters.

A rule's ``update`` is a pure function of one parameter element (or an array of them):

    update(p, g, *slots, **scalars) -> (p, *slots)

``slots`` are the per-element state tensors (momentum buffers, second-moment sums, ...) in the
order the rule declares them; ``scalars`` are hyperparameters and values that depend only on the
step (bias corrections, decayed learning rates), computed once per step by ``Rule.scalars``.
The function uses only arithmetic, ``if`` on scalars, and the primitives and helpers of
:mod:`descend.rules.elementwise`, so that NumPy arrays, torch tensors and compiled scalar loops
can all execute it unchanged.

Optional parts extend the model past one elementwise pass (see :mod:`descend.rules`): a slot
copied from the parameter (:attr:`Slot.from_parameter`), per-parameter running products
(:class:`RunningProduct`), per-group running scalars (:class:`GroupState`, also advanced from
sums over tensors: :mod:`descend.rules.reduction`) and a per-tensor stage before the update
(:class:`MatrixStage`), with matrix state refreshed every k steps where the method keeps some.

A :class:`Rule` is the math; its row in the registry (the names the optimizer goes by, how a
``torch.optim``-style param group packs its hyperparameters, the course's names for the NumPy
functional API, the learning-rate range a benchmark searches, its colour, ...) is its
:class:`~descend.rules.listing.Listing`, whose fields read as the rule's own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from descend.rules.hyper import Hyper, plain_value, plain_values, step_inputs
from descend.rules.listing import CourseForm, Listing

#: What an update computes on: a Python or NumPy number, a NumPy array, a torch tensor, or a
#: compiled executor's scalar. Rules are written once for all of them, so they are not narrowed.
Element = Any


def _always(hypers: Mapping[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class Slot:
    """A per-element state tensor of a rule.

    ``name`` is the key in an optimizer's per-parameter state (the same key ``torch.optim``
    uses where one exists). ``fill`` is the initial value: a number, or the name of a
    hyperparameter holding it. ``active`` says, from the hyperparameters, whether the slot exists
    at all (a momentum buffer exists only when momentum is non-zero). ``from_parameter``: the
    slot starts as a copy of its parameter instead (Schedule-Free's ``z``), and ``fill`` is
    ignored.
    """

    name: str
    fill: float | str = 0.0
    active: Callable[[Mapping[str, Any]], bool] = _always
    from_parameter: bool = False

    @property
    def unconditional(self) -> bool:
        """Whether the slot exists under every setting of the hyperparameters."""
        return self.active is _always

    def initial_value(self, hypers: Mapping[str, Any]) -> float:
        """The value every element of this slot starts from (unless :attr:`from_parameter`)."""
        return float(hypers[self.fill]) if isinstance(self.fill, str) else float(self.fill)

    def initial(self, param: Any, hypers: Mapping[str, Any]) -> Any:
        """The slot's first value for ``param`` (a torch tensor or a NumPy array).

        A complex parameter is stepped as its real view (real and imaginary parts as two
        real elements), so each part starts at the fill value: ``value + value * 1j``, as
        ``torch.optim.Adagrad`` starts a complex accumulator. A complex run then equals the
        run on ``torch.view_as_real`` of the parameter.
        """
        if self.from_parameter:
            clone = getattr(param, "clone", None)
            if clone is not None:  # torch
                import torch

                return clone(memory_format=torch.preserve_format)
            return np.array(param, copy=True)
        value: float | complex = self.initial_value(hypers)
        full_like = getattr(param, "new_full", None)
        if full_like is not None:  # torch
            import torch

            if param.is_complex():
                value = complex(value, value)
            return torch.full_like(param, value, memory_format=torch.preserve_format)
        if np.iscomplexobj(param):
            value = complex(value, value)
        return np.full_like(param, value)


@dataclass(frozen=True)
class Constraint:
    """A condition across hyperparameters, with the message shown when it fails."""

    holds: Callable[[Mapping[str, Any]], bool]
    message: str


def _no_step_scalars(hypers: Mapping[str, Any], step: int) -> dict[str, float]:
    return {}


@dataclass(frozen=True)
class RunningProduct:
    """Per-parameter scalar state: a running product of one factor per update.

    Optimizers keep it as ``torch.optim`` keeps a step counter: a 0-d tensor under ``name`` in
    each parameter's state (``torch.optim.NAdam``'s ``mu_product``), in the step counter's
    dtype. It starts at ``initial``; each update multiplies it by ``factor(hypers, step)`` in
    that dtype (so a float32 product rounds as torch's does), and then ``step_scalars`` sees its
    new value under ``name``. The rule must count steps.
    """

    name: str
    factor: Callable[[Mapping[str, Any], int], float]
    initial: float = 1.0


@dataclass(frozen=True)
class GroupState:
    """Per-group running scalars, kept in the param group and advanced once per step.

    ``initial`` names each scalar (a param-group key, as Schedule-Free's ``k``,
    ``weight_sum`` and ``lr_max``) with its starting value. Every optimizer step calls
    ``advance(values)`` once for every group, before any parameter changes: ``values`` holds the
    group's hyperparameters and the scalars' current values, and it returns their next values
    (it may also return further keys to record, such as a scheduled learning rate). Then
    ``step_scalars`` sees the advanced values with the hyperparameters.
    """

    initial: Mapping[str, Any]
    advance: Callable[[Mapping[str, Any]], dict[str, Any]]

    @property
    def names(self) -> tuple[str, ...]:
        """The group keys this state keeps."""
        return tuple(self.initial)


def _never_due(hypers: Mapping[str, Any], step: int) -> bool:
    return False


@dataclass(frozen=True)
class MatrixStage:
    """A per-tensor stage that runs before the elementwise update: Muon's orthogonalization,
    or a preconditioner with matrices of its own (Shampoo's Kronecker factors, SOAP's
    eigenbases).

    A step of a rule with a stage runs, for each parameter:

    1. ``prepare(u, g, *slots, **scalars) -> (u, *slots)``: elementwise, in the rule language,
       compiled by every executor exactly like an ``update`` (``u`` takes the place of ``p``: a
       fresh buffer the stage fills, e.g. with the momentum it orthogonalizes; with
       ``reads_parameter`` it starts as a copy of the parameter, for a prepare that reads it,
       such as an L2 term ``g + lambda x``);
    2. with ``matrices`` only, ``statistics(u, g, hypers, state)``: every step, the cheap
       torch update of the parameter's matrix state (``L <- L + G G^T``);
    3. with ``matrices`` only, ``refresh(hypers, state)`` when ``refresh_due(hypers, step)``
       and not ``refresh_after_update``: the expensive torch work (eigendecompositions, inverse
       roots) done every k-th step (``precondition_frequency``);
    4. ``function``, a function of the whole tensor ``u`` (matrix products, norms; torch
       operations) returning a tensor of ``u``'s dtype and shape: ``function(u, hypers)``, or
       with ``matrices`` ``function(u, g, hypers, state)``;
    5. the rule's ``update(p, d, *slots, **scalars)``: elementwise, with ``d`` in place of the
       gradient;
    6. with ``matrices`` and ``refresh_after_update``: the refresh, when due, after the update
       (SOAP renews the eigenbasis its next step projects into).

    ``matrices(param, hypers) -> {key: value}`` creates the parameter's matrix state when its
    slots are created (tensors on the parameter's device, or lists of them): it lives in the
    optimizer's per-parameter ``state`` beside the slots, under those keys (the reference
    implementation's, so that checkpoints interchange), and ``state`` above is that mapping
    (slots included: a refresh may re-order a slot into a new basis). ``step`` counts the
    parameter's updates, the current one included; the matrix parts' ``hypers`` hold the
    hyperparameters and this step's step scalars (what the step changes, such as a weight
    that is 0 on a statistics-only first step). The elementwise parts are all an executor
    compiles; the matrix work stays in torch, on the parameter's device.

    Parameters must have ``ndim`` dimensions (``None``: any number, for a stage that handles
    vectors and scalars itself). ``tensor_hypers(hypers, ndim)`` gives what a tensor of ``ndim``
    dimensions takes in place of its group's hyperparameters (MARS's vectors: AdamW's rates).
    """

    prepare: Callable[..., tuple[Any, ...]]
    function: Callable[..., Any]
    ndim: int | None = 2
    matrices: Callable[[Any, Mapping[str, Any]], dict[str, Any]] | None = None
    statistics: Callable[[Any, Any, Mapping[str, Any], MutableMapping[str, Any]], None] | None = (
        None
    )
    refresh: Callable[[Mapping[str, Any], MutableMapping[str, Any]], None] | None = None
    refresh_due: Callable[[Mapping[str, Any], int], bool] = _never_due
    refresh_after_update: bool = False
    reads_parameter: bool = False
    tensor_hypers: Callable[[Mapping[str, Any], int], Mapping[str, Any]] | None = None


@dataclass(frozen=True, eq=False)
class Rule:
    """An optimizer's update rule: the elementwise math, its hyperparameters and state, and
    its row in the registry (:attr:`listing`).

    ``step_scalars(hypers, step)`` returns the values that depend only on the step number
    (``step`` counts updates including the current one, so the first update has ``step == 1``).
    ``counts_steps`` says whether optimizers keep a ``step`` counter per parameter (as
    ``torch.optim.Adam`` does); a rule that does not count steps (``torch.optim.SGD`` keeps
    none) sees ``step == 1`` on the first update after its slots were created and a larger value
    afterwards.

    The :class:`~descend.rules.listing.Listing`'s fields read as the rule's own
    (``rule.aliases``, ``rule.lr_range``, ``rule.course``, ...). Rules compare by identity.
    """

    name: str
    update: Callable[..., tuple[Any, ...]]
    hypers: tuple[Hyper, ...]
    slots: tuple[Slot, ...] = ()
    step_scalars: Callable[[Mapping[str, Any], int], dict[str, float]] = _no_step_scalars
    constraints: tuple[Constraint, ...] = ()
    counts_steps: bool = True
    products: tuple[RunningProduct, ...] = ()
    group_state: GroupState | None = None
    stage: MatrixStage | None = None
    #: The name of ``update``'s first argument: ``p``, or ``u`` for a stage's ``prepare``.
    first_operand: str = "p"
    #: The rule's row in the registry: names, presentation, packing, tuning.
    listing: Listing = field(default_factory=Listing)

    def __post_init__(self) -> None:
        parameters = inspect.signature(self.update).parameters.items()
        positional = [
            name
            for name, parameter in parameters
            if parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        ]
        expected = [self.first_operand, "g", *(slot.name for slot in self.slots)]
        if positional != expected:
            raise TypeError(f"rule {self.name!r}: update takes {positional}, expected {expected}")
        # Read on every optimizer step: computed once here, not by inspecting each time.
        object.__setattr__(
            self,
            "scalar_names",
            tuple(
                name
                for name, parameter in parameters
                if parameter.kind is inspect.Parameter.KEYWORD_ONLY
            ),
        )
        names = {hyper.name for hyper in self.hypers}
        for key, packed in self.group_keys.items():
            if not set(packed) <= names:
                raise TypeError(
                    f"rule {self.name!r}: group key {key!r} packs "
                    f"{sorted(set(packed) - names)}, which are not hyperparameters"
                )
        if self.products and not self.counts_steps:
            raise TypeError(f"rule {self.name!r}: running products need a rule that counts steps")
        prepare = None
        if self.stage is not None:
            prepare = Rule(
                name=f"{self.name}.prepare",
                update=self.stage.prepare,
                hypers=self.hypers,
                slots=self.slots,
                step_scalars=self.step_scalars,
                counts_steps=self.counts_steps,
                products=self.products,
                first_operand="u",
            )
        object.__setattr__(self, "prepare_rule", prepare)

    #: Keyword-only arguments of ``update``: the scalars it reads, in signature order.
    scalar_names: tuple[str, ...] = field(init=False, default=())
    #: The stage's ``prepare`` as a rule of its own (same hyperparameters, slots and step
    #: scalars), which executors compile like any rule; ``None`` without a stage.
    prepare_rule: Rule | None = field(init=False, default=None)

    @property
    def summary(self) -> str:
        """One line on what the rule does (:attr:`Listing.summary`)."""
        return self.listing.summary

    @property
    def aliases(self) -> tuple[str, ...]:
        """Other names the rule goes by (:attr:`Listing.aliases`)."""
        return self.listing.aliases

    @property
    def group_keys(self) -> Mapping[str, tuple[str, ...]]:
        """Param-group keys that pack hyperparameters (:attr:`Listing.group_keys`)."""
        return self.listing.group_keys

    @property
    def course(self) -> CourseForm | None:
        """The functional API's names, if offered there (:attr:`Listing.course`)."""
        return self.listing.course

    @property
    def lr_range(self) -> tuple[float, float]:
        """The learning-rate range a benchmark searches (:attr:`Listing.lr_range`)."""
        return self.listing.lr_range

    @property
    def lecture(self) -> bool:
        """Whether the rule is part of the lecture's tour (:attr:`Listing.lecture`)."""
        return self.listing.lecture

    @property
    def reference(self) -> str:
        """Where the method comes from (:attr:`Listing.reference`)."""
        return self.listing.reference

    @property
    def year(self) -> int:
        """The year of that publication (:attr:`Listing.year`)."""
        return self.listing.year

    def display_names(self) -> dict[str, str]:
        """How errors name each hyperparameter: as the user wrote it (``betas[0]``, not
        ``beta1``)."""
        return {
            name: f"{key}[{index}]"
            for key, packed in self.group_keys.items()
            for index, name in enumerate(packed)
        }

    def hypers_from_group(self, group: Mapping[str, Any]) -> dict[str, Any]:
        """The rule's hyperparameters read from a param group, unpacking :attr:`group_keys`.

        Raises ``ValueError`` when a packed key is not a sequence of the right length.
        """
        hypers: dict[str, Any] = {}
        for key, packed in self.group_keys.items():
            value = group[key]
            if not isinstance(value, (tuple, list)) or len(value) != len(packed):
                raise ValueError(
                    f"{key}={value!r} is invalid: expected a sequence of "
                    f"{len(packed)} values ({', '.join(packed)})"
                )
            hypers.update(zip(packed, value, strict=True))
        for hyper in self.hypers:
            if hyper.name not in hypers:
                hypers[hyper.name] = group[hyper.name]
        return hypers

    @property
    def defaults(self) -> dict[str, Any]:
        """Every hyperparameter at its default value."""
        return {hyper.name: hyper.default for hyper in self.hypers}

    def hyper(self, name: str) -> Hyper:
        """The spec of one hyperparameter."""
        for hyper in self.hypers:
            if hyper.name == name:
                return hyper
        raise KeyError(name)

    def validate(
        self, hypers: Mapping[str, Any], shown: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Fill defaults, check every value and constraint; return the complete mapping.

        Raises ``ValueError`` naming the first bad value (under its name in ``shown``, if
        given: see :meth:`display_names`) and what is allowed.
        """
        known = {hyper.name for hyper in self.hypers}
        unknown = sorted(set(hypers) - known)
        if unknown:
            raise ValueError(
                f"{self.name}: unknown hyperparameter(s) {', '.join(unknown)}; "
                f"valid: {', '.join(sorted(known))}"
            )
        complete = self.defaults | dict(hypers)
        shown = shown or {}
        for hyper in self.hypers:
            complete[hyper.name] = hyper.check(complete[hyper.name], shown.get(hyper.name))
        for constraint in self.constraints:
            if not constraint.holds(complete):
                raise ValueError(f"{self.name}: {constraint.message}")
        return complete

    def active_slots(self, hypers: Mapping[str, Any]) -> tuple[Slot, ...]:
        """The slots that exist under these hyperparameters."""
        return tuple(slot for slot in self.slots if slot.active(hypers))

    def scalars(
        self, hypers: Mapping[str, Any], step: int, differentiable: bool = False
    ) -> dict[str, Any]:
        """Every keyword argument ``update`` takes, for this step, as Python scalars.

        ``hypers`` may also hold the parameter's running products and the group's state (as
        optimizers pass them); any that are missing take the values they would have after
        ``step`` updates at these hyperparameters (see :meth:`state_after`).

        A hyperparameter given as a tensor (``lr=torch.tensor(0.01)``) stays one while the step
        scalars are computed from it, so that arithmetic happens in the tensor's dtype, as
        ``torch.optim`` does it (``1 - lr * weight_decay`` rounded to float32 for a float32
        ``lr``). With ``differentiable`` such scalars stay tensors (with their autograd
        history), for a step that autograd differentiates.
        """
        values = step_inputs(hypers, differentiable)
        if any(name not in values for name in self.state_names()):
            values = {**self.state_after(values, step), **values}
        values.update(self.step_scalars(values, step))
        if differentiable:
            return {name: values[name] for name in self.scalar_names}
        return {name: plain_value(values[name]) for name in self.scalar_names}

    def state_after(self, hypers: Mapping[str, Any], step: int) -> dict[str, Any]:
        """The running products and group state after ``step`` updates at ``hypers``
        (products in float64)."""
        values: dict[str, Any] = {}
        for product in self.products:
            value = product.initial
            for past in range(1, step + 1):
                value *= product.factor(hypers, past)
            values[product.name] = value
        if self.group_state is not None:
            group = dict(self.group_state.initial)
            for _ in range(step):
                group.update(self.group_state.advance({**hypers, **group}))
            values.update(group)
        return values

    def next_state(
        self, hypers: Mapping[str, Any], step: int, current: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The running products and group state after update ``step`` at ``hypers``, from
        ``current``, their values after the update before (a missing one: its initial value).
        Products are Python floats; the group state is whatever ``advance`` returns."""
        plain = plain_values(hypers)
        state: dict[str, Any] = {}
        for product in self.products:
            value = float(plain_value(current.get(product.name, product.initial)))
            state[product.name] = value * product.factor(plain, step)
        if self.group_state is not None:
            group = {
                name: current.get(name, initial)
                for name, initial in self.group_state.initial.items()
            }
            state.update(group)
            state.update(self.group_state.advance({**plain, **group}))
        return state

    def state_names(self) -> tuple[str, ...]:
        """Names of the running products and group state: what ``step_scalars`` reads besides
        the hyperparameters."""
        group = self.group_state.names if self.group_state is not None else ()
        return (*(product.name for product in self.products), *group)

    def describe(self) -> str:
        """A table of the hyperparameters: name, default, valid range, meaning."""
        lines = [f"{self.name}: {self.summary}"]
        for hyper in self.hypers:
            lines.append(f"  {hyper.name}={hyper.default!r}  ({hyper.describe()})  {hyper.doc}")
        return "\n".join(lines)


__all__ = [
    "Constraint",
    "CourseForm",
    "Element",
    "GroupState",
    "Hyper",
    "Listing",
    "MatrixStage",
    "Rule",
    "RunningProduct",
    "Slot",
    "plain_value",
]
