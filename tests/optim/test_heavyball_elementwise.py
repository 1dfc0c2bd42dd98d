"""descend's AdEMAMix, MARS and cautious switch against HeavyBall 3.x, a second reference
(the first is pytorch_optimizer: tests/optim/test_ademamix.py, test_mars.py, test_cautious.py).

HeavyBall writes the same methods in another form, and each test below maps its options onto
descend's where the two are the same math:

- HeavyBall keeps bias-corrected moments (it lerps with ``beta_t = 1 - (1 - beta) / (1 -
  beta^t)``, so its ``exp_avg`` is descend's ``exp_avg / (1 - beta^t)``) and divides by
  ``max(sqrt(v^), eps)`` where descend divides by ``sqrt(v^) + eps``: with ``eps = TINY``, far
  below every ``sqrt(v^)`` here, neither form changes a rounding (``sqrt(v^) + 1e-30`` is
  ``sqrt(v^)`` in float64), so the two agree to rounding.
- HeavyBall counts steps per param group, descend per parameter (as torch.optim does), so no
  parameter skips a step here except parameter 1, which never has a gradient (both skip it).
- HeavyBall computes two scalars from integer tensors, in torch's default dtype: the
  learning rate of its warm-up (``base_lr * step / max(step, warmup_steps + 1)``) and
  caution's ``n / kept``. With float32 as default those are rounded to float32 (AdEMAMix's
  parameters then part by 4e-9 in 100 float64 steps at lr 0.01);
  :func:`heavyball_eager_in_float64` makes float64 the default, and
  makes HeavyBall run eagerly (its ``compile_mode`` would ``torch.compile`` every helper).
- ``storage_dtype="float64"`` keeps HeavyBall's state in the parameters' dtype (its default,
  float32, would round it), and ``compile_step=False`` steps eagerly.

Where the formulas differ (a constant HeavyBall hard-codes, descend's clip, caution's
rescale) the test says exactly how, and checks the rest against HeavyBall with only that
difference removed, or checks the relation the difference predicts.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import torch

import descend
from descend.rules.ademamix import alpha_schedule, beta3_schedule
from descend.testing import (
    clone_params,
    grouped,
    make_params,
    record_parity,
    relative_error,
    run_side_by_side,
)
from tests.optim.heavyball_support import eager_heavyball

heavyball = pytest.importorskip("heavyball")

#: A scalar, a parameter that never gets a gradient, linear weights, biases, a 3-D weight, a
#: convolution's weight (out, in, kh, kw) and a long bias (tests/optim/test_ademamix.py's).
SHAPES = [(), (1,), (7, 3), (5,), (2, 3, 4), (4, 2, 3, 3), (33,)]
#: HeavyBall counts steps per group: no parameter skips a step but parameter 1 (never any).
NO_SKIPS = None
#: The float64 runs agree to rounding: 1e-10 of each tensor's largest magnitude.
PARITY = 1e-10
#: An eps far below every sqrt(v^) of these runs (|g| ~ 0.05 or more): adding it (descend) and
#: clamping to it (HeavyBall) both leave sqrt(v^) as it is.
TINY = 1e-30
LR = 0.01


@pytest.fixture(autouse=True)
def heavyball_eager_in_float64() -> Iterator[pytest.MonkeyPatch]:
    """HeavyBall run eagerly (no ``torch.compile`` of its helpers) with float64 as torch's
    default dtype, so its integer-tensor divisions (warm-up lr, caution's n / kept) are
    float64 like the rest of the run; both restored after the test. Yields the patcher for
    tests that change one more thing in HeavyBall."""
    with eager_heavyball() as patch:
        yield patch


def _heavyball_slot(state: Mapping[str, Any], name: str) -> torch.Tensor:
    """HeavyBall's state tensor ``name`` of one parameter (keyed ``<function>_<name>_<index>``)."""
    matches = [key for key in state if re.search(rf"_{name}_\d+$", str(key))]
    assert len(matches) == 1, (name, sorted(map(str, state)))
    tensor: torch.Tensor = state[matches[0]]
    return tensor


def _state_error(ours, reference, slots: Mapping[str, tuple[str, int | None]]) -> float:
    """The worst relative difference of the final state, over all parameters: for each
    descend slot, HeavyBall's ``(name, beta index)`` slot; with a beta index, HeavyBall's
    moment is bias-corrected, so it is compared with descend's divided by ``1 - beta^t``."""
    worst = 0.0
    for ours_group, reference_group in zip(ours.param_groups, reference.param_groups, strict=True):
        for mine, theirs in zip(ours_group["params"], reference_group["params"], strict=True):
            reference_state = reference.state.get(theirs, {}).get(0)
            if not reference_state:
                assert not ours.state.get(mine)
                continue
            ours_state = ours.state[mine]
            step = int(ours_state["step"])
            assert step == int(reference_group["step_count"])
            for slot, (name, beta_index) in slots.items():
                expected = _heavyball_slot(reference_state, name)
                actual = ours_state[slot]
                if beta_index is not None:
                    actual = actual / (1 - ours_group["betas"][beta_index] ** step)
                worst = max(worst, relative_error(actual, expected))
    record_parity(state_error=worst)
    return worst


def test_heavyball_runs_its_plain_formula():
    # Its defaults add no gradient or update clipping and no PaLM beta2 schedule: each
    # optimizer is its one fused update (MARS's correction first), which the tests map.
    param = [torch.zeros(3, requires_grad=True)]
    chains = {
        "AdEMAMix": heavyball.AdEMAMix(param, compile_step=False),
        "AdamW": heavyball.AdamW(param, compile_step=False),
        "AdamW mars": heavyball.AdamW(param, mars=True, compile_step=False),
    }
    names = {key: [fn.fn_name for fn in optimizer.fns] for key, optimizer in chains.items()}
    assert names == {
        "AdEMAMix": ["update_by_ademamix"],
        "AdamW": ["update_by_adam"],
        "AdamW mars": ["mars", "update_by_adam"],
    }
    assert all(optimizer.defaults["warmup_steps"] == 0 for optimizer in chains.values())


# --- AdEMAMix -------------------------------------------------------------------------------
#
# HeavyBall's AdEMAMix is descend's with decoupled weight decay (x <- x (1 - lr lambda)):
#     x <- x (1 - lr lambda) - lr (m1^ + alpha_t m2) / max(sqrt(nu^), eps)
# with m1^, nu^ bias-corrected and m2 not (both lerp m2 with beta3_t from zero), alpha_t and
# beta3_t warmed up over alpha_warmup and beta3_warmup steps (descend: both over t_alpha_beta3)
# by the same schedulers, but for one constant: HeavyBall's half-life warm-up of beta3 takes
# log(beta + 1e-8) (linear_hl_warmup_scheduler's eps), the paper and descend log(beta). With a
# warm-up, HeavyBall's scheduler runs here with that eps at 0 (its own argument), and
# test_heavyballs_beta3_warm_up_differs_only_by_its_log_eps measures the constant's effect.

#: The second group's own learning rate and three betas.
ADEMAMIX_GROUPS = [{}, {"lr": LR / 2, "betas": (0.8, 0.99, 0.999)}]
#: (descend's options, HeavyBall's) that are the same math; HeavyBall's alpha defaults to 2.
ADEMAMIX_CASES = {
    "alpha 5": (dict(alpha=5.0), dict(alpha=5.0)),
    "HeavyBall's alpha 2, per-parameter loop": (dict(alpha=2.0), dict(multi_tensor=False)),
    "decoupled decay": (
        dict(alpha=5.0, weight_decay=0.1),
        dict(alpha=5.0, weight_decay=0.1),
    ),
    "warm-up": (
        dict(alpha=5.0, t_alpha_beta3=40),
        dict(alpha=5.0, alpha_warmup=40, beta3_warmup=40),
    ),
}
ADEMAMIX_SLOTS = {
    "exp_avg": ("exp_avg_fast", 0),
    "exp_avg_sq": ("exp_avg_sq", 1),
    "exp_avg_slow": ("exp_avg_slow", None),
}


def _heavyball_ademamix(params, **options):
    return heavyball.AdEMAMix(
        params, lr=LR, eps=TINY, storage_dtype="float64", compile_step=False, **options
    )


def _without_log_eps(patch: pytest.MonkeyPatch) -> None:
    """HeavyBall's beta3 warm-up with the eps inside its logarithm at 0 (see above)."""
    scheduler = heavyball.utils.linear_hl_warmup_scheduler
    patch.setattr(
        heavyball.utils, "linear_hl_warmup_scheduler", functools.partial(scheduler, eps=0.0)
    )


def _ademamix_side_by_side(ours_options, reference_options, steps, backend="auto"):
    return run_side_by_side(
        lambda params: descend.AdEMAMix(
            params, lr=LR, eps=TINY, backend=backend, weight_decouple=True, **ours_options
        ),
        lambda params: _heavyball_ademamix(params, **reference_options),
        SHAPES,
        torch.float64,
        steps=steps,
        group_options=ADEMAMIX_GROUPS,
        missing_grad_every=NO_SKIPS,
        compare_state=False,  # HeavyBall keeps bias-corrected moments: _state_error reads them
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("case", list(ADEMAMIX_CASES))
def test_ademamix_matches_heavyball(case, backend, heavyball_eager_in_float64):
    ours_options, reference_options = ADEMAMIX_CASES[case]
    _without_log_eps(heavyball_eager_in_float64)
    result = _ademamix_side_by_side(ours_options, reference_options, 100, backend)
    assert result.param_error <= PARITY
    assert _state_error(result.ours, result.reference, ADEMAMIX_SLOTS) <= PARITY


def test_a_short_ademamix_run_with_its_whole_warm_up_matches_heavyball(
    heavyball_eager_in_float64,
):
    # The fast lane's check: a warm-up of 4 steps inside 8, with decoupled decay.
    _without_log_eps(heavyball_eager_in_float64)
    result = _ademamix_side_by_side(
        dict(alpha=5.0, t_alpha_beta3=4, weight_decay=0.1),
        dict(alpha=5.0, alpha_warmup=4, beta3_warmup=4, weight_decay=0.1),
        steps=8,
    )
    assert result.param_error <= PARITY
    assert _state_error(result.ours, result.reference, ADEMAMIX_SLOTS) <= PARITY


def test_a_wrong_ademamix_weight_is_caught_at_this_tolerance():
    # A reference whose slow momentum weighs 1% more must fail at PARITY by far.
    result = _ademamix_side_by_side(dict(alpha=5.0), dict(alpha=5.05), steps=10)
    assert result.param_error > 1e3 * PARITY


@pytest.mark.parametrize(("beta1", "beta3", "warmup"), [(0.9, 0.9999, 40), (0.8, 0.999, 7)])
def test_heavyballs_beta3_warm_up_differs_only_by_its_log_eps(beta1, beta3, warmup):
    # Without the constant, HeavyBall's schedulers are descend's (the paper's) to rounding:
    # beta3_t = exp(ln b1 ln b3 / ((1 - t/T) ln b3 + (t/T) ln b1)), alpha_t = alpha t / T.
    hypers = dict(beta1=beta1, beta3=beta3, alpha=5.0, t_alpha_beta3=warmup)
    hl_scheduler = heavyball.utils.linear_hl_warmup_scheduler
    linear_scheduler = heavyball.utils.linear_warmup_scheduler
    for step in range(1, 2 * warmup):
        theirs = hl_scheduler(step, beta_end=beta3, beta_start=beta1, warmup=warmup, eps=0.0)
        assert math.isclose(1 - theirs, 1 - beta3_schedule(hypers, step), rel_tol=1e-12)
        theirs_alpha = linear_scheduler(step, 5.0, 0.0, warmup)
        assert math.isclose(theirs_alpha, alpha_schedule(hypers, step), rel_tol=1e-14)
    # With it (log(beta + 1e-8)), 1 - beta3_t moves by about 1e-8 / (beta (1 - beta)) of
    # itself while warming up, and not at all after.
    for step in range(1, warmup):
        theirs = hl_scheduler(step, beta_end=beta3, beta_start=beta1, warmup=warmup)
        ours = beta3_schedule(hypers, step)
        bound = 1e-8 / (beta3 * (1 - beta3))
        assert 0 < abs((1 - theirs) - (1 - ours)) / (1 - ours) <= bound
    assert hl_scheduler(warmup, beta_end=beta3, beta_start=beta1, warmup=warmup) == beta3


@pytest.mark.slow
def test_heavyballs_log_eps_alone_is_caught_at_this_tolerance():
    # The same warm-up against HeavyBall as it ships (log(beta3 + 1e-8)): the constant moves
    # the parameters by about 1e-6 of their size, 1e4 times PARITY.
    result = _ademamix_side_by_side(
        dict(alpha=5.0, t_alpha_beta3=40), dict(alpha=5.0, alpha_warmup=40, beta3_warmup=40), 100
    )
    assert 1e3 * PARITY < result.param_error < 1e-4


# --- MARS -----------------------------------------------------------------------------------
#
# Both correct the gradient with its change since the last step, from a zero previous
# gradient on step 1, and keep the raw gradient as the next step's g_prev; both feed the
# corrected c to AdamW. Two differences:
# - HeavyBall calls utils.mars_correction(g, g_prev, beta1, gamma) as (update, g_prev,
#   mars_gamma, beta1): the two land in each other's place, and its coefficient is
#   beta1 * mars_gamma / (1 - mars_gamma), not the paper's mars_gamma * beta1 / (1 - beta1)
#   (test_heavyballs_correction_coefficient). descend's gamma = mars_gamma (1 - beta1) /
#   (1 - mars_gamma) gives HeavyBall's coefficient (per group: it depends on beta1).
# - descend (pytorch_optimizer's MARS-AdamW) clips c to norm 1 per tensor; HeavyBall does not
#   clip (its gradient_clipping defaults to none). Parity holds where no c exceeds norm 1:
#   gradients scaled by 0.05 (GradientScaled). The clip itself is tested in test_mars.py.
# HeavyBall corrects every tensor; descend, vectors and scalars only with optimize_1d.
# One constant differs too: descend (as pytorch_optimizer) divides by sqrt(v + 1e-15), with
# v its raw second moment, HeavyBall by sqrt(v^). That moves a step by about lr 1e-15 / (2 v)
# of itself, largest on the first steps of the smallest gradients; beta2 = 0.9 (v >= 0.1 c^2)
# keeps it near 1e-11 of the parameters in these runs, under PARITY.

#: The gradients' scale: the largest tensor's corrected gradient stays well inside norm 1.
SMALL = 0.05
#: Both groups' beta2 is 0.9, for the 1e-15 floor (above).
MARS_BETAS = (0.9, 0.9)
MARS_GROUPS = [{}, {"lr": LR / 2, "betas": (0.8, 0.9)}]
MARS_SLOTS = {"exp_avg": ("exp_avg", 0), "exp_avg_sq": ("exp_avg_sq", 1)}
#: The correction's coefficient depends on beta1; MARS_SLOTS plus the stored gradient.
MARS_ALL_SLOTS = {**MARS_SLOTS, "last_grad": ("mars_old_grad", None)}
#: HeavyBall's options (mars=True implied); descend's follow from them (_mars_side_by_side).
MARS_CASES = {
    "HeavyBall's mars_gamma": dict(mars_gamma=0.0025),
    "strong correction, decoupled decay": dict(mars_gamma=0.1, weight_decay=0.1),
    "per-parameter loop": dict(mars_gamma=0.05, multi_tensor=False),
}


def descend_gamma_for_heavyball(mars_gamma: float, beta1: float) -> float:
    """descend's ``gamma`` whose coefficient ``gamma beta1 / (1 - beta1)`` is HeavyBall's
    ``beta1 mars_gamma / (1 - mars_gamma)``."""
    return mars_gamma * (1 - beta1) / (1 - mars_gamma)


class GradientScaled:
    """An optimizer whose step first multiplies every gradient by ``scale`` (and records the
    largest gradient norm it stepped on): the side-by-side run's standard normal gradients
    made small enough that MARS's corrected gradient never reaches norm 1."""

    def __init__(self, optimizer: torch.optim.Optimizer, scale: float) -> None:
        self.optimizer, self.scale, self.largest_norm = optimizer, scale, 0.0
        self.state, self.param_groups = optimizer.state, optimizer.param_groups

    def step(self) -> None:
        """Scale the gradients, then step."""
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    param.grad.mul_(self.scale)
                    norm = float(torch.linalg.vector_norm(param.grad))
                    self.largest_norm = max(self.largest_norm, norm)
        self.optimizer.step()


def _mars_side_by_side(
    options: Mapping[str, Any],
    steps: int,
    scale: float = SMALL,
    gamma: Callable[[float, float], float] = descend_gamma_for_heavyball,
    backend: str = "auto",
):
    reference_options = dict(options)
    mars_gamma = reference_options.pop("mars_gamma")
    weight_decay = reference_options.get("weight_decay", 0.0)

    def make_ours(groups):
        for group in groups:  # the coefficient depends on each group's beta1
            group["gamma"] = gamma(mars_gamma, group.get("betas", MARS_BETAS)[0])
        mars = descend.MARS(
            groups,
            lr=LR,
            betas=MARS_BETAS,
            eps=TINY,
            weight_decay=weight_decay,
            optimize_1d=True,
            backend=backend,
        )
        return GradientScaled(mars, scale)

    def make_reference(groups):
        adamw = heavyball.AdamW(
            groups,
            lr=LR,
            betas=MARS_BETAS,
            eps=TINY,
            mars=True,
            mars_gamma=mars_gamma,
            storage_dtype="float64",
            compile_step=False,
            **reference_options,
        )
        return GradientScaled(adamw, scale)

    return run_side_by_side(
        make_ours,
        make_reference,
        SHAPES,
        torch.float64,
        steps=steps,
        group_options=MARS_GROUPS,
        missing_grad_every=NO_SKIPS,
        compare_state=False,  # HeavyBall keeps bias-corrected moments: _state_error reads them
    )


def _assert_unclipped(result, mars_gamma: float) -> None:
    # |c| <= (1 + 2 k) max |g| for the coefficient k of either group (beta1 <= 0.9): below 1,
    # descend's clip never acts, so both run the same formula.
    coefficient = 0.9 * mars_gamma / (1 - mars_gamma)
    assert (1 + 2 * coefficient) * result.ours.largest_norm < 1


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("case", list(MARS_CASES))
def test_mars_matches_heavyball_where_nothing_is_clipped(case, backend):
    result = _mars_side_by_side(MARS_CASES[case], 100, backend=backend)
    _assert_unclipped(result, MARS_CASES[case]["mars_gamma"])
    assert result.param_error <= PARITY
    assert _state_error(result.ours, result.reference, MARS_ALL_SLOTS) <= PARITY


def test_a_short_mars_run_matches_heavyball():
    # The fast lane's check: 10 steps of the strong correction with decay.
    options = MARS_CASES["strong correction, decoupled decay"]
    result = _mars_side_by_side(options, 10)
    _assert_unclipped(result, options["mars_gamma"])
    assert result.param_error <= PARITY
    assert _state_error(result.ours, result.reference, MARS_ALL_SLOTS) <= PARITY


def test_the_papers_coefficient_is_caught_at_this_tolerance():
    # descend given HeavyBall's mars_gamma as its own gamma (the paper's reading: coefficient
    # gamma beta1 / (1 - beta1)) corrects 9.975 times as strongly: far off.
    result = _mars_side_by_side(
        MARS_CASES["HeavyBall's mars_gamma"], 10, gamma=lambda mars_gamma, beta1: mars_gamma
    )
    assert result.param_error > 1e3 * PARITY


def test_descends_clip_is_caught_at_this_tolerance():
    # Standard normal gradients: every matrix's corrected gradient exceeds norm 1, descend
    # clips it and HeavyBall does not, and the runs part by far.
    result = _mars_side_by_side(MARS_CASES["HeavyBall's mars_gamma"], 10, scale=1.0)
    assert result.param_error > 1e3 * PARITY


def test_heavyballs_correction_coefficient():
    # HeavyBall's correction as its mars step calls it: (g, g_prev, mars_gamma, beta1) into
    # mars_correction(g, old_g, beta1, gamma). It leaves c in g and the raw g in g_prev.
    generator = torch.Generator().manual_seed(0)
    g, previous = (torch.randn(6, 4, generator=generator, dtype=torch.float64) for _ in "ab")
    beta1, mars_gamma = 0.9, 0.1
    corrected, stored = g.clone(), previous.clone()
    heavyball.utils.mars_correction(corrected, stored, mars_gamma, beta1)
    heavyballs = beta1 * mars_gamma / (1 - mars_gamma)
    torch.testing.assert_close(corrected, g + heavyballs * (g - previous), rtol=1e-14, atol=0)
    torch.testing.assert_close(stored, g, rtol=0, atol=0)
    papers = mars_gamma * beta1 / (1 - beta1)
    assert (corrected - (g + papers * (g - previous))).abs().max() > 0.1


# --- Caution --------------------------------------------------------------------------------
#
# HeavyBall's caution=True (utils._compilable_cautioning) and descend's cautious=True keep the
# same components: HeavyBall drops those of its update u whose sign bit differs from the
# gradient's, descend those of its step d = x - x_new with d g <= 0; with weight_decay=0,
# d = lr u, so both keep u_i g_i > 0 (they part only on exact zeros, which random gradients
# never make). They rescale what is kept differently: HeavyBall by n / max(kept, 1), descend
# (pytorch_optimizer, the paper's code) by n / (kept + 1). With weight decay they also differ:
# HeavyBall decays every component, descend masks the decay with the rest of d. So, with
# weight_decay=0 (and without MARS, where HeavyBall compares with the corrected gradient):
# - against HeavyBall as it ships, each step's change of each tensor is descend's times
#   (kept + 1) / kept, with the same kept components (the moments never see the parameters,
#   so both runs step on the same moments though their parameters part);
# - against HeavyBall with its rescale replaced by n / (kept + 1), the runs are the same.

ADAMW_GROUPS = [{}, {"lr": LR / 2, "betas": (0.8, 0.99)}]
ADAMW_SLOTS = {"exp_avg": ("exp_avg", 0), "exp_avg_sq": ("exp_avg_sq", 1)}


def _heavyball_adamw(params, **options):
    return heavyball.AdamW(
        params,
        lr=LR,
        betas=(0.9, 0.999),
        eps=TINY,
        storage_dtype="float64",
        compile_step=False,
        **options,
    )


def _descend_adamw(params, **options):
    # descend.AdamW's weight_decay defaults to torch's 0.01; HeavyBall's to 0.
    options.setdefault("weight_decay", 0.0)
    return descend.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=TINY, **options)


#: (descend's optimizer, HeavyBall's, their groups), each with the given options.
CAUTIOUS_PAIRS = {
    "AdamW": (_descend_adamw, _heavyball_adamw, ADAMW_GROUPS),
    "AdEMAMix": (
        lambda params, **options: descend.AdEMAMix(params, lr=LR, eps=TINY, **options),
        lambda params, **options: _heavyball_ademamix(params, alpha=5.0, **options),
        ADEMAMIX_GROUPS,
    ),
}


def _rescaled_plus_one(g: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """HeavyBall's ``_compilable_cautioning`` with descend's rescale, n / (kept + 1)."""
    mask = g.signbit() ^ update.signbit()
    kept = mask.numel() - mask.sum()
    return update.masked_fill(mask, 0) * (mask.numel() / (kept + 1))


@pytest.mark.parametrize("steps", [10, pytest.param(100, marks=pytest.mark.slow)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_matches_heavyball(weight_decay, steps):
    # The base of the cautious runs: HeavyBall's AdamW is descend's with eps moved (see top).
    result = run_side_by_side(
        lambda params: _descend_adamw(params, weight_decay=weight_decay),
        lambda params: _heavyball_adamw(params, weight_decay=weight_decay),
        SHAPES,
        torch.float64,
        steps=steps,
        group_options=ADAMW_GROUPS,
        missing_grad_every=NO_SKIPS,
        compare_state=False,  # HeavyBall keeps bias-corrected moments: _state_error reads them
    )
    assert result.param_error <= PARITY
    assert _state_error(result.ours, result.reference, ADAMW_SLOTS) <= PARITY


def _cautious_side_by_side(name: str, steps: int):
    make_ours, make_reference, groups = CAUTIOUS_PAIRS[name]
    return run_side_by_side(
        lambda params: make_ours(params, cautious=True),
        lambda params: make_reference(params, caution=True),
        SHAPES,
        torch.float64,
        steps=steps,
        group_options=groups,
        missing_grad_every=NO_SKIPS,
        compare_state=False,
    )


@pytest.mark.parametrize("steps", [10, pytest.param(100, marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", list(CAUTIOUS_PAIRS))
def test_caution_matches_heavyball_with_descends_rescale(name, steps, heavyball_eager_in_float64):
    heavyball_eager_in_float64.setattr(
        heavyball.utils, "_compilable_cautioning", _rescaled_plus_one
    )
    result = _cautious_side_by_side(name, steps)
    assert result.param_error <= PARITY


@pytest.mark.parametrize("name", list(CAUTIOUS_PAIRS))
def test_heavyballs_own_rescale_is_caught_at_this_tolerance(name):
    # HeavyBall as it ships, n / max(kept, 1): its steps are longer, and the runs part.
    result = _cautious_side_by_side(name, 10)
    assert result.param_error > 1e3 * PARITY


def _cautious_step_ratio_error(name: str, steps: int, ratio: Callable[[int, int], float]) -> float:
    """Step descend (cautious) and HeavyBall (caution, as it ships) side by side; at each step
    check that both changed the same components of each tensor, and return the worst
    relative difference between HeavyBall's change and descend's times ``ratio(n, kept)``.
    A change is a difference of parameters, so it carries their rounding (about 1e-16 of
    |x| over |change|: 1e-12 at most here)."""
    make_ours, make_reference, groups = CAUTIOUS_PAIRS[name]
    ours_params = make_params(SHAPES, torch.float64, seed=0)
    reference_params = clone_params(ours_params)
    ours = make_ours(grouped(ours_params, groups), cautious=True)
    reference = make_reference(grouped(reference_params, groups), caution=True)
    generator = torch.Generator().manual_seed(1)
    worst = 0.0
    for _ in range(steps):
        for index, (mine, theirs) in enumerate(zip(ours_params, reference_params, strict=True)):
            if index != 1:  # parameter 1 never has a gradient
                gradient = torch.randn(mine.shape, dtype=torch.float64, generator=generator)
                mine.grad, theirs.grad = gradient.clone(), gradient.clone()
        before = [param.detach().clone() for param in ours_params + reference_params]
        ours.step()
        reference.step()
        count = len(ours_params)
        for index, (mine, theirs) in enumerate(zip(ours_params, reference_params, strict=True)):
            ours_change = before[index] - mine.detach()
            reference_change = before[count + index] - theirs.detach()
            kept = ours_change != 0
            assert torch.equal(kept, reference_change != 0), f"parameter {index}"
            if not kept.any():
                continue
            expected = ours_change * ratio(kept.numel(), int(kept.sum()))
            difference = float((reference_change - expected).abs().max())
            worst = max(worst, difference / float(reference_change.abs().max()))
    record_parity(param_error=worst, dtype=torch.float64)
    return worst


def _heavyball_over_descend(count: int, kept: int) -> float:
    """HeavyBall's rescale over descend's: (n / kept) / (n / (kept + 1))."""
    return (kept + 1) / kept


@pytest.mark.parametrize("steps", [10, pytest.param(100, marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", list(CAUTIOUS_PAIRS))
def test_caution_keeps_heavyballs_components_and_rescales_by_kept_plus_one(name, steps):
    assert _cautious_step_ratio_error(name, steps, _heavyball_over_descend) <= PARITY


@pytest.mark.parametrize("name", list(CAUTIOUS_PAIRS))
def test_an_equal_rescale_is_caught_at_this_tolerance(name):
    # Taking the two rescales for equal must fail: the tolerance sees (kept + 1) / kept.
    error = _cautious_step_ratio_error(name, 10, lambda count, kept: 1.0)
    assert error > 1e3 * PARITY
