"""The training horizon: a fixed number of epochs, or as many steps as fit in a wall-clock budget.

With `train.budget_minutes`, the run re-plans every few steps: the optimiser steps that still
fit = remaining time / mean time per step so far (validation and checkpoints included), capped
by `train.epochs`. The LR schedule decays over the planned steps,
so warm-up, decay, early stopping and checkpoints all happen inside the budget, and the last
epoch is cut where the time runs out (it is validated and checkpointed as the last one; the time
for that is kept in hand).
"""

from __future__ import annotations

import math
import time

EARLY_ESTIMATE_STEPS = 5  # steps timed before the first plan


class Horizon:
    """How many epochs and optimiser steps the run plans (the LR schedule decays over them)."""

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
        self.planned_steps = max_epochs * steps_per_epoch
        self.reserve_s = 0.0  # kept for the last validation and checkpoint
        self._first_step: tuple[float, int] | None = None

    @property
    def budgeted(self) -> bool:
        return self.budget_s is not None

    @property
    def total_steps(self) -> int:
        return max(1, self.planned_steps)

    @property
    def planned_epochs(self) -> int:
        return max(1, math.ceil(self.planned_steps / max(1, self.steps_per_epoch)))

    def end_at_epoch(self, epochs: int) -> None:
        """The run ends with `epochs` (its clock ran out)."""
        self.planned_steps = min(self.planned_steps, epochs * self.steps_per_epoch)

    def warmup_steps(self, configured: int) -> int:
        """Warm-up steps: as configured, but at most a tenth of a budgeted run's planned steps."""
        return min(configured, self.total_steps // 10) if self.budgeted else configured

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def out_of_time(self) -> bool:
        """True once only the time for the last validation and checkpoint is left."""
        return self.budget_s is not None and self.elapsed() + self.reserve_s >= self.budget_s

    def reached(self, steps_done: int) -> bool:
        """A budgeted run has taken every step it planned (its LR has decayed to 0)."""
        return self.budgeted and steps_done >= self.total_steps

    def expect_validation(self, seconds: float) -> None:
        """Keep `seconds` (the last validation and checkpoint, measured or estimated) in hand."""
        self.reserve_s = seconds

    def _plan(self, steps_done: int, step_seconds: float) -> None:
        remaining = max(0.0, self.budget_s - self.reserve_s - self.elapsed())
        fits = steps_done + int(remaining / max(step_seconds, 1e-9))
        self.planned_steps = max(1, steps_done, min(self.max_epochs * self.steps_per_epoch, fits))

    def step_taken(self, steps_done: int) -> None:
        """Re-plan from this session's mean time per step (validation and checkpoints included),
        timed from its first step so that loading and worker start-up don't count twice."""
        if not self.budgeted:
            return
        now = time.perf_counter()
        if self._first_step is None:
            self._first_step = (now, steps_done)
            return
        started, first = self._first_step
        if steps_done - first >= EARLY_ESTIMATE_STEPS:
            self._plan(steps_done, (now - started) / (steps_done - first))
