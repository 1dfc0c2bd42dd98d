"""A griffe extension: the reStructuredText left in descend's docstrings, as Markdown.

The docstrings are Google style and mostly Markdown-compatible; two reST forms are not. A
simple table (columns under ``====`` rules) becomes a Markdown table, and a cross-reference
role (``:class:`~descend.rules.CourseForm```) becomes code, shortened after ``~`` as Sphinx
shortens it. Everything else is left as written.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|mod|func|meth|attr|data|obj|exc):`(~?)([^`]+)`")
_RULE = re.compile(r"^( *)(=+)( +=+)+ *$")


def roles(text: str) -> str:
    """``:class:`~a.b.C``` -> ```C```; ``:mod:`a.b``` -> ```a.b```."""

    def code(match: re.Match[str]) -> str:
        target = match.group(2)
        return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"

    return _ROLE.sub(code, text)


def _columns(rule: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"=+", rule)]


def tables(text: str) -> str:
    """Each reST simple table (top rule, header, rule, rows, bottom rule) as a Markdown table."""
    lines = text.split("\n")
    out: list[str] = []
    at = 0
    while at < len(lines):
        rules = [i for i in range(at, min(at + 200, len(lines))) if _RULE.match(lines[i])]
        if not (len(rules) >= 3 and rules[0] == at and rules[1] == at + 2):
            out.append(lines[at])
            at += 1
            continue
        spans = _columns(lines[at])
        indent = _RULE.match(lines[at]).group(1)  # type: ignore[union-attr]

        def cells(line: str, spans: list[tuple[int, int]] = spans) -> list[str]:
            bounds = [start for start, _ in spans[1:]] + [None]
            return [
                line[start:end].strip().replace("|", "\\|")
                for (start, _), end in zip(spans, bounds, strict=True)
            ]

        header = cells(lines[at + 1])
        out.append(indent + "| " + " | ".join(header) + " |")
        out.append(indent + "|" + "---|" * len(header))
        for line in lines[at + 3 : rules[2]]:
            if line.strip():
                out.append(indent + "| " + " | ".join(cells(line)) + " |")
        at = rules[2] + 1
    return "\n".join(out)


class RestToMarkdown(griffe.Extension):
    """Rewrites every docstring griffe reads (by inspection or from the source)."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if getattr(obj, "docstring", None) is not None:
            obj.docstring.value = tables(roles(obj.docstring.value))
