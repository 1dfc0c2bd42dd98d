"""descend.LBFGS against torch.optim.LBFGS: same arguments, same iterates, same state."""

from __future__ import annotations

import copy
import inspect
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import descend
from descend.secondorder import NonFiniteError

#: Largest relative difference allowed between descend's and torch's iterates. The two run the
#: same operations in the same order, so in practice the difference is exactly zero.
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # The problems are tiny: a second intra-op thread only adds synchronization, which costs
    # far more than the arithmetic on a shared machine. Both optimizers run under it alike.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rosenbrock(dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.tensor([-1.2, 1.0, -1.2, 1.0, 0.5, 0.3], dtype=dtype) + 0.1 * torch.randn(
        6, generator=generator, dtype=dtype
    )
    y = torch.randn(2, 2, generator=generator, dtype=dtype)
    params = [x.requires_grad_(True), y.requires_grad_(True)]

    def loss():
        return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum() + (y**2).sum()

    return params, loss


def least_squares(dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(30, 5, generator=generator, dtype=dtype) * torch.logspace(
        0, 1.5, 5, dtype=dtype
    )
    targets = torch.randn(30, 3, generator=generator, dtype=dtype)
    weight = torch.zeros(3, 5, dtype=dtype, requires_grad=True)
    bias = torch.zeros(3, dtype=dtype, requires_grad=True)

    def loss():
        return ((inputs @ weight.T + bias - targets) ** 2).mean()

    return [weight, bias], loss


def mlp(dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(40, 4, generator=generator, dtype=dtype)
    labels = torch.randint(0, 3, (40,), generator=generator)
    w1 = (0.5 * torch.randn(8, 4, generator=generator, dtype=dtype)).requires_grad_(True)
    b1 = torch.zeros(8, dtype=dtype, requires_grad=True)
    w2 = (0.5 * torch.randn(3, 8, generator=generator, dtype=dtype)).requires_grad_(True)

    def loss():
        hidden = torch.tanh(inputs @ w1.T + b1)
        return torch.nn.functional.cross_entropy(hidden @ w2.T, labels)

    return [w1, b1, w2], loss


PROBLEMS = {"rosenbrock": rosenbrock, "least_squares": least_squares, "mlp": mlp}
#: Fixed steps (no line search) that keep each problem finite.
FIXED_LR = {"rosenbrock": 1e-3, "least_squares": 0.05, "mlp": 0.5}
OPTIONS = [
    {"line_search_fn": "strong_wolfe"},
    {"line_search_fn": "strong_wolfe", "history_size": 3, "max_iter": 7},
    {"line_search_fn": "strong_wolfe", "max_iter": 10, "max_eval": 12, "tolerance_change": 0},
    {"line_search_fn": None},
    {"line_search_fn": None, "history_size": 2, "max_iter": 5},
]


def run(cls, name, dtype, options, steps, seed=0, nonfinite=None):
    params, loss = PROBLEMS[name](dtype, seed)
    if options.get("line_search_fn") is None and "lr" not in options:
        options = {**options, "lr": FIXED_LR[name]}
    extra = {} if nonfinite is None else {"nonfinite": nonfinite}
    optimizer = cls(params, **options, **extra)

    def closure():
        optimizer.zero_grad()
        value = loss()
        value.backward()
        return value

    trajectory, losses = [], []
    for _ in range(steps):
        losses.append(float(optimizer.step(closure).detach()))
        trajectory.append([p.detach().clone() for p in params])
    return trajectory, losses, optimizer


def relative_difference(ours, theirs) -> float:
    worst = 0.0
    for a, b in zip(ours, theirs, strict=True):
        scale = max(float(b.abs().max()), 1e-30) if b.numel() else 1.0
        worst = max(worst, float((a - b).abs().max()) / scale if a.numel() else 0.0)
    return worst


def flat_state(optimizer) -> list[torch.Tensor]:
    state = optimizer.state[optimizer.param_groups[0]["params"][0]]
    out = []
    for key in ("d", "prev_flat_grad", "old_dirs", "old_stps", "ro", "H_diag", "t"):
        value = state.get(key)
        values = value if isinstance(value, list) else [value]
        out += [torch.as_tensor(v, dtype=torch.float64) for v in values if v is not None]
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    "options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items())
)
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_iterates_and_state_match_torch(name, options, dtype):
    ours, our_losses, our_optimizer = run(descend.LBFGS, name, dtype, options, steps=5)
    theirs, their_losses, their_optimizer = run(torch.optim.LBFGS, name, dtype, options, steps=5)
    for step_ours, step_theirs in zip(ours, theirs, strict=True):
        assert relative_difference(step_ours, step_theirs) <= TOLERANCE[dtype]
    assert our_losses == pytest.approx(their_losses, rel=TOLERANCE[dtype])
    our_state = our_optimizer.state[our_optimizer.param_groups[0]["params"][0]]
    their_state = their_optimizer.state[their_optimizer.param_groups[0]["params"][0]]
    assert set(our_state) == set(their_state)
    for key in ("func_evals", "n_iter"):
        assert our_state[key] == their_state[key]
    assert (
        relative_difference(flat_state(our_optimizer), flat_state(their_optimizer))
        <= TOLERANCE[dtype]
    )
    # The runs really optimize: with a line search every step lowers the loss.
    if options["line_search_fn"]:
        assert all(b <= a for a, b in zip(our_losses, our_losses[1:], strict=False))
        assert our_losses[-1] < our_losses[0]


@settings(max_examples=15, deadline=None)
@given(
    st.sampled_from(list(PROBLEMS)),
    st.sampled_from([torch.float32, torch.float64]),
    st.integers(0, 2**16),
    st.sampled_from([None, "strong_wolfe"]),
    st.integers(1, 25),
    st.integers(1, 8),
)
def test_random_problems_match_torch(name, dtype, seed, line_search_fn, max_iter, history_size):
    options = {"line_search_fn": line_search_fn, "max_iter": max_iter, "history_size": history_size}
    ours, _, _ = run(descend.LBFGS, name, dtype, options, steps=3, seed=seed, nonfinite="propagate")
    theirs, _, _ = run(torch.optim.LBFGS, name, dtype, options, steps=3, seed=seed)
    for step_ours, step_theirs in zip(ours, theirs, strict=True):
        both_finite = all(bool(torch.isfinite(t).all()) for t in step_theirs)
        if both_finite:
            assert relative_difference(step_ours, step_theirs) <= TOLERANCE[dtype]


def test_constructor_signature_and_defaults_match_torch():
    ours = inspect.signature(descend.LBFGS.__init__).parameters
    theirs = inspect.signature(torch.optim.LBFGS.__init__).parameters
    for name, parameter in theirs.items():
        assert name in ours
        assert ours[name].default == parameter.default, name
        assert ours[name].kind == parameter.kind, name
    param = torch.zeros(3, requires_grad=True)
    assert descend.LBFGS([param]).defaults == torch.optim.LBFGS([param]).defaults


@pytest.mark.parametrize("direction", ["torch-to-descend", "descend-to-torch"])
def test_state_dict_loads_both_ways(direction):
    first, second = (
        (torch.optim.LBFGS, descend.LBFGS)
        if direction == "torch-to-descend"
        else (descend.LBFGS, torch.optim.LBFGS)
    )
    options = {"line_search_fn": "strong_wolfe", "max_iter": 4}

    def make(cls, params):
        return cls(params, **options)

    params, loss = mlp(torch.float64, 3)
    optimizer = make(first, params)

    def closure_for(opt, fn):
        def closure():
            opt.zero_grad()
            value = fn()
            value.backward()
            return value

        return closure

    for _ in range(2):
        optimizer.step(closure_for(optimizer, loss))
    saved = copy.deepcopy(optimizer.state_dict())
    snapshot = [p.detach().clone() for p in params]

    # Continue with the same class, and with the other class loading the state dict.
    for _ in range(2):
        optimizer.step(closure_for(optimizer, loss))
    expected = [p.detach().clone() for p in params]

    with torch.no_grad():
        for p, value in zip(params, snapshot, strict=True):
            p.copy_(value)
    resumed = make(second, params)
    resumed.load_state_dict(saved)
    for _ in range(2):
        resumed.step(closure_for(resumed, loss))
    assert relative_difference([p.detach() for p in params], expected) == 0.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lr": -1.0}, "lr=-1.0 is out of range"),
        ({"lr": torch.ones(2)}, "1 element"),
        ({"max_iter": 0}, "max_iter=0 is out of range"),
        ({"max_iter": 2.5}, "max_iter=2.5 is invalid"),
        ({"max_eval": 0}, "max_eval=0 is out of range"),
        ({"history_size": 0}, "history_size=0 is out of range"),
        ({"tolerance_grad": math.nan}, "tolerance_grad=nan is invalid"),
        ({"max_eval": -1}, "max_eval=-1 is out of range"),
        ({"history_size": 2.5}, "history_size=2.5 is invalid"),
        ({"tolerance_change": math.nan}, "tolerance_change=nan is invalid"),
        ({"line_search_fn": "armijo"}, "line_search_fn='armijo' is invalid"),
        ({"nonfinite": "skip"}, "nonfinite='skip' is invalid"),
    ],
)
def test_invalid_arguments_raise_value_error(options, message):
    with pytest.raises(ValueError, match=message):
        descend.LBFGS([torch.zeros(2, requires_grad=True)], **options)


@pytest.mark.parametrize(
    "options",
    [
        {"tolerance_grad": -math.inf},  # every iteration runs: none can stop early
        {"tolerance_grad": -math.inf, "tolerance_change": -math.inf},
        {"tolerance_grad": -1.0, "tolerance_change": -1e-3, "line_search_fn": "strong_wolfe"},
        {"tolerance_change": -math.inf, "line_search_fn": "strong_wolfe", "max_iter": 6},
        {"tolerance_grad": math.inf},  # stops at once, as torch does
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_tolerances_torch_accepts_run_as_in_torch(options):
    # torch.optim.LBFGS takes any tolerance; -inf is the usual way to force every iteration.
    ours, our_losses, our_optimizer = run(
        descend.LBFGS, "least_squares", torch.float64, options, steps=3
    )
    theirs, their_losses, their_optimizer = run(
        torch.optim.LBFGS, "least_squares", torch.float64, options, steps=3
    )
    for step_ours, step_theirs in zip(ours, theirs, strict=True):
        assert relative_difference(step_ours, step_theirs) <= TOLERANCE[torch.float64]
    assert our_losses == pytest.approx(their_losses, rel=TOLERANCE[torch.float64])
    for key in ("func_evals", "n_iter"):
        assert (
            our_optimizer.state[our_optimizer.param_groups[0]["params"][0]][key]
            == their_optimizer.state[their_optimizer.param_groups[0]["params"][0]][key]
        )


def test_a_whole_float_history_size_counts_as_the_integer():
    # torch accepts history_size=3.0 and then fails at the first step ([None] * 3.0).
    options = {"line_search_fn": "strong_wolfe", "history_size": 3}
    ours, _, _ = run(
        descend.LBFGS, "rosenbrock", torch.float64, {**options, "history_size": 3.0}, steps=4
    )
    theirs, _, _ = run(torch.optim.LBFGS, "rosenbrock", torch.float64, options, steps=4)
    for step_ours, step_theirs in zip(ours, theirs, strict=True):
        assert relative_difference(step_ours, step_theirs) <= TOLERANCE[torch.float64]


def test_more_than_one_group_is_refused():
    groups = [
        {"params": [torch.zeros(1, requires_grad=True)]},
        {"params": [torch.zeros(1, requires_grad=True)]},
    ]
    with pytest.raises(ValueError, match="parameter groups"):
        descend.LBFGS(groups)


# -- non-finite values and failing line searches ----------------------------------------------


def closure_of(optimizer, fn):
    def closure():
        optimizer.zero_grad()
        value = fn()
        value.backward()
        return value

    return closure


def test_non_finite_loss_at_the_start_raises_and_changes_nothing():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    optimizer = descend.LBFGS([x])
    with pytest.raises(NonFiniteError, match="non-finite loss"):
        optimizer.step(closure_of(optimizer, lambda: (x * math.nan).sum()))
    assert torch.equal(x.detach(), torch.tensor([1.0, 2.0]))
    assert optimizer.state[x]["n_iter"] == 0


def test_non_finite_gradient_at_the_start_raises():
    x = torch.tensor([0.0, 2.0], requires_grad=True)
    optimizer = descend.LBFGS([x])
    with pytest.raises(NonFiniteError, match="gradient holds inf or NaN"):
        optimizer.step(closure_of(optimizer, lambda: x.sqrt().sum()))


def test_diverging_fixed_step_raises_and_restores_the_parameters():
    x = torch.tensor([3.0, -2.0], dtype=torch.float64, requires_grad=True)
    optimizer = descend.LBFGS([x], lr=1e200)
    with pytest.raises(NonFiniteError, match="put back to the last finite point"):
        optimizer.step(closure_of(optimizer, lambda: (x**4).sum()))
    assert torch.equal(x.detach(), torch.tensor([3.0, -2.0], dtype=torch.float64))
    # The state stays consistent: a smaller step continues from there.
    optimizer.param_groups[0]["lr"] = 1e-3
    optimizer.step(closure_of(optimizer, lambda: (x**4).sum()))
    assert float((x.detach() ** 4).sum()) < 97.0


def test_strong_wolfe_steps_back_from_a_non_finite_region():
    # -log(1 - x^2) + c x is finite only for |x| < 1. From 0 the first trial leaves the domain.
    c = torch.tensor([30.0, -20.0], dtype=torch.float64)

    def barrier(x):
        inside = x.abs() < 1
        if not bool(inside.all()):
            return (x * math.inf).sum() + math.inf
        return -torch.log(1 - x * x).sum() + c @ x

    x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimizer = descend.LBFGS([x], line_search_fn="strong_wolfe", max_iter=50)
    optimizer.step(closure_of(optimizer, lambda: barrier(x)))
    assert bool(torch.isfinite(x).all()) and float(x.detach().abs().max()) < 1
    expected = (1 - torch.sqrt(1 + c * c)) / c
    assert torch.allclose(x.detach(), expected, atol=1e-6)


def test_propagate_mode_lets_nan_through_like_torch():
    results = []
    for cls, extra in ((descend.LBFGS, {"nonfinite": "propagate"}), (torch.optim.LBFGS, {})):
        x = torch.tensor([1.0, 2.0], requires_grad=True)
        optimizer = cls([x], **extra)
        optimizer.step(closure_of(optimizer, lambda x=x: (x * math.nan).sum()))
        results.append(x.detach().clone())
    assert bool(torch.isnan(results[0]).all()) and bool(torch.isnan(results[1]).all())


def test_unsatisfiable_line_search_leaves_the_parameters_as_torch_does():
    # The gradient points the wrong way (loss x.x, but gradient -2x, by detaching the value):
    # no step lowers the loss, the search returns t = 0 and the step ends without moving.
    results = []
    for cls in (descend.LBFGS, torch.optim.LBFGS):
        x = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
        optimizer = cls([x], line_search_fn="strong_wolfe")

        def wrong(x=x):
            return (x * x).sum().detach() + (-(x * x)).sum() - (-(x * x)).sum().detach()

        optimizer.step(closure_of(optimizer, wrong))
        results.append(x.detach().clone())
    assert torch.equal(results[0], torch.tensor([1.0, -2.0], dtype=torch.float64))
    assert torch.equal(results[0], results[1])
