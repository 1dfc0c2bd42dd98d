"""``cautious=True`` (Liang et al. 2024) on every elementwise rule, against references nobody
here wrote: pytorch_optimizer 4.1.0's cautious Lion, and for the ``torch.optim`` classes their
own step followed by the mask written out in torch (``(d * g > 0)``, rescaled by
``n / (sum + 1)`` as pytorch_optimizer's ``apply_cautious`` does). Also: the applied step
agrees in sign with the gradient (a broken mask fails that check), ``cautious=False`` is the
plain step, and what the switch refuses."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_optimizer import Lion as ReferenceLion

import descend
from descend.kernels import caution as kernel_caution
from descend.optim import optimizer_classes
from descend.rules import RULES
from descend.rules.caution import caution_refusal
from descend.rules.elementwise import abs, sign
from descend.testing import OPTION_GRID, option_combinations, run_side_by_side, torch_class
from tests.distributed.launch import one_rank_mesh

SHAPES = [(), (1,), (7, 3), (5,), (2, 3, 4), (4, 2, 3, 3), (33,)]
#: float64 runs of a few rounding steps per update: far below any formula's error.
F64_TOLERANCE = 1e-10
#: Every rule the switch applies to, from the registry (the others refuse it).
CAUTIOUS_RULES = [name for name, rule in RULES.items() if caution_refusal(rule) is None]
REFUSED_RULES = [name for name, rule in RULES.items() if caution_refusal(rule) is not None]


class MaskedReference:
    """A reference optimizer made cautious by the paper's mask, written out in torch: after
    its own step, each parameter's step ``d = x - x_new`` keeps the components where
    ``d * g > 0`` (``-g`` for a group with ``maximize``), times ``n / (kept + 1)``."""

    def __init__(self, inner: torch.optim.Optimizer) -> None:
        self.inner = inner
        self.param_groups = inner.param_groups
        self.state = inner.state

    @torch.no_grad()
    def step(self) -> None:
        before = {
            p: p.detach().clone()
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None
        }
        self.inner.step()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                direction = -p.grad if group.get("maximize", False) else p.grad
                d = before[p] - p
                mask = (d * direction > 0).to(p.dtype)
                mask.mul_(mask.numel() / (mask.sum() + 1))
                p.copy_(before[p] - d * mask)


def _ids(options: list[dict]) -> list[str]:
    return ["-".join(f"{k}={v}" for k, v in o.items()) for o in options]


CASES = [(name, o) for name in OPTION_GRID for o in option_combinations(name)]


def _run_against_masked_torch(name: str, options: dict, backend: str = "auto") -> tuple:
    groups = [{}, {"lr": options["lr"] * 0.5}]
    return run_side_by_side(
        lambda params: getattr(descend, name)(params, cautious=True, backend=backend, **options),
        lambda params: MaskedReference(torch_class(name)(params, foreach=False, **options)),
        SHAPES,
        torch.float64,
        steps=60,
        group_options=groups,
    )[:2]


#: The fast lane's cases (the slow lane runs every option of every class): the paper's
#: Adam and AdamW, and SGD with momentum.
FAST_CASES = {
    "SGD": {"lr": 0.05, "momentum": 0.9},
    "Adam": {"lr": 0.01},
    "AdamW": {"lr": 0.01, "weight_decay": 0.1, "maximize": True},
}


@pytest.mark.parametrize("name", list(FAST_CASES))
def test_sgd_momentum_adam_and_adamw_match_torch_optim_with_the_mask(name):
    param_error, state_error = _run_against_masked_torch(name, FAST_CASES[name], "reference")
    assert param_error < F64_TOLERANCE and state_error < F64_TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize(("name", "options"), CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_every_option_matches_torch_optim_with_the_mask(name, options, backend):
    param_error, state_error = _run_against_masked_torch(name, options, backend)
    assert param_error < F64_TOLERANCE and state_error < F64_TOLERANCE


def test_the_mask_changes_the_iterates():
    """The masked reference is not the plain one (else the comparisons above prove nothing)."""
    options = {"lr": 0.01}
    plain = run_side_by_side(
        lambda params: descend.Adam(params, cautious=True, **options),
        lambda params: torch.optim.Adam(params, foreach=False, **options),
        SHAPES,
        torch.float64,
        steps=20,
    )
    assert plain.param_error > 1e-3


@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=pytest.mark.slow)])
def test_lion_matches_pytorch_optimizer_cautious_lion(backend):
    """pytorch_optimizer's Lion with ``cautious=True`` masks its sign step exactly as the
    switch does (without weight decay, which it applies unmasked before the step)."""
    groups = [{}, {"lr": 5e-3, "betas": (0.8, 0.9)}]
    param_error, state_error, *_ = run_side_by_side(
        lambda params: descend.Lion(params, lr=1e-2, cautious=True, backend=backend),
        lambda params: ReferenceLion(params, lr=1e-2, cautious=True, foreach=False),
        SHAPES,
        torch.float64,
        steps=100,
        group_options=groups,
        missing_grad_every=None,
    )
    assert param_error < F64_TOLERANCE and state_error < F64_TOLERANCE


def test_lion_differs_from_the_plain_reference():
    param_error, *_ = run_side_by_side(
        lambda params: descend.Lion(params, lr=1e-2, cautious=True),
        lambda params: ReferenceLion(params, lr=1e-2, foreach=False),
        SHAPES,
        torch.float64,
        steps=20,
        missing_grad_every=None,
    )
    assert param_error > 1e-3


# -- the applied step agrees with the gradient --------------------------------------------------


def applied_steps(name: str, shape: tuple[int, ...], seed: int, steps: int = 3) -> list:
    """``(d, g)`` of each step of a cautious optimizer running rule ``name``: the applied step
    ``x - x_new`` and the gradient, with exact zeros in some gradient entries."""
    generator = torch.Generator().manual_seed(seed)
    param = torch.randn(shape, dtype=torch.float64, generator=generator).requires_grad_()
    optimizer = optimizer_classes()[name]([param], cautious=True, backend="reference")
    pairs = []
    for _ in range(steps):
        grad = torch.randn(shape, dtype=torch.float64, generator=generator)
        grad[torch.rand(shape, generator=generator) < 0.3] = 0.0
        param.grad = grad
        before = param.detach().clone()
        optimizer.step()
        pairs.append((before - param.detach(), grad))
    return pairs


def disagreements(pairs: list) -> int:
    """Components whose applied step is non-zero without the gradient's sign."""
    return sum(int(((d != 0) & (torch.sign(d) != torch.sign(g))).sum()) for d, g in pairs)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(CAUTIOUS_RULES),
    shape=st.sampled_from([(1,), (6,), (3, 4), (2, 3, 5)]),
    seed=st.integers(0, 2**16),
)
def test_every_applied_component_has_the_gradients_sign_or_is_zero(name, shape, seed):
    assert disagreements(applied_steps(name, shape, seed)) == 0


def broken_count(p, g, before, keep, *, maximize):
    """Pass 2a with ``d * g >= 0`` instead of ``> 0``: keeps steps where the gradient is zero."""
    if maximize:
        g = -g
    s = sign((before - p) * g)
    return p, before, 1 - (abs(s) - s) * 0.5


def broken_apply(p, g, before, *, scale, maximize):
    """Pass 2b with the same broken mask."""
    if maximize:
        g = -g
    s = sign((before - p) * g)
    keep = 1 - (abs(s) - s) * 0.5
    return before - (before - p) * (keep * scale), before


def test_a_broken_mask_fails_the_sign_check(monkeypatch):
    # Momentum moves components whose gradient is zero: the broken mask keeps those.
    for name, update in (("COUNT_RULE", broken_count), ("APPLY_RULE", broken_apply)):
        rule = getattr(kernel_caution, name)
        monkeypatch.setattr(kernel_caution, name, dataclasses.replace(rule, update=update))
    assert disagreements(applied_steps("sgd_momentum", (50,), seed=3, steps=4)) > 0
    monkeypatch.undo()
    assert disagreements(applied_steps("sgd_momentum", (50,), seed=3, steps=4)) == 0


# -- the switch itself -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", CAUTIOUS_RULES)
def test_cautious_false_is_the_plain_step(name):
    cls = optimizer_classes()[name]
    runs = []
    for arguments in ({}, {"cautious": False}):
        param = torch.linspace(-1, 1, 11, dtype=torch.float64).requires_grad_()
        optimizer = cls([param], **arguments)
        for step in range(5):
            param.grad = torch.cos(torch.arange(11, dtype=torch.float64) * (step + 1))
            optimizer.step()
        runs.append((param.detach().clone(), optimizer.state_dict()))
    assert torch.equal(runs[0][0], runs[1][0])
    plain, unset = (run[1]["state"].get(0, {}) for run in runs)
    assert plain.keys() == unset.keys()
    for key, value in plain.items():
        assert value is None or torch.equal(value, unset[key])


@pytest.mark.parametrize("name", REFUSED_RULES)
def test_rules_with_a_matrix_stage_or_a_copied_slot_refuse_it(name):
    cls = optimizer_classes()[name]
    param = torch.zeros(3, 3, requires_grad=True)
    with pytest.raises(ValueError, match="cautious=True is not available"):
        cls([param], cautious=True)


@pytest.mark.parametrize("value", [1, "true", None])
def test_a_non_boolean_is_refused(value):
    with pytest.raises(ValueError, match=r"cautious=.* is invalid: expected True or False"):
        descend.Adam([torch.zeros(2, requires_grad=True)], cautious=value)


def test_a_sparse_gradient_is_refused_before_anything_changes():
    param = torch.zeros(4, requires_grad=True)
    optimizer = descend.SGD([param], lr=0.1, cautious=True)
    param.grad = torch.tensor([1.0, 0.0, 0.0, -2.0]).to_sparse()
    with pytest.raises(ValueError, match="sparse gradient: cautious=True needs dense"):
        optimizer.step()
    assert torch.equal(param.detach(), torch.zeros(4)) and not optimizer.state


def test_the_setting_survives_pickles_copies_and_loads():
    param = torch.ones(3, requires_grad=True)
    optimizer = descend.AdamW([param], cautious=True)
    assert pickle.loads(pickle.dumps(optimizer)).cautious
    assert copy.deepcopy(optimizer).cautious
    fresh = descend.AdamW([torch.ones(3, requires_grad=True)], cautious=True)
    fresh.load_state_dict(descend.AdamW([torch.ones(3, requires_grad=True)]).state_dict())
    assert fresh.cautious


def test_complex_parameters_step_as_their_real_view():
    values = torch.tensor([1 + 2j, -0.5 + 0.1j, 0.3 - 1j], dtype=torch.complex128)
    grads = [
        torch.tensor([0.5 - 1j, 0.2 + 0.3j, -1 + 0.1j], dtype=torch.complex128) * k
        for k in (1, -2, 3)
    ]
    complex_param = values.clone().requires_grad_()
    real_param = torch.view_as_real(values.clone()).requires_grad_()
    ours = descend.Adam([complex_param], lr=0.1, cautious=True)
    real = descend.Adam([real_param], lr=0.1, cautious=True)
    for grad in grads:
        complex_param.grad, real_param.grad = grad.clone(), torch.view_as_real(grad.clone())
        ours.step()
        real.step()
    assert torch.equal(torch.view_as_real(complex_param.detach()), real_param.detach())


# -- the benchmark's specs -----------------------------------------------------------------------


def test_a_spec_turns_it_on_and_a_bad_value_is_refused_when_parsed():
    from descend.specs import parse_optimizer

    spec = parse_optimizer("adamw:cautious=true")
    assert spec.arguments == {"cautious": True}
    assert spec.build([torch.zeros(2, requires_grad=True)]).cautious
    with pytest.raises(ValueError, match="cautious='maybe' is invalid"):
        parse_optimizer("adamw:cautious=maybe")
    with pytest.raises(ValueError, match="not available for Muon"):
        parse_optimizer("muon:cautious=true")


@pytest.mark.slow
def test_bench_runs_a_cautious_adamw_for_one_epoch(capsys, tmp_path):
    import json

    from descend.cli.main import main

    argv = ["bench", "--task", "digits-logreg", "--optimizers", "adamw:cautious=true"]
    argv += ["--trials", "1", "--seeds", "1", "--epochs", "1", "--no-report", "--out"]
    assert main([*argv, str(tmp_path)]) == 0
    assert "adamw:cautious=true" in capsys.readouterr().out
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [row["optimizer"] for row in rows] == ["adamw:cautious=true"]


#: Two steps of SGD with momentum 0.9: the second step's momentum (0.27 - 0.1) disagrees with
#: the first component's gradient (-0.1), so that component is masked.
DIFFERENTIABLE_GRADS = ([0.3, 0.1, -0.2, 0.4], [-0.1, 0.2, -0.1, 0.4])


def test_a_differentiable_step_carries_gradients_through_the_masked_update():
    start = [1.0, -2.0, 0.5, 0.3]

    def updated(lr: torch.Tensor) -> torch.Tensor:
        moved = torch.tensor(start, dtype=torch.float64).requires_grad_().clone()
        optimizer = descend.SGD([moved], lr=lr, momentum=0.9, differentiable=True, cautious=True)
        for grad in DIFFERENTIABLE_GRADS:
            moved.grad = torch.tensor(grad, dtype=torch.float64)
            optimizer.step()
        return moved

    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(updated, (lr,))
    param = torch.tensor(start, dtype=torch.float64)
    expected = MaskedReference(torch.optim.SGD([param], lr=0.1, momentum=0.9))
    for grad in DIFFERENTIABLE_GRADS:
        param.grad = torch.tensor(grad, dtype=torch.float64)
        before = param.clone()
        expected.step()
    assert param[0] == before[0]  # masked
    assert torch.allclose(updated(lr).detach(), param, rtol=0, atol=1e-15)


def test_a_sharded_parameter_is_refused_before_anything_changes():
    from torch.distributed.tensor import Shard, distribute_tensor

    with one_rank_mesh() as mesh:
        param = torch.nn.Parameter(distribute_tensor(torch.ones(4, 2), mesh, [Shard(0)]))
        param.grad = distribute_tensor(torch.ones(4, 2), mesh, [Shard(0)])
        optimizer = descend.Adam([param], cautious=True)
        with pytest.raises(ValueError, match="is a DTensor: cautious=True does not step sharded"):
            optimizer.step()
        assert torch.equal(param.full_tensor(), torch.ones(4, 2)) and not optimizer.state
