"""A lab problem is one definition: defining it registers it, and the race's specs and listing,
the playground's sliders, its spec parsing and its runs all read the settings it declares."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pytest

from descend.cli.main import main
from descend.lab.playground import compute
from descend.lab.playground.controls import PROBLEMS as OFFERED
from descend.lab.playground.controls import build_problem, catalog
from descend.lab.problems import PROBLEMS, Param, Problem, make_problem, problem_names

NAME = "throwaway_bowl"


@pytest.fixture
def bowl() -> Iterator[type[Problem]]:
    """A problem defined at run time, in one definition, and forgotten afterwards."""

    class Bowl(Problem):
        """``f(x) = width / 2 |x|^2``: a round bowl with its minimum at the origin."""

        name = NAME
        title = "throwaway bowl"
        params = (
            Param(
                "width",
                2.0,
                "curvature of the bowl",
                low=0.0,
                low_open=True,
                log=True,
                slider=(0.1, 10.0),
            ),
            Param("start", 1.0, "the start's coordinates"),
        )
        playground: ClassVar[dict[str, Any]] = {}

        def __init__(self, width: float = 2.0, start: float = 1.0) -> None:
            self.width = float(width)
            self.dimension = 2
            self.x0 = np.full(2, float(start))
            self.minima = np.zeros((1, 2))
            self.minimum_value = 0.0
            self.bounds = ((-1.5, 1.5), (-1.5, 1.5))

        def _value(self, x: Any, xp: Any) -> Any:
            return 0.5 * self.width * (x * x).sum()

        def grad(self, x: np.ndarray) -> np.ndarray:
            """``width x``."""
            return self.width * np.asarray(x)

    yield Bowl
    PROBLEMS.pop(NAME)
    compute.problem_view.cache_clear()
    compute.run_view.cache_clear()


def test_the_race_builds_checks_and_lists_a_problem_defined_at_run_time(bowl, capsys):
    assert NAME in problem_names()
    problem = make_problem(f"{NAME}:width=3")
    assert isinstance(problem, bowl) and problem.width == 3.0
    with pytest.raises(ValueError, match=r"width=0 is out of range: expected 0 < width < inf"):
        make_problem(f"{NAME}:width=0")
    with pytest.raises(ValueError, match="does not take depth;.* valid: width, start"):
        make_problem(f"{NAME}:depth=1")
    with pytest.raises(ValueError, match="width=-1 is out of range"):
        bowl(width=-1)  # the declared range holds for Python callers too
    assert main(["race", "--help"]) == 0
    listing = capsys.readouterr().out
    assert f"{NAME}: throwaway bowl" in listing
    assert "width=2 (0 < width < inf, log scale): curvature of the bowl" in listing
    assert main(["race", f"{NAME}:width=3", "sgd:lr=0.1", "--steps", "30"]) == 0
    assert "throwaway bowl" in capsys.readouterr().out


def test_the_playground_offers_a_problem_defined_at_run_time(bowl, capsys):
    assert list(OFFERED)[-1] == NAME
    offered = next(p for p in catalog()["problems"] if p["name"] == NAME)
    assert offered == {
        "name": NAME,
        "title": "throwaway bowl",
        "sliders": [
            {
                "name": "width",
                "doc": "curvature of the bowl",
                "default": 2.0,
                "low": 0.1,
                "high": 10.0,
                "scale": "log",
                "kind": "float",
                "zero": False,
            }
        ],
    }
    assert build_problem(f"{NAME}:width=5").width == 5.0
    with pytest.raises(
        ValueError, match="width=20 is out of range: expected a number from 0.1 to 10"
    ):
        build_problem(f"{NAME}:width=20")
    with pytest.raises(ValueError, match="has no setting start"):
        build_problem(f"{NAME}:start=2")  # declared, but without a slider
    view = compute.run_view(f"{NAME}:width=1", "sgd:lr=0.5", "", "", 40, 0, 1e-6)
    np.testing.assert_allclose(view["path"][-1], 0.5**40, rtol=1e-5)
    assert main(["playground", "--help"]) == 0
    assert f"{NAME}: width 0.1 to 10 (log scale)" in capsys.readouterr().out


def test_a_declaration_that_disagrees_with_the_constructor_is_refused_when_defined():
    with pytest.raises(TypeError, match=r"params declares \['width'\]; its __init__ takes"):

        class Unlisted(Problem):
            name = "throwaway_unlisted"
            params = (Param("width", 2.0, "curvature"),)

            def __init__(self, width: float = 2.0, start: float = 1.0) -> None:
                pass

    with pytest.raises(TypeError, match="width defaults to 2.0 in params but not in __init__"):

        class Disagreeing(Problem):
            name = "throwaway_disagreeing"
            params = (Param("width", 2.0, "curvature"),)

            def __init__(self, width: float = 3.0) -> None:
                pass

    assert "throwaway_unlisted" not in PROBLEMS and "throwaway_disagreeing" not in PROBLEMS
