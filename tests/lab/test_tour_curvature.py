"""The curvature section: its problems, its theory against the real optimizers, and the rendered
section with text made from its numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import descend
from descend.lab.report import Report
from descend.lab.sections import SECTION_TABLE
from descend.lab.tour import SECTIONS, curvature
from descend.lab.tour.base import TourSettings, display_name
from descend.lab.tour.curvature import study
from descend.lab.tour.curvature.problem import MatrixQuadratic
from descend.rules import RULES


def kronecker_residual(hessian: np.ndarray, shape: tuple[int, int]) -> float:
    """How far ``hessian`` is from any Kronecker product ``A (x) B`` (Van Loan and Pitsianis:
    rearranged so that ``A (x) B`` becomes the rank-1 ``vec(A) vec(B)^T``, the share of its
    Frobenius norm beyond the first singular value)."""
    m, n = shape
    blocks = hessian.reshape(m, n, m, n).transpose(0, 2, 1, 3).reshape(m * m, n * n)
    singular = np.linalg.svd(blocks, compute_uv=False)
    return float(np.sqrt(np.sum(singular[1:] ** 2)) / np.linalg.norm(singular))


@pytest.fixture(scope="module", params=study.CASES)
def problem(request) -> MatrixQuadratic:
    return study.make_problem(request.param, 1e3, seed=0)


def test_the_kronecker_problem_is_the_trace_loss_with_hessian_a_kron_b():
    problem = MatrixQuadratic.kronecker(1e3, (5, 3), seed=4)
    a, b, target = problem.left, problem.right, problem.target
    weights = np.random.default_rng(1).standard_normal((5, 3))
    error = weights - target
    assert problem.loss(weights) == pytest.approx(0.5 * np.trace(error.T @ a @ error @ b))
    np.testing.assert_allclose(problem.gradient(weights), a @ error @ b, atol=1e-10)
    np.testing.assert_allclose(problem.hessian, np.kron(a, b), atol=1e-10)
    assert problem.kappa == pytest.approx(1e3)
    assert np.linalg.cond(a) * np.linalg.cond(b) == pytest.approx(1e3)
    assert kronecker_residual(problem.hessian, (5, 3)) < 1e-12


def test_the_rotated_twin_has_the_spectrum_and_minimum_but_no_kronecker_structure():
    kron = MatrixQuadratic.kronecker(1e3, (5, 3), seed=4)
    twin = MatrixQuadratic.rotated(1e3, (5, 3), seed=4)
    np.testing.assert_allclose(
        np.sort(np.linalg.eigvalsh(twin.hessian)), np.sort(kron.quadratic.eigenvalues)
    )
    np.testing.assert_allclose(twin.target, kron.target)
    assert not twin.kronecker_structured and kron.kronecker_structured
    assert kronecker_residual(twin.hessian, (5, 3)) > 0.1


def test_bad_problem_settings_are_refused_with_the_value():
    with pytest.raises(ValueError, match="kappa=0.5"):
        MatrixQuadratic.kronecker(0.5, (3, 2))
    with pytest.raises(ValueError, match="case='diagonal'"):
        study.make_problem("diagonal", 10.0, 0)


def test_newton_lands_in_one_step(problem):
    steps, curve = study.newton_steps(problem)
    assert steps == 1 and curve[1] < 1e-20


def test_gradient_descent_takes_the_predicted_steps_at_theorys_rate():
    for case in study.CASES:
        problem = study.make_problem(case, 100.0, seed=0)
        run = study.gradient_descent(problem)
        assert run.rate == pytest.approx(99 / 101)
        assert run.lr == pytest.approx(2 / (problem.quadratic.smoothness + 1.0))
        assert run.measured == run.predicted and run.predicted > 100
        # The distance's contraction over the run's second half is theory's within 0.5%.
        assert run.measured_rate == pytest.approx(run.rate, rel=5e-3)


def test_shampoos_statistics_are_the_partial_traces_of_the_probes():
    # The theory's premise, read from descend.Shampoo's own state: over the gradients H u of
    # an orthonormal basis L = tr(B^2) A^2, and over H^2 u, L = tr(B^4) A^4 (R alike).
    problem = MatrixQuadratic.kronecker(1e2, (4, 3), seed=2)
    a, b = problem.left, problem.right
    for matched, power in ((False, 2), (True, 4)):
        optimizer, weights = study.probed_shampoo(problem, matched)
        state = optimizer.state[weights]
        left = np.linalg.matrix_power(a, power) * np.trace(np.linalg.matrix_power(b, power))
        right = np.linalg.matrix_power(b, power) * np.trace(np.linalg.matrix_power(a, power))
        np.testing.assert_allclose(state["pre_cond_0"].numpy(), left, rtol=1e-10)
        np.testing.assert_allclose(state["pre_cond_1"].numpy(), right, rtol=1e-10)
        assert torch.count_nonzero(weights) == 0  # probing moved nothing (lr 0)


def test_shampoo_with_matched_statistics_is_newton_only_on_the_kronecker_problem(problem):
    exact = study.exactness(problem)
    if problem.kronecker_structured:
        assert exact.one_step_distance < 1e-9 and abs(exact.newton_mismatch) < 1e-12
        assert exact.preconditioned_kappa == pytest.approx(np.sqrt(1e3), rel=1e-9)
    else:
        assert exact.one_step_distance > 0.1 and exact.newton_mismatch > 0.1
        assert exact.preconditioned_kappa > 2 * np.sqrt(1e3)


def test_the_one_step_is_really_newtons_and_not_a_lucky_scalar():
    # Halving theory's learning rate must leave half the distance: the step is along
    # Newton's direction with Newton's length at tr(H^4)^(1/4), not merely short of it.
    problem = MatrixQuadratic.kronecker(1e2, (4, 3), seed=1)
    optimizer, weights = study.probed_shampoo(problem, matched=True)
    weights.grad = torch.from_numpy(problem.gradient(problem.start()))
    optimizer.param_groups[0]["lr"] = 0.5 * float(np.sum(problem.quadratic.eigenvalues**4) ** 0.25)
    optimizer.step()
    left = np.linalg.norm(weights.detach().numpy() - problem.target)
    assert left / np.linalg.norm(problem.target) == pytest.approx(0.5, rel=1e-9)


def test_the_matrix_methods_are_read_from_the_registry():
    methods = study.matrix_methods()
    assert {"shampoo", "soap"} <= set(methods)
    assert "muon" not in methods and "adam" not in methods  # no matrix state of their own
    assert all(RULES[name].stage.matrices is not None for name in methods)
    assert study.tuned_methods() == ["adam", *methods]
    assert study.arguments_of("soap") == {"weight_decay": 0.0}
    # Shampoo as its paper states it: the section's exactness claims hold for that step (a
    # grafted step takes Adam's norm instead).
    assert study.arguments_of("shampoo") == {"weight_decay": 0.0, **study.PAPER_SHAMPOO}
    assert study.PAPER_SHAMPOO["grafting"] is None and study.PAPER_SHAMPOO["betas"] == (0, 1)


def test_tuning_keeps_the_soonest_settling_learning_rate():
    problem = study.make_problem("kronecker", 100.0, seed=0)
    best = study.tune(problem, "shampoo", np.array([0.01, 10.0]), 60)
    assert best.lr == 10.0 and best.steps is not None and best.steps < 60
    # The same run made directly settles at the same step.
    curve = study.train(
        problem,
        lambda p: descend.Shampoo(p, lr=10.0, backend=study.BACKEND, **study.PAPER_SHAMPOO),
        60,
    )
    assert study.steps_to_stay(curve, study.TOLERANCE) == best.steps
    never = study.tune(problem, "shampoo", np.array([1e-4]), 20)
    assert never.lr is None and never.steps is None and len(never.curve) == 21


def test_a_diverging_run_is_reported_as_none():
    problem = study.make_problem("rotated", 100.0, seed=0)
    assert study.train(problem, lambda p: descend.SGD(p, lr=1.0), 50) is None


def test_the_section_is_registered_after_the_second_order_section():
    slugs = [slug for slug, _, _ in SECTION_TABLE]
    assert slugs.index("curvature") == slugs.index("orders") + 1
    assert any(entry.module is curvature for entry in SECTIONS)


@pytest.mark.slow
def test_the_rendered_section_holds_its_claims_and_states_its_numbers(tmp_path):
    counted: list[int] = []
    report = Report(tmp_path / "report", "curvature")
    settings = TourSettings(quick=True)
    section = curvature.build(report, settings, lambda description, runs: counted.append(runs))
    report.add(section)
    assert sum(counted) == curvature.runs(settings)
    assert all(claim.holds for claim in section.claims), [
        claim.evidence for claim in section.claims if not claim.holds
    ]
    text = " ".join(section.paragraphs)
    rows = section.data["rows"]
    kron = [row for row in rows if row["problem"] == "kronecker"]
    shampoo = [row["tuned"]["shampoo"]["steps"] for row in kron]
    assert f"{shampoo[0]}, {shampoo[1]} and {shampoo[2]} steps" in text
    assert f"{kron[-1]['gd_measured']}" in section.figures[0].caption
    steps_table = section.tables[0]
    for name in study.tuned_methods():
        assert f"{display_name(name)} (lr)" in steps_table.columns
    assert (report.images / section.figures[0].file).stat().st_size > 10_000
    assert "curvature" in (tmp_path / "report" / "index.html").read_text()
