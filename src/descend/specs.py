"""Short text specs for optimizers and schedules, as typed on the command line.

    adam:lr=1e-2                        descend.Adam(params, lr=1e-2)
    nesterov:lr=1e-3,momentum=0.9       descend.Nesterov(params, lr=1e-3, momentum=0.9)
    adam:lr=1e-3,betas=(0.9,0.99)       tuples in parentheses
    torch.optim.SGD:lr=0.1,momentum=0.9 any torch.optim class by its full name
    functional.adam:learning_rate=1e-2  the NumPy functional API (parse_method only)
    exponential:k=0.01                  schedules: see SCHEDULES

A bad spec fails at parse time with a ``ValueError`` that lists what is valid (and, for a
misspelt name, the closest valid one). Specs are shared by the lab (``descend race``), the
benchmark (``descend bench``) and the command line. An optimizer under a schedule is a
:class:`ContenderSpec`, labelled ``adam:lr=1e-2+exponential:k=0.01`` in the lab's figures and
the benchmark's tables alike.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from descend import schedules
from descend.rules import NAMES, RULES, RegistryView
from descend.suggest import unknown_arguments, unknown_name

if TYPE_CHECKING:
    import torch

    from descend import functional

# torch, the optimizer classes and the functional API are imported where a spec is built, not
# here: a command line that only checks names (``descend race --help``, a misspelt optimizer)
# answers before torch loads.


def _optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    from descend.optim.generated import optimizer_class

    return {name: optimizer_class(rule) for name, rule in NAMES.items()}


#: descend optimizers by short name: every name and alias of each rule in the registry, with its
#: class (``sgd``, ``sgd_momentum`` or ``momentum``, ``adam``, ...; a rule without a written
#: class gets one made from it). Read from the registry at each use, so a rule registered at run
#: time is a spec at once.
OPTIMIZERS: Mapping[str, type[torch.optim.Optimizer]] = RegistryView(_optimizers)

#: Default learning-rate search range (log-uniform) by optimizer name, for tuning and the range
#: test: each rule's own ``lr_range``.
LR_RANGES: Mapping[str, tuple[float, float]] = RegistryView(
    lambda: {name: rule.lr_range for name, rule in NAMES.items()}
)
#: The range for optimizers not listed above (``torch.optim.<Class>``).
DEFAULT_LR_RANGE = (1e-5, 1.0)

#: ``torch.optim`` classes a spec cannot name: every runner of specs calls ``step()`` on dense
#: gradients, and these need something else.
UNSUPPORTED_TORCH = {
    "LBFGS": "it needs a closure that re-evaluates the loss at every step (use "
    "descend.LBFGS or descend.secondorder from Python)",
    "SparseAdam": "it needs sparse gradients (torch.nn.Embedding(sparse=True)); use adam",
}

#: Schedules by short name, each built from the optimizer's base learning rate.
SCHEDULES: dict[str, Callable[..., schedules.Schedule]] = {
    "constant": lambda base_lr: schedules.constant(base_lr),
    "step": lambda base_lr, step_size, gamma=0.5: schedules.step_decay(
        base_lr, int(step_size), gamma
    ),
    "exponential": lambda base_lr, k: schedules.exponential_decay(base_lr, k),
    "inverse_time": lambda base_lr, k: schedules.inverse_time_decay(base_lr, k),
    "1/t": lambda base_lr, k: schedules.inverse_time_decay(base_lr, k),
    "cosine": lambda base_lr, total_steps, final_lr=0.0: schedules.cosine_decay(
        base_lr, int(total_steps), final_lr
    ),
    "warmup_cosine": lambda base_lr, warmup_steps, total_steps, final_lr=0.0: schedules.warmup_then(
        schedules.cosine_decay(base_lr, int(total_steps), final_lr), int(warmup_steps)
    ),
}


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split on ``separator`` outside parentheses and brackets; empty pieces are dropped."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def parse_value(text: str) -> Any:
    """A spec value as Python: a literal (``1e-3``, ``(0.9,0.99)``, ``true``, ``none``) or,
    failing that, the text itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _parse_arguments(spec: str, body: str) -> dict[str, Any]:
    arguments = {}
    for item in split_top_level(body):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ValueError(
                f"malformed spec {spec!r}: expected name:key=value,key=value, got {item!r}"
            )
        key = key.strip()
        # Taking the last of two values would run a setting other than one of those typed.
        if key in arguments:
            raise ValueError(
                f"malformed spec {spec!r}: {key!r} is given twice; expected each key once"
            )
        arguments[key] = parse_value(value.strip())
    return arguments


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``name[:key=value,...]`` into the name and its arguments (values as Python literals).

    Shared by optimizer, schedule and problem specs.
    """
    name, _, body = spec.strip().partition(":")
    return name.strip(), _parse_arguments(spec, body)


def split_specs(texts: Iterable[str]) -> list[str]:
    """Specs from comma-separated lists (``"sgd,adam:betas=(0.9,0.99)"``); ``;`` also separates.

    A spec's own arguments also use commas (``nesterov:lr=1e-3,momentum=0.9``): a piece with
    ``=`` but no ``:`` continues the spec before it.
    """
    specs: list[str] = []
    for text in texts:
        for piece in split_top_level(text.replace(";", ",")):
            if specs and "=" in piece and ":" not in piece.split("=", 1)[0]:
                specs[-1] += "," + piece
            else:
                specs.append(piece)
    return specs


def default_lr_range(name: str) -> tuple[float, float]:
    """The log-uniform learning-rate range to search for optimizer ``name``."""
    return LR_RANGES.get(name, DEFAULT_LR_RANGE)


@dataclass(frozen=True)
class _Spec:
    """What every parsed spec keeps: the text as typed and the name before the colon."""

    text: str
    name: str

    @property
    def label(self) -> str:
        """A short name for tables and legends: the spec as typed."""
        return self.text


@dataclass(frozen=True)
class OptimizerSpec(_Spec):
    """A parsed optimizer spec: which class, with which arguments, under which label."""

    cls: type[torch.optim.Optimizer]
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def lr(self) -> float:
        """The learning rate this spec sets, or the class's default."""
        if "lr" in self.arguments:
            return float(self.arguments["lr"])
        return float(inspect.signature(self.cls.__init__).parameters["lr"].default)

    def build(self, params: Iterable) -> torch.optim.Optimizer:
        """The optimizer over ``params``. A class that steps only some parameters itself
        (Muon: 2-D weights) gets them grouped by its ``split_parameters``."""
        split = getattr(self.cls, "split_parameters", None)
        if split is not None:
            params = split(params)
        return self.cls(params, **self.arguments)

    def with_arguments(self, **arguments: Any) -> OptimizerSpec:
        """The same spec with some arguments replaced (used by tuning)."""
        merged = {**self.arguments, **arguments}
        body = ",".join(f"{key}={value!r}" for key, value in merged.items())
        return OptimizerSpec(
            f"{self.name}:{body}" if body else self.name, self.name, self.cls, merged
        )


def optimizer_names() -> list[str]:
    """Every short name a spec may start with (besides ``torch.optim.<Class>``): the keys of
    :data:`OPTIMIZERS`, read from the registry without building a class."""
    return list(NAMES)


def _torch_optimizer_names() -> list[str]:
    import torch

    return sorted(
        name
        for name, value in vars(torch.optim).items()
        if inspect.isclass(value)
        and issubclass(value, torch.optim.Optimizer)
        and value is not torch.optim.Optimizer
        and name not in UNSUPPORTED_TORCH
    )


def _torch_optimizer(name: str) -> type[torch.optim.Optimizer] | None:
    import torch

    attribute = getattr(torch.optim, name.removeprefix("torch.optim."), None)
    if inspect.isclass(attribute) and issubclass(attribute, torch.optim.Optimizer):
        return attribute
    return None


def parse_optimizer(spec: str) -> OptimizerSpec:
    """Parse ``name[:key=value,...]`` into an :class:`OptimizerSpec`, checking it fully.

    The class is built once on a dummy parameter, so out-of-range values fail here, with the
    optimizer's own message, rather than in the middle of a run.
    """
    name, _, body = spec.strip().partition(":")
    name = name.strip()
    if name.startswith("torch.optim."):
        short = name.removeprefix("torch.optim.")
        if short in UNSUPPORTED_TORCH:
            raise ValueError(f"{name} cannot run from a spec: {UNSUPPORTED_TORCH[short]}")
        cls = _torch_optimizer(name)
        if cls is None:
            raise unknown_name(
                "torch optimizer",
                name,
                [f"torch.optim.{n}" for n in _torch_optimizer_names()],
                spec,
            )
    elif name in NAMES:
        cls = OPTIMIZERS[name]
    else:
        raise unknown_name(
            "optimizer",
            name,
            list(NAMES),
            spec,
            also="or torch.optim.<Class> such as torch.optim.SGD",
        )
    arguments = _parse_arguments(spec, body)
    accepted = [
        p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "params")
    ]
    unknown = sorted(set(arguments) - set(accepted))
    if unknown:
        raise unknown_arguments(name, unknown, accepted, spec)
    parsed = OptimizerSpec(spec.strip(), name, cls, arguments)
    import torch

    try:
        # A vector and a matrix: a class that steps matrices only (Muon) checks its own
        # group's arguments too.
        parsed.build([torch.zeros(1, requires_grad=True), torch.zeros(2, 2, requires_grad=True)])
    except (TypeError, ValueError) as error:
        raise ValueError(f"invalid spec {spec!r}: {error}") from None
    return parsed


@dataclass(frozen=True)
class ScheduleSpec(_Spec):
    """A parsed schedule spec; :meth:`build` makes the schedule for a base learning rate."""

    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def constant(self) -> bool:
        """Whether the rate stays at its base value (the ``constant`` schedule)."""
        return self.name == "constant"

    def build(self, base_lr: float) -> schedules.Schedule:
        """The schedule starting from ``base_lr``."""
        return SCHEDULES[self.name](base_lr, **self.arguments)

    def completed(self, defaults: Mapping[str, Any]) -> ScheduleSpec:
        """This schedule with each argument its text leaves out taken from ``defaults``, checked
        as :func:`parse_schedule` checks; the text, and so the label, stays as typed."""
        merged = {**defaults, **self.arguments}
        body = ",".join(f"{key}={value!r}" for key, value in merged.items())
        checked = parse_schedule(f"{self.name}:{body}" if body else self.name)
        return ScheduleSpec(self.text, self.name, checked.arguments)


def parse_schedule(spec: str, *, complete: bool = True) -> ScheduleSpec:
    """Parse ``name[:key=value,...]`` into a :class:`ScheduleSpec`, checking it fully.

    With ``complete=False`` the spec may leave out arguments that a run fills in later (the
    benchmark takes a cosine's ``total_steps`` from each task's length, see
    :meth:`ScheduleSpec.completed`); the name and the arguments it gives are still checked.
    """
    name, _, body = spec.strip().partition(":")
    name = name.strip()
    if name not in SCHEDULES:
        raise unknown_name("schedule", name, list(SCHEDULES), spec)
    parsed = ScheduleSpec(spec.strip(), name, _parse_arguments(spec, body))
    signature = inspect.signature(SCHEDULES[name])
    takes = [p for p in signature.parameters if p != "base_lr"]
    unknown = sorted(set(parsed.arguments) - set(takes))
    if unknown:
        raise unknown_arguments(f"schedule {name}", unknown, takes, spec.strip())
    try:
        if complete:
            parsed.build(1.0)
        else:
            signature.bind_partial(1.0, **parsed.arguments)
    except TypeError as error:
        expected = ", ".join(p for p in signature.parameters if p != "base_lr")
        raise ValueError(f"invalid schedule spec {spec!r}: {name} takes {expected}") from error
    except ValueError as error:
        raise ValueError(f"invalid schedule spec {spec!r}: {error}") from None
    return parsed


#: Prefix of specs that run through the NumPy functional API.
FUNCTIONAL_PREFIX = "functional."


@dataclass(frozen=True)
class FunctionalOptimizerSpec(_Spec):
    """A parsed ``functional.<name>:key=value`` spec: a NumPy update and its starting config.

    Arguments are the functional API's config keys (``learning_rate``, ``momentum``, ...).
    """

    update: functional.FunctionalSpec
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def lr(self) -> float:
        """The learning rate this spec sets, or the function's default."""
        return float(self.arguments.get("learning_rate", self.update.defaults["learning_rate"]))

    def config(self) -> dict[str, Any]:
        """A fresh config dict to start from."""
        return dict(self.arguments)


def _functional_updates() -> dict[str, functional.FunctionalSpec]:
    from descend import functional

    return dict(functional.UPDATES)


#: The functional updates a spec may name, by course name (read from the registry).
FUNCTIONAL_UPDATES: Mapping[str, functional.FunctionalSpec] = RegistryView(_functional_updates)


def functional_names() -> list[str]:
    """Every ``functional.<name>`` a spec may start with: each rule's course form, read from
    the registry without loading the functional API."""
    return [FUNCTIONAL_PREFIX + rule.course.name for rule in RULES.values() if rule.course]


def _parse_functional(spec: str) -> FunctionalOptimizerSpec:
    name, arguments = parse_spec(spec)
    check_method_name(spec)
    update = FUNCTIONAL_UPDATES[name.removeprefix(FUNCTIONAL_PREFIX)]
    parsed = FunctionalOptimizerSpec(spec.strip(), name, update, arguments)
    try:
        update(np.zeros(1), np.zeros(1), parsed.config())
    except (TypeError, ValueError) as error:
        raise ValueError(f"invalid spec {spec!r}: {error}") from None
    return parsed


def parse_method(spec: str) -> OptimizerSpec | FunctionalOptimizerSpec:
    """Parse any optimizer spec the lab can run: a descend or ``torch.optim`` class (see

    :func:`parse_optimizer`) or a ``functional.<name>`` NumPy update.
    """
    if spec.strip().startswith(FUNCTIONAL_PREFIX):
        return _parse_functional(spec)
    check_method_name(spec)
    return parse_optimizer(spec)


def check_method_name(spec: str) -> None:
    """Raise the error :func:`parse_method` gives for a spec whose optimizer name is unknown,
    with the closest name, without building anything (and so without loading torch): a command
    line checks every name before it starts the first run."""
    name = spec.strip().partition(":")[0].strip()
    if name.startswith(FUNCTIONAL_PREFIX):
        if name not in functional_names():
            raise unknown_name("functional update", name, functional_names(), spec)
    elif not name.startswith("torch.optim.") and name not in NAMES:
        raise unknown_name(
            "optimizer",
            name,
            [*NAMES, *functional_names()],
            spec,
            also="or torch.optim.<Class> such as torch.optim.SGD, or functional.<name> "
            "such as functional.adam",
        )


#: What joins the parts of a contender's label: ``adam:lr=0.01+cosine``.
LABEL_JOIN = "+"


@dataclass(frozen=True)
class ContenderSpec:
    """An optimizer under a learning-rate schedule, and the label tables and legends give it.

    This is what the lab races and the benchmark tunes; each adds its own part by composition:
    the race weight averaging (:class:`descend.lab.runner.Contender`), the benchmark the
    hyperparameters to search (:class:`descend.bench.contenders.BenchContender`). ``schedule``
    is None for a constant rate; ``name``, when given, replaces the label.
    """

    optimizer: OptimizerSpec | FunctionalOptimizerSpec
    schedule: ScheduleSpec | None = None
    name: str | None = None

    @classmethod
    def parse(
        cls, optimizer: str, schedule: str | None = None, name: str | None = None
    ) -> ContenderSpec:
        """Build from spec texts (any spec :func:`parse_method` takes, and a schedule)."""
        return cls(parse_method(optimizer), parse_schedule(schedule) if schedule else None, name)

    @property
    def label(self) -> str:
        """The name if given, else the optimizer spec and, unless the rate is constant, the
        schedule spec, as typed: ``adam:lr=0.01+exponential:k=0.1``."""
        return self.labelled()

    def labelled(self, *additions: str) -> str:
        """The label with what a layer adds to the runs (``average(0.9)``) joined to it the
        same way; a given name stands alone."""
        if self.name:
            return self.name
        parts = [self.optimizer.label]
        if self.schedule is not None and not self.schedule.constant:
            parts.append(self.schedule.label)
        return LABEL_JOIN.join([*parts, *additions])
