"""Compare an optimizer with a reference, step by step.

The tools descend's own parity tests are built from, public so that a new optimizer (or a
custom one) can be held to a reference the same way, in the spirit of ``numpy.testing`` and
``torch.testing``::

    from descend.testing import TOLERANCE, run_side_by_side

    result = run_side_by_side(lambda params: MyAdam(params, lr=1e-2),
                              lambda params: torch.optim.Adam(params, lr=1e-2),
                              shapes=[(7, 3), (5,)], dtype=torch.float32, steps=100)
    assert result.param_error <= TOLERANCE[torch.float32]

Both optimizers step on the same random gradients (some parameters skipped on some steps), and
after every step each parameter and state tensor is compared with the reference's. An error is
relative to the largest magnitude that tensor took over the whole run (:class:`ErrorTracker`):
a parameter that starts near 1 and ends near 0 still carries rounding errors the size of its
past values, and dividing by its final value alone would measure cancellation, not a bug.

:data:`OPTION_GRID` lists the options on which descend's drop-in classes are held to their
``torch.optim`` namesakes (each rule's registry row gives its own); the parity tests and
``benchmarks/parity_report.py`` run every combination of it (:func:`option_combinations`).

With ``$DESCEND_PARITY_LOG`` naming a file, every comparison also appends its worst errors
there (:func:`record_parity`), labelled with the pytest test that ran it, so a report can show
the figures behind the pass/fail of a whole test run (``benchmarks/method_parity.py``).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import torch

import descend
from descend.rules import RULES, RegistryView

#: Largest relative error (see :class:`ErrorTracker`) a faithful implementation shows, by dtype:
#: a few units of rounding, accumulated over a hundred steps.
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}


def _option_grid() -> dict[str, dict[str, list[Any]]]:
    from descend.optim.generated import optimizer_class

    return {
        optimizer_class(rule).__name__: {
            key: list(values) for key, values in rule.listing.option_grid.items()
        }
        for rule in RULES.values()
        if rule.listing.option_grid
    }


#: The options each drop-in class is checked on against the ``torch.optim`` class of the same
#: name: every combination of these values that torch accepts. Read from each rule's registry
#: row (:attr:`descend.rules.Listing.option_grid`), by class name, in the registry's order.
OPTION_GRID: Mapping[str, Mapping[str, list[Any]]] = RegistryView(_option_grid)


def descend_class(name: str) -> type[torch.optim.Optimizer]:
    """descend's drop-in class of this name (``"Adam"``: ``descend.Adam``)."""
    return getattr(descend, name)


def torch_class(name: str) -> type[torch.optim.Optimizer]:
    """``torch.optim``'s class of this name."""
    return getattr(torch.optim, name)


def option_combinations(
    name: str, grid: Mapping[str, Mapping[str, Sequence[Any]]] = OPTION_GRID
) -> list[dict[str, Any]]:
    """Every combination of the ``grid``'s values for class ``name`` that ``torch.optim``'s
    class accepts (``SGD``'s ``nesterov=True`` needs momentum and no dampening, for one)."""
    options = grid[name]
    combinations = [
        dict(zip(options, values, strict=True)) for values in itertools.product(*options.values())
    ]
    probe = [torch.zeros(1, requires_grad=True)]
    accepted = []
    for combination in combinations:
        try:
            torch_class(name)(probe, **combination)
        except ValueError:
            continue
        accepted.append(combination)
    return accepted


class ErrorTracker:
    """Worst relative difference between paired tensors over a whole run.

    A tensor's difference is measured against its scale, the largest magnitude the reference
    tensor took at any step of the run: a parameter that starts near 1 and ends near 0, or a
    running mean of noise, still carries rounding errors of the size of its larger past values,
    and dividing by its final value alone would only measure cancellation.
    """

    def __init__(self) -> None:
        self.scales: dict[object, float] = {}
        self.differences: dict[object, float] = {}

    def observe(self, key: object, actual: torch.Tensor, expected: torch.Tensor) -> None:
        """Record one step's pair for the tensor named ``key`` (empty tensors are ignored)."""
        if expected.numel() == 0:
            return
        scale = expected.double().abs().max().item()
        difference = (actual.double() - expected.double()).abs().max().item()
        self.scales[key] = max(self.scales.get(key, 0.0), scale)
        self.differences[key] = max(self.differences.get(key, 0.0), difference)

    def worst(self, keys: Callable[[object], bool] = lambda key: True) -> float:
        """The largest difference / scale over the tensors whose key passes ``keys`` (0 when
        every difference is 0, even for a tensor that stayed all zeros)."""
        errors = [
            0.0 if difference == 0.0 else difference / max(self.scales[key], 1e-30)
            for key, difference in self.differences.items()
            if keys(key)
        ]
        return max(errors, default=0.0)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max |actual - expected| / max |expected|`` for one pair of tensors."""
    tracker = ErrorTracker()
    tracker.observe(None, actual.detach(), expected.detach())
    return tracker.worst()


def make_params(
    shapes: Iterable[tuple[int, ...]],
    dtype: torch.dtype,
    seed: int,
) -> list[torch.Tensor]:
    """Random leaf tensors of the given shapes (standard normal, reproducible by ``seed``)."""
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(shape, dtype=dtype, generator=generator).requires_grad_() for shape in shapes
    ]


def clone_params(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Independent copies of leaf tensors."""
    return [p.detach().clone().requires_grad_() for p in params]


def grouped(params: list[torch.Tensor], group_options: list[dict[str, Any]]) -> list[dict]:
    """Split params round-robin into one param group per entry of ``group_options``."""
    count = len(group_options)
    return [
        {"params": params[i::count], **options}
        for i, options in enumerate(group_options)
        if params[i::count]
    ]


#: Environment variable naming the file :func:`record_parity` appends to (unset: nothing).
PARITY_LOG_ENV = "DESCEND_PARITY_LOG"


def record_parity(
    param_error: float | None = None,
    state_error: float | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Append one comparison's worst parameter and state errors (and the dtype it ran in), as
    a line of JSON labelled with the running pytest test (``$PYTEST_CURRENT_TEST``), to the
    file named by ``$DESCEND_PARITY_LOG``; nothing when it is unset. ``None``: not measured
    here (a test that compares state by its own reading records that separately)."""
    path = os.environ.get(PARITY_LOG_ENV)
    if not path:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    kind = None if dtype is None else str(dtype).removeprefix("torch.")
    record = {"test": test, "params": param_error, "state": state_error, "dtype": kind}
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


class SideBySide(NamedTuple):
    """What :func:`run_side_by_side` found: the worst relative errors of parameters and of
    state tensors over the run, and both sides as they ended."""

    param_error: float
    state_error: float
    ours_params: list[torch.Tensor]
    reference_params: list[torch.Tensor]
    ours: torch.optim.Optimizer
    reference: torch.optim.Optimizer


def run_side_by_side(
    make_ours: Callable[[list], torch.optim.Optimizer],
    make_reference: Callable[[list], torch.optim.Optimizer],
    shapes: list[tuple[int, ...]],
    dtype: torch.dtype,
    steps: int,
    seed: int = 0,
    group_options: list[dict[str, Any]] | None = None,
    missing_grad_every: int | None = 3,
    compare_state: bool = True,
    exact_state_keys: bool = False,
) -> SideBySide:
    """Step both optimizers on the same gradients; return the worst parameter and state errors.

    ``make_ours`` and ``make_reference`` build an optimizer from param groups (one group per
    entry of ``group_options``, parameters dealt round-robin). Errors are
    :class:`ErrorTracker`'s, checked after every step. Every ``missing_grad_every``-th parameter
    gets ``grad = None`` on odd steps (none does with ``None``: for a reference that counts
    steps per group, not per parameter), and parameter 1, when there is one, never gets a
    gradient, so skipped parameters are exercised. With ``compare_state`` the state keys of the
    reference must all exist in ours (with ``exact_state_keys``, ours must have no others),
    else ``AssertionError`` names both sets; their tensors are compared like the parameters.
    """
    ours_params = make_params(shapes, dtype, seed)
    reference_params = clone_params(ours_params)
    options = group_options or [{}]
    ours = make_ours(grouped(ours_params, options))
    reference = make_reference(grouped(reference_params, options))
    generator = torch.Generator().manual_seed(seed + 1)
    tracker = ErrorTracker()
    for step in range(steps):
        for index, (a, b) in enumerate(zip(ours_params, reference_params, strict=True)):
            skipped = index == 1 or (
                missing_grad_every is not None and index % missing_grad_every == 0 and step % 2 == 1
            )
            if skipped:
                a.grad = b.grad = None
                continue
            gradient = torch.randn(a.shape, dtype=dtype, generator=generator)
            a.grad, b.grad = gradient.clone(), gradient.clone()
        ours.step()
        reference.step()
        for index, (a, b) in enumerate(zip(ours_params, reference_params, strict=True)):
            tracker.observe(("param", index), a.detach(), b.detach())
            if not compare_state:
                continue
            reference_state = reference.state.get(b, {})
            our_state = ours.state.get(a, {})
            missing = set(reference_state) - set(our_state)
            extra = set(our_state) - set(reference_state) if exact_state_keys else set()
            if missing or extra:
                raise AssertionError(
                    f"parameter {index}, step {step + 1}: state keys differ: reference "
                    f"{sorted(reference_state)}, ours {sorted(our_state)}"
                )
            for key, value in reference_state.items():
                if torch.is_tensor(value):
                    tracker.observe((key, index), our_state[key], value)
    param_error = tracker.worst(lambda key: key[0] == "param")
    state_error = tracker.worst(lambda key: key[0] != "param")
    record_parity(param_error, state_error if compare_state else None, dtype)
    return SideBySide(
        param_error,
        state_error,
        ours_params,
        reference_params,
        ours,
        reference,
    )
