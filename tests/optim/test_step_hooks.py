"""descend's hook wrapper around ``step`` against torch's: the same hooks in the same order, the
same argument replacement and refusal, the same profiler range, without torch's slow range."""

from __future__ import annotations

import pytest
import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

import descend


def _pair(name: str = "Adam", **kwargs):
    """A descend optimizer and its torch twin over equal parameters with equal gradients."""
    made = []
    for cls in (getattr(descend, name), getattr(torch.optim, name)):
        param = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 12))
        param.grad = torch.linspace(0.5, -0.5, 12)
        made.append((cls([param], lr=0.1, **kwargs), param))
    return made


def _record_hooks(optimizer, calls):
    handles = [
        register_optimizer_step_pre_hook(lambda opt, args, kwargs: calls.append("global pre")),
        register_optimizer_step_post_hook(lambda opt, args, kwargs: calls.append("global post")),
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: calls.append("pre")),
        optimizer.register_step_post_hook(lambda opt, args, kwargs: calls.append("post")),
    ]
    original = optimizer._optimizer_step_code
    optimizer._optimizer_step_code = lambda: (calls.append("step code"), original())
    return handles


def test_hooks_run_in_torchs_order():
    orders = []
    for optimizer, _ in _pair():
        calls: list[str] = []
        handles = _record_hooks(optimizer, calls)
        try:
            optimizer.step()
            optimizer.step()
        finally:
            for handle in handles:
                handle.remove()
        orders.append(calls)
    assert orders[0] == orders[1]
    assert orders[0][:5] == ["global pre", "pre", "step code", "post", "global post"]


def test_a_pre_hook_replaces_the_arguments_as_in_torch():
    results = []
    for optimizer, param in _pair():
        closure_calls = []

        def closure(calls=closure_calls):
            calls.append(1)
            return torch.tensor(3.0)

        optimizer.register_step_pre_hook(lambda opt, args, kwargs: ((opt,), {"closure": closure}))
        loss = optimizer.step()
        results.append((float(loss), len(closure_calls), param.detach().clone()))
    assert results[0][:2] == results[1][:2] == (3.0, 1)
    torch.testing.assert_close(results[0][2], results[1][2])


def test_a_bad_pre_hook_result_is_refused_as_in_torch():
    for optimizer, param in _pair():
        before = param.detach().clone()
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: "not a tuple")
        with pytest.raises(RuntimeError, match="must return None or a tuple"):
            optimizer.step()
        assert torch.equal(param, before)


def test_the_profiler_sees_one_step_range_named_as_torch_names_it():
    for optimizer, _ in _pair():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            optimizer.step()
            optimizer.step()
        names = [event.name for event in prof.events()]
        assert names.count("Optimizer.step#Adam.step") == 2


def test_an_eager_step_opens_no_record_function(monkeypatch):
    """torch's ``record_function`` costs about 11 us a step; the wrapper opens the profiler's
    fast range instead (torch's own wrapper would open ``record_function`` here)."""
    (optimizer, _), (twin, _) = _pair()
    entered = []
    original = torch.autograd.profiler.record_function.__enter__

    def counting_enter(self):
        entered.append(self.name)
        return original(self)

    monkeypatch.setattr(torch.autograd.profiler.record_function, "__enter__", counting_enter)
    twin.step()
    assert entered == ["Optimizer.step#Adam.step"]  # torch's wrapper, as a control
    entered.clear()
    optimizer.step()
    assert entered == []


def test_a_subclass_calling_super_step_runs_its_hooks_once():
    param = torch.nn.Parameter(torch.ones(4))
    param.grad = torch.ones(4)
    optimizer = descend.SGDScheduleFree([param], lr=0.1)
    calls = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: calls.append("pre"))
    optimizer.register_step_post_hook(lambda opt, args, kwargs: calls.append("post"))
    optimizer.step()
    assert calls == ["pre", "post"]
    optimizer.eval()
    with pytest.raises(RuntimeError, match="eval mode"):
        optimizer.step()
    assert calls == ["pre", "post", "pre"]  # as torch: a failing step runs no post-hook
