"""The tour behind ``descend demo``: the four problems of SGD, measured, drawn and explained.

One module per section, each written to the report as soon as it is done:

1. :mod:`~descend.lab.tour.ravine`: ill-conditioning: trajectories, the animated race, steps to
   tolerance next to theory, and predicted against measured linear rates;
2. :mod:`~descend.lab.tour.saddle`: x^2 - y^2 and a 100-dimensional saddle, with escape times;
3. :mod:`~descend.lab.tour.minima`: a tilted double well, Rastrigin and Himmelblau;
4. :mod:`~descend.lab.tour.noise`: minibatch least squares, batch size, momentum, averaging;
5. :mod:`~descend.lab.tour.decay`: step, exponential and 1/t decay for Momentum and Adam;
6. :mod:`~descend.lab.tour.classics`: Rosenbrock, Beale and Booth;
7. :mod:`~descend.lab.tour.second_order`: GD, Nesterov and Adam next to Newton, BFGS and L-BFGS,
   full batch and on minibatches;
8. :mod:`~descend.lab.tour.curvature`: curvature made cheap: a matrix ravine with a
   Kronecker-structured Hessian and its rotated twin, GD, Adam and the matrix preconditioners
   (Shampoo, SOAP, ...) against Newton, and what is exact about Shampoo;
9. :mod:`~descend.lab.tour.newer`: beyond the lecture: Lion's sign step on the ravine,
   Schedule-Free against step decay under noise, Muon on an ill-conditioned matrix problem.

Each section module has ``SLUG``, ``TITLE``, ``runs(settings)`` (the optimizer runs it makes,
counted from the same tables it runs, for the progress bar) and ``build(report, settings,
progress)``, which returns the :class:`~descend.lab.report.Section`. Every sentence of a
section that states a measured value is built from that value, and the claims its text makes
about its runs come with it, checked (:class:`~descend.lab.report.Claim`).

:data:`SECTIONS` is the registry: the sections in the report's order, each a
:class:`TourSection` with the slug, title and module it reads from the module itself. The demo,
its report and the tests read it; a new section is one module and one line in
:data:`descend.lab.sections.SECTION_TABLE`, where its title is written.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from descend.lab.report import Report, Section
from descend.lab.sections import SECTION_TABLE
from descend.lab.tour.base import Progress, TourSettings, noop


@dataclass(frozen=True)
class TourSection:
    """One section of the tour: its anchor in the report (``slug``), its heading (``title``)
    and the module that runs it."""

    slug: str
    title: str
    module: ModuleType

    @classmethod
    def of(cls, module: ModuleType) -> TourSection:
        """The registry's entry for a section module, from its ``SLUG`` and ``TITLE``."""
        return cls(module.SLUG, module.TITLE, module)

    def runs(self, settings: TourSettings) -> int:
        """The optimizer runs the section makes under ``settings``."""
        return self.module.runs(settings)

    def build(self, report: Report, settings: TourSettings, progress: Progress) -> Section:
        """Run the section; its figures go to the report's images folder."""
        return self.module.build(report, settings, progress)


#: Every section of the tour, in the report's order (:data:`descend.lab.sections.SECTION_TABLE`).
SECTIONS: tuple[TourSection, ...] = tuple(
    TourSection.of(importlib.import_module(module)) for _, _, module in SECTION_TABLE
)


def introduction(sections: Sequence[TourSection] | None = None) -> str:
    """The report's opening line: every section of the tour (:data:`SECTIONS` by default), in
    order, read from the registry so that it names each one."""
    titles = [entry.title for entry in (SECTIONS if sections is None else sections)]
    return (
        f"The tour in {len(titles)} section{'' if len(titles) == 1 else 's'}, each measured "
        "and drawn: "
        + "; ".join(f"{number}. {title}" for number, title in enumerate(titles, start=1))
        + "."
    )


def total_runs(settings: TourSettings | None = None) -> int:
    """How many runs the whole tour makes (the progress bar's total)."""
    settings = settings or TourSettings()
    return sum(section.runs(settings) for section in SECTIONS)


def run_tour(
    out: Path | str,
    settings: TourSettings | None = None,
    progress: Progress | None = None,
    on_section: Callable[[Section], None] | None = None,
) -> Report:
    """Run every section into the report folder ``out``; return the report.

    Each section is written to ``out/index.html`` and ``out/results.json`` as soon as it is
    done; ``on_section`` is called with it too (for the terminal summary).
    """
    settings = settings or TourSettings()
    progress = progress or noop
    report = Report(
        out,
        "descend: the problems of SGD, and how each optimizer answers them",
        introduction(),
    )
    if settings.quick:
        report.notice = (
            "Quick settings: smaller learning-rate grids, shorter second-order "
            "studies and animations. Every sentence about results is built from "
            "these runs; claims they do not support are marked."
        )
    started = time.perf_counter()
    for entry in SECTIONS:
        began = time.perf_counter()
        counted = 0

        def counting(description: str, advance: int) -> None:
            nonlocal counted
            counted += advance
            progress(description, advance)

        section = entry.build(report, settings, counting)
        section.seconds = time.perf_counter() - began
        section.runs = counted
        report.footer = (
            f"Generated by descend demo in {time.perf_counter() - started:.1f} s"
            f"{' (quick settings)' if settings.quick else ''}."
        )
        report.add(section)
        if on_section is not None:
            on_section(section)
    return report


__all__ = ["SECTIONS", "TourSection", "TourSettings", "introduction", "run_tour", "total_runs"]
