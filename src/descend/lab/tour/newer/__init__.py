"""Section 8 of the tour: what the newer methods change on the problems of SGD, measured
beside theory.

Three studies, one module each (:mod:`~descend.lab.tour.newer.lion`,
:mod:`~descend.lab.tour.newer.schedule_free`, :mod:`~descend.lab.tour.newer.muon`), each on a
problem the lecture's tour already uses:

1. **Lion's sign step on the ravine.** A sign step moves every coordinate by the learning rate
   whatever its curvature, so on an axis-aligned ravine the steps to reach the minimum do not
   grow with the condition number kappa (for sign descent they are predicted exactly), while
   gradient descent's grow like kappa (predicted exactly too). Rotate the ravine and the sign
   step loses its footing: it evens out the axes, not the curvature.
2. **Schedule-Free against step decay on the noisy fit.** Constant-step SGD stalls at a noise
   floor that theory gives (the stationary solution of the iteration's covariance); a step
   decay schedule gets below it, and so does Schedule-Free SGD, evaluated at its average, with
   no schedule; the asymptotic limit of any method that sees T minibatches sits beside them.
3. **Muon on an ill-conditioned matrix problem.** A linear layer fit under an ill-conditioned
   input covariance: gradient descent's step count grows with kappa (predicted exactly), Muon's
   does not, because its direction has every singular value near 1 whatever the gradient's
   spread (the Newton-Schulz quintic predicts the band).

:func:`run_newer` runs the three studies and returns their numbers, figures and captions;
every number in a caption or paragraph comes from the run it describes. :func:`build` is the
same as a section of the tour's report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from descend.lab.report import Figure, Report, Section, Table
from descend.lab.sections import title_of
from descend.lab.tour.base import Progress, TourSettings, noop
from descend.lab.tour.newer.common import one_torch_thread, steps_to_stay
from descend.lab.tour.newer.lion import (
    LION_KAPPAS,
    LionStudy,
    lion_outputs,
    lion_study,
    sign_descent_distances,
)
from descend.lab.tour.newer.muon import (
    MUON_KAPPAS,
    MUON_LRS,
    MuonStudy,
    muon_outputs,
    muon_study,
    quintic_band,
)
from descend.lab.tour.newer.schedule_free import (
    SF_LRS,
    ScheduleFreeStudy,
    averaging_limit,
    constant_step_floor,
    schedule_free_outputs,
    schedule_free_study,
)

SLUG = "newer"
TITLE = title_of(SLUG)


@dataclass
class NewerResults:
    """The three studies, with the section's generated text, figures and tables.

    ``figures`` pairs each image's path with its caption; ``data`` is JSON-ready.
    """

    lion: LionStudy
    schedule_free: ScheduleFreeStudy
    muon: MuonStudy
    paragraphs: list[str]
    figures: list[tuple[Path, str]]
    tables: list[Table]
    data: dict[str, Any]

    def section(self) -> Section:
        """The results as a section of the tour's report (figures named within its images
        folder)."""
        return Section(
            SLUG,
            TITLE,
            self.paragraphs,
            [Figure(path.name, caption) for path, caption in self.figures],
            self.tables,
            self.data,
        )


def run_count(settings: TourSettings) -> int:
    """How many runs :func:`run_newer` makes (for a progress bar)."""
    lion = len(LION_KAPPAS) * 2 * 3
    schedule_free = (2 + len(SF_LRS)) * (2 if settings.quick else 8)
    muon = len(MUON_KAPPAS) * (1 + 2 * len(MUON_LRS))
    return lion + schedule_free + muon


def run_newer(
    out: Path | str, settings: TourSettings | None = None, progress: Progress | None = None
) -> NewerResults:
    """Run the three studies, writing their figures into the folder ``out``."""
    settings = settings or TourSettings()
    progress = progress or noop
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)

    def image(name: str) -> Path:
        return folder / name

    with one_torch_thread():
        lion = lion_study(settings, progress)
        schedule_free = schedule_free_study(settings, progress)
        muon = muon_study(settings, progress)
    paragraphs, figures, tables = [], [], []
    for text, images, table in (
        lion_outputs(lion, image),
        schedule_free_outputs(schedule_free, image),
        muon_outputs(muon, image),
    ):
        paragraphs += text
        figures += images
        tables.append(table)
    data = {
        "lion": [vars(row) for row in lion.rows],
        "schedule_free": {
            "floor": schedule_free.floor,
            "limit": schedule_free.limit,
            "runs": {r.label: r.excess.tolist() for r in schedule_free.runs},
        },
        "muon": [
            {
                **vars(row),
                "predicted_band": list(row.predicted_band),
                "measured_band": list(row.measured_band),
            }
            for row in muon.rows
        ],
    }
    return NewerResults(lion, schedule_free, muon, paragraphs, figures, tables, data)


def runs(settings: TourSettings) -> int:
    """The optimizer runs the section makes."""
    return run_count(settings)


def build(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """Run the three studies; their figures go to the report's images folder."""
    return run_newer(report.images, settings, progress).section()


__all__ = [
    "SLUG",
    "TITLE",
    "NewerResults",
    "averaging_limit",
    "build",
    "constant_step_floor",
    "lion_study",
    "muon_study",
    "quintic_band",
    "run_count",
    "run_newer",
    "runs",
    "schedule_free_study",
    "sign_descent_distances",
    "steps_to_stay",
]
