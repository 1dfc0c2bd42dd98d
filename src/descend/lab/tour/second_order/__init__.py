"""First-order against second-order: iterations, wall time and cost per iteration, full batch
and on minibatches (the studies are in :mod:`descend.lab.tour.second_order.studies`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from descend.lab import plots
from descend.lab.palette import family_of
from descend.lab.report import Claim, Figure, Report, Section, Table
from descend.lab.tour.base import Progress, TourSettings
from descend.lab.tour.second_order import studies as orders
from descend.secondorder import Quadratic

SLUG = "orders"
TITLE = "First-order versus second-order"


def runs(settings: TourSettings) -> int:
    """Runs this section makes: every method on each full-batch problem, the minibatch
    line-up and its full-batch reference."""
    methods = len(orders.FIRST_ORDER_LABELS) + len(orders.SECOND_ORDER_LABELS)
    return 2 * methods + len(orders.minibatch_methods(1.0, 1.0)) + 1


@dataclass(frozen=True)
class OrdersSettings:
    """Sizes of the first-order against second-order section (smaller when quick)."""

    ravine_dimension: int
    ravine_kappa: float
    ravine_cap: int
    digits_cap: int
    epochs: int
    newton_epochs: int
    batch_size: int = 128
    tolerance: float = 1e-6

    @classmethod
    def for_tour(cls, settings: TourSettings) -> OrdersSettings:
        """Full sizes, or reduced ones for quick runs."""
        if settings.quick:
            return cls(
                ravine_dimension=30,
                ravine_kappa=100.0,
                ravine_cap=3000,
                digits_cap=300,
                epochs=20,
                newton_epochs=2,
            )
        return cls(
            ravine_dimension=100,
            ravine_kappa=1000.0,
            ravine_cap=20000,
            digits_cap=2000,
            epochs=30,
            newton_epochs=8,
        )


#: Adam's learning rates, from a sweep over 0.003 to 0.3 on each problem.
ORDERS_ADAM_LR = {"ravine": 0.03, "digits": 0.1}


def orders_studies(
    settings: TourSettings,
) -> tuple[list[orders.FullBatchStudy], orders.MinibatchStudy, float]:
    """The section's data: the two full-batch studies (ravine, digits), the minibatch study
    and the measured time of one Newton solve on the digits problem."""
    sizes = OrdersSettings.for_tour(settings)
    ravine = Quadratic.ill_conditioned(
        sizes.ravine_dimension, sizes.ravine_kappa, seed=settings.seed
    )
    studies = [
        orders.full_batch_study(
            ravine,
            "ravine",
            f"ravine: {sizes.ravine_dimension}-dimensional quadratic, "
            f"kappa = {sizes.ravine_kappa:g}",
            adam_lr=ORDERS_ADAM_LR["ravine"],
            tolerance=sizes.tolerance,
            cap=sizes.ravine_cap,
        )
    ]
    digits, description = orders.digits_problem(settings.seed)
    studies.append(
        orders.full_batch_study(
            digits,
            "digits",
            f"{description} ({digits.dimension} weights)",
            adam_lr=ORDERS_ADAM_LR["digits"],
            tolerance=sizes.tolerance,
            cap=sizes.digits_cap,
        )
    )
    noisy = orders.minibatch_study(
        digits,
        studies[1].f_star,
        batch_size=sizes.batch_size,
        epochs=sizes.epochs,
        newton_epochs=sizes.newton_epochs,
        seed=settings.seed,
    )
    newton_run = studies[1].run("newton").result
    solve = orders.newton_solve_seconds(digits.hessian(newton_run.x), newton_run.jac)
    return studies, noisy, solve


def _orders_convergence_panels(studies: Sequence[orders.FullBatchStudy]) -> list[plots.Panel]:
    """Relative gradient norm against iteration and against wall time, one row per problem."""
    panels = []
    for study in studies:
        by_iteration, by_time = [], []
        for run in study.runs:
            history = run.result.history
            y = np.asarray(history.grad_norm) / study.grad_norm0
            markers = run.second_order and len(y) < 40
            by_iteration.append(
                plots.Line(run.label, np.arange(len(y)), y, family_of(run.method), markers=markers)
            )
            by_time.append(
                plots.Line(
                    run.label, np.asarray(history.time), y, family_of(run.method), markers=markers
                )
            )
        panels += [
            plots.Panel(
                f"{study.name}: against iteration",
                "iteration",
                "||g|| / ||g_0||",
                by_iteration,
                xscale="symlog",
                linthresh=1.0,
                hline=study.tolerance,
            ),
            plots.Panel(
                f"{study.name}: against wall time",
                "seconds",
                "||g|| / ||g_0||",
                by_time,
                xscale="symlog",
                linthresh=1e-4,
                hline=study.tolerance,
            ),
        ]
    return panels


def _orders_table(studies: Sequence[orders.FullBatchStudy]) -> Table:
    rows = []
    for study in studies:
        for run in study.runs:
            history = run.result.history
            index = study.iterations_to_tolerance(run)
            per_iteration = 1e3 * run.result.wall_time / max(run.iterations, 1)
            if index is None:
                iterations, seconds = f"> {run.iterations}", f"> {1e3 * history.time[-1]:.4g}"
                gradients, hessians = f"> {history.nfev[-1]}", None
            else:
                iterations, seconds = index, 1e3 * history.time[index]
                gradients = history.nfev[index]
                hessians = index if run.method == "newton" else None
            rows.append(
                [
                    study.name,
                    run.label,
                    run.setting,
                    iterations,
                    seconds,
                    per_iteration,
                    gradients,
                    hessians,
                ]
            )
    tolerance = studies[0].tolerance
    return Table(
        f"Full batch: iterations and wall time until ||g|| <= {tolerance:g} ||g_0||",
        [
            "problem",
            "method",
            "settings",
            "iterations",
            "wall time (ms)",
            "ms per iteration",
            "gradients",
            "Hessians",
        ],
        rows,
        "Wall time on one CPU thread, including every loss and gradient evaluation "
        "(line searches too) and the Hessians. '>' marks a run stopped at its cap "
        f"({studies[0].cap} iterations on the ravine, {studies[1].cap} on the digits). "
        "Newton, BFGS and L-BFGS pick each step length by a strong-Wolfe line search. "
        "GD runs at theory's best constant step 2/(L+mu), Nesterov at 1/L with the "
        f"momentum for kappa = L/mu; Adam at lr {ORDERS_ADAM_LR['ravine']:g} on the "
        f"ravine and {ORDERS_ADAM_LR['digits']:g} on the digits, the best of a sweep "
        "over 0.003 to 0.3 made when this tour was written.",
        summary_columns=(0, 1, 3, 4, 5),
    )


def _newton_table(study: orders.FullBatchStudy) -> Table:
    history = study.run("newton").result.history
    norms = np.asarray(history.grad_norm)
    rows = []
    for k, norm in enumerate(norms):
        ratio = norm / norms[k - 1] ** 2 if k else None
        rows.append(
            [k, norm, float(history.loss[k] - study.f_star), ratio, history.step[k] if k else None]
        )
    return Table(
        "Newton's iterations on the digits: near the minimum the gradient norm is "
        "squared at each step",
        ["iteration", "||g_k||", "f - f*", "||g_k|| / ||g_(k-1)||^2", "step length"],
        rows,
        "Quadratic convergence means ||g_k|| <= C ||g_(k-1)||^2 for some constant "
        "C near the minimum: the ratio column stays bounded (under linear convergence "
        "it would grow without bound) while the gradient norm falls by more orders of "
        "magnitude at every step. The line search accepts the full Newton step "
        "(length 1).",
        summary_columns=(0, 1, 2, 3),
    )


def _minibatch_table(study: orders.MinibatchStudy) -> Table:
    dimension = len(study.runs[0].result.x)
    rows = []
    for run in study.runs:
        gap = study.gap(run)
        epochs = run.result.extras["epochs"][-1]
        passes = float(run.passes[-1])
        rows.append(
            [
                run.label,
                run.setting,
                round(float(epochs), 1),
                round(passes, 1),
                float(gap[-1]),
                study.tail_gap(run),
                float(gap[1:].max()),
                study.reference_gap_at(passes),
            ]
        )
    return Table(
        f"Minibatches of {study.batch_size}: the loss above the minimum, f - f*, on the full data",
        [
            "method",
            "settings",
            "epochs",
            "passes computed",
            "at the end",
            "mean, last quarter",
            "worst",
            "full-batch L-BFGS, same passes",
        ],
        rows,
        "Epochs: batches drawn, in passes over the data (every run draws the same "
        "batches). Passes computed: batch gradients evaluated, line searches included, "
        "times the batch size over the number of samples. The last column is what "
        "full-batch L-BFGS reached with the same amount of gradient computation. f - f* "
        f"at the start is {float(study.gap(study.runs[0])[0]):.3g}. Newton ran "
        f"{study.newton_epochs} epochs only: each of its steps solves a dense "
        f"{dimension} x {dimension} system.",
        summary_columns=(0, 3, 4, 5, 6, 7),
    )


def build(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """First-order against second-order: iterations, wall time and cost per iteration, full
    batch and on minibatches."""
    studies, noisy, solve = orders_studies(settings)
    progress(
        "first-order against second-order",
        sum(len(study.runs) for study in studies) + len(noisy.runs) + 1,
    )
    ravine, digits = studies
    claims = _orders_claims(studies, noisy)
    figures = [
        Figure(
            plots.line_panels(
                _orders_convergence_panels(studies), report.image_path("orders_convergence.png")
            ).name,
            "Gradient norm relative to the start, on log scales, against iteration (left) "
            "and wall time (right); the dotted line is the tolerance of the table. The "
            "first-order runs stop there; Newton, BFGS and L-BFGS are cheap enough to go on. "
            f"{claims[0].evidence} On the digits Newton's curve bends down ever more steeply "
            "(quadratic convergence) but each of its points costs a Hessian, which the time "
            "axis shows.",
        ),
    ]
    shown = 31  # iterations 0 to 30
    close_up = [
        plots.Line(
            run.label,
            np.arange(len(run.result.history.grad_norm))[:shown],
            np.asarray(run.result.history.grad_norm)[:shown] / digits.grad_norm0,
            family_of(run.method),
            markers=True,
        )
        for run in digits.runs
    ]
    figures.append(
        Figure(
            plots.line_panels(
                [
                    plots.Panel(
                        "digits: the first 30 iterations",
                        "iteration",
                        "||g|| / ||g_0||",
                        close_up,
                        hline=digits.tolerance,
                    )
                ],
                report.image_path("orders_close_up.png"),
                columns=1,
                size=(7.5, 4.0),
            ).name,
            "A close-up of the first 30 iterations on the digits. Gradient descent and Nesterov "
            "shrink the gradient by a roughly constant factor per step (a straight line on this "
            "scale). BFGS and L-BFGS speed up as their curvature estimate improves. "
            f"{claims[1].evidence}",
        )
    )
    panels = []
    for title, second in (
        ("first-order methods on minibatches", False),
        ("second-order methods on minibatches", True),
    ):
        lines = [
            plots.Line(run.label, run.passes, noisy.gap(run), family_of(run.method))
            for run in noisy.runs
            if run.second_order == second
        ]
        most = max(float(run.passes[-1]) for run in noisy.runs)
        shown = noisy.reference.passes <= most
        lines.append(
            plots.Line(
                noisy.reference.label,
                noisy.reference.passes[shown],
                noisy.gap(noisy.reference)[shown],
                family_of(noisy.reference.method),
                dashed=True,
            )
        )
        panels.append(
            plots.Panel(title, "passes over the data computed", "f - f* (full data)", lines)
        )
    figures.append(
        Figure(
            plots.line_panels(panels, report.image_path("orders_minibatch.png")).name,
            f"The loss above the minimum on the full digits data while each method steps on "
            f"batches of {noisy.batch_size}, against the gradient computation spent. Black long "
            "dashes: full-batch L-BFGS, whose every step costs a whole pass. " + claims[2].evidence,
        )
    )
    tables = [
        _orders_table(studies),
        _newton_table(digits),
        Table(
            "What a dense Hessian costs as the model grows",
            [
                "parameters N",
                "gradient (8N bytes)",
                f"L-BFGS pairs, m = {orders.HISTORY_SIZE}",
                "dense Hessian (8N^2 bytes)",
                f"Hessian fits in {orders.MEMORY_BUDGET / 1e9:g} GB",
                "one Newton solve, extrapolated",
            ],
            orders.hessian_cost_rows(digits.dimension, solve),
            f"float64 numbers. Solve time: one Newton solve measured here on the "
            f"{digits.dimension} x {digits.dimension} digits Hessian "
            f"({orders.format_seconds(solve)} on one thread) scaled by N^3, which "
            "ignores that the matrix stops fitting in memory long before.",
            summary_columns=(0, 3, 4, 5),
        ),
        _minibatch_table(noisy),
    ]
    return Section(
        SLUG,
        TITLE,
        _orders_paragraphs(studies, noisy),
        figures,
        tables,
        claims=claims,
        data={
            study.name: {
                "dimension": study.dimension,
                "kappa": study.kappa,
                "f_star": study.f_star,
                "runs": {
                    run.label: _thinned(
                        iteration=np.arange(len(run.result.history.loss)),
                        grad_norm=run.result.history.grad_norm,
                        loss=run.result.history.loss,
                        time=run.result.history.time,
                    )
                    for run in study.runs
                },
            }
            for study in studies
        }
        | {
            "minibatch": {
                run.label: _thinned(passes=run.passes, gap=noisy.gap(run))
                for run in (*noisy.runs, noisy.reference)
            }
        },
    )


#: Gradient norms below this fraction of the start are at rounding level on the digits.
ROUNDING = 1e-9


def newton_digit_gains(study: orders.FullBatchStudy) -> list[float]:
    """Orders of magnitude Newton's gradient norm falls at each step, up to rounding level."""
    norms = np.asarray(study.run("newton").result.history.grad_norm)
    kept = norms[norms > ROUNDING * study.grad_norm0]
    return list(np.log10(kept[:-1] / kept[1:]))


def _orders_claims(
    studies: Sequence[orders.FullBatchStudy], noisy: orders.MinibatchStudy
) -> list[Claim]:
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


def _thinned(points: int = 400, **series: Sequence[float]) -> dict[str, list[float]]:
    """Equal-length series cut to about ``points`` entries, first and last kept, for
    results.json (gradient descent's thousands of iterations would swell the file)."""
    length = len(next(iter(series.values())))
    keep = np.unique(np.linspace(0, length - 1, min(points, length)).round().astype(int))
    return {name: np.asarray(values)[keep].tolist() for name, values in series.items()}


def _orders_paragraphs(
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
