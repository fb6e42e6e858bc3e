"""Per-example scores of whole shards from cached embeddings, and the top of a pool by one of them.

The columns are the Selector's own-pair losses (``SCORE_COLUMNS``: reference loss and, given a
learner's embeddings, learner loss and learnability) and every offline criterion of the table
(``OFFLINE_SCORES``: ``clip_score``, ``neg_clip_loss``). The score job writes them per shard;
bootstrap's offline arms rank the web pool by them. Random parts of a score (negCLIPLoss's
random batches) are seeded by (seed, shard), so every rank and every rerun gets the same numbers.
"""

from __future__ import annotations

import hashlib
import os
from typing import Sequence, TypeVar

import polars as pl
import torch

from jestfilter.data.layout import shard_stem
from jestfilter.embeddings import CachedEmbeddings, load_embeddings
from jestfilter.selection.criteria import CRITERIA, OFFLINE_SCORES, SCORE_COLUMNS
from jestfilter.selection.losses import own_pair_loss

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)

COLUMNS = SCORE_COLUMNS + OFFLINE_SCORES
SCHEMA = {"key": pl.String, "shard": pl.String, **{name: pl.Float32 for name in COLUMNS}}


def shard_seed(seed: int, shard: str) -> int:
    """A 63-bit seed made of (seed, shard name), the same on every machine and rank."""
    digest = hashlib.sha256(f"{seed}/{shard_stem(shard)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def shard_generator(seed: int, shard: str) -> torch.Generator:
    """A CPU generator seeded by (seed, shard name)."""
    return torch.Generator().manual_seed(shard_seed(seed, shard))


def shard_scores(reference: CachedEmbeddings, shard: str, seed: int = 0,
                 learner: CachedEmbeddings | None = None) -> pl.DataFrame:
    """Every score of one shard's examples, one row per example of ``reference`` (``SCHEMA``);
    learner loss and learnability are null without the ``learner``'s embeddings."""
    outputs = reference.as_outputs()
    generator = shard_generator(seed, shard)
    columns = {"key": reference.keys, "shard": [shard_stem(shard)] * len(reference.keys),
               "reference_loss": own_pair_loss(outputs, "sigmoid").numpy()}
    columns.update({name: CRITERIA[name].offline(outputs, generator).numpy() for name in OFFLINE_SCORES})
    frame = pl.DataFrame(columns)
    if learner is not None:
        learner_loss = pl.DataFrame({"key": learner.keys,
                                     "learner_loss": own_pair_loss(learner.as_outputs(), "sigmoid").numpy()})
        frame = frame.join(learner_loss, on="key", how="left").with_columns(
            learnability=pl.col("learner_loss") - pl.col("reference_loss"))
    return frame.select(pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
                        for name, dtype in SCHEMA.items())


def pool_scores(cache_dir: str | os.PathLike, shards: Sequence[str], seed: int = 0) -> pl.DataFrame:
    """Every score of every cached example of ``shards`` (the reference's cache of a web pool)."""
    return pl.concat([shard_scores(load_embeddings(cache_dir, shard), shard, seed) for shard in shards])


def best_first(scores: Frame, column: str, lower_is_better: bool = False) -> Frame:
    """The rows that have a ``column`` score, best first, ties broken by (shard, key): the one
    ranking the filter job and bootstrap's offline arms both keep the top of."""
    scored = scores.filter(pl.col(column).is_not_null() & pl.col(column).is_not_nan())
    return scored.sort([column, "shard", "key"], descending=[not lower_is_better, False, False])


def top_fraction(scores: pl.DataFrame, column: str, fraction: float) -> pl.DataFrame:
    """The rows of the best ``round(fraction · n)`` scores (higher is better)."""
    ranked = best_first(scores, column)
    return ranked.head(round(fraction * ranked.height))


