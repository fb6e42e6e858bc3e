"""The selection criteria, in one place: what each one scores and how it draws.

A criterion scores every (image i, text j) pair of a super-batch as

    A_ij = learner_weight · l_learner(i, j) + reference_weight · l_reference(i, j)

with l the pair's SigLIP loss under each model, and draws the batch in one of three ways:

- ``joint``: chunk by chunk, each chunk by A_ii + Σ_{k chosen}(A_ik + A_ki), i.e. conditioned
  on every pair with the chunks before it (the paper's Algorithm 1);
- ``super_batch``: all at once, each example by its own loss in the whole super-batch, its
  positive pair plus its negatives against every other example, Σ_j (A_ij + A_ji) − A_ii (the
  paper's Eq. 2: its per-example, "independent" baseline);
- ``own_pair``: all at once, each example by its own pair alone, A_ii.

A criterion that scores nothing draws uniformly at random.

An offline criterion (``offline`` set) scores each example alone from the reference's
embeddings, higher is better, and keeps the top of a whole pool rather than choosing inside
super-batches: the score job writes it as a column, ``filter --column`` keeps its top fraction,
and bootstrap's ``--compare`` trains uniformly on that fraction of the web data.

Everything else (the Selector, the training loop, bootstrap's flags, the offline score and
filter jobs) asks this table, so adding a criterion is adding one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch

    from jestfilter.selection.outputs import SiglipOutputs

# Per-example scores every selection reports for each example's own pair (i, i), and the
# columns the manifest and the offline score job store them in.
SCORE_COLUMNS = ("learner_loss", "reference_loss", "learnability")
DRAWS = ("joint", "super_batch", "own_pair")
# How each chunk is drawn from its scores: softmax (Gumbel-top-k) or the top scores.
SAMPLINGS = ("softmax", "greedy")


@dataclass(frozen=True)
class Criterion:
    """One way to score and draw a batch."""

    name: str
    learner_weight: float
    reference_weight: float
    draw: str  # one of DRAWS
    summary: str
    # a per-example score of the reference's outputs (higher is better), for offline criteria
    offline: Callable[[SiglipOutputs, torch.Generator], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.draw not in DRAWS:
            raise ValueError(f"criterion {self.name}: draw must be one of {', '.join(DRAWS)}, got {self.draw!r}")

    @property
    def joint(self) -> bool:
        """Drawn chunk by chunk, each conditioned on the chunks before it."""
        return self.draw == "joint"

    @property
    def needs_learner(self) -> bool:
        return self.learner_weight != 0

    @property
    def needs_reference(self) -> bool:
        return self.reference_weight != 0 or self.offline is not None

    @property
    def random(self) -> bool:
        """Scores nothing: the batch is drawn uniformly at random (and nothing is read beyond b)."""
        return not (self.needs_learner or self.needs_reference)


def _from_losses(name: str) -> Callable[..., torch.Tensor]:
    """``jestfilter.selection.losses.<name>``, imported when first called: the table itself stays
    plain Python, so the CLI can list it without loading torch."""
    def score(*args, **kwargs) -> torch.Tensor:
        from jestfilter.selection import losses

        return getattr(losses, name)(*args, **kwargs)

    score.__name__ = score.__qualname__ = name
    return score


CRITERIA: dict[str, Criterion] = {c.name: c for c in (
    Criterion("learnability", 1.0, -1.0, "joint", "learner loss − reference loss, chosen jointly (JEST)"),
    Criterion("independent", 1.0, -1.0, "super_batch", "learnability of each example's loss in the super-batch "
                                                       "(the paper's per-example baseline)"),
    Criterion("independent_own_pair", 1.0, -1.0, "own_pair", "learnability of each example's own pair alone"),
    Criterion("hard_learner", 1.0, 0.0, "joint", "learner loss, chosen jointly"),
    Criterion("easy_reference", 0.0, -1.0, "joint", "− reference loss, chosen jointly"),
    Criterion("reference_score", 0.0, -1.0, "own_pair", "− reference loss of each example's own pair (CLIP-score "
                                                        "filtering inside each super-batch)"),
    Criterion("uniform", 0.0, 0.0, "own_pair", "uniformly at random"),
    Criterion("clip_score", 0.0, 0.0, "own_pair", "the reference's image-text cosine similarity, top of the whole "
                                                  "pool (DataComp's CLIP-score filter)",
              offline=_from_losses("clip_score")),
    Criterion("neg_clip_loss", 0.0, 0.0, "own_pair", "CLIP score minus the reference's contrastive normaliser over "
                                                     "random batches, top of the whole pool (negCLIPLoss, arXiv "
                                                     "2405.19547)", offline=_from_losses("neg_clip_loss")),
)}
# The criteria that choose inside super-batches (the Selector's methods), and the offline ones,
# whose names are also the score job's extra columns.
ONLINE = tuple(name for name, c in CRITERIA.items() if c.offline is None)
OFFLINE_SCORES = tuple(name for name, c in CRITERIA.items() if c.offline is not None)


def criterion(name: str) -> Criterion:
    """The criterion called ``name``, or a ValueError listing them all."""
    if name not in CRITERIA:
        raise ValueError(f"unknown method {name!r}: choose one of {', '.join(CRITERIA)}")
    return CRITERIA[name]
