"""`train.budget_minutes`: the horizon plan on a fake clock; a real tiny run stops in time."""

from __future__ import annotations

import pytest

from tests.test_training import read_metrics, tiny_config

torch = pytest.importorskip("torch")

from dermaseg.datasets.synth import generate_dataset  # noqa: E402
from dermaseg.train import budget  # noqa: E402
from dermaseg.train.budget import Horizon  # noqa: E402
from dermaseg.train.trainer import lr_factor, train  # noqa: E402


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("synth") / "data"
    generate_dataset(root, n=12, size=96, seed=5)
    return root


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(budget.time, "perf_counter", fake)
    return fake


def test_without_budget_the_horizon_is_the_epoch_count(clock: FakeClock) -> None:
    horizon = Horizon(max_epochs=7, steps_per_epoch=10)
    for step in range(1, 20):
        clock.now += 1e5
        horizon.step_taken(step)
    assert not horizon.budgeted and not horizon.out_of_time() and not horizon.reached(1000)
    assert horizon.planned_epochs == 7 and horizon.total_steps == 70


def test_budget_plans_the_steps_that_fit_and_replans(clock: FakeClock) -> None:
    horizon = Horizon(max_epochs=100, steps_per_epoch=20, budget_minutes=10)  # 600 s
    clock.now += 30  # loading photos and the first step count against the budget...
    horizon.expect_validation(10.0)
    horizon.step_taken(1)  # ...but not in the time per step
    assert horizon.planned_steps == 2000  # no plan before a few steps are timed
    for step in range(2, 7):
        clock.now += 0.5
        horizon.step_taken(step)
    assert horizon.planned_steps == 6 + int((600 - 10 - 32.5) / 0.5)
    clock.now += 60.0  # a validation: the mean time per step grows
    horizon.step_taken(7)
    assert horizon.planned_steps == 7 + int((600 - 10 - 93) / (63.0 / 6))
    assert horizon.planned_epochs == 3 and horizon.warmup_steps(40) == horizon.total_steps // 10
    assert not horizon.reached(horizon.total_steps - 1) and horizon.reached(horizon.total_steps)
    clock.now = horizon.started + 590  # only the last validation's time is left
    assert horizon.out_of_time()
    horizon.step_taken(60)
    assert horizon.planned_steps == 60  # never fewer than done, never more than fit
    horizon.end_at_epoch(2)
    assert horizon.planned_epochs == 2


def test_budget_never_plans_more_than_max_epochs(clock: FakeClock) -> None:
    horizon = Horizon(max_epochs=5, steps_per_epoch=4, budget_minutes=60)
    for step in range(1, 10):
        clock.now += 0.01
        horizon.step_taken(step)
    assert horizon.planned_epochs == 5 and horizon.total_steps == 20


def test_lr_decays_to_zero_at_the_planned_end() -> None:
    total = 9 * 20
    assert lr_factor(total, total, 20, "cosine", 0.9) == pytest.approx(0.0)
    assert lr_factor(total // 2 + 10, total, 20, "cosine", 0.9) == pytest.approx(0.5)


def test_budgeted_run_stops_in_time_and_says_how_far_it_got(synth_data, tmp_path, capsys) -> None:
    minutes = 0.1  # 6 s, far less than 500 epochs take
    config = tiny_config(
        synth_data,
        tmp_path / "runs",
        "train.epochs=500",
        f"train.budget_minutes={minutes}",
        "train.overlay_every=0",
        "train.early_stop_patience=0",
    )
    result = train(config, show_progress=False)
    rows = read_metrics(result.run_dir)
    assert 1 <= result.epochs_done < 500 and len(rows) == result.epochs_done
    epoch_s = max(float(r["seconds"]) for r in rows)
    elapsed = float(rows[-1]["elapsed_seconds"])
    # the budget is used, not overrun by more than an epoch (and its validation) on a busy machine
    assert minutes * 60 * 0.5 <= elapsed <= minutes * 60 + 2 * epoch_s + 1.0
    assert int(rows[-1]["planned_epochs"]) == result.epochs_done
    assert (result.run_dir / "weights" / "best.safetensors").is_file()
    assert rows[-1]["val_mean_dice"] != ""  # the last epoch was validated
    assert f"Budget {minutes:g} min: {result.epochs_done} epochs done" in capsys.readouterr().err
