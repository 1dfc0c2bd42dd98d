"""Section 8 of the tour: what the newer methods change (Lion, Schedule-Free, Muon).

The studies live in :mod:`descend.lab.newer`, which can also run them on their own; this module
is their place in the tour, with the tour's interface (``SLUG``, ``TITLE``, ``runs``, ``build``).
"""

from __future__ import annotations

from descend.lab import newer
from descend.lab.report import Report, Section
from descend.lab.tour.base import Progress, TourSettings

SLUG = newer.SECTION_SLUG
TITLE = newer.SECTION_TITLE


def runs(settings: TourSettings) -> int:
    """The optimizer runs the section makes."""
    return newer.run_count(newer.NewerSettings(settings.quick, settings.seed))


def build(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """Run the three studies; their figures go to the report's images folder."""
    return newer.newer_section(report, settings, progress)
