"""What the server computes for the page: a problem's picture and theory, and one run.

Every number the page shows comes from here: the loss surface and its contours, theory's
optimal settings and its map of the convergence rate over (step size, momentum), and each run,
stepped by the rule itself through the lab's loop (:func:`descend.lab.loop.follow`). Results
are cached by their query, so moving one optimizer's slider recomputes that run only.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import contourpy
import numpy as np

from descend.lab import theory
from descend.lab.loop import RuleStepper, follow, settled_step
from descend.lab.palette import FAMILY_COLORS, OTHER_COLORS, family_of, lightness_steps
from descend.lab.playground import explain
from descend.lab.playground.controls import (
    build_problem,
    parse_average,
    parse_rule,
    parse_schedule_text,
)
from descend.lab.rates import rule_method
from descend.lab.runner import averaged_points, finite_json
from descend.lab.surface import surface

#: Grid points per side of the loss surface sent to the page.
RESOLUTION = 90
#: Most steps a run may ask for.
MAX_STEPS = 5000
#: Points per side of the (step size, momentum) rate map.
MAP_POINTS = 101
#: Rates above this are drawn as "diverges" on the map.
MAP_CEILING = 1.05
THEORY_METHODS = {
    "gradient descent": theory.gd_optimal,
    "heavy ball": theory.heavy_ball_optimal,
    "Nesterov": theory.nesterov_optimal,
}


def _rounded(values: np.ndarray, digits: int = 6) -> list:
    """Nested lists of floats to ``digits`` significant digits (smaller JSON, same picture)."""
    array = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(array))))
        out = np.where(np.isfinite(scale) & (array != 0), np.round(array * scale) / scale, array)
    return out.tolist() if np.isfinite(out).all() else finite_json(out.tolist())


def _number(value: float) -> float | None:
    """A float for JSON: None when it is not finite."""
    value = float(value)
    return value if np.isfinite(value) else None


@functools.lru_cache(maxsize=64)
def problem_view(spec: str) -> dict[str, Any]:
    """The problem of ``spec``: its loss surface (shades in [0, 1] and contour lines), start,
    minima, and for a quadratic its eigen-directions, theory's optimal settings and the rate
    maps of heavy ball and Nesterov."""
    problem = build_problem(spec)
    grid = surface(problem, resolution=RESOLUTION)
    shown = np.log(grid.shown) if grid.log else grid.shown
    shade = (shown - shown.min()) / max(float(np.ptp(shown)), 1e-300)
    generator = contourpy.contour_generator(
        grid.xs, grid.ys, grid.shown, line_type=contourpy.LineType.Separate
    )
    contours = [_rounded(line, 5) for level in grid.levels for line in generator.lines(level)]
    view: dict[str, Any] = {
        "spec": spec,
        "title": problem.describe(),
        "bounds": [list(b) for b in problem.bounds],
        "start": problem.start().tolist(),
        "minima": problem.minima.tolist(),
        "minimum_value": problem.minimum_value,
        "escape_loss": problem.escape_loss,
        "stochastic": problem.stochastic,
        "shade": _rounded(shade, 3),
        "contours": contours,
        "quadratic": None,
    }
    quadratic = getattr(problem, "quadratic", None)
    if quadratic is not None:
        mu, L = quadratic.strong_convexity, quadratic.smoothness
        alphas = np.linspace(0.0, 4.0 / L, MAP_POINTS)[1:]
        betas = np.linspace(0.0, 0.99, MAP_POINTS)
        view["quadratic"] = {
            "eigenvalues": quadratic.eigenvalues.tolist(),
            "directions": quadratic.rotation.T.tolist(),
            "mu": mu,
            "L": L,
            "kappa": quadratic.condition_number,
            "optimal": {
                name: {
                    "lr": s.lr,
                    "momentum": s.momentum,
                    "rate": s.rate,
                    # What "set optimal" writes into the link: the digits that matter.
                    "rounded": explain.optimum_digits(
                        name, quadratic.eigenvalues, s.lr, s.momentum, s.rate
                    ),
                }
                for name, s in ((name, optimal(mu, L)) for name, optimal in THEORY_METHODS.items())
            },
            "maps": {
                "alphas": _rounded(alphas),
                "betas": _rounded(betas),
                "ceiling": MAP_CEILING,
                **{
                    method: _rounded(
                        np.minimum(
                            theory.rate(
                                method, quadratic.eigenvalues, alphas[None, :], betas[:, None]
                            ),
                            MAP_CEILING,
                        ),
                        4,
                    )
                    for method in ("heavy ball", "Nesterov")
                },
                "regimes": {
                    method: _regimes(method, quadratic.eigenvalues, alphas, betas)
                    for method in ("heavy ball", "Nesterov")
                },
            },
        }
    return finite_json(view)


def _regimes(
    method: str, eigenvalues: np.ndarray, alphas: np.ndarray, betas: np.ndarray
) -> dict[str, Any]:
    """The regime map of ``method`` (codes by :data:`explain.REGIMES`, rows by momentum) and
    where to write each regime's name, with the stability limit at each momentum."""
    codes = explain.regime_map(method, eigenvalues, alphas, betas)
    return {
        "names": list(explain.REGIMES),
        "codes": codes.tolist(),
        "labels": explain.regime_labels(codes, alphas, betas),
    }


def start_point(text: str, problem: Any) -> np.ndarray | None:
    """A start point ``"x,y"`` from the query, inside the problem's window; None when empty."""
    if text in (None, ""):
        return None
    (x0, x1), (y0, y1) = problem.bounds
    allowed = f"expected two numbers x,y with x in [{x0:g}, {x1:g}] and y in [{y0:g}, {y1:g}]"
    try:
        point = np.array([float(part) for part in text.split(",")], dtype=float)
    except ValueError:
        raise ValueError(f"start={text!r} is invalid: {allowed}") from None
    if point.shape != (2,) or not np.isfinite(point).all():
        raise ValueError(f"start={text!r} is invalid: {allowed}")
    if not (x0 <= point[0] <= x1 and y0 <= point[1] <= y1):
        raise ValueError(f"start={text!r} is outside the window: {allowed}")
    return point


#: The most runs one page shows (the page refuses a fifth), and so the most shades of a family.
RUN_SHADES = 4


def _color(family: str | None, rule: str) -> str:
    if family in FAMILY_COLORS:
        return FAMILY_COLORS[family]
    return OTHER_COLORS[sum(map(ord, rule)) % len(OTHER_COLORS)]


@functools.lru_cache(maxsize=512)
def run_view(
    problem_spec: str,
    rule_spec: str,
    schedule: str,
    average: str,
    steps: int,
    seed: int,
    tolerance: float,
    start: str = "",
) -> dict[str, Any]:
    """One optimizer's run on a problem from its start (or ``start``, ``"x,y"``): its path,
    loss above the minimum, steps until the loss stays below ``tolerance`` and, on a
    quadratic, the error along each eigen-direction with theory's rate beside the measured
    one and the reason, in words, why it converges or diverges."""
    if not (isinstance(steps, int) and 1 <= steps <= MAX_STEPS):
        raise ValueError(f"steps={steps!r} is invalid: expected an integer from 1 to {MAX_STEPS}")
    started = time.perf_counter()
    problem = build_problem(problem_spec)
    rule, hypers = parse_rule(rule_spec)
    schedule_spec = parse_schedule_text(schedule)
    averaging = parse_average(average)
    moved = start_point(start, problem)
    x0 = problem.start() if moved is None else moved
    stepper = RuleStepper(
        rule, hypers, x0, schedule_spec.build(hypers["lr"]) if schedule_spec else None
    )
    rng = np.random.default_rng(seed)
    path = follow(
        problem,
        stepper,
        x0,
        steps,
        sample=(lambda x: problem.stochastic_grad(x, rng)) if problem.stochastic else None,
    )
    f_star = problem.minimum_value
    excess = path.losses - (f_star or 0.0)
    family = family_of(rule.name, hypers)
    view: dict[str, Any] = {
        "rule": rule_spec,
        "family": family,
        "color": _color(family, rule.name),
        # Runs of one family on the page differ in lightness, as in the report's figures: the
        # page picks shade k of n from here (n runs of the family, at most RUN_SHADES).
        "shades": {
            str(count): lightness_steps(_color(family, rule.name), count)
            for count in range(2, RUN_SHADES + 1)
        },
        "steps": path.steps,
        "diverged_at": path.diverged_at,
        "path": _rounded(path.points),
        "loss": _rounded(excess),
        "tolerance": tolerance,
        "steps_to_tolerance": None
        if f_star is None or path.diverged_at is not None
        else settled_step(excess, tolerance),
        "escape": None
        if problem.escape_loss is None or path.diverged_at is not None
        else settled_step(path.losses, problem.escape_loss),
        "final": _number(excess[-1]),
    }
    if averaging is not None:
        averaged = averaged_points(path.points, averaging)
        view["averaged_path"] = _rounded(averaged)
        view["averaged_loss"] = _rounded(
            np.array([problem.loss(p) for p in averaged]) - (f_star or 0.0)
        )
    view["theory"] = _theory(problem, rule.name, hypers, schedule_spec is None, path.points)
    view["compute_ms"] = 1e3 * (time.perf_counter() - started)
    return view


def _theory(
    problem: Any, rule: str, hypers: dict[str, Any], constant: bool, points: np.ndarray
) -> dict[str, Any] | None:
    """On a quadratic: the error along each eigen-direction, and where theory covers the rule
    at a constant rate, each direction's predicted contraction and the run's measured one."""
    quadratic = getattr(problem, "quadratic", None)
    if quadratic is None:
        return None
    errors = np.abs(quadratic.errors(points))
    out: dict[str, Any] = {
        "errors": _rounded(errors.T),
        "method": None,
        "verdict": None,
        "predicted": None,
        "measured": None,
        "directions": None,
        "lines": None,
    }
    covered = rule_method(rule, hypers) if constant else None
    noisy = problem.stochastic and problem.batch_size < problem.n
    if covered is None or noisy:
        return out
    method, lr, momentum = covered
    rates = theory.direction_rates(method, quadratic.eigenvalues, lr, momentum)
    steps = np.arange(len(points))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        lines = errors[0][None, :] * rates[None, :] ** steps[:, None]
    distances = np.linalg.norm(points - quadratic.solution, axis=1)
    try:
        measured = theory.measured_rate(distances, floor=1e-150)
    except ValueError:
        measured = None
    out.update(
        verdict=explain.verdict(method, quadratic.eigenvalues, lr, momentum),
        method=method,
        lr=lr,
        momentum=momentum,
        predicted=_number(rates.max()),
        measured=measured,
        directions=_rounded(rates),
        lines=_rounded(lines.T),
    )
    return out


__all__ = ["MAX_STEPS", "problem_view", "run_view", "start_point"]
