"""The score job: per-example scores of each shard from cached embeddings (``jestfilter.scores``):
the reference loss of each example's own pair and, given a learner, its loss and the
learnability (learner − reference), as the Selector computes them; and every offline
criterion of the table (``clip_score``, ``neg_clip_loss``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from jestfilter.data import expand_shards
from jestfilter.data.atomic import atomic_write
from jestfilter.data.layout import shard_stem
from jestfilter.distributed import resolve_device
from jestfilter.embeddings import cached_shards, load_embeddings
from jestfilter.errors import UsageError
from jestfilter.jobs.common import absolute, learner_embeddings
from jestfilter.jobs.runner import Placement, run_shards, unique_stems
from jestfilter.models import ModelBundle, create_model
from jestfilter.scores import shard_scores

SCORES_SUFFIX = ".scores.parquet"


def scores_path(out_dir: str | os.PathLike, shard: str) -> Path:
    return Path(out_dir) / f"{shard_stem(shard)}{SCORES_SUFFIX}"


def score_shard(shard: str, embeddings_dir: str | os.PathLike, out_dir: str | os.PathLike,
                learner: ModelBundle | None = None, batch_size: int = 256, seed: int = 0) -> int:
    """Write ``out_dir/<shard>.scores.parquet``; returns the number of examples scored."""
    learned = None if learner is None else learner_embeddings(learner, shard, out_dir, batch_size)
    frame = shard_scores(load_embeddings(embeddings_dir, shard), shard, seed, learned)
    atomic_write(scores_path(out_dir, shard), frame.write_parquet)
    return frame.height


def run_score(embeddings: str, out: str, placement: Placement, retries: int = 2, learner: str | None = None,
              patterns: Sequence[str] | None = None, batch_size: int = 256, device: str = "auto",
              seed: int = 0) -> int:
    """Score this rank's shards not yet done; returns the exit status (1 if a shard failed)."""
    if learner and not patterns:
        raise UsageError("--learner needs --shards: the learner embeds the shards itself")
    shards = unique_stems(expand_shards(patterns) if patterns else cached_shards(embeddings))
    bundle = create_model(learner, device=resolve_device(device)) if learner else None

    def work(shard: str) -> int:
        return score_shard(shard, embeddings, out, bundle, batch_size, seed)

    settings = {"embeddings": absolute(embeddings), "learner": absolute(learner), "seed": seed}
    return run_shards("score", shards, work, out, placement, retries, settings=settings).exit_status
