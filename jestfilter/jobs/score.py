"""Per-example scores of one shard from cached embeddings: the reference loss of each example's
own pair and, given a learner, its loss and the learnability (learner − reference)."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from jestfilter.data.atomic import atomic_write
from jestfilter.data.embeddings import cache_path, embed_shard, shard_stem
from jestfilter.jobs.common import CachedEmbeddings, load_embeddings
from jestfilter.models import ModelBundle
from jestfilter.selection.losses import own_pair_loss
from jestfilter.selection.outputs import SiglipOutputs

SCORES_SUFFIX = ".scores.parquet"
SCORE_SCHEMA = {"key": pl.String, "shard": pl.String, "reference_loss": pl.Float32,
                "learner_loss": pl.Float32, "learnability": pl.Float32}
LEARNER_CACHE = "learner-embeddings"


def scores_path(out_dir: str | os.PathLike, shard: str) -> Path:
    return Path(out_dir) / f"{shard_stem(shard)}{SCORES_SUFFIX}"


def pair_losses(cached: CachedEmbeddings) -> pl.DataFrame:
    """(key, loss) with the sigmoid loss of each example's own pair, as the Selector computes it."""
    outputs = SiglipOutputs(cached.image, cached.text, cached.scale, cached.bias)
    return pl.DataFrame({"key": cached.keys, "loss": own_pair_loss(outputs, "sigmoid").numpy()},
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
