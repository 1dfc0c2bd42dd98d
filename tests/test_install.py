"""What each install brings: torch, NumPy and Numba run the optimizers (and without Numba they
still run, on the reference executor); every command names the extra it is missing; the extras
in pyproject.toml provide what the commands check for."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from descend.cli.main import EXTRAS

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")
ROOT = Path(__file__).resolve().parents[1]
#: Packages that only extras install, and Numba (a core dependency the optimizers can do
#: without: a platform without its wheel still steps, on the reference executor).
HEAVY = (
    "optuna",
    "matplotlib",
    "sklearn",
    "mnist1d",
    "numba",
    "rich",
    "scipy",
    "PIL",
    "sqlalchemy",
    "psycopg",
    "triton",
)

#: Runs its body with HEAVY hidden, as if only torch and NumPy were installed.
WITHOUT_EXTRAS = f"""
import importlib.machinery, sys
HIDDEN = {HEAVY!r}

class WithoutExtras(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        return super().find_spec(name, path, target)

sys.meta_path[:] = [WithoutExtras if finder is importlib.machinery.PathFinder else finder
                    for finder in sys.meta_path]
"""


def _run_without_extras(body: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS + body],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=300,
    )


@pytest.mark.slow
def test_optimizers_and_the_functional_api_need_only_torch_and_numpy():
    result = _run_without_extras("""
import numpy as np, torch
import descend
from descend import functional
from descend.specs import parse_optimizer

param = torch.nn.Parameter(torch.ones(3))
for optimizer in (descend.Adam([param], lr=0.1), parse_optimizer("sgd:lr=0.1").build([param])):
    param.grad = torch.ones(3)
    optimizer.step()
weights, _ = functional.adam(np.ones(2), np.ones(2), None)
print([round(x, 6) for x in param.detach().tolist()], [round(float(x), 6) for x in weights])
print(sorted({name.partition(".")[0] for name in sys.modules} & set(HIDDEN)))
""")
    assert result.returncode == 0, result.stderr
    stepped, loaded = result.stdout.strip().splitlines()
    # Adam's first step and SGD's each move by lr; functional Adam by its default 1e-3.
    assert stepped == "[0.8, 0.8, 0.8] [0.999, 0.999]"
    assert loaded == "[]"


def test_each_command_names_the_extra_it_misses():
    result = _run_without_extras("""
import contextlib, io
from descend.cli.main import main
for argv in (["bench"], ["lr-find", "--task", "digits-mlp"], ["report", "--storage", "x"],
             ["demo"], ["race", "ravine", "sgd"]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(argv)
    print(status, err.getvalue().strip().replace(chr(10), " | "))
""")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5
    for line, extra in zip(lines, ["bench", "bench", "bench", "lab", "lab"], strict=True):
        assert line.startswith("2 descend ") and " | " not in line
        assert f"pip install 'descend[{extra}]'" in line


def _extras() -> dict[str, set[str]]:
    """Each extra's distribution names (lowercase), self-references resolved."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    raw = project["optional-dependencies"]

    def names(extra: str) -> set[str]:
        found = set()
        for requirement in raw[extra]:
            name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower()
            if name == "descend":
                inner = re.search(r"\[(.*)\]", requirement).group(1)
                for other in inner.split(","):
                    found |= names(other.strip())
            else:
                found.add(name)
        return found

    return {extra: names(extra) for extra in raw}


def test_the_base_install_is_torch_numpy_and_numba_and_extras_provide_what_commands_check():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {re.match(r"[A-Za-z0-9_.\-]+", item).group(0) for item in project["dependencies"]}
    # Numba: without the fused executor a default install would step slower than torch.
    assert base == {"numpy", "torch", "numba"}
    extras = _extras()
    distributions = importlib.metadata.packages_distributions()
    for extra, modules in EXTRAS.items():
        for module in modules:
            provided = {name.lower() for name in distributions[module]}
            assert provided & extras[extra], (extra, module, provided)
    assert extras["test"] >= extras["lab"] | extras["bench"] | extras["postgres"]
    # "all" is every job's extra; the test tools (and the reference implementations the parity
    # tests compare with) are not a job.
    tools = {
        "pytest",
        "hypothesis",
        "ruff",
        "scipy",
        "expecttest",
        "playwright",
        "pytest-xdist",
        "filelock",
        "lion-pytorch",
        "schedulefree",
        "pytorch_optimizer",
        "kron-torch",
        "prodigyopt",
        "heavyball",
        "mypy",
        "pre-commit",
        # The documentation's build, which tests/test_docs.py runs.
        "mkdocs",
        "mkdocstrings",
    }
    assert extras["all"] >= extras["test"] - tools
    assert extras["test"] >= extras["docs"]


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lowercase, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_every_relative_link_and_image_of_the_readme_exists():
    readme = (ROOT / "README.md").read_text()
    # Code blocks hold commands and output, not links.
    prose = re.sub(r"```.*?```", "", readme, flags=re.DOTALL)
    anchors = {_github_anchor(line.lstrip("#")) for line in prose.splitlines() if line[:1] == "#"}
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", prose)
    assert any(target.endswith(".png") for target in targets), "the README shows no figure"
    for target in targets:
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        if path:
            assert (ROOT / path).exists(), f"README links to {path}, which does not exist"
        else:
            assert anchor in anchors, f"README links to #{anchor}, which no heading makes"


def test_the_readme_figure_is_small_and_comes_before_the_quick_start():
    readme = (ROOT / "README.md").read_text()
    image = re.search(r"!\[[^\]]*\]\(([^)]+\.png)\)", readme)
    assert image is not None and image.start() < readme.index("## Quick start")
    assert (ROOT / image.group(1)).stat().st_size < 150_000
    # The newcomer's order: the lab before the API tour, speed and the GPU after both.
    order = [readme.index(h) for h in ("## Quick start", "## The lab", "## API tour", "## Speed")]
    assert order == sorted(order) and order[-1] < readme.index("## The GPU backend")


def test_the_readme_runs_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^    (pip install .*)$", readme, flags=re.MULTILINE)
    assert commands[:2] == [
        "pip install torch==2.13.0 -e '.[lab]' && descend demo",
        "pip install torch==2.13.0 -e '.[test]' && python -m pytest -q",
    ]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --quiet -e '.[test]'" in ci and ci.rstrip().endswith("python3 -m pytest -q")
