"""The strong-Wolfe line search, written once for NumPy vectors and torch tensors.

Given a descent direction ``d`` at ``x`` (``g^T d < 0``), the search looks for a step ``t > 0``
along ``phi(t) = f(x + t d)`` that satisfies the strong Wolfe conditions::

    f(x + t d) <= f(x) + c1 t g^T d                  (sufficient decrease, Armijo)
    |g(x + t d)^T d| <= c2 |g^T d|                   (curvature)

with ``0 < c1 < c2 < 1``. It brackets an interval holding such a step (extrapolating with
safeguarded cubic interpolation, at most 10 times the last step), then zooms into the bracket
with cubic interpolation, kept a tenth of the bracket away from its ends when progress stalls.
The algorithm and every comparison follow ``torch.optim.LBFGS``'s ``_strong_wolfe`` (ported from
minFunc), so :class:`descend.LBFGS` reproduces torch's iterates bit for bit.

The search only touches scalars and hands vectors back untouched, so the same code runs on NumPy
arrays (``phi`` returns Python or NumPy floats) and on torch tensors (``phi`` returns 0-d tensors,
and every scalar expression promotes exactly as torch's own code does).

Two safeguards that torch lacks, which change nothing while every value is finite:

- a trial step whose loss or directional derivative is inf or NaN counts as a failure of
  sufficient decrease: it becomes the far end of the bracket, and the next trial bisects the
  bracket instead of interpolating through a non-finite value. The search therefore never
  returns a non-finite point; at worst it returns ``t = 0``, the starting point.
- the result says whether the Wolfe conditions hold at the returned step (``wolfe``). When they
  do not (the evaluation budget ran out, or the bracket shrank below ``tolerance_change``), the
  returned step is the lowest point found, whose loss is never above ``f(x)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class LineSearchResult:
    """The outcome of :func:`strong_wolfe`.

    ``t`` the step, ``f``/``g``/``gtd`` the loss, gradient and directional derivative at
    ``x + t d`` (``f``, ``g`` of the start when ``t == 0``), ``evals`` the number of calls to
    ``phi``, ``wolfe`` whether both strong Wolfe conditions hold at ``t``.
    """

    t: Any
    f: Any
    g: Any
    gtd: Any
    evals: int
    wolfe: bool


def is_finite(value: Any) -> bool:
    """Whether a scalar (Python, NumPy or 0-d torch) is neither inf nor NaN."""
    return math.isfinite(float(value))


def _sqrt(value: Any) -> Any:
    # Tensors keep their own sqrt so that float32 rounds as in torch; NumPy and Python scalars
    # have no method and take math.sqrt.
    method = getattr(value, "sqrt", None)
    return method() if method is not None else math.sqrt(value)


def cubic_interpolate(
    x1: Any, f1: Any, g1: Any, x2: Any, f2: Any, g2: Any, bounds: tuple[Any, Any] | None = None
) -> Any:
    """Minimizer of the cubic through ``(x1, f1, g1)`` and ``(x2, f2, g2)``, clipped to bounds.

    ::

        d1 = g1 + g2 - 3 (f1 - f2) / (x1 - x2)
        d2 = sqrt(d1^2 - g1 g2)
        t  = x2 - (x2 - x1) (g2 + d2 - d1) / (g2 - g1 + 2 d2)        (for x1 <= x2)

    ``bounds`` default to the interval between the points; when the cubic has no minimizer
    (``d1^2 < g1 g2``, or a flat cubic) the midpoint of the bounds is returned.
    """
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = _sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * _divide(g2 + d2 - d1, g2 - g1 + 2 * d2)
        else:
            min_pos = x1 - (x1 - x2) * _divide(g1 + d2 - d1, g1 - g2 + 2 * d2)
        # A flat cubic (0 / 0) has no minimizer: take the midpoint, where torch returns NaN.
        # An infinite one (x / 0) is clipped to a bound, as in torch.
        if not math.isnan(float(min_pos)):
            return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _divide(numerator: Any, denominator: Any) -> Any:
    # IEEE division for every kind of scalar: tensors and NumPy scalars already give inf or NaN
    # for a zero denominator; Python floats would raise, so they divide as NumPy float64.
    if isinstance(denominator, int | float) and denominator == 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.float64(numerator) / np.float64(denominator))
    with np.errstate(divide="ignore", invalid="ignore"):
        return numerator / denominator


def _low_high(bracket_f: list) -> tuple[int, int]:
    # The low end has the smaller loss; a non-finite loss is never the low end.
    if bracket_f[0] <= bracket_f[-1] or not is_finite(bracket_f[-1]):
        return 0, 1
    return 1, 0


def strong_wolfe(
    phi: Callable[[Any], tuple[Any, Any, Any]],
    t: Any,
    f: Any,
    g: Any,
    gtd: Any,
    d_norm: Any,
    *,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: float = 1e-9,
    max_ls: int = 25,
) -> LineSearchResult:
    """Find a step ``t`` along ``d`` that satisfies the strong Wolfe conditions.

    Args:
        phi: ``phi(t) -> (f(x + t d), g(x + t d), g(x + t d)^T d)``; it must return a gradient
            the search may keep (not a buffer it overwrites later).
        t: the first trial step (> 0).
        f, g, gtd: loss, gradient and directional derivative ``g^T d`` at ``t = 0``; ``f`` must
            be finite and ``gtd`` negative.
        d_norm: ``max |d_i|``; the zoom stops once the bracket moves ``x`` by less than
            ``tolerance_change`` in every coordinate.
        c1, c2: the constants of the conditions, ``0 < c1 < c2 < 1``.
        tolerance_change: see ``d_norm``.
        max_ls: the most calls to ``phi`` after the first.

    Returns:
        A :class:`LineSearchResult`; ``wolfe`` is False when the conditions could not be met, and
        the step returned is then the lowest point found (``t = 0`` if none was lower).
    """
    # Names, branches and the order of every floating-point operation follow torch's
    # _strong_wolfe; the is_finite tests are the only additions.
    f_new, g_new, gtd_new = phi(t)
    ls_func_evals = 1

    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        finite = is_finite(f_new) and is_finite(gtd_new)
        if not finite or f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket = [t_prev, t]
            bracket_f = [f_prev, f_new]
            bracket_g = [g_prev, g_new]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket = [t]
            bracket_f = [f_new]
            bracket_g = [g_new]
            bracket_gtd = [gtd_new]
            done = True
            break
        if gtd_new >= 0:
            bracket = [t_prev, t]
            bracket_f = [f_prev, f_new]
            bracket_g = [g_prev, g_new]
            bracket_gtd = [gtd_prev, gtd_new]
            break

        # Extrapolate: the minimizer of the cubic, at least 1% past t and at most 10 t.
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = cubic_interpolate(
            t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step)
        )
        t_prev = tmp
        f_prev = f_new
        g_prev = g_new
        gtd_prev = gtd_new
        f_new, g_new, gtd_new = phi(t)
        ls_func_evals += 1
        ls_iter += 1

    if ls_iter == max_ls:
        # Budget spent while extrapolating: keep the better of the start and the last trial.
        bracket = [0, t]
        bracket_f = [f, f_new]
        bracket_g = [g, g_new]
        bracket_gtd = [gtd, gtd_new]

    # Zoom: shrink the bracket around a point that satisfies the conditions.
    insuf_progress = False
    low_pos, high_pos = _low_high(bracket_f)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break

        if all(is_finite(v) for v in (*bracket_f, *bracket_gtd)):
            t = cubic_interpolate(
                bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1]
            )
        else:
            # No cubic through an inf or NaN: bisect towards the finite end.
            t = (bracket[0] + bracket[1]) / 2.0

        # A trial too close to an end of the bracket twice in a row, or on an end, moves to a
        # tenth of the bracket from that end, so the bracket keeps shrinking.
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False

        f_new, g_new, gtd_new = phi(t)
        ls_func_evals += 1
        ls_iter += 1

        finite = is_finite(f_new) and is_finite(gtd_new)
        if not finite or f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            # Not low enough: the trial becomes the high end.
            bracket[high_pos] = t
            bracket_f[high_pos] = f_new
            bracket_g[high_pos] = g_new
            bracket_gtd[high_pos] = gtd_new
            low_pos, high_pos = _low_high(bracket_f)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                # The slope points at the old high end: the old low end becomes the high one.
                bracket[high_pos] = bracket[low_pos]
                bracket_f[high_pos] = bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos] = t
            bracket_f[low_pos] = f_new
            bracket_g[low_pos] = g_new
            bracket_gtd[low_pos] = gtd_new

    return LineSearchResult(
        t=bracket[low_pos],
        f=bracket_f[low_pos],
        g=bracket_g[low_pos],
        gtd=bracket_gtd[low_pos],
        evals=ls_func_evals,
        wolfe=done,
    )
