"""AlgoPerf's scoring: performance ratios, performance profiles and the integrated score.

The definitions follow MLCommons' AlgoPerf benchmark (repository
``mlcommons/algorithmic-efficiency``), scaled down to the workloads of one machine:

- ``scoring/performance_profile.py``, ``get_workloads_time_to_target``: a submission's time on a
  workload is the median over its studies (independent repetitions) of the time at which the
  study's fastest trial first reaches the workload's validation target; a study that never
  reaches it counts as infinitely slow (``np.median`` of the studies' times, ``inf`` included).
- ``scoring/performance_profile.py``, ``compute_performance_profiles``: a time more than
  ``4x`` the fastest submission's on its workload is set to ``inf``; every time is divided by
  the fastest one on its workload (``df.div(df.min(axis=0))``), which gives the performance
  ratios r; the profile of a submission is ``rho(tau) = (r <= tau).sum() / NUM_BASE_WORKLOADS``
  on a linear grid of ``num_points`` values of tau from ``min_tau`` to ``max_tau``.
- ``scoring/score_submissions.py``, ``compute_leaderboard_score``: the score is the integral
  of the profile by the trapezoidal rule over that grid (``np.trapz(df, x=df.columns)``),
  divided by the grid's width ``max_tau - min_tau``; the leaderboard calls
  ``compute_performance_profiles`` with ``min_tau=1.0, max_tau=4.0, num_points=100,
  scale='linear'``.

So a score lies in [0, 1]: 1 when a submission is the fastest on every workload, 0 when it
never gets within 4x of the fastest. Conventions here (see :mod:`descend.bench.scoreboard`
for where the times come from): a time is the median over seeds of the time to target of one
setting (infinite when half or more of the seeds miss the target, as
:func:`descend.bench.metrics.median_time`), ratio = time / best time on the workload, and a
workload no submission solved counts against every submission (it stays in the denominator).

The grid's values are computed as ``min_tau + (max_tau - min_tau) * k / (num_points - 1)``,
so that a ratio such as 2 or 3 falls exactly on a grid point (``numpy.linspace`` agrees up to
rounding); the trapezoidal rule then counts half a grid step at each jump of the profile,
exactly as AlgoPerf's integration does (:func:`integrated_score`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: AlgoPerf's range of tau: profiles start at the fastest time and stop at 4x it.
TAU_MIN = 1.0
TAU_MAX = 4.0
#: Points of AlgoPerf's linear tau grid, over which the profile is integrated.
NUM_POINTS = 100


def tau_grid(
    num_points: int = NUM_POINTS, min_tau: float = TAU_MIN, max_tau: float = TAU_MAX
) -> list[float]:
    """``num_points`` evenly spaced values of tau from ``min_tau`` to ``max_tau``, both ends
    included (AlgoPerf's ``np.linspace(min_tau, max_tau, num=num_points)``)."""
    if num_points < 2:
        raise ValueError(f"num_points={num_points!r} is invalid: expected >= 2")
    if not (math.isfinite(min_tau) and math.isfinite(max_tau) and 1.0 <= min_tau < max_tau):
        raise ValueError(
            f"tau range {min_tau!r}..{max_tau!r} is invalid: expected 1 <= min_tau < max_tau"
        )
    width = max_tau - min_tau
    return [min_tau + width * k / (num_points - 1) for k in range(num_points)]


def _check_time(workload: str, name: str, time: float) -> float:
    value = float(time)
    if math.isnan(value) or value < 0:
        raise ValueError(
            f"time {time!r} of {name!r} on {workload!r} is invalid: expected a time >= 0, "
            "or inf for a target never reached"
        )
    return value


def performance_ratios(
    times: Mapping[str, Mapping[str, float]], max_tau: float = TAU_MAX
) -> dict[str, dict[str, float]]:
    """``ratios[workload][submission]``: each time divided by the fastest on its workload.

    ``times[workload][submission]`` is the time to target (``inf`` when missed). A ratio is
    ``inf`` when the time is, when no submission reached the workload's target, and when it
    exceeds ``max_tau`` (AlgoPerf sets times over 4x the fastest to ``inf``). A time of 0 (a
    target met before any step) that is the fastest gives 1, and makes every slower one ``inf``.
    """
    ratios: dict[str, dict[str, float]] = {}
    for workload, row in times.items():
        checked = {name: _check_time(workload, name, time) for name, time in row.items()}
        best = min(checked.values(), default=math.inf)
        ratios[workload] = {}
        for name, time in checked.items():
            if not math.isfinite(time) or not math.isfinite(best):
                ratio = math.inf
            elif time == best:
                ratio = 1.0  # also when best == 0
            elif best == 0:
                ratio = math.inf
            else:
                ratio = time / best
            ratios[workload][name] = ratio if ratio <= max_tau else math.inf
    return ratios


def performance_profiles(
    ratios: Mapping[str, Mapping[str, float]], taus: Sequence[float]
) -> dict[str, list[float]]:
    """For each submission, ``rho(tau)`` at every tau of ``taus``: the fraction of workloads
    whose ratio is at most tau. Every workload counts in the denominator; a submission missing
    from a workload's row counts as ``inf`` there."""
    names = list(dict.fromkeys(name for row in ratios.values() for name in row))
    count = len(ratios)
    profiles: dict[str, list[float]] = {}
    for name in names:
        mine = [row.get(name, math.inf) for row in ratios.values()]
        profiles[name] = [sum(ratio <= tau for ratio in mine) / count for tau in taus]
    return profiles


def integrated_score(profile: Sequence[float], taus: Sequence[float]) -> float:
    """The area under ``profile`` over ``taus`` by the trapezoidal rule, divided by the width
    of the range (``compute_leaderboard_score``): 1 for a submission fastest everywhere."""
    if len(profile) != len(taus) or len(taus) < 2:
        raise ValueError(
            f"a profile of {len(profile)} values over {len(taus)} taus: expected as many "
            "values as taus, at least 2"
        )
    area = sum(
        (taus[k + 1] - taus[k]) * (profile[k] + profile[k + 1]) / 2 for k in range(len(taus) - 1)
    )
    return area / (taus[-1] - taus[0])


@dataclass(frozen=True)
class Scores:
    """The scoring of one table of times: its ratios, the tau grid, each submission's profile
    and score, in the order submissions first appear in the table."""

    ratios: dict[str, dict[str, float]]
    taus: list[float]
    profiles: dict[str, list[float]]
    scores: dict[str, float]

    def ranking(self) -> list[str]:
        """Submissions from the highest score to the lowest (ties keep the table's order)."""
        return sorted(self.scores, key=lambda name: -self.scores[name])


def score_times(
    times: Mapping[str, Mapping[str, float]],
    num_points: int = NUM_POINTS,
    max_tau: float = TAU_MAX,
) -> Scores:
    """AlgoPerf's scores of the submissions in ``times[workload][submission]`` (see the
    module's docstring): ratios, profiles on the tau grid, and integrated scores."""
    if not times:
        raise ValueError("no workloads to score: expected at least one workload's times")
    taus = tau_grid(num_points, TAU_MIN, max_tau)
    ratios = performance_ratios(times, max_tau)
    profiles = performance_profiles(ratios, taus)
    scores = {name: integrated_score(rho, taus) for name, rho in profiles.items()}
    return Scores(ratios, taus, profiles, scores)
