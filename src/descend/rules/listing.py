"""An optimizer's row in the registry: everything about a rule that is not its math.

A :class:`~descend.rules.spec.Rule` holds the math (update, hyperparameters, slots, step
scalars, constraints, running products, group state, matrix stage). Its :class:`Listing` holds
how the rest of descend names, presents, packs, tunes and checks it: every list of optimizers
(the README's table, the drop-in classes' parity grid, the lab's colours, the benchmark's
learning-rate ranges, the functional API) is read from these rows, never typed again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CourseForm:
    """How the NumPy functional API presents a rule, in the course's (CS231n's) names.

    ``name`` is the function's name in :mod:`descend.functional`; ``renames`` maps config keys to
    rule names (hyperparameters or slots); ``defaults`` are the course's defaults by config key;
    ``fixed`` pins rule hyperparameters the function does not expose; ``counts_steps`` exposes
    the step counter as the config key ``t``.
    """

    name: str
    renames: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    counts_steps: bool = False


@dataclass(frozen=True)
class Listing:
    """A rule's row in the registry.

    Naming and provenance: ``summary`` (one line), ``aliases`` (other short names, e.g.
    ``momentum`` for ``sgd_momentum``), ``reference`` (where the method comes from) and ``year``
    (of that publication; the registry lists rules in this order).

    Presentation: ``equation`` (the update as documentation shows it; empty: the first literal
    block of the update's docstring, see :func:`descend.rules.docs.equation`) and ``colour``
    (its colour in every figure of the lab and on the playground page).

    Use elsewhere: ``group_keys`` (a ``torch.optim`` param-group key that packs several
    hyperparameters, e.g. ``betas`` -> ``("beta1", "beta2")``), ``course`` (the functional API's
    names; ``None``: not offered there), ``lr_range`` (the log-uniform learning-rate range a
    benchmark searches by default), ``lecture`` (part of the lecture's tour and the
    benchmark's default line-up) and ``option_grid`` (constructor options of the rule's drop-in
    class, each with the values on which it is held to its ``torch.optim`` namesake: see
    :data:`descend.testing.OPTION_GRID`), and ``lab_hypers`` (what the lab's points run with
    unless a spec says otherwise: a point stands for a model's weights, so a method that steps
    vectors by a fallback, as MARS runs plain AdamW on biases, is shown as itself).
    """

    summary: str = ""
    aliases: tuple[str, ...] = ()
    reference: str = ""
    year: int = 0
    equation: str = ""
    colour: str = ""
    group_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    course: CourseForm | None = None
    lr_range: tuple[float, float] = (1e-5, 1.0)
    lecture: bool = False
    option_grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    lab_hypers: Mapping[str, Any] = field(default_factory=dict)
