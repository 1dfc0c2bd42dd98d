"""The tour behind ``descend demo``: the four problems of SGD, measured, drawn and explained.

Sections, each written to the report as soon as it is done:

1. ill-conditioning (the ravine): trajectories, the animated race, steps to tolerance next to
   theory, and predicted against measured linear rates for kappa 10, 100 and 1000;
2. saddle points: x^2 - y^2 and a 100-dimensional saddle, with escape times;
3. local minima: a tilted double well, Rastrigin and Himmelblau;
4. noisy gradients: minibatch least squares, batch size, momentum and weight averaging;
5. learning-rate decay: step, exponential and 1/t decay for SGD+Momentum and Adam;
6. the classics: Rosenbrock, Beale and Booth.

``quick=True`` shortens every run (for tests); the figures and tables keep their shape.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from descend.lab import plots
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
    Rosenbrock,
    Saddle,
    TiltedDoubleWell,
)
from descend.lab.rates import RateRow, compare_rates
from descend.lab.report import Figure, Report, Section, Table
from descend.lab.runner import Contender, Trace, race

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
        config = ", ".join(f"{names.get(k, k)}={v:.3g}" for k, v in row.config.items())
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
        escaped = trace.first_below(threshold)
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
    for problem in (Rosenbrock(), Beale(), Booth()):
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


#: Every section of the tour, in order.
SECTIONS = (ravine_section, saddle_section, minima_section, noise_section, decay_section,
            classics_section)

#: Runs per section (for a progress bar's total).
RUNS = {"ravine_section": 6 + 9 + 18, "saddle_section": 10, "minima_section": 15,
        "noise_section": 9, "decay_section": 8, "classics_section": 18}


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
                    "measured and drawn; then learning-rate decay and the classic test "
                    "functions.")
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
