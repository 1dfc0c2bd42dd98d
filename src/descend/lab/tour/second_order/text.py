"""The words of the first-order against second-order section: its paragraphs and the claims
they make, with every sentence about this run's results built from its data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from descend.lab.report import Claim
from descend.lab.tour.second_order import studies as orders

#: Gradient norms below this fraction of the start are at rounding level on the digits.
ROUNDING = 1e-9


def newton_digit_gains(study: orders.FullBatchStudy) -> list[float]:
    """Orders of magnitude Newton's gradient norm falls at each step, up to rounding level."""
    norms = np.asarray(study.run("newton").result.history.grad_norm)
    kept = norms[norms > ROUNDING * study.grad_norm0]
    return list(np.log10(kept[:-1] / kept[1:]))


def orders_claims(
    studies: Sequence[orders.FullBatchStudy], noisy: orders.MinibatchStudy
) -> list[Claim]:
    """The section's claims: Newton in one step on the ravine, its quadratic convergence on the
    digits, and the minibatch noise floor."""
    ravine, digits = studies
    newton_steps = ravine.iterations_to_tolerance(ravine.run("newton"))
    gains = newton_digit_gains(digits)
    last = gains[-3:]
    floors = {run.label: noisy.tail_gap(run) for run in noisy.runs}
    reference = float(noisy.gap(noisy.reference)[-1])
    lowest = min(floors, key=floors.get)
    return [
        Claim(
            "Newton's method lands on a quadratic's minimum in one step",
            newton_steps == 1,
            f"On the ravine Newton reaches the tolerance after {newton_steps} iteration"
            f"{'s' if newton_steps != 1 else ''}.",
        ),
        Claim(
            "near the minimum each Newton step gains more correct digits than the one before "
            "(quadratic convergence)",
            len(last) >= 2 and all(b > a for a, b in zip(last, last[1:], strict=False)),
            "Newton's gradient norm on the digits falls by "
            + ", ".join(f"{gain:.2f}" for gain in gains)
            + " orders of magnitude at its successive "
            "steps, until it reaches rounding level.",
        ),
        Claim(
            "every minibatch method stalls at a noise floor, while full-batch L-BFGS keeps "
            "going down",
            reference < min(floors.values()),
            f"Over the last quarter of each minibatch run f - f* stays at "
            f"{floors[lowest]:.3g} or above (the lowest: {lowest}); full-batch L-BFGS ends "
            f"at {reference:.3g}.",
        ),
    ]


def orders_paragraphs(
    studies: Sequence[orders.FullBatchStudy], noisy: orders.MinibatchStudy
) -> list[str]:
    """The section's text; the sentences about this run's results are built from its data."""
    ravine, digits = studies
    reached = [
        (digits.seconds_to_tolerance(run), run)
        for run in digits.runs
        if digits.seconds_to_tolerance(run) is not None
    ]
    seconds, fastest = min(reached, key=lambda pair: pair[0])
    newton_run = digits.run("newton")
    newton_ms = 1e3 * newton_run.result.wall_time / max(newton_run.iterations, 1)
    fits = int(np.sqrt(orders.MEMORY_BUDGET / orders.FLOAT_BYTES))
    if fastest is newton_run:
        first = f"and it still got there first in wall time ({1e3 * seconds:.3g} ms)"
    else:
        first = f"and in wall time {fastest.label} got there first ({1e3 * seconds:.3g} ms)"
    fixed = next(run for run in noisy.runs if run.label == "L-BFGS, fixed step")
    searched = next(run for run in noisy.runs if run.label == "L-BFGS + line search")
    adam = next(run for run in noisy.runs if run.method == "adam")
    start = float(noisy.gap(fixed)[0])
    worst = float(noisy.gap(fixed)[1:].max())
    fixed_text = (
        f"jumps as high as {worst:.3g} above the minimum, from {start:.3g} at the start"
        if worst > start
        else f"ends {float(noisy.gap(fixed)[-1]):.3g} above it"
    )
    passes = float(searched.passes[-1])
    return [
        "Every method so far uses only the gradient, the slope of the loss. A second-order "
        "method also uses its curvature. Newton's method fits a quadratic to the loss around "
        "the current point, using the Hessian (the matrix of second derivatives), and jumps "
        "to that quadratic's minimum by solving H p = -g. There is no learning rate to tune: "
        "on a quadratic loss the first step lands on the minimum, and close to any minimum "
        "the error is squared at every step, so the number of correct digits doubles.",
        "The catch is the cost of one iteration. With N parameters the Hessian has N^2 "
        "entries to compute and store, and solving with it takes about N^3 operations. BFGS "
        "needs no Hessian: it builds an estimate of the inverse Hessian from how the gradient "
        "changed over the steps so far (N^2 numbers, N^2 work per step). L-BFGS keeps only "
        f"the last m steps and gradient changes (here m = {orders.HISTORY_SIZE}), 2mN numbers "
        "and about 4mN operations per step, close to Adam's cost. All three choose the step "
        "length by a line search that tries the full step first.",
        f"The first table counts iterations and wall time until the gradient norm falls to "
        f"{digits.tolerance:g} of its start, on a ravine (condition number "
        f"{ravine.kappa:,.0f}) and on {digits.title}. Newton needs by far the fewest "
        f"iterations: {digits.iterations_to_tolerance(newton_run)} on the digits. But each "
        f"one builds and factorizes a {digits.dimension} x {digits.dimension} Hessian "
        f"({newton_ms:.3g} ms per iteration), {first}. Past about {fits:,} parameters a dense "
        f"Hessian does not even fit in {orders.MEMORY_BUDGET / 1e9:g} GB of memory (the "
        "third table), and neural networks have millions to billions.",
        "The lecture's advice: if the whole data set fits in one batch and the loss is "
        "deterministic, L-BFGS usually works very well, with nothing to tune. It transfers "
        "badly to minibatches. Otherwise Adam is a good default.",
        "Minibatches: quasi-Newton methods learn the curvature from differences of "
        "gradients. On a minibatch each gradient carries sampling noise, and once the steps "
        "get small the noise dominates the difference, so the curvature estimate is mostly "
        "noise. Run the way torch.optim.LBFGS is usually run on minibatches (one step per "
        f"batch, fixed step length 1), L-BFGS here {fixed_text}. With a line search on each "
        f"batch it is stable, but it ends {float(noisy.gap(searched)[-1]):.3g} above the "
        f"minimum (Adam: {float(noisy.gap(adam)[-1]):.3g}) after {passes:.3g} passes of "
        "gradient computation, where full-batch L-BFGS reached "
        f"{noisy.reference_gap_at(passes):.3g}. Every minibatch method stalls at a noise "
        "floor; taking both gradients of a curvature pair on the same batch steadies the "
        "estimate but does not remove that floor.",
    ]
