"""The parts of the torch.optim contract users rely on: closures, schedulers, AMP, hooks."""

from __future__ import annotations

import pytest
import torch

import descend
from descend.testing import TOLERANCE, relative_error


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _data(seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 6, generator=generator)
    return x, x[:, :1] * 2 - x[:, 1:2]


def _train(model, optimizer, scheduler=None, steps=30, closure=False):
    x, y = _data()
    losses = []
    for _ in range(steps):

        def compute_loss():
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss

        if closure:
            loss = optimizer.step(compute_loss)
        else:
            loss = compute_loss()
            optimizer.step()
        losses.append(loss.item())
        if scheduler is not None:
            scheduler.step()
    return losses


def _same_parameters(a, b, dtype=torch.float32):
    return all(
        relative_error(p, q) <= 10 * TOLERANCE[dtype]
        for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def test_closure_loss_is_returned_and_training_converges():
    model = _model()
    losses = _train(model, descend.Adam(model.parameters(), lr=0.01), closure=True, steps=200)
    assert losses[-1] < 0.05 * losses[0]


def test_zero_grad_clears_gradients_like_torch():
    model = _model()
    optimizer = descend.SGD(model.parameters(), lr=0.1)
    _train(model, optimizer, steps=1)
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    _train(model, optimizer, steps=1)
    optimizer.zero_grad(set_to_none=False)
    assert all(torch.count_nonzero(p.grad) == 0 for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "options", "make_scheduler"),
    [
        (
            "SGD",
            dict(lr=0.1, momentum=0.9),
            lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=5, gamma=0.5),
        ),
        (
            "SGD",
            dict(lr=0.1, momentum=0.9),
            lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.2, total_steps=31),
        ),
        (
            "Adam",
            dict(lr=0.01),
            lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=31),
        ),
        ("AdamW", dict(lr=0.01), lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=30)),
        ("RMSprop", dict(lr=0.01), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9)),
    ],
)
def test_torch_lr_schedulers_drive_descend_exactly_like_torch(name, options, make_scheduler):
    ours_model, torch_model = _model(), _model()
    ours = getattr(descend, name)(ours_model.parameters(), **options)
    theirs = getattr(torch.optim, name)(torch_model.parameters(), **options)
    ours_losses = _train(ours_model, ours, make_scheduler(ours))
    torch_losses = _train(torch_model, theirs, make_scheduler(theirs))
    assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"])
    assert ours_losses[-1] == pytest.approx(torch_losses[-1], rel=1e-4)
    assert _same_parameters(ours_model, torch_model)


def test_grad_scaler_unscales_and_skips_overflowing_steps():
    model = _model()
    reference = _model()
    optimizer = descend.Adam(model.parameters(), lr=0.01)
    reference_optimizer = torch.optim.Adam(reference.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    reference_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    x, y = _data()
    for step in range(10):
        for net, opt, sc in (
            (model, optimizer, scaler),
            (reference, reference_optimizer, reference_scaler),
        ):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            if step == 4:
                loss = loss * float("inf")  # an overflow: the scaler must skip this step
            sc.scale(loss).backward()
            sc.step(opt)
            sc.update()
    assert scaler.get_scale() == reference_scaler.get_scale() < 2.0**10
    assert optimizer.state[next(model.parameters())]["step"].item() == 9
    assert _same_parameters(model, reference)


def test_step_hooks_run():
    model = _model()
    optimizer = descend.SGD(model.parameters(), lr=0.1)
    calls = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: calls.append("pre"))
    optimizer.register_step_post_hook(lambda opt, args, kwargs: calls.append("post"))
    _train(model, optimizer, steps=2)
    assert calls == ["pre", "post", "pre", "post"]


def test_named_parameters_are_accepted_and_kept_in_state_dict():
    model = _model()
    optimizer = descend.Adam(model.named_parameters(), lr=0.01)
    _train(model, optimizer, steps=2)
    names = optimizer.state_dict()["param_groups"][0]["param_names"]
    assert names == [name for name, _ in model.named_parameters()]


def test_parameters_without_gradients_are_left_alone():
    used, unused = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    optimizer = descend.Adam([used, unused], lr=0.1)
    used.grad = torch.ones(3)
    optimizer.step()
    assert torch.equal(unused, torch.ones(3)) and unused not in optimizer.state
    assert not torch.equal(used, torch.ones(3))


def test_half_precision_parameters_follow_torch():
    for dtype in (torch.bfloat16, torch.float16):
        ours_param = torch.linspace(-1, 1, 17, dtype=dtype).requires_grad_()
        torch_param = ours_param.detach().clone().requires_grad_()
        ours = descend.Adam([ours_param], lr=0.01)
        theirs = torch.optim.Adam([torch_param], lr=0.01)
        generator = torch.Generator().manual_seed(0)
        for _ in range(10):
            gradient = torch.randn(17, generator=generator).to(dtype)
            ours_param.grad, torch_param.grad = gradient.clone(), gradient.clone()
            ours.step()
            theirs.step()
        # Both round every operation to the half type; they may differ by an ulp or two.
        assert relative_error(ours_param, torch_param) <= 4 * torch.finfo(dtype).eps


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_a_deep_copy_keeps_descends_settings_and_continues_identically(backend):
    import copy

    params = [torch.linspace(-1, 1, 7, requires_grad=True)]
    optimizer = descend.Adam(params, lr=0.1, nonfinite="skip", backend=backend)
    params[0].grad = torch.ones(7)
    optimizer.step()
    copied_params, copied = copy.deepcopy((params, optimizer))
    assert (copied.nonfinite, copied.backend, copied.skipped_steps) == ("skip", backend, 0)
    for p, opt in ((params[0], optimizer), (copied_params[0], copied)):
        p.grad = torch.full((7,), 0.5)
        opt.step()
        p.grad = torch.full((7,), float("nan"))
        opt.step()  # skipped
    assert torch.equal(params[0], copied_params[0])
    assert copied.skipped_steps == optimizer.skipped_steps == 1
