"""Noisy gradients: minibatch least squares, batch size, momentum and weight averaging."""

from __future__ import annotations

import numpy as np

from descend.lab import plots
from descend.lab.problems import NoisyLeastSquares
from descend.lab.report import Claim, Figure, Report, Section, Table
from descend.lab.runner import Contender, race
from descend.lab.tour.base import Progress, TourSettings, named, tail_mean
from descend.specs import ContenderSpec

SLUG = "noise"
TITLE = "Noisy gradients"

#: Data points, the batch size of the main race, steps per run.
SAMPLES, BATCH, STEPS = 256, 4, 400
#: SGD's learning rate and the decay of its weight average.
SGD_LR, AVERAGE = 0.1, 0.98
OTHERS = (("SGD+Momentum", "momentum:lr=0.01,momentum=0.9"), ("Adam", "adam:lr=0.05"))
BATCHES = (1, 4, 16, 64, 256)
#: Minibatch gradients drawn to measure the gradient noise.
DRAWS = 2000


def runs(settings: TourSettings) -> int:
    """Optimizer runs this section makes."""
    return 1 + len(OTHERS) + len(BATCHES)


def build(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """Noisy gradients: batch size, momentum and averaging on minibatch least squares."""
    problem = NoisyLeastSquares(n=SAMPLES, dim=2, batch_size=BATCH, seed=settings.seed)
    contenders = [Contender.parse(f"sgd:lr={SGD_LR}", average=AVERAGE, name=f"SGD, batch {BATCH}")]
    contenders += named([(f"{name}, batch {BATCH}", spec) for name, spec in OTHERS])
    traces = race(problem, contenders, STEPS, seed=settings.seed)
    progress("noisy gradients", len(traces))

    batch_traces, batch_rows = [], []
    sgd = Contender.parse(f"sgd:lr={SGD_LR}")
    optimum = problem.minima[0]
    for batch in BATCHES:
        sized = NoisyLeastSquares(n=SAMPLES, dim=2, batch_size=batch, seed=settings.seed)
        sized_sgd = Contender(ContenderSpec(sgd.optimizer, name=f"SGD, batch {batch}"))
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
            f"Loss above the minimum over the last quarter: {raw_floor:.3g} for SGD's "
            f"weights, {averaged_floor:.3g} for their average.",
        ),
        Claim(
            "at the same effective step size momentum bounces about as much as SGD "
            "(within a factor of 2)",
            0.5 <= momentum_floor / raw_floor <= 2.0,
            f"{momentum.label} (lr / (1 - momentum) = {effective:.3g}) settles at "
            f"{momentum_floor:.3g}, SGD at lr {SGD_LR:g} at {raw_floor:.3g}.",
        ),
        Claim(
            "larger batches give a lower noise floor, and the full batch converges",
            all(b < a for a, b in zip(floors, floors[1:], strict=False))
            and floors[-1] < 1e-9 * floors[0],
            "Loss above the minimum over the last quarter, by batch size: "
            + ", ".join(f"{row[0]}: {row[3]:.3g}" for row in batch_rows)
            + ".",
        ),
        Claim(
            "the measured gradient noise matches its prediction (within 10%)",
            worst_noise <= 0.1,
            f"The largest difference between measured and predicted noise is "
            f"{100 * worst_noise:.1f}%.",
        ),
    ]
    figures = [
        Figure(
            plots.contour(
                problem,
                traces,
                report.image_path("noise_contour.png"),
                f"minibatch least squares (batch {BATCH}): noisy paths",
                averaged=True,
            ).name,
            f"Each step sees {BATCH} of {SAMPLES} examples, so the gradient points only "
            "roughly at the minimum (gold star) and every run jitters around it. The dashed "
            f"line is a running average of SGD's weights (EMA with decay {AVERAGE:g}). "
            f"{claims[0].evidence}",
        ),
        Figure(
            plots.curves(
                traces,
                report.image_path("noise_loss.png"),
                f"loss above the full-data minimum, batch {BATCH}",
                averaged=True,
            ).name,
            "The noise floor: with a constant learning rate the loss stops improving at a "
            f"level set by the gradient noise. Dashed: SGD's averaged weights. "
            f"{claims[1].evidence}",
        ),
        Figure(
            plots.curves(
                batch_traces,
                report.image_path("noise_batch.png"),
                f"SGD, lr {SGD_LR:g}, for batch sizes {BATCHES[0]} to {BATCHES[-1]} (full data)",
                sweep=True,
                decades=7,
            ).name,
            f"The same SGD with every batch size, darker for smaller batches; batch "
            f"{SAMPLES} is the full data, plain gradient descent, and falls out of the "
            f"bottom of the plot as it converges. {claims[3].evidence}",
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
