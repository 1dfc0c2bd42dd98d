"""The math of each optimizer, written once: elementwise update rules and their specs.

The registry (:data:`RULES`, :mod:`descend.rules.registry`) is every :class:`Rule` defined at
module level in this package, found by importing its modules, in order of publication, plus any
rule added at run time with :func:`register`. Adding an optimizer is adding its rule file;
everything that lists optimizers (the functional API, the drop-in classes' lookup, the lab's and
the benchmark's specs, defaults and colours, the README's table) reads this registry. A rule is
reachable as ``descend.rules.<NAME>`` under the name its module gives it (``descend.rules.ADAM``).

The rule model (see :mod:`descend.rules.spec`):

- ``update(p, g, *slots, **scalars) -> (p, *slots)``: a pure function of one element in the
  notation of the notes, using arithmetic, ``if`` on scalars, and the primitives and helpers of
  :mod:`descend.rules.elementwise` (``sqrt``, ``maximum``, ``sign``, ``lerp``, ...); every
  executor compiles this one function.
- ``step_scalars(hypers, step)``: what depends only on the step (bias corrections, decayed
  rates), computed once per step outside the elementwise part.
- the hyperparameters (:class:`Hyper`: default, valid range or choices, meaning), slots
  (:class:`Slot`) and constraints;
- its row in the registry (:class:`Listing`: aliases, param-group keys, the course's names,
  the default learning-rate range, colour, reference, ...).

Methods past the lecture need five optional extensions, each in one place, so that every
executor still compiles the elementwise part from the rule:

- a slot may start as a copy of its parameter (``Slot(from_parameter=True)``: Schedule-Free's
  ``z``);
- per-parameter scalar state (:class:`RunningProduct`): a running product of one factor per
  step, kept beside the step counter as a 0-d tensor in the step counter's dtype and visible to
  ``step_scalars`` (NAdam's ``mu_product``, as ``torch.optim.NAdam`` keeps it);
- per-group scalar state (:class:`GroupState`): running scalars kept in the param group and
  advanced once per optimizer step, for every group, before any parameter changes (Schedule-Free's
  step count, largest learning rate and sum of averaging weights), visible to ``step_scalars``;
- group state advanced from sums over tensors (:class:`GroupReduction`, in
  :mod:`descend.rules.reduction`): before anything changes, ``terms`` reads each parameter, its
  gradient and its state in torch and gives its contributions to named totals, summed over
  every param group of the optimizer that runs the rule; ``advance`` sees the totals (and the
  values ``shared`` computes from all groups) and its result reaches ``step_scalars``, so the
  elementwise update that uses it is compiled as usual (Prodigy's estimate of d from
  ``sum g.(x0 - x)`` and ``sum |s|``). The scope is the optimizer: the reference methods keep
  one estimate for the whole model, copied in every group;
- a per-tensor matrix stage (:class:`MatrixStage`) before the elementwise update: an elementwise
  ``prepare`` (compiled by every executor like an update, e.g. Muon's momentum), then a function
  of the whole tensor (Muon's Newton-Schulz iteration, in torch operations), whose result the
  elementwise ``update`` receives in place of the gradient. A stage may keep per-parameter
  matrix state (``MatrixStage.matrices``: Shampoo's Kronecker factors L and R and their inverse
  roots, SOAP's statistics and eigenbases Q_L, Q_R), created with the slots in the optimizer's
  per-parameter state on the parameter's device. Each step it updates them cheaply
  (``statistics``: ``L <- L + G G^T``, in torch) and, every k-th step (``refresh_due``, from a
  hyperparameter such as ``precondition_frequency``), refreshes the expensive part
  (``refresh``: eigendecompositions, inverse roots; torch, on the parameter's device) before the
  function or, for a method that renews its basis for the next step, after the update. In
  between, a step is the elementwise ``prepare`` and ``update`` every executor compiles, around
  the matrix products that apply the preconditioner. A stage with ``ndim=None`` takes tensors
  of any shape (MARS's norm clip of its corrected gradient), and its ``tensor_hypers(hypers,
  ndim)`` may give a tensor hyperparameters of its own by its dimensions (MARS's vectors run
  plain AdamW with their own rates); such tensors share a list call with their kind. The
  function sees the parameter's whole state, slots included, so one stage can combine two
  methods without a new part: Shampoo's grafting (:mod:`descend.rules.grafting`) keeps Adam's
  second moment as a slot that the compiled ``prepare`` updates, and its function rescales each
  block's preconditioned direction to the norm of Adam's direction on that block (or returns
  Adam's direction itself, for vectors and before the first roots); its blocks and merged
  dimensions are views of the tensor inside the matrix parts, keyed per block in the state.

Optimizers (:mod:`descend.optim`) handle all five for every rule, and the functional API
(:mod:`descend.functional`) the first four (a reduction needs an optimizer's groups: evaluated
alone, a rule's ``advance`` sees no totals); the lab and the benchmark see only rules.

One switch changes the step of every rule without a line in its file: *caution*
(:mod:`descend.rules.caution`, ``cautious=True`` on every optimizer). It needs what the
elementwise model lacks, a per-tensor reduction, so it is defined here once, in the rule
language, as two elementwise passes around one sum: from the rule's own step
``d = x - x_new``, ``keep = [d g > 0]`` per element (``caution_count``),
``s = n / (sum keep + 1)`` per tensor, then ``x <- x - d keep s`` (``caution_apply``). The
compiled executors generate, from the rule's ``update`` and the helpers
``cautious_agreement`` and ``cautious_parameter``, a count pass (the step in registers,
nothing stored) and an apply pass (the plain kernel with the cautious parameter store); the
reference executor runs the rule's ``update`` unchanged and then the two caution rules
(:mod:`descend.kernels.caution`). Rules with a matrix stage or a slot copied from the
parameter refuse it (:func:`~descend.rules.caution.caution_refusal`).
"""

from __future__ import annotations

import importlib
import pkgutil

from descend.rules.listing import CourseForm, Listing
from descend.rules.reduction import GroupReduction
from descend.rules.registry import (
    NAMES,
    RULES,
    RegistryView,
    get_rule,
    lecture_rules,
    register,
    unregister,
)
from descend.rules.spec import (
    Constraint,
    GroupState,
    Hyper,
    MatrixStage,
    Rule,
    RunningProduct,
    Slot,
)


def _discover() -> dict[str, Rule]:
    """Every module-level rule of this package, by the attribute name its module gives it."""
    found: dict[str, Rule] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for attribute, value in vars(module).items():
            if isinstance(value, Rule) and attribute.isupper():
                found.setdefault(attribute, value)
    return found


_BY_ATTRIBUTE = _discover()
globals().update(_BY_ATTRIBUTE)
for _rule in _BY_ATTRIBUTE.values():
    register(_rule)

__all__ = [
    *_BY_ATTRIBUTE,
    "NAMES",
    "RULES",
    "Constraint",
    "CourseForm",
    "GroupReduction",
    "GroupState",
    "Hyper",
    "Listing",
    "MatrixStage",
    "RegistryView",
    "Rule",
    "RunningProduct",
    "Slot",
    "get_rule",
    "lecture_rules",
    "register",
    "unregister",
]
