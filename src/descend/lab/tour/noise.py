"""Noisy gradients: minibatch least squares, batch size, momentum and weight averaging."""

from __future__ import annotations

import numpy as np

from descend.lab import plots
from descend.lab.palette import VARIANT_COLORS, color_name
from descend.lab.problems import NoisyLeastSquares
from descend.lab.report import Claim, Figure, Report, Section, Table
from descend.lab.runner import Contender, race
from descend.lab.sections import title_of
from descend.lab.tour.base import (
    Progress,
    TourSettings,
    display_name,
    listing,
    registered,
    tail_mean,
)
from descend.lab.tour.noisy_figures import SMOOTHING, NoisyRun, small_multiples
from descend.specs import ContenderSpec

SLUG = "noise"
TITLE = title_of(SLUG)

#: Data points, the batch size of the main race, steps per run.
SAMPLES, BATCH, STEPS = 256, 4, 400
#: SGD's learning rate and the decay of its weight average.
SGD_LR, AVERAGE = 0.1, 0.98
OTHERS = ("momentum:lr=0.01,momentum=0.9", "adam:lr=0.05")
BATCHES = (1, 4, 16, 64, 256)
#: Minibatch gradients drawn to measure the gradient noise.
DRAWS = 2000


def runs(settings: TourSettings) -> int:
    """Optimizer runs this section makes."""
    return 1 + len(OTHERS) + len(BATCHES)


def batch_floors(rows: list[list]) -> list[tuple[int, float]]:
    """``(batch size, noise floor)`` pairs from the batch-size table's rows."""
    return [(row[0], row[3]) for row in rows]


def build(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """Noisy gradients: batch size, momentum and averaging on minibatch least squares."""
    problem = NoisyLeastSquares(n=SAMPLES, dim=2, batch_size=BATCH, seed=settings.seed)
    sgd_name = display_name("sgd")
    contenders = [Contender.parse(f"sgd:lr={SGD_LR}", average=AVERAGE, name=sgd_name)]
    contenders += registered(OTHERS)
    traces = race(problem, contenders, STEPS, seed=settings.seed)
    progress("noisy gradients", len(traces))

    batch_traces, batch_rows = [], []
    sgd = Contender.parse(f"sgd:lr={SGD_LR}")
    optimum = problem.minima[0]
    for batch in BATCHES:
        sized = NoisyLeastSquares(n=SAMPLES, dim=2, batch_size=batch, seed=settings.seed)
        sized_sgd = Contender(ContenderSpec(sgd.optimizer, name=f"{sgd_name}, batch {batch}"))
        trace = race(sized, [sized_sgd], STEPS, seed=settings.seed)[0]
        batch_traces.append(trace)
        predicted = sized.gradient_noise(optimum)
        rng = np.random.default_rng(settings.seed)
        draws = np.stack([sized.stochastic_grad(optimum, rng) for _ in range(DRAWS)])
        measured = float(np.mean(np.sum(draws**2, axis=1)))  # full gradient is 0 there
        batch_rows.append([batch, predicted, measured, tail_mean(trace.excess)])
    progress("noisy gradients: batch sizes", len(batch_traces))

    sgd_trace = traces[0]
    raw_floor = tail_mean(sgd_trace.excess)
    averaged_floor = tail_mean(sgd_trace.averaged_losses - problem.minimum_value)
    raw_distance = tail_mean(sgd_trace.distances)
    averaged_distance = tail_mean(np.linalg.norm(sgd_trace.averaged_trajectory - optimum, axis=1))
    momentum_floor = tail_mean(traces[1].excess)
    momentum = traces[1]
    momentum_spec = contenders[1].optimizer.arguments
    effective = momentum_spec["lr"] / (1 - momentum_spec["momentum"])
    floors = [row[3] for row in batch_rows]
    worst_noise = max(abs(row[2] - row[1]) / row[1] for row in batch_rows if row[1] > 0)
    floor_ratio = raw_floor / averaged_floor if averaged_floor > 0 else float("inf")
    pairs = batch_floors(batch_rows)
    disorder = [
        f"batch {b} (above batch {a})"
        for (a, fa), (b, fb) in zip(pairs, pairs[1:], strict=False)
        if not fb < fa
    ]
    claims = [
        Claim(
            "a running average of the weights sits closer to the minimum than the weights",
            averaged_distance < raw_distance,
            f"Over the last quarter of the run SGD's weights are on average "
            f"{raw_distance:.3g} from the minimum, their average {averaged_distance:.3g}.",
        ),
        Claim(
            "averaging the weights goes below the noise floor",
            averaged_floor < raw_floor,
            f"SGD's averaged weights settle {floor_ratio:.3g} times lower than the weights "
            "themselves (the first table has both).",
        ),
        Claim(
            "at the same effective step size momentum bounces about as much as SGD "
            "(within a factor of 2)",
            0.5 <= momentum_floor / raw_floor <= 2.0,
            f"{momentum.label} settles {momentum_floor / raw_floor:.3g} times as high as SGD "
            "(first table).",
        ),
        Claim(
            "larger batches give a lower noise floor, and the full batch converges",
            not disorder and floors[-1] < 1e-9 * floors[0],
            "In the second table each larger batch settles lower"
            + (f", except {listing(disorder)}" if disorder else "")
            + "; the full batch "
            + (
                "converges."
                if floors[-1] < 1e-9 * floors[0]
                else f"does not converge: it ends at {floors[-1]:.3g}."
            ),
        ),
        Claim(
            "the measured gradient noise matches its prediction (within 10%)",
            worst_noise <= 0.1,
            f"The largest difference between measured and predicted noise is "
            f"{100 * worst_noise:.1f}%.",
        ),
    ]
    others = listing([t.label for t in traces[1:]])
    figures = [
        Figure(
            plots.contour(
                problem,
                traces,
                report.image_path("noise_contour.png"),
                f"minibatch least squares (batch {BATCH}): noisy paths",
                averaged=True,
                log_levels=True,
            ).name,
            f"Each step sees {BATCH} of {SAMPLES} examples, so the gradient points only "
            "roughly at the minimum (the star; the level sets are log-spaced, so they crowd "
            "towards it) and every run jitters around it. The averaged line is a running "
            f"average of SGD's weights (an EMA with decay {AVERAGE:g}): it cuts through the "
            "jitter and comes to rest near the star.",
        ),
        Figure(
            plots.curves(
                traces,
                report.image_path("noise_loss.png"),
                f"loss above the full-data minimum, batch {BATCH}",
                averaged=True,
            ).name,
            "The noise floor: with a constant learning rate the loss stops improving at a "
            "level set by the gradient noise, and stays there, jumping up and down. SGD's "
            f"averaged weights (legend: averaged) settle below it. The first table has each "
            f"floor, {others}'s too.",
        ),
        Figure(
            small_multiples(
                [
                    (
                        f"batch {batch}" + (" (full data)" if batch == SAMPLES else ""),
                        [NoisyRun(trace.label, trace.excess, "sgd")],
                    )
                    for batch, trace in zip(BATCHES, batch_traces, strict=True)
                ],
                report.image_path("noise_batch.png"),
                columns=3,
                others=True,
                decades=7,
            ).name,
            f"The same SGD (lr {SGD_LR:g}) with each batch size, one panel each; the other "
            f"panels' trends are drawn behind in {color_name(VARIANT_COLORS['comparison'])} for "
            "comparison. Faint: the loss at every "
            f"step; clear: its geometric mean over {SMOOTHING} steps. The larger the batch, the "
            f"lower the run settles; batch {SAMPLES} is the full data, plain gradient descent, "
            "and falls out of the bottom of the plot as it converges. The second table has the "
            "numbers.",
        ),
    ]
    method_rows = [
        [
            c.label,
            c.optimizer.label,
            tail_mean(t.excess),
            tail_mean(t.averaged_losses - problem.minimum_value)
            if t.averaged_losses is not None
            else None,
        ]
        for c, t in zip(contenders, traces, strict=True)
    ]
    tables = [
        Table(
            f"Batch {BATCH}: loss above the minimum over the last quarter of the run "
            "(the noise floor)",
            ["optimizer", "spec", "raw weights", f"averaged weights (EMA {AVERAGE:g})"],
            method_rows,
            f"{momentum.label} runs at lr {momentum_spec['lr']:g} with momentum "
            f"{momentum_spec['momentum']:g}: an effective step lr / (1 - momentum) of "
            f"{effective:.3g} (SGD: lr {SGD_LR:g}).",
        ),
        Table(
            f"Gradient noise against batch size (SGD, lr {SGD_LR:g})",
            [
                "batch size",
                "predicted E|g_batch - g|^2",
                f"measured ({DRAWS} draws)",
                "loss above minimum, last quarter",
            ],
            batch_rows,
            "Predicted for sampling without replacement: (n - B) / (B (n - 1)) times the "
            "spread of the per-example gradients, measured at the minimum.",
        ),
    ]
    return Section(
        SLUG,
        TITLE,
        [
            "SGD computes each gradient from a small minibatch instead of the whole data set, so "
            "every step is the true gradient plus noise. The noise shrinks like 1 / batch size. "
            "With a constant learning rate the weights never settle: they keep bouncing around "
            "the minimum in a cloud whose size grows with the learning rate and the noise.",
            "Momentum averages recent gradients, but at the same effective step size it bounces "
            "about as much as SGD. What removes the noise is averaging the weights themselves "
            "(evaluating with a running mean of the iterates, descend.WeightAverage) or shrinking "
            "the learning rate over time (next section).",
        ],
        figures,
        tables,
        data={
            "traces": [t.to_dict() for t in traces],
            "batch_traces": [t.to_dict() for t in batch_traces],
        },
        claims=claims,
    )
