"""The lab's test problems: small objects with a loss and a gradient.

Every problem works with every optimizer front end:

- NumPy (the functional API): ``problem.loss(x)``, ``problem.grad(x)``;
- torch (descend's classes or ``torch.optim``'s): ``p = problem.torch_parameter()`` is a float64
  leaf tensor and ``problem.backward(p)`` sets ``p.grad`` from the NumPy gradient::

      p = problem.torch_parameter()
      optimizer = torch.optim.Adam([p], lr=1e-2)
      for _ in range(100):
          optimizer.zero_grad()
          problem.backward(p)
          optimizer.step()

- autograd: ``problem.torch_loss(x)`` is the same loss written in torch operations (the tests
  check the hand-written gradients against it).

Noisy problems (``problem.stochastic``) also give a minibatch gradient,
``problem.stochastic_grad(x, rng)``, whose noise follows from their batch size.

Problems are grouped by which of the lecture's four problems of SGD they show, one module each:
ill-conditioning (:mod:`~descend.lab.problems.quadratics`: :class:`Ravine`), saddle points
(:mod:`~descend.lab.problems.saddles`: :class:`Saddle`, :class:`HighDimSaddle`), local minima
(:mod:`~descend.lab.problems.minima`: :class:`TiltedDoubleWell`, :class:`Himmelblau`,
:class:`Rastrigin`), noisy gradients (:mod:`~descend.lab.problems.noisy`:
:class:`NoisyLeastSquares`, :class:`NoisyLogistic`); plus the classics
(:mod:`~descend.lab.problems.classics`: :class:`RosenbrockValley`, :class:`Beale`,
:class:`Booth`). Build one from a spec with :func:`make_problem` (``"ravine:kappa=100,dim=10"``).

A new problem is one :class:`Problem` subclass with a ``name`` and its ``params`` (see
:mod:`~descend.lab.problems.base`), in the module of its kind: defining it registers it, and the
race, the playground and the ``--help`` listings read its declared settings.
"""

from __future__ import annotations

import textwrap

from descend.lab.problems.base import PROBLEMS, Bounds, Param, Problem
from descend.specs import parse_spec
from descend.suggest import unknown_name

# Defining a problem registers it, so the order of these imports is the order every listing
# shows: the lecture's four problems of SGD, then the classics.
# isort: off
from descend.lab.problems.quadratics import SPREADS, Ravine
from descend.lab.problems.saddles import HighDimSaddle, Saddle
from descend.lab.problems.minima import Himmelblau, Rastrigin, TiltedDoubleWell
from descend.lab.problems.noisy import MAX_DATA, NoisyLeastSquares, NoisyLogistic
from descend.lab.problems.classics import Beale, Booth, RosenbrockValley
# isort: on

#: The largest ``dim`` a spec may ask for: a dense 4096 x 4096 float64 matrix is 128 MiB.
MAX_DIMENSION = 4096


def problem_names() -> list[str]:
    """Every name :func:`make_problem` accepts."""
    return list(PROBLEMS)


def make_problem(spec: str) -> Problem:
    """Build a problem from ``name[:key=value,...]``, e.g. ``"ravine:kappa=100,dim=10"``.

    Unknown names, unknown settings and values outside a setting's declared range fail with a
    ``ValueError`` naming what is valid.
    """
    name, arguments = parse_spec(spec)
    if name not in PROBLEMS:
        raise unknown_name("problem", name, list(PROBLEMS), spec)
    dim = arguments.get("dim")
    if isinstance(dim, int) and dim > MAX_DIMENSION:
        raise ValueError(
            f"dim={dim!r} in spec {spec!r} is too large: expected at most "
            f"{MAX_DIMENSION} (problems hold dense dim x dim matrices and the "
            "race records every step's position)"
        )
    cls = PROBLEMS[name]
    try:
        cls.check_settings(arguments)
    except ValueError as error:
        raise ValueError(f"{error} (spec {spec!r})") from None
    try:
        return cls(**arguments)
    except TypeError as error:
        raise ValueError(f"invalid problem spec {spec!r}: {error}") from None


def problem_listing(width: int = 100) -> str:
    """Every problem with its settings, defaults and ranges, as ``--help`` shows them."""
    lines = []
    for name, cls in PROBLEMS.items():
        lines.append(f"  {name}: {cls.title}")
        for param in cls.params:
            lines += textwrap.wrap(
                f"{param.summary()}: {param.doc}",
                width,
                initial_indent=" " * 6,
                subsequent_indent=" " * 8,
            )
    return "\n".join(lines)


__all__ = [
    "MAX_DATA",
    "MAX_DIMENSION",
    "PROBLEMS",
    "SPREADS",
    "Beale",
    "Booth",
    "Bounds",
    "HighDimSaddle",
    "Himmelblau",
    "NoisyLeastSquares",
    "NoisyLogistic",
    "Param",
    "Problem",
    "Rastrigin",
    "Ravine",
    "RosenbrockValley",
    "Saddle",
    "TiltedDoubleWell",
    "make_problem",
    "problem_listing",
    "problem_names",
]
