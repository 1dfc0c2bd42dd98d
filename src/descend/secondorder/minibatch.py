"""The minibatch variant: the same methods driven by gradients of random batches.

Full-batch L-BFGS builds its curvature pairs from exact gradients. With minibatches each gradient
carries sampling noise, and the gradient *difference* ``y`` in a pair is dominated by it once
steps get small: the inverse-Hessian estimate turns to noise and the method stalls or diverges,
while first-order methods only average the noise out. :func:`minibatch` runs one method on a
finite-sum problem with a fresh batch per iteration and records the full-batch loss, so the
difference can be plotted.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import numpy as np

from descend.secondorder.bfgs import BFGSDirection
from descend.secondorder.lbfgs import LBFGSDirection
from descend.secondorder.line_search import is_finite, strong_wolfe
from descend.secondorder.newton import NewtonDirection
from descend.secondorder.objective import Objective
from descend.secondorder.result import History, OptimizeResult

#: The second-order methods :func:`minibatch` runs; every name in
#: ``descend.functional.UPDATES`` (``sgd``, ``sgd_momentum``, ``adam``, ...) runs too.
SECOND_ORDER = ("newton", "bfgs", "lbfgs")
#: How curvature pairs are formed from minibatch gradients.
PAIRS = ("mixed", "same-batch")


class FiniteSum(Protocol):
    """A loss that is a mean over samples (``LeastSquares``, ``LogisticRegression``)."""

    n_samples: int

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient over every sample."""

    def batch(self, indices: np.ndarray) -> Objective:
        """The same loss over the samples ``indices``."""


def minibatch(
    problem: FiniteSum,
    x0: Any,
    method: str,
    *,
    iterations: int,
    batch_size: int,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    line_search: bool = True,
    lr: float = 1.0,
    history_size: int = 10,
    pairs: str = "mixed",
    record_every: int = 1,
    keep_x: bool = False,
) -> OptimizeResult:
    """Run ``method`` for ``iterations`` steps, each on a fresh random batch.

    Each iteration draws ``batch_size`` samples without replacement and evaluates the batch
    loss ``f_B`` and gradient ``g_B`` at ``x_k``. Then:

    - first-order methods (any name in ``descend.functional.UPDATES``, with ``config`` their
      hyperparameters, e.g. ``{"learning_rate": 1e-2}``): ``x_{k+1}, config = update(x_k, g_B,
      config)``;
    - ``newton`` (Hessian of the batch), ``bfgs``, ``lbfgs`` (``history_size`` pairs):
      ``d = -H g_B`` and ``x_{k+1} = x_k + t d``, with ``t`` from a strong-Wolfe search on
      ``f_B`` (``line_search=True``; the step is skipped when it finds nothing lower) or
      ``t = lr`` times the full-batch first trial step (``line_search=False``).

    Curvature pairs ``(s_k, y_k)``, ``s_k = x_{k+1} - x_k``:

    - ``pairs="mixed"`` (what ``torch.optim.LBFGS`` does when ``step`` is called once per
      batch): ``y_k = g_{B_{k+1}}(x_{k+1}) - g_{B_k}(x_k)``, two different batches, so ``y``
      carries the sampling noise;
    - ``pairs="same-batch"``: ``y_k = g_{B_k}(x_{k+1}) - g_{B_k}(x_k)`` (one extra batch
      gradient without a line search), the usual fix (online L-BFGS).

    The history records the *full* loss and gradient norm every ``record_every`` iterations and
    at the end (their evaluation is left out of ``time``); ``nfev`` counts batch evaluations and
    ``extras["epochs"]`` the samples seen per recorded point divided by ``n_samples``.

    If a step reaches a non-finite batch loss or gradient, the run stops at the last finite
    iterate with status ``"diverged"``; otherwise it ends with status ``"completed"``.

    Raises:
        ValueError: an unknown method or ``pairs``, or a count out of range.
    """
    from descend import functional  # (its executors load torch: only when a run starts)

    if method not in SECOND_ORDER and method not in functional.UPDATES:
        raise ValueError(
            f"method={method!r} is invalid: expected one of "
            f"{', '.join(map(repr, (*SECOND_ORDER, *functional.UPDATES)))}"
        )
    if pairs not in PAIRS:
        raise ValueError(
            f"pairs={pairs!r} is invalid: expected one of {', '.join(map(repr, PAIRS))}"
        )
    n = int(problem.n_samples)
    for name, value, low, high in (
        ("iterations", iterations, 0, None),
        ("batch_size", batch_size, 1, n),
        ("record_every", record_every, 1, None),
    ):
        if not (
            isinstance(value, int | np.integer) and value >= low and (high is None or value <= high)
        ):
            allowed = f"an integer >= {low}" + (f" and <= {high}" if high is not None else "")
            raise ValueError(f"{name}={value!r} is invalid: expected {allowed}")
    if not lr > 0:
        raise ValueError(f"lr={lr!r} is invalid: expected lr > 0")

    rng = np.random.default_rng(seed)
    x = np.array(x0, dtype=np.float64).reshape(-1)
    direction = {
        "newton": lambda: NewtonDirection(),
        "bfgs": BFGSDirection,
        "lbfgs": lambda: LBFGSDirection(history_size),
    }.get(method)
    state = direction() if direction is not None else None
    update = functional.UPDATES.get(method)
    opt_config = dict(config or {})

    history = History()
    extras: dict[str, Any] = {"epochs": [], "batch_loss": [], "skipped_steps": 0}
    nfev = 0
    samples = 0
    paused = 0.0
    started = time.perf_counter()

    def record(step: float) -> None:
        nonlocal paused
        clock = time.perf_counter()
        loss, grad = problem.value_and_grad(x)
        history.record(loss, grad, x if keep_x else None, nfev, clock - started - paused, step)
        extras["epochs"].append(samples / n)
        paused += time.perf_counter() - clock

    def batch_eval(objective: Objective, point: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal nfev
        nfev += 1
        loss, grad = objective.value_and_grad(point)
        return float(loss), np.asarray(grad, dtype=np.float64).reshape(-1)

    record(0.0)
    status, message = "completed", f"ran {iterations} minibatch iterations"
    previous: tuple[np.ndarray, np.ndarray] | None = None  # (s, g_B(x)) of the last step
    step = 0.0
    for iteration in range(1, iterations + 1):
        objective = problem.batch(rng.choice(n, size=batch_size, replace=False))
        samples += batch_size
        f_b, g_b = batch_eval(objective, x)
        extras["batch_loss"].append(f_b)
        if not (is_finite(f_b) and np.isfinite(g_b).all()):
            status = "diverged"
            message = f"the batch loss or gradient at iteration {iteration} is not finite"
            break
        if update is not None:
            x_new, opt_config = update(x, g_b, opt_config)
            step = float(opt_config.get("learning_rate", 0.0))
        else:
            if pairs == "mixed" and previous is not None:
                state.update(previous[0], g_b - previous[1])
            d = state.direction(x, g_b, objective)
            gtd = float(g_b @ d)
            if not gtd < 0:
                state.reset()
                d, gtd = -g_b, -float(g_b @ g_b)
            t0 = state.initial_step(g_b)
            g_next = None
            if line_search:

                def phi(
                    t: float, objective: Objective = objective, x: np.ndarray = x, d: np.ndarray = d
                ) -> tuple[float, np.ndarray, float]:
                    loss, grad = batch_eval(objective, x + t * d)
                    return loss, grad, float(grad @ d)

                search = strong_wolfe(phi, t0, f_b, g_b, gtd, float(np.abs(d).max()))
                step = float(search.t) if search.f < f_b else 0.0
                extras["skipped_steps"] += step == 0.0
                g_next = search.g if step else None
            else:
                step = lr * t0
            s = step * d
            x_new = x + s
            if pairs == "same-batch" and step:
                if g_next is None:
                    _, g_next = batch_eval(objective, x_new)
                if np.isfinite(g_next).all():
                    state.update(s, g_next - g_b)
            previous = (s, g_b)
        if not np.isfinite(x_new).all():
            status = "diverged"
            message = f"the step at iteration {iteration} left the finite numbers"
            break
        x = x_new
        if iteration % record_every == 0 or iteration == iterations:
            record(step)
    if status == "diverged":
        record(0.0)

    return OptimizeResult(
        x=x,
        fun=history.loss[-1],
        jac=problem.value_and_grad(x)[1],
        nit=iteration if iterations else 0,
        nfev=nfev,
        nhev=int(getattr(state, "extras", {}).get("nhev", 0)),
        status=status,
        message=message,
        history=history,
        method=method,
        extras=extras,
    )
