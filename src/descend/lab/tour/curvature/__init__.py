"""A section of the tour: curvature made cheap. The ravine as a weight matrix whose Hessian is
a Kronecker product, at kappa 10^2, 10^3 and 10^4, in a rotation that defeats diagonal methods;
gradient descent at its optimal step, Adam, the registry's Kronecker-factored preconditioners
(Shampoo, SOAP and any later one with matrix state) and Newton's method, with theory beside
each measurement; and the rotated twin of the same spectrum with no Kronecker structure, where
Shampoo is not exact.

- :mod:`~descend.lab.tour.curvature.problem`: the two problems;
- :mod:`~descend.lab.tour.curvature.study`: the runs, and what is exact about Shampoo on a
  Kronecker-structured quadratic, measured on the optimizer's own state;
- :mod:`~descend.lab.tour.curvature.outputs`: the text, claims, figure and tables.
"""

from __future__ import annotations

from descend.lab.report import Figure, Report, Section
from descend.lab.sections import title_of
from descend.lab.tour.base import Progress, TourSettings
from descend.lab.tour.curvature.outputs import (
    curvature_claims,
    curvature_figure,
    curvature_paragraphs,
    curvature_tables,
)
from descend.lab.tour.curvature.problem import MatrixQuadratic
from descend.lab.tour.curvature.study import TOLERANCE, CurvatureStudy, curvature_study, run_count

SLUG = "curvature"
TITLE = title_of(SLUG)


def runs(settings: TourSettings) -> int:
    """The optimizer runs the section makes."""
    return run_count(settings)


def section_of(study: CurvatureStudy, report: Report) -> Section:
    """The study as a section of the report (its figure drawn into the report's images)."""
    path, caption = curvature_figure(study, report.image_path)
    return Section(
        SLUG,
        TITLE,
        curvature_paragraphs(study),
        [Figure(path.name, caption)],
        curvature_tables(study),
        data={
            "rows": [
                {
                    "problem": row.case,
                    "kappa": row.kappa,
                    "gd_predicted": row.gd.predicted,
                    "gd_measured": row.gd.measured,
                    "gd_rate": row.gd.rate,
                    "gd_measured_rate": row.gd.measured_rate,
                    "tuned": {t.name: {"lr": t.lr, "steps": t.steps} for t in row.tuned},
                    "newton": row.newton,
                    "exactness": vars(row.exact),
                }
                for row in study.rows
            ],
            "horizon": study.horizon,
            "tolerance": TOLERANCE,
        },
        claims=curvature_claims(study),
    )


def build(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """Run the study; its figure goes to the report's images folder."""
    return section_of(curvature_study(settings, progress), report)


__all__ = ["SLUG", "TITLE", "MatrixQuadratic", "build", "curvature_study", "runs", "section_of"]
