"""b ↔ B ↔ f in one place: a step keeps b of a super-batch of B = round(b / (1 − f)) rows.

The Selector, the training loop (``StepPlan``), the ``select`` job and bootstrap's plan all
ask ``BatchPlan``, so B is computed one way and never turned back into f and out again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from jestfilter.selection.criteria import Criterion


@dataclass(frozen=True)
class BatchPlan:
    """b (``batch_size``, over all ``ranks``) kept of every super-batch at filter ratio ``f``,
    drawn in ``chunks`` chunks. ``selects=False`` (a criterion that scores nothing): B = b."""

    batch_size: int
    filter_ratio: float
    chunks: int = 1
    ranks: int = 1
    selects: bool = True

    @classmethod
    def of(cls, chosen: Criterion, batch_size: int, filter_ratio: float, n_chunks: int = 1,
           ranks: int = 1) -> BatchPlan:
        """The plan of criterion ``chosen``: a joint one draws in ``n_chunks`` chunks, any other
        at once; a random one reads only b."""
        chunks = n_chunks if chosen.joint and not chosen.random else 1
        return cls(batch_size, filter_ratio, chunks, ranks, not chosen.random)

    @classmethod
    def reading(cls, super_batch: int, filter_ratio: float, chunks: int = 1, ranks: int = 1) -> BatchPlan:
        """The plan that keeps round(B · (1 − f)) of a given B (the ``select`` job's)."""
        return cls(round(super_batch * (1 - filter_ratio)), filter_ratio, chunks, ranks)

    @classmethod
    def keeping(cls, batch_size: int, super_batch: int, chunks: int = 1, ranks: int = 1) -> BatchPlan:
        """The plan that keeps b of exactly B rows (a schedule's step, its B rounded up to whole
        rows a rank): f = 1 − b/B."""
        return cls(batch_size, 1.0 - batch_size / super_batch, chunks, ranks)

    @property
    def super_batch(self) -> int:
        """B over all ranks: round(b / (1 − f)), b when nothing is selected."""
        return round(self.batch_size / (1.0 - self.filter_ratio)) if self.selects else self.batch_size

    def at(self, filter_ratio: float) -> BatchPlan:
        """The same plan at another filter ratio (a schedule's step)."""
        return replace(self, filter_ratio=filter_ratio)

    def check(self) -> None:
        """b must split into chunks × ranks, and B over the ranks, before any data is read."""
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        step = self.chunks * self.ranks
        if self.batch_size % step or self.super_batch % self.ranks:
            parts = ([f"{self.ranks} ranks"] if self.ranks > 1 else []) + \
                    ([f"{self.chunks} chunks"] if step > self.ranks else [])
            raise ValueError(f"b={self.batch_size} (B={self.super_batch}) does not split into {' × '.join(parts)}: "
                             f"use a batch size that is a multiple of {step}")
