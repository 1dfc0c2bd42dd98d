"""Saddle points: x^2 - y^2 and a 100-dimensional saddle, with escape times."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from descend.lab import plots
from descend.lab.plots.contours import EXIT_MARKER_NAME, LEFT, leaving
from descend.lab.problems import HighDimSaddle, Saddle
from descend.lab.report import Claim, Figure, Report, Section, Table
from descend.lab.runner import Contender, Trace, race
from descend.lab.sections import title_of
from descend.lab.tour.base import (
    Progress,
    TourSettings,
    display_name,
    listing,
    registered,
    steps_text,
)

SLUG = "saddle"
TITLE = title_of(SLUG)

CONTENDERS = (
    "sgd:lr=0.05",
    "momentum:lr=0.05,momentum=0.9",
    "nesterov:lr=0.05,momentum=0.9",
    "rmsprop:lr=0.01",
    "adam:lr=0.05",
)
SGD = display_name("sgd")
#: Steps of the 2-D and the 100-D races.
STEPS_2D, STEPS_ND = 150, 600
#: The 100-D saddle: dimension, directions curving down, start offset along them.
DIMENSION, NEGATIVE, OFFSET = 100, 5, 1e-6
#: A run has left the neighbourhood of the saddle once it is this far from it.
NEAR = 0.1


def runs(settings: TourSettings) -> int:
    """Optimizer runs this section makes."""
    return 2 * len(CONTENDERS)


def distance_from_saddle(trace: Trace) -> np.ndarray:
    """Each point's distance from the saddle point, which both problems have at the origin."""
    return np.linalg.norm(trace.trajectory, axis=1)


def first_beyond(distances: np.ndarray, radius: float = NEAR) -> int | None:
    """First step at which a run is farther than ``radius`` from the saddle point."""
    hits = np.flatnonzero(distances > radius)
    return int(hits[0]) if hits.size else None


def _escape_table(
    title: str,
    contenders: Sequence[Contender],
    traces: Sequence[Trace],
    threshold: float,
    steps: int,
) -> Table:
    rows = []
    for contender, trace in zip(contenders, traces, strict=True):
        escaped = trace.settled_below(threshold)
        rows.append(
            [
                contender.label,
                contender.optimizer.label,
                escaped if escaped is not None else f"> {steps}",
                float(distance_from_saddle(trace).min()),
            ]
        )
    return Table(
        title,
        [
            "optimizer",
            "spec",
            f"steps until the loss stays at or below {threshold:.3g} (escaped)",
            "closest approach to the saddle point",
        ],
        rows,
        "The escape step is where the loss falls to the threshold for good: it never "
        "rises above it again before the run ends.",
    )


def build(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """Saddle points: 2-D and 100-D, with escape times."""
    contenders = registered(CONTENDERS)
    flat = Saddle(y0=1e-3)
    traces = race(flat, contenders, STEPS_2D, seed=settings.seed)
    progress("saddle", len(traces))
    wide = HighDimSaddle(dim=DIMENSION, negative=NEGATIVE, y0=OFFSET, seed=settings.seed)
    wide_traces = race(wide, contenders, STEPS_ND, seed=settings.seed)
    progress("saddle: 100 dimensions", len(wide_traces))
    flat_claim = _flat_claim(flat, traces)
    wide_claim, wide_sentences = _wide_findings(wide, wide_traces)
    up = DIMENSION - NEGATIVE
    figures = [
        Figure(
            plots.contour(
                flat,
                traces,
                report.image_path("saddle_contour.png"),
                f"saddle x^2 - y^2, starting at ({flat.x0[0]:g}, {flat.x0[1]:g})",
            ).name,
            "Every run first slides down x towards the saddle point at the origin, where the "
            f"gradient vanishes. Along y the start is only {flat.x0[1]:g} off the ridge, so "
            "the push to fall off is tiny; once off it, a run falls away along y for good"
            + (
                f" ({listing(fallen)} {LEFT}: the {EXIT_MARKER_NAME} marks where)."
                if (fallen := leaving(flat, traces))
                else "."
            ),
        ),
        Figure(
            plots.curves(
                wide_traces,
                report.image_path("saddle_nd_distance.png"),
                f"saddle in {DIMENSION} dimensions ({NEGATIVE} directions curve down)",
                metric="norm",
                ylabel="distance from the saddle point",
            ).name,
            f"Distance from the saddle point against step, in {DIMENSION} dimensions. Every "
            f"run is first pulled in towards the saddle along the {up} upward-curving "
            f"directions, and escapes when the {NEGATIVE} downward ones take over. "
            + " ".join(wide_sentences),
        ),
    ]
    tables = [
        _escape_table(
            f"Escape from the 2-D saddle x^2 - y^2 ({STEPS_2D} steps)",
            contenders,
            traces,
            flat.escape_loss,
            STEPS_2D,
        ),
        _escape_table(
            f"Escape from a {DIMENSION}-dimensional saddle ({up} directions up, "
            f"{NEGATIVE} down, start {OFFSET:g} off the saddle along the downward "
            f"ones; {STEPS_ND} steps)",
            contenders,
            wide_traces,
            wide.escape_loss,
            STEPS_ND,
        ),
    ]
    return Section(
        SLUG,
        TITLE,
        [
            "At a saddle point the gradient is zero but the point is no minimum: the loss curves "
            "up in some directions and down in others. Near one, the gradient is tiny, so plain "
            "gradient descent slows to a crawl, and exactly on the ridge it stops for good. In "
            "high dimensions saddle points are far more common than local minima, because a "
            "minimum needs every one of many directions to curve up.",
            "Momentum keeps moving through the flat region and amplifies the small downhill push "
            "step after step. Adaptive methods divide by the size of recent gradients, so a tiny "
            "but consistent gradient still makes a full-size step. The tables count the steps "
            "each needs to fall off the saddle.",
        ],
        figures,
        tables,
        data={
            "traces_2d": [t.to_dict() for t in traces],
            "traces_100d": [t.to_dict() for t in wide_traces],
            "distance_100d": {t.label: distance_from_saddle(t).tolist() for t in wide_traces},
            "wells_distance": wells_distance(wide),
            "near": NEAR,
        },
        claims=[flat_claim, wide_claim],
    )


def wells_distance(problem: HighDimSaddle) -> float:
    """Distance from the saddle to every minimum: each downward direction at its well,
    ``sqrt(sum over them of -lambda)``."""
    return float(np.sqrt(-problem.eigenvalues[problem.is_negative].sum()))


def _flat_claim(problem: Saddle, traces: Sequence[Trace]) -> Claim:
    escapes = {t.label: t.settled_below(problem.escape_loss) for t in traces}
    steps = len(traces[0].losses) - 1
    others = [name for name in escapes if name != SGD]
    sgd = escapes[SGD]
    return Claim(
        "momentum and the adaptive methods leave the saddle sooner than SGD",
        all(escapes[name] is not None and (sgd is None or escapes[name] < sgd) for name in others),
        f"The loss falls below {problem.escape_loss:g} for good at: "
        + listing([f"{name} {steps_text(step, steps)}" for name, step in escapes.items()])
        + ".",
    )


def _wide_findings(problem: HighDimSaddle, traces: Sequence[Trace]) -> tuple[Claim, list[str]]:
    """The claim about the 100-D race and the caption's sentences, from its distances."""
    distances = {t.label: distance_from_saddle(t) for t in traces}
    steps = len(traces[0].losses) - 1
    leave = {name: first_beyond(d) for name, d in distances.items()}
    wells = wells_distance(problem)
    final = ", ".join(f"{name} {d[-1]:.2f}" for name, d in distances.items())
    others = [step for name, step in leave.items() if name != SGD]
    sgd = leave[SGD]
    claim = Claim(
        "in high dimensions SGD stays near the saddle far longer than momentum or the adaptive "
        "methods",
        all(step is not None for step in others) and (sgd is None or sgd > 2 * max(others)),
        f"A run first gets farther than {NEAR:g} from the saddle point at: "
        + listing([f"{name} {steps_text(step, steps)}" for name, step in leave.items()])
        + ".",
    )
    sentences = [
        f"The minima lie {wells:.2f} from the saddle (every downward direction in its well).",
        f"After {steps} steps the distances are: {final}.",
    ]
    return claim, sentences
