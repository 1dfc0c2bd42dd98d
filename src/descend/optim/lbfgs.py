"""``LBFGS``: a drop-in for ``torch.optim.LBFGS`` built on descend's shared line search.

L-BFGS is not an elementwise rule: its direction mixes every coordinate through inner products
over the whole parameter vector, so it is ordinary code rather than a ``RuleOptimizer``. The
strong-Wolfe line search and the two-loop recursion are the ones :mod:`descend.secondorder`
runs on NumPy vectors; here they run on flat torch tensors, operation for operation as
``torch.optim.LBFGS`` does, so the iterates match torch's to the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from descend.rules.spec import Hyper
from descend.secondorder.lbfgs import two_loop
from descend.secondorder.line_search import is_finite, strong_wolfe
from descend.secondorder.result import NonFiniteError

#: What LBFGS does when the closure returns inf or NaN.
LBFGS_NONFINITE_MODES = ("raise", "propagate")

# As torch.optim.LBFGS: any tolerance, -inf included (a common way to run every iteration:
# no test can stop it). Refused where torch would step: NaN tolerances (a NaN setting is a
# mistake elsewhere; -inf says "never stop" plainly), a max_iter below 1 or fractional (torch
# then makes no iteration, or runs until max_eval), and a max_eval below 1 (torch still
# evaluates the closure once per iteration); torch fails at the first step on a history_size
# below 1.
_HYPERS = {
    hyper.name: hyper
    for hyper in (
        Hyper("lr", 1, "step length (first trial step of the line search)", low=0),
        Hyper("max_iter", 20, "iterations per step()", low=1),
        Hyper("max_eval", None, "closure evaluations per step()", low=1),
        Hyper(
            "tolerance_grad",
            1e-7,
            "stop when max |g_i| <= tolerance_grad",
            low=-math.inf,
            high=math.inf,
        ),
        Hyper(
            "tolerance_change",
            1e-9,
            "stop when loss or step changes less",
            low=-math.inf,
            high=math.inf,
        ),
        Hyper("history_size", 100, "curvature pairs kept", low=1),
    )
}
#: The arguments that count something, and their least value.
_INTEGERS = {"max_iter": 1, "max_eval": 1, "history_size": 1}


def _check_group(group: dict[str, Any]) -> None:
    lr = group["lr"]
    if isinstance(lr, torch.Tensor) and lr.numel() != 1:
        raise ValueError(f"lr={lr!r} is invalid: a tensor lr must have 1 element")
    for name, hyper in _HYPERS.items():
        value = group[name]
        hyper.check(value)
        if name in _INTEGERS and (isinstance(value, bool) or int(value) != value):
            raise ValueError(
                f"{name}={value!r} is invalid: expected an integer >= {_INTEGERS[name]}"
            )
    if group["line_search_fn"] not in (None, "strong_wolfe"):
        raise ValueError(
            f"line_search_fn={group['line_search_fn']!r} is invalid: expected None "
            "or 'strong_wolfe'"
        )


class LBFGS(torch.optim.Optimizer):
    """L-BFGS; drop-in for ``torch.optim.LBFGS``.

    Each ``step(closure)`` runs up to ``max_iter`` iterations of::

        d_k = -H_k g_k          (two-loop recursion over the last m = history_size pairs;
                                 H_0 = gamma I, gamma = s^T y / y^T y of the newest pair)
        x_{k+1} = x_k + t_k d_k
        s_k = t_k d_k,  y_k = g_{k+1} - g_k    (stored when y^T s > 1e-10)

    with ``t_k = lr`` (``min(1, 1/||g||_1) * lr`` on the very first iteration), or, with
    ``line_search_fn="strong_wolfe"``, ``t_k`` from the strong-Wolfe search started there.
    An iteration stops the step early when ``max |g_i| <= tolerance_grad``, when
    ``g^T d > -tolerance_change``, when ``max |t d_i|`` or the loss change falls below
    ``tolerance_change``, or when ``max_eval`` closure calls are spent.

    Args:
        params: the parameters; exactly one param group (L-BFGS treats them as one vector).
        lr: default 1, ``lr >= 0`` (a float or a 1-element tensor).
        max_iter: iterations per ``step``, default 20, integer ``>= 1``.
        max_eval: closure calls per ``step``, default ``max_iter * 5 // 4``, integer ``>= 1``.
        tolerance_grad: default 1e-7, any number but NaN (``-inf``: never stop on it).
        tolerance_change: default 1e-9, any number but NaN (``-inf``: never stop on it).
        history_size: m, default 100, integer ``>= 1``.
        line_search_fn: ``None`` (fixed step) or ``"strong_wolfe"``, default None.
        nonfinite: what happens when the closure returns an inf or NaN loss or gradient.
            ``"raise"`` (default): :class:`~descend.secondorder.NonFiniteError` naming the value;
            at the start of a step nothing has changed; after a fixed step (no line search)
            the parameters are put back to the last finite point first. ``"propagate"``: as
            ``torch.optim.LBFGS``, values flow into the parameters. In both modes the strong-
            Wolfe search treats a non-finite trial point as too far and shrinks the step
            (down to ``t = 0``, which ends the step), so it never moves onto one.

    The state (``d``, ``t``, ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``, ``al``,
    ``prev_flat_grad``, ``prev_loss``, ``func_evals``, ``n_iter``) has torch's keys and layout,
    so state dicts load both ways.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | torch.Tensor = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
        *,
        nonfinite: str = "raise",
    ) -> None:
        if nonfinite not in LBFGS_NONFINITE_MODES:
            raise ValueError(
                f"nonfinite={nonfinite!r} is invalid: expected one of "
                f"{', '.join(map(repr, LBFGS_NONFINITE_MODES))}"
            )
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = {
            "lr": lr,
            "max_iter": max_iter,
            "max_eval": max_eval,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
            "history_size": history_size,
            "line_search_fn": line_search_fn,
        }
        _check_group(defaults)
        self.nonfinite = nonfinite
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params = self.param_groups[0]["params"]
        self._numel_cache: int | None = None

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add the (single) group after checking its hyperparameters."""
        _check_group({**self.defaults, **param_group})
        super().add_param_group(param_group)

    # -- the parameters as one flat vector ----------------------------------------------------

    def _numel(self) -> int:
        if self._numel_cache is None:
            self._numel_cache = sum(
                2 * p.numel() if torch.is_complex(p) else p.numel() for p in self._params
            )
        return self._numel_cache

    def _gather_flat_grad(self) -> torch.Tensor:
        views = []
        for p in self._params:
            if p.grad is None:
                view = p.new(p.numel()).zero_()
            elif p.grad.is_sparse:
                view = p.grad.to_dense().view(-1)
            else:
                view = p.grad.view(-1)
            if torch.is_complex(view):
                view = torch.view_as_real(view).view(-1)
            views.append(view)
        # cat copies, so the flat gradient survives the next backward pass.
        return torch.cat(views, 0)

    def _add_grad(self, step_size: Any, update: torch.Tensor) -> None:
        offset = 0
        for p in self._params:
            if torch.is_complex(p):
                p = torch.view_as_real(p)
            numel = p.numel()
            p.add_(update[offset : offset + numel].view_as(p), alpha=step_size)
            offset += numel

    def _clone_param(self) -> list[torch.Tensor]:
        return [p.clone(memory_format=torch.contiguous_format) for p in self._params]

    def _set_param(self, params_data: list[torch.Tensor]) -> None:
        for p, pdata in zip(self._params, params_data, strict=True):
            p.copy_(pdata)

    def _check_finite(self, loss: float, flat_grad: torch.Tensor, where: str) -> None:
        if self.nonfinite != "raise":
            return
        if not is_finite(loss):
            raise NonFiniteError(f"the closure returned a non-finite loss ({loss}) {where}")
        if not bool(torch.isfinite(flat_grad).all()):
            raise NonFiniteError(f"the gradient holds inf or NaN {where}")

    # -- the step -----------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """Run up to ``max_iter`` L-BFGS iterations; ``closure`` re-evaluates the model
        (zero the gradients, compute the loss, ``backward()``, return the loss).

        Returns the loss of the first closure call, as torch does.
        """
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        closure = torch.enable_grad()(closure)

        group = self.param_groups[0]
        lr = group["lr"]
        if isinstance(lr, torch.Tensor) and lr.dim() != 0:
            lr = lr.squeeze()
        max_iter = group["max_iter"]
        max_eval = group["max_eval"]
        tolerance_grad = group["tolerance_grad"]
        tolerance_change = group["tolerance_change"]
        line_search_fn = group["line_search_fn"]
        # A whole float (3.0) counts as in torch, and sizes the list of coefficients too.
        history_size = int(group["history_size"])

        # LBFGS's state is global; it lives under the first parameter, as in torch, so that
        # load_state_dict casts it to that parameter's dtype and device.
        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = closure()
        loss = float(orig_loss)
        flat_grad = self._gather_flat_grad()
        self._check_finite(
            loss,
            flat_grad,
            "at the start of step(); nothing was changed (if "
            "the previous step ran without a line search, its last move is not "
            "re-evaluated and may have diverged: lower lr or use "
            "line_search_fn='strong_wolfe')",
        )
        current_evals = 1
        state["func_evals"] += 1
        opt_cond = flat_grad.abs().max() <= tolerance_grad
        if opt_cond:
            return orig_loss

        d = state.get("d")
        t = state.get("t")
        old_dirs = state.get("old_dirs")
        old_stps = state.get("old_stps")
        ro = state.get("ro")
        H_diag = state.get("H_diag")
        prev_flat_grad = state.get("prev_flat_grad")
        prev_loss = state.get("prev_loss")

        def save_state() -> None:
            state["d"] = d
            state["t"] = t
            state["old_dirs"] = old_dirs
            state["old_stps"] = old_stps
            state["ro"] = ro
            state["H_diag"] = H_diag
            state["prev_flat_grad"] = prev_flat_grad
            state["prev_loss"] = prev_loss

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # -- direction --
            if state["n_iter"] == 1:
                d = flat_grad.neg()
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1
            else:
                y = flat_grad.sub(prev_flat_grad)
                s = d.mul(t)
                ys = y.dot(s)
                if ys > 1e-10:
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / y.dot(y)
                if "al" not in state:
                    state["al"] = [None] * history_size
                d = two_loop(flat_grad, old_stps, old_dirs, ro, H_diag, state["al"])

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.clone(memory_format=torch.contiguous_format)
            else:
                prev_flat_grad.copy_(flat_grad)
            prev_loss = loss

            # -- step length: the very first one moves no coordinate by more than lr --
            t = min(1.0, 1.0 / flat_grad.abs().sum()) * lr if state["n_iter"] == 1 else lr

            gtd = flat_grad.dot(d)
            if self.nonfinite == "raise" and not is_finite(gtd):
                t = 0
                save_state()
                raise NonFiniteError(
                    "the L-BFGS direction holds inf or NaN (its curvature "
                    "pairs overflowed); nothing was changed in this iteration"
                )
            if gtd > -tolerance_change:
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                x_init = self._clone_param()

                def phi(
                    step: Any,
                    x_init: list[torch.Tensor] = x_init,
                    d: torch.Tensor = d,
                ) -> tuple[float, torch.Tensor, torch.Tensor]:
                    self._add_grad(step, d)
                    trial_loss = float(closure())
                    trial_grad = self._gather_flat_grad()
                    self._set_param(x_init)
                    return trial_loss, trial_grad, trial_grad.dot(d)

                search = strong_wolfe(
                    phi, t, loss, flat_grad, gtd, d.abs().max(), max_ls=max_eval - current_evals
                )
                loss, flat_grad, t, ls_func_evals = search.f, search.g, search.t, search.evals
                self._add_grad(t, d)
                opt_cond = flat_grad.abs().max() <= tolerance_grad
            else:
                x_before = self._clone_param() if self.nonfinite == "raise" else None
                self._add_grad(t, d)
                if n_iter != max_iter:
                    # The last iteration skips this evaluation, as torch does: the next step()
                    # evaluates the closure anyway.
                    with torch.enable_grad():
                        loss = closure()
                    loss = float(loss)
                    flat_grad = self._gather_flat_grad()
                    if x_before is not None and not (
                        is_finite(loss) and bool(torch.isfinite(flat_grad).all())
                    ):
                        self._set_param(x_before)
                        t = 0
                        save_state()
                        raise NonFiniteError(
                            f"the step with lr={float(lr):g} reached a non-finite loss ({loss}) "
                            "or gradient; the parameters were put back to the last finite point "
                            "(lower lr or use line_search_fn='strong_wolfe')"
                        )
                    opt_cond = flat_grad.abs().max() <= tolerance_grad
                    ls_func_evals = 1

            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            # -- stopping tests --
            if n_iter == max_iter:
                break
            if current_evals >= max_eval:
                break
            if opt_cond:
                break
            if d.mul(t).abs().max() <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        save_state()
        return orig_loss
