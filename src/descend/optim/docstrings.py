"""Optimizer class docstrings, generated from their rules.

A class's own docstring says what it is and how it differs from what it replaces; the equation
and the arguments (meaning, default, valid range) come from its rule
(:mod:`descend.rules.docs`), so no class restates a range by hand and ``help(descend.Adam)``
always shows what the rule checks.
"""

from __future__ import annotations

import inspect

from descend.rules.docs import equation, hyper_line, wrapped
from descend.rules.spec import Hyper, Rule

#: What every class says about ``params``.
PARAMS = "params: parameters, param-group dicts, or ``(name, parameter)`` pairs."
#: ``torch.optim``'s arguments that descend accepts, grouped as one entry each.
TORCH_ARGUMENTS = {
    ("foreach", "fused"): "accepted for compatibility; descend picks its executor with "
    "``backend``.",
    ("capturable",): "must be False (descend does not capture steps in CUDA graphs).",
    ("differentiable",): "let autograd differentiate through the step, as ``torch.optim`` "
    "does; default False.",
    ("nonfinite", "backend"): "see :class:`~descend.optim.base.RuleOptimizer`.",
}


def _argument_entries(cls: type, rule: Rule) -> list[str]:
    """One entry per constructor argument, in the signature's order; ``TypeError`` for an
    argument nothing documents (a new class cannot leave one out silently)."""
    parameters = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    hypers = {hyper.name: hyper for hyper in rule.hypers}
    extra: dict[str, Hyper | str] = dict(getattr(cls, "argument_docs", {}))
    entries, grouped = [PARAMS], set()
    for name, parameter in parameters.items():
        if name in ("self", "params") or name in grouped:
            continue
        if name in extra:
            text = extra[name]
            entries.append(
                hyper_line(name, [text], parameter.default)
                if isinstance(text, Hyper)
                else f"{name}: {text}"
            )
        elif name in rule.group_keys:
            packed = [hypers[member] for member in rule.group_keys[name]]
            entries.append(hyper_line(name, packed, parameter.default))
        elif name in hypers:
            entries.append(hyper_line(name, [hypers[name]], parameter.default))
        else:
            names = next((names for names in TORCH_ARGUMENTS if name in names), None)
            if names is None:
                raise TypeError(
                    f"{cls.__name__}: constructor argument {name!r} is neither a "
                    f"hyperparameter of rule {rule.name!r} nor documented in "
                    "argument_docs"
                )
            present = [other for other in names if other in parameters]
            grouped.update(present)
            entries.append(f"{', '.join(present)}: {TORCH_ARGUMENTS[names]}")
    return entries


def class_docstring(cls: type, lead: str | None = None) -> str:
    """The docstring of an optimizer class: its own text (``lead``, default its docstring as
    written), its rule's equation, and an ``Args:`` section generated from the rule."""
    rule: Rule = cls.rule  # type: ignore[attr-defined]
    own = inspect.cleandoc(lead if lead is not None else cls.__doc__ or "")
    sections = [
        own,
        equation(rule),
        "Args:\n" + "\n".join(wrapped(entry) for entry in _argument_entries(cls, rule)),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def document(*classes: type) -> None:
    """Give each class its generated docstring (see :func:`class_docstring`)."""
    for cls in classes:
        lead = cls.__dict__.get("__doc__")
        cls.__doc__ = class_docstring(cls, lead)
