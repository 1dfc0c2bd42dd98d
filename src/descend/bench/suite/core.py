"""The pass/fail suite's machinery: a problem, one run of an optimizer on it, and its result.

A problem builds an :class:`Instance` from a seed and a step budget: the parameters, the loss
of each step (any noise is drawn up front, so every optimizer sees the same sequence), and a
measure of the current parameters that is lower when better. A run steps the optimizer with a
closure (so L-BFGS works too), measures every ``check_every`` steps with the optimizer in its
evaluation mode (Schedule-Free's averaged point), and passes when the measure reaches the
problem's threshold: at any check for a deterministic problem (the run stops there), or at the
last step for a problem judged on where it ends (noise, moving targets).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from descend.optim import evaluation_mode
from descend.specs import OptimizerSpec


@dataclass(frozen=True)
class SuiteResult:
    """One run of an optimizer on a suite problem.

    Attributes:
        problem: the problem's name.
        passed: whether the measured value reached the problem's threshold.
        value: the measured value (lower is better) where the run stopped: at the pass, or at
            the end of the budget; ``inf`` for a diverged run.
        steps_to_pass: the first step count at which it passed (``None`` when it did not).
        seconds: wall time of the run (building the problem included).
        diverged: whether the loss or the measure became non-finite.
    """

    problem: str
    passed: bool
    value: float
    steps_to_pass: int | None
    seconds: float
    diverged: bool


@dataclass
class Instance:
    """A problem made concrete for one seed and budget.

    Attributes:
        params: the tensors the optimizer steps (leaf tensors with ``requires_grad``).
        loss: ``loss(step)`` the scalar to differentiate at step ``step`` (0-based).
        measure: ``measure(step)`` the criterion's value after ``step`` steps (no gradients;
            may keep state, such as a running record of phase ends).
        project: called after every step (a projection onto a feasible set), if given.
    """

    params: Sequence[torch.Tensor]
    loss: Callable[[int], torch.Tensor]
    measure: Callable[[int], float]
    project: Callable[[], None] | None = None


@dataclass(frozen=True)
class SuiteProblem:
    """A small problem that breaks optimizers for a known reason, with its pass criterion.

    Attributes:
        name: the problem's name (``"rotated-quadratic"``).
        reason: one line: why it breaks optimizers.
        criterion: one line: what passing means.
        steps: the default step budget.
        build: ``build(generator, steps) -> Instance``; the generator is seeded by the run.
        threshold: the run passes when the measure is at most this.
        check_every: steps between measurements.
        judge_at_end: judge only the last measurement (noisy or moving problems), rather
            than stopping at the first that passes.
        theory: one line: what closed-form theory predicts, where it exists.
        diverge_above: a measure above this counts as diverged (a float64 run can wander
            to 1e100 and back without overflowing; that is not a solution).
    """

    name: str
    reason: str
    criterion: str
    steps: int
    build: Callable[[torch.Generator, int], Instance] = field(repr=False)
    threshold: float = 0.0
    check_every: int = 1
    judge_at_end: bool = False
    theory: str = ""
    diverge_above: float = math.inf

    def run(self, spec: OptimizerSpec, seed: int, steps: int | None = None) -> SuiteResult:
        """Run ``spec`` from seed ``seed`` for ``steps`` steps (default :attr:`steps`); a
        step is one ``optimizer.step(closure)`` (L-BFGS may evaluate the closure several times
        inside it).

        The run uses one torch thread (restored afterwards): on tensors this small, more
        threads only add synchronization, and a busy machine turns it into waiting.
        """
        budget = self.steps if steps is None else steps
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise ValueError(f"steps={steps!r} is invalid: expected a whole number >= 1")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._run(spec, seed, budget)
        finally:
            torch.set_num_threads(threads)

    def _run(self, spec: OptimizerSpec, seed: int, budget: int) -> SuiteResult:
        started = time.perf_counter()
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        instance = self.build(generator, budget)
        optimizer = spec.build(instance.params)

        def finish(passed: bool, value: float, at: int | None, diverged: bool) -> SuiteResult:
            seconds = time.perf_counter() - started
            return SuiteResult(self.name, passed, value, at, seconds, diverged)

        value = math.inf
        current = [0]

        def closure() -> Any:
            optimizer.zero_grad(set_to_none=True)
            loss = instance.loss(current[0])
            loss.backward()
            return loss

        for step in range(budget):
            current[0] = step
            loss = optimizer.step(closure)
            if loss is not None and not math.isfinite(float(torch.as_tensor(loss).detach())):
                return finish(False, math.inf, None, True)
            if instance.project is not None:
                with torch.no_grad():
                    instance.project()
            done = step + 1
            if done % self.check_every and done != budget:
                continue
            with torch.no_grad(), evaluation_mode(optimizer):
                value = float(instance.measure(done))
            if not math.isfinite(value) or value > self.diverge_above:
                return finish(False, math.inf, None, True)
            if not self.judge_at_end and value <= self.threshold:
                return finish(True, value, done, False)
        passed = value <= self.threshold
        return finish(passed, value, budget if passed else None, False)


def leaf(values: torch.Tensor) -> torch.Tensor:
    """A fresh leaf tensor with gradients, holding ``values``."""
    return values.detach().clone().requires_grad_(True)


def log_spaced(low: float, high: float, count: int) -> torch.Tensor:
    """``count`` float64 values from ``low`` to ``high``, evenly spaced in log scale."""
    return torch.logspace(math.log10(low), math.log10(high), count, dtype=torch.float64)


def random_orthogonal(size: int, generator: torch.Generator) -> torch.Tensor:
    """A random orthogonal float64 matrix (QR of a Gaussian one, signs fixed: Haar)."""
    gaussian = torch.randn(size, size, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return q * torch.sign(torch.diagonal(r))


def random_rotation(size: int, generator: torch.Generator) -> torch.Tensor:
    """A random rotation: an orthogonal float64 matrix with determinant +1 (one column of a
    Haar-orthogonal matrix flipped where needed), so products of them reach one another
    without passing through a singular matrix."""
    matrix = random_orthogonal(size, generator)
    if torch.linalg.det(matrix) < 0:
        matrix[:, 0] = -matrix[:, 0]
    return matrix


def check_order(problems: Sequence[SuiteProblem]) -> dict[str, SuiteProblem]:
    """The problems by name, in order; ``ValueError`` on a repeated name."""
    found: dict[str, SuiteProblem] = {}
    for problem in problems:
        if problem.name in found:
            raise ValueError(f"suite problem {problem.name!r} is defined twice")
        found[problem.name] = problem
    return found
