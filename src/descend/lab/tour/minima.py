"""Local minima: a tilted double well, Rastrigin's and Himmelblau's functions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from descend.lab import plots
from descend.lab.plots.contours import EXIT_MARKER_NAME, LEFT, leaving
from descend.lab.problems import Himmelblau, Rastrigin, TiltedDoubleWell
from descend.lab.report import Claim, Figure, Report, Section, Table
from descend.lab.runner import Trace, race
from descend.lab.sections import title_of
from descend.lab.tour.base import Progress, TourSettings, display_name, listing, registered

SLUG = "minima"
TITLE = title_of(SLUG)

WELL_CONTENDERS = (
    "sgd:lr=0.05",
    "momentum:lr=0.05,momentum=0.9",
    "nesterov:lr=0.05,momentum=0.9",
    "rmsprop:lr=0.05",
    "adam:lr=0.1",
)
RASTRIGIN_CONTENDERS = (
    "sgd:lr=0.002",
    "momentum:lr=0.002,momentum=0.95",
    "nesterov:lr=0.002,momentum=0.95",
    "rmsprop:lr=0.05",
    "adam:lr=1.0",
)
HIMMELBLAU_CONTENDERS = (
    "sgd:lr=0.01",
    "momentum:lr=0.005,momentum=0.9",
    "nesterov:lr=0.005,momentum=0.9",
    "rmsprop:lr=0.05",
    "adam:lr=0.1",
)
STEPS = 300
MOMENTUM = tuple(map(display_name, ("sgd_momentum", "nesterov")))
SGD = display_name("sgd")


def runs(settings: TourSettings) -> int:
    """Optimizer runs this section makes."""
    return len(WELL_CONTENDERS) + len(RASTRIGIN_CONTENDERS) + len(HIMMELBLAU_CONTENDERS)


def dip(point: np.ndarray) -> tuple[int, ...]:
    """The dip of Rastrigin's function a point is in: every local minimum sits next to a
    point of the integer lattice."""
    return tuple(int(v) for v in np.round(point))


def nearest_minimum(problem: Himmelblau, point: np.ndarray) -> np.ndarray:
    """The global minimizer of Himmelblau's function closest to ``point``."""
    return problem.minima[int(np.argmin(np.linalg.norm(problem.minima - point, axis=1)))]


def build(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """Local minima: tilted double well, Rastrigin and Himmelblau."""
    contenders = registered(WELL_CONTENDERS)
    well = TiltedDoubleWell()
    traces = race(well, contenders, STEPS, seed=settings.seed)
    progress("local minima", len(traces))
    rastrigin = Rastrigin(dim=2)
    rastrigin_contenders = registered(RASTRIGIN_CONTENDERS)
    rastrigin_traces = race(rastrigin, rastrigin_contenders, STEPS, seed=settings.seed)
    himmelblau = Himmelblau()
    himmelblau_contenders = registered(HIMMELBLAU_CONTENDERS)
    himmelblau_traces = race(himmelblau, himmelblau_contenders, STEPS, seed=settings.seed)
    progress("local minima: Rastrigin, Himmelblau", len(rastrigin_traces) + len(himmelblau_traces))
    claims = [
        _well_claim(well, traces),
        _rastrigin_claim(rastrigin, rastrigin_traces),
        _himmelblau_claim(himmelblau, himmelblau_traces),
    ]
    figures = [
        Figure(
            plots.contour(
                well,
                traces,
                report.image_path("double_well_contour.png"),
                "tilted double well: shallow well right, deep well left",
            ).name,
            "Every run starts on the right, above the shallow well; the star marks the "
            "deep (global) minimum on the left, and each run's end marker shows the well it "
            "settles in (the table lists them).",
        ),
        Figure(
            plots.panels(
                [(rastrigin, rastrigin_traces), (himmelblau, himmelblau_traces)],
                report.image_path("rastrigin_himmelblau.png"),
                [
                    "Rastrigin: a bowl covered in local minima",
                    "Himmelblau: four equally deep minima",
                ],
            ).name,
            "Left: Rastrigin's function, where every small dip is a trap; the window holds "
            "every run's whole path"
            + (
                f", except {listing(away)}, which {LEFT} where the {EXIT_MARKER_NAME} is"
                if (away := leaving(rastrigin, rastrigin_traces))
                else ""
            )
            + ". Right: Himmelblau's function has four minima of equal depth (the stars); "
            "which one a run reaches depends on its path. The tables list where each ends.",
        ),
    ]
    well_rows = []
    for contender, trace in zip(contenders, traces, strict=True):
        end = trace.trajectory[-1]
        well_rows.append(
            [
                contender.label,
                contender.optimizer.label,
                well.basin(end),
                float(end[0]),
                trace.final_loss,
            ]
        )
    rastrigin_rows = [
        [
            c.label,
            c.optimizer.label,
            str(dip(t.trajectory[-1])),
            t.final_loss,
            float(t.distances[-1]),
            t.final_loss < 1e-6,
        ]
        for c, t in zip(rastrigin_contenders, rastrigin_traces, strict=True)
    ]
    himmelblau_rows = []
    for contender, trace in zip(himmelblau_contenders, himmelblau_traces, strict=True):
        nearest = nearest_minimum(himmelblau, trace.trajectory[-1])
        himmelblau_rows.append(
            [
                contender.label,
                contender.optimizer.label,
                f"({nearest[0]:.2f}, {nearest[1]:.2f})",
                trace.final_loss,
            ]
        )
    start = rastrigin.x0
    tables = [
        Table(
            f"Tilted double well: where each run ends ({STEPS} steps)",
            ["optimizer", "spec", "well", "final x", "final loss"],
            well_rows,
            f"The deep (global) minimum is at x = {well.global_x:.3f} with loss "
            f"{well.minimum_value:.3f}; the shallow one at x = {well.local_x:.3f} with loss "
            f"{well.local_value:.3f}.",
        ),
        Table(
            f"Rastrigin's function from ({start[0]:g}, {start[1]:g}) ({STEPS} steps)",
            [
                "optimizer",
                "spec",
                "dip it ends in",
                "final loss",
                "distance to the global minimum",
                "found it",
            ],
            rastrigin_rows,
        ),
        Table(
            f"Himmelblau's function from ({himmelblau.x0[0]:g}, {himmelblau.x0[1]:g}) "
            f"({STEPS} steps)",
            ["optimizer", "spec", "minimum reached", "final loss"],
            himmelblau_rows,
        ),
    ]
    return Section(
        SLUG,
        TITLE,
        [
            "Gradient descent only looks downhill from where it stands, so it stops in the first "
            "dip it meets, however shallow. Momentum carries a run through small dips and over "
            "low barriers, which is one reason it often finds better minima; adaptive step sizes "
            "change which path a run takes but do not look further ahead.",
            "In large neural networks bad local minima turn out to be rare (most critical points "
            "are saddles, and most minima are about as good as each other), but these small "
            "surfaces show the mechanism plainly.",
        ],
        figures,
        tables,
        data={
            "double_well": [t.to_dict() for t in traces],
            "rastrigin": [t.to_dict() for t in rastrigin_traces],
            "himmelblau": [t.to_dict() for t in himmelblau_traces],
            "double_well_barrier_x": well.barrier_x,
        },
        claims=claims,
    )


def _well_claim(well: TiltedDoubleWell, traces: Sequence[Trace]) -> Claim:
    basins = {t.label: well.basin(t.trajectory[-1]) for t in traces}
    deep = [name for name, basin in basins.items() if basin == "global"]
    shallow = [name for name, basin in basins.items() if basin == "local"]
    return Claim(
        "plain gradient descent settles in the nearer, shallower well, while momentum carries a "
        "run over the barrier into the deeper one",
        basins[SGD] == "local" and all(basins[name] == "global" for name in MOMENTUM),
        f"Ending in the deep well: {listing(deep)}; in the shallow one: {listing(shallow)}.",
    )


def _rastrigin_claim(problem: Rastrigin, traces: Sequence[Trace]) -> Claim:
    first = dip(problem.x0)
    start_loss = None
    moved, stayed = [], []
    for trace in traces:
        end = dip(trace.trajectory[-1])
        if end == first:
            stayed.append(trace.label)
            start_loss = (
                trace.final_loss if start_loss is None else min(start_loss, trace.final_loss)
            )
        else:
            moved.append(f"{trace.label} (to the dip at {end}, loss {trace.final_loss:.3g})")
    stay_text = (
        f"{listing(stayed)} {'stays' if len(stayed) == 1 else 'stay'} in the dip "
        f"at {first}, next to the start"
        + (f" (loss {start_loss:.3g})" if start_loss is not None else "")
    )
    move_text = (
        f"{listing(moved)} {'leaves' if len(moved) == 1 else 'leave'} it"
        if moved
        else "no run leaves it"
    )
    sgd = next(t for t in traces if t.label == SGD)
    return Claim(
        "plain gradient descent stays in the first dip it meets",
        dip(sgd.trajectory[-1]) == first,
        f"{stay_text}; {move_text}.",
    )


def _himmelblau_claim(problem: Himmelblau, traces: Sequence[Trace]) -> Claim:
    reached: dict[tuple[float, float], list[str]] = {}
    for trace in traces:
        point = nearest_minimum(problem, trace.trajectory[-1])
        reached.setdefault((round(point[0], 2), round(point[1], 2)), []).append(trace.label)
    return Claim(
        "which of Himmelblau's minima a run reaches depends on its optimizer's path",
        len(reached) >= 2,
        "From the same start: "
        + "; ".join(
            f"{listing(names)} {'reaches' if len(names) == 1 else 'reach'} ({x:.2f}, {y:.2f})"
            for (x, y), names in reached.items()
        )
        + ".",
    )
