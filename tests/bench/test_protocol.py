"""The protocol end to end on a tiny bench, and its parts against hand-computed values."""

from __future__ import annotations

import json
import math

import optuna
import pytest
import torch
from optuna.trial import TrialState

from descend.bench.metrics import median_time, performance_profile, time_to_target
from descend.bench.protocol import (
    Bench,
    BenchConfig,
    build_schedule,
    make_contender,
    run_bench,
)
from descend.bench.search import latin_point, parse_dimension
from descend.bench.tasks import Task, get_task
from descend.bench.training import EpochMetrics, RunResult


def _states(url: str, name: str) -> list[TrialState]:
    return [trial.state for trial in optuna.load_study(study_name=name, storage=url).trials]


@pytest.mark.slow
def test_tiny_bench_end_to_end_with_sqlite(tmp_path):
    task = get_task("digits-logreg")
    config = BenchConfig(trials=3, seeds=2, epochs=2, out=tmp_path, pruner="none")
    results, rows = run_bench([task], ["sgd", "adam"], config=config)
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    for label in ("sgd", "adam"):
        assert _states(url, f"bench:digits-logreg:{label}:tune") == [TrialState.COMPLETE] * 3
        assert _states(url, f"bench:digits-logreg:{label}:seeds") == [TrialState.COMPLETE] * 2
    for result, row in zip(results, rows, strict=True):
        # The best setting is the tuning trial with the highest final validation accuracy.
        values = [trial["value"] for trial in result.trials]
        assert result.best_value == max(values)
        assert result.best_params == result.trials[values.index(max(values))]["params"]
        assert sorted(result.seed_runs) == [1, 2]
        tests = [run.test_accuracy for run in result.seed_runs.values()]
        assert row["test_mean"] == pytest.approx(sum(tests) / 2)
        assert row["test_std"] == pytest.approx(abs(tests[0] - tests[1]) / math.sqrt(2))
        assert row["test_mean"] > 0.5
        low, high = (1e-3, 3.0) if result.label == "sgd" else (1e-5, 1e-1)
        assert all(low <= trial["params"]["lr"] <= high for trial in result.trials)
    # Different seeds give different runs.
    first = results[0].seed_runs
    assert first[1].history[0].train_loss != first[2].history[0].train_loss
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [row["optimizer"] for row in saved["rows"]] == ["sgd", "adam"]
    report = (tmp_path / "report.html").read_text()
    assert report.count("<img") >= 5 and "digits-logreg" in report
    # The shared table: names on the left, numbers (and their headers) on the right.
    assert '<tr><th>optimizer</th><th>best setting</th><th class="num">tuning val</th>' in report
    assert "<tr><td>sgd</td><td>lr=" in report
    assert f'<td class="num">{rows[0]["reached"]}/2</td>' in report
    # Rerunning the same bench finds every budget full and runs nothing.
    run_bench([task], ["sgd", "adam"], config=config)
    assert (
        len(optuna.load_study(study_name="bench:digits-logreg:sgd:tune", storage=url).trials) == 3
    )


@pytest.mark.slow
def test_fixed_lr_is_not_tuned_and_raising_the_budget_extends_tuning(tmp_path):
    task = get_task("digits-logreg")
    fixed = make_contender("sgd:lr=0.3")
    assert fixed.space == ()
    config = BenchConfig(trials=2, seeds=1, epochs=1, out=tmp_path)
    bench = Bench([task], [fixed, make_contender("adam")], config)
    results = bench.run()
    assert results[0].trials == [] and results[0].best_params == {}
    assert len(results[0].seed_runs) == 1 and len(results[1].trials) == 2
    config = BenchConfig(trials=4, seeds=1, epochs=1, out=tmp_path)
    results = Bench([task], [fixed, make_contender("adam")], config).run()
    assert [trial["number"] for trial in results[1].trials] == [0, 1, 2, 3]
    # No budget: the spec's own values (here Adam's default lr) go straight to the seeds.
    config = BenchConfig(trials=0, seeds=1, epochs=1, out=tmp_path, study="untuned")
    results = Bench([task], [make_contender("adam")], config).run()
    assert results[0].trials == [] and results[0].best_params == {}
    assert list(results[0].seed_runs) == [1]


def test_a_scheduled_contender_is_rebuilt_from_the_storage_under_its_label(tmp_path):
    task = get_task("digits-logreg")
    config = BenchConfig(trials=0, seeds=1, epochs=2, out=tmp_path)
    ran = Bench([task], [make_contender("sgd:lr=0.3", "cosine:final_lr=0.03")], config).run()
    rebuilt = Bench.from_storage(f"sqlite:///{tmp_path / 'bench.db'}", "bench", tmp_path)
    (contender,) = rebuilt.contenders
    assert contender.label == ran[0].label == "sgd:lr=0.3+cosine:final_lr=0.03"
    assert contender.schedule_for(2).arguments == {"total_steps": 2, "final_lr": 0.03}
    (result,) = rebuilt.results()
    assert result.seed_runs[1].to_dict() == ran[0].seed_runs[1].to_dict()


def test_reusing_a_study_with_other_settings_is_refused(tmp_path):
    task = get_task("digits-logreg")
    Bench([task], [make_contender("adam")], BenchConfig(epochs=2, out=tmp_path))
    with pytest.raises(ValueError, match="other settings \\(epochs differ\\)"):
        Bench([task], [make_contender("adam")], BenchConfig(epochs=3, out=tmp_path))
    # Another study name in the same storage is fine.
    Bench([task], [make_contender("adam")], BenchConfig(epochs=3, out=tmp_path, study="b"))


def test_storage_that_cannot_be_opened_is_one_clear_error(tmp_path):
    task = get_task("digits-logreg")
    config = BenchConfig(out=tmp_path, storage=f"sqlite:///{tmp_path}/missing/dir/x.db")
    with pytest.raises(ValueError, match="cannot open storage .*does not exist"):
        Bench([task], [make_contender("adam")], config)
    with pytest.raises(ValueError, match="cannot open storage 'nosuchdb://x'"):
        Bench([task], [make_contender("adam")], BenchConfig(out=tmp_path, storage="nosuchdb://x"))


def test_schedules_default_to_the_run_length():
    assert build_schedule("constant", 20) is None
    cosine = build_schedule("cosine", 20).build(1.0)
    assert cosine(0) == 1.0 and cosine(20) == pytest.approx(0.0)
    exponential = build_schedule("exponential", 21).build(1.0)
    assert exponential(20) == pytest.approx(0.1)
    inverse = build_schedule("1/t", 10).build(1.0)
    assert inverse(9) == pytest.approx(0.1)
    step = build_schedule("step", 9).build(1.0)
    assert [step(t) for t in (2, 3, 6)] == [1.0, 0.5, 0.25]
    assert build_schedule("step:step_size=2,gamma=0.1", 9).build(1.0)(2) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        build_schedule("linear", 10)
    contender = make_contender("adam", "cosine")
    assert contender.label == "adam+cosine" and contender.schedule_text == "cosine"
    assert contender.schedule_for(20).arguments == {"total_steps": 20}
    assert contender.schedule_for(30).arguments == {"total_steps": 30}
    constant = make_contender("adam")
    assert constant.label == "adam" and constant.schedule_text == "constant"
    assert constant.schedule_for(20) is None
    with pytest.raises(ValueError, match="cosine does not take total .*'total_steps'"):
        make_contender("adam", "cosine:total=3")


def test_search_dimensions_are_checked_against_the_optimizer():
    contender = make_contender("sgd_momentum", tune=["momentum=0.5:0.99:linear"])
    assert [d.name for d in contender.space] == ["lr", "momentum"]
    assert not contender.space[1].log
    with pytest.raises(ValueError, match="malformed search range"):
        parse_dimension("momentum=0.5")
    with pytest.raises(ValueError, match="does not take betas2"):
        make_contender("adam", tune=["betas2=0.9:0.99"])
    with pytest.raises(ValueError, match="both fixed"):
        make_contender("sgd_momentum:momentum=0.9", tune=["momentum=0.5:0.99"])
    with pytest.raises(ValueError, match="unknown optimizer 'adamx'"):
        make_contender("adamx")


def _run(scores: list[float], seconds: list[float]) -> RunResult:
    return RunResult(
        [
            EpochMetrics(epoch + 1, 0.1, 1.0, 0.5, 1.0, value, second, second)
            for epoch, (value, second) in enumerate(zip(scores, seconds, strict=True))
        ]
    )


def test_time_to_target_is_the_first_epoch_at_the_target():
    task = get_task("digits-logreg").with_options(target=0.9)
    assert time_to_target(task, _run([0.5, 0.9, 0.95], [1.0, 2.0, 3.0])) == (2, 2.0)
    assert time_to_target(task, _run([0.5, 0.8], [1.0, 2.0])) == (None, None)
    # Median over seeds, a miss counting as infinitely slow.
    assert median_time([2, 4, None]) == 4
    assert median_time([2, None, None]) == math.inf


def test_performance_profile_matches_hand_computation():
    times = {
        "a": {"x": 1.0, "y": 2.0, "z": math.inf},
        "b": {"x": 3.0, "y": 1.0, "z": 1.5},
        "c": {"x": math.inf, "y": math.inf, "z": math.inf},
    }
    profile = performance_profile(times, [1.0, 2.0, 3.0])
    assert profile["x"] == pytest.approx([1 / 3, 1 / 3, 2 / 3])
    assert profile["y"] == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    assert profile["z"] == pytest.approx([0, 1 / 3, 1 / 3])


@pytest.mark.slow
def test_python_api_races_optimizers_on_a_users_regression_model(tmp_path):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(200, 3, generator=generator)
    targets = inputs @ torch.tensor([[1.0], [-1.0], [0.5]])
    dataset = torch.utils.data.TensorDataset(inputs, targets)
    train_loader = torch.utils.data.DataLoader(dataset, batch_size=20, shuffle=True)
    eval_loader = torch.utils.data.DataLoader(dataset, batch_size=200)
    task = Task.custom(
        "regression",
        lambda: torch.nn.Linear(3, 1),
        train_loader,
        eval_loader,
        eval_loader,
        loss=torch.nn.functional.mse_loss,
        epochs=3,
        metric="loss",
        target=0.5,
    )
    config = BenchConfig(trials=3, seeds=2, out=tmp_path, pruner="none")
    results, rows = run_bench([task], ["sgd", "adam"], config=config)
    for result, row in zip(results, rows, strict=True):
        # Lower is better: the best trial has the smallest final validation loss.
        values = [trial["value"] for trial in result.trials]
        assert result.best_value == min(values)
        assert row["test_mean"] == pytest.approx(
            sum(run.test_loss for run in result.seed_runs.values()) / 2
        )
    # Linear regression with a tuned lr fits well within 3 epochs.
    assert min(row["test_mean"] for row in rows) < 0.1
    assert "regression" in (tmp_path / "report.html").read_text()


def test_default_sampler_spreads_the_first_half_over_every_slice_of_the_range():
    space = [parse_dimension("lr=1e-5:1e-1"), parse_dimension("momentum=0.5:0.9:linear")]
    points = [latin_point(space, index, 4, seed=0) for index in range(4)]
    lr_slices = sorted(int((math.log10(p["lr"]) + 5) // 1) for p in points)
    momentum_slices = sorted(int((p["momentum"] - 0.5) // 0.1) for p in points)
    assert lr_slices == [0, 1, 2, 3] and momentum_slices == [0, 1, 2, 3]
    assert points == [latin_point(space, index, 4, seed=0) for index in range(4)]
    assert points != [latin_point(space, index, 4, seed=1) for index in range(4)]
