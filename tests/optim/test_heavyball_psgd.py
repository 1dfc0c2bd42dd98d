"""descend.PSGDKron against HeavyBall 3.x's ``heavyball.PSGDKron``: where the two compute the
same mathematics, where they do not, and by how much.

descend.PSGDKron follows ``kron_torch.Kron`` 0.3.3 to the bit (tests/optim/test_psgd_kron.py).
HeavyBall's PSGDKron descends from the same code but has changed several formulas since. With
``M`` the debiased momentum, ``V`` the Gaussian probe, ``eps = finfo(float32).eps`` and
``T_i = A_i A_i^T + B_i B_i^T`` (``A = Q M``, ``B = Q^(-T) V``, unfolded along dimension i):

1. Dampening of the fitted pair. kron-torch / descend::

       M <- M + sqrt(eps) mean(|M|) V          (in place: the step's direction carries it too)

   HeavyBall (``utils.dampen_grad``; ``dampening`` = delta, 1e-9 by default)::

       H = M + (delta + eps |M|) * V           (elementwise |M|; a copy: the direction does not)

   No value of ``dampening`` turns the one into the other.
2. The normaliser of a triangular factor's step. kron-torch / descend: one power step from
   the largest column ``c`` of ``T``::

       ell = ||T x||,  x = T c / ||T c||

   HeavyBall (``utils.max_eigenvalue_spd``, ``precond_update_power_iterations`` = k, 2 by
   default), from the largest row, iterating with ``T^2``, then a running bound
   (``lower_bound_beta`` = b, 0.9 by default)::

       ell = ||T x||,  x = T^(2k) c / ||T^(2k) c||
       ell <- max(ell, ell_prev + (1 - b)(ell - ell_prev))

   ``b = 0`` removes the running bound, but no ``k`` gives kron-torch's odd power: the two
   are different lower bounds of ``||T||_2``. A diagonal factor's normaliser is ``max(T)``
   in both.
3. The update's clip. kron-torch / descend: ``D <- D min(1, 1.1 / (rms(D) + 1e-12))``;
   HeavyBall's default ``update_clipping`` is ``utils.trust_region_clip_``, elementwise::

       D <- clamp(1.5 (0.1 sign(D) log(1 + |D| / 1.5) + 0.9 tanh(D / 1.5)), -2, 2)

   (``update_clipping=partial(utils.rmsnorm_clip_, clip_at=1.1)`` is kron-torch's clip up
   to the ``1e-12``, which moves the factor by 1e-12 of itself).
4. The refit schedule. kron-torch / descend: ``p_n = clamp(exp(-0.001 (n - 500)), 0.03, 1)``
   and a refit when the steps since the last reach ``1 / p_n``; HeavyBall:
   ``p_n = max(0.03, 0.999^max(n - 1000, 0))`` and a refit when ``floor(sum p)`` grows. At a
   constant ``p = 1`` or ``1/2`` both refit at the same steps.
5. Weight decay. kron-torch / descend: ``x <- x - lr (D + lambda x)`` for weights of two or
   more dimensions only; HeavyBall: ``x <- x (1 - lr lambda) - lr D`` for every parameter.
6. Shapes. HeavyBall squeezes dimensions of size 1 (a ``(1, 4)`` weight gets one diagonal
   factor of 4, kron-torch a 1 x 1 and a 4 x 4 triangular one) and its ``merge_dims``
   (off by default) merges trailing dimensions while their product fits
   ``max_size_triangular`` (``(4, 3, 3, 3)`` becomes ``(108,)`` at 2048), where kron-torch
   merges into the matrix closer to square (``(36, 3)``).
7. Rebalancing: HeavyBall rescales the factors to equal largest magnitudes at every refit,
   kron-torch at about 1% of them. The Kronecker product (the preconditioner), the updates
   and the parameters are unchanged by it, so the factors are compared through their product.
8. Arithmetic: kron-torch solves ``B = V Q^(-1)`` in float32 whatever the dtype, HeavyBall in
   the factors' dtype; HeavyBall computes its step scalars (``beta^t``, the warm-up's
   learning rate) in torch's default dtype, float32 unless changed.
9. Defaults: lr 1e-3 (kron-torch 3e-4), ``precond_init_scale=None`` (automatic:
   ``mean(g^4)^(-1/16)``; kron-torch 1.0), ``max_size_triangular=2048`` (8192), momentum
   stored debiased (HeavyBall's ``exp_avg`` is descend's ``m / (1 - b1^t)``), the rest as
   above.

Everything else coincides: the factors' initialisation, ``A`` and ``B``, the per-factor
contractions, the step ``Q_i <- Q_i - eta triu(A_i A_i^T - B_i B_i^T) Q_i / ell``, the
diagonal factors' step, ``P M = Q^T Q M``, the momentum and the step ``x - lr D``. So HeavyBall
is run eagerly (``utils.compile_mode = None``) with its settings that reduce to kron-torch's
(``lower_bound_beta=0``, the RMS clip, ``precond_init_scale=1``, ``merge_dims=False``,
``q_dtype``/``storage_dtype`` float64, a constant update probability, weight decay only in a
group of weights of two dimensions or more), and the pieces that no setting reduces are
replaced, each in :class:`_KronPieces`: HeavyBall's dampening (1) by kron-torch's, drawing
descend's probe for the same parameter and step; its norm bound (2) by kron-torch's; its step
scalars computed with torch's default dtype float64 (8); and, on descend's side, the triangular
solve done in float64 as HeavyBall does it (8: with HeavyBall rebalancing at every refit, a
float32 solve of factors scaled by a number near 1 rounds differently from one of the
unscaled factors, by about 1e-7 of ``B``). Then the runs agree to rounding (1e-10 of each
tensor's largest magnitude, parameters, debiased momentum and Kronecker product of the
factors, over 100 steps), and each replaced piece or HeavyBall's
default setting put back alone moves the run by far more than that (the measured
demonstrations below).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

import descend
from descend.rules import psgd_kron
from descend.rules.kronecker import expressions, merged_shape
from descend.rules.psgd_kron import (
    COUNTER_KEY,
    norm_lower_bound,
    probe_vectors,
    refit_due,
    stream_of,
)
from descend.testing import record_parity, relative_error
from tests.optim.heavyball_support import default_dtype, eager_heavyball
from tests.optim.test_psgd_kron import refit_with_a_wrong_sign

heavyball = pytest.importorskip("heavyball")
# HeavyBall recommends its automatic initial scale; kron-torch's fixed 1.0 is the one compared.
pytestmark = pytest.mark.filterwarnings("ignore:It's recommended to use precond_init_scale")
hb_utils = heavyball.utils

#: Same operations up to the order of sums: agreement to rounding.
PARITY = 1e-10
SEED = 0
#: Two param groups with the shapes of test_psgd_kron.py but ``(1, 4)`` (HeavyBall squeezes
#: its size-1 dimension: difference 6): a scalar, vectors, linear weights and a convolution's
#: weight. The learning rates are powers of two, exact in float32 too (HeavyBall recomputes
#: the learning rate in torch's default dtype at each step). The second group, with
#: weight decay, holds only weights of two dimensions or more (difference 5).
GROUPS: list[dict[str, Any]] = [
    {"shapes": [(), (6,), (8, 5), (3,)], "lr": 2**-7, "b1": 0.9, "weight_decay": 0.0},
    {"shapes": [(4, 3, 3, 3), (5, 7)], "lr": 2**-9, "b1": 0.95, "weight_decay": 2**-3},
]
#: descend's options, with HeavyBall's names where they differ.
OPTIONS = [
    {},
    {"memory_save_mode": "all_diag"},
    {"momentum_into_precond_update": False},
    {"preconditioner_update_probability": 0.5},
    {"precond_init_scale": 2.0, "precond_lr": 0.3},
    {"store_triu_as_line": False},
]
#: The pieces :class:`_KronPieces` replaces (the last on descend's side).
PIECES = ("dampening", "bound", "float64_scalars", "solve")


def _ids(options: dict[str, Any]) -> str:
    return "-".join(f"{key}={value}" for key, value in options.items()) or "defaults"


@pytest.fixture(autouse=True)
def _eager_heavyball() -> Iterator[None]:
    """HeavyBall's very functions, run eagerly; the default dtype is set where a run asks."""
    with eager_heavyball(dtype=None):
        yield


def _kron_bound(outer: torch.Tensor, power_iter: int = 0) -> torch.Tensor:
    """kron-torch's (descend's) norm lower bound of each matrix of a batch, in place of
    HeavyBall's power iteration (difference 2)."""
    bounds = []
    for matrix in outer:
        largest = matrix.norm(float("inf"))
        bound = torch.where(largest > 0, norm_lower_bound(matrix.clone(), largest), largest)
        bounds.append(bound)
    return torch.stack(bounds)


def _float64_solve(values: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """descend's (kron-torch's) ``values @ factor^(-1)`` solved in the factors' dtype, as
    HeavyBall solves it, instead of in float32 (difference 8)."""
    solved = torch.linalg.solve_triangular(
        factor, values.reshape(-1, values.size(-1)), upper=True, left=False
    )
    return solved.reshape_as(values)


class _KronPieces:
    """The pieces that no setting of HeavyBall's reduces to kron-torch's, each replaced by
    kron-torch's formula as descend computes it: HeavyBall's dampening (with descend's probe
    for the same parameter and step) and norm bound, its step scalars computed in float64
    (torch's default dtype while it steps), and, on descend's side, the triangular solve in
    the factors' dtype instead of float32. (That last is descend's, not HeavyBall's: with
    HeavyBall rebalancing at every refit, a float32 solve of factors scaled by a number near 1
    rounds differently from one of the unscaled factors, about 1e-7 of conjB.) ``keep`` names
    pieces to leave as they are; HeavyBall's probes are descend's even where its dampening
    formula is kept, so that only the formula differs."""

    def __init__(self, keep: tuple[str, ...] = ()) -> None:
        unknown = set(keep) - set(PIECES)
        assert not unknown, unknown
        self.keep = keep

    @contextmanager
    def ours(self) -> Iterator[None]:
        """While descend steps."""
        solve = psgd_kron._solve_upper_right
        try:
            if "solve" not in self.keep:
                psgd_kron._solve_upper_right = _float64_solve
            yield
        finally:
            psgd_kron._solve_upper_right = solve

    @contextmanager
    def theirs(self, probes: list[tuple[int, int, int, tuple[int, ...]]]) -> Iterator[None]:
        """While HeavyBall steps. ``probes``: (seed key, stream, step, descend's shape) of
        each parameter, in the order HeavyBall fits them (the param groups' order)."""
        pending = iter(probes)
        saved = {name: getattr(hb_utils, name) for name in ("dampen_grad", "max_eigenvalue_spd")}

        def dampen(fitted: torch.Tensor, damp: float = 1e-9) -> tuple[torch.Tensor, torch.Tensor]:
            seed, stream, step, shape = next(pending)
            probe = probe_vectors(fitted.reshape(shape), seed, stream, step).reshape(fitted.shape)
            if "dampening" in self.keep:
                # HeavyBall's own formula on descend's probe: its randn_like draws the probe.
                randn_like = torch.randn_like
                torch.randn_like = lambda like, *args, **kwargs: probe  # type: ignore[assignment]
                try:
                    return saved["dampen_grad"](fitted, damp)
                finally:
                    torch.randn_like = randn_like
            eps = torch.tensor(torch.finfo(torch.float32).eps, dtype=fitted.dtype)
            # In place, as kron-torch does: HeavyBall's fitted tensor is the update it then
            # preconditions (momentum_into_precond_update) or its copy of the gradient.
            fitted += eps.sqrt() * fitted.abs().mean() * probe
            return probe, fitted

        try:
            hb_utils.dampen_grad = dampen
            if "bound" not in self.keep:
                hb_utils.max_eigenvalue_spd = _kron_bound
            dtype = torch.float32 if "float64_scalars" in self.keep else torch.float64
            with default_dtype(dtype):
                yield
            assert next(pending, None) is None, "a parameter was not fitted"
        finally:
            for name, function in saved.items():
                setattr(hb_utils, name, function)


def _heavyball_options(options: dict[str, Any]) -> dict[str, Any]:
    """HeavyBall's arguments for descend's ``options``: the settings that reduce its extras
    to kron-torch's (see the module docstring)."""
    options = dict(options)
    return {
        "precond_init_scale": options.pop("precond_init_scale", 1.0),
        "precond_lr": options.pop("precond_lr", 0.1),
        "preconditioner_update_probability": float(
            options.pop("preconditioner_update_probability", 1.0)
        ),
        "lower_bound_beta": 0.0,
        "update_clipping": functools.partial(hb_utils.rmsnorm_clip_, clip_at=1.1),
        "merge_dims": False,
        "max_size_triangular": 2048,
        "q_dtype": "float64",
        "storage_dtype": "float64",
        **options,
    }


def _our_options(options: dict[str, Any]) -> dict[str, Any]:
    options = {key: value for key, value in options.items() if key != "store_triu_as_line"}
    return {
        "preconditioner_update_probability": 1.0,
        "merge_dims": False,
        "max_size_triangular": 2048,
        "precond_dtype": torch.float64,
        **options,
    }


def _dense(factor: torch.Tensor) -> torch.Tensor:
    """A factor as a matrix (a diagonal kept as a vector, a scalar as 1 x 1)."""
    factor = factor.reshape(-1) if factor.dim() < 2 else factor
    return torch.diag(factor) if factor.dim() == 1 else factor


def _kronecker(factors: list[torch.Tensor]) -> torch.Tensor:
    product = torch.ones(1, 1, dtype=factors[0].dtype)
    for factor in factors:
        product = torch.kron(product, _dense(factor))
    return product


def _relative(mine: torch.Tensor, reference: torch.Tensor) -> float:
    """:func:`descend.testing.relative_error`, ``mine`` in the reference's shape."""
    return relative_error(mine.reshape(reference.shape), reference)


class _Run:
    """descend.PSGDKron and heavyball.PSGDKron from one starting point on the same gradients;
    the worst relative differences of the parameters and of the state (the debiased momentum
    and the Kronecker product of the factors) over the run."""

    def __init__(
        self,
        options: dict[str, Any],
        pieces: _KronPieces | None = None,
        groups: list[dict[str, Any]] = GROUPS,
        heavyball_lr_scale: float = 1.0,
        heavyball_options: dict[str, Any] | None = None,
    ) -> None:
        generator = torch.Generator().manual_seed(0)
        self.generator = generator
        ours_groups, their_groups = [], []
        self.ours: list[torch.Tensor] = []
        self.theirs: list[torch.Tensor] = []
        for group in groups:
            start = [
                torch.randn(s, dtype=torch.float64, generator=generator) for s in group["shapes"]
            ]
            ours = [value.clone().requires_grad_() for value in start]
            theirs = [value.clone().requires_grad_() for value in start]
            self.ours += ours
            self.theirs += theirs
            common = {"lr": group["lr"], "weight_decay": group["weight_decay"]}
            ours_groups.append({"params": ours, "b1": group["b1"], **common})
            their_groups.append(
                {
                    "params": theirs,
                    "betas": (group["b1"], 0.999),
                    **common,
                    "lr": group["lr"] * heavyball_lr_scale,
                }
            )
        self.b1 = {id(p): group["b1"] for p, group in self._pairs(ours_groups)}
        self.ours_optimizer = descend.PSGDKron(ours_groups, seed=SEED, **_our_options(options))
        self.reference = heavyball.PSGDKron(
            their_groups, **{**_heavyball_options(options), **(heavyball_options or {})}
        )
        self.pieces = pieces or _KronPieces()
        self.q_key = self.reference._find_val_name("Q")
        self.momentum_key = self.reference._find_val_name("exp_avg")
        self.store_triu_as_line = options.get("store_triu_as_line", True)
        self.param_error = self.state_error = 0.0
        self.steps = 0

    @staticmethod
    def _pairs(groups: list[dict[str, Any]]) -> Iterator[tuple[torch.Tensor, dict[str, Any]]]:
        return ((param, group) for group in groups for param in group["params"])

    def run(self, steps: int) -> _Run:
        for _ in range(steps):
            self.steps += 1
            for ours, theirs in zip(self.ours, self.theirs, strict=True):
                gradient = torch.randn(ours.shape, dtype=torch.float64, generator=self.generator)
                ours.grad, theirs.grad = gradient.clone(), gradient.clone()
            with self.pieces.ours():
                self.ours_optimizer.step()
            # descend's probe for each parameter it refitted this step (its refit counter went
            # back to 0); HeavyBall must fit exactly these, in this order.
            probes = []
            for param in self.ours:
                state = self.ours_optimizer.state[param]
                if int(state[COUNTER_KEY]) != 0:
                    continue
                factors = self.our_factors(param) if param.dim() else []
                shape = tuple(factor.shape[0] for factor in factors)
                probes.append((*stream_of(state), self.steps, shape))
            with self.pieces.theirs(probes):
                self.reference.step()
            self._observe()
        record_parity(self.param_error, self.state_error, torch.float64)
        return self

    def their_factors(self, param: torch.Tensor) -> list[torch.Tensor]:
        stored = self.reference.state[param][0][self.q_key]
        if self.store_triu_as_line:
            stored = hb_utils.line_to_triu(stored)
        return [factor[0] for factor in stored]  # HeavyBall's leading bucket dimension

    def our_factors(self, param: torch.Tensor) -> list[torch.Tensor]:
        state = self.ours_optimizer.state[param]
        return [state[f"Q_{index}"] for index in range(len(state)) if f"Q_{index}" in state]

    def _observe(self) -> None:
        for ours, theirs in zip(self.ours, self.theirs, strict=True):
            self.param_error = max(self.param_error, _relative(ours, theirs))
            state = self.ours_optimizer.state[ours]
            debiased = state["momentum_buffer"] / (1 - self.b1[id(ours)] ** self.steps)
            their_momentum = self.reference.state[theirs][0][self.momentum_key]
            mine, their = self.our_factors(ours), self.their_factors(theirs)
            assert len(mine) == len(their)
            errors = [
                _relative(debiased, their_momentum),
                _relative(_kronecker(mine), _kronecker(their)),
            ]
            self.state_error = max(self.state_error, *errors)


# -- (a) parity where the mathematics is the same ------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("options", OPTIONS, ids=[_ids(options) for options in OPTIONS])
def test_heavyball_reduced_to_kron_torch_matches(options):
    # 100 steps of the defaults (rebalancing at steps 33 and 38 on descend's side); 40 of
    # each other option.
    run = _Run(options).run(100 if not options else 40)
    assert run.param_error <= PARITY
    assert run.state_error <= PARITY


def test_a_short_run_matches_heavyball_reduced_to_kron_torch():
    # The fast lane's check: 3 steps, every shape, both groups.
    run = _Run({}).run(3)
    assert run.param_error <= PARITY
    assert run.state_error <= PARITY


@pytest.mark.slow
def test_diagonal_factors_match_with_heavyball_s_own_norm_bound():
    # A diagonal factor's normaliser is max(T) in both (difference 2 is triangular only).
    run = _Run({"memory_save_mode": "all_diag"}, _KronPieces(keep=("bound",))).run(30)
    assert run.param_error <= PARITY
    assert run.state_error <= PARITY


def test_the_preconditioner_is_applied_as_q_transpose_q_in_both():
    # P g = Q^T Q g for the same factors: triangular, diagonal and mixed.
    generator = torch.Generator().manual_seed(1)
    for diagonal in [(False, False), (True, False), (False, True, False), (True,)]:
        sizes = [5, 4, 3][: len(diagonal)]
        factors = [
            torch.randn(size, dtype=torch.float64, generator=generator)
            if is_diagonal
            else torch.randn(size, size, dtype=torch.float64, generator=generator).triu()
            for size, is_diagonal in zip(sizes, diagonal, strict=True)
        ]
        gradient = torch.randn(sizes, dtype=torch.float64, generator=generator)
        _, _, expression_p = expressions(diagonal)
        ours = torch.einsum(expression_p, *factors, *factors, gradient)
        theirs = hb_utils.psgd_precond_grad(gradient[None], [factor[None] for factor in factors])
        exact = (_kronecker(factors).T @ _kronecker(factors)) @ gradient.reshape(-1)
        assert _relative(ours, theirs[0]) <= 1e-13
        assert _relative(ours.reshape(-1), exact) <= 1e-13


# -- (b) where HeavyBall's PSGD-Kron is a different update ---------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("piece", PIECES)
def test_each_replaced_piece_put_back_moves_the_run_away(piece):
    # Put back alone, each piece (module docstring: 1, 2, 8) changes the run by far more than
    # the parity tolerance: the replacement is what makes the two agree.
    run = _Run({}, _KronPieces(keep=(piece,))).run(10)
    assert run.state_error > 100 * PARITY, run.state_error
    assert run.param_error > PARITY, run.param_error


@pytest.mark.slow
@pytest.mark.parametrize(
    "setting",
    [{"lower_bound_beta": 0.9}, {"update_clipping": hb_utils.trust_region_clip_}],
    ids=["lower_bound_beta=0.9", "trust_region_clip"],
)
def test_heavyball_s_default_settings_move_the_run_away(setting):
    # HeavyBall's defaults for the running norm bound (2) and the clip (3).
    run = _Run({}, heavyball_options=setting).run(10)
    assert run.param_error > 100 * PARITY, run.param_error


def test_heavyball_dampens_elementwise_and_leaves_the_direction_undamped():
    generator = torch.Generator().manual_seed(2)
    gradient = torch.randn(6, 5, dtype=torch.float64, generator=generator)
    torch.manual_seed(3)
    probe, fitted = hb_utils.dampen_grad(gradient, 1e-9)
    eps = torch.finfo(torch.float32).eps
    theirs = gradient + (1e-9 + eps * gradient.abs()) * probe
    ours = gradient + math.sqrt(eps) * gradient.abs().mean() * probe
    assert torch.allclose(fitted, theirs, rtol=0, atol=1e-15)
    # Relative to the gradient, kron-torch's noise is sqrt(eps) / eps ~ 2900 times larger
    # and the same at every entry.
    assert float((ours - gradient).abs().max()) > 1e3 * float((theirs - gradient).abs().max())
    assert not torch.equal(fitted, gradient)  # a copy: HeavyBall's update stays undamped


def test_the_two_norm_bounds_are_different_lower_bounds():
    generator = torch.Generator().manual_seed(4)
    root = torch.randn(7, 7, dtype=torch.float64, generator=generator)
    outer = root @ root.T
    exact = float(torch.linalg.eigvalsh(outer).max())
    ours = float(norm_lower_bound(outer.clone(), outer.norm(float("inf"))))
    largest = outer[outer.norm(dim=1).argmax()]
    odd = outer @ largest
    assert ours == pytest.approx(float((outer @ (odd / odd.norm())).norm()), rel=1e-13)
    for iterations in (0, 1, 2):
        theirs = float(hb_utils.max_eigenvalue_spd(outer[None], iterations)[0])
        even = torch.linalg.matrix_power(outer, 2 * iterations) @ largest
        assert theirs == pytest.approx(float((outer @ (even / even.norm())).norm()), rel=1e-12)
        assert theirs <= exact * (1 + 1e-12) and ours <= exact * (1 + 1e-12)
        assert abs(theirs - ours) > 1e-6 * exact, iterations


def test_heavyball_s_default_clip_is_elementwise():
    values = torch.tensor([0.5, -0.5, 3.0, -8.0, 0.0], dtype=torch.float64)
    theirs = hb_utils.trust_region_clip_(values.clone())[0]
    formula = (
        1.5
        * (
            0.1 * torch.sign(values) * torch.log1p(values.abs() / 1.5)
            + 0.9 * torch.tanh(values / 1.5)
        )
    ).clamp(-2, 2)
    assert torch.allclose(theirs, formula, rtol=0, atol=1e-15)
    small = values[:2]  # RMS 0.5 < 1.1: kron-torch leaves it as it is, HeavyBall does not
    ours = small * torch.clamp(1.1 / (small.square().mean().sqrt() + 1e-12), max=1.0)
    assert torch.equal(ours, small)
    assert float((theirs[:2] - small).abs().max()) > 0.02


def test_the_refit_schedules_agree_for_500_steps_then_part():
    steps = 3000
    hypers = {
        "preconditioner_update_probability": None,
        "max_prob": 1.0,
        "min_prob": 0.03,
        "prob_decay": 0.001,
        "flat_start": 500.0,
    }
    state = {COUNTER_KEY: torch.zeros((), dtype=torch.int64)}
    ours = [step for step in range(1, steps + 1) if refit_due(hypers, state, step)]
    counts: dict[str, Any] = {}
    schedule = hb_utils.precond_update_prob_schedule()
    theirs = [step for step in range(1, steps + 1) if hb_utils.psgd_should_update(counts, schedule)]
    assert ours[:500] == theirs[:500] == list(range(1, 501))
    assert theirs[:1000] == list(range(1, 1001))  # HeavyBall's flat start is 1000 steps
    assert len(ours) < len(theirs)
    # A constant probability of 1/2 refits at the same steps in both.
    half = {**hypers, "preconditioner_update_probability": 0.5}
    state = {COUNTER_KEY: torch.zeros((), dtype=torch.int64)}
    counts = {}
    ours = [step for step in range(1, 101) if refit_due(half, state, step)]
    theirs = [step for step in range(1, 101) if hb_utils.psgd_should_update(counts, 0.5)]
    assert ours == theirs == list(range(2, 101, 2))


@pytest.mark.slow
def test_heavyball_decays_vectors_too():
    # One step on a vector with weight decay: HeavyBall's parameter is descend's times
    # (1 - lr lambda) (difference 5); descend (as kron-torch) decays weights of 2+ dims only.
    groups = [{"shapes": [(6,)], "lr": 2**-7, "b1": 0.9, "weight_decay": 2**-3}]
    run = _Run({}, groups=groups)
    start = run.ours[0].detach().clone()
    run.run(1)
    moved = run.ours[0].detach() - run.theirs[0].detach()
    assert torch.allclose(moved, 2**-7 * 2**-3 * start, rtol=1e-12, atol=1e-15)


def test_shapes_heavyball_squeezes_and_merges_differently():
    # A size-1 dimension: HeavyBall fits one diagonal factor of 4 (difference 6).
    weight = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    reference = heavyball.PSGDKron([weight], **_heavyball_options({}))
    weight.grad = torch.ones(1, 4, dtype=torch.float64)
    reference.step()
    theirs = hb_utils.line_to_triu(reference.state[weight][0][reference._find_val_name("Q")])
    assert [tuple(factor.shape[1:]) for factor in theirs] == [(4,)]
    ours = psgd_kron.kron_matrices(
        weight,
        {
            **_our_options({}),
            "memory_save_mode": None,
            "min_ndim_triangular": 2,
            "precond_init_scale": 1.0,
            "precond_dtype": "float64",
        },
    )
    assert ours["Q_0"].shape == (1,) and ours["Q_1"].shape == (4, 4)
    # merge_dims: trailing dimensions while they fit, against the matrix closer to square.
    bucket = torch.zeros(1, 4, 3, 3, 3)
    assert tuple(hb_utils.dim_merger(bucket, 2048).shape[1:]) == (108,)
    assert tuple(hb_utils.dim_merger(bucket, 27).shape[1:]) == (4, 27)
    assert merged_shape((4, 3, 3, 3), True) == (36, 3)


# -- (c) broken copies must fail the tolerance ---------------------------------------------


@pytest.mark.slow
def test_a_learning_rate_off_by_one_part_in_ten_million_is_caught():
    run = _Run({}, heavyball_lr_scale=1 + 1e-7).run(10)
    assert run.param_error > 10 * PARITY


@pytest.mark.slow
def test_a_wrong_sign_in_the_factors_update_is_caught(monkeypatch):
    refit_with_a_wrong_sign(monkeypatch)
    run = _Run({}).run(5)
    assert run.state_error > 1e3 * PARITY
    assert run.param_error > 1e3 * PARITY
