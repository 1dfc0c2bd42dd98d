"""AlgoPerf's scoring on a table of times small enough to score by hand."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from descend.bench.scoring import (
    NUM_POINTS,
    TAU_MAX,
    integrated_score,
    performance_profiles,
    performance_ratios,
    score_times,
    tau_grid,
)

INF = math.inf

#: Three submissions on three workloads. By hand: ratios A (1, 3, inf), B (2, 1, 5 -> inf, over
#: 4x the fastest), C (inf, 4, 1).
TIMES = {
    "w1": {"A": 10.0, "B": 20.0, "C": INF},
    "w2": {"A": 30.0, "B": 10.0, "C": 40.0},
    "w3": {"A": INF, "B": 50.0, "C": 10.0},
}


def test_ratios_are_times_over_the_fastest_and_inf_past_four():
    assert performance_ratios(TIMES) == {
        "w1": {"A": 1.0, "B": 2.0, "C": INF},
        "w2": {"A": 3.0, "B": 1.0, "C": 4.0},
        "w3": {"A": INF, "B": INF, "C": 1.0},
    }


def test_profiles_count_the_workloads_within_tau():
    taus = [1.0, 1.5, 2.0, 2.5, 3.0, 3.999, 4.0]
    profiles = performance_profiles(performance_ratios(TIMES), taus)
    third = 1 / 3
    assert profiles == {
        "A": [third, third, third, third, 2 * third, 2 * third, 2 * third],
        "B": [third, third, 2 * third, 2 * third, 2 * third, 2 * third, 2 * third],
        "C": [third, third, third, third, third, third, 2 * third],
    }


def test_the_score_by_hand_on_algoperfs_grid():
    # On 100 points from 1 to 4 the step is h = 1/33 and 2, 3, 4 are grid points. The exact
    # area under a profile is sum(jump * (4 - ratio)); the trapezoidal rule adds half a step
    # at every jump past tau = 1: jump * h / 2 = (1/3) * (1/66) = 1/198. Divided by 4 - 1 = 3:
    # A = (3/3 + 1/3 + 1/198) / 3, B = (3/3 + 2/3 + 1/198) / 3, C = (3/3 + 0 + 1/198) / 3.
    scores = score_times(TIMES)
    expected = {
        "A": Fraction(4, 9) + Fraction(1, 594),
        "B": Fraction(5, 9) + Fraction(1, 594),
        "C": Fraction(1, 3) + Fraction(1, 594),
    }
    assert len(scores.taus) == NUM_POINTS == 100
    assert scores.taus[0] == 1.0 and scores.taus[33] == 2.0 and scores.taus[66] == 3.0
    assert scores.taus[-1] == TAU_MAX == 4.0
    for name, value in expected.items():
        assert scores.scores[name] == pytest.approx(float(value), rel=1e-12), name
    assert scores.ranking() == ["B", "A", "C"]


def test_a_fine_grid_tends_to_the_exact_area_under_the_step_profile():
    scores = score_times(TIMES, num_points=30_001)  # h = 1e-4
    for name, exact in {"A": 4 / 9, "B": 5 / 9, "C": 1 / 3}.items():
        assert scores.scores[name] == pytest.approx(exact + (1 / 3) * 1e-4 / 2 / 3, rel=1e-9)


def test_fastest_everywhere_scores_one_and_never_within_four_scores_zero():
    scores = score_times({"w1": {"fast": 1.0, "slow": 5.0}, "w2": {"fast": 2.0, "slow": INF}})
    assert scores.scores == {"fast": 1.0, "slow": 0.0}


def test_a_workload_nobody_solved_stays_in_the_denominator():
    four = {**TIMES, "w4": {"A": INF, "B": INF, "C": INF}}
    three, with_four = score_times(TIMES), score_times(four)
    for name in "ABC":
        assert with_four.scores[name] == pytest.approx(three.scores[name] * 3 / 4, rel=1e-12)
    assert with_four.ratios["w4"] == {"A": INF, "B": INF, "C": INF}


def test_a_zero_time_is_the_fastest_and_leaves_everyone_else_out():
    assert performance_ratios({"w": {"A": 0.0, "B": 0.0, "C": 1.0}}) == {
        "w": {"A": 1.0, "B": 1.0, "C": INF}
    }


def test_agrees_with_numpy_linspace_and_trapezoid_on_random_tables():
    # The same definition written with numpy's own grid and integrator, as AlgoPerf's code
    # writes it (np.linspace, r <= tau summed over workloads, np.trapz / (max - min)).
    rng = np.random.default_rng(0)
    for _ in range(20):
        table = rng.lognormal(0, 0.7, size=(6, 4))
        table[rng.random(table.shape) < 0.2] = np.inf
        times = {f"w{w}": {f"s{s}": float(table[w, s]) for s in range(4)} for w in range(6)}
        best = table.min(axis=1, keepdims=True)
        with np.errstate(invalid="ignore"):
            ratios = np.where(np.isfinite(best), table / best, np.inf)
        ratios[ratios > 4] = np.inf
        grid = np.linspace(1.0, 4.0, 100)
        rho = (ratios[None, :, :] <= grid[:, None, None]).sum(axis=1) / 6
        reference = np.trapezoid(rho, grid, axis=0) / 3
        scores = score_times(times)
        assert [scores.scores[f"s{s}"] for s in range(4)] == pytest.approx(reference, abs=1e-9)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: tau_grid(1), "num_points=1"),
        (lambda: tau_grid(10, 0.5, 4.0), "tau range"),
        (lambda: score_times({}), "no workloads"),
        (lambda: performance_ratios({"w": {"A": math.nan}}), "time nan of 'A' on 'w'"),
        (lambda: performance_ratios({"w": {"A": -1.0}}), "time -1.0 of 'A'"),
        (lambda: integrated_score([0.5], [1.0]), "a profile of 1 values"),
    ],
)
def test_bad_input_is_refused_by_name(call, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        call()
