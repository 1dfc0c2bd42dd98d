"""MkDocs hooks: the pages made from the code, and the equations typeset.

At build time this writes

- ``optimizers.md``: the table of ``descend optimizers --markdown``, read from the rule
  registry (``descend.rules.RULES`` and each rule's listing), with each rule's update;
- ``api/``: one page per optimizer class of ``descend.optim.CLASSES`` and one per module of the
  public API, filled in by mkdocstrings from the docstrings;
- ``tour/``: one page per section of ``descend.lab.tour.SECTIONS``, with its text, figures,
  tables and checked claims, from a quick run of the tour (``descend demo --quick``), or from
  the report folder named by ``$DESCEND_DOCS_REPORT`` (any ``descend demo`` output).

Each page's update equations (a docstring's code block that assigns with ``<-``) become MathML,
which browsers draw without a script. (The reST left in the docstrings is read as Markdown by
the griffe extension in ``docs/rest.py``.)
"""

from __future__ import annotations

import html
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mathml  # beside this file, which MkDocs loads by path

#: The public API beside the optimizer classes: page name, title, object paths.
API_PAGES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("package", "descend", ("descend",)),
    (
        "torch",
        "Other torch classes",
        (
            "descend.optim.base.RuleOptimizer",
            "descend.optim.lbfgs.LBFGS",
            "descend.optim.scheduling.ScheduledLR",
            "descend.optim.averaging.WeightAverage",
            "descend.optim.base.NonFiniteGradientError",
            "descend.optim.modes.evaluation_mode",
        ),
    ),
    ("functional", "NumPy functional API", ("descend.functional",)),
    ("schedules", "Schedules", ("descend.schedules",)),
    ("secondorder", "Second-order methods", ("descend.secondorder",)),
    ("specs", "Specs", ("descend.specs",)),
    ("testing", "Testing against a reference", ("descend.testing",)),
)

#: A code block as Python-Markdown writes it.
_CODE = re.compile(r"<pre><code>(.*?)</code></pre>", re.DOTALL)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _classes() -> dict[str, type]:
    from descend.optim import CLASSES

    return dict(CLASSES)


def _tour_pages() -> list[tuple[str, str, Any]]:
    """``(file name, heading, section)`` for every section of the tour, in its order."""
    from descend.lab.tour import SECTIONS

    return [
        (f"tour/{number:02d}-{entry.slug}.md", f"{number}. {entry.title}", entry)
        for number, entry in enumerate(SECTIONS, 1)
    ]


def on_config(config: Any) -> Any:
    """The navigation, from the registry of classes and the tour's sections."""
    classes = [{name: f"api/optimizers/{_slug(name)}.md"} for name in _classes()]
    api = [{"Optimizers": classes}] + [{title: f"api/{page}.md"} for page, title, _ in API_PAGES]
    config["nav"] = [
        {"Home": "index.md"},
        {"Optimizers": "optimizers.md"},
        {"The lab's tour": [{heading: path} for path, heading, _ in _tour_pages()]},
        {"API reference": api},
        {"Speed on the CPU": "speed.md"},
    ]
    return config


def _optimizers_page() -> str:
    from descend.cli.optimizers import markdown
    from descend.rules import RULES
    from descend.rules.docs import equation

    classes = {cls.rule.name: name for name, cls in _classes().items() if "rule" in cls.__dict__}
    lines = [
        "# Optimizers",
        "",
        "Every optimizer is a row of the rule registry, `descend.rules.RULES`; "
        "`descend optimizers` prints it. This table is generated from the registry when the "
        "documentation is built.",
        "",
        markdown(),
        "",
        "## The rules",
        "",
    ]
    for rule in RULES.values():
        lines += [f"### `{rule.name}`", "", rule.summary, ""]
        # The update as every optimizer class's docstring states it: the rule's own docstring
        # or its listing's equation (descend.rules.docs.equation).
        lines += [equation(rule), ""]
        if rule.name in classes:
            name = classes[rule.name]
            lines += [f"Class: [`descend.{name}`](api/optimizers/{_slug(name)}.md).", ""]
        update = rule.update
        lines += [
            f"Update function: `{update.__module__}.{update.__qualname__}`; from {rule.reference}.",
            "",
        ]
    return "\n".join(lines)


def _class_page(name: str, cls: type) -> str:
    return "\n".join(
        [
            f"# descend.{name}",
            "",
            f"::: {cls.__module__}.{cls.__qualname__}",
            "    options:",
            "      show_root_heading: false",
            "      members: false",
            "      merge_init_into_class: true",
            "",
        ]
    )


def _api_page(title: str, paths: tuple[str, ...]) -> str:
    lines = [f"# {title}", ""]
    if paths == ("descend",):
        # The package's docstring is the overview; its classes have pages of their own.
        return "\n".join([*lines, "::: descend", "    options:", "      members: false", ""])
    for path in paths:
        lines += [f"::: {path}", ""]
        if len(paths) == 1:  # a module: this page's title is its heading; its members are its API
            lines[-1:] = ["    options:", "      show_root_heading: false"]
            exported = getattr(importlib.import_module(path), "__all__", None)
            if exported:
                lines.append("      members:")
                lines += [f"        - {name}" for name in exported]
            lines.append("")
    return "\n".join(lines)


def _report_folder() -> tuple[Path, str]:
    """A folder holding ``results.json`` and ``images/`` of a tour run, and a sentence that
    says which run it is."""
    given = os.environ.get("DESCEND_DOCS_REPORT")
    if given:
        return Path(given), "These figures and numbers come from a run of descend demo."
    from descend.lab.tour import TourSettings, run_tour

    out = Path(tempfile.mkdtemp(prefix="descend-docs-tour-"))
    _made.append(out)
    run_tour(out, TourSettings(quick=True))
    return out, (
        "These figures and numbers come from a quick run of the tour (smaller grids and "
        "studies), made when this documentation was built; descend demo runs it in full and "
        "writes every section as one offline page."
    )


#: Tour runs this build made, removed once their figures are copied into the site.
_made: list[Path] = []


def on_post_build(config: Any) -> None:
    """Remove the tour run made for this build (the site holds copies of its figures)."""
    while _made:
        shutil.rmtree(_made.pop(), ignore_errors=True)


def _table(table: dict[str, Any]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(column))}</th>" for column in table["columns"])
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{e(str(cell))}</td>'
            if re.fullmatch(r"[-+\d.e%x ]+", str(cell))
            else f"<td>{e(str(cell))}</td>"
            for cell in row
        )
        + "</tr>"
        for row in table["rows"]
    )
    parts = [f"<p><strong>{e(table['title'])}</strong></p>"] if table.get("title") else []
    parts.append(
        f'<table class="table table-striped"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )
    if table.get("note"):
        parts.append(f"<p><em>{e(table['note'])}</em></p>")
    return "\n".join(parts)


def _section_page(heading: str, section: dict[str, Any], origin: str) -> str:
    """One section of the tour: the report's text, claims, figures and tables."""
    e = html.escape
    parts = [f"# {heading}", ""]
    parts += [f"<p>{e(paragraph)}</p>" for paragraph in section["paragraphs"]]
    if section["claims"]:
        items = "".join(
            f'<li class="holds">{e(claim["statement"])}: {e(claim["evidence"])}</li>'
            if claim["holds"]
            else f'<li class="fails">Not shown by this run: {e(claim["statement"])}. '
            f"{e(claim['evidence'])}</li>"
            for claim in section["claims"]
        )
        parts.append(
            '<div class="claims"><p>What the text above says, checked against this run:</p>'
            f"<ul>{items}</ul></div>"
        )
    for figure in section["figures"]:
        parts.append(
            f'<figure><img src="images/{e(Path(figure["file"]).name)}" '
            f'alt="{e(figure["caption"])}"><figcaption>{e(figure["caption"])}</figcaption>'
            "</figure>"
        )
    parts += [_table(table) for table in section["tables"]]
    parts.append(f"<p><em>{e(origin)}</em></p>")
    return "\n\n".join(parts) + "\n"


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages and the tour's figures."""
    from mkdocs.structure.files import File

    def add(path: str, content: str | bytes) -> None:
        files.append(File.generated(config, path, content=content))

    add("optimizers.md", _optimizers_page())
    for name, cls in _classes().items():
        add(f"api/optimizers/{_slug(name)}.md", _class_page(name, cls))
    for page, title, paths in API_PAGES:
        add(f"api/{page}.md", _api_page(title, paths))

    report, origin = _report_folder()
    results = json.loads((report / "results.json").read_text(encoding="utf-8"))
    by_slug = {section["slug"]: section for section in results["sections"]}
    for path, heading, entry in _tour_pages():
        if entry.slug not in by_slug:
            raise RuntimeError(f"the tour run in {report} has no section {entry.slug!r}")
        section = by_slug[entry.slug]
        add(path, _section_page(heading, section, origin))
        for figure in section["figures"]:
            image = report / figure["file"]
            add(f"tour/images/{image.name}", image.read_bytes())
    return files


def _code_block(match: re.Match[str]) -> str:
    text = html.unescape(match.group(1))
    if not mathml.is_equations(text):
        return match.group(0)
    return mathml.block(text)


def on_page_content(content: str, page: Any, config: Any, files: Any) -> str:
    """Typeset the update equations."""
    # A docstring's ``::`` introduces its literal block; on the page one colon reads right.
    content = re.sub(r"::</p>", ":</p>", content)
    return _CODE.sub(_code_block, content)
