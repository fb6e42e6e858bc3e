"""The selection criteria, in one place: what each one scores and how it draws.

A criterion scores every (image i, text j) pair of a super-batch as

    A_ij = learner_weight · l_learner(i, j) + reference_weight · l_reference(i, j)

with l the pair's SigLIP loss under each model. A joint criterion draws the batch chunk by
chunk, each chunk conditioned on every pair with the chunks before it (the paper's Algorithm 1);
a per-example one draws all of it at once by each example's own score A_ii. A criterion that
scores nothing draws uniformly at random.

Everything else (the Selector, the training loop, bootstrap's flags, the offline score and
filter jobs) asks this table, so adding a criterion is adding one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

# Per-example scores every selection reports for each example's own pair (i, i), and the
# columns the manifest and the offline score job store them in.
SCORE_COLUMNS = ("learner_loss", "reference_loss", "learnability")


@dataclass(frozen=True)
class Criterion:
    """One way to score and draw a batch."""

    name: str
    learner_weight: float
    reference_weight: float
    joint: bool
    summary: str

    @property
    def needs_learner(self) -> bool:
        return self.learner_weight != 0

    @property
    def needs_reference(self) -> bool:
        return self.reference_weight != 0

    @property
    def random(self) -> bool:
        """Scores nothing: the batch is drawn uniformly at random (and nothing is read beyond b)."""
        return not (self.needs_learner or self.needs_reference)


CRITERIA: dict[str, Criterion] = {c.name: c for c in (
    Criterion("learnability", 1.0, -1.0, True, "learner loss − reference loss, chosen jointly (JEST)"),
    Criterion("independent", 1.0, -1.0, False, "learnability of each example's own pair, no joint terms"),
    Criterion("hard_learner", 1.0, 0.0, True, "learner loss, chosen jointly"),
    Criterion("easy_reference", 0.0, -1.0, True, "− reference loss, chosen jointly"),
    Criterion("reference_score", 0.0, -1.0, False, "− reference loss of each example's own pair (CLIP-score "
                                                   "filtering inside each super-batch)"),
    Criterion("uniform", 0.0, 0.0, False, "uniformly at random"),
)}


def criterion(name: str) -> Criterion:
    """The criterion called ``name``, or a ValueError listing them all."""
    if name not in CRITERIA:
        raise ValueError(f"unknown method {name!r}: choose one of {', '.join(CRITERIA)}")
    return CRITERIA[name]
