"""The score job: per-example scores of each shard from cached embeddings: the reference loss
of each example's own pair and, given a learner, its loss and the learnability (learner −
reference), as the Selector computes them (``jestfilter.selection.criteria.SCORE_COLUMNS``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import polars as pl

from jestfilter.data import expand_shards
from jestfilter.data.atomic import atomic_write
from jestfilter.data.layout import shard_stem
from jestfilter.distributed import resolve_device
from jestfilter.embeddings import CachedEmbeddings, cache_path, cached_shards, embed_shard, load_embeddings
from jestfilter.errors import UsageError
from jestfilter.jobs.common import absolute, load_model
from jestfilter.jobs.runner import Placement, run_shards, unique_stems
from jestfilter.models import ModelBundle
from jestfilter.selection.criteria import SCORE_COLUMNS
from jestfilter.selection.losses import own_pair_loss

SCORES_SUFFIX = ".scores.parquet"
SCORE_SCHEMA = {"key": pl.String, "shard": pl.String, **{name: pl.Float32 for name in SCORE_COLUMNS}}
LEARNER_CACHE = "learner-embeddings"


def scores_path(out_dir: str | os.PathLike, shard: str) -> Path:
    return Path(out_dir) / f"{shard_stem(shard)}{SCORES_SUFFIX}"


def pair_losses(cached: CachedEmbeddings) -> pl.DataFrame:
    """(key, loss) with the sigmoid loss of each example's own pair, as the Selector computes it."""
    return pl.DataFrame({"key": cached.keys, "loss": own_pair_loss(cached.as_outputs(), "sigmoid").numpy()},
                        schema={"key": pl.String, "loss": pl.Float32})


def score_shard(shard: str, embeddings_dir: str | os.PathLike, out_dir: str | os.PathLike,
                learner: ModelBundle | None = None, batch_size: int = 256) -> int:
    """Write ``out_dir/<shard>.scores.parquet``; returns the number of examples scored.

    The learner's embeddings are cached under ``out_dir/learner-embeddings`` in the embed
    job's format, so a retried shard does not embed twice.
    """
    scores = pair_losses(load_embeddings(embeddings_dir, shard)).rename({"loss": "reference_loss"})
    if learner is not None:
        learner_dir = Path(out_dir) / LEARNER_CACHE
        learner_dir.mkdir(parents=True, exist_ok=True)
        if not cache_path(learner_dir, shard).exists():
            embed_shard(learner, shard, cache_path(learner_dir, shard), batch_size)
        learner_losses = pair_losses(load_embeddings(learner_dir, shard)).rename({"loss": "learner_loss"})
        scores = scores.join(learner_losses, on="key", how="left")
    scores = scores.with_columns(shard=pl.lit(shard_stem(shard)))
    if learner is not None:
        scores = scores.with_columns(learnability=pl.col("learner_loss") - pl.col("reference_loss"))
    frame = scores.select(pl.col(name).cast(dtype) if name in scores.columns else pl.lit(None, dtype).alias(name)
                          for name, dtype in SCORE_SCHEMA.items())
    atomic_write(scores_path(out_dir, shard), frame.write_parquet)
    return frame.height


def run_score(embeddings: str, out: str, placement: Placement, retries: int = 2, learner: str | None = None,
              patterns: Sequence[str] | None = None, batch_size: int = 256, device: str = "auto") -> int:
    """Score this rank's shards not yet done; returns the exit status (1 if a shard failed)."""
    if learner and not patterns:
        raise UsageError("--learner needs --shards: the learner embeds the shards itself")
    shards = unique_stems(expand_shards(patterns) if patterns else cached_shards(embeddings))
    bundle = load_model(learner, resolve_device(device)) if learner else None

    def work(shard: str) -> int:
        return score_shard(shard, embeddings, out, bundle, batch_size)

    settings = {"embeddings": absolute(embeddings), "learner": absolute(learner)}
    return run_shards("score", shards, work, out, placement, retries, settings=settings).exit_status
