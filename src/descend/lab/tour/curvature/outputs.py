"""The words, claims, figure and tables of the curvature section, every number in them taken
from the study they describe."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from descend.lab import plots
from descend.lab.report import Claim, Table
from descend.lab.tour.base import display_name, listing
from descend.lab.tour.curvature.study import (
    SHAPE,
    TOLERANCE,
    CurvatureStudy,
    Row,
    matrix_methods,
)
from descend.lab.tour.newer.common import count_text

#: What each problem is called in the text, the tables and the figure.
CASE_NAMES = {"kronecker": "Kronecker-structured", "rotated": "rotated twin"}
#: One step has landed on the minimum when the distance left is below this fraction.
LANDED = 1e-6
#: A preconditioner is exact when the condition number it leaves is this close (relative).
EXACT = 1e-6
#: Measured and predicted rates agree when they differ by less than this (relative).
RATE_AGREEMENT = 0.01


def _kappas(rows: Sequence[Row]) -> str:
    return listing([f"{row.kappa:g}" for row in rows])


def _counts(values: Sequence[int | None], horizon: int) -> str:
    return listing([str(count_text(value, horizon)) for value in values])


def curvature_paragraphs(study: CurvatureStudy) -> list[str]:
    """The section's text; the sentences about results are built from the study."""
    kron, rotated = study.case("kronecker"), study.case("rotated")
    h = study.horizon
    shampoo = display_name("shampoo")
    matrix = listing([display_name(name) for name in matrix_methods()])
    last_kron, last_rot = kron[-1], rotated[-1]
    text = [
        "The lecture ends with second-order methods: they use the curvature, and pay for it "
        "with a Hessian of n^2 numbers and an n^3 solve. Kronecker-factored methods "
        f"({matrix} here) keep one small matrix per dimension of a weight matrix instead. "
        f"Here the ravine is a weight matrix W of shape {SHAPE[0]} x {SHAPE[1]}, with loss "
        "f(W) = 1/2 tr((W - W*)^T A (W - W*) B) for symmetric positive definite A and B in "
        "random bases: its Hessian is the Kronecker product A (x) B, with condition number "
        f"kappa = kappa(A) kappa(B), here {_kappas(kron)}. Its rotated twin has the same "
        "eigenvalues and minimum in a random rotation of all "
        f"{SHAPE[0] * SHAPE[1]} entries of W together, so gradient descent and Newton's method "
        "see the same problem, while a preconditioner of one matrix per dimension does not.",
        "What is exact. Shampoo as its paper states it (summed statistics, no grafting onto "
        "Adam's step norm, the form every Shampoo run of this section takes) steps along "
        "L^(-1/4) G R^(-1/4): the Kronecker product "
        "L^(-1/4) (x) R^(-1/4) applied to the gradient G. Newton steps along A^-1 G B^-1, "
        "H^-1 applied to it. The two agree up to a scalar exactly when L is proportional to A^4 "
        "and R to B^4. Shampoo's statistics L and R are sums of G G^T and G^T G. Summed over the "
        "gradients of errors in every direction of an orthonormal basis (isotropic errors) "
        "they are tr(B^2) A^2 and tr(A^2) B^2, so the preconditioner is H^(-1/2) up to a "
        "scalar: it takes the square root of the condition number, not all of it. Summed over "
        "the gradients of the errors H u they are tr(B^4) A^4 and tr(A^4) B^4, the "
        "preconditioner is H^-1 up to the scalar tr(H^4)^(-1/4), and one step at learning "
        "rate tr(H^4)^(1/4) lands on the minimum, as Newton's does. (A 1/2 root in "
        "place of the 1/4 would make the isotropic statistics give Newton's direction.)",
        "Measured on descend.Shampoo itself, fed those gradients: with isotropic statistics "
        "the preconditioned Hessian's condition number on the Kronecker problem is "
        + listing([f"{row.exact.preconditioned_kappa:.6g}" for row in kron])
        + f" (sqrt(kappa): {listing([f'{row.exact.root_kappa:.6g}' for row in kron])}); on the "
        "rotated twin it is "
        + listing([f"{row.exact.preconditioned_kappa:.4g}" for row in rotated])
        + ". With the matched statistics one step leaves "
        + listing([f"{row.exact.one_step_distance:.2g}" for row in kron])
        + " of the starting distance to the minimum on the Kronecker problem, and "
        + listing([f"{row.exact.one_step_distance:.2g}" for row in rotated])
        + " on its twin, where the best Kronecker-factored preconditioner is no inverse "
        "Hessian.",
        _measured_paragraph(study),
        f"In practice Shampoo's statistics come from the gradients of its own run. Tuned, it "
        f"settles on the Kronecker problem in {_counts([r.of('shampoo').steps for r in kron], h)} "
        f"steps and on the rotated twin in "
        f"{_counts([r.of('shampoo').steps for r in rotated], h)} (kappa {_kappas(kron)}; each "
        f"run at most {h} steps). At kappa {last_kron.kappa:g} {shampoo} "
        + _compare_text(last_kron, last_rot, h),
    ]
    return text


def _compare_text(kron: Row, rotated: Row, h: int) -> str:
    adam = display_name("adam")
    return (
        f"needs {count_text(kron.of('shampoo').steps, h)} steps where {adam} needs "
        f"{count_text(kron.of('adam').steps, h)} and gradient descent "
        f"{count_text(kron.gd.measured, h)}; on the twin {adam} needs "
        f"{count_text(rotated.of('adam').steps, h)}."
    )


def _measured_paragraph(study: CurvatureStudy) -> str:
    kron = study.case("kronecker")
    h = study.horizon
    others = [name for name in study.methods if name != "shampoo"]
    return (
        "Gradient descent at its optimal step 2/(L+mu) contracts the error by "
        "(kappa-1)/(kappa+1) per step: "
        + listing([f"{r.gd.rate:.6f}" for r in kron])
        + ", measured "
        + listing([f"{r.gd.measured_rate:.6f}" for r in kron])
        + f"; it needs {_counts([r.gd.measured for r in kron], h)} steps to the tolerance "
        f"(each eigendirection's factor predicts {_counts([r.gd.predicted for r in kron], h)}). "
        f"Newton's method needs {_counts([r.newton for r in kron], h)}. "
        + " ".join(
            f"{display_name(name)}, tuned, needs {_counts([r.of(name).steps for r in kron], h)}."
            for name in others
        )
    )


def curvature_claims(study: CurvatureStudy) -> list[Claim]:
    """The claims the text makes, checked against the study."""
    kron, rotated = study.case("kronecker"), study.case("rotated")
    every = kron + rotated
    h = study.horizon
    worst_rate = max(every, key=lambda r: abs(r.gd.measured_rate - r.gd.rate) / r.gd.rate)
    rate_gap = abs(worst_rate.gd.measured_rate - worst_rate.gd.rate) / worst_rate.gd.rate

    def shampoo_wins(pair: tuple[Row, Row]) -> bool:
        mine, twin = (row.of("shampoo").steps for row in pair)
        return mine is not None and (twin is None or mine < twin)

    adam_first, adam_last = (
        [r.of("adam").steps for r in rows]
        for rows in ((kron[0], rotated[0]), (kron[-1], rotated[-1]))
    )
    return [
        Claim(
            "Newton's method lands on a quadratic's minimum in one step",
            all(r.newton == 1 for r in every),
            f"Newton's steps to the tolerance: {_counts([r.newton for r in every], h)} "
            "(Kronecker problem, then twin, kappa ascending).",
        ),
        Claim(
            "gradient descent at 2/(L+mu) needs the steps its eigendirections' factors "
            "predict, and contracts at theory's rate (kappa-1)/(kappa+1)",
            all(
                r.gd.measured is not None
                and r.gd.predicted is not None
                and abs(r.gd.measured - r.gd.predicted) <= 1
                for r in every
            )
            and rate_gap < RATE_AGREEMENT,
            f"Measured {_counts([r.gd.measured for r in every], h)} steps against predicted "
            f"{_counts([r.gd.predicted for r in every], h)}; the rates differ by at most "
            f"{100 * rate_gap:.3f}% ({CASE_NAMES[worst_rate.case]}, kappa "
            f"{worst_rate.kappa:g}).",
        ),
        Claim(
            "on the Kronecker-structured quadratic, Shampoo with statistics matched to the "
            "Hessian's factors takes Newton's step: one step lands on the minimum",
            all(r.exact.one_step_distance < LANDED for r in kron),
            "Distance left after one step, relative to the start: "
            + listing([f"{r.exact.one_step_distance:.2g}" for r in kron])
            + "; 1 - cos(Shampoo's step, Newton's): "
            + listing([f"{r.exact.newton_mismatch:.2g}" for r in kron])
            + ".",
        ),
        Claim(
            "with the statistics of isotropic errors, Shampoo's preconditioner leaves the "
            "Kronecker-structured Hessian a condition number of exactly sqrt(kappa)",
            all(
                abs(r.exact.preconditioned_kappa - r.exact.root_kappa) < EXACT * r.exact.root_kappa
                for r in kron
            ),
            "Preconditioned condition numbers "
            + listing([f"{r.exact.preconditioned_kappa:.8g}" for r in kron])
            + " against sqrt(kappa) "
            + listing([f"{r.exact.root_kappa:.8g}" for r in kron])
            + ".",
        ),
        Claim(
            "on the rotated twin, a Hessian that is no Kronecker product, neither holds",
            all(
                r.exact.one_step_distance > 1e3 * LANDED
                and r.exact.preconditioned_kappa > (1 + 1e3 * EXACT) * r.exact.root_kappa
                for r in rotated
            ),
            "One step leaves "
            + listing([f"{r.exact.one_step_distance:.2g}" for r in rotated])
            + " of the distance; the preconditioned condition numbers are "
            + listing([f"{r.exact.preconditioned_kappa:.4g}" for r in rotated])
            + " against sqrt(kappa) "
            + listing([f"{r.exact.root_kappa:.4g}" for r in rotated])
            + ".",
        ),
        Claim(
            "Shampoo with the statistics of its own run, tuned, settles sooner on the "
            "Kronecker-structured quadratic than on its rotated twin",
            all(map(shampoo_wins, zip(kron, rotated, strict=True))),
            f"Steps: {_counts([r.of('shampoo').steps for r in kron], h)} against "
            f"{_counts([r.of('shampoo').steps for r in rotated], h)} (kappa {_kappas(kron)}).",
        ),
        Claim(
            "Adam, which rescales coordinates and not directions, needs more steps as kappa "
            "grows on both problems",
            all(
                first is not None and (last is None or last > first)
                for first, last in zip(adam_first, adam_last, strict=True)
            ),
            f"At kappa {kron[0].kappa:g}: {_counts(adam_first, h)}; at kappa "
            f"{kron[-1].kappa:g}: {_counts(adam_last, h)} (Kronecker problem, twin).",
        ),
    ]


def curvature_tables(study: CurvatureStudy) -> list[Table]:
    """Steps to the tolerance of every method, and Shampoo's exactness, per problem and
    kappa."""
    h = study.horizon
    names = [display_name(name) for name in study.methods]
    steps = Table(
        f"Steps until the loss stays below {TOLERANCE:g} of its start on the {SHAPE[0]} x "
        f"{SHAPE[1]} matrix ravine",
        [
            "problem",
            "kappa",
            "GD predicted",
            "GD measured",
            "GD rate, theory",
            "GD rate, measured",
            *[f"{name} (lr)" for name in names],
            "Newton",
        ],
        [
            [
                CASE_NAMES[r.case],
                int(r.kappa),
                count_text(r.gd.predicted, h),
                count_text(r.gd.measured, h),
                f"{r.gd.rate:.6f}",
                f"{r.gd.measured_rate:.6f}",
                *[
                    f"{count_text(t.steps, h)}" + (f" ({t.lr:.3g})" if t.lr is not None else "")
                    for t in r.tuned
                ],
                count_text(r.newton, h),
            ]
            for r in study.rows
        ],
        "GD runs at theory's step 2/(L+mu); its count is predicted from each eigendirection's "
        "factor 1 - lr lambda and its rate, the distance's contraction per step, is "
        "(kappa-1)/(kappa+1). Each other method runs at its defaults without weight decay, at "
        f"the best of {len(study.grid)} learning rates log-spaced from {study.grid[0]:g} to "
        f"{study.grid[-1]:g}, for at most {h} steps ('> {h}': none settles). Newton's method "
        "uses the exact Hessian.",
    )
    exact = Table(
        "Shampoo with exact statistics, read from descend.Shampoo's state after it is fed "
        "probe gradients",
        [
            "problem",
            "kappa",
            "sqrt(kappa)",
            "condition number, isotropic statistics",
            "lr tr(H^4)^(1/4)",
            "1 - cos(step, Newton's), matched statistics",
            "distance left after one step",
        ],
        [
            [
                CASE_NAMES[r.case],
                int(r.kappa),
                f"{r.exact.root_kappa:.6g}",
                f"{r.exact.preconditioned_kappa:.6g}",
                f"{r.exact.newton_lr:.6g}",
                f"{r.exact.newton_mismatch:.2g}",
                f"{r.exact.one_step_distance:.2g}",
            ]
            for r in study.rows
        ],
        "Isotropic statistics: the gradients at W* + E for each of the m n unit errors E "
        "(they sum to H^2); the condition number is that of the Hessian under Shampoo's "
        "preconditioner L^(-1/4) (x) R^(-1/4). Matched statistics: the gradients at W* + H E "
        "(they sum to H^4); one step of descend.Shampoo at lr tr(H^4)^(1/4) from W = 0, its "
        "distance to W* relative to the start's.",
    )
    return [steps, exact]


def curvature_figure(study: CurvatureStudy, image: Callable[[str], Path]) -> tuple[Path, str]:
    """Steps to the tolerance against kappa (both problems) and the loss curves at the
    largest kappa, with a caption built from the study."""
    h = study.horizon
    panels = []
    for case in ("kronecker", "rotated"):
        rows = study.case(case)
        kappas = np.array([r.kappa for r in rows])

        def counts(values: Sequence[int | None]) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in values], dtype=float)

        lines = [
            plots.Line(
                "GD, predicted",
                kappas,
                counts([r.gd.predicted for r in rows]),
                "sgd",
                theory=True,
                markers=True,
            ),
            plots.Line("GD", kappas, counts([r.gd.measured for r in rows]), "sgd", markers=True),
            *[
                plots.Line(
                    display_name(name),
                    kappas,
                    counts([r.of(name).steps for r in rows]),
                    name,
                    markers=True,
                    horizon=h,
                )
                for name in study.methods
            ],
            plots.Line("Newton", kappas, counts([r.newton for r in rows]), "newton", markers=True),
        ]
        panels.append(
            plots.Panel(
                f"{CASE_NAMES[case]}: steps to the tolerance",
                "kappa",
                "steps",
                lines,
                xscale="log",
            )
        )
    for case in ("kronecker", "rotated"):
        row = study.case(case)[-1]
        gd = row.gd.curve[: h + 1]
        curves = [
            plots.Line("GD", np.arange(len(gd)), gd, "sgd"),
            *[plots.Line(t.label, np.arange(len(t.curve)), t.curve, t.name) for t in row.tuned],
        ]
        panels.append(
            plots.Panel(
                f"{CASE_NAMES[case]}, kappa = {row.kappa:g}: loss / initial loss",
                "step",
                "relative loss",
                curves,
                hline=TOLERANCE,
            )
        )
    path = plots.line_panels(panels, image("curvature.png"), columns=2, size=(5.2, 3.8))
    kron, rotated = study.case("kronecker"), study.case("rotated")
    caption = (
        "Top: steps until the loss stays below the tolerance against kappa, on the "
        "Kronecker-structured problem (left) and its rotated twin (right); theory's count for "
        f"gradient descent is {plots.THEORY.dash_name}, an open marker is a method that does "
        f"not settle within {h} steps. Gradient descent's count grows from "
        f"{count_text(kron[0].gd.measured, h)} to {count_text(kron[-1].gd.measured, h)}; "
        f"tuned Shampoo needs {_counts([r.of('shampoo').steps for r in kron], h)} on the "
        f"Kronecker problem and {_counts([r.of('shampoo').steps for r in rotated], h)} on the "
        f"twin; Newton's method {_counts([r.newton for r in kron + rotated], h)}. Bottom: "
        f"the runs at kappa {kron[-1].kappa:g}, each tuned method at its best learning rate "
        "(at the rate that ends lowest where none settles; Newton's method, which lands in "
        f"one step, is not drawn); the {plots.THRESHOLD.dash_name} line is the tolerance."
    )
    return path, caption
