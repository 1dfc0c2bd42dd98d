"""The rule model's matrix state: a stage that keeps per-parameter matrices, updates them
every step, refreshes them every k steps (before its function, or after the update), and
between refreshes is the elementwise parts every executor compiles. Checked on a made-up
method against the same loop written out by hand."""

from __future__ import annotations

import pytest
import torch

from descend.optim.base import RuleOptimizer
from descend.rules.spec import Hyper, MatrixStage, Rule, Slot

#: The fused executor compiles the made-up rule first (seconds): in the slow lane.
BACKENDS = ["reference", pytest.param("fused", marks=pytest.mark.slow)]


def decayed_gradient(u, g, momentum, *, lam):
    """A made-up preparation that reads the parameter (u starts as x): U <- g + lam x."""
    return g + lam * u, momentum


def gram_matrices(param, hypers):
    """A statistic S = 0 and a preconditioner P = I, one row-dimension square each."""
    rows = param.shape[0]
    return {
        "gram": param.new_zeros(rows, rows),
        "inverse": torch.eye(rows, dtype=param.dtype, device=param.device),
    }


def add_gram(u, g, hypers, state):
    """S <- S + U U^T."""
    state["gram"].addmm_(u, u.T)


def invert(hypers, state):
    """P <- (S + I)^(-1): the expensive part, every k steps."""
    eye = torch.eye(len(state["gram"]), dtype=state["gram"].dtype)
    state["inverse"].copy_(torch.linalg.inv(state["gram"] + eye))


def precondition(u, g, hypers, state):
    """D <- P U."""
    return state["inverse"] @ u


def momentum_update(p, g, momentum, *, lr, beta):
    """x <- x - lr B, with B <- beta B + D (elementwise, on every executor)."""
    momentum = beta * momentum + g
    p = p - lr * momentum
    return p, momentum


def _every(hypers, step):
    return step % hypers["k"] == 0


def _rule(after: bool) -> Rule:
    return Rule(
        "gram_preconditioned",
        momentum_update,
        (
            Hyper("lr", 0.1, "step", low=0.0),
            Hyper("beta", 0.5, "momentum", low=0.0, high=1.0),
            Hyper("lam", 0.01, "L2 weight", low=0.0),
            Hyper("k", 3, "refresh period", low=1, kind=int),
        ),
        (Slot("momentum"),),
        stage=MatrixStage(
            decayed_gradient,
            precondition,
            matrices=gram_matrices,
            statistics=add_gram,
            refresh=invert,
            refresh_due=_every,
            refresh_after_update=after,
            reads_parameter=True,
        ),
    )


def _optimizer(after: bool):
    class GramPreconditioned(RuleOptimizer):
        """A made-up optimizer with matrix state."""

        rule = _rule(after)

        def __init__(self, params, lr=0.1, beta=0.5, lam=0.01, k=3, *, backend="auto", **more):
            defaults = dict(lr=lr, beta=beta, lam=lam, k=k)
            super().__init__(params, defaults, backend=backend, **more)

    return GramPreconditioned


@pytest.mark.parametrize("after", [False, True], ids=["refresh-before", "refresh-after"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_matrix_state_is_updated_refreshed_and_applied_in_order(backend, after):
    generator = torch.Generator().manual_seed(0)
    param = torch.randn(4, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    x = param.detach().clone()
    momentum = torch.zeros_like(x)
    gram, inverse = torch.zeros(4, 4, dtype=torch.float64), torch.eye(4, dtype=torch.float64)
    optimizer = _optimizer(after)([param], backend=backend)
    for step in range(1, 11):
        g = torch.randn(4, 3, dtype=torch.float64, generator=generator)
        param.grad = g.clone()
        optimizer.step()
        u = g + 0.01 * x
        gram = gram + u @ u.T
        due = step % 3 == 0
        if due and not after:
            inverse = torch.linalg.inv(gram + torch.eye(4, dtype=torch.float64))
        momentum = 0.5 * momentum + inverse @ u
        x = x - 0.1 * momentum
        if due and after:
            inverse = torch.linalg.inv(gram + torch.eye(4, dtype=torch.float64))
    state = optimizer.state[param]
    torch.testing.assert_close(param.detach(), x, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(state["gram"], gram, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(state["inverse"], inverse, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(state["momentum"], momentum, rtol=1e-12, atol=1e-13)


def test_matrix_state_lives_with_the_slots_and_goes_with_a_skipped_step():
    param = torch.zeros(2, 5, requires_grad=True)
    optimizer = _optimizer(False)([param], nonfinite="skip", backend="reference")
    param.grad = torch.full((2, 5), float("inf"))
    optimizer.step()
    assert not optimizer.state.get(param)
    param.grad = torch.ones(2, 5)
    optimizer.step()
    state = optimizer.state[param]
    assert {"gram", "inverse", "momentum", "step"} <= set(state)
    assert state["gram"].shape == (2, 2) and state["gram"].device == param.device
    reloaded = _optimizer(False)([param], backend="reference")
    reloaded.load_state_dict(optimizer.state_dict())
    torch.testing.assert_close(reloaded.state[param]["gram"], state["gram"])
