"""Ill-conditioning: the ravine, its zig-zag, steps to tolerance and linear rates next to theory."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from descend.lab import demo, plots, rates
from descend.lab.problems import Ravine
from descend.lab.rates import RateRow, compare_rates
from descend.lab.report import Claim, Figure, Report, Section, Table
from descend.lab.runner import Trace, race
from descend.lab.sections import title_of
from descend.lab.tour.base import (
    Progress,
    TourSettings,
    display_name,
    listing,
    registered,
    steps_text,
)
from descend.lab.tour.finite_run import StartRun, slow_start, study_start

SLUG = "ravine"
TITLE = title_of(SLUG)

CONTENDERS = (
    "sgd:lr=0.09",
    "momentum:lr=0.02,momentum=0.8",
    "nesterov:lr=0.02,momentum=0.8",
    "adagrad:lr=1.5",
    "rmsprop:lr=0.1",
    "adam:lr=0.5",
)
#: The race's runs with momentum, and the adaptive ones, by their display names.
MOMENTUM = tuple(map(display_name, ("sgd_momentum", "nesterov")))
ADAPTIVE = tuple(map(display_name, ("adagrad", "rmsprop", "adam")))
SGD = display_name("sgd")
#: Runs of the finite-run study: theory's step from the table's start, theory's step and the
#: tuned grid rate from the slow eigenvector.
FINITE_RUNS = 3
#: The race: condition number, steps, and the loss its table counts steps to.
KAPPA, STEPS, RACE_TOLERANCE = 20.0, 100, 1e-3
#: The steps-to-tolerance table (the lab's seed): condition number, tolerance, run length.
TABLE_KAPPA, TABLE_TOLERANCE, TABLE_STEPS = 100.0, 1e-6, 3000
#: The learning-rate range of the table's log grid (:func:`descend.lab.demo.run_demo`'s).
GRID_RANGE = (1e-4, 2.0)
#: Steps over which the zig-zag across the valley is counted.
ZIGZAG_STEPS = 20
#: A run has dropped to the valley floor once its error across it is this fraction of the start.
FLOOR_FRACTION = 0.1


def grid_points(settings: TourSettings) -> int:
    """Learning rates on the demo table's log grid."""
    return 8 if settings.quick else 31


def runs(settings: TourSettings) -> int:
    """Optimizer runs this section makes."""
    return len(CONTENDERS) + demo.row_count() + rates.row_count() + FINITE_RUNS


def across_valley(problem: Ravine, trace: Trace) -> np.ndarray:
    """Each point's error along the steepest eigendirection: across the valley."""
    return problem.quadratic.errors(trace.trajectory)[:, int(np.argmax(problem.eigenvalues))]


def zigzags(errors: np.ndarray, steps: int = ZIGZAG_STEPS) -> int:
    """How many of the first ``steps`` steps flip the sign of the error across the valley."""
    head = np.sign(errors[: steps + 1])
    return int(np.sum(head[1:] != head[:-1]))


def steps_to_floor(errors: np.ndarray, fraction: float = FLOOR_FRACTION) -> int | None:
    """First step whose error across the valley is at most ``fraction`` of the start's."""
    hits = np.flatnonzero(np.abs(errors) <= fraction * abs(errors[0]))
    return int(hits[0]) if hits.size else None


def build(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """Ill-conditioning: the zig-zag, the race GIF, steps to tolerance and linear rates."""
    problem = Ravine(kappa=KAPPA, picture=True)
    contenders = registered(CONTENDERS)
    traces = race(problem, contenders, STEPS, seed=settings.seed)
    progress("ravine", len(traces))
    by_name = {trace.label: trace for trace in traces}
    claims = _race_claims(problem, by_name)
    figures = [
        Figure(
            plots.race_gif(
                problem,
                traces,
                report.image_path("race.gif"),
                "the race down a ravine",
                frames=20 if settings.quick else 32,
            ).name,
            f"The race, animated: every optimizer starts at the same point, far out along the "
            f"shallow direction of a ravine with condition number {problem.kappa:g}.",
        ),
        Figure(
            plots.contour(
                problem,
                traces,
                report.image_path("ravine_contour.png"),
                f"ravine, kappa = {problem.kappa:g}: trajectories",
            ).name,
            "Each optimizer's path from the start (the round marker); the marker in its "
            "legend colour is where it ends. Plain gradient descent crosses the valley at "
            "almost every step; momentum's paths overshoot and swing back; the adaptive "
            "methods first drop to the valley floor, then run along it.",
        ),
        Figure(
            plots.curves(
                traces,
                report.image_path("ravine_loss.png"),
                f"ravine, kappa = {problem.kappa:g}: loss against step",
            ).name,
            "The same runs as loss above the minimum, on a log scale: a straight line is a "
            "constant linear rate.",
        ),
    ]
    race_table = Table(
        f"Race on the kappa = {problem.kappa:g} ravine ({STEPS} steps)",
        ["optimizer", "spec", f"steps until the loss stays below {RACE_TOLERANCE:g}", "final loss"],
        [
            [c.label, c.optimizer.label, t.steps_to(RACE_TOLERANCE), t.final_loss]
            for c, t in zip(contenders, traces, strict=True)
        ],
        "A step count is where the loss drops below the tolerance for good: from that step to "
        "the end of the run it never rises above it again ('-': it ends above).",
    )

    table_problem, demo_rows = demo.run_demo(
        condition_number=TABLE_KAPPA,
        tolerance=TABLE_TOLERANCE,
        max_steps=TABLE_STEPS,
        grid_points=grid_points(settings),
        seed=settings.seed,
    )
    progress("ravine: steps to tolerance", len(demo_rows))
    claims += _table_claims(demo_rows)
    tuned = next(r for r in demo_rows if r.optimizer == "sgd" and r.predicted is None)
    grid = np.geomspace(*GRID_RANGE, grid_points(settings))
    table_start = study_start(
        table_problem,
        "the table's start",
        TABLE_TOLERANCE,
        TABLE_STEPS,
        grid,
        grid_best=(tuned.config["learning_rate"], tuned.steps),
    )
    slow = study_start(
        slow_start(table_problem), "the slow eigenvector", TABLE_TOLERANCE, TABLE_STEPS, grid
    )
    progress("ravine: a finite run against the worst case", FINITE_RUNS)
    claims += _finite_run_claims(table_start, slow)

    rate_rows = compare_rates(seed=settings.seed)
    progress("ravine: rates", len(rate_rows))
    claims.append(_rates_claim(rate_rows))
    return Section(
        SLUG,
        TITLE,
        [
            "When the loss curves much more steeply in one direction than in another (a large "
            "condition number kappa, the ratio of the largest to the smallest curvature), plain "
            "gradient descent is stuck with a bad trade-off. A step size small enough not to "
            "overshoot across the steep direction makes very slow progress along the shallow one, "
            "so SGD zig-zags across the valley while creeping along it.",
            "Momentum keeps a running velocity: the zig-zag components cancel out while the "
            "steady pull along the valley adds up, so the number of steps grows like sqrt(kappa) "
            "instead of kappa. AdaGrad, RMSProp and Adam instead divide each coordinate's step by "
            "a running size of its gradients, which evens out the curvatures when the valley is "
            "aligned with the axes.",
            "On quadratics convergence theory predicts the exact linear rate (the factor by which "
            "the error shrinks per step) for gradient descent, heavy-ball momentum and Nesterov. "
            "The last table sets the prediction beside the rate each optimizer actually showed, "
            "at the theory's optimal settings and at everyday ones (lr = 1/L, momentum 0.9).",
            finite_run_paragraph(table_start, slow, TABLE_TOLERANCE),
        ],
        figures,
        [
            race_table,
            steps_to_tolerance_table(
                demo_rows, TABLE_STEPS, grid_points(settings), table_problem.condition_number
            ),
            rates_to_table(rate_rows),
        ],
        data={
            "traces": [t.to_dict() for t in traces],
            "across_valley": {t.label: across_valley(problem, t).tolist() for t in traces},
            "steps_to_tolerance": [
                {
                    "optimizer": r.optimizer,
                    "setting": r.setting,
                    "steps": r.steps,
                    "predicted": r.predicted,
                }
                for r in demo_rows
            ],
            "finite_run": [
                {
                    "start": run.start,
                    "slow_share": run.slow_share,
                    "theory_lr": run.theory_lr,
                    "theory_steps": run.theory_steps,
                    "predicted": run.predicted,
                    "grid_lr": run.grid_lr,
                    "grid_steps": run.grid_steps,
                }
                for run in (table_start, slow)
            ],
            "rates": [
                {
                    "kappa": r.kappa,
                    "method": r.method,
                    "setting": r.setting,
                    "predicted": r.predicted,
                    "measured": r.measured,
                }
                for r in rate_rows
            ],
        },
        claims=claims,
    )


def _race_claims(problem: Ravine, by_name: dict[str, Trace]) -> list[Claim]:
    """What the paragraphs say the race shows, against the race."""
    errors = {name: across_valley(problem, trace) for name, trace in by_name.items()}
    sgd_flips = zigzags(errors[SGD])
    flips = {name: zigzags(errors[name]) for name in MOMENTUM + ADAPTIVE}
    steps = len(by_name[SGD].losses) - 1
    excess = {name: float(trace.excess[-1]) for name, trace in by_name.items()}
    floor = {name: steps_to_floor(errors[name]) for name in (SGD,) + ADAPTIVE}

    def floor_text(name: str) -> str:
        return f"{name} {steps_text(floor[name], steps)}"

    return [
        Claim(
            "SGD zig-zags across the valley",
            sgd_flips >= 0.8 * ZIGZAG_STEPS,
            f"SGD's error across the valley changes sign at {sgd_flips} of its first "
            f"{ZIGZAG_STEPS} steps ("
            + ", ".join(f"{name} {count}" for name, count in flips.items())
            + ").",
        ),
        Claim(
            "momentum and Nesterov get further down the valley than SGD in the same steps",
            all(excess[name] < excess[SGD] for name in MOMENTUM),
            f"After {steps} steps the loss above the minimum is {excess[SGD]:.3g} for {SGD}, "
            + " and ".join(f"{excess[name]:.3g} for {name}" for name in MOMENTUM)
            + ".",
        ),
        Claim(
            "the adaptive methods drop to the valley floor sooner than SGD",
            all(
                floor[name] is not None and (floor[SGD] is None or floor[name] < floor[SGD])
                for name in ADAPTIVE
            ),
            f"The error across the valley first falls to {FLOOR_FRACTION:.0%} of its start "
            f"at: {listing([floor_text(name) for name in ADAPTIVE + (SGD,)])}.",
        ),
    ]


def _table_claims(rows: Sequence[demo.DemoRow]) -> list[Claim]:
    """The steps-to-tolerance table against the paragraphs and theory."""
    best = {row.optimizer: row.steps for row in rows if row.predicted is None}
    at_theory = {row.optimizer: row for row in rows if row.predicted is not None}

    def count(steps: int | None) -> str:
        return str(steps) if steps is not None else f"more than {TABLE_STEPS}"

    momentum = ("sgd_momentum", "nesterov_momentum")
    gd = at_theory["sgd"]
    slower = [at_theory[name] for name in momentum]
    names = {name: display_name(name) for name in ("sgd", *momentum)}
    return [
        Claim(
            "momentum settles sooner than plain gradient descent at the best grid rates",
            all(
                best[name] is not None and (best["sgd"] is None or best[name] < best["sgd"])
                for name in momentum
            ),
            f"At the best rate of the grid the loss stays below {TABLE_TOLERANCE:g} from "
            f"step {count(best['sgd'])} for {names['sgd']}, "
            + " and ".join(f"{count(best[name])} for {names[name]}" for name in momentum)
            + ".",
        ),
        Claim(
            "gradient descent at theory's step 2/(L+mu) needs the steps theory predicts",
            gd.steps is not None and abs(gd.steps - gd.predicted) <= 1,
            f"Measured {count(gd.steps)}, predicted {gd.predicted:g}.",
        ),
        Claim(
            "at the optimal heavy-ball and Nesterov settings the error decays like k r^k, so "
            "they need somewhat more steps than r^k alone predicts",
            all(row.steps is not None and row.steps >= row.predicted for row in slower),
            "Measured against predicted: "
            + ", ".join(
                f"{names[row.optimizer]} {count(row.steps)} against {row.predicted:g}"
                for row in slower
            )
            + ".",
        ),
    ]


def _rates_claim(rows: Sequence[RateRow]) -> Claim:
    worst = max(rows, key=lambda row: row.relative_error)
    return Claim(
        "the measured linear rates match theory's",
        worst.relative_error < 0.05,
        f"The largest difference is {100 * worst.relative_error:.2f}% ({worst.method}, "
        f"{worst.setting} setting, kappa = {worst.kappa:g}).",
    )


def steps_to_tolerance_table(
    rows: Sequence[demo.DemoRow], max_steps: int, grid: int, kappa: float
) -> Table:
    """The demo's steps-to-tolerance rows as a report table."""
    names = {"learning_rate": "lr", "momentum": "rho"}
    cells = []
    for row in rows:
        config = ", ".join(
            f"{names.get(k, k)}={v:.3g}"
            if v is not None
            else f"{names.get(k, k)}: no grid rate settles"
            for k, v in row.config.items()
        )
        steps = row.steps if row.steps is not None else f"> {max_steps}"
        predicted = (
            ""
            if row.predicted is None
            else "never"
            if math.isinf(row.predicted)
            else int(row.predicted)
        )
        cells.append([display_name(row.optimizer), row.setting, config, steps, predicted])
    return Table(
        f"Steps until the loss stays below {TABLE_TOLERANCE:g} on a rotated kappa = "
        f"{kappa:g} quadratic (2-D), tuned and at theory's settings",
        [
            "optimizer",
            "setting",
            "hyperparameters",
            f"steps until the loss stays below {TABLE_TOLERANCE:g}",
            "theory predicts",
        ],
        cells,
        f"Each run lasts {max_steps} steps; its count is the step from which the loss "
        "never rises above the tolerance again. The tuned rows try "
        f"{grid} learning rates, log-spaced from {GRID_RANGE[0]:g} to {GRID_RANGE[1]:g}. "
        "Theory gives the worst-case "
        "asymptotic rate r, and the loss contracts like r^(2k).",
    )


def rates_to_table(rows: Sequence[RateRow]) -> Table:
    """Predicted against measured rates as a report table."""
    return Table(
        "Linear rate per step, predicted against measured (10-dimensional quadratics, "
        "eigenvalues log-spaced in [1, kappa])",
        [
            "kappa",
            "method",
            "setting",
            "lr",
            "momentum",
            "predicted rate",
            "measured rate",
            "difference",
        ],
        [
            [
                int(r.kappa),
                r.method,
                r.setting,
                r.lr,
                r.momentum,
                r.predicted,
                r.measured,
                f"{100 * r.relative_error:.2f}%",
            ]
            for r in rows
        ],
        "Predicted: the spectral radius of each method's iteration over the Hessian's "
        "eigenvalues. Measured: the geometric-mean contraction of the error over the second "
        "half of the run. The optimal settings are lr = 2/(L+mu) for gradient descent, "
        "Polyak's alpha and beta for heavy ball, and 4/(3L+mu) with its matching momentum for "
        "Nesterov.",
    )


def finite_run_paragraph(table_start: StartRun, slow: StartRun, tolerance: float) -> str:
    """Why a grid rate can settle before theory's optimal step, in the measured numbers."""
    theory_lr, rate = table_start.theory_lr, table_start.theory_factors[0]

    def count(steps: int | None) -> str:
        return f"{steps} steps" if steps is not None else f"more than {TABLE_STEPS} steps"

    if table_start.grid_wins and table_start.grid_factors is not None:
        slow_factor, steep_factor = table_start.grid_factors
        opening = (
            f"A grid rate can beat theory on a finite run. In the steps-to-tolerance table "
            f"gradient descent at the grid's lr {table_start.grid_lr:.3g} settles in "
            f"{count(table_start.grid_steps)}, theory's optimal 2/(L+mu) = {theory_lr:.3g} "
            f"in {count(table_start.theory_steps)}. Theory is not wrong: its rate {rate:.4f} "
            "is the worst case over starting points, the factor by which the error shrinks "
            "per step along its slowest direction once every other direction has died out. "
            f"The table's start holds only {table_start.slow_share:.1%} of its loss along "
            f"the slow direction; lr {table_start.grid_lr:.3g} shrinks the steep direction, "
            f"where the rest lies, by {steep_factor:.4f} per step instead of {rate:.4f}, and "
            f"the slow one by {slow_factor:.4f}, barely worse. "
        )
    else:
        opening = (
            f"Theory's optimal 2/(L+mu) = {theory_lr:.3g} shrinks the error by {rate:.4f} per "
            "step along its slowest direction, the worst case over starting points; in this "
            f"run no grid rate settles before it ({count(table_start.grid_steps)} at the "
            f"grid's best lr against {count(table_start.theory_steps)}). "
        )
    return opening + (
        f"Started instead on the slow eigenvector with the same loss, the worst case, theory's "
        f"step needs {count(slow.theory_steps)} (theory predicts {slow.predicted:g}) and the "
        + (
            f"grid's best, lr {slow.grid_lr:.3g}, {count(slow.grid_steps)}."
            if slow.grid_lr is not None
            else f"grid has no rate that settles below {tolerance:g}."
        )
    )


def _finite_run_claims(table_start: StartRun, slow: StartRun) -> list[Claim]:
    """The finite-run explanation, checked: each count follows from its directions' factors,
    and from the worst start theory's step wins."""

    def pair(run: StartRun) -> str:
        return (
            f"theory's step {run.theory_steps} measured, {run.theory_counted} counted; "
            f"grid's best {run.grid_steps} measured, {run.grid_counted} counted"
        )

    return [
        Claim(
            "a finite run's step count follows from each eigendirection's own factor and its "
            "share of the starting loss, which is how a grid rate can beat theory's worst case",
            table_start.explained and slow.explained,
            f"From {table_start.start}: {pair(table_start)}. From {slow.start}: {pair(slow)}.",
        ),
        Claim(
            "from a start on the slow eigenvector theory's 2/(L+mu) settles in the fewest "
            "steps of the grid, and in the steps theory predicts",
            slow.theory_steps is not None
            and not slow.grid_wins
            and abs(slow.theory_steps - slow.predicted) <= 1,
            f"Theory's step: {slow.theory_steps} measured, {slow.predicted:g} predicted; the "
            f"grid's best: {slow.grid_steps}.",
        ),
    ]
