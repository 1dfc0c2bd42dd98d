"""The pass/fail suite: small problems that break optimizers for known reasons.

Each :class:`SuiteProblem` states in one line why it is hard (``reason``) and what passing
means (``criterion``), has a default step budget, and runs any optimizer spec from a seed::

    from descend.bench.suite import SUITE
    from descend.specs import parse_optimizer

    result = SUITE["rotated-quadratic"].run(parse_optimizer("adam:lr=0.1"), seed=0)
    result.passed, result.value, result.steps_to_pass

Every problem runs in well under two seconds on one CPU core. Where closed-form theory exists
(gradient descent on the quadratics) the problem's ``theory`` line states it. The problems
are in the spirit of HeavyBall's suite of hard small problems; tuning an optimizer on them is
the scoreboard's job.
"""

from __future__ import annotations

from collections.abc import Mapping

from descend.bench.suite.core import Instance, SuiteProblem, SuiteResult, check_order
from descend.bench.suite.networks import NETWORKS
from descend.bench.suite.smooth import SMOOTH
from descend.bench.suite.stochastic import STOCHASTIC

#: Every suite problem by name, in a fixed order: test functions, small networks, noise.
SUITE: Mapping[str, SuiteProblem] = check_order((*SMOOTH, *NETWORKS, *STOCHASTIC))

__all__ = ["SUITE", "Instance", "SuiteProblem", "SuiteResult"]
