"""The report folder: written after every section, escaped, with JSON results."""

from __future__ import annotations

import json

import pytest

from descend.lab import plots
from descend.lab.problems import HighDimSaddle
from descend.lab.report import Figure, Report, Section
from descend.reporting import Table


def test_each_section_is_on_disk_as_soon_as_it_is_added(tmp_path):
    report = Report(tmp_path / "r", "Title <&>")
    report.add(
        Section(
            "one",
            "First",
            ["a < b & c"],
            [Figure("a.png", "cap")],
            [Table("T", ["name", "value"], [["x", 0.123456789], ["y", None]])],
        )
    )
    page = (tmp_path / "r" / "index.html").read_text()
    assert "Title &lt;&amp;&gt;" in page and "a &lt; b &amp; c" in page
    assert '<img src="images/a.png"' in page and "0.1235" in page
    report.add(Section("two", "Second", ["more"]))
    page = (tmp_path / "r" / "index.html").read_text()
    assert page.index('id="one"') < page.index('id="two"')
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert [s["slug"] for s in results["sections"]] == ["one", "two"]
    assert results["sections"][0]["tables"][0]["rows"] == [["x", "0.1235"], ["y", "-"]]


def test_contours_need_a_2d_problem(tmp_path):
    with pytest.raises(ValueError, match="dimension 20"):
        plots.contour(HighDimSaddle(dim=20), [], tmp_path / "x.png")


def test_the_introduction_names_every_section_of_the_registry_in_order(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from descend.lab import tour

    text = tour.introduction()
    places = [text.index(f"{n}. {entry.title}") for n, entry in enumerate(tour.SECTIONS, 1)]
    assert places == sorted(places) and f"in {len(tour.SECTIONS)} sections" in text

    # The page's introduction is read from the registry: a section added to it is named.
    def fake(slug: str, title: str) -> tour.TourSection:
        return tour.TourSection.of(
            SimpleNamespace(
                SLUG=slug,
                TITLE=title,
                runs=lambda settings: 0,
                build=lambda report, settings, progress: Section(slug, title, []),
            )
        )

    monkeypatch.setattr(tour, "SECTIONS", (fake("one", "First"), fake("added", "Added later")))
    report = tour.run_tour(tmp_path / "r")
    assert report.subtitle.endswith(
        "in 2 sections, each measured and drawn: 1. First; 2. Added later."
    )
    assert "2. Added later" in (tmp_path / "r" / "index.html").read_text()
