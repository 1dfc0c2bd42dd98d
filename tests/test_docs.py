"""The documentation builds with warnings as errors, from the code: a page for every optimizer
class, the registry's table, the tour's sections with their figures, the update equations
typeset, and nothing loaded from another host (``python -m http.server`` serves it offline)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

import descend
from descend.lab.tour import SECTIONS
from descend.optim import CLASSES
from descend.rules import RULES
from tests.cli.conftest import demo_report  # noqa: F401  (the shared quick demo run)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

pytest.importorskip("mkdocs", reason="the docs extra installs MkDocs")
pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra installs mkdocstrings")


def _load(name: str):
    """A module of docs/ (not a package: MkDocs loads its hooks by path)."""
    spec = importlib.util.spec_from_file_location(f"descend_docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    sys.path.insert(0, str(DOCS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(DOCS))
    return module


mathml = _load("mathml")
build_script = _load("build")
rest = _load("rest")


class _Page(HTMLParser):
    """The text, fetched resources and table cells of one built page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.fetched: list[str] = []
        self.images: list[str] = []
        self.first_cells: list[str] = []
        self._cell = -1
        self._first: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("script", "img", "iframe", "source") and values.get("src"):
            self.fetched.append(values["src"] or "")
        if tag == "link" and values.get("href"):
            self.fetched.append(values["href"] or "")
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag == "tr":
            self._cell = -1
        if tag == "td":
            self._cell += 1
            self._first = [] if self._cell == 0 else None

    def handle_data(self, data: str) -> None:
        if self._first is not None:
            self._first.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._first is not None:
            self.first_cells.append("".join(self._first).strip())
            self._first = None


# --- the equations: plain text in the docstrings, MathML on the pages --------------------------


def test_an_update_is_typeset_with_greek_letters_subscripts_fractions_and_roots():
    markup = mathml.expression("x <- x - (alpha * m) / (sqrt(v) + eps)")
    assert "<mo>\u2190</mo>" in markup  # <-
    assert "<mi>\u03b1</mi>" in markup and "<mi>\u03b5</mi>" in markup
    assert "<msqrt><mrow><mi>v</mi></mrow></msqrt>" in markup and "<mfrac>" in markup
    # The fraction bar groups numerator and denominator: their brackets are not drawn.
    assert "<mo>(</mo>" not in markup
    beta_to_the_t = "<msup><msub><mi>\u03b2</mi><mn>1</mn></msub><mi>t</mi></msup>"
    assert mathml.expression("beta1^t") == f"<mrow>{beta_to_the_t}</mrow>"
    assert mathml.name("x~").startswith('<mover accent="true"><mi>x</mi>')
    assert mathml.name("rho_inf") == "<msub><mi>\u03c1</mi><mi>\u221e</mi></msub>"
    # A numbered name at a step: beta3_t is beta with the subscript "3, t".
    assert mathml.name("beta3_t") == (
        "<msub><mi>\u03b2</mi><mrow><mn>3</mn><mo>,</mo><mi>t</mi></mrow></msub>"
    )
    # A remark's ``code`` reads as plain words in the typeset block.
    row = mathml.block("m <- beta1 * m + (1 - beta1) * g      (fast momentum, ``exp_avg``)")
    assert "<mtext>(fast momentum, exp_avg)</mtext>" in row


def test_a_call_needs_its_bracket_against_the_name_and_a_space_multiplies():
    called = mathml.expression("g(x)")
    multiplied = mathml.expression("gamma (beta - 1)")
    assert "\u2061" in called and "\u2062" not in called  # function application
    assert "\u2062" in multiplied and "\u2061" not in multiplied  # invisible times


def test_remarks_beside_an_equation_stay_text_and_unreadable_pieces_are_kept_as_text():
    block = mathml.block(
        "b <- mu * b + (1 - tau) * g          (b <- g on the first step)\n"
        "g <- g + mu * b   if nesterov  else  g <- b\n"
        "O <- NS_k(B): a colon this grammar does not read\n"
    )
    texts = re.findall(r"<mtext>(.*?)</mtext>", block)
    assert texts == [
        "(b &lt;- g on the first step)",
        "if nesterov  else  g &lt;- b",
        "O &lt;- NS_k(B): a colon this grammar does not read",
    ]
    assert block.count("<mtr>") == 3


def test_every_update_block_of_every_optimizer_class_is_typeset():
    for name, cls in CLASSES.items():
        blocks = re.findall(r"::\n\n((?:    .*\n?)+)", cls.__doc__ or "")
        equations = [block for block in blocks if mathml.is_equations(block)]
        assert equations, f"{name}'s docstring has no update equations"
        for block in equations:
            markup = mathml.block(block)
            # Every line that assigns is typeset, not left as text.
            assert markup.count("<mo>\u2190</mo>") + markup.count("<mo>=</mo>") >= 1, name
            typeset = len(re.findall(r"<mtd[^>]*><mrow>", markup))
            assert typeset >= sum("<-" in line for line in block.splitlines()) // 2, name


def test_code_that_is_not_an_update_is_left_alone():
    assert not mathml.is_equations("optimizer = descend.Muon([dict(params=hidden, lr=0.02)])")


def test_rest_tables_and_roles_read_as_markdown():
    docstring = (
        "The functions:\n\n"
        "=====  ==============\n"
        "name   keys\n"
        "=====  ==============\n"
        "sgd    learning_rate\n"
        "adam   beta1, beta2\n"
        "=====  ==============\n\n"
        "See :class:`~descend.rules.CourseForm` and :mod:`descend.functional`."
    )
    assert rest.tables(rest.roles(docstring)).split("\n") == [
        "The functions:",
        "",
        "| name | keys |",
        "|---|---|",
        "| sgd | learning_rate |",
        "| adam | beta1, beta2 |",
        "",
        "See `CourseForm` and `descend.functional`.",
    ]


def test_external_fetches_finds_scripts_and_styles_of_other_hosts(tmp_path: Path):
    (tmp_path / "a.html").write_text(
        '<script src="https://cdn.example/x.js"></script><a href="https://example.org">read</a>'
        '<link rel="stylesheet" href="//fonts.example/css"><img src="images/local.png">'
    )
    (tmp_path / "b.css").write_text("@font-face { src: url('https://fonts.example/f.woff'); }")
    assert build_script.external_fetches(tmp_path) == [
        "a.html: https://cdn.example/x.js",
        "a.html: //fonts.example/css",
        "b.css: https://fonts.example/f.woff",
    ]


def test_the_build_is_strict():
    from mkdocs.config import load_config

    assert load_config(str(ROOT / "mkdocs.yml"))["strict"] is True


# --- the built site ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, demo_report) -> Path:  # noqa: F811
    """The documentation built by ``docs/build.py`` from the shared quick demo run."""
    out = tmp_path_factory.mktemp("docs") / "site"
    report, _ = demo_report
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(DOCS / "build.py"), "--out", str(out), "--report", str(report)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Strict: a warning would have failed the build; none is printed either.
    assert "WARNING" not in result.stderr, result.stderr
    assert time.perf_counter() - started < 120
    return out


def _page(site: Path, path: str) -> tuple[str, _Page]:
    text = (site / path).read_text(encoding="utf-8")
    return text, _Page(text)


@pytest.mark.slow
def test_every_optimizer_class_has_a_page_with_its_docstring_and_typeset_update(site: Path):
    for name, cls in CLASSES.items():
        text, _ = _page(site, f"api/optimizers/{name.lower()}.html")
        assert f"descend.{name}" in text
        first_line = (cls.__doc__ or "").strip().splitlines()[0]
        assert first_line.split(";")[0].split("``")[0] in text, name
        assert "<math" in text, f"{name}'s update is not typeset"
        # No update is left as plain code once typeset.
        for code in re.findall(r"<pre><code>(.*?)</code></pre>", text, re.DOTALL):
            assert "&lt;-" not in code, name
    torch_page, _ = _page(site, "api/torch.html")
    for name in ("LBFGS", "ScheduledLR", "WeightAverage"):
        cls = getattr(descend, name)
        assert f'id="{cls.__module__}.{cls.__qualname__}"' in torch_page, name


@pytest.mark.slow
def test_the_optimizer_table_lists_every_registered_rule(site: Path):
    _, page = _page(site, "optimizers.html")
    listed = {name.strip() for cell in page.first_cells for name in cell.split(",")}
    for rule in RULES.values():
        assert rule.name in listed and set(rule.aliases) <= listed, rule.name
    # Below the table, each rule's update, typeset.
    text, _ = _page(site, "optimizers.html")
    assert text.count('<div class="equations">') == len(RULES)


@pytest.mark.slow
def test_the_tour_has_a_page_per_section_whose_images_exist(site: Path):
    for number, entry in enumerate(SECTIONS, 1):
        path = site / "tour" / f"{number:02d}-{entry.slug}.html"
        text, page = _page(site, str(path.relative_to(site)))
        assert entry.title in text
        assert page.images, f"section {entry.slug} has no figure"
        for source in page.images:
            assert (path.parent / source).is_file(), (entry.slug, source)


@pytest.mark.slow
def test_nothing_is_loaded_from_another_host_and_every_local_resource_exists(site: Path):
    assert build_script.external_fetches(site) == []
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= len(CLASSES) + len(SECTIONS)
    # 404.html is served for any missing path, so MkDocs writes its links from the root.
    for path in (page for page in pages if page.name != "404.html"):
        text, page = _page(site, str(path.relative_to(site)))
        # The docstrings' reST reads as Markdown: no role or table rule is left on a page.
        assert not re.search(r":(class|mod|func|data|attr):<code>|={10,}", text), path
        for source in page.fetched:
            assert not re.match(r"(https?:)?//", source), (path, source)
            local = source.split("#")[0].split("?")[0]
            if local:
                assert (path.parent / local).exists(), (path, source)


@pytest.mark.slow
def test_the_home_page_shows_the_readme_figure(site: Path):
    text, page = _page(site, "index.html")
    assert "images/ravine-paths.png" in page.images
    assert (site / "images" / "ravine-paths.png").is_file()
