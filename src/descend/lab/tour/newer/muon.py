"""Muon on an ill-conditioned matrix problem: steps to the tolerance against kappa, and the
band the Newton-Schulz quintic puts the direction's singular values in."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import descend
from descend.lab import plots
from descend.lab.report import Table
from descend.lab.tour.base import Progress, TourSettings, noop
from descend.lab.tour.newer.common import count_text, span_text, steps_to_stay
from descend.optim import ScheduledLR
from descend.rules.muon import NS_COEFFICIENTS, NS_STEPS, lr_ratio, newton_schulz

MUON_KAPPAS = (10.0, 100.0, 1000.0)
MUON_SHAPE = (16, 8)
MUON_LRS = (0.1, 0.3, 1.0)
MUON_TOLERANCE = 1e-3


@dataclass
class MatrixProblem:
    """``f(W) = 1/2 tr((W - W*)^T S (W - W*))``: a linear layer fit to a linear teacher when the
    inputs have covariance S (eigenvalues log-spaced in [1, kappa], in a random basis)."""

    covariance: np.ndarray
    eigenvalues: np.ndarray
    basis: np.ndarray
    target: np.ndarray

    @classmethod
    def make(cls, kappa: float, shape: tuple[int, int], seed: int) -> MatrixProblem:
        """A problem of condition number ``kappa`` for a ``shape`` weight matrix."""
        rng = np.random.default_rng(seed)
        eigenvalues = np.geomspace(1.0, kappa, shape[0])
        basis, _ = np.linalg.qr(rng.standard_normal((shape[0], shape[0])))
        return cls((basis * eigenvalues) @ basis.T, eigenvalues, basis, rng.standard_normal(shape))

    def loss(self, weights: np.ndarray) -> float:
        """f(W)."""
        error = weights - self.target
        return 0.5 * float(np.sum(error * (self.covariance @ error)))

    def gradient(self, weights: np.ndarray) -> np.ndarray:
        """``S (W - W*)``."""
        return self.covariance @ (weights - self.target)

    def gd_losses(self, lr: float, steps: int) -> np.ndarray:
        """Gradient descent from W = 0 in closed form: along eigendirection i the error
        shrinks by ``1 - lr lambda_i`` per step."""
        error = self.basis.T @ (-self.target)
        weights = 0.5 * self.eigenvalues * np.sum(error**2, axis=1)
        shrink = (1 - lr * self.eigenvalues) ** 2
        return np.array([float(np.sum(weights * shrink**t)) for t in range(steps + 1)])


@dataclass
class MuonRow:
    """One condition number: steps to the tolerance, and the spectra of the first step."""

    kappa: float
    gd_predicted: int | None
    gd_measured: int | None
    muon_measured: int | None
    muon_lr: float
    adam_measured: int | None
    adam_lr: float
    gradient_spread: float
    predicted_band: tuple[float, float]
    measured_band: tuple[float, float]


@dataclass
class MuonStudy:
    """Gradient descent, Muon and Adam on matrix problems of growing condition number."""

    rows: list[MuonRow]
    steps: int
    curves: dict[str, np.ndarray]
    spectra: dict[str, np.ndarray]


def _train_matrix(
    problem: MatrixProblem, make: Callable[[list], torch.optim.Optimizer], steps: int, decay: bool
) -> np.ndarray:
    weights = torch.zeros(problem.target.shape, dtype=torch.float64, requires_grad=True)
    optimizer = make([weights])
    base = float(optimizer.param_groups[0]["lr"])
    scheduler = ScheduledLR(optimizer, lambda t: base * max(0.0, 1 - t / steps)) if decay else None
    losses = [problem.loss(weights.detach().numpy())]
    for _ in range(steps):
        weights.grad = torch.from_numpy(problem.gradient(weights.detach().numpy()))
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(problem.loss(weights.detach().numpy()))
    return np.array(losses)


def quintic_band(singular_values: np.ndarray) -> tuple[float, float]:
    """Where the Newton-Schulz quintic sends the singular values of a matrix (normalized by its
    Frobenius norm, then ``s <- a s + b s^3 + c s^5`` five times): the band of Muon's
    direction, in exact arithmetic."""
    s = np.asarray(singular_values, dtype=float) / np.linalg.norm(singular_values)
    a, b, c = NS_COEFFICIENTS
    for _ in range(NS_STEPS):
        s = a * s + b * s**3 + c * s**5
    return float(s.min()), float(s.max())


def muon_study(settings: TourSettings, progress: Progress = noop) -> MuonStudy:
    """Steps to a relative tolerance for each kappa, and the first step's spectra."""
    steps = 150 if settings.quick else 300
    rows, curves, spectra = [], {}, {}
    for kappa in MUON_KAPPAS:
        problem = MatrixProblem.make(kappa, MUON_SHAPE, settings.seed)
        initial = problem.loss(np.zeros(MUON_SHAPE))
        tolerance = MUON_TOLERANCE * initial
        gd_lr = 2 / (problem.eigenvalues.max() + problem.eigenvalues.min())
        gd = _train_matrix(problem, lambda p, lr=gd_lr: descend.SGD(p, lr=lr), steps, False)
        predicted = problem.gd_losses(gd_lr, 100 * steps)
        tuned = {}
        for name, make in (
            ("muon", lambda p, lr: descend.Muon(p, lr=lr, weight_decay=0.0)),
            ("adam", lambda p, lr: descend.Adam(p, lr=lr)),
        ):
            candidates = {
                lr: _train_matrix(problem, lambda p, lr=lr, make=make: make(p, lr), steps, True)
                for lr in MUON_LRS
            }
            best = min(candidates, key=lambda lr: candidates[lr][-1])
            tuned[name] = (best, candidates[best])
        progress("newer: Muon on the matrix problem", 1 + 2 * len(MUON_LRS))
        gradient = problem.gradient(np.zeros(MUON_SHAPE))
        singular = np.linalg.svd(gradient, compute_uv=False)
        direction = newton_schulz(
            torch.from_numpy(gradient).float(), descend.rules.MUON.validate({})
        )
        measured = np.linalg.svd(direction.double().numpy(), compute_uv=False) / lr_ratio(
            None, MUON_SHAPE
        )
        rows.append(
            MuonRow(
                kappa,
                steps_to_stay(predicted, tolerance),
                steps_to_stay(gd, tolerance),
                steps_to_stay(tuned["muon"][1], tolerance),
                tuned["muon"][0],
                steps_to_stay(tuned["adam"][1], tolerance),
                tuned["adam"][0],
                float(singular.max() / singular.min()),
                quintic_band(singular),
                (float(measured.min()), float(measured.max())),
            )
        )
        if kappa == MUON_KAPPAS[-1]:
            curves = {
                "GD": gd / initial,
                "Muon": tuned["muon"][1] / initial,
                "Adam": tuned["adam"][1] / initial,
            }
            spectra = {"gradient": singular / singular.max(), "Muon": measured}
    return MuonStudy(rows, steps, curves, spectra)


def muon_outputs(
    study: MuonStudy, image: Callable[[str], Path]
) -> tuple[list[str], list[tuple[Path, str]], Table]:
    """The study's paragraphs, figures (drawn into ``image(name)``, with captions built from
    the measurements) and table."""
    h = study.steps
    first, last = study.rows[0], study.rows[-1]
    table = Table(
        f"Linear layer {MUON_SHAPE[0]} x {MUON_SHAPE[1]} under input covariance of condition "
        f"number kappa: steps until the loss stays below {MUON_TOLERANCE:g} of its start",
        [
            "kappa",
            "GD predicted",
            "GD measured",
            "Muon measured",
            "Muon lr",
            "Adam measured",
            "Adam lr",
            "gradient's singular-value ratio",
            "Muon direction, predicted band",
            "measured band",
        ],
        [
            [
                int(r.kappa),
                count_text(r.gd_predicted, 100 * h),
                count_text(r.gd_measured, h),
                count_text(r.muon_measured, h),
                r.muon_lr,
                count_text(r.adam_measured, h),
                r.adam_lr,
                r.gradient_spread,
                f"{r.predicted_band[0]:.2f} - {r.predicted_band[1]:.2f}",
                f"{r.measured_band[0]:.2f} - {r.measured_band[1]:.2f}",
            ]
            for r in study.rows
        ],
        f"GD runs at lr 2/(L+mu) and is predicted in closed form. Muon (momentum 0.95, "
        f"Nesterov) and Adam decay their learning rate linearly to zero over the {h} steps; "
        f"each takes the best of lr {', '.join(f'{lr:g}' for lr in MUON_LRS)}. The bands are "
        "the singular values of Muon's first direction (without the shape's lr ratio): "
        "predicted by the quintic in exact arithmetic, measured from the bfloat16 iteration.",
        summary_columns=[0, 1, 2, 3, 5, 7, 9],
    )
    paragraphs = [
        "Muon (2024) is made for the weight matrices of hidden layers: it orthogonalizes the "
        "momentum with a few Newton-Schulz iterations, so the step has every singular value "
        "near 1. Ill-conditioned inputs stretch a layer's gradient: here its singular values "
        f"spread by a factor of {first.gradient_spread:.3g} at kappa {first.kappa:g} and "
        f"{last.gradient_spread:.3g} at kappa {last.kappa:g}, while Muon's direction stays "
        f"between {last.measured_band[0]:.2f} and {last.measured_band[1]:.2f} (the quintic "
        f"predicts {last.predicted_band[0]:.2f} to {last.predicted_band[1]:.2f}).",
        "Gradient descent pays for the spread: it needs "
        f"{count_text(first.gd_measured, h)} steps at kappa {first.kappa:g} and "
        f"{count_text(last.gd_measured, h)} at kappa {last.kappa:g} (theory: "
        f"{count_text(first.gd_predicted, 100 * h)} and {count_text(last.gd_predicted, 100 * h)}). "
        f"Muon needs {span_text([count_text(r.muon_measured, h) for r in study.rows])}"
        f"{_flatness([r.muon_measured for r in study.rows])}. Adam, which rescales "
        "coordinates rather than directions, needs "
        f"{span_text([count_text(r.adam_measured, h) for r in study.rows])} on this problem.",
    ]
    steps = np.arange(h + 1)
    families = {"GD": "sgd", "Muon": "muon", "Adam": "adam"}
    kappas = np.array([r.kappa for r in study.rows])

    def counts(values: Sequence[int | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    rank = np.arange(1, len(study.spectra["gradient"]) + 1)
    path = plots.line_panels(
        [
            plots.Panel(
                f"kappa = {last.kappa:g}: loss / initial loss",
                "step",
                "relative loss",
                [
                    plots.Line(name, steps, curve, families[name])
                    for name, curve in study.curves.items()
                ],
                hline=MUON_TOLERANCE,
            ),
            plots.Panel(
                "steps to the tolerance against kappa",
                "kappa",
                "steps",
                [
                    plots.Line(
                        "GD, predicted",
                        kappas,
                        counts([r.gd_predicted for r in study.rows]),
                        "sgd",
                        theory=True,
                        markers=True,
                        horizon=100 * h,
                    ),
                    plots.Line(
                        "GD, measured",
                        kappas,
                        counts([r.gd_measured for r in study.rows]),
                        "sgd",
                        markers=True,
                        horizon=h,
                    ),
                    plots.Line(
                        "Muon",
                        kappas,
                        counts([r.muon_measured for r in study.rows]),
                        "muon",
                        markers=True,
                        horizon=h,
                    ),
                    plots.Line(
                        "Adam",
                        kappas,
                        counts([r.adam_measured for r in study.rows]),
                        "adam",
                        markers=True,
                        horizon=h,
                    ),
                ],
                xscale="log",
            ),
            plots.Panel(
                f"kappa = {last.kappa:g}: singular values of the first step",
                "index",
                "singular value (gradient: / largest)",
                [
                    plots.Line("gradient", rank, study.spectra["gradient"], "sgd", markers=True),
                    plots.Line(
                        "Muon's direction", rank, study.spectra["Muon"], "muon", markers=True
                    ),
                ],
            ),
        ],
        image("newer_muon.png"),
        columns=3,
        size=(4.6, 3.6),
    )
    figures = [
        (
            path,
            f"Left: the kappa = {last.kappa:g} run; the {plots.THRESHOLD.dash_name} "
            f"{plots.THRESHOLD.color_name} line is the tolerance. Middle: steps to the "
            f"tolerance against kappa, theory's count {plots.THEORY.dash_name}; gradient "
            "descent's count grows "
            f"from {count_text(first.gd_measured, h)} to "
            f"{count_text(last.gd_measured, h)}, Muon's is "
            f"{span_text([count_text(r.muon_measured, h) for r in study.rows])}. Right: the "
            "gradient's singular values fall "
            f"by a factor of {last.gradient_spread:.3g}; Muon's direction has them all "
            f"between {last.measured_band[0]:.2f} and {last.measured_band[1]:.2f}.",
        )
    ]
    return paragraphs, figures, table


def _flatness(counts: Sequence[int | None]) -> str:
    """A clause on how much a count varies across kappa, from the counts themselves."""
    if any(count is None for count in counts):
        return ""
    spread = max(counts) / max(min(counts), 1)
    return (
        f": a change of {100 * (spread - 1):.0f}% over a thousandfold range of kappa"
        if spread < 1.5
        else ""
    )
