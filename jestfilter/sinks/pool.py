"""Which samples the filtered shards hold, by rule, read from the manifest of a run.

An online run reads the web data many times (a pass every B/|pool| steps) and chooses b of every
super-batch of B, so "chosen" is a per-pass event. The pool is every sample the run read
unrejected; the rules (``jestfilter.sinks.rules.FILTERED_RULES``) turn the passes into one set:

* ``top``: the (1−f)·|pool| samples of highest mean score: the criterion's own-pair score (e.g.
  learnability) averaged over every pass that scored the sample, chosen or not. Ties, and
  criteria that score nothing (``uniform``), go by the share of passes that chose the sample,
  then by a seeded draw. (On the demo, the mean score gave a cleaner set than the share of passes
  chosen: 76 % clean pairs against 70 %, and 40 % in the web data; docs/benchmarks.md.)
* ``first-pass``: the samples chosen while the run read the pool for the first time;
* ``all``: every sample chosen in any pass.

``pool_table`` is one row per sample of the pool with these counts; ``choose_top`` ranks it.
"""

from __future__ import annotations

import functools
import operator
import os
from pathlib import Path

import numpy as np
import polars as pl

from jestfilter.data.manifest import DROPPED, KEPT, reduce_in_chunks
from jestfilter.selection.criteria import Criterion

POOL = "pool.parquet"  # the pool table's folder inside the filtered folder, one part per rank
POOL_SCHEMA = {"source_shard": pl.String, "key": pl.String, "passes": pl.Int32, "chosen": pl.Int32,
               "chosen_share": pl.Float64, "score": pl.Float64, "output_shard": pl.String}


def pool_table(rows: pl.LazyFrame, criterion: Criterion, every_pass: bool = True) -> pl.DataFrame:
    """One row per (source_shard, key) read unrejected: passes read, passes chosen, their share,
    the mean of the criterion's own-pair score (null where it scores nothing) and the filtered
    shard that already holds it (written online), sorted by (source_shard, key). The rows are
    the manifest's, read lazily a chunk at a time (``reduce_in_chunks``): memory grows with the
    pool (one group per sample), not with the passes over it.

    ``every_pass=False``: the manifest has rows for kept samples only (``--manifest kept``), so
    the table lists the samples chosen at least once, their mean score over those passes, and
    null ``passes`` and ``chosen_share`` (the passes that dropped them were counted, not recorded)."""
    terms = [weight * pl.col(column) for weight, column in ((criterion.learner_weight, "learner_loss"),
                                                             (criterion.reference_weight, "reference_loss"))
             if weight]
    score = functools.reduce(operator.add, terms) if terms else pl.lit(None, pl.Float64)  # null stays null

    def read(chunk: pl.LazyFrame) -> pl.LazyFrame:
        return chunk.filter(pl.col("decision").is_in([KEPT, DROPPED])).with_columns(score.cast(pl.Float64).alias("score"))

    # per (shard, key): passes, choices, the score's sum and count (a mean does not merge), the
    # online output shard (at most one is ever set: a sample is written once)
    sums = reduce_in_chunks(
        rows.lazy(), ["source_shard", "key"],
        [pl.len().alias("passes"), (pl.col("decision") == KEPT).sum().alias("chosen"),
         pl.col("score").sum().alias("score_sum"), pl.col("score").count().alias("scored"),
         pl.col("output_shard").min()],
        [pl.col("passes").sum(), pl.col("chosen").sum(), pl.col("score_sum").sum(), pl.col("scored").sum(),
         pl.col("output_shard").min()], prepare=read)
    if sums is None or sums.height == 0:
        return pl.DataFrame(schema=POOL_SCHEMA)
    table = sums.with_columns(
        pl.when(pl.col("scored") > 0).then(pl.col("score_sum") / pl.col("scored")).alias("score"),
        (pl.col("chosen") / pl.col("passes")).alias("chosen_share") if every_pass else
        pl.lit(None, pl.Float64).alias("chosen_share"),
        pl.col("passes") if every_pass else pl.lit(None, pl.Int32).alias("passes"))
    return table.select(list(POOL_SCHEMA)).cast(POOL_SCHEMA).sort("source_shard", "key")  # type: ignore[arg-type]


def choose_top(pool: pl.DataFrame, keep_fraction: float, seed: int) -> pl.DataFrame:
    """The round(keep_fraction · |pool|) samples of ``pool_table`` of highest mean score (null
    last), ties broken by the share of passes that chose them, then by a seeded random order."""
    tiebreak = np.random.default_rng(seed).permutation(pool.height)
    ranked = pool.with_columns(pl.Series("tiebreak", tiebreak)).sort(
        "score", "chosen_share", "tiebreak", descending=[True, True, False], nulls_last=True)
    return ranked.head(round(keep_fraction * pool.height)).drop("tiebreak")


def read_pool(folder: str | os.PathLike) -> pl.DataFrame:
    """Every rank's pool table of a filtered folder (empty, with the schema, when there is none)."""
    return scan_pool(folder).collect()


def scan_pool(folder: str | os.PathLike) -> pl.LazyFrame:
    """``read_pool``, lazily: count it with the streaming engine and nothing of it is held."""
    parts = sorted((Path(folder) / POOL).glob("*.parquet"))
    return pl.scan_parquet(parts) if parts else pl.LazyFrame(schema=POOL_SCHEMA)
