"""The HTML table, cell format and page shared by the demo's and the benchmark's reports."""

from __future__ import annotations

import re

import numpy as np
import pytest

from descend.reporting import STYLE, Table, format_cell, is_numeric, page, render_table


@pytest.mark.parametrize(
    "value, text",
    [
        (3, "3"),
        (123456789, "123456789"),
        (np.int64(7), "7"),
        (0.5, "0.5"),
        (0.123456789, "0.1235"),
        (1234567.0, "1.235e+06"),
        (np.float32(0.25), "0.25"),
        (float("inf"), "never"),
        (float("-inf"), "-inf"),
        (float("nan"), "-"),
        (None, "-"),
        (True, "yes"),
        (False, "no"),
        ("> 10", "> 10"),
        ("sgd:lr=0.1", "sgd:lr=0.1"),
    ],
)
def test_cells_format_for_people(value, text):
    assert format_cell(value) == text


def test_digits_set_the_significant_figures():
    assert format_cell(2 / 3, 2) == "0.67" and format_cell(2 / 3, 3) == "0.667"
    assert format_cell(12345.0, 3) == "1.23e+04" and format_cell(12345, 3) == "12345"


@pytest.mark.parametrize(
    "value, numeric",
    [
        (3, True),
        (0.5, True),
        (float("nan"), True),
        (np.float64(2.0), True),
        (True, False),
        (None, False),
        ("> 3000", True),
        ("12%", True),
        ("adam", False),
        ("3 minima", False),
    ],
)
def test_numbers_and_bounds_are_numeric_text_and_flags_are_not(value, numeric):
    assert is_numeric(value) is numeric


def _cells(markup: str, tag: str) -> list[tuple[str, str]]:
    """``(class attribute, text)`` of every ``tag`` cell, in order."""
    return [
        (attributes.strip(), text)
        for attributes, text in re.findall(rf"<{tag}([^>]*)>(.*?)</{tag}>", markup)
    ]


def test_labels_and_notes_are_escaped():
    markup = render_table(
        Table(
            "x < y & z",
            ["<b>name</b>", "value"],
            [["<script>alert(1)</script>", 0.5]],
            note='"quoted" & <more>',
        )
    )
    assert "<script>" not in markup and "<b>" not in markup
    assert "<caption>x &lt; y &amp; z</caption>" in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert '<p class="note">&quot;quoted&quot; &amp; &lt;more&gt;</p>' in markup


def test_numbers_align_right_and_text_left_cell_by_cell():
    markup = render_table(
        Table(
            "T",
            ["optimizer", "steps", "loss", "converged"],
            [["adam", 120, 1e-9, True], ["sgd", "> 3000", None, False]],
        )
    )
    assert _cells(markup, "th") == [
        ("", "optimizer"),
        ("", "steps"),
        ("", "loss"),
        ("", "converged"),
    ]
    assert _cells(markup, "td") == [
        ("", "adam"),
        ('class="num"', "120"),
        ('class="num"', "1e-09"),
        ("", "yes"),
        ("", "sgd"),
        ('class="num"', "&gt; 3000"),
        ("", "-"),
        ("", "no"),
    ]


def test_numeric_columns_align_formatted_text_and_their_headers():
    table = Table(
        "",
        ["optimizer", "setting", "test", "reached"],
        [["adam", "lr=0.001", "97.10 ± 0.20", "3/3"]],
        numeric=[False, False, True, True],
    )
    markup = render_table(table)
    assert "<caption>" not in markup
    assert [klass for klass, _ in _cells(markup, "th")] == ["", "", 'class="num"', 'class="num"']
    assert _cells(markup, "td") == [
        ("", "adam"),
        ("", "lr=0.001"),
        ('class="num"', "97.10 ± 0.20"),
        ('class="num"', "3/3"),
    ]
    assert "th.num, td.num { text-align: right;" in STYLE
    with pytest.raises(ValueError, match="3 entries for 4 columns"):
        Table("", table.columns, table.rows, numeric=[True, True, True])


def test_a_summary_keeps_the_chosen_columns_and_the_report_keeps_them_all():
    table = Table(
        "T",
        ["a", "b", "c"],
        [[1, "wide words", 0.5]],
        "note",
        summary_columns=(0, 2),
        numeric=[True, False, True],
    )
    brief = table.summary()
    assert brief.columns == ["a", "c"] and brief.cells() == [["1", "0.5"]]
    assert brief.numeric == [True, True]
    assert brief.note == "note" and brief.summary() is brief
    assert Table("U", ["a"], [[1]]).summary().columns == ["a"]
    assert table.to_dict()["columns"] == ["a", "b", "c"]


def test_a_page_has_the_common_style_the_reports_own_and_an_escaped_title():
    text = page("A <title>", ["<h1>body</h1>"], style=".own { color: red; }", script="go();")
    assert text.startswith("<!DOCTYPE html>") and text.endswith("</html>\n")
    assert "<title>A &lt;title&gt;</title>" in text
    assert text.index(STYLE) < text.index(".own { color: red; }") < text.index("</style>")
    assert "<script>go();</script>" in text
    assert text.index("<body>") < text.index("<h1>body</h1>") < text.index("</body>")
    assert "<script>" not in page("T", [])
