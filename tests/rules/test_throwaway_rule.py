"""A rule registered at run time is an optimizer everywhere, with no other file touched.

The rule below (sign descent with momentum, "Signum") exists only in this module. Registered
by the fixture, it must run on every executor (reference, fused, and Triton's interpreter), in
the NumPy functional API, in text specs, in the benchmark's contenders and in the lab, with its
docstring generated and its colour in the palette; unregistered, it is gone again.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from descend import functional, rules, specs
from descend.bench.protocol import make_contender
from descend.lab import problems
from descend.lab.loop import RuleStepper
from descend.lab.palette import FAMILY_COLORS, family_of
from descend.lab.playground import controls
from descend.lab.runner import race
from descend.optim import optimizer_classes
from descend.optim.generated import optimizer_class
from descend.rules.common import decay_rate, learning_rate, weight_decay
from descend.rules.elementwise import lerp, sign
from descend.rules.spec import CourseForm, Element, Listing, Rule, Slot
from descend.testing import OPTION_GRID
from tests.interpreter import run_under_triton_interpreter

ROOT = Path(__file__).resolve().parents[2]


def signum_update(
    p: Element, g: Element, momentum_buffer: Element, *, lr: float, beta: float, weight_decay: float
) -> tuple[Element, ...]:
    """One Signum step (sign descent with momentum, Bernstein et al., 2018)::

    m <- beta * m + (1 - beta) * g
    x <- x - lr * (sign(m) + weight_decay * x)
    """
    momentum_buffer = lerp(momentum_buffer, g, 1 - beta)
    p = p - lr * (sign(momentum_buffer) + weight_decay * p)
    return p, momentum_buffer


SIGNUM = Rule(
    name="signum",
    update=signum_update,
    hypers=(
        learning_rate(1e-3),
        decay_rate("beta", 0.9, "decay rate of the momentum m"),
        weight_decay(),
    ),
    slots=(Slot("momentum_buffer"),),
    counts_steps=False,
    listing=Listing(
        summary="x <- x - lr sign(m), m a moving average of g",
        aliases=("sign_momentum",),
        reference="Bernstein et al. (2018), signSGD",
        year=2018,
        colour="#123456",
        course=CourseForm(
            "signum", renames={"learning_rate": "lr"}, defaults={"learning_rate": 1e-2}
        ),
        lr_range=(1e-4, 1e-1),
    ),
)


@pytest.fixture
def signum():
    """The throwaway rule, registered for one test."""
    rules.register(SIGNUM)
    yield SIGNUM
    rules.unregister(SIGNUM)


def expected_path(
    x0: np.ndarray, grads: list[np.ndarray], lr: float, beta: float, weight_decay: float
) -> np.ndarray:
    """The rule's iterates written out here in NumPy, independently of every executor."""
    x, m = x0.copy(), np.zeros_like(x0)
    for g in grads:
        m = m + (1 - beta) * (g - m)
        x = x - lr * (np.sign(m) + weight_decay * x)
    return x


def _gradients(shape: tuple[int, ...], steps: int) -> list[np.ndarray]:
    generator = np.random.default_rng(0)
    return [generator.standard_normal(shape) for _ in range(steps)]


def test_the_registry_lists_it_while_registered(signum):
    assert rules.RULES["signum"] is signum and rules.get_rule("sign_momentum") is signum
    with pytest.raises(TypeError, match="already registered"):
        rules.register(Rule("signum", signum_update, signum.hypers, signum.slots))


def test_unregistering_removes_it_everywhere():
    rules.register(SIGNUM)
    rules.unregister(SIGNUM)
    assert "signum" not in rules.RULES and "sign_momentum" not in rules.NAMES
    assert "signum" not in specs.OPTIMIZERS and "signum" not in FAMILY_COLORS
    assert "signum" not in controls.PLAYGROUND_RULES and not hasattr(functional, "signum")
    with pytest.raises(ValueError, match="unknown optimizer"):
        specs.parse_optimizer("signum")


@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_cpu_executor_runs_it(signum, backend, dtype):
    grads = _gradients((5, 3), 6)
    x0 = np.linspace(-1.0, 1.0, 15).reshape(5, 3)
    param = torch.tensor(x0, dtype=dtype, requires_grad=True)
    optimizer = optimizer_class(signum)(
        [param], lr=0.01, beta=0.8, weight_decay=0.1, backend=backend
    )
    for g in grads:
        param.grad = torch.tensor(g, dtype=dtype)
        optimizer.step()
    expected = expected_path(x0, grads, 0.01, 0.8, 0.1)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(
        param.detach().double().numpy(), expected, rtol=tolerance, atol=tolerance
    )
    assert set(optimizer.state[param]) == {"momentum_buffer"}


@pytest.mark.slow  # a fresh process for the interpreter: seconds
def test_triton_interpreter_runs_it():
    """Triton's interpreter must be chosen before Triton is imported, so it runs in a fresh
    interpreter (a few seconds) that registers the rule from this module."""
    pytest.importorskip("triton", reason="needs Triton")
    script = textwrap.dedent("""
        import numpy as np, torch
        from descend import rules
        from descend.optim.generated import optimizer_class
        from tests.rules.test_throwaway_rule import SIGNUM, _gradients, expected_path
        rules.register(SIGNUM)
        grads = _gradients((37,), 4)
        x0 = np.linspace(-1.0, 1.0, 37)
        param = torch.tensor(x0, dtype=torch.float32, requires_grad=True)
        optimizer = optimizer_class(SIGNUM)([param], lr=0.01, backend="triton")
        for g in grads:
            param.grad = torch.tensor(g, dtype=torch.float32)
            optimizer.step()
        expected = expected_path(x0, grads, 0.01, 0.9, 0.0)
        np.testing.assert_allclose(param.detach().double().numpy(), expected, rtol=1e-6,
                                   atol=1e-6)
        print("triton ran the rule")
    """)
    done = run_under_triton_interpreter(script, timeout=300)
    assert done.returncode == 0 and "triton ran the rule" in done.stdout, done.stderr[-3000:]


def test_functional_api_and_its_spec_run_it(signum):
    grads = _gradients((4,), 5)
    x0 = np.array([0.5, -0.25, 1.0, -2.0])
    parsed = specs.parse_method("functional.signum:learning_rate=0.05")
    assert "functional.signum" in specs.functional_names()
    w, config = x0, parsed.config()
    for g in grads:
        w, config = parsed.update(w, g, config)
    np.testing.assert_allclose(w, expected_path(x0, grads, 0.05, 0.9, 0.0), rtol=1e-12)
    assert functional.signum is functional.UPDATES["signum"] is parsed.update


def test_specs_and_the_benchmark_find_it(signum):
    parsed = specs.parse_optimizer("sign_momentum:lr=0.02,beta=0.5")
    assert parsed.cls is optimizer_class(signum) and parsed.lr == 0.02
    assert "signum" in specs.optimizer_names()
    assert specs.default_lr_range("signum") == signum.lr_range
    with pytest.raises(ValueError, match="beta=1.5 is out of range"):
        specs.parse_optimizer("signum:beta=1.5")
    contender = make_contender("signum")
    (lr,) = contender.space
    assert (lr.name, lr.low, lr.high) == ("lr", *signum.lr_range)
    assert "Signum" not in OPTION_GRID  # no torch.optim namesake: no parity grid


def test_the_lab_races_and_colours_it(signum):
    (trace,) = race(problems.make_problem("ravine"), ["signum:lr=0.01"], steps=30)
    assert trace.family == "signum" and FAMILY_COLORS["signum"] == "#123456"
    assert trace.losses[-1] < trace.losses[0]
    assert family_of("functional.signum") == family_of("sign_momentum") == "signum"
    stepper = RuleStepper(signum, {"lr": 0.01}, np.array([1.0, -1.0]))
    assert np.all(np.isfinite(stepper.step(np.array([1.0, -1.0]), np.array([0.3, -0.2]))))
    rule, hypers = controls.parse_rule("signum:lr=0.01")
    assert rule is signum and hypers["beta"] == 0.9


def test_its_class_documents_itself(signum):
    assert optimizer_classes()["signum"] is optimizer_class(signum)
    doc = optimizer_class(signum).__doc__
    assert "x <- x - lr * (sign(m) + weight_decay * x)" in doc
    assert "beta: decay rate of the momentum m; default 0.9; ``0 <= beta < 1``." in doc
