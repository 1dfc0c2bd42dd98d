"""The offline HTML report: a folder with ``index.html``, its images and ``results.json``.

Sections are added one at a time and the page is rewritten after each, so everything computed
so far is on disk even if a later section fails. The page needs no network: the styles are
inline and the images sit next to it in ``images/``. A small script counts the images that
failed to load and says so on the page (and in ``data-broken-images`` on ``<body>``), which
catches a page opened without its images folder.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from descend.reporting import Table, page, render_table

IMAGES = "images"


@dataclass
class Figure:
    """An image in the report's ``images/`` folder, with a caption."""

    file: str
    caption: str


@dataclass(frozen=True)
class Claim:
    """A statement the section's text makes about what its runs show, checked against them.

    ``statement`` is the claim in general words (what the lecture leads one to expect);
    ``evidence`` says what this run measured, in a sentence built from the measurements;
    ``holds`` whether the measurements support the statement. The report marks each one, so a
    run that does not show what the text says (a shortened ``--quick`` run, another seed) says
    so instead of contradicting itself.
    """

    statement: str
    holds: bool
    evidence: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"statement": self.statement, "holds": bool(self.holds), "evidence": self.evidence}


@dataclass
class Section:
    """One part of the tour: a title, plain-language paragraphs, figures, tables, and the
    claims its text makes about its runs. ``runs`` counts the optimizer runs it made;
    ``number`` is its place in the report (set when added)."""

    slug: str
    title: str
    paragraphs: list[str]
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    seconds: float = 0.0
    runs: int = 0
    number: int = 0

    @property
    def heading(self) -> str:
        """The numbered title, e.g. ``2. Saddle points``."""
        return f"{self.number}. {self.title}" if self.number else self.title


#: What the demo's page adds to the common stylesheet: contents, figures that enlarge on a
#: click, the claims box and the pointer to the playground. Nothing may widen the page on a
#: phone: figures shrink to the column, a wide table scrolls in its own box, long words break.
_STYLE = """
body { overflow-wrap: break-word; }
.subtitle { color: #5a6478; margin-top: 0; }
nav ol { columns: 2; }
@media (max-width: 600px) { nav ol { columns: 1; } }
figure { margin: 1.2em 0; text-align: center; }
figure img { border: 1px solid #e3e7ef; border-radius: 4px; cursor: zoom-in; max-width: 100%;
             height: auto; box-sizing: border-box; }
.table-scroll { overflow-x: auto; max-width: 100%; }
figcaption { color: #4a5366; font-size: 0.92em; margin-top: 0.3em; text-align: left; }
#zoom { position: fixed; inset: 0; background: rgba(20, 24, 33, 0.88); display: flex;
        align-items: center; justify-content: center; cursor: zoom-out; z-index: 10; }
#zoom[hidden] { display: none; }
#zoom img { max-width: 96vw; max-height: 96vh; background: #fff; border-radius: 4px; }
.claims { background: #f6f8fb; border-left: 4px solid #9fb3d1; padding: 0.4em 1em;
          font-size: 0.92em; }
.claims ul { margin: 0.3em 0; padding-left: 1.2em; }
.claims li.fails { color: #8a3b12; }
.playground { background: #eef5ee; border: 1px solid #b9d6b9; padding: 0.5em 0.8em;
              border-radius: 4px; }
"""

# Counts images that did not load and says so; the browser test reads the counts from <body>.
# Clicking a figure shows it enlarged over the page; a click or Escape closes it.
_IMAGE_CHECK = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (image) {
    return !(image.complete && image.naturalWidth > 0);
  });
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-broken-images", String(broken.length));
  if (broken.length) {
    var note = document.getElementById("missing");
    note.hidden = false;
    note.textContent = broken.length + " of " + images.length + " figures did not load: keep " +
      "index.html next to its images/ folder.";
  }
  // The enlarged copy is made here, not in the page, so the counts above see only figures.
  var zoom = document.getElementById("zoom"), large = document.createElement("img");
  zoom.appendChild(large);
  images.forEach(function (image) {
    image.addEventListener("click", function () {
      large.src = image.src;
      large.alt = image.alt;
      zoom.hidden = false;
    });
  });
  zoom.addEventListener("click", function () { zoom.hidden = true; });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { zoom.hidden = true; }
  });
});
"""

#: The report's pointer to the live version of the tour.
PLAYGROUND_NOTE = (
    "Every figure here is a fixed run. To change a setting and watch the paths, "
    "the losses and the rates move, run "
)


class Report:
    """Builds the report folder; :meth:`add` writes the page again after each section."""

    def __init__(self, out: Path | str, title: str, subtitle: str = "") -> None:
        self.out = Path(out)
        self.images = self.out / IMAGES
        self.images.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.subtitle = subtitle
        self.sections: list[Section] = []
        self.footer = ""
        #: A warning shown above the contents (say, that the runs were shortened).
        self.notice = ""

    def image_path(self, name: str) -> Path:
        """Where a figure file named ``name`` goes."""
        return self.images / name

    def add(self, section: Section) -> None:
        """Append a section (numbering it) and rewrite ``index.html`` and ``results.json``."""
        self.sections.append(section)
        section.number = len(self.sections)
        self.write()

    def write(self) -> None:
        """Write ``index.html`` and ``results.json`` for the sections so far."""
        (self.out / "index.html").write_text(self.render(), encoding="utf-8")
        results = {
            "title": self.title,
            "sections": [
                {
                    "slug": s.slug,
                    "title": s.title,
                    "seconds": round(s.seconds, 2),
                    "runs": s.runs,
                    "tables": [t.to_dict() for t in s.tables],
                    "figures": [
                        {"file": f"{IMAGES}/{f.file}", "caption": f.caption} for f in s.figures
                    ],
                    "paragraphs": s.paragraphs,
                    "claims": [c.to_dict() for c in s.claims],
                    "data": s.data,
                }
                for s in self.sections
            ],
        }
        (self.out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")

    def render(self) -> str:
        """The page as HTML text."""
        e = html.escape
        parts = [f"<h1>{e(self.title)}</h1>"]
        if self.subtitle:
            parts.append(f'<p class="subtitle">{e(self.subtitle)}</p>')
        parts.append('<p id="missing" class="warning" hidden></p>')
        parts.append(
            f'<p class="playground">{e(PLAYGROUND_NOTE)}<code>descend playground'
            "</code>: a page served from this machine, computed with the same "
            "optimizers.</p>"
        )
        if self.notice:
            parts.append(f'<p class="warning">{e(self.notice)}</p>')
        if len(self.sections) > 1:
            parts.append("<nav><ol>")
            parts += [f'<li><a href="#{e(s.slug)}">{e(s.title)}</a></li>' for s in self.sections]
            parts.append("</ol></nav>")
        for section in self.sections:
            parts.append(f'<section id="{e(section.slug)}">')
            parts.append(f"<h2>{e(section.heading)}</h2>")
            for paragraph in section.paragraphs:
                parts.append(f"<p>{e(paragraph)}</p>")
            if section.claims:
                parts.append(_render_claims(section.claims))
            for figure in section.figures:
                parts.append(
                    f'<figure><img src="{IMAGES}/{e(figure.file)}" alt="{e(figure.caption)}">'
                    f"<figcaption>{e(figure.caption)}</figcaption></figure>"
                )
            for table in section.tables:
                parts.append(f'<div class="table-scroll">{render_table(table)}</div>')
            parts.append("</section>")
        if self.footer:
            parts.append(f"<footer>{e(self.footer)}</footer>")
        parts.append('<div id="zoom" hidden></div>')
        return page(self.title, parts, style=_STYLE, script=_IMAGE_CHECK)


def _render_claims(claims: Sequence[Claim]) -> str:
    e = html.escape
    items = []
    for claim in claims:
        if claim.holds:
            items.append(f'<li class="holds">{e(claim.statement)}: {e(claim.evidence)}</li>')
        else:
            items.append(
                f'<li class="fails">Not shown by this run: {e(claim.statement)}. '
                f"{e(claim.evidence)}</li>"
            )
    return (
        '<div class="claims"><p>What the text above says, checked against this run:</p>'
        f"<ul>{''.join(items)}</ul></div>"
    )
