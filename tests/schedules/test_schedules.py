"""Schedules against their closed forms, and their input checks."""

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from descend import schedules

steps = st.integers(0, 10_000)
rates = st.floats(1e-6, 10.0)


@given(rates, st.integers(1, 100), st.floats(0.01, 1.0), steps)
def test_step_decay(base, size, gamma, t):
    assert schedules.step_decay(base, size, gamma)(t) == pytest.approx(base * gamma ** (t // size))


@given(rates, st.floats(0, 1), steps)
def test_exponential_decay(base, k, t):
    assert schedules.exponential_decay(base, k)(t) == pytest.approx(base * math.exp(-k * t))


@given(rates, st.floats(0, 1), steps)
def test_inverse_time_decay(base, k, t):
    assert schedules.inverse_time_decay(base, k)(t) == pytest.approx(base / (1 + k * t))


@given(rates, st.integers(1, 1000), steps)
def test_cosine_decay_goes_from_base_to_final_and_never_increases(base, total, t):
    schedule = schedules.cosine_decay(base, total, final_lr=base / 10)
    assert schedule(0) == pytest.approx(base)
    assert schedule(total) == pytest.approx(base / 10)
    assert schedule(t + 1) <= schedule(t) + 1e-12
    assert schedule(total // 2) == pytest.approx(
        base / 10 + (base - base / 10) * (1 + math.cos(math.pi * (total // 2) / total)) / 2
    )


def test_linear_warmup_then_decay():
    schedule = schedules.warmup_then(schedules.exponential_decay(1.0, 0.1), warmup_steps=4)
    assert schedules.evaluate(schedule, 6) == pytest.approx(
        [0.0, 0.25, 0.5, 0.75, 1.0, math.exp(-0.1)]
    )


def test_join_gives_each_schedule_its_own_clock():
    schedule = schedules.join(
        [schedules.constant(1.0), schedules.step_decay(0.5, 2), schedules.constant(0.01)],
        boundaries=[3, 7],
    )
    assert schedules.evaluate(schedule, 9) == pytest.approx(
        [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.01, 0.01]
    )


def test_schedules_pickle_and_compare():
    schedule = schedules.cosine_decay(0.1, 100)
    assert pickle.loads(pickle.dumps(schedule)) == schedule
    assert "cosine_decay(base_lr=0.1" in repr(schedule)


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: schedules.step_decay(0.1, 0), "step_size=0 is invalid"),
        (lambda: schedules.step_decay(0.1, 10, gamma=1.5), "gamma=1.5 is out of range"),
        (lambda: schedules.exponential_decay(-1.0, 0.1), "base_lr=-1.0 is invalid"),
        (lambda: schedules.inverse_time_decay(0.1, float("nan")), "k=nan is invalid"),
        (lambda: schedules.cosine_decay(0.1, 2.5), "total_steps=2.5 is invalid"),
        (lambda: schedules.join([schedules.constant(1)], [3]), "one boundary fewer"),
        (lambda: schedules.join([schedules.constant(1)] * 3, [5, 5]), "strictly increasing"),
        (lambda: schedules.constant(0.1)(-1), "step=-1 is invalid"),
    ],
)
def test_bad_input_is_named(build, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        build()
