"""What the playground page lets one set, and how each setting reads from its query string.

Every rule of :data:`descend.rules.RULES` gets a slider per hyperparameter, derived from its spec
(:class:`~descend.rules.spec.Hyper`): its default, its valid range and its meaning. Where a spec
leaves a range open (a learning rate has no upper bound), :data:`SPANS` says how far the slider
reaches; the server checks every value against the spec itself, so a URL cannot ask for what
the rule refuses. The problems are the lab's registered ones that offer themselves to the page
(:attr:`~descend.lab.problems.Problem.playground`), each with a slider for every setting whose
declaration gives one (:attr:`~descend.lab.problems.Param.slider`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from descend import rules
from descend.lab import problems
from descend.rules.spec import Hyper, Rule
from descend.rules.vectors import vector_refusal
from descend.specs import SCHEDULES, parse_schedule, parse_spec
from descend.suggest import closest


@dataclass(frozen=True)
class Slider:
    """One control: ``kind`` is ``"float"``, ``"int"`` or ``"bool"`` (a checkbox); a float
    slider moves on a ``"log"`` or ``"linear"`` ``scale`` from ``low`` to ``high``, and
    ``zero`` adds an exact 0 at the low end of a log slider."""

    name: str
    doc: str
    default: Any
    low: float = 0.0
    high: float = 1.0
    scale: str = "linear"
    kind: str = "float"
    zero: bool = False
    #: The exact 0 at the low end stands for ``None`` (an optional hyperparameter, off).
    optional: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the page."""
        return {
            "name": self.name,
            "doc": self.doc,
            "default": 0 if self.default is None else self.default,
            "low": self.low,
            "high": self.high,
            "scale": self.scale,
            "kind": self.kind,
            "zero": self.zero,
        }

    def check(self, value: Any) -> Any:
        """``value`` as this control's kind, within its span; ``ValueError`` names the value
        and what is allowed."""
        if self.optional and (value is None or (value == 0 and not isinstance(value, bool))):
            return None
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise ValueError(f"{self.name}={value!r} is invalid: expected True or False")
        allowed = (
            f"{'an integer' if self.kind == 'int' else 'a number'} from {self.low:g} "
            f"to {self.high:g}" + (" or 0" if self.zero else "")
        )
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (self.kind == "int" and not float(value).is_integer())
        ):
            raise ValueError(f"{self.name}={value!r} is invalid: expected {allowed}")
        if not (self.low <= value <= self.high or (self.zero and value == 0)):
            raise ValueError(f"{self.name}={value!r} is out of range: expected {allowed}")
        return int(value) if self.kind == "int" else float(value)


#: How far a slider reaches for hyperparameters whose spec leaves the range open: name ->
#: (low, high, scale, exact zero allowed).
SPANS: dict[str, tuple[float, float, str, bool]] = {
    "lr": (1e-4, 10.0, "log", False),
    "momentum": (0.0, 0.999, "linear", False),
    "weight_decay": (1e-5, 1.0, "log", True),
    "eps": (1e-12, 1e-1, "log", True),
    "lr_decay": (1e-5, 1.0, "log", True),
    "initial_accumulator_value": (1e-3, 10.0, "log", True),
}


def hyper_slider(hyper: Hyper) -> Slider:
    """The slider for one hyperparameter of a rule. An optional one's ``None`` (off) is the
    exact 0 at its slider's low end."""
    if hyper.optional:
        on = hyper_slider(replace(hyper, optional=False, default=hyper.default or 1.0))
        return replace(on, default=hyper.default, zero=True, optional=True)
    if hyper.kind is bool:
        return Slider(hyper.name, hyper.doc, bool(hyper.default), kind="bool")
    kind = "int" if hyper.kind is int else "float"
    if hyper.name in SPANS:
        low, high, scale, zero = SPANS[hyper.name]
    elif hyper.low is not None and hyper.high is not None:
        low, high, scale, zero = hyper.low, hyper.high, "linear", False
    else:  # open-ended and unknown: three decades either side of the default
        centre = abs(float(hyper.default)) or 1.0
        low, high, scale = centre * 1e-3, centre * 1e3, "log"
        zero = hyper.low == 0 and not hyper.low_open  # an exact 0 only where the rule takes it
    if kind == "int":  # whole numbers: from 1 (and an exact 0 where the rule takes it)
        low, high = max(1, round(low)), max(2, round(high))
    if hyper.low is not None:
        low = max(low, hyper.low)
        if hyper.low_open and low <= hyper.low:
            # An open lower bound (a momentum > 0) starts a thousandth above it.
            low = hyper.low + 1e-3 * ((hyper.high if hyper.high is not None else high) - low)
    if hyper.high is not None:
        # An open upper bound (a decay rate < 1) stops a thousandth short of it.
        high = min(high, hyper.high - (1e-3 * (hyper.high - low) if hyper.high_open else 0.0))
    return Slider(hyper.name, hyper.doc, hyper.default, low, high, scale, kind, zero)


def rule_sliders(rule: Rule) -> list[Slider]:
    """Every numeric or on/off hyperparameter's slider, in the rule's order, starting where the
    lab's points run (the rule's ``lab_hypers``, else its defaults). A hyperparameter that picks
    among names (MARS's ``mars_type``) keeps its default: the page has no control for it."""
    starts = rule.listing.lab_hypers
    return [
        replace(hyper_slider(hyper), default=starts.get(hyper.name, hyper.default))
        for hyper in rule.hypers
        if not hyper.choices
    ]


def param_slider(param: problems.Param) -> Slider:
    """The slider of a problem's setting, from its declaration: its default, the span its
    ``slider`` gives, log or linear, whole numbers or not."""
    low, high = param.slider or (param.low, param.high)
    kind = "int" if param.kind is int else "float"
    return Slider(
        param.name, param.doc, param.default, low, high, "log" if param.log else "linear", kind
    )


@dataclass(frozen=True)
class PlaygroundProblem:
    """A 2-D lab problem as the page offers it: its sliders and how to build it."""

    name: str
    title: str
    sliders: tuple[Slider, ...]
    build: Callable[..., problems.Problem]
    fixed: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, problem: type[problems.Problem]) -> PlaygroundProblem:
        """The page's view of a registered problem, from its declared settings."""
        return cls(
            problem.name,
            problem.title,
            tuple(param_slider(param) for param in problem.sliders()),
            problem,
            dict(problem.playground or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the page."""
        return {
            "name": self.name,
            "title": self.title,
            "sliders": [slider.to_dict() for slider in self.sliders],
        }


class _OfferedProblems(Mapping[str, PlaygroundProblem]):
    """The problems on the page, read from the registry at each use: every registered problem
    whose ``playground`` is set, in the registry's order (so one defined at run time shows)."""

    def _offered(self) -> dict[str, type[problems.Problem]]:
        return {name: cls for name, cls in problems.PROBLEMS.items() if cls.playground is not None}

    def __getitem__(self, name: str) -> PlaygroundProblem:
        return PlaygroundProblem.of(self._offered()[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._offered())

    def __len__(self) -> int:
        return len(self._offered())


#: The problems the page offers, by name.
PROBLEMS: Mapping[str, PlaygroundProblem] = _OfferedProblems()


def build_problem(spec: str) -> problems.Problem:
    """The problem of a spec such as ``ravine:kappa=100``; ``ValueError`` for a problem the
    page does not offer or a setting out of its slider's span."""
    name, arguments = parse_spec(spec)
    if name not in PROBLEMS:
        match = closest(name, list(PROBLEMS))
        hint = f"did you mean {match!r}? " if match else ""
        raise ValueError(
            f"problem={name!r} is not on the playground; {hint}choose one of {', '.join(PROBLEMS)}"
        )
    offered = PROBLEMS[name]
    sliders = {slider.name: slider for slider in offered.sliders}
    unknown = sorted(set(arguments) - set(sliders))
    if unknown:
        raise ValueError(
            f"problem {name} has no setting {', '.join(unknown)} (in {spec!r}); "
            f"valid: {', '.join(sliders) or 'none'}"
        )
    values = {key: sliders[key].check(value) for key, value in arguments.items()}
    return offered.build(**values, **offered.fixed)


#: The rules the page offers: every rule that steps a vector by its own math (see
#: :func:`~descend.rules.vectors.vector_refusal`; MARS's norm clip is one). A rule whose stage
#: needs 2-D weights (Muon) or matrix state (Shampoo, SOAP, PSGD-Kron) is not; the tour's
#: sections on the newer methods and on curvature run those on matrix problems.
#: Read from the registry each time, so a rule registered later is offered too.
PLAYGROUND_RULES: Mapping[str, Rule] = rules.RegistryView(
    lambda: {name: rule for name, rule in rules.RULES.items() if vector_refusal(rule) is None}
)


def parse_rule(spec: str) -> tuple[Rule, dict[str, Any]]:
    """The rule and its complete, checked hyperparameters from ``name:key=value,...``."""
    name, arguments = parse_spec(spec)
    if name in rules.RULES and name not in PLAYGROUND_RULES:
        raise ValueError(
            f"optimizer {name!r} steps matrices (2-D weights or matrix state), not the "
            "page's points; see the newer methods' and curvature sections of `descend demo`"
        )
    if name not in PLAYGROUND_RULES:
        match = closest(name, list(PLAYGROUND_RULES))
        hint = f"did you mean {match!r}? " if match else ""
        raise ValueError(
            f"optimizer {name!r} is not a rule; {hint}valid: {', '.join(PLAYGROUND_RULES)}"
        )
    rule = PLAYGROUND_RULES[name]
    names = [hyper.name for hyper in rule.hypers]
    for key in arguments:
        match = closest(key, names) if key not in names else None
        if match:  # a slip in a name: the page says which was meant
            raise ValueError(
                f"{name}: unknown hyperparameter {key!r}; did you mean {match!r}? "
                f"valid: {', '.join(names)}"
            )
    return rule, rule.validate({**rule.listing.lab_hypers, **arguments})


#: Starting values for schedule arguments on the page.
SCHEDULE_DEFAULTS = {
    "k": 0.01,
    "step_size": 100,
    "gamma": 0.5,
    "total_steps": 1000,
    "final_lr": 0.0,
    "warmup_steps": 20,
}


def schedule_catalog() -> list[dict[str, Any]]:
    """Every schedule by name with its arguments and starting values."""
    out = []
    for name, build in SCHEDULES.items():
        parameters = [p for p in inspect.signature(build).parameters if p != "base_lr"]
        out.append(
            {
                "name": name,
                "arguments": [
                    {"name": p, "default": SCHEDULE_DEFAULTS.get(p, 0.0)} for p in parameters
                ],
            }
        )
    return out


def parse_average(text: str | None) -> float | str | None:
    """Weight averaging from the query: empty for none, ``polyak``, or an EMA decay."""
    if text in (None, "", "none"):
        return None
    if text == "polyak":
        return text
    try:
        decay = float(text)
    except ValueError:
        decay = math.nan
    if not 0 <= decay < 1:
        raise ValueError(
            f"average={text!r} is invalid: expected a decay in [0, 1), 'polyak' or nothing"
        )
    return decay


def parse_schedule_text(text: str | None) -> Any:
    """A schedule spec from the query (``exponential:k=0.01``), or None for a constant rate."""
    if text in (None, "", "constant"):
        return None
    return parse_schedule(text)


def catalog() -> dict[str, Any]:
    """Everything the page builds its controls from."""
    return {
        "rules": [
            {
                "name": rule.name,
                "summary": rule.summary,
                "sliders": [s.to_dict() for s in rule_sliders(rule)],
            }
            for rule in PLAYGROUND_RULES.values()
        ],
        "problems": [problem.to_dict() for problem in PROBLEMS.values()],
        "schedules": schedule_catalog(),
    }


def query_number(
    query: Mapping[str, str],
    name: str,
    default: float,
    low: float,
    high: float,
    integer: bool = False,
) -> float:
    """A number from the query string, or a ``ValueError`` naming it and its range."""
    text = query.get(name)
    if text in (None, ""):
        return default
    kind = "an integer" if integer else "a number"
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise ValueError(
            f"{name}={text!r} is invalid: expected {kind} from {low:g} to {high:g}"
        ) from None
    if not low <= value <= high:
        raise ValueError(
            f"{name}={text!r} is out of range: expected {kind} from {low:g} to {high:g}"
        )
    return value
