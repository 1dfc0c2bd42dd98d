"""Lion's sign step on the ravine: steps to the minimum against kappa, aligned and rotated,
beside the exact counts theory gives for gradient descent and sign descent."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import descend
from descend.lab import plots
from descend.lab.palette import color_name
from descend.lab.problems import Ravine
from descend.lab.report import Table
from descend.lab.runner import Contender, Trace, run
from descend.lab.tour.base import Progress, TourSettings, noop
from descend.lab.tour.newer.common import count_text, optimizer_spec, span_text, steps_to_stay
from descend.specs import ContenderSpec

LION_KAPPAS = (10.0, 100.0, 1000.0)
LION_ANGLE = 30.0
LION_LR = 0.04
LION_RADIUS = 0.15
#: The colour of each contender, in the contenders' order: sign descent is Lion with both
#: betas 0, a variant the palette gives its own colour.
LION_FAMILIES = ("sgd", "sign_descent", "lion")


def sign_descent_distances(start: np.ndarray, lr: float, steps: int) -> np.ndarray:
    """Distances to the minimum of sign descent, ``x <- x - lr sign(x)``, in closed form.

    Each coordinate shrinks by ``lr`` per step until it crosses zero, then alternates between
    ``r`` and ``r - lr`` (``r`` its remainder): ``steps + 1`` distances, step 0 the start.
    """
    magnitude = np.abs(np.asarray(start, dtype=float))
    t = np.arange(steps + 1)[:, None]
    crossings = np.floor(magnitude / lr)
    remainder = magnitude - crossings * lr
    settled = np.where((t - crossings) % 2 == 1, remainder - lr, remainder)
    coordinates = np.where(t <= crossings, magnitude - lr * t, settled)
    return np.sqrt(np.sum(coordinates**2, axis=1))


@dataclass
class LionRow:
    """Steps until the distance to the minimum stays within the radius, on one ravine."""

    kappa: float
    gd_predicted: int
    gd_measured: int | None
    sign_predicted: int
    sign_measured: int | None
    lion_measured: int | None
    sign_rotated: int | None
    lion_rotated: int | None


@dataclass
class LionStudy:
    """Gradient descent, sign descent and Lion on 2-D ravines, aligned and rotated."""

    rows: list[LionRow]
    lr: float
    radius: float
    angle: float
    steps: int
    traces: dict[str, list[Trace]] = field(default_factory=dict)
    ravines: dict[str, Ravine] = field(default_factory=dict)


def lion_study(settings: TourSettings, progress: Progress = noop) -> LionStudy:
    """Steps to the minimum on ravines of each kappa, against the predictions."""
    steps = 500 if settings.quick else 3000
    rows = []
    study = LionStudy([], LION_LR, LION_RADIUS, LION_ANGLE, steps)
    for kappa in LION_KAPPAS:
        measured: dict[tuple[str, float], int | None] = {}
        for angle in (0.0, LION_ANGLE):
            ravine = Ravine(kappa=kappa, dim=2, angle=angle, picture=True)
            contenders = [
                Contender(
                    ContenderSpec(
                        optimizer_spec(descend.SGD, "sgd", lr=2 / (kappa + 1)),
                        name="GD, lr 2/(L+mu)",
                    )
                ),
                Contender(
                    ContenderSpec(
                        optimizer_spec(descend.Lion, "lion", lr=LION_LR, betas=(0.0, 0.0)),
                        name="sign descent (Lion, betas 0, 0)",
                    )
                ),
                Contender(
                    ContenderSpec(
                        optimizer_spec(descend.Lion, "lion", lr=LION_LR),
                        name="Lion, betas 0.9, 0.99",
                    )
                ),
            ]
            traces = [
                dataclasses.replace(run(ravine, c, steps, seed=settings.seed), family=family)
                for c, family in zip(contenders, LION_FAMILIES, strict=True)
            ]
            progress("newer: Lion on the ravine", len(contenders))
            for label, trace in zip(("gd", "sign", "lion"), traces, strict=True):
                measured[label, angle] = steps_to_stay(trace.distances, LION_RADIUS)
            if kappa == 100.0:
                key = "aligned" if angle == 0 else "rotated"
                study.traces[key], study.ravines[key] = traces, ravine
        ravine = Ravine(kappa=kappa, dim=2, picture=True)
        start = ravine.quadratic.rotation.T @ ravine.x0
        rate = (kappa - 1) / (kappa + 1)
        gd_predicted = math.ceil(math.log(LION_RADIUS / np.linalg.norm(start)) / math.log(rate))
        horizon = max(steps, int(np.abs(start).max() / LION_LR) + 2)
        sign_predicted = steps_to_stay(sign_descent_distances(start, LION_LR, horizon), LION_RADIUS)
        rows.append(
            LionRow(
                kappa,
                gd_predicted,
                measured["gd", 0.0],
                sign_predicted,
                measured["sign", 0.0],
                measured["lion", 0.0],
                measured["sign", LION_ANGLE],
                measured["lion", LION_ANGLE],
            )
        )
    study.rows = rows
    return study


def lion_outputs(
    study: LionStudy, image: Callable[[str], Path]
) -> tuple[list[str], list[tuple[Path, str]], Table]:
    """The study's paragraphs, figures (drawn into ``image(name)``, with captions built from
    the measurements) and table."""
    first, last = study.rows[0], study.rows[-1]
    h = study.steps
    table = Table(
        f"Steps until the distance to the minimum stays below {study.radius:g} (2-D ravines "
        f"started at distance {_start_distance():.2f}; sign steps of {study.lr:g})",
        [
            "kappa",
            "GD predicted",
            "GD measured",
            "sign descent predicted",
            "sign descent measured",
            "Lion measured",
            f"sign descent, rotated {study.angle:g} deg",
            f"Lion, rotated {study.angle:g} deg",
        ],
        [
            [
                int(r.kappa),
                r.gd_predicted,
                count_text(r.gd_measured, h),
                r.sign_predicted,
                count_text(r.sign_measured, h),
                count_text(r.lion_measured, h),
                count_text(r.sign_rotated, h),
                count_text(r.lion_rotated, h),
            ]
            for r in study.rows
        ],
        "GD at lr 2/(L+mu) contracts the distance by (kappa-1)/(kappa+1) per step in 2-D; sign "
        "descent's coordinates shrink by the step size until they cross zero (both counts "
        "exact). Lion is the sign step of its moving averages, with its default betas.",
    )
    gd_checked = [(r.gd_predicted, r.gd_measured) for r in study.rows if r.gd_measured is not None]
    sign_exact = all(r.sign_measured == r.sign_predicted for r in study.rows)
    paragraphs = [
        "Lion (2023) steps along the sign of a moving average of gradients: every coordinate "
        "moves by exactly the learning rate, whatever the gradient's size. On the ravine that "
        "is a direct answer to ill-conditioning along the axes, and theory predicts both "
        "counts in the table: gradient descent at its best fixed step needs "
        f"{first.gd_predicted} steps at kappa {first.kappa:g} and {last.gd_predicted} at "
        f"kappa {last.kappa:g} (measured: {count_text(first.gd_measured, h)} and "
        f"{count_text(last.gd_measured, h)}), while sign descent needs "
        f"{span_text([r.sign_predicted for r in study.rows])} (measured: "
        f"{span_text([count_text(r.sign_measured, h) for r in study.rows])}). Lion with its "
        f"default betas measured {span_text([count_text(r.lion_measured, h) for r in study.rows])}"
        f"{_compared(study.rows[1].lion_measured, study.rows[1].sign_measured)}.",
        f"Rotate the ravine by {study.angle:g} degrees and the axes no longer follow the "
        f"curvature: at kappa {last.kappa:g} sign descent {_reached(last.sign_rotated, h)} "
        f"and Lion {_reached(last.lion_rotated, h)}. Like AdaGrad and Adam, a sign step "
        "rescales the coordinates, so it helps as far as the coordinates line up with the "
        "ravine.",
    ]
    contour_path = plots.panels(
        [
            (study.ravines["aligned"], study.traces["aligned"]),
            (study.ravines["rotated"], study.traces["rotated"]),
        ],
        image("newer_lion_contours.png"),
        titles=["kappa = 100, axis-aligned", f"kappa = 100, rotated {study.angle:g} deg"],
    )
    kappas = np.array([r.kappa for r in study.rows])
    gd, sign, lion = LION_FAMILIES

    def line(label: str, values: Sequence[int | None], family: str, theory: bool = False):
        y = np.array([np.nan if v is None else v for v in values], dtype=float)
        return plots.Line(label, kappas, y, family, markers=True, theory=theory, horizon=h)

    rotated, rows = f"rotated {study.angle:g} deg", study.rows
    steps_path = plots.line_panels(
        [
            plots.Panel(
                "steps to the minimum against the condition number",
                "kappa",
                f"steps until distance < {study.radius:g}",
                [
                    line("GD, predicted", [r.gd_predicted for r in study.rows], gd, True),
                    line("GD, measured", [r.gd_measured for r in study.rows], gd),
                    line("sign descent, predicted", [r.sign_predicted for r in rows], sign, True),
                    line("sign descent, measured", [r.sign_measured for r in study.rows], sign),
                    line(f"sign descent, {rotated}", [r.sign_rotated for r in study.rows], sign),
                    line("Lion, measured", [r.lion_measured for r in study.rows], lion),
                    line(f"Lion, {rotated}", [r.lion_rotated for r in study.rows], lion),
                ],
                xscale="log",
            )
        ],
        image("newer_lion_steps.png"),
        columns=1,
    )
    aligned = study.rows[1]
    checked = (
        "matching every measured count"
        if all(p == m for p, m in gd_checked)
        else f"measured {', '.join(str(m) for _, m in gd_checked)}"
    )
    figures = [
        (
            contour_path,
            f"Gradient descent ({color_name(gd)}), sign descent ({color_name(sign)}) and Lion "
            f"({color_name(lion)}) on a kappa = 100 ravine. Axis-aligned, sign descent settles "
            f"within {study.radius:g} of the minimum after "
            f"{count_text(aligned.sign_measured, h)} steps and Lion after "
            f"{count_text(aligned.lion_measured, h)}; rotated by {study.angle:g} degrees, sign "
            f"descent {_reached(aligned.sign_rotated, h)} and Lion "
            f"{_reached(aligned.lion_rotated, h)}.",
        ),
        (
            steps_path,
            "Steps to the minimum against kappa (log scale); theory's counts are "
            f"{plots.THEORY.dash_name}, in each method's colour{_beyond_text(study)}. "
            "Theory's count for "
            f"gradient descent grows from {first.gd_predicted} to {last.gd_predicted} "
            f"({checked}); for sign descent it is "
            f"{span_text([r.sign_predicted for r in study.rows])}"
            f"{' and the runs match it' if sign_exact else ''}.",
        ),
    ]
    return paragraphs, figures, table


def _beyond_text(study: LionStudy) -> str:
    """What the open markers of the steps figure mean, when it has any."""
    counts = [
        value
        for r in study.rows
        for value in (r.gd_measured, r.sign_measured, r.lion_measured)
        + (r.sign_rotated, r.lion_rotated)
    ]
    if all(value is not None for value in counts):
        return ""
    return (
        f"; an open marker at {study.steps} is a run still farther than {study.radius:g} "
        f"after {study.steps} steps"
    )


def _compared(lion: int | None, sign: int | None) -> str:
    """How Lion's count compares with sign descent's at kappa 100, in words."""
    if lion is None or sign is None or lion == sign:
        return ""
    return (
        ", slower than sign descent: its moving averages keep pushing after the gradient has turned"
        if lion > sign
        else ", faster than sign descent"
    )


def _start_distance() -> float:
    return float(np.linalg.norm(Ravine(picture=True).x0))


def _reached(steps: int | None, horizon: int) -> str:
    if steps is None:
        return f"never settles within {horizon} steps"
    return f"needs {steps} steps"
