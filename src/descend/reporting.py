"""HTML tables, number formatting and the stylesheet shared by descend's reports.

The demo's report (:mod:`descend.lab.report`) and the benchmark's (:mod:`descend.bench.report`)
are both a page of text, figures and tables. What they have in common lives here, so that a
number reads the same and a table looks the same in both:

- :func:`format_cell` turns a value into the short string a table shows;
- :class:`Table` holds a table, :func:`render_table` writes it as HTML (every text escaped,
  numbers aligned right);
- :data:`STYLE` is the common stylesheet and :func:`page` wraps a body into a complete page.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def format_cell(value: Any, digits: int = 4) -> str:
    """A value as a table shows it.

    ``None`` and NaN are ``-`` (missing); +inf is ``never`` (every infinite time in a report is
    a target never reached); flags are ``yes``/``no``; integers are shown in full; other
    numbers to ``digits`` significant digits; text as it is.
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "never" if value > 0 else "-inf"
        return f"{value:.{digits}g}"
    return str(value)


def is_numeric(value: Any) -> bool:
    """Whether a cell holds a number (aligned right): a real number, or text that states one
    as a bound or a share (``> 3000``, ``12%``). Flags and other text align left."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return True
    return isinstance(value, str) and (value.startswith("> ") or value.endswith("%"))


@dataclass
class Table:
    """A table: column names, rows of cells (numbers are formatted), an optional note below.

    ``numeric`` says, per column, whether the column holds numbers (aligned right, header
    included); ``None`` aligns each cell by its own value (see :func:`is_numeric`), which suits
    rows of raw numbers but not text already formatted. ``summary_columns`` picks the columns
    (by index) a terminal summary shows, for tables too wide for a terminal; None shows them
    all. An empty ``title`` writes no caption.
    """

    title: str
    columns: Sequence[str]
    rows: list[Sequence[Any]]
    note: str = ""
    summary_columns: Sequence[int] | None = None
    numeric: Sequence[bool] | None = None

    def __post_init__(self) -> None:
        if self.numeric is not None and len(self.numeric) != len(self.columns):
            raise ValueError(
                f"numeric has {len(self.numeric)} entries for {len(self.columns)} columns"
            )

    def cells(self) -> list[list[str]]:
        """Every row as display strings."""
        return [[format_cell(cell) for cell in row] for row in self.rows]

    def summary(self) -> Table:
        """The table with only its ``summary_columns`` (itself when there are none)."""
        if self.summary_columns is None:
            return self
        keep = list(self.summary_columns)
        return Table(
            self.title,
            [self.columns[i] for i in keep],
            [[row[i] for i in keep] for row in self.rows],
            self.note,
            numeric=None if self.numeric is None else [self.numeric[i] for i in keep],
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "title": self.title,
            "columns": list(self.columns),
            "rows": self.cells(),
            "note": self.note,
        }


def _cell(tag: str, text: str, numeric: bool) -> str:
    opening = f'<{tag} class="num">' if numeric else f"<{tag}>"
    return f"{opening}{html.escape(text)}</{tag}>"


def render_table(table: Table) -> str:
    """The table as HTML: caption, header row, rows, and the note as a paragraph below."""
    columns = table.numeric
    parts = [f"<caption>{html.escape(table.title)}</caption>"] if table.title else []
    parts.append(
        "<tr>"
        + "".join(
            _cell("th", str(name), columns is not None and columns[index])
            for index, name in enumerate(table.columns)
        )
        + "</tr>"
    )
    for raw_row, row in zip(table.rows, table.cells(), strict=True):
        parts.append(
            "<tr>"
            + "".join(
                _cell("td", text, is_numeric(raw) if columns is None else columns[index])
                for index, (raw, text) in enumerate(zip(raw_row, row, strict=True))
            )
            + "</tr>"
        )
    out = "<table>" + "".join(parts) + "</table>"
    if table.note:
        out += f'<p class="note">{html.escape(table.note)}</p>'
    return out


#: The stylesheet every report starts from: text, headings, tables (numbers right-aligned in
#: tabular figures), notes, warnings and images.
STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       max-width: 1000px; margin: 2em auto; padding: 0 1.2em; color: #1d2330; line-height: 1.5;
       background: #ffffff; }
h1 { font-size: 1.9em; margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #dde3ee; padding-bottom: 0.2em; margin-top: 2.2em; }
code { background: #eef1f6; padding: 0 0.25em; border-radius: 3px; }
img { max-width: 100%; }
table { border-collapse: collapse; margin: 0.6em 0 0.3em; font-size: 0.9em; width: 100%; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
th, td { border: 1px solid #dde3ee; padding: 0.25em 0.55em; text-align: left; }
th { background: #f3f6fb; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfd; }
.note { color: #5a6478; font-size: 0.88em; margin-top: 0; }
.warning { background: #fff3cd; border: 1px solid #e0c25c; padding: 0.6em; border-radius: 4px; }
footer { color: #7a8396; font-size: 0.85em; margin-top: 3em; }
"""


def page(title: str, body: Sequence[str], *, style: str = "", script: str = "") -> str:
    """A complete HTML page: ``title`` (escaped) in its head, :data:`STYLE` followed by the
    report's own ``style``, an optional ``script``, and the ``body``'s HTML parts, one per line.
    """
    head = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}{style}</style>",
    ]
    if script:
        head.append(f"<script>{script}</script>")
    return "\n".join([*head, "</head>", "<body>", *body, "</body>", "</html>"]) + "\n"
