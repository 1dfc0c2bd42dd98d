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
