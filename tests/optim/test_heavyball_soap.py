"""descend.SOAP against HeavyBall's SOAP (``heavyball.SOAP``, 3.2.1): where the two compute the
same method, the same numbers; where they do not, which part differs, shown by a measurement.

descend.SOAP is ``pytorch_optimizer.SOAP`` (the paper's code; see test_soap.py). HeavyBall's
SOAP is the same algorithm written another way, and these are the ways (each either mapped
here or left out of the parity runs, and shown by a test of its own):

- Adam's bias corrections: HeavyBall debiases the moments themselves (``M_hat``, ``V_hat``, its
  lerp weight ``(1 - beta) / (1 - beta^k)``) and divides by ``sqrt(V_hat).clamp(min=eps)``;
  descend keeps ``M``, ``V`` and divides by ``sqrt(V) + eps`` with the corrections in the step
  size. The same step when ``eps`` is below every ``sqrt(V)``'s rounding: ``EPS = 1e-20``.
- The statistics: HeavyBall debiases them too (``L_hb = L / (1 - beta_s^t)``, the first one
  ``g g^T`` itself). Eigenvectors do not see a positive scale, so the bases agree; the state
  is compared after multiplying by ``1 - beta_s^t``.
- The momentum: HeavyBall keeps it in the eigenbasis (rotated into the new basis at each
  refresh), descend in the parameter's basis; compared after rotating HeavyBall's back.
- The refresh (one power iteration and QR): HeavyBall keeps each column in its slot (QR of the
  columns sorted by estimated eigenvalue, scattered back) and fixes signs (R's diagonal
  positive); descend keeps them sorted and re-orders V to match. Adam's step does not see a
  signed permutation of the basis, so the state is compared column by matched column.
  Two differences stay: descend runs the QR in float32 (the reference's cast, kept so descend
  equals ``pytorch_optimizer`` bit for bit) and HeavyBall in float64, and HeavyBall shifts the
  power iteration, ``(L + 1e-8 |lambda|_max I) Q``, to lift a null space. Together they bound
  agreement after a refresh to ``REFRESH`` instead of ``PARITY``;
  ``test_the_float32_qr_and_the_shift_are_the_only_differences_in_a_refresh`` removes both and
  gets ``PARITY`` back.
- The schedule: HeavyBall refreshes when a running sum of ``1 / f`` passes an integer (after
  steps f, 2f, ...; with float drift for f=10: 11, 20, 30), descend after steps 1, 1 + f,
  1 + 2f. Starting HeavyBall's sum at ``(f - 1) / f`` (its scheduler state, saved in its state
  dict) gives descend's steps exactly for f a power of two.
- Weight decay: HeavyBall ``x (1 - lr lambda) - lr u``, descend ``(x - lr u)(1 - lr lambda)``:
  parity runs use ``weight_decay=0``.
- Scalars: HeavyBall computes the learning rate (``lr * t / max(t, warmup + 1)``) and the
  statistics' weight (``beta_s ** t``) as tensors of torch's default dtype: float64 runs set it
  to float64 (else lr=1e-3 is used as float32's nearest value, an error of about 1e-8 per step).
- Storage: HeavyBall keeps moments in float32 unless ``storage_dtype="float64"``; its kernels
  are ``torch.compile``'d unless ``heavyball.utils.compile_mode = None`` (eager, as descend's
  reference executor is).
- A statistic of less than full rank (a non-square weight's larger side, or any vector with
  ``precondition_1d``, whose ``g g^T`` has rank 1): its eigenbasis is arbitrary on the null
  space, where rounding noise chooses it; HeavyBall forms ``g g^T`` by einsum and descend by
  tensordot, the noise differs, and so do the bases and Adam's steps in them. Parity shapes
  are therefore square weights and convolutions whose every factor has full rank from the
  first gradient; ``test_a_rank_deficient_statistic_has_no_unique_basis`` shows the rest.
- ``merge_dims``: HeavyBall keeps dimension 0 and merges from the last one; descend merges
  from the first. Compared on shapes where both give the same factors.
- Not in descend: ``palm``/``beta2_scale`` (beta2 = 1 - t^-0.8), ``use_precond_schedule``
  (fails on its first step in 3.2.1), ``split`` (blocks of a long dimension), caution, MARS,
  warmup, ``precond_grad_accum``. HeavyBall leaves a size-1 dimension unrotated and descend
  rotates it by +-1 (the same step). HeavyBall counts steps per group, descend per parameter:
  no parameter skips a step here except parameter 1, which never has a gradient.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import torch

import descend
import descend.rules.soap as soap_rule
from descend.rules.soap import SOAP as SOAP_RULE
from descend.rules.soap import merged_shape, project
from descend.testing import record_parity, relative_error, run_side_by_side
from tests.optim.heavyball_support import eager_heavyball
from tests.optim.test_soap import _soap_rotating_back_wrongly

heavyball = pytest.importorskip("heavyball")
heavyball_chainable = pytest.importorskip("heavyball.chainable")
heavyball_utils = pytest.importorskip("heavyball.utils")

#: Square weights, a convolution (every factor full rank from one gradient: 4 < 27, 3 < 36),
#: biases and a scalar; two (6, 6) weights in one group, which HeavyBall steps stacked.
SHAPES = [(), (6,), (6, 6), (4, 3, 3, 3), (6, 6), (3,), (5, 5)]
#: merge_dims at max 9: (9, 1, 3, 3) is [9, 9] in both (HeavyBall: 9 and 1*3*3; descend: 9*1,
#: then 3*3); the others keep their shapes. No scalar: HeavyBall cannot merge one.
MERGEABLE = [(6,), (9, 1, 3, 3), (6, 6), (5, 5), (3,)]
#: The fast lane's shapes.
SHORT = [(), (5,), (4, 4), (3, 2, 2, 2)]
#: Two param groups, the second with its own learning rate, betas and statistics' decay.
GROUPS = [{}, {"lr": 1e-3, "betas": (0.9, 0.99), "shampoo_beta": 0.99}]
#: Below every sqrt(V)'s rounding, so that sqrt(V) + eps and max(sqrt(V_hat), eps) agree.
EPS = 1e-20
#: The same arguments, in each library's spelling, as far as they mean the same.
COMMON = dict(betas=(0.95, 0.95), shampoo_beta=0.95, weight_decay=0.0, eps=EPS)
#: Rounding only: the same method in the same order up to the mappings above.
PARITY = 1e-10
#: After power-iteration refreshes: descend's float32 QR (the reference's) against
#: HeavyBall's float64 one leaves the bases a few float32 epsilons apart, and the parameters
#: that much times the learning rates; a wrong rotation or a V left unordered is off by 1e-3.
REFRESH = {"params": 2e-8, "state": 2e-6}
#: A refresh frequency that never comes within 100 steps.
NEVER = 128


@pytest.fixture(autouse=True)
def eager_float64_heavyball() -> Iterator[None]:
    """HeavyBall eager (no torch.compile) with its step scalars in float64, restored after."""
    with eager_heavyball():
        yield


def _heavyball(params, frequency: int, **options) -> torch.optim.Optimizer:
    """HeavyBall's SOAP in float64, refreshing on descend's steps (1, 1 + f, 1 + 2f, ...)."""
    options = {"merge_dims": False, **COMMON, **options}
    optimizer = heavyball.SOAP(
        params, storage_dtype="float64", precondition_frequency=frequency, **options
    )
    # Its running sum of 1/f passes an integer after steps f, 2f, ..., one step before
    # descend's refreshes, unless it starts at (f - 1) / f: then after steps 1, 1 + f, ...
    # (exact for f = 2^k).
    optimizer.inner_group["cumulative_prob"] = (frequency - 1) / frequency
    return optimizer


def _descend(params, frequency: int, **options) -> torch.optim.Optimizer:
    options = {**COMMON, **options}
    return descend.SOAP(params, backend="reference", precondition_frequency=frequency, **options)


def _heavyball_state(optimizer, param) -> dict:
    """HeavyBall's state of one parameter by plain name (its keys carry the transform's name
    and index: ``scale_by_soap_exp_avg_sq_2`` is ``exp_avg_sq``)."""
    named = {}
    for key, value in optimizer.state.get(param, {}).get(0, {}).items():
        match = re.fullmatch(r"scale_by_soap_(exp_avg|exp_avg_sq|Q|GG)_\d+", key)
        if match:
            named[match.group(1)] = value
    return named


def _matched_columns(ours: torch.Tensor, theirs: torch.Tensor):
    """For each of HeavyBall's basis columns, descend's column of the same eigenvector and
    the sign between them (the bases are one signed permutation of the other)."""
    overlap = ours.T @ theirs
    slots = overlap.abs().argmax(dim=0)
    assert sorted(slots.tolist()) == list(range(ours.shape[0])), "not a signed permutation"
    return slots, overlap[slots, torch.arange(ours.shape[0])].sign()


def _state_error(ours, theirs) -> float:
    """The worst relative difference, over all parameters, of the statistics, bases and
    moments, each mapped to descend's form: HeavyBall's debiased L, V, M times their
    ``1 - beta^t``, its momentum rotated back, its basis columns matched to descend's."""
    worst = 0.0

    def observe(mine: torch.Tensor, reference: torch.Tensor) -> None:
        nonlocal worst
        assert mine.shape == reference.shape
        worst = max(worst, relative_error(mine, reference))

    groups = zip(ours.param_groups, theirs.param_groups, strict=True)
    for ours_group, their_group in groups:
        steps = int(their_group["step_count"])
        updates = steps - 1  # the first step only sets the basis
        beta1, beta2 = their_group["betas"]
        shampoo_beta = their_group["shampoo_beta"]
        pairs = zip(ours_group["params"], their_group["params"], strict=True)
        for ours_param, their_param in pairs:
            mine = ours.state.get(ours_param, {})
            reference = _heavyball_state(theirs, their_param)
            if not reference:
                assert not mine
                continue
            bases = reference["Q"]
            shape = reference["exp_avg"].shape[1:]  # HeavyBall's (merged) shape
            exp_avg_sq = mine["exp_avg_sq"].reshape(shape)
            back = []
            for index, basis in enumerate(bases):
                if basis is None:
                    assert f"Q_{index}" not in mine
                    back.append([])
                    continue
                statistic = reference["GG"][index][0] * (1 - shampoo_beta**steps)
                observe(mine[f"GG_{index}"], statistic)
                slots, signs = _matched_columns(mine[f"Q_{index}"], basis[0])
                observe(mine[f"Q_{index}"][:, slots], basis[0] * signs)
                exp_avg_sq = exp_avg_sq.index_select(index, slots)
                back.append(basis[0])
            observe(exp_avg_sq, reference["exp_avg_sq"][0] * (1 - beta2**updates))
            hypers = {"merge_dims": False, "data_format": "channels_first"}
            momentum = reference["exp_avg"][0]
            if any(len(basis) > 0 for basis in back):
                momentum = project(momentum, hypers, back, backward=True)
            observe(mine["exp_avg"], momentum.reshape(mine["exp_avg"].shape) * (1 - beta1**updates))
    record_parity(state_error=worst)
    return worst


def _side_by_side(make_ours, make_reference, shapes=SHAPES, steps=100):
    return run_side_by_side(
        make_ours,
        make_reference,
        shapes,
        torch.float64,
        steps=steps,
        group_options=GROUPS,
        missing_grad_every=None,  # HeavyBall counts steps per group
        compare_state=False,  # HeavyBall keeps other forms; _state_error maps them
    )


#: (frequency, options for both, options for HeavyBall only, shapes, tolerances).
OPTION_SETS = {
    "eigh-basis-only": (NEVER, {}, {}, SHAPES, {"params": PARITY, "state": PARITY}),
    "refresh-every-step": (1, {}, {}, SHAPES, REFRESH),
    "refresh-every-2": (2, {}, {"multi_tensor": False}, SHAPES, REFRESH),
    "refresh-every-4-max-dim-5": (4, {"max_precondition_dim": 5}, {}, SHAPES, REFRESH),
    "merge-dims-max-9": (
        2,
        {"merge_dims": True, "max_precondition_dim": 9},
        {},
        MERGEABLE,
        REFRESH,
    ),
}


def _spelled_for_heavyball(options: dict) -> dict:
    renamed = {"max_precondition_dim": "max_precond_dim"}
    return {renamed.get(key, key): value for key, value in options.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OPTION_SETS))
def test_every_shared_option_matches_heavyball(name):
    frequency, options, heavyball_only, shapes, tolerance = OPTION_SETS[name]
    result = _side_by_side(
        lambda params: _descend(params, frequency, **options),
        lambda params: _heavyball(
            params, frequency, **_spelled_for_heavyball(options), **heavyball_only
        ),
        shapes,
    )
    assert result.param_error <= tolerance["params"]
    assert _state_error(result.ours, result.reference) <= tolerance["state"]


def test_a_short_run_on_the_first_basis_matches_heavyball():
    # The fast lane's check: the first basis (eigh of the first statistics) and 5 updates in it.
    result = _side_by_side(
        lambda params: _descend(params, NEVER),
        lambda params: _heavyball(params, NEVER),
        SHORT,
        steps=6,
    )
    assert result.param_error <= PARITY
    assert _state_error(result.ours, result.reference) <= PARITY


@pytest.mark.slow
def test_the_float32_qr_and_the_shift_are_the_only_differences_in_a_refresh(monkeypatch):
    """With descend's QR in float64 and HeavyBall's power iteration unshifted (its floor 0,
    leaving only a lift of 64 n float64-epsilons), a refresh every step agrees to PARITY: the
    rest of the refresh (sorting, slots, signs, the momentum's rotation) is the same math."""
    power_iteration = soap_rule.power_iteration_bases

    def in_float64(hypers, state, count):
        to = torch.Tensor.to

        def keep_float64(tensor, *args, **kwargs):
            if args and args[0] is torch.float32:  # the only cast in power_iteration_bases
                return tensor
            return to(tensor, *args, **kwargs)

        torch.Tensor.to = keep_float64  # type: ignore[method-assign]
        try:
            return power_iteration(hypers, state, count)
        finally:
            torch.Tensor.to = to  # type: ignore[method-assign]

    precondition = heavyball_chainable._apply_soap_preconditioner

    def unshifted(*args, **kwargs):
        return precondition(*args, **{**kwargs, "eps": 0.0})

    monkeypatch.setattr(soap_rule, "power_iteration_bases", in_float64)
    monkeypatch.setattr(heavyball_chainable, "_apply_soap_preconditioner", unshifted)
    result = _side_by_side(
        lambda params: _descend(params, 1), lambda params: _heavyball(params, 1), steps=30
    )
    assert result.param_error <= PARITY
    assert _state_error(result.ours, result.reference) <= PARITY


def test_a_wrong_rotation_is_caught_at_these_tolerances():
    wrong = _soap_rotating_back_wrongly()
    result = _side_by_side(
        lambda params: wrong(params, backend="reference", precondition_frequency=2, **COMMON),
        lambda params: _heavyball(params, 2),
        SHORT,
        steps=6,
    )
    assert result.param_error > 1e3 * REFRESH["params"]


@pytest.mark.slow
def test_a_second_moment_left_unordered_at_a_refresh_is_caught(monkeypatch):
    # A subtler bug than a wrong rotation, and only after refreshes: V keeps its order while
    # the basis columns are re-sorted by their estimated eigenvalues.
    power_iteration = soap_rule.power_iteration_bases

    def leaving_v_unordered(hypers, state, count):
        before = state["exp_avg_sq"].clone()
        bases = power_iteration(hypers, state, count)
        state["exp_avg_sq"].copy_(before)
        return bases

    monkeypatch.setattr(soap_rule, "power_iteration_bases", leaving_v_unordered)
    result = _side_by_side(
        lambda params: _descend(params, 1), lambda params: _heavyball(params, 1), steps=30
    )
    assert result.param_error > 10 * REFRESH["params"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [{"weight_decay": 1e-2}, {"eps": 1e-8}, {"palm": True}],
    ids=["weight-decay-form", "eps-placement", "palm-beta2-schedule"],
)
def test_each_left_out_difference_is_visible(options):
    # The options the parity runs avoid do change the numbers, on the first basis alone.
    ours_options = {key: value for key, value in options.items() if key != "palm"}
    result = _side_by_side(
        lambda params: _descend(params, NEVER, **ours_options),
        lambda params: _heavyball(params, NEVER, **options),
        steps=30,
    )
    assert result.param_error > 10 * PARITY


def test_a_rank_deficient_statistic_has_no_unique_basis():
    # The (8, 5) weight's 8 x 8 statistic has rank 5 after the first gradient: the bases
    # agree on its range and not on its null space, and neither is wrong. The 5 x 5 side
    # agrees to rounding.
    weight = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    gradient = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
    ours_param, their_param = weight.clone().requires_grad_(), weight.clone().requires_grad_()
    ours, theirs = _descend([ours_param], NEVER), _heavyball([their_param], NEVER)
    ours_param.grad, their_param.grad = gradient.clone(), gradient.clone()
    ours.step()
    theirs.step()
    left, right = _heavyball_state(theirs, their_param)["Q"]
    range_columns = 5
    mine = ours.state[ours_param]
    for basis, their_basis, columns in (
        (mine["Q_0"], left, range_columns),
        (mine["Q_1"], right, 5),
    ):
        agreement = (basis[:, :columns].T @ their_basis[0][:, :columns]).abs()
        torch.testing.assert_close(agreement, torch.eye(columns), rtol=0, atol=1e-10)
    null_space = (mine["Q_0"][:, range_columns:].T @ left[0][:, range_columns:]).abs()
    assert not torch.allclose(null_space, torch.eye(8 - range_columns), atol=1e-3)


def test_heavyball_refreshes_one_step_earlier_unless_its_sum_starts_at_f_minus_1_over_f():
    due = SOAP_RULE.stage.refresh_due
    for frequency in (2, 4, 10):
        ours = [step for step in range(1, 45) if due({"precondition_frequency": frequency}, step)]
        plain: dict = {}
        theirs = [
            step
            for step in range(1, 45)
            if heavyball_utils.psgd_should_update(plain, 1 / frequency)
        ]
        assert theirs != ours
        assert theirs[:3] == (
            [11, 20, 30] if frequency == 10 else [frequency, 2 * frequency, 3 * frequency]
        )
        aligned = {"cumulative_prob": (frequency - 1) / frequency}
        shifted = [
            step
            for step in range(1, 45)
            if heavyball_utils.psgd_should_update(aligned, 1 / frequency)
        ]
        if frequency in (2, 4):
            assert shifted == ours


def test_merge_dims_merge_from_opposite_ends():
    # HeavyBall keeps the output dimension and merges the kernel into the input one; descend
    # (as pytorch_optimizer) merges from the front. They agree on (9, 1, 3, 3) at 9.
    conv = torch.zeros(4, 3, 3, 3)
    assert list(heavyball_utils.dim_merger(conv, 16).shape) == [4, 3, 9]
    assert merged_shape(tuple(conv.shape), 16) == [12, 9]
    assert list(heavyball_utils.dim_merger(torch.zeros(9, 1, 3, 3), 9).shape) == [9, 9]
    assert merged_shape((9, 1, 3, 3), 9) == [9, 9]


@pytest.mark.parametrize(
    "options, shapes, error",
    [
        ({"use_precond_schedule": True}, [(3, 3)], AttributeError),
        ({"merge_dims": True}, [()], IndexError),
    ],
    ids=["use-precond-schedule", "merge-dims-on-a-scalar"],
)
def test_heavyball_options_that_fail_on_their_first_step(options, shapes, error):
    # Not compared: HeavyBall 3.2.1 passes an int step to its tensor schedule, and cannot
    # merge the dimensions of a 0-d tensor.
    params = [torch.zeros(shape, requires_grad=True) for shape in shapes]
    optimizer = heavyball.SOAP(params, **options)
    for param in params:
        param.grad = torch.ones_like(param)
    with pytest.raises(error):
        optimizer.step()
