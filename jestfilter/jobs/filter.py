"""Offline filtering by a score column: a threshold, or a global keep fraction.

Each input shard is filtered on its own (so the job is idempotent per shard) into its
``ShardOutput``: its kept samples go byte-for-byte to ``<shard>-NNNNNN.tar``, and every
one of its samples gets one manifest row in ``manifest.parquet/part-<shard>-NNNNN.parquet``
(kept; dropped with its scores, or with ``reason`` ``dedup_*`` when a dedup table removed it;
rejected with the reader's reason). When every shard is done, ``sizes.json`` and ``_SUCCESS``
cover them all.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import polars as pl
import torch

from jestfilter.data import expand_shards
from jestfilter.data.layout import shard_stem
from jestfilter.data.loader import group_super_batches
from jestfilter.data.options import SAMPLES_PER_SHARD
from jestfilter.data.shards import iter_readable_shard
from jestfilter.data.types import Rejected, SuperBatch
from jestfilter.errors import UsageError
from jestfilter.jobs.common import absolute
from jestfilter.jobs.output import ShardOutput, merge
from jestfilter.jobs.runner import Placement, all_done, run_shards, unique_stems
from jestfilter.jobs.score import SCORES_SUFFIX
from jestfilter.scores import best_first
from jestfilter.selection.criteria import SCORE_COLUMNS
from jestfilter.sinks.filtered import selection_of

MISSING_SCORE = "missing_score"  # read fine, but the score job has no row for it (it failed to decode)
GROUP = 1000  # samples handed to the sink at a time


@dataclass(frozen=True)
class KeepRule:
    """Keep a sample whose score is better than ``cutoff``; at exactly ``cutoff``, keep it when
    ``(shard, key)`` is at most ``tie`` (so a keep fraction keeps an exact count)."""

    column: str
    cutoff: float | None  # None: keep nothing
    lower_is_better: bool
    tie: tuple[str, str] | None = None  # None: every tie is kept (a threshold)

    def keeps(self, score: float | None, shard: str, key: str) -> bool:
        if self.cutoff is None or score is None or score != score:  # NaN
            return False
        if score != self.cutoff:
            return score < self.cutoff if self.lower_is_better else score > self.cutoff
        return self.tie is None or (shard, key) <= self.tie

    def describe(self) -> str:
        if self.cutoff is None:
            return "keep nothing"
        op = "<=" if self.lower_is_better else ">="
        return f"keep {self.column} {op} {self.cutoff:.6g}"


def scan_scores(scores_dir: str | os.PathLike, removed: pl.DataFrame | None = None) -> pl.LazyFrame:
    """Every shard's scores, lazily, without the samples a dedup table removes."""
    files = sorted(Path(scores_dir).glob(f"*{SCORES_SUFFIX}"))
    if not files:
        raise FileNotFoundError(f"{scores_dir} holds no *{SCORES_SUFFIX} file: run `jestfilter score` first")
    scan = pl.scan_parquet(files)
    if removed is not None:
        scan = scan.join(removed.lazy(), on=["shard", "key"], how="anti")
    return scan


def keep_rule(scores: pl.LazyFrame, column: str, lower_is_better: bool, threshold: float | None = None,
              keep_fraction: float | None = None) -> tuple[KeepRule, int, int]:
    """The rule, the number of scored samples and how many it keeps (exact for a fraction).

    The fraction's cutoff is the k-th best score over all shards, found by polars over the
    lazy scan (a top-k, not a sort held in memory)."""
    if column not in scores.collect_schema().names():
        raise ValueError(f"no score column {column!r}; the scores have {', '.join(scores.collect_schema().names())}")
    scored = best_first(scores, column, lower_is_better)
    total = scored.select(pl.len()).collect().item()
    if total == 0:
        hint = " (the score job ran without --learner)" if column in ("learner_loss", "learnability") else ""
        raise ValueError(f"no sample has a {column} score{hint}")
    if threshold is not None:
        rule = KeepRule(column, threshold, lower_is_better)
        better = pl.col(column) <= threshold if lower_is_better else pl.col(column) >= threshold
        return rule, total, scored.filter(better).select(pl.len()).collect().item()
    k = round(keep_fraction * total)
    if k == 0:
        return KeepRule(column, None, lower_is_better), total, 0
    last = scored.slice(k - 1, 1).collect().row(0, named=True)
    return KeepRule(column, float(last[column]), lower_is_better, (last["shard"], last["key"])), total, k


def read_removals(path: str | os.PathLike) -> pl.DataFrame:
    """(shard, key, reason) of a dedup table."""
    frame = pl.read_parquet(path)
    missing = {"shard", "key", "reason"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} is not a dedup table (no column {sorted(missing)[0]!r})")
    return frame.select("shard", "key", "reason")


def filter_shard(shard: str, scores_dir: str | os.PathLike, out_dir: str | os.PathLike, rule: KeepRule,
                 removed: dict[tuple[str, str], str], samples_per_shard: int, manifest: str = "all") -> dict:
    """Filter one input shard into ``out_dir``; returns its counts and output sizes."""
    stem = shard_stem(shard)
    scores = {row["key"]: row for row in pl.read_parquet(Path(scores_dir) / f"{stem}{SCORES_SUFFIX}").iter_rows(named=True)}
    output = ShardOutput(out_dir, shard, samples_per_shard, manifest)
    counts = {"kept": 0, "dropped": 0, "rejected": 0}
    for samples, rejected in group_super_batches(iter_readable_shard(shard), GROUP):
        rejected += [Rejected(s.key, s.source_shard, MISSING_SCORE) for s in samples if s.key not in scores]
        samples = [s for s in samples if s.key in scores]
        reasons = {i: removed[(stem, s.key)] for i, s in enumerate(samples) if (stem, s.key) in removed}
        kept = [i for i, s in enumerate(samples)
                if i not in reasons and rule.keeps(scores[s.key][rule.column], stem, s.key)]
        values = {name: torch.tensor([_number(scores[s.key][name]) for s in samples]) for name in SCORE_COLUMNS}
        output.sink.record(SuperBatch.undecoded(samples, rejected), selection_of(kept, **values), step=0,
                           reasons=reasons)
        counts["kept"] += len(kept)
        counts["dropped"] += len(samples) - len(kept)
        counts["rejected"] += len(rejected)
    return {"samples": sum(counts.values()), **counts, "sizes": output.close()}


def _number(value: float | None) -> float:
    return float("nan") if value is None else value


def run_filter(patterns: Sequence[str], scores_dir: str, out: str, placement: Placement, retries: int = 2, *,
               column: str = "learnability", lower_is_better: bool = False, threshold: float | None = None,
               keep_fraction: float | None = None, remove: str | None = None, samples_per_shard: int = SAMPLES_PER_SHARD,
               merge_only: bool = False, manifest: str = "all") -> int:
    """Filter this rank's shards not yet done; the last rank to finish merges. Returns the exit status."""
    shards = unique_stems(expand_shards(patterns))
    if merge_only:
        sizes = merge(out, shards)
        print(f"filter: sizes.json covers {len(sizes)} output shards, {sum(sizes.values()):,} samples")
        return 0
    if threshold is None and keep_fraction is None:
        raise UsageError("give --threshold X or --keep-fraction F")
    if threshold is not None and math.isnan(threshold):  # every comparison with it is false: nothing kept
        raise UsageError(f"--threshold must be a number, got {threshold}")
    if keep_fraction is not None and not 0.0 <= keep_fraction <= 1.0:
        raise UsageError(f"--keep-fraction must be in [0, 1], got {keep_fraction}")
    if samples_per_shard < 1:
        raise UsageError(f"--samples-per-shard must be positive, got {samples_per_shard}")
    removals = read_removals(remove) if remove else None
    scores = scan_scores(scores_dir, removals)
    rule, total, kept = keep_rule(scores, column, lower_is_better, threshold, keep_fraction)
    print(f"filter: {rule.describe()}: {kept:,} of {total:,} scored samples"
          + (f" after removing {len(removals):,} listed in {remove}" if removals is not None else ""))
    removed = {} if removals is None else {
        (shard, key): f"dedup_{reason}" for shard, key, reason in removals.iter_rows()}

    def work(shard: str) -> dict:
        return filter_shard(shard, scores_dir, out, rule, removed, samples_per_shard, manifest)

    settings = {"scores": absolute(scores_dir), **dataclasses.asdict(rule),
                "remove": absolute(remove), "samples_per_shard": samples_per_shard, "manifest": manifest}
    summary = run_shards("filter", shards, work, out, placement, retries, settings=settings)
    if all_done(out, shards):
        merge(out, shards)
    return summary.exit_status
