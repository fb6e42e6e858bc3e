"""Offline filtering by a score column: a threshold, or a global keep fraction.

Each input shard is filtered on its own (so the job is idempotent per shard): its kept samples
go byte-for-byte through a ``FilteredShardWriter`` to ``<shard>-NNNNNN.tar``, and every one of
its samples gets one manifest row in ``manifest.parquet/part-<shard>.parquet`` (kept; dropped
with its scores, or with ``reason`` ``duplicate_*`` when a dedup table removed it; rejected with
the reader's reason). Each shard is written in a private folder and moved in, so shards from
many ranks never meet half-written. When every shard is done, ``sizes.json`` and ``_SUCCESS``
cover them all.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import polars as pl

from jestfilter.data import FilteredShardWriter, Manifest, iter_samples
from jestfilter.data.atomic import atomic_write, atomic_write_json
from jestfilter.data.embeddings import shard_stem
from jestfilter.data.manifest import DROPPED, KEPT, REJECTED
from jestfilter.data.types import Rejected
from jestfilter.data.writer import SIZES, SUCCESS
from jestfilter.jobs.runner import read_done
from jestfilter.jobs.score import SCORES_SUFFIX

MISSING_SCORE = "missing_score"  # read fine, but the score job has no row for it (it failed to decode)
SCORE_COLUMNS = ("learner_loss", "reference_loss", "learnability")


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
    scored = scores.filter(pl.col(column).is_not_null() & pl.col(column).is_not_nan())
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
    last = (scored.sort([column, "shard", "key"], descending=[not lower_is_better, False, False])
            .slice(k - 1, 1).collect().row(0, named=True))
    return KeepRule(column, float(last[column]), lower_is_better, (last["shard"], last["key"])), total, k


def read_removals(path: str | os.PathLike) -> pl.DataFrame:
    """(shard, key, reason) of a dedup table."""
    frame = pl.read_parquet(path)
    missing = {"shard", "key", "reason"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} is not a dedup table (no column {sorted(missing)[0]!r})")
    return frame.select("shard", "key", "reason")


def filter_shard(shard: str, scores_dir: str | os.PathLike, out_dir: str | os.PathLike, rule: KeepRule,
                 removed: dict[tuple[str, str], str], samples_per_shard: int) -> dict:
    """Filter one input shard into ``out_dir``; returns its counts and output sizes."""
    stem, out_dir = shard_stem(shard), Path(out_dir)
    scores = {row["key"]: row for row in pl.read_parquet(Path(scores_dir) / f"{stem}{SCORES_SUFFIX}").iter_rows(named=True)}
    work = out_dir / f".work-{stem}"
    shutil.rmtree(work, ignore_errors=True)  # what a killed attempt left
    writer = FilteredShardWriter(work, samples_per_shard=samples_per_shard, prefix=stem)
    manifest = Manifest(work, rows_per_part=1 << 62)
    counts = {KEPT: 0, DROPPED: 0, REJECTED: 0}
    for item in iter_samples([shard]):
        row = {"key": [item.key], "source_shard": [item.source_shard], "pass": [0]}
        if isinstance(item, Rejected):
            decision, reason = REJECTED, item.reason
        elif item.key not in scores:
            decision, reason = REJECTED, MISSING_SCORE
        else:
            row.update({name: [scores[item.key][name]] for name in SCORE_COLUMNS})
            reason = removed.get((stem, item.key))
            decision = KEPT if reason is None and rule.keeps(scores[item.key][rule.column], stem, item.key) else DROPPED
            if decision == KEPT:
                row["output_shard"] = [writer.write(item)]
        counts[decision] += 1
        manifest.append(**row, decision=[decision], reason=[reason])
    writer.close()
    manifest.close()
    out_dir.joinpath("manifest.parquet").mkdir(exist_ok=True)
    os.replace(manifest.path / "part-00000.parquet", out_dir / "manifest.parquet" / f"part-{stem}.parquet")
    for name in writer.sizes:
        os.replace(work / name, out_dir / name)
    shutil.rmtree(work)
    return {"samples": sum(counts.values()), **counts, "sizes": writer.sizes}


def merge(out_dir: str | os.PathLike, shards: Sequence[str]) -> dict[str, int]:
    """Write ``sizes.json`` over every shard's output, then ``_SUCCESS``; all must be done."""
    out_dir = Path(out_dir)
    sizes: dict[str, int] = {}
    for shard in shards:
        record = read_done(out_dir, shard)
        if record is None:
            raise ValueError(f"shard {shard} is not filtered yet: run the filter job until every shard is done")
        sizes.update(record["sizes"])
    atomic_write_json(out_dir / SIZES, sizes)
    atomic_write(out_dir / SUCCESS, lambda tmp: Path(tmp).write_text(json.dumps({"shards": len(shards)})))
    return sizes
