"""What each step reads: B = b/(1−f) rows while the run selects, b after ``--select-until``.

Online selection pays most early in training, while the learner still has much to learn from
the right data; late in the run scoring B rows to keep b costs more than it gives. A run can
therefore stop selecting after a fraction of its steps (and read only b rows a step from then
on, from the same stream), and lower the filter ratio linearly while it selects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from jestfilter.config import TrainSettings
from jestfilter.selection import Selector
from jestfilter.selection.batches import BatchPlan


@dataclass(frozen=True)
class StepPlan:
    """Rows read per step over all ranks; a picklable function of the step for the loader.

    ``batch_size`` is b; the run selects for its first ``select_steps`` steps, with a filter
    ratio going linearly from ``filter_ratio`` to ``filter_ratio_end`` (None: constant) and
    reads ``batch_size`` rows a step after them. ``ranks`` splits each step's rows; B is
    rounded up to a multiple of it. ``reads_extra`` is False for criteria that read b anyway.
    """

    batch_size: int
    filter_ratio: float
    select_steps: int
    filter_ratio_end: float | None = None
    ranks: int = 1
    reads_extra: bool = True

    def selects(self, step: int) -> bool:
        """Whether ``step`` scores a super-batch and selects from it."""
        return step < self.select_steps

    def filter_ratio_at(self, step: int) -> float:
        if self.filter_ratio_end is None or self.select_steps <= 1:
            return self.filter_ratio
        progress = min(1.0, step / (self.select_steps - 1))
        return self.filter_ratio + (self.filter_ratio_end - self.filter_ratio) * progress

    def super_batch(self, step: int) -> int:
        """B of ``step`` over all ranks (b once the run no longer selects), rounded up to whole rows a rank."""
        if not self.reads_extra or not self.selects(step):
            return self.batch_size
        rows = BatchPlan(self.batch_size, self.filter_ratio_at(step)).super_batch
        return -(-rows // self.ranks) * self.ranks

    def mean_super_batch(self) -> float:
        """B averaged over the selecting steps (at most 1,000 of them, evenly spaced: the plan of
        a long run is instant); b when the run never selects."""
        steps = range(0, self.select_steps, max(1, self.select_steps // 1000))
        return sum(self.super_batch(step) for step in steps) / len(steps) if steps else float(self.batch_size)

    def batches(self, step: int) -> BatchPlan:
        """b kept of this step's B (its filter ratio, after B's rounding)."""
        return BatchPlan.keeping(self.batch_size, self.super_batch(step), ranks=self.ranks)

    def __call__(self, step: int) -> int:
        """Rows one rank reads at ``step``."""
        return self.super_batch(step) // self.ranks


def step_plan(settings: TrainSettings, ranks: int = 1) -> StepPlan:
    """What each step of a run with ``settings`` reads over ``ranks`` ranks."""
    return StepPlan(settings.batch_size, settings.filter_ratio, settings.select_steps, settings.filter_ratio_end,
                    ranks, settings.batches().selects)


def make_selector(settings: TrainSettings, ranks: int = 1, filter_ratio: float | None = None) -> Selector:
    """The Selector of a run over ``ranks`` ranks (at another ``filter_ratio`` for a schedule):
    it also says what B to read per step."""
    return Selector(settings.method, settings.filter_ratio if filter_ratio is None else filter_ratio,
                    settings.n_chunks, settings.sampling, settings.gain, settings.seed, strata=ranks,
                    batch_size=settings.batch_size)


def evaluation_due(step: int, steps: int, eval_every: int) -> bool:
    """Whether a run of ``steps`` evaluates after ``step``: every ``eval_every`` steps, four times
    as often in the last fifth of the run (where curves cross the baseline's final accuracy),
    and at the end."""
    every = max(1, eval_every // 4) if step > 0.8 * steps else eval_every
    return step % every == 0 or step == steps


def evaluations(steps: int, eval_every: int) -> int:
    """How many evaluations a run of ``steps`` makes, the one before its first step included:
    ``evaluation_due`` counted without visiting every step (the plan of a long run is instant)."""
    if steps < 1:
        return 1
    last_early = math.floor(0.8 * steps)  # the steps up to it evaluate every eval_every
    every = max(1, eval_every // 4)
    late = steps // every - last_early // every
    return 1 + last_early // eval_every + late + (1 if steps % every else 0)
