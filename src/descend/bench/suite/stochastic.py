"""Noisy and non-stationary problems of the suite: heavy-tailed and Gaussian gradient noise,
a drifting gradient scale and a target that jumps.

All noise is drawn before the first step from the run's seed, so every optimizer meets the
same sequence; these problems are judged where the run ends.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from descend.bench.suite.core import Instance, SuiteProblem, leaf, log_spaced

NOISE_DIM = 10
HEAVY_SCALE = 1.0


def _numpy_rng(generator: torch.Generator) -> np.random.Generator:
    """A NumPy generator seeded from the torch one (NumPy draws Student-t variates)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return np.random.default_rng(seed)


def _heavy_tail(generator: torch.Generator, budget: int) -> Instance:
    optimum = torch.randn(NOISE_DIM, generator=generator, dtype=torch.float64)
    draws = _numpy_rng(generator).standard_t(1.5, size=(budget, NOISE_DIM))
    noise = HEAVY_SCALE * torch.from_numpy(draws)
    x = leaf(optimum + 3.0 / math.sqrt(NOISE_DIM))

    def loss(step: int) -> torch.Tensor:
        # The linear term adds the noise to the gradient: grad = (x - optimum) + noise.
        return 0.5 * ((x - optimum) ** 2).sum() + noise[step] @ x

    worst: list[float] = [0.0]

    def worst_late_distance(step: int) -> float:
        # Measured every step: the largest distance over the second half of the run.
        distance = float((x - optimum).norm())
        if step > budget // 2:
            worst[0] = max(worst[0], distance)
        return worst[0] if step > budget // 2 else distance

    return Instance([x], loss, worst_late_distance)


HEAVY_TAIL = SuiteProblem(
    "heavy-tail-noise",
    "Student-t gradient noise (1.5 degrees of freedom: infinite variance) throws a step "
    "proportional to the gradient arbitrarily far; bounded steps (normalized, clipped, sign) "
    "are not thrown",
    "the largest distance to the optimum over the second half of 1000 noisy steps below "
    "1.25 (from 3)",
    1000,
    _heavy_tail,
    threshold=1.25,
    judge_at_end=True,
)


def _noisy_quadratic(generator: torch.Generator, budget: int) -> Instance:
    curvatures = log_spaced(0.01, 1.0, NOISE_DIM)
    signs = torch.randint(0, 2, (NOISE_DIM,), generator=generator).double() * 2 - 1
    optimum = 3.0 * signs / curvatures.sqrt()
    noise = torch.randn(budget, NOISE_DIM, generator=generator, dtype=torch.float64)
    x = leaf(torch.zeros(NOISE_DIM, dtype=torch.float64))

    def clean(point: torch.Tensor) -> torch.Tensor:
        return 0.5 * (curvatures * (point - optimum) ** 2).sum()

    start = float(clean(x.detach()))

    def loss(step: int) -> torch.Tensor:
        return clean(x) + noise[step] @ x

    return Instance([x], loss, lambda step: float(clean(x)) / start)


NOISY_QUADRATIC = SuiteProblem(
    "noisy-quadratic",
    "with unit gradient noise a constant step stalls at a loss floor proportional to the step, "
    "while the flattest direction (curvature 0.01) needs a large step: only decay or averaging "
    "reach both",
    "final loss below 1% of its start after 1000 noisy steps (curvatures 0.01 to 1)",
    1000,
    _noisy_quadratic,
    threshold=1e-2,
    check_every=100,
    judge_at_end=True,
)


SWITCH = 0.5


def _drifting_scale(generator: torch.Generator, budget: int) -> Instance:
    # The loss scale falls from 1e2 to 1e-2 over the run, geometrically.
    scales = torch.logspace(2, -2, budget, dtype=torch.float64)
    optimum = torch.randn(NOISE_DIM, generator=generator, dtype=torch.float64)
    # The optimum moves away once the scale is small, so the late steps must still move.
    late = torch.randn(NOISE_DIM, generator=generator, dtype=torch.float64)
    late = optimum + late / late.norm()
    switch = int(budget * SWITCH)
    x = leaf(torch.zeros(NOISE_DIM, dtype=torch.float64))

    def target(step: int) -> torch.Tensor:
        return optimum if step < switch else late

    def loss(step: int) -> torch.Tensor:
        return 0.5 * scales[step] * ((x - target(step)) ** 2).sum()

    return Instance([x], loss, lambda step: float((x - target(step - 1)).norm()))


DRIFTING_SCALE = SuiteProblem(
    "drifting-gradient-scale",
    "the loss scale falls 1e4-fold during the run (1e2 to 1e-2): a step stable at the start "
    "is far too small at the end, and a long second-moment memory (beta2 = 0.999) still "
    "divides by the early, large gradients when the optimum moves",
    "final distance to the optimum below 1e-2 after 1000 steps (the optimum moves by 1 at "
    "step 500, at loss scale 1)",
    1000,
    _drifting_scale,
    threshold=1e-2,
    check_every=100,
    judge_at_end=True,
    diverge_above=1e6,
)

PHASE_STEPS = 75


def _jumping_target(generator: torch.Generator, budget: int) -> Instance:
    phases = max(1, math.ceil(budget / PHASE_STEPS))
    targets = torch.randn(phases, NOISE_DIM, generator=generator, dtype=torch.float64)
    length = PHASE_STEPS
    x = leaf(torch.zeros(NOISE_DIM, dtype=torch.float64))
    phase_ends: dict[int, float] = {}

    def phase(step: int) -> int:
        return min(step // length, phases - 1)

    def loss(step: int) -> torch.Tensor:
        return 0.5 * ((x - targets[phase(step)]) ** 2).sum()

    def worst_phase_end(step: int) -> float:
        # Measured every step, so each phase keeps the distance at its last step; the run is
        # judged on the worst phase.
        current = phase(step - 1)
        phase_ends[current] = float((x - targets[current]).norm())
        return max(phase_ends.values())

    return Instance([x], loss, worst_phase_end)


JUMPING_TARGET = SuiteProblem(
    "jumping-target",
    f"the optimum jumps to a new place every {PHASE_STEPS} steps: a step size that decays "
    "with the run's history (AdaGrad's growing sum of squares) follows each jump more slowly "
    "than the last",
    f"within 1e-2 of the optimum at the end of every phase of {PHASE_STEPS} steps (8 phases)",
    600,
    _jumping_target,
    threshold=1e-2,
    judge_at_end=True,
)

STOCHASTIC = (HEAVY_TAIL, NOISY_QUADRATIC, DRIFTING_SCALE, JUMPING_TARGET)
