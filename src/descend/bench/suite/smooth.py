"""Deterministic test functions of the suite: quadratics, valleys, saddles, plateaus, ripples.

Every one is float64, so a tight threshold measures the optimizer and not rounding.
"""

from __future__ import annotations

import math

import torch

from descend.bench.suite.core import Instance, SuiteProblem, leaf, log_spaced, random_orthogonal

# -- quadratics: closed-form theory ----------------------------------------------------------


def gd_steps_needed(mu: float, big: float, weight: float, allowed: float) -> int:
    """The fewest steps gradient descent at any stable step size (``lr < 2 / L``) needs to
    bring the loss of the ``mu`` eigendirection, ``weight`` at the start, down to ``allowed``:
    that direction's error contracts by at least ``1 - 2 mu / L`` per step."""
    if weight <= allowed:
        return 0
    contraction = 1 - 2 * mu / big
    return math.ceil(math.log(allowed / weight) / (2 * math.log(contraction)))


def heavy_ball_steps(mu: float, big: float, tolerance: float) -> int:
    """Steps heavy-ball momentum at its optimal setting needs to shrink the loss by
    ``tolerance``: the error contracts by ``(sqrt(kappa) - 1) / (sqrt(kappa) + 1)``."""
    root = math.sqrt(big / mu)
    rate = (root - 1) / (root + 1)
    return math.ceil(math.log(tolerance) / (2 * math.log(rate)))


def _start_offsets(dim: int) -> torch.Tensor:
    """The start's offset from the optimum along each eigendirection: 1 along the flattest,
    growing to 1.5 (unequal, so no single step size lands on the optimum at once)."""
    return 1 + torch.arange(dim, dtype=torch.float64) / (2 * dim)


def _quadratic(mu: float, big: float, dim: int) -> tuple[torch.Tensor, float]:
    """Eigenvalues (ascending) and the loss at the start."""
    eigenvalues = log_spaced(mu, big, dim)
    return eigenvalues, float((eigenvalues * _start_offsets(dim) ** 2).sum() / 2)


def _quadratic_problem(
    name: str, reason: str, mu: float, steps: int, tolerance: float, rotated: bool
) -> SuiteProblem:
    dim, big = 20, 1.0
    eigenvalues, start_loss = _quadratic(mu, big, dim)

    def build(generator: torch.Generator, budget: int) -> Instance:
        basis = (
            random_orthogonal(dim, generator) if rotated else torch.eye(dim, dtype=torch.float64)
        )
        hessian = basis @ torch.diag(eigenvalues) @ basis.T
        # The run starts at the origin, as a network's weights start near it; the optimum is
        # away from it, so weight decay's pull toward 0 is no help.
        signs = torch.randint(0, 2, (dim,), generator=generator).double() * 2 - 1
        optimum = basis @ (signs * _start_offsets(dim))
        x = leaf(torch.zeros(dim, dtype=torch.float64))

        def loss(step: int) -> torch.Tensor:
            error = x - optimum
            return 0.5 * error @ hessian @ error

        return Instance([x], loss, lambda step: float(loss(step)) / start_loss)

    needed = gd_steps_needed(mu, big, mu / 2, tolerance * start_loss)
    theory = (
        f"gradient descent at any stable step needs at least {needed} steps (its slowest "
        f"direction contracts by at most 1 - 2/kappa); heavy ball at its optimal setting "
        f"about {heavy_ball_steps(mu, big, tolerance)}"
    )
    return SuiteProblem(
        name,
        reason,
        f"loss at most {tolerance:g} of its start within {steps} steps "
        f"(kappa {big / mu:.0e}, 20 dims)",
        steps,
        build,
        threshold=tolerance,
        theory=theory,
    )


ILL_CONDITIONED = _quadratic_problem(
    "ill-conditioned-quadratic",
    "a fixed step small enough for the steepest direction crawls along the flattest one: "
    "gradient descent needs about kappa steps",
    1e-4,
    1000,
    1e-6,
    rotated=False,
)

ROTATED = _quadratic_problem(
    "rotated-quadratic",
    "the ravine is not aligned with the axes, so per-coordinate step sizes (Adam, AdaGrad) "
    "cannot undo the conditioning; momentum can",
    1e-3,
    1000,
    1e-6,
    rotated=True,
)


def _badly_scaled(generator: torch.Generator, budget: int) -> Instance:
    scales = torch.tensor([1e3, 1e-3, 1.0], dtype=torch.float64)
    x = leaf(torch.zeros(3, dtype=torch.float64))

    def loss(step: int) -> torch.Tensor:
        return 0.5 * ((scales * (x - 1)) ** 2).sum()

    return Instance([x], loss, lambda step: float((x - 1).abs().max()))


BADLY_SCALED = SuiteProblem(
    "badly-scaled-coordinates",
    "gradients of the coordinates differ by 1e6, so any single step size is unstable for "
    "one and frozen for another (kappa 1e12)",
    "every coordinate within 1e-2 of its optimum within 1000 steps",
    1000,
    _badly_scaled,
    threshold=1e-2,
    theory=(
        f"gradient descent at any stable step needs at least "
        f"{gd_steps_needed(1e-6, 1e6, 0.5e-6, 0.5e-6 * 1e-4)} steps for the flat coordinate"
    ),
)

# -- valleys, saddles, plateaus, ripples -----------------------------------------------------


def _rosenbrock(dim: int, start: list[float]) -> SuiteProblem:
    def build(generator: torch.Generator, budget: int) -> Instance:
        x = leaf(torch.tensor((start * dim)[:dim], dtype=torch.float64))

        def loss(step: int) -> torch.Tensor:
            return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()

        return Instance([x], loss, lambda step: float((x - 1).norm() / math.sqrt(dim)))

    steps = 2000
    return SuiteProblem(
        f"rosenbrock-{dim}d",
        "a curved, narrow valley: the gradient points across it, so steps zig-zag while the "
        "valley floor bends away",
        f"root-mean-square distance to the minimum (all ones) below 1e-2 within {steps} steps",
        steps,
        build,
        threshold=1e-2,
        check_every=10,
    )


ROSENBROCK_2D = _rosenbrock(2, [-1.2, 1.0])
ROSENBROCK_16D = _rosenbrock(16, [-1.2, 1.0])

SADDLE_CURVATURE = 1e-3


def _saddle(generator: torch.Generator, budget: int) -> Instance:
    curvatures = log_spaced(0.1, 1.0, 10)
    center = torch.randn(11, generator=generator, dtype=torch.float64)
    x = leaf(center[:10] + 1)
    y = leaf(center[10:] + 1e-6)
    saddle_loss = SADDLE_CURVATURE / 4

    def loss(step: int) -> torch.Tensor:
        escape = SADDLE_CURVATURE * ((y - center[10:]) ** 2 - 1) ** 2 / 4
        return 0.5 * (curvatures * (x - center[:10]) ** 2).sum() + escape.sum()

    return Instance([x, y], loss, lambda step: float(loss(step)) / saddle_loss)


SADDLE = SuiteProblem(
    "saddle-escape",
    "the only way down from the saddle has curvature -1e-3 and a gradient of 1e-9 at the "
    "start, so unnormalized steps grow the escape by only 1 + lr * 1e-3 per step",
    "loss below 1% of the saddle's within 1000 steps",
    1000,
    _saddle,
    threshold=1e-2,
    theory=(
        "gradient descent at any stable step (lr < 2) needs at least "
        f"{math.ceil(math.log(1e6) / math.log(1 + 2 * SADDLE_CURVATURE))} steps to grow the "
        "escape coordinate from 1e-6 to 1"
    ),
)


def _plateau(generator: torch.Generator, budget: int) -> Instance:
    direction = torch.randn(10, generator=generator, dtype=torch.float64)
    center = 5.0 * direction / direction.norm()
    x = leaf(torch.zeros(10, dtype=torch.float64))

    def loss(step: int) -> torch.Tensor:
        return 1 - torch.exp(-0.5 * ((x - center) ** 2).sum())

    return Instance([x], loss, lambda step: float(loss(step)))


PLATEAU = SuiteProblem(
    "gaussian-plateau",
    "five widths from a Gaussian well the loss is flat to 4e-6 and the gradient is 2e-5, so "
    "steps proportional to the gradient barely move",
    "loss below 1e-3 (from 1 - 4e-6) within 500 steps",
    500,
    _plateau,
    threshold=1e-3,
)

RIPPLE_AMPLITUDE = 1.0


def _ripples(generator: torch.Generator, budget: int) -> Instance:
    optimum = 3.0 * (torch.randint(0, 2, (5,), generator=generator).double() * 2 - 1)
    x = leaf(torch.zeros(5, dtype=torch.float64))

    def loss(step: int) -> torch.Tensor:
        error = x - optimum
        ripple = RIPPLE_AMPLITUDE * (1 - torch.cos(2 * math.pi * error))
        return (0.5 * error**2 + ripple).sum()

    return Instance([x], loss, lambda step: float(loss(step)))


#: Curvature at the bottom of every ripple: the bowl's 1 plus the cosine's (2 pi)^2 a.
RIPPLE_CURVATURE = 1 + (2 * math.pi) ** 2 * RIPPLE_AMPLITUDE

RIPPLES = SuiteProblem(
    "ripples",
    "cosine ripples on a bowl put a local minimum near every integer up to 6; a step small "
    "enough to settle in the global minimum settles in the first local one it meets",
    "loss below 1e-3 (the global minimum is 0) within 500 steps, from 3 away in each of 5 dims",
    500,
    _ripples,
    threshold=1e-3,
    theory=(
        f"every minimum has curvature about {RIPPLE_CURVATURE:.1f}: gradient descent settles "
        f"only with lr < {2 / RIPPLE_CURVATURE:.3f}, and then in the local minimum nearest 3"
    ),
)

SMOOTH = (
    ILL_CONDITIONED,
    ROTATED,
    BADLY_SCALED,
    ROSENBROCK_2D,
    ROSENBROCK_16D,
    SADDLE,
    PLATEAU,
    RIPPLES,
)
