"""Newton, BFGS and L-BFGS from descend.secondorder against scipy.optimize.minimize.

For each problem and method: iterations, loss-and-gradient evaluations, Hessian evaluations,
wall time, final loss and the distance of the solution from SciPy's. Pairs compared:

    descend newton  <->  SciPy trust-exact and Newton-CG   (exact Hessian)
    descend bfgs    <->  SciPy BFGS                        (gtol 1e-5 on max |g_i|)
    descend lbfgs   <->  SciPy L-BFGS-B                    (m = 10, pgtol 1e-5, ftol 2.2e-9)

Run with ``PYTHONPATH=src python benchmarks/second_order.py``. BLAS runs on one thread: the
problems are small, and a threaded BLAS spends more time waking threads than computing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import time

import numpy as np
from scipy.optimize import minimize

from descend import secondorder

#: descend method -> the SciPy methods it is compared with, and options for both sides.
PAIRS = {
    "newton": (("trust-exact", "Newton-CG"), {"gtol": 1e-8}),
    "bfgs": (("BFGS",), {"gtol": 1e-5}),
    "lbfgs": (("L-BFGS-B",), {}),
}


def problems() -> list[tuple[str, object, np.ndarray]]:
    """The benchmark problems with their starting points."""
    rosenbrock2 = secondorder.Rosenbrock(2)
    rosenbrock5 = secondorder.Rosenbrock(5)
    quadratic = secondorder.Quadratic.ill_conditioned(50, 1e4, seed=0)
    out = [
        ("rosenbrock-2", rosenbrock2, rosenbrock2.start()),
        # SciPy's tutorial start: every method reaches the global minimizer from it (from
        # (-1.2, 1, -1.2, ...) in 5+ dimensions, some stop in the local minimum near x_1 = -1).
        ("rosenbrock-5", rosenbrock5, np.array([1.3, 0.7, 0.8, 1.9, 1.2])),
        ("quadratic-50 (kappa 1e4)", quadratic, np.zeros(50)),
    ]
    try:
        digits = secondorder.LogisticRegression.digits(l2=1e-3)
        out.append(("digits logistic (650)", digits, np.zeros(digits.dimension)))
    except ImportError:
        print("scikit-learn is not installed: skipping the digits problem")
    return out


def run_scipy(problem, x0: np.ndarray, method: str, gtol: float | None):
    """Run SciPy; return (iterations, nfev, nhev, seconds, loss, x)."""
    options = {}
    if method in ("BFGS", "trust-exact") and gtol is not None:
        options["gtol"] = gtol
    hess = problem.hessian if method in ("trust-exact", "Newton-CG") else None
    start = time.perf_counter()
    result = minimize(
        problem.value_and_grad, x0, jac=True, hess=hess, method=method, options=options
    )
    seconds = time.perf_counter() - start
    return (result.nit, result.nfev, getattr(result, "nhev", 0), seconds, result.fun, result.x)


def main() -> None:
    header = (
        f"{'problem':<26} {'method':<22} {'iters':>6} {'fevals':>7} {'hevals':>7} "
        f"{'seconds':>8} {'loss':>13} {'|x - x_scipy|':>14}"
    )
    print(header)
    print("-" * len(header))
    for name, problem, x0 in problems():
        for ours, (theirs, options) in PAIRS.items():
            start = time.perf_counter()
            result = secondorder.minimize(problem, x0, ours, keep_x=False, **options)
            seconds = time.perf_counter() - start
            references = [run_scipy(problem, x0, method, options.get("gtol")) for method in theirs]
            distance = np.abs(result.x - references[0][5]).max()
            print(
                f"{name:<26} {'descend ' + ours:<22} {result.nit:>6} {result.nfev:>7} "
                f"{result.nhev:>7} {seconds:>8.3f} {result.fun:>13.6e} {distance:>14.2e}"
            )
            for method, (nit, nfev, nhev, ref_seconds, loss, _) in zip(
                theirs, references, strict=True
            ):
                print(
                    f"{'':<26} {'scipy ' + method:<22} {nit:>6} {nfev:>7} {nhev:>7} "
                    f"{ref_seconds:>8.3f} {loss:>13.6e} {'':>14}"
                )
        print()


if __name__ == "__main__":
    main()
