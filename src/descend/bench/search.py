"""What tuning searches and how: the search space, Optuna's samplers and pruners.

A contender's search space is a tuple of :class:`Dimension` (the learning rate, log-uniform in
a range per optimizer, plus anything asked for with ``--tune``). The default sampler goes from
coarse to fine: the first half of the budget is a Latin hypercube over the whole space (one
trial per slice of each range), then TPE refines around what worked.

Optuna and NumPy are imported by the functions that use them, so the command line can list
the samplers and check ``--tune`` ranges before loading either.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

SAMPLERS = ("tpe", "random", "qmc")
PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class Dimension:
    """One tuned hyperparameter: a float in ``[low, high]``, log-uniform if ``log``."""

    name: str
    low: float
    high: float
    log: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(
                f"search range {self.name}={self.low:g}:{self.high:g} is invalid: "
                "expected low < high"
            )
        if self.log and self.low <= 0:
            raise ValueError(
                f"search range {self.name}={self.low:g}:{self.high:g} is log-scale "
                "and needs low > 0 (add :linear for a linear range)"
            )

    def suggest(self, trial: optuna.Trial) -> float:
        """Ask the trial for a value."""
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def to_text(self) -> str:
        """``name=low:high[:linear]``, as typed after ``--tune``."""
        return f"{self.name}={self.low:g}:{self.high:g}{'' if self.log else ':linear'}"


def parse_dimension(text: str) -> Dimension:
    """Parse ``name=low:high`` (log-uniform) or ``name=low:high:linear``."""
    name, equals, body = text.partition("=")
    parts = body.split(":")
    try:
        if (
            not equals
            or len(parts) not in (2, 3)
            or (len(parts) == 3 and parts[2] not in ("log", "linear"))
        ):
            raise ValueError
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(
            f"malformed search range {text!r}: expected name=low:high or "
            "name=low:high:linear, such as momentum=0.5:0.99:linear"
        ) from None
    return Dimension(name.strip(), low, high, log=len(parts) == 2 or parts[2] == "log")


def startup_trials(trials: int) -> int:
    """How many of a budget's trials the default sampler spreads over the whole range."""
    return min(10, max(1, math.ceil(trials / 2)))


def latin_point(space: Sequence[Dimension], index: int, count: int, seed: int) -> dict[str, float]:
    """Point ``index`` of a ``count``-point Latin hypercube over ``space``.

    Each dimension's range (in log space for log-scale ones) is cut into ``count`` equal
    strata; each point takes a different stratum in every dimension, at a random place in it.
    The same seed gives the same design, so every worker and every rerun agree on it.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    point = {}
    for dimension in space:
        order, jitter = rng.permutation(count), rng.random(count)
        position = (order[index] + jitter[index]) / count
        if dimension.log:
            low, high = math.log(dimension.low), math.log(dimension.high)
            value = math.exp(low + position * (high - low))
        else:
            value = dimension.low + position * (dimension.high - dimension.low)
        point[dimension.name] = min(max(value, dimension.low), dimension.high)
    return point


def make_sampler(
    name: str, seed: int, trials: int, taken: int, space: Sequence[Dimension]
) -> optuna.samplers.BaseSampler:
    """The sampler for the next trial, ``taken`` trials being finished or running.

    Rebuilt for every trial with a seed that moves on with the study, so a resumed run
    continues the sequence instead of repeating the draws it already made.
    """
    import optuna

    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed + taken)
        if name == "qmc":
            return optuna.samplers.QMCSampler(
                seed=seed, scramble=True, warn_independent_sampling=False
            )
        # Coarse to fine: the first half of the budget (up to 10 trials) covers the range
        # evenly (a Latin hypercube: one trial per slice of the log range), then TPE refines
        # around what worked.
        startup = startup_trials(trials)
        tpe = optuna.samplers.TPESampler(seed=seed + taken, n_startup_trials=startup)
        if taken < startup:
            return optuna.samplers.PartialFixedSampler(
                latin_point(space, taken, startup, seed), tpe
            )
        return tpe


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """The pruner that stops hopeless trials of ``epochs`` epochs (``none``: never)."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, epochs // 4))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; valid: {', '.join(PRUNERS)}")
