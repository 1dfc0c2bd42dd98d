"""The sections of the tour behind ``descend demo``, in the report's order: each one's anchor
in the report (its slug), its heading and the module that runs it.

This table is the one place a section's heading is written; :mod:`descend.lab.tour` builds its
registry from it and each section module reads its own title here. It imports nothing, so that
``descend demo --help`` lists the sections without loading the tour (torch, matplotlib).
"""

from __future__ import annotations

#: ``(slug, title, module)`` of every section, in order.
SECTION_TABLE: tuple[tuple[str, str, str], ...] = (
    ("ravine", "Ill-conditioning: the ravine", "descend.lab.tour.ravine"),
    ("saddle", "Saddle points", "descend.lab.tour.saddle"),
    ("minima", "Local minima", "descend.lab.tour.minima"),
    ("noise", "Noisy gradients", "descend.lab.tour.noise"),
    ("decay", "Learning-rate decay", "descend.lab.tour.decay"),
    ("classics", "The classics: Rosenbrock, Beale, Booth", "descend.lab.tour.classics"),
    ("orders", "First-order versus second-order", "descend.lab.tour.second_order"),
    (
        "curvature",
        "Curvature made cheap: Kronecker-factored preconditioners",
        "descend.lab.tour.curvature",
    ),
    ("newer", "What the newer methods change", "descend.lab.tour.newer"),
)


def title_of(slug: str) -> str:
    """The heading of the section with this slug."""
    for known, title, _ in SECTION_TABLE:
        if known == slug:
            return title
    raise KeyError(f"no tour section {slug!r}; sections: {[s for s, _, _ in SECTION_TABLE]}")
