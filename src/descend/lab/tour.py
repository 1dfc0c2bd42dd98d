"""The tour behind ``descend demo``: the four problems of SGD, measured, drawn and explained.

Sections, each written to the report as soon as it is done:

1. ill-conditioning (the ravine): trajectories, the animated race, steps to tolerance next to
   theory, and predicted against measured linear rates for kappa 10, 100 and 1000;
2. saddle points: x^2 - y^2 and a 100-dimensional saddle, with escape times;
3. local minima: a tilted double well, Rastrigin and Himmelblau;
4. noisy gradients: minibatch least squares, batch size, momentum and weight averaging;
5. learning-rate decay: step, exponential and 1/t decay for SGD+Momentum and Adam;
6. the classics: Rosenbrock, Beale and Booth;
7. first-order against second-order: GD, Nesterov and Adam next to Newton, BFGS and L-BFGS on
   a ravine and on logistic regression (iterations, wall time, what a Hessian costs), then the
   same methods on minibatches (see :mod:`descend.lab.orders`).

``quick=True`` shortens every run (for tests); the figures and tables keep their shape.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from descend.lab import orders, plots
from descend.lab.demo import DemoRow, run_demo
from descend.lab.problems import (
    Beale,
    Booth,
    HighDimSaddle,
    Himmelblau,
    NoisyLeastSquares,
    Problem,
    Rastrigin,
    Ravine,
    RosenbrockValley,
    Saddle,
    TiltedDoubleWell,
)
from descend.lab.rates import RateRow, compare_rates
from descend.lab.report import Figure, Report, Section, Table
from descend.lab.runner import Contender, Trace, race
from descend.secondorder import Quadratic as SecondOrderQuadratic

#: ``progress(description, advance)``: called as runs finish; advance counts runs.
Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class TourSettings:
    """Knobs of the tour. ``quick`` cuts every run short, for tests."""

    quick: bool = False
    seed: int = 0

    def steps(self, full: int) -> int:
        """``full`` steps, or a fifth of them when quick."""
        return full if not self.quick else max(20, full // 5)


def _named(pairs: Sequence[tuple[str, str]]) -> list[Contender]:
    """Contenders from ``(legend name, spec)`` pairs."""
    return [Contender.parse(spec, name=name) for name, spec in pairs]


def _noop(description: str, advance: int) -> None:
    return None


# -- 1. ill-conditioning ---------------------------------------------------------------------

RAVINE_CONTENDERS = (
    ("SGD", "sgd:lr=0.09"),
    ("SGD+Momentum", "momentum:lr=0.02,momentum=0.8"),
    ("Nesterov", "nesterov:lr=0.02,momentum=0.8"),
    ("AdaGrad", "adagrad:lr=1.5"),
    ("RMSProp", "rmsprop:lr=0.1"),
    ("Adam", "adam:lr=0.5"),
)


def ravine_section(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """Ill-conditioning: the zig-zag, the race GIF, steps to tolerance and linear rates."""
    problem = Ravine(kappa=20, picture=True)
    contenders = _named(RAVINE_CONTENDERS)
    traces = race(problem, contenders, settings.steps(100), seed=settings.seed)
    progress("ravine", len(contenders))
    figures = [
        Figure(plots.race_gif(problem, traces, report.image_path("race.gif"),
                              "the race down a ravine", frames=20 if settings.quick else 32).name,
               "The race, animated: every optimizer starts at the black dot, far out along the "
               "shallow direction of a ravine with condition number 20."),
        Figure(plots.contour(problem, traces, report.image_path("ravine_contour.png"),
                             "ravine, kappa = 20: trajectories").name,
               "SGD (blue) jitters across the steep direction while creeping along the shallow "
               "one. Momentum and Nesterov build up speed along the valley floor. The adaptive "
               "methods rescale each coordinate: they drop straight to the valley floor, then "
               "walk along it at a pace set by their learning rate rather than the curvature."),
        Figure(plots.curves(traces, report.image_path("ravine_loss.png"),
                            "ravine, kappa = 20: loss against step").name,
               "The same runs as loss above the minimum, on a log scale: a straight line is a "
               "constant linear rate."),
    ]
    tolerance = 1e-3
    race_table = Table(
        "Race on the kappa = 20 ravine", ["optimizer", "spec", f"steps to loss {tolerance:g}",
                                          "final loss"],
        [[c.label, c.method.label, t.steps_to(tolerance), t.final_loss]
         for c, t in zip(contenders, traces, strict=True)])

    demo_problem, demo_rows = run_demo(condition_number=100.0, tolerance=1e-6,
                                       max_steps=settings.steps(3000),
                                       grid_points=8 if settings.quick else 31)
    progress("ravine: steps to tolerance", len(demo_rows))
    steps_table = steps_to_tolerance_table(demo_rows, settings.steps(3000))

    rate_rows = compare_rates(steps=settings.steps(800))
    progress("ravine: rates", len(rate_rows))
    rates_table = rates_to_table(rate_rows)
    return Section(
        "ravine", "1. Ill-conditioning: the ravine",
        ["When the loss curves much more steeply in one direction than in another (a large "
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
         "at the theory's optimal settings and at everyday ones (lr = 1/L, momentum 0.9)."],
        figures, [race_table, steps_table, rates_table],
        data={"traces": [t.to_dict() for t in traces]})


def steps_to_tolerance_table(rows: Sequence[DemoRow], max_steps: int) -> Table:
    """The demo's steps-to-tolerance rows as a report table."""
    names = {"learning_rate": "lr", "momentum": "rho"}
    cells = []
    for row in rows:
        config = ", ".join(f"{names.get(k, k)}={v:.3g}" if v is not None
                           else f"{names.get(k, k)}: none of the grid settled"
                           for k, v in row.config.items())
        steps = row.steps if row.steps is not None else f"> {max_steps}"
        predicted = ("" if row.predicted is None
                     else "never" if math.isinf(row.predicted) else int(row.predicted))
        cells.append([row.optimizer, row.setting, config, steps, predicted])
    return Table("Steps to loss 1e-6 on a rotated kappa = 100 quadratic (2-D), tuned and at "
                 "theory's settings",
                 ["optimizer", "setting", "hyperparameters", "steps", "theory predicts"], cells,
                 "Theory gives the worst-case asymptotic rate. At the optimal heavy-ball and "
                 "Nesterov settings the iteration has a repeated eigenvalue, so the error decays "
                 "like k r^k and needs somewhat more steps than r^k alone predicts.")


def rates_to_table(rows: Sequence[RateRow]) -> Table:
    """Predicted against measured rates as a report table."""
    return Table(
        "Linear rate per step, predicted against measured (10-dimensional quadratics, "
        "eigenvalues log-spaced in [1, kappa])",
        ["kappa", "method", "setting", "lr", "momentum", "predicted rate", "measured rate",
         "difference"],
        [[int(r.kappa), r.method, r.setting, r.lr, r.momentum, r.predicted, r.measured,
          f"{100 * r.relative_error:.2f}%"] for r in rows],
        "Predicted: the spectral radius of each method's iteration over the Hessian's "
        "eigenvalues. Measured: the geometric-mean contraction of the error over the second "
        "half of the run. The optimal settings are lr = 2/(L+mu) for gradient descent, "
        "Polyak's alpha and beta for heavy ball, and 4/(3L+mu) with its matching momentum for "
        "Nesterov.")


# -- 2. saddle points ------------------------------------------------------------------------

SADDLE_CONTENDERS = (
    ("SGD", "sgd:lr=0.05"),
    ("SGD+Momentum", "momentum:lr=0.05,momentum=0.9"),
    ("Nesterov", "nesterov:lr=0.05,momentum=0.9"),
    ("RMSProp", "rmsprop:lr=0.01"),
    ("Adam", "adam:lr=0.05"),
)


def _escape_table(title: str, contenders: Sequence[Contender], traces: Sequence[Trace],
                  threshold: float, steps: int) -> Table:
    rows = []
    for contender, trace in zip(contenders, traces, strict=True):
        escaped = trace.settled_below(threshold)
        closest = float(np.min(np.linalg.norm(trace.trajectory, axis=1)))
        rows.append([contender.label, contender.method.label,
                     escaped if escaped is not None else f"> {steps}", closest])
    return Table(title, ["optimizer", "spec", f"steps to escape (loss <= {threshold:.3g})",
                         "closest approach to the saddle point"], rows)


def saddle_section(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """Saddle points: 2-D and 100-D, with escape times."""
    contenders = _named(SADDLE_CONTENDERS)
    flat = Saddle(y0=1e-3)
    steps_2d = settings.steps(150)
    traces = race(flat, contenders, steps_2d, seed=settings.seed)
    progress("saddle", len(contenders))
    wide = HighDimSaddle(dim=100, negative=5, seed=settings.seed)
    steps_nd = settings.steps(600)
    wide_traces = race(wide, contenders, steps_nd, seed=settings.seed)
    progress("saddle: 100 dimensions", len(contenders))
    figures = [
        Figure(plots.contour(flat, traces, report.image_path("saddle_contour.png"),
                             "saddle x^2 - y^2, starting at (1, 0.001)").name,
               "Every run first slides down x towards the saddle point at the origin, where the "
               "gradient vanishes. Along y the start is only 0.001 off the ridge, so the push "
               "to fall off is tiny: SGD lingers; momentum and the adaptive methods leave sooner."),
        Figure(plots.curves(wide_traces, report.image_path("saddle_nd_distance.png"),
                            "saddle in 100 dimensions (5 directions curve down)", metric="norm",
                            ylabel="distance from the saddle point").name,
               "Distance from the saddle point against step, in 100 dimensions. Every run is "
               "first pulled in towards the saddle along the 95 upward-curving directions; "
               "it escapes when the 5 downward ones take over and the distance climbs to the "
               "wells around 0.2 to 0.7 away. SGD stays close for hundreds of steps."),
    ]
    tables = [
        _escape_table("Escape from the 2-D saddle x^2 - y^2", contenders, traces,
                      flat.escape_loss, steps_2d),
        _escape_table("Escape from a 100-dimensional saddle (95 directions up, 5 down, start "
                      "1e-6 off the saddle along the downward ones)", contenders, wide_traces,
                      wide.escape_loss, steps_nd),
    ]
    return Section(
        "saddle", "2. Saddle points",
        ["At a saddle point the gradient is zero but the point is no minimum: the loss curves "
         "up in some directions and down in others. Near one, the gradient is tiny, so plain "
         "gradient descent slows to a crawl, and exactly on the ridge it stops for good. In "
         "high dimensions saddle points are far more common than local minima, because a "
         "minimum needs every one of many directions to curve up.",
         "Momentum keeps moving through the flat region and amplifies the small downhill push "
         "step after step. Adaptive methods divide by the size of recent gradients, so a tiny "
         "but consistent gradient still makes a full-size step. The tables count the steps "
         "each needs to fall off the saddle."],
        figures, tables,
        data={"traces_2d": [t.to_dict() for t in traces],
              "traces_100d": [t.to_dict() for t in wide_traces]})


# -- 3. local minima -------------------------------------------------------------------------

MINIMA_CONTENDERS = (
    ("SGD", "sgd:lr=0.05"),
    ("SGD+Momentum", "momentum:lr=0.05,momentum=0.9"),
    ("Nesterov", "nesterov:lr=0.05,momentum=0.9"),
    ("RMSProp", "rmsprop:lr=0.05"),
    ("Adam", "adam:lr=0.1"),
)


def minima_section(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """Local minima: tilted double well, Rastrigin and Himmelblau."""
    contenders = _named(MINIMA_CONTENDERS)
    well = TiltedDoubleWell()
    steps = settings.steps(300)
    traces = race(well, contenders, steps, seed=settings.seed)
    progress("local minima", len(contenders))
    rastrigin = Rastrigin(dim=2)
    rastrigin_contenders = _named([
        ("SGD", "sgd:lr=0.002"), ("SGD+Momentum", "momentum:lr=0.002,momentum=0.95"),
        ("Nesterov", "nesterov:lr=0.002,momentum=0.95"), ("RMSProp", "rmsprop:lr=0.05"),
        ("Adam", "adam:lr=1.0")])
    rastrigin_traces = race(rastrigin, rastrigin_contenders, steps, seed=settings.seed)
    himmelblau = Himmelblau()
    himmelblau_contenders = _named([
        ("SGD", "sgd:lr=0.01"), ("SGD+Momentum", "momentum:lr=0.005,momentum=0.9"),
        ("Nesterov", "nesterov:lr=0.005,momentum=0.9"), ("RMSProp", "rmsprop:lr=0.05"),
        ("Adam", "adam:lr=0.1")])
    himmelblau_traces = race(himmelblau, himmelblau_contenders, steps, seed=settings.seed)
    progress("local minima: Rastrigin, Himmelblau",
             len(rastrigin_contenders) + len(himmelblau_contenders))
    figures = [
        Figure(plots.contour(well, traces, report.image_path("double_well_contour.png"),
                             "tilted double well: shallow well right, deep well left").name,
               "Started on the right, SGD rolls into the nearer, shallower well and stays. With "
               "momentum a run arrives with speed, rolls over the barrier and settles in the "
               "deeper well on the left (gold star)."),
        Figure(plots.panels([(rastrigin, rastrigin_traces), (himmelblau, himmelblau_traces)],
                            report.image_path("rastrigin_himmelblau.png"),
                            ["Rastrigin: a bowl covered in local minima",
                             "Himmelblau: four equally deep minima"]).name,
               "Left: on Rastrigin's function every small dip is a trap; at these settings "
               "only Adam's large steps hop to a lower dip. Right: Himmelblau's "
               "function has four minima of equal depth; which one a run reaches depends on "
               "the path its optimizer takes."),
    ]
    well_rows = []
    for contender, trace in zip(contenders, traces, strict=True):
        end = trace.trajectory[-1]
        well_rows.append([contender.label, contender.method.label, well.basin(end),
                          float(end[0]), trace.final_loss])
    rastrigin_rows = [[c.label, c.method.label, t.final_loss, float(t.distances[-1]),
                       t.final_loss < 1e-6]
                      for c, t in zip(rastrigin_contenders, rastrigin_traces, strict=True)]
    himmelblau_rows = []
    for contender, trace in zip(himmelblau_contenders, himmelblau_traces, strict=True):
        end = trace.trajectory[-1]
        nearest = himmelblau.minima[np.argmin(np.linalg.norm(himmelblau.minima - end, axis=1))]
        himmelblau_rows.append([contender.label, contender.method.label,
                                f"({nearest[0]:.2f}, {nearest[1]:.2f})", trace.final_loss])
    tables = [
        Table("Tilted double well: where each run ends", ["optimizer", "spec", "well", "final x",
                                                           "final loss"], well_rows,
              f"The deep (global) minimum is at x = {well.global_x:.3f} with loss "
              f"{well.minimum_value:.3f}; the shallow one at x = {well.local_x:.3f} with loss "
              f"{well.local_value:.3f}."),
        Table("Rastrigin's function from (2.7, -2.16)", ["optimizer", "spec", "final loss",
                                                         "distance to the global minimum",
                                                         "found it"], rastrigin_rows),
        Table("Himmelblau's function from (-0.3, -0.9)", ["optimizer", "spec",
                                                          "minimum reached", "final loss"],
              himmelblau_rows),
    ]
    return Section(
        "minima", "3. Local minima",
        ["Gradient descent only looks downhill from where it stands, so it stops in the first "
         "dip it meets, however shallow. Momentum carries a run through small dips and over "
         "low barriers, which is one reason it often finds better minima; adaptive step sizes "
         "change which path a run takes but do not look further ahead.",
         "In large neural networks bad local minima turn out to be rare (most critical points "
         "are saddles, and most minima are about as good as each other), but these small "
         "surfaces show the mechanism plainly."],
        figures, tables,
        data={"double_well": [t.to_dict() for t in traces]})


# -- 4. noisy gradients ----------------------------------------------------------------------


def _tail_mean(values: np.ndarray, fraction: float = 0.25) -> float:
    """Mean of the last ``fraction`` of a run: the level it settles to under noise."""
    count = max(1, int(len(values) * fraction))
    return float(np.mean(values[-count:]))


def noise_section(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """Noisy gradients: batch size, momentum and averaging on minibatch least squares."""
    problem = NoisyLeastSquares(n=256, dim=2, batch_size=4, seed=settings.seed)
    steps = settings.steps(400)
    contenders = [Contender.parse("sgd:lr=0.1", average=0.98, name="SGD, batch 4")] + _named([
        ("SGD+Momentum, batch 4", "momentum:lr=0.01,momentum=0.9"),
        ("Adam, batch 4", "adam:lr=0.05"),
    ])
    traces = race(problem, contenders, steps, seed=settings.seed)
    progress("noisy gradients", len(contenders))

    batch_traces, batch_rows = [], []
    sgd = Contender.parse("sgd:lr=0.1")
    for batch in (1, 4, 16, 64, 256):
        sized = NoisyLeastSquares(n=256, dim=2, batch_size=batch, seed=settings.seed)
        trace = race(sized, [Contender(sgd.method, name=f"SGD, batch {batch}")], steps,
                     seed=settings.seed)[0]
        batch_traces.append(trace)
        predicted = sized.gradient_noise(problem.minima[0])
        rng = np.random.default_rng(settings.seed)
        draws = np.stack([sized.stochastic_grad(problem.minima[0], rng) for _ in range(2000)])
        measured = float(np.mean(np.sum(draws ** 2, axis=1)))  # full gradient is 0 there
        batch_rows.append([batch, predicted, measured, _tail_mean(trace.excess)])
    progress("noisy gradients: batch sizes", len(batch_traces))

    figures = [
        Figure(plots.contour(problem, traces, report.image_path("noise_contour.png"),
                             "minibatch least squares (batch 4): noisy paths", averaged=True).name,
               "Each step sees 4 of 256 examples, so the gradient points only roughly at the "
               "minimum (gold star). Every run jitters around it instead of settling; the "
               "dashed line, a running average of SGD's weights (EMA with decay 0.98), moves "
               "smoothly and sits much closer."),
        Figure(plots.curves(traces, report.image_path("noise_loss.png"),
                            "loss above the full-data minimum, batch 4", averaged=True).name,
               "The noise floor: with a constant learning rate the loss stops improving at a "
               "level set by the gradient noise. Averaging the weights (dashed) goes below it."),
        Figure(plots.curves(batch_traces, report.image_path("noise_batch.png"),
                            "SGD, lr 0.1, for batch sizes 1 to 256 (full data)").name,
               "Larger batches mean less noise and a lower floor; the full batch (256) is plain "
               "gradient descent and converges."),
    ]
    method_rows = [[c.label, c.method.label, _tail_mean(t.excess),
                    _tail_mean(t.averaged_losses - problem.minimum_value)
                    if t.averaged_losses is not None else None]
                   for c, t in zip(contenders, traces, strict=True)]
    tables = [
        Table("Batch 4: loss above the minimum over the last quarter of the run",
              ["optimizer", "spec", "raw weights", "averaged weights (EMA 0.98)"], method_rows,
              "SGD+Momentum runs at lr 0.01 with momentum 0.9, the same effective step "
              "(lr / (1 - momentum)) as SGD at lr 0.1."),
        Table("Gradient noise against batch size (SGD, lr 0.1)",
              ["batch size", "predicted E|g_batch - g|^2", "measured (2000 draws)",
               "loss above minimum, last quarter"], batch_rows,
              "Predicted for sampling without replacement: (n - B) / (B (n - 1)) times the "
              "spread of the per-example gradients, measured at the minimum."),
    ]
    return Section(
        "noise", "4. Noisy gradients",
        ["SGD computes each gradient from a small minibatch instead of the whole data set, so "
         "every step is the true gradient plus noise. The noise shrinks like 1 / batch size. "
         "With a constant learning rate the weights never settle: they keep bouncing around "
         "the minimum in a cloud whose size grows with the learning rate and the noise.",
         "Momentum averages recent gradients, but at the same effective step size it bounces "
         "about as much as SGD. What removes the noise is averaging the weights themselves "
         "(evaluating with a running mean of the iterates, descend.WeightAverage) or shrinking "
         "the learning rate over time (next section)."],
        figures, tables, data={"traces": [t.to_dict() for t in traces]})


# -- 5. learning-rate decay ------------------------------------------------------------------

DECAY_SCHEDULES = (
    ("constant", None),
    ("step (halve every 100)", "step:step_size=100,gamma=0.5"),
    ("exponential (k = 0.005)", "exponential:k=0.005"),
    ("1/t (k = 0.02)", "1/t:k=0.02"),
)


def decay_section(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """Step, exponential and 1/t decay for SGD+Momentum and Adam on noisy least squares."""
    problem = NoisyLeastSquares(n=256, dim=2, batch_size=4, seed=settings.seed)
    steps = settings.steps(400)
    groups, rows = [], []
    for title, spec in (("SGD+Momentum, lr 0.01, momentum 0.9", "momentum:lr=0.01,momentum=0.9"),
                        ("Adam, lr 0.05", "adam:lr=0.05")):
        contenders = [Contender.parse(spec, schedule, name=name)
                      for name, schedule in DECAY_SCHEDULES]
        traces = race(problem, contenders, steps, seed=settings.seed)
        groups.append((title, traces))
        for contender, trace in zip(contenders, traces, strict=True):
            rows.append([title.split(",")[0], contender.label, _tail_mean(trace.excess),
                         trace.steps_to(1e-3), float(trace.lrs[-1])])
        progress("learning-rate decay", len(contenders))
    figure = Figure(plots.grid_of_curves(groups, report.image_path("decay.png")).name,
                    "Top: loss above the minimum on minibatch least squares (batch 4). Bottom: "
                    "the learning rate each schedule gives. Decay trades speed early for a "
                    "lower floor later.")
    return Section(
        "decay", "5. Learning-rate decay",
        ["A large learning rate makes fast progress at first, but under gradient noise it "
         "leaves the weights bouncing at a level set by that rate. Decaying the rate over "
         "time keeps the early speed and then lets the weights settle: step decay (halve it "
         "every so often), exponential decay alpha0 exp(-k t) and 1/t decay "
         "alpha0 / (1 + k t).",
         "Decay too early or too fast and progress stalls before reaching the minimum; too "
         "late and the noise floor remains. Adam adapts per coordinate but still has a global "
         "learning rate, and it benefits from decay in the same way."],
        [figure],
        [Table("Schedules on minibatch least squares (batch 4)",
               ["optimizer", "schedule", "loss above minimum, last quarter",
                "steps to 1e-3 above minimum", "final lr"], rows)],
        data={title: [t.to_dict() for t in traces] for title, traces in groups})


# -- 6. classics -----------------------------------------------------------------------------

CLASSIC_CONTENDERS = {
    "rosenbrock": (("SGD", "sgd:lr=0.001"), ("SGD+Momentum", "momentum:lr=0.001,momentum=0.9"),
                   ("Nesterov", "nesterov:lr=0.001,momentum=0.9"),
                   ("AdaGrad", "adagrad:lr=0.5"), ("RMSProp", "rmsprop:lr=0.01"),
                   ("Adam", "adam:lr=0.05")),
    "beale": (("SGD", "sgd:lr=0.01"), ("SGD+Momentum", "momentum:lr=0.005,momentum=0.9"),
              ("Nesterov", "nesterov:lr=0.005,momentum=0.9"), ("AdaGrad", "adagrad:lr=0.5"),
              ("RMSProp", "rmsprop:lr=0.01"), ("Adam", "adam:lr=0.05")),
    "booth": (("SGD", "sgd:lr=0.05"), ("SGD+Momentum", "momentum:lr=0.02,momentum=0.8"),
              ("Nesterov", "nesterov:lr=0.02,momentum=0.8"), ("AdaGrad", "adagrad:lr=2.0"),
              ("RMSProp", "rmsprop:lr=0.1"), ("Adam", "adam:lr=0.5")),
}


def classics_section(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """Rosenbrock, Beale and Booth with the lecture's optimizers."""
    steps = settings.steps(1000)
    problems: list[tuple[Problem, list[Trace]]] = []
    rows = []
    for problem in (RosenbrockValley(), Beale(), Booth()):
        contenders = _named(CLASSIC_CONTENDERS[problem.name])
        traces = race(problem, contenders, steps, seed=settings.seed)
        problems.append((problem, traces))
        for contender, trace in zip(contenders, traces, strict=True):
            rows.append([problem.title, contender.label, contender.method.label,
                         trace.steps_to(1e-6), trace.final_loss, float(trace.distances[-1])])
        progress("classics", len(contenders))
    figure = Figure(plots.panels(problems, report.image_path("classics.png")).name,
                    "Rosenbrock's curved valley, Beale's plateaus and Booth's plain bowl, with "
                    "each optimizer's path from the black dot to the gold star.")
    return Section(
        "classics", "6. The classics: Rosenbrock, Beale, Booth",
        ["Standard test functions for optimizers. Rosenbrock's valley is easy to find and hard "
         "to follow, because it bends; Beale's function has flat plateaus where gradients "
         "nearly vanish and steep walls; Booth's is a simple quadratic bowl for reference."],
        [figure],
        [Table(f"Steps to loss 1e-6 and where each run ends ({steps} steps)",
               ["problem", "optimizer", "spec", "steps to 1e-6", "final loss",
                "distance to minimum"], rows)])


# -- 7. first-order against second-order ----------------------------------------------------


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
            return cls(ravine_dimension=30, ravine_kappa=100.0, ravine_cap=3000,
                       digits_cap=300, epochs=20, newton_epochs=2)
        return cls(ravine_dimension=100, ravine_kappa=1000.0, ravine_cap=20000,
                   digits_cap=2000, epochs=30, newton_epochs=8)


#: Adam's learning rates, from a sweep over 0.003 to 0.3 on each problem.
ORDERS_ADAM_LR = {"ravine": 0.03, "digits": 0.1}


def orders_studies(settings: TourSettings) -> tuple[list[orders.FullBatchStudy],
                                                    orders.MinibatchStudy, float]:
    """The section's data: the two full-batch studies (ravine, digits), the minibatch study
    and the measured time of one Newton solve on the digits problem."""
    sizes = OrdersSettings.for_tour(settings)
    ravine = SecondOrderQuadratic.ill_conditioned(sizes.ravine_dimension, sizes.ravine_kappa,
                                                  seed=settings.seed)
    studies = [orders.full_batch_study(
        ravine, "ravine", f"ravine: {sizes.ravine_dimension}-dimensional quadratic, "
        f"kappa = {sizes.ravine_kappa:g}", adam_lr=ORDERS_ADAM_LR["ravine"],
        tolerance=sizes.tolerance, cap=sizes.ravine_cap)]
    digits, description = orders.digits_problem(settings.seed)
    studies.append(orders.full_batch_study(
        digits, "digits", f"{description} ({digits.dimension} weights)",
        adam_lr=ORDERS_ADAM_LR["digits"], tolerance=sizes.tolerance, cap=sizes.digits_cap))
    noisy = orders.minibatch_study(digits, studies[1].f_star, batch_size=sizes.batch_size,
                                   epochs=sizes.epochs, newton_epochs=sizes.newton_epochs,
                                   seed=settings.seed)
    newton_run = studies[1].run("newton").result
    solve = orders.newton_solve_seconds(digits.hessian(newton_run.x), newton_run.jac)
    return studies, noisy, solve


def _orders_convergence_panels(studies: Sequence[orders.FullBatchStudy]) -> list[plots.Panel]:
    """Relative gradient norm against iteration and against wall time, one row per problem."""
    panels = []
    for study in studies:
        by_iteration, by_time = [], []
        for index, run in enumerate(study.runs):
            history = run.result.history
            y = np.asarray(history.grad_norm) / study.grad_norm0
            markers = run.second_order and len(y) < 40
            by_iteration.append(plots.Line(run.label, np.arange(len(y)), y, index,
                                           markers=markers))
            by_time.append(plots.Line(run.label, np.asarray(history.time), y, index,
                                      markers=markers))
        panels += [
            plots.Panel(f"{study.name}: against iteration", "iteration", "||g|| / ||g_0||",
                        by_iteration, xscale="symlog", linthresh=1.0, hline=study.tolerance),
            plots.Panel(f"{study.name}: against wall time", "seconds", "||g|| / ||g_0||",
                        by_time, xscale="symlog", linthresh=1e-4, hline=study.tolerance),
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
            rows.append([study.name, run.label, run.setting, iterations, seconds,
                         per_iteration, gradients, hessians])
    tolerance = studies[0].tolerance
    return Table(f"Full batch: iterations and wall time until ||g|| <= {tolerance:g} ||g_0||",
                 ["problem", "method", "settings", "iterations", "wall time (ms)",
                  "ms per iteration", "gradients", "Hessians"], rows,
                 "Wall time on one CPU thread, including every loss and gradient evaluation "
                 "(line searches too) and the Hessians. '>' marks a run stopped at its cap "
                 f"({studies[0].cap} iterations on the ravine, {studies[1].cap} on the digits). "
                 "Newton, BFGS and L-BFGS pick each step length by a strong-Wolfe line search. "
                 "GD runs at theory's best constant step 2/(L+mu), Nesterov at 1/L with the "
                 "momentum for kappa = L/mu; Adam's learning rate came from a sweep over 0.003 "
                 "to 0.3.", summary_columns=(0, 1, 3, 4, 5))


def _newton_table(study: orders.FullBatchStudy) -> Table:
    history = study.run("newton").result.history
    norms = np.asarray(history.grad_norm)
    rows = []
    for k, norm in enumerate(norms):
        ratio = norm / norms[k - 1] ** 2 if k else None
        rows.append([k, norm, float(history.loss[k] - study.f_star), ratio,
                     history.step[k] if k else None])
    return Table("Newton's iterations on the digits: near the minimum the gradient norm is "
                 "squared at each step",
                 ["iteration", "||g_k||", "f - f*", "||g_k|| / ||g_(k-1)||^2", "step length"],
                 rows, "Quadratic convergence means ||g_k|| <= C ||g_(k-1)||^2 for some constant "
                 "C near the minimum: the ratio column stays bounded (under linear convergence "
                 "it would grow without bound) while the gradient norm falls by more orders of "
                 "magnitude at every step. The line search accepts the full Newton step "
                 "(length 1).", summary_columns=(0, 1, 2, 3))


def _minibatch_table(study: orders.MinibatchStudy) -> Table:
    dimension = len(study.runs[0].result.x)
    rows = []
    for run in study.runs:
        gap = study.gap(run)
        epochs = run.result.extras["epochs"][-1]
        passes = float(run.passes[-1])
        rows.append([run.label, run.setting,
                     round(float(epochs), 1), round(passes, 1), float(gap[-1]),
                     study.tail_gap(run), float(gap[1:].max()), study.reference_gap_at(passes)])
    return Table(f"Minibatches of {study.batch_size}: the loss above the minimum, f - f*, on "
                 "the full data",
                 ["method", "settings", "epochs", "passes computed", "at the end",
                  "mean, last quarter", "worst", "full-batch L-BFGS, same passes"], rows,
                 "Epochs: batches drawn, in passes over the data (every run draws the same "
                 "batches). Passes computed: batch gradients evaluated, line searches included, "
                 "times the batch size over the number of samples. The last column is what "
                 "full-batch L-BFGS reached with the same amount of gradient computation. f - f* "
                 f"at the start is {float(study.gap(study.runs[0])[0]):.3g}. Newton ran "
                 f"{study.newton_epochs} epochs only: each of its steps solves a dense "
                 f"{dimension} x {dimension} system.", summary_columns=(0, 3, 4, 5, 6, 7))


def orders_section(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """First-order against second-order: iterations, wall time and cost per iteration, full
    batch and on minibatches."""
    studies, noisy, solve = orders_studies(settings)
    progress("first-order against second-order", 12 + len(noisy.runs) + 1)
    ravine, digits = studies
    figures = [
        Figure(plots.line_panels(_orders_convergence_panels(studies),
                                 report.image_path("orders_convergence.png")).name,
               "Gradient norm relative to the start, on log scales, against iteration (left) "
               "and wall time (right); the dotted line is the tolerance of the table. The "
               "first-order runs stop there; Newton, BFGS and L-BFGS are cheap enough to go on. "
               "Newton lands on the ravine's minimum in one step. On the digits its curve bends "
               "down ever more steeply (quadratic convergence) but each of its points costs a "
               "Hessian, which the time axis shows."),
    ]
    shown = 31  # iterations 0 to 30
    close_up = [plots.Line(run.label, np.arange(len(run.result.history.grad_norm))[:shown],
                           np.asarray(run.result.history.grad_norm)[:shown] / digits.grad_norm0,
                           index, markers=True)
                for index, run in enumerate(digits.runs)]
    figures.append(Figure(
        plots.line_panels([plots.Panel("digits: the first 30 iterations", "iteration",
                                       "||g|| / ||g_0||", close_up, hline=digits.tolerance)],
                          report.image_path("orders_close_up.png"), columns=1,
                          size=(7.5, 4.0)).name,
        "A close-up of the first 30 iterations on the digits. Gradient descent and Nesterov "
        "shrink the gradient by a roughly constant factor per step (a straight line on this "
        "scale). BFGS and L-BFGS speed up as their curvature estimate improves. Newton's "
        "gradient norm is squared at each of its last steps: the curve falls off a cliff."))
    panels = []
    for title, second in (("first-order methods on minibatches", False),
                          ("second-order methods on minibatches", True)):
        lines = [plots.Line(run.label, run.passes, noisy.gap(run), index + (3 if second else 0))
                 for index, run in enumerate(r for r in noisy.runs if r.second_order == second)]
        most = max(float(run.passes[-1]) for run in noisy.runs)
        shown = noisy.reference.passes <= most
        lines.append(plots.Line(noisy.reference.label, noisy.reference.passes[shown],
                                noisy.gap(noisy.reference)[shown], -1, dashed=True))
        panels.append(plots.Panel(title, "passes over the data computed",
                                  "f - f* (full data)", lines))
    figures.append(Figure(
        plots.line_panels(panels, report.image_path("orders_minibatch.png")).name,
        f"The loss above the minimum on the full digits data while each method steps on "
        f"batches of {noisy.batch_size}, against the gradient computation spent. Dashed: "
        "full-batch L-BFGS. Every minibatch method stalls at a noise floor; the full-batch "
        "run starts slower (each of its steps costs a whole pass) and keeps going down."))
    tables = [_orders_table(studies), _newton_table(digits),
              Table("What a dense Hessian costs as the model grows",
                    ["parameters N", "gradient (8N bytes)",
                     f"L-BFGS pairs, m = {orders.HISTORY_SIZE}", "dense Hessian (8N^2 bytes)",
                     f"Hessian fits in {orders.MEMORY_BUDGET / 1e9:g} GB",
                     "one Newton solve, extrapolated"],
                    orders.hessian_cost_rows(digits.dimension, solve),
                    f"float64 numbers. Solve time: one Newton solve measured here on the "
                    f"{digits.dimension} x {digits.dimension} digits Hessian "
                    f"({orders.format_seconds(solve)} on one thread) scaled by N^3, which "
                    "ignores that the matrix stops fitting in memory long before.",
                    summary_columns=(0, 3, 4, 5)),
              _minibatch_table(noisy)]
    return Section(
        "orders", "7. First-order versus second-order",
        _orders_paragraphs(studies, noisy),
        figures, tables,
        data={study.name: {
            "dimension": study.dimension, "kappa": study.kappa, "f_star": study.f_star,
            "runs": {run.label: _thinned(iteration=np.arange(len(run.result.history.loss)),
                                         grad_norm=run.result.history.grad_norm,
                                         loss=run.result.history.loss,
                                         time=run.result.history.time)
                     for run in study.runs}}
            for study in studies} | {"minibatch": {
                run.label: _thinned(passes=run.passes, gap=noisy.gap(run))
                for run in (*noisy.runs, noisy.reference)}})


def _thinned(points: int = 400, **series: Sequence[float]) -> dict[str, list[float]]:
    """Equal-length series cut to about ``points`` entries, first and last kept, for
    results.json (gradient descent's thousands of iterations would swell the file)."""
    length = len(next(iter(series.values())))
    keep = np.unique(np.linspace(0, length - 1, min(points, length)).round().astype(int))
    return {name: np.asarray(values)[keep].tolist()
            for name, values in series.items()}


def _orders_paragraphs(studies: Sequence[orders.FullBatchStudy],
                       noisy: orders.MinibatchStudy) -> list[str]:
    """The section's text; the sentences about this run's results are built from its data."""
    ravine, digits = studies
    reached = [(digits.seconds_to_tolerance(run), run) for run in digits.runs
               if digits.seconds_to_tolerance(run) is not None]
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
    fixed_text = (f"jumps as high as {worst:.3g} above the minimum, from {start:.3g} at the start"
                  if worst > start else f"ends {float(noisy.gap(fixed)[-1]):.3g} above it")
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


#: Every section of the tour, in order.
SECTIONS = (ravine_section, saddle_section, minima_section, noise_section, decay_section,
            classics_section, orders_section)

#: Runs per section (for a progress bar's total).
RUNS = {"ravine_section": 6 + 9 + 18, "saddle_section": 10, "minima_section": 15,
        "noise_section": 9, "decay_section": 8, "classics_section": 18,
        "orders_section": 12 + 8 + 1}


def total_runs() -> int:
    """How many runs the whole tour makes (the progress bar's total)."""
    return sum(RUNS.values())


def run_tour(out: Path | str, settings: TourSettings | None = None,
             progress: Progress | None = None,
             on_section: Callable[[Section], None] | None = None) -> Report:
    """Run every section into the report folder ``out``; return the report.

    Each section is written to ``out/index.html`` and ``out/results.json`` as soon as it is
    done; ``on_section`` is called with it too (for the terminal summary).
    """
    settings = settings or TourSettings()
    progress = progress or _noop
    report = Report(out, "descend: the problems of SGD, and how each optimizer answers them",
                    "Ill-conditioning, saddle points, local minima and noisy gradients, "
                    "measured and drawn; then learning-rate decay, the classic test "
                    "functions, and first-order against second-order methods.")
    started = time.perf_counter()
    for make in SECTIONS:
        began = time.perf_counter()
        section = make(report, settings, progress)
        section.seconds = time.perf_counter() - began
        report.footer = (f"Generated by descend demo in {time.perf_counter() - started:.1f} s"
                         f"{' (quick settings)' if settings.quick else ''}.")
        report.add(section)
        if on_section is not None:
            on_section(section)
    return report


__all__ = ["SECTIONS", "TourSettings", "run_tour", "total_runs"]
