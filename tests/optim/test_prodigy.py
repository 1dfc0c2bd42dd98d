"""descend.Prodigy against prodigyopt.Prodigy (same arguments, same numbers, same state and the
same estimate of d), on every executor, through checkpoints; and its refusals."""

from __future__ import annotations

import copy
import inspect
import textwrap
from pathlib import Path

import numpy as np
import prodigyopt
import pytest
import torch

import descend
from descend.kernels.numpy import RuleStepper
from descend.testing import ErrorTracker, record_parity
from tests.distributed.launch import one_rank_mesh
from tests.interpreter import run_under_triton_interpreter

ROOT = Path(__file__).resolve().parents[2]
#: A convolution's weight, linear weights, vectors and a scalar.
SHAPES = [(4, 3, 3, 3), (6, 5), (5,), (3, 4, 2, 2), (7,), (2, 9), ()]
#: The reference computes in the same order as descend (a dot product and a sum per tensor,
#: added in the same order), so only roundings of the last place differ.
TOLERANCE = 1e-10
#: The estimate of d and its sums, as both keep them in every group.
GROUP_KEYS = ("d", "d_max", "d_numerator", "k")
OPTIONS = {
    "defaults": {},
    "coupled decay, bias correction": dict(
        weight_decay=0.1, decouple=False, use_bias_correction=True
    ),
    "no m, safeguard, growth": dict(
        betas=(0.0, 0.99), weight_decay=0.05, safeguard_warmup=True, growth_rate=1.05
    ),
    "beta3, d_coef, d0, lr": dict(beta3=0.9, d_coef=2.0, d0=1e-4, lr=0.5),
}
#: The second group's own settings (the estimate of d is shared: these are per group).
SECOND_GROUP = {"eps": 1e-6, "weight_decay": 0.02, "safeguard_warmup": True}


def make_params(dtype: torch.dtype = torch.float64, seed: int = 0) -> list[torch.Tensor]:
    """Reproducible leaf tensors of :data:`SHAPES`."""
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(shape, dtype=dtype, generator=generator).requires_grad_() for shape in SHAPES
    ]


def groups_of(params: list[torch.Tensor], second: dict | None = None) -> list[dict]:
    """Two param groups: the first four tensors, then the rest with ``second``'s settings."""
    return [{"params": params[:4]}, {"params": params[4:], **(second or SECOND_GROUP)}]


def gradients(params: list[torch.Tensor], step: int, generator: torch.Generator) -> None:
    """Gradients of a quadratic pull plus noise; tensor 2 has none every third step."""
    for index, param in enumerate(params):
        if index == 2 and step % 3 == 1:
            param.grad = None
            continue
        noise = torch.randn(param.shape, dtype=param.dtype, generator=generator)
        param.grad = 0.3 * param.detach() + 0.1 * noise


def side_by_side(options: dict, backend: str = "auto", steps: int = 100, **kwargs):
    """Run descend.Prodigy and prodigyopt.Prodigy on the same gradients; the worst relative
    error of the parameters, of the state, and of the groups' estimate, over every step."""
    ours_params, theirs_params = make_params(), make_params()
    ours = descend.Prodigy(groups_of(ours_params, **kwargs), backend=backend, **options)
    theirs = prodigyopt.Prodigy(groups_of(theirs_params, **kwargs), **options)
    generator = torch.Generator().manual_seed(1)
    tracker = ErrorTracker()
    for step in range(steps):
        gradients(ours_params, step, generator)
        for a, b in zip(ours_params, theirs_params, strict=True):
            b.grad = None if a.grad is None else a.grad.clone()
        ours.step()
        theirs.step()
        for index, (a, b) in enumerate(zip(ours_params, theirs_params, strict=True)):
            tracker.observe(("param", index), a.detach(), b.detach())
            for key, value in theirs.state.get(b, {}).items():
                if torch.is_tensor(value) and key != "step":
                    # s and p0 are flattened in the reference.
                    tracker.observe((key, index), ours.state[a][key].reshape(value.shape), value)
        for number, (group, other) in enumerate(
            zip(ours.param_groups, theirs.param_groups, strict=True)
        ):
            for key in GROUP_KEYS:
                tracker.observe(
                    ("group", number, key),
                    torch.tensor(float(group[key]), dtype=torch.float64),
                    torch.tensor(float(other[key]), dtype=torch.float64),
                )
    errors = (
        tracker.worst(lambda key: key[0] == "param"),
        tracker.worst(lambda key: key[0] not in ("param", "group")),
        tracker.worst(lambda key: key[0] == "group"),
    )
    # The groups' estimate d is state too.
    record_parity(errors[0], max(errors[1:]), ours_params[0].dtype)
    return (*errors, ours)


#: One case in the fast lane; the others (seconds each) are slow.
CASES = [
    (name, backend)
    if (name, backend) == ("coupled decay, bias correction", "reference")
    else pytest.param(name, backend, marks=pytest.mark.slow)
    for name in OPTIONS
    for backend in ("reference", "fused")
]


@pytest.mark.parametrize(("name", "backend"), CASES)
def test_every_option_matches_prodigyopt(name, backend):
    params, state, estimate, ours = side_by_side(OPTIONS[name], backend)
    assert params <= TOLERANCE and state <= TOLERANCE and estimate <= TOLERANCE, (
        params,
        state,
        estimate,
    )
    # The run moved d far from d0, so the estimate was exercised.
    assert ours.param_groups[0]["d"] > 100 * ours.param_groups[0]["d0"]


@pytest.mark.slow
def test_a_group_with_lr_zero_and_a_first_step_without_gradient_match_prodigyopt():
    # lr = 0 leaves a group out of the sums and its moments alone; an all-zero first gradient
    # gives sum |s| = 0, a step that moves nothing and keeps the estimate.
    params, state, estimate, ours = side_by_side({}, second={"lr": 0.0, "weight_decay": 0.1})
    assert max(params, state, estimate) <= TOLERANCE
    ours_params, theirs_params = make_params(), make_params()
    ours = descend.Prodigy(groups_of(ours_params))
    theirs = prodigyopt.Prodigy(groups_of(theirs_params))
    generator = torch.Generator().manual_seed(1)
    for step in range(20):
        gradients(ours_params, step, generator)
        for a, b in zip(ours_params, theirs_params, strict=True):
            if step == 0 and a.grad is not None:
                a.grad.zero_()
            b.grad = None if a.grad is None else a.grad.clone()
        before = [p.detach().clone() for p in ours_params]
        ours.step()
        theirs.step()
        if step == 0:
            assert all(torch.equal(p, q) for p, q in zip(before, ours_params, strict=True))
            assert ours.param_groups[0]["k"] == theirs.param_groups[0]["k"] == 0
    for a, b in zip(ours_params, theirs_params, strict=True):
        assert (a - b).abs().max() <= TOLERANCE * b.abs().max()


def test_a_wrong_formula_is_caught_at_this_tolerance():
    # A reference whose estimate is scaled by 1 + 1e-6 must fail the tolerance above by far.
    ours_params, theirs_params = make_params(), make_params()
    ours = descend.Prodigy(groups_of(ours_params))
    theirs = prodigyopt.Prodigy(groups_of(theirs_params), d_coef=1.0 + 1e-6)
    generator = torch.Generator().manual_seed(1)
    for step in range(30):
        gradients(ours_params, step, generator)
        for a, b in zip(ours_params, theirs_params, strict=True):
            b.grad = None if a.grad is None else a.grad.clone()
        ours.step()
        theirs.step()
    worst = max(
        ((a - b).abs().max() / b.abs().max()).item()
        for a, b in zip(ours_params, theirs_params, strict=True)
        if b.abs().max() > 0
    )
    assert worst > 1e3 * TOLERANCE


def run(backend: str, dtype: torch.dtype, steps: int, checkpoint_at: int | None = None):
    """Parameters and state of a descend.Prodigy run; with ``checkpoint_at``, the optimizer
    is rebuilt from its state dict (a deep copy) at that step and the run continues in it."""
    params = make_params(dtype)
    optimizer = descend.Prodigy(groups_of(params), backend=backend, weight_decay=0.01)
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        if step == checkpoint_at:
            saved = copy.deepcopy(optimizer.state_dict())
            optimizer = descend.Prodigy(groups_of(params), backend=backend, weight_decay=0.01)
            optimizer.load_state_dict(saved)
        gradients(params, step, generator)
        optimizer.step()
    states = [optimizer.state[p] for p in params]
    return [p.detach().clone() for p in params], states, optimizer.param_groups


def test_a_checkpoint_mid_run_continues_identically():
    params, states, groups = run("auto", torch.float64, 60)
    resumed, resumed_states, resumed_groups = run("auto", torch.float64, 60, checkpoint_at=25)
    for a, b in zip(params, resumed, strict=True):
        assert torch.equal(a, b)
    for state, other in zip(states, resumed_states, strict=True):
        assert state.keys() == other.keys()
        for key in state:
            assert torch.equal(state[key], other[key]), key
    for group, other in zip(groups, resumed_groups, strict=True):
        assert all(group[key] == other[key] for key in (*GROUP_KEYS, "d_hat", "d_denom"))


@pytest.mark.slow
def test_the_fused_executor_gives_the_reference_executor_s_bits():
    for dtype in (torch.float32, torch.float64):
        ours, _, _ = run("reference", dtype, 30)
        fused, _, _ = run("fused", dtype, 30)
        assert all(torch.equal(a, b) for a, b in zip(ours, fused, strict=True)), dtype


@pytest.mark.slow  # a fresh process for Triton's interpreter: seconds
def test_triton_interpreter_gives_the_reference_executor_s_bits(tmp_path):
    pytest.importorskip("triton", reason="needs Triton")
    out = tmp_path / "triton.pt"
    script = textwrap.dedent(f"""
        import torch
        from tests.optim.test_prodigy import run
        params, states, _ = run("triton", torch.float32, 12)
        torch.save((params, [dict(s) for s in states]), {str(out)!r})
    """)
    done = run_under_triton_interpreter(script, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    triton_params, triton_states = torch.load(out)
    params, states, _ = run("reference", torch.float32, 12)
    for a, b in zip(params, triton_params, strict=True):
        assert torch.equal(a, b)
    for state, other in zip(states, triton_states, strict=True):
        for key in ("exp_avg", "exp_avg_sq", "s"):
            if key in state:
                assert torch.equal(state[key], other[key]), key


def test_constructor_signature_and_defaults_match_prodigyopt():
    ours = inspect.signature(descend.Prodigy.__init__).parameters
    theirs = inspect.signature(prodigyopt.Prodigy.__init__).parameters
    for name, parameter in theirs.items():
        if name == "growth_rate":  # unbounded: None here (the rule's), inf there
            assert ours[name].default is None and parameter.default == float("inf")
            continue
        assert name in ours and ours[name].default == parameter.default, name
    unbounded = descend.Prodigy([torch.zeros(3, requires_grad=True)], growth_rate=float("inf"))
    assert unbounded.param_groups[0]["growth_rate"] is None
    optimizer = descend.Prodigy([torch.zeros(3, requires_grad=True)])
    assert optimizer.defaults["lr"] == 1.0
    group = optimizer.param_groups[0]
    assert group["d"] == group["d_max"] == group["d0"] == 1e-6 and group["k"] == 0


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(lr=-1.0), r"lr=-1.0"),
        (dict(betas=(1.0, 0.999)), r"betas\[0\]=1.0"),
        (dict(beta3=1.5), r"beta3=1.5"),
        (dict(eps=-1.0), r"eps=-1.0"),
        (dict(d0=0.0), r"d0=0.0"),
        (dict(d_coef=-1.0), r"d_coef=-1.0"),
        (dict(growth_rate=0.5), r"growth_rate=0.5"),
        (dict(slice_p=2), r"slice_p=2"),
        (dict(fsdp_in_use=True), r"fsdp_in_use=True"),
    ],
)
def test_bad_arguments_name_the_value(options, message):
    with pytest.raises(ValueError, match=message):
        descend.Prodigy([torch.zeros(3, requires_grad=True)], **options)


@pytest.mark.parametrize(
    "second, message",
    [
        ({"lr": 0.5}, r"group 1 has lr=0.5"),
        ({"betas": (0.8, 0.999)}, r"group 1 has beta1=0.8"),
        ({"d_coef": 2.0}, r"group 1 has d_coef=2.0"),
    ],
)
def test_groups_that_cannot_share_one_estimate_are_refused_before_any_change(second, message):
    params = make_params()
    optimizer = descend.Prodigy(groups_of(params, second))
    before = [p.detach().clone() for p in params]
    gradients(params, 0, torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match=message):
        optimizer.step()
    assert all(torch.equal(p, q) for p, q in zip(before, params, strict=True))
    assert not optimizer.state and optimizer.param_groups[0]["k"] == 0


def test_the_lab_s_numpy_stepper_makes_the_torch_class_s_iterates():
    # The lab runs rules on NumPy vectors (RuleStepper): the sums behind d come from the one
    # vector there, so its path equals descend.Prodigy's on the same vector.
    x0 = np.linspace(-1.0, 2.0, 9)
    param = torch.tensor(x0, requires_grad=True)
    optimizer = descend.Prodigy([param], weight_decay=0.01, use_bias_correction=True)
    stepper = RuleStepper.from_optimizer(optimizer, x0)
    x = x0.copy()
    for step in range(40):
        grad = 0.5 * x + np.sin(3.0 * x + step)
        param.grad = torch.tensor(grad)
        optimizer.step()
        x = stepper.step(x, grad)
    np.testing.assert_allclose(x, param.detach().numpy(), rtol=1e-12, atol=1e-15)
    assert optimizer.param_groups[0]["d"] > 100 * 1e-6  # d was estimated, not held


def test_a_sharded_parameter_is_refused_before_anything_changes():
    # A sum over one rank's shards would differ from rank to rank: refused, not summed.
    from torch.distributed.tensor import Shard, distribute_tensor

    with one_rank_mesh() as mesh:
        param = torch.nn.Parameter(distribute_tensor(torch.ones(4, 2), mesh, [Shard(0)]))
        param.grad = distribute_tensor(torch.ones(4, 2), mesh, [Shard(0)])
        optimizer = descend.Prodigy([param])
        with pytest.raises(ValueError, match="is a DTensor.*Prodigy sums over every parameter"):
            optimizer.step()
        assert torch.equal(param.full_tensor(), torch.ones(4, 2)) and not optimizer.state
