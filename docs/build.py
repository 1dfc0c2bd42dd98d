"""Build the documentation with warnings as errors: ``python docs/build.py [--out DIR]``.

The generated pages (optimizer table, API pages, the tour's pages from a quick run of the tour)
are made by the hooks in ``docs/hooks.py`` during the build. ``--report DIR`` reuses the report
folder of an earlier ``descend demo`` instead of running the tour. After the build, every page
is checked to load no script, style or font from another host; the exit status is 1 if one does.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: An element that makes the browser fetch something: a script, a style sheet, an image, a frame.
_FETCH = re.compile(
    r"""<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)=["']((?:https?:)?//[^"']+)""",
    re.IGNORECASE,
)


def external_fetches(site: Path) -> list[str]:
    """``page: URL`` for every fetch of another host in the built pages (links to read are
    fine; what a page loads is not)."""
    found = []
    for page in sorted(site.rglob("*.html")):
        for url in _FETCH.findall(page.read_text(encoding="utf-8")):
            found.append(f"{page.relative_to(site)}: {url}")
    for sheet in sorted(site.rglob("*.css")):
        for url in re.findall(r"url\(\s*['\"]?((?:https?:)?//[^)'\"]+)", sheet.read_text("utf-8")):
            found.append(f"{sheet.relative_to(site)}: {url}")
    return found


def build(out: Path, report: Path | None = None) -> float:
    """Build into ``out`` (strict: any warning fails); return the seconds it took."""
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config

    # MkDocs' own command line prints its warnings; called from Python it needs a handler.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s - %(message)s"))
    logging.getLogger("mkdocs").addHandler(handler)

    if report is not None:
        os.environ["DESCEND_DOCS_REPORT"] = str(report)
    started = time.perf_counter()
    config = load_config(str(ROOT / "mkdocs.yml"), site_dir=str(out), strict=True)
    mkdocs_build(config)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Build, check, and say where the pages are."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "docs", help="output folder")
    parser.add_argument("--report", type=Path, help="reuse this descend demo report folder")
    arguments = parser.parse_args(argv)
    from mkdocs.exceptions import Abort

    try:
        seconds = build(arguments.out, arguments.report)
    except Abort as error:  # the warnings printed above failed the strict build
        print(f"the documentation did not build: {error}", file=sys.stderr)
        return 1
    fetches = external_fetches(arguments.out)
    for line in fetches:
        print(f"loads from another host: {line}", file=sys.stderr)
    print(f"built {arguments.out} in {seconds:.1f} s")
    print(f"browse it offline: python -m http.server -d {arguments.out}")
    return 1 if fetches else 0


if __name__ == "__main__":
    sys.exit(main())
