"""The training horizon: a fixed number of epochs, or as many as fit in a wall-clock budget.

With `train.budget_minutes`, the run re-plans after every epoch (and once early in the first):
the epochs that still fit = remaining time / recent epoch time (validation and checkpoints
included), capped by `train.epochs`. The LR schedule decays over the planned steps, so warm-up,
decay, early stopping and checkpoints all happen inside the budget; when the clock runs out in
the middle of an epoch, that epoch ends early and is validated as the last one.
"""

from __future__ import annotations

import math
import time

EARLY_ESTIMATE_STEPS = 5  # steps of the first epoch timed for the first plan
RECENT_EPOCHS = 3  # epochs averaged for the time one more epoch takes


class Horizon:
    """How many epochs the run plans, and the optimiser steps the LR schedule decays over."""

    def __init__(
        self,
        max_epochs: int,
        steps_per_epoch: int,
        budget_minutes: float | None = None,
        elapsed_s: float = 0.0,
    ) -> None:
        self.max_epochs = max_epochs
        self.steps_per_epoch = steps_per_epoch
        self.budget_s = None if budget_minutes is None else budget_minutes * 60.0
        self.started = time.perf_counter() - elapsed_s
        self.planned_epochs = max_epochs
        self.reserve_s = 0.0  # kept for the last validation and checkpoint
        self._epoch_seconds: list[float] = []

    @property
    def budgeted(self) -> bool:
        return self.budget_s is not None

    @property
    def total_steps(self) -> int:
        return max(1, self.planned_epochs * self.steps_per_epoch)

    def warmup_steps(self, configured: int) -> int:
        """Warm-up steps: as configured, but at most a tenth of a budgeted run's planned steps."""
        return min(configured, self.total_steps // 10) if self.budgeted else configured

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def out_of_time(self) -> bool:
        """True once only the time for the last validation and checkpoint is left."""
        return self.budget_s is not None and self.elapsed() + self.reserve_s >= self.budget_s

    def expect_validation(self, seconds: float) -> None:
        """Keep `seconds` (the last validation and checkpoint, measured or estimated) in hand."""
        self.reserve_s = seconds

    def _plan(self, epochs_done: float, epoch_seconds: float) -> None:
        remaining = max(0.0, self.budget_s - self.elapsed())
        fits = int(epochs_done + remaining / max(epoch_seconds, 1e-6))
        self.planned_epochs = max(1, math.ceil(epochs_done), min(self.max_epochs, fits))

    def early_estimate(self, epochs_done: int, steps: int, seconds: float) -> None:
        """First plan, from the time of the first `steps` steps of this session's first epoch."""
        if self.budgeted and not self._epoch_seconds and steps:
            per_epoch = seconds / steps * self.steps_per_epoch * 1.1  # + validation, checkpoint
            self._plan(epochs_done + steps / self.steps_per_epoch, per_epoch)

    def epoch_finished(self, epochs_done: int, seconds: float) -> None:
        """Re-plan from the time the last epochs took (validation and checkpoint included)."""
        if not self.budgeted:
            return
        self._epoch_seconds.append(seconds)
        recent = self._epoch_seconds[-RECENT_EPOCHS:]
        self._plan(epochs_done, sum(recent) / len(recent))
