"""descend.PSGDKron against kron_torch.Kron 0.3.3 (same arguments, same numbers, same state:
momentum and Kronecker factors), its random stream (reproducible, resumable) and its checks.

How the two are made to take the same steps:

- the reference compiles its preconditioner functions with ``torch.compile``; the compiled
  kernels may fuse and reorder float operations, so the reference runs the very same Python
  functions eagerly (``_torchdynamo_orig_callable``), as does its update-probability schedule;
- the reference draws its probes from torch's global generator (``torch.randn_like``) and its
  rebalancing draws from ``random.Random(42)``; while the reference steps, ``torch.randn_like``
  is replaced by descend's draw for the same parameter and step
  (:func:`descend.rules.psgd_kron.probe_vectors`) and its ``rng`` by descend's rebalancing
  draw (:func:`~descend.rules.psgd_kron.balance_draw`), so both use one stream;
- the reference cannot refit a scalar's factor (it cannot permute a 0-d probe), so a scalar
  parameter of ours is compared with the reference's run of the same value as a 1-element
  vector, whose factor and arithmetic are the scalar's.

With that, every operation is the reference's in its order, and float64 runs agree bit for
bit (checked at 1e-10 of each tensor's largest magnitude).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import kron_torch
import kron_torch.kron as kron_module
import pytest
import torch

import descend
from descend.rules import psgd_kron
from descend.rules.kronecker import MEMORY_SAVE_MODES, diagonal_dims, expressions, merged_shape
from descend.rules.psgd_kron import (
    balance_draw,
    kron_matrices,
    probe_vectors,
    seed_key,
    update_probability,
)
from descend.testing import record_parity, relative_error

#: A scalar, vectors, linear weights, a convolution's weight (merged into a matrix) and a
#: weight with a dimension of size 1 (a diagonal factor in a matrix).
SHAPES = [(), (6,), (8, 5), (4, 3, 3, 3), (5, 7), (3,), (1, 4)]
#: Two param groups: the second with its own learning rate, momentum and weight decay.
GROUPS = [{"lr": 1e-2}, {"lr": 3e-3, "b1": 0.95, "weight_decay": 0.1}]
#: A seed whose stream rebalances the factors within 100 steps (steps 33 and 38): the default.
SEED = 0
#: Each option of the reference at least once.
OPTIONS = [
    {},
    {"weight_decay": 0.01, "momentum_into_precond_update": False},
    {"memory_save_mode": "one_diag"},
    {"memory_save_mode": "smart_one_diag", "max_size_triangular": 6},
    {"memory_save_mode": "all_diag"},
    {"merge_dims": False, "min_ndim_triangular": 3},
    {"preconditioner_update_probability": 0.3},
    {"schedule": (1.0, 0.1, 0.05, 20)},
    {"precond_init_scale": 2.0, "precond_lr": 0.3},
]
# Same operations in the same order: agreement to rounding, and in fact bit for bit.
PARITY = 1e-10


def _ids(options: dict[str, Any]) -> str:
    return "-".join(f"{key}={value}" for key, value in options.items()) or "defaults"


def _eager(function: Callable[..., Any]) -> Callable[..., Any]:
    """The Python function behind a ``torch.compile`` wrapper."""
    return getattr(function, "_torchdynamo_orig_callable", function)


class _BalanceDraws:
    """Stands in for the reference's ``random.Random(42)``: descend's rebalancing draw of
    each step in turn."""

    def __init__(self, seed: int) -> None:
        self.seed, self.step = seed_key(seed), 0

    def random(self) -> float:
        self.step += 1
        return balance_draw(self.seed, self.step)


@contextmanager
def _reference_draws(probes: list[tuple[int, int]]) -> Iterator[None]:
    """While the reference steps: its compiled functions run eagerly, and each
    ``torch.randn_like`` it calls returns descend's probe for the next (stream, step) of
    ``probes`` (one per parameter with a gradient, in the param groups' order)."""
    patched = {
        name: getattr(kron_module, name)
        for name in ("_update_precond", "_precond_grad", "_clip_update_rms", "_balance_Q")
    }
    pending = iter(probes)
    randn_like = torch.randn_like

    def drawn(like: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        stream, step = next(pending)
        return probe_vectors(like, seed_key(SEED), stream, step)

    try:
        for name, function in patched.items():
            setattr(kron_module, name, _eager(function))
        torch.randn_like = drawn  # type: ignore[assignment]
        yield
    finally:
        torch.randn_like = randn_like
        for name, function in patched.items():
            setattr(kron_module, name, function)


def _reference_options(options: dict[str, Any]) -> dict[str, Any]:
    """kron_torch's arguments for ``options`` (a schedule as its schedule object, run eagerly)."""
    options = dict(options)
    schedule = options.pop("schedule", None)
    probability = options.pop("preconditioner_update_probability", None)
    if probability is None:
        high, low, decay, flat = schedule or (1.0, 0.03, 0.001, 500)
        probability = kron_torch.kron.precond_update_prob_schedule(high, low, decay, flat)
        probability._compiled = False
    return {**options, "preconditioner_update_probability": probability}


def _our_options(options: dict[str, Any]) -> dict[str, Any]:
    options = dict(options)
    schedule = options.pop("schedule", None)
    return {**options, **({"update_prob_schedule": schedule} if schedule else {})}


def _groups(params: list[torch.Tensor], groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"params": params[index :: len(groups)], **options} for index, options in enumerate(groups)
    ]


class _Run:
    """Both optimizers on the same starting point and gradients; the worst relative
    differences of parameters and of state (momentum, factors) over the run."""

    def __init__(
        self,
        options: dict[str, Any],
        dtype: torch.dtype = torch.float64,
        shapes: list[tuple[int, ...]] = SHAPES,
        make_ours: Callable[..., torch.optim.Optimizer] = descend.PSGDKron,
    ) -> None:
        generator = torch.Generator().manual_seed(0)
        start = [torch.randn(shape, dtype=dtype, generator=generator) for shape in shapes]
        self.ours = [value.clone().requires_grad_() for value in start]
        # The reference runs a scalar as a 1-element vector (see the module docstring).
        self.theirs = [
            value.reshape(value.shape or (1,)).clone().requires_grad_() for value in start
        ]
        precision = {"precond_dtype": dtype} if dtype == torch.float64 else {}
        self.ours_optimizer = make_ours(
            _groups(self.ours, GROUPS), seed=SEED, **precision, **_our_options(options)
        )
        self.reference = kron_torch.Kron(
            _groups(self.theirs, GROUPS), **precision, **_reference_options(options)
        )
        self.reference.rng = _BalanceDraws(SEED)
        self.generator = generator
        self.dtype = dtype
        self.param_error = self.state_error = 0.0
        self.order = [p for group in self.ours_optimizer.param_groups for p in group["params"]]
        self.their_order = [p for group in self.reference.param_groups for p in group["params"]]

    def run(self, steps: int) -> _Run:
        for step in range(1, steps + 1):
            for ours, theirs in zip(self.ours, self.theirs, strict=True):
                gradient = torch.randn(ours.shape, dtype=self.dtype, generator=self.generator)
                ours.grad, theirs.grad = gradient.clone(), gradient.reshape(theirs.shape).clone()
            self.ours_optimizer.step()
            probes = [(stream, step) for stream in range(len(self.order))]
            with _reference_draws(probes):
                self.reference.step()
            self._observe()
        record_parity(self.param_error, self.state_error, self.dtype)
        return self

    def _observe(self) -> None:
        def error(mine: torch.Tensor, reference: torch.Tensor) -> float:
            return relative_error(mine.reshape(reference.shape), reference)

        for ours, theirs in zip(self.order, self.their_order, strict=True):
            self.param_error = max(self.param_error, error(ours, theirs))
            mine, reference = self.ours_optimizer.state[ours], self.reference.state[theirs]
            errors = [error(mine["momentum_buffer"], reference["momentum_buffer"])]
            factors = [mine[f"Q_{index}"] for index in range(len(reference["Q"]))]
            assert f"Q_{len(factors)}" not in mine
            for factor, their_factor in zip(factors, reference["Q"], strict=True):
                errors.append(error(factor, their_factor))
            self.state_error = max(self.state_error, *errors)


@pytest.mark.slow
@pytest.mark.parametrize("options", OPTIONS, ids=[_ids(options) for options in OPTIONS])
def test_every_option_matches_kron_torch_for_100_steps(options):
    run = _Run(options).run(100)
    assert run.param_error <= PARITY
    assert run.state_error <= PARITY


@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=pytest.mark.slow)])
def test_a_short_run_matches_kron_torch(backend):
    # The fast lane's check: 3 steps of the defaults, every shape, two groups, with the
    # elementwise parts on torch (reference) or compiled (fused; the 100-step runs use auto).
    def ours(groups, **options):
        return descend.PSGDKron(groups, backend=backend, **options)

    run = _Run({}, make_ours=ours).run(3)
    assert run.param_error <= PARITY
    assert run.state_error <= PARITY


@pytest.mark.slow
def test_float32_with_float32_factors_matches_kron_torch():
    # The reference's default dtype of the factors is float32 for every parameter.
    run = _Run({"weight_decay": 0.01}, dtype=torch.float32).run(30)
    assert run.param_error <= PARITY
    assert run.state_error <= PARITY


def test_the_parity_seed_rebalances_within_the_run():
    # So the 100-step runs above cover the rebalancing of the factors.
    assert [step for step in range(1, 101) if balance_draw(seed_key(SEED), step) < 0.01]


# -- broken copies must fail at this tolerance ---------------------------------------------


def refit_with_a_wrong_sign(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make descend's factor refit step up the criterion instead of down (Q + change instead
    of Q - change): the broken copy each PSGD-Kron reference comparison must catch."""
    refit = psgd_kron.refit_factors

    def ascending(factors, momentum, probe, hypers):
        before = [factor.clone() for factor in factors]
        refit(factors, momentum, probe, hypers)
        for factor, old in zip(factors, before, strict=True):
            factor.copy_(2 * old - factor)

    monkeypatch.setattr(psgd_kron, "refit_factors", ascending)


@pytest.mark.slow
def test_a_wrong_sign_in_the_factors_update_is_caught(monkeypatch):
    refit_with_a_wrong_sign(monkeypatch)
    run = _Run({}).run(5)
    assert run.state_error > 1e3 * PARITY
    assert run.param_error > 1e3 * PARITY


@pytest.mark.slow
def test_a_step_size_wrong_by_one_part_in_ten_million_is_caught():
    def slightly_off(groups, **options):
        for group in groups:
            group["lr"] *= 1 + 1e-7
        return descend.PSGDKron(groups, **options)

    run = _Run({}, make_ours=slightly_off).run(10)
    assert run.param_error > 10 * PARITY


# -- the schedule -----------------------------------------------------------------------------


def test_the_update_probability_is_the_reference_schedule_in_float32():
    schedule = kron_torch.kron.precond_update_prob_schedule()
    hypers = {
        "preconditioner_update_probability": None,
        "max_prob": 1.0,
        "min_prob": 0.03,
        "prob_decay": 0.001,
        "flat_start": 500,
    }
    for index in [0, 1, 499, 500, 501, 777, 1000, 2500, 4000, 4100, 10000]:
        theirs = schedule._schedule_fn(torch.tensor(index, dtype=torch.int32).float())
        assert torch.equal(update_probability(hypers, index), theirs), index


@pytest.mark.slow
def test_refits_happen_at_the_reference_steps_for_2000_steps(monkeypatch):
    # The default schedule: every step for 500 steps, then every 1/p steps as p decays.
    steps = 2000
    current = [0]
    ours_refits: list[int] = []
    their_refits: list[int] = []
    refit = psgd_kron.refit_factors

    def counted(factors, momentum, probe, hypers):
        ours_refits.append(current[0])
        refit(factors, momentum, probe, hypers)

    monkeypatch.setattr(psgd_kron, "refit_factors", counted)
    ours_param = torch.zeros(2, requires_grad=True)
    ours = descend.PSGDKron([ours_param])
    for step in range(1, steps + 1):
        current[0] = step
        ours_param.grad = torch.ones(2)
        ours.step()
    their_param = torch.zeros(2, requires_grad=True)
    reference = kron_torch.Kron([their_param])
    reference.param_groups[0]["preconditioner_update_probability"]._compiled = False
    reference_update = _eager(kron_module._update_precond)

    def counted_reference(*args: Any) -> None:
        their_refits.append(current[0])
        reference_update(*args)

    monkeypatch.setattr(kron_module, "_update_precond", counted_reference)
    for name in ("_precond_grad", "_clip_update_rms", "_balance_Q"):
        monkeypatch.setattr(kron_module, name, _eager(getattr(kron_module, name)))
    for step in range(1, steps + 1):
        current[0] = step
        their_param.grad = torch.ones(2)
        reference.step()
    assert ours_refits == their_refits
    assert their_refits[:500] == list(range(1, 501))
    assert len(their_refits) < steps - 500  # the schedule thinned them out


# -- the random stream ------------------------------------------------------------------------


def _trajectory(seed: int, steps: int = 4, **options: Any) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    params = [
        torch.randn(shape, dtype=torch.float64, generator=generator).requires_grad_()
        for shape in [(5, 4), (3, 2, 2), (4,)]
    ]
    optimizer = descend.PSGDKron(params, lr=0.01, seed=seed, precond_dtype=torch.float64, **options)
    for _ in range(steps):
        for param in params:
            param.grad = torch.randn(param.shape, dtype=torch.float64, generator=generator)
        optimizer.step()
    return [param.detach().clone() for param in params]


def test_the_same_seed_reproduces_a_run_and_another_seed_changes_it():
    first, second, other = _trajectory(7), _trajectory(7), _trajectory(8)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_the_global_generator_plays_no_part():
    torch.manual_seed(1)
    first = _trajectory(7)
    torch.manual_seed(2)
    second = _trajectory(7)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_each_parameter_draws_its_own_probes():
    like = torch.zeros(4, 3, dtype=torch.float64)
    assert not torch.equal(probe_vectors(like, 0, 0, 1), probe_vectors(like, 0, 1, 1))
    assert not torch.equal(probe_vectors(like, 0, 0, 1), probe_vectors(like, 0, 0, 2))
    assert torch.equal(probe_vectors(like, 0, 1, 5), probe_vectors(like, 0, 1, 5))


def test_a_state_dict_round_trip_continues_the_same_run():
    # A refit every 1/0.4 steps: the refit counter, the step counters, the factors and the
    # random stream all travel in the state dict.
    options = dict(lr=0.01, seed=5, preconditioner_update_probability=0.4)
    generator = torch.Generator().manual_seed(3)
    start = [
        torch.randn(shape, dtype=torch.float64, generator=generator) for shape in [(4, 3), (5,)]
    ]
    gradients = [
        [torch.randn(value.shape, dtype=torch.float64, generator=generator) for value in start]
        for _ in range(9)
    ]

    def steps(optimizer, params, chunk):
        for step_gradients in chunk:
            for param, gradient in zip(params, step_gradients, strict=True):
                param.grad = gradient.clone()
            optimizer.step()

    whole = [value.clone().requires_grad_() for value in start]
    steps(descend.PSGDKron(whole, **options), whole, gradients)
    resumed = [value.clone().requires_grad_() for value in start]
    first = descend.PSGDKron(resumed, **options)
    steps(first, resumed, gradients[:4])
    saved = copy.deepcopy(first.state_dict())
    second = descend.PSGDKron(resumed, **{**options, "seed": 0})
    second.load_state_dict(saved)
    # The checkpoint's stream (seed 5's), not the new optimizer's, and kept as integers.
    stream = second.state[resumed[0]]["probe_stream"]
    assert stream.dtype == torch.int64 and int(stream[0]) == seed_key(5)
    steps(second, resumed, gradients[4:])
    assert all(torch.equal(a, b) for a, b in zip(resumed, whole, strict=True))
    # torch.optim's load casts state to the parameter's dtype; the factors go back to theirs.
    assert second.state[resumed[0]]["Q_0"].dtype == torch.float32


# -- the class --------------------------------------------------------------------------------


def test_constructor_signature_and_defaults_match_kron_torch():
    ours = inspect.signature(descend.PSGDKron.__init__).parameters
    theirs = inspect.signature(kron_torch.Kron.__init__).parameters
    for name, parameter in theirs.items():
        assert name in ours and ours[name].default == parameter.default, name


def test_split_gives_weights_to_kron_and_the_rest_to_adamw():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3), torch.nn.Flatten(), torch.nn.Linear(12, 2)
    )
    groups = descend.PSGDKron.split_parameters(model.parameters())
    assert [p.ndim for p in groups[0]["params"]] == [4, 2]
    assert groups[1]["use_kron"] is False and [p.ndim for p in groups[1]["params"]] == [1, 1]
    optimizer = descend.PSGDKron(groups)
    model(torch.randn(1, 2, 4, 4)).sum().backward()
    optimizer.step()
    assert "Q_1" in optimizer.state[model[0].weight]
    assert "exp_avg" in optimizer.state[model[0].bias]


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(b1=1.0), "b1=1.0"),
        (dict(lr=-1.0), "lr=-1.0"),
        (dict(precond_lr=-0.1), "precond_lr=-0.1"),
        (dict(memory_save_mode="half_diag"), "memory_save_mode='half_diag'"),
        (dict(preconditioner_update_probability=0.0), "preconditioner_update_probability=0.0"),
        (dict(preconditioner_update_probability=1.5), "preconditioner_update_probability=1.5"),
        (dict(preconditioner_update_probability=lambda n: 0.5), "preconditioner_update_prob"),
        (dict(max_size_triangular=-1), "max_size_triangular=-1"),
        (dict(precond_dtype=torch.int8), "precond_dtype='int8'"),
        (dict(mu_dtype=torch.bfloat16), "mu_dtype=torch.bfloat16"),
        (dict(update_prob_schedule=(1.0, 0.0, 0.001, 500)), r"update_prob_schedule\[1\]=0.0"),
        (dict(update_prob_schedule=(1.0, 0.03)), "update_prob_schedule="),
    ],
)
def test_bad_arguments_name_the_value_and_the_range(options, message):
    param = torch.zeros(3, 2, requires_grad=True)
    with pytest.raises(ValueError, match=message):
        descend.PSGDKron([param], **options)


def test_a_schedule_object_of_kron_torch_is_taken_as_its_numbers():
    schedule = kron_torch.kron.precond_update_prob_schedule(0.9, 0.05, 0.01, 20)
    optimizer = descend.PSGDKron(
        [torch.zeros(2, requires_grad=True)], preconditioner_update_probability=schedule
    )
    group = optimizer.param_groups[0]
    assert group["preconditioner_update_probability"] is None
    assert group["update_prob_schedule"] == pytest.approx((0.9, 0.05, 0.01, 20))


@pytest.mark.parametrize("mode", MEMORY_SAVE_MODES)
def test_factors_and_subscripts_are_the_reference_s_for_every_shape(mode):
    options = dict(
        precond_init_scale=3.0,
        max_size_triangular=6,
        min_ndim_triangular=2,
        memory_save_mode=mode,
        merge_dims=True,
    )
    for shape in [(), (1,), (7,), (5, 5), (8, 5), (1, 4), (4, 3, 3, 3), (2, 9, 3), (3, 7)]:
        param = torch.zeros(shape, dtype=torch.float64)
        merged = merged_shape(shape, True)
        theirs, their_expressions = kron_module._init_Q_exprs(
            param.reshape(merged),
            options["precond_init_scale"],
            options["max_size_triangular"],
            options["min_ndim_triangular"],
            mode,
            dtype=torch.float32,
        )
        hypers = {**options, "precond_dtype": None}
        state = kron_matrices(param, hypers)
        ours = [state[f"Q_{index}"] for index in range(len(theirs))]
        assert f"Q_{len(theirs)}" not in state
        assert all(
            torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(ours, theirs, strict=True)
        )
        diagonal = None if not shape else diagonal_dims(merged, hypers)
        assert expressions(diagonal) == (
            their_expressions[0],
            tuple(their_expressions[1]),
            their_expressions[2],
        )
