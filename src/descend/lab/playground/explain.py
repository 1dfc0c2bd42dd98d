"""The words beside the playground's plots, built from theory's numbers for the setting shown.

On a quadratic, every method theory covers (gradient descent, heavy ball, Nesterov) moves the
error along each eigen-direction by a 2x2 iteration (:func:`descend.lab.theory.iteration_matrices`);
its largest root says everything a student asks of a setting: its size is how much that
direction shrinks (or grows) per step, its sign or imaginary part whether it flips or spirals.
This module turns those roots into a regime per direction, a map of regimes over (step size,
momentum), the step size where the fast direction starts to grow, and a sentence that says why
this setting converges or diverges. The numbers in each sentence are the ones computed here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from descend.lab import theory

#: Regimes of a direction, by code in the regime map.
REGIMES = ("monotone", "oscillates", "diverges")
#: Imaginary parts below this (relative to the root's size) count as a real root.
_REAL = 1e-9


def _fmt(value: float) -> str:
    """A number as a sentence shows it: four significant digits."""
    return f"{value:.4g}"


def dominant_roots(
    method: str, eigenvalues: np.ndarray, lr: np.ndarray | float, momentum: np.ndarray | float
) -> np.ndarray:
    """Each direction's largest root of its iteration, shape ``broadcast(lr, momentum) +
    (len(eigenvalues),)``, complex."""
    roots = np.linalg.eigvals(theory.iteration_matrices(method, eigenvalues, lr, momentum))
    index = np.abs(roots).argmax(axis=-1)
    return np.take_along_axis(roots, index[..., None], axis=-1)[..., 0]


def regime_codes(roots: np.ndarray) -> np.ndarray:
    """0 (monotone), 1 (oscillates: a negative or complex root) or 2 (diverges: a root of
    size 1 or more) for each root."""
    size = np.abs(roots)
    turning = (np.abs(roots.imag) > _REAL * np.maximum(size, 1e-300)) | (roots.real < 0)
    return np.where(size >= 1, 2, np.where(turning, 1, 0))


def regime_map(method: str, eigenvalues: np.ndarray, alphas: np.ndarray, betas: np.ndarray):
    """The regime code at every (momentum, step size) of a grid, rows by momentum: the regime
    of the direction with the largest root (the one that sets the rate)."""
    roots = dominant_roots(method, eigenvalues, alphas[None, :], betas[:, None])
    slowest = np.abs(roots).argmax(axis=-1)
    return regime_codes(np.take_along_axis(roots, slowest[..., None], axis=-1)[..., 0])


def regime_labels(codes: np.ndarray, alphas: np.ndarray, betas: np.ndarray) -> list[dict]:
    """Where to write each regime's name on the map: for every regime present, the grid point
    of that regime nearest the middle of its cells (so the label sits inside its region)."""
    labels = []
    for code, name in enumerate(REGIMES):
        rows, cols = np.nonzero(codes == code)
        if len(rows) < 12:  # a sliver: no room for a word
            continue
        middle_row, middle_col = np.median(rows), np.median(cols)
        nearest = np.argmin((rows - middle_row) ** 2 + (cols - middle_col) ** 2)
        labels.append(
            {
                "regime": name,
                "lr": float(alphas[cols[nearest]]),
                "momentum": float(betas[rows[nearest]]),
                "row": int(rows[nearest]),
                "column": int(cols[nearest]),
                "cells": int(len(rows)),
            }
        )
    return labels


def stability_limit(method: str, largest: float, momentum: float) -> float:
    """The step size above which the direction of curvature ``largest`` grows, at this
    momentum: where its largest root reaches size 1 (found by bisection on theory's own
    iteration, so it holds for every method theory covers; 2/L for gradient descent)."""
    low, high = 0.0, 1.0 / largest
    while np.abs(dominant_roots(method, np.array([largest]), high, momentum)).max() < 1:
        high *= 2
        if high > 1e6 / largest:
            return float("inf")
    for _ in range(60):
        middle = 0.5 * (low + high)
        if np.abs(dominant_roots(method, np.array([largest]), middle, momentum)).max() < 1:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def _limit_words(method: str, momentum: float, L: float) -> str:
    """How the stability limit reads: 2/L without momentum, else with the momentum in it."""
    if method == "gradient descent" or momentum == 0:
        return f"2/L = 2/{_fmt(L)}"
    if method == "heavy ball":
        return f"2(1 + momentum)/L = 2(1 + {_fmt(momentum)})/{_fmt(L)}"
    return f"the limit at momentum {_fmt(momentum)} (L = {_fmt(L)})"


def verdict(method: str, eigenvalues: np.ndarray, lr: float, momentum: float) -> dict[str, Any]:
    """Why this setting converges or diverges: each direction's root, regime and factor per
    step, the stability limit on the step size, and a sentence built from them."""
    eigenvalues = np.asarray(eigenvalues, dtype=float)
    roots = dominant_roots(method, eigenvalues, lr, momentum)
    codes = regime_codes(roots)
    factors = np.abs(roots)
    L = float(eigenvalues.max())
    limit = stability_limit(method, L, momentum)
    fast, slow = int(eigenvalues.argmax()), int(eigenvalues.argmin())
    slowest = int(factors.argmax())
    limit_text = f"{_limit_words(method, momentum, L)} = {_fmt(limit)}"
    if codes.max() == 2:
        worst = slowest
        sentence = (
            f"lr {_fmt(lr)} is above {limit_text}, so the fast mode "
            f"(lambda = {_fmt(eigenvalues[worst])}) grows by {_fmt(factors[worst])} per step: "
            "the run diverges."
            if lr > limit
            else f"At momentum {_fmt(momentum)} the mode of lambda = "
            f"{_fmt(eigenvalues[worst])} grows by {_fmt(factors[worst])} per step: the run "
            "diverges."
        )
    else:
        parts = []
        for d in (fast, slow) if fast != slow else (fast,):
            how = {
                0: "shrinks steadily",
                1: "spirals in" if abs(roots[d].imag) > 0 else "flips sign each step",
            }[int(codes[d])]
            parts.append(
                f"the mode of lambda = {_fmt(eigenvalues[d])} {how}, by a factor "
                f"{_fmt(factors[d])} per step"
            )
        sentence = (
            f"lr {_fmt(lr)} is below {limit_text}, so every mode shrinks: "
            + "; ".join(parts)
            + f". The slowest (factor {_fmt(factors[slowest])}) sets the rate."
        )
    return {
        "sentence": sentence,
        "limit": limit,
        "regimes": [REGIMES[c] for c in codes],
        "factors": factors.tolist(),
        "regime": REGIMES[int(codes[slowest]) if codes.max() < 2 else 2],
    }


def _round(value: float, digits: int, up: bool = False) -> float:
    """``value`` to ``digits`` significant digits, to nearest or (``up``) towards +inf."""
    if value == 0 or not np.isfinite(value):
        return float(value)
    scale = 10.0 ** (digits - 1 - np.floor(np.log10(abs(value))))
    return float((np.ceil(value * scale) if up else np.round(value * scale)) / scale)


def optimum_digits(
    method: str, eigenvalues: np.ndarray, lr: float, momentum: float, rate: float
) -> dict[str, float]:
    """The optimum's lr and momentum with the fewest significant digits (from 4) whose rate
    still reads as the optimum's to four decimals.

    The rate has a kink at the optimum (both extreme modes sit on the edge of spiralling), so
    rounding to the nearest value can push one mode out of the spiral and move the rate;
    rounding the momentum up widens the spiral instead, and is tried first.
    """
    for digits in range(4, 18):
        for up in (True, False):
            rounded_lr = _round(lr, digits)
            rounded_momentum = _round(momentum, digits, up=up)
            got = theory.rate(method, eigenvalues, rounded_lr, rounded_momentum)
            if f"{got:.4f}" == f"{rate:.4f}":  # the table shows rates to four decimals
                return {"lr": rounded_lr, "momentum": rounded_momentum, "digits": digits}
    return {"lr": lr, "momentum": momentum, "digits": 17}


__all__ = [
    "REGIMES",
    "dominant_roots",
    "optimum_digits",
    "regime_codes",
    "regime_labels",
    "regime_map",
    "stability_limit",
    "verdict",
]
