"""Duplicates to remove: exact (same image bytes), near (cosine of cached image embeddings) and
eval contamination (near an eval image).

Order. Samples are ordered by (shard in sorted order, key); a sample is a duplicate when an
*earlier* sample matches it, so the first occurrence of every group is kept and the result
does not depend on ranks or timing. Its match is the earliest earlier sample it matches.

Split. Every rank indexes all training image embeddings with faiss (on its GPUs when faiss
sees any, see ``jestfilter.jobs.neighbours``), then handles its own
shards: the near matches of their samples, their eval matches and the sha256 of their image
bytes go to ``<out>.parts/<shard>.dedup.parquet``. When every shard is done, one pass over the
parts (polars, lazy) finds exact groups and writes the removal table.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl

from jestfilter.data import expand_shards
from jestfilter.data.atomic import atomic_write
from jestfilter.data.layout import shard_stem
from jestfilter.data.shards import image_member, iter_readable_shard
from jestfilter.data.types import RawSample
from jestfilter.embeddings import cached_shards, load_embeddings
from jestfilter.errors import UsageError
from jestfilter.jobs.common import absolute
from jestfilter.jobs.neighbours import NeighbourIndex
from jestfilter.jobs.runner import Placement, all_done, run_shards, unique_stems

EXACT, NEAR, EVAL = "exact", "near", "eval"
PART_SUFFIX = ".dedup.parquet"
PART_SCHEMA = {"key": pl.String, "shard": pl.String, "order": pl.Int64, "sha256": pl.String,
               "near_key": pl.String, "near_shard": pl.String, "near_similarity": pl.Float32,
               "eval_key": pl.String, "eval_shard": pl.String, "eval_similarity": pl.Float32}
REMOVAL_SCHEMA = {"key": pl.String, "shard": pl.String, "reason": pl.String,
                  "matched_key": pl.String, "matched_shard": pl.String, "similarity": pl.Float32}


def parts_dir(out_file: str | os.PathLike) -> Path:
    """``removals.parquet`` → ``removals.parts/`` beside it."""
    out_file = Path(out_file)
    return out_file.with_name(f"{out_file.stem}.parts")


@dataclass
class EmbeddingSet:
    """Image embeddings of many shards in (shard, key) order, L2-normalised fp32 for faiss."""

    keys: list[str]
    shards: list[str]
    vectors: np.ndarray
    starts: dict[str, tuple[int, int]]  # shard stem → its rows [start, end)

    @classmethod
    def load(cls, embeddings_dir: str | os.PathLike, shards: Sequence[str]) -> "EmbeddingSet":
        keys, stems, blocks, starts = [], [], [], {}
        for shard in shards:
            cached = load_embeddings(embeddings_dir, shard)
            order = sorted(range(len(cached.keys)), key=cached.keys.__getitem__)
            starts[shard_stem(shard)] = (len(keys), len(keys) + len(order))
            keys += [cached.keys[i] for i in order]
            stems += [shard_stem(shard)] * len(order)
            blocks.append(cached.image[order])
        vectors = np.ascontiguousarray(np.concatenate(blocks), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # fp16 storage rounds the norms a little
        return cls(keys, stems, vectors, starts)


def image_hashes(shard: str) -> dict[str, str]:
    """key → sha256 of the image bytes of every readable sample of ``shard``."""
    return {item.key: hashlib.sha256(item.members[image_member(item)]).hexdigest()
            for item in iter_readable_shard(shard) if isinstance(item, RawSample)}


def dedup_shard(shard: str, order: int, train: EmbeddingSet, index: NeighbourIndex, threshold: float,
                parts: Path, evals: EmbeddingSet | None = None, eval_index: NeighbourIndex | None = None,
                hash_images: bool = False) -> int:
    """Write the part of one shard; returns its number of samples."""
    stem = shard_stem(shard)
    start, end = train.starts[stem]
    rows = {key: {"key": key, "shard": stem, "order": order} for key in train.keys[start:end]}
    for offset, (ids, sims) in enumerate(index.within(train.vectors[start:end], threshold)):
        earlier = ids < start + offset
        if earlier.any():
            first = int(np.argmin(np.where(earlier, ids, np.iinfo(ids.dtype).max)))
            row = rows[train.keys[start + offset]]
            row.update(near_key=train.keys[ids[first]], near_shard=train.shards[ids[first]],
                       near_similarity=float(sims[first]))
    if evals is not None:
        for offset, (ids, sims) in enumerate(eval_index.within(train.vectors[start:end], threshold)):
            if len(ids):
                best = int(np.argmax(sims))
                rows[train.keys[start + offset]].update(eval_key=evals.keys[ids[best]],
                                                        eval_shard=evals.shards[ids[best]],
                                                        eval_similarity=float(sims[best]))
    if hash_images:
        for key, digest in image_hashes(shard).items():
            rows.setdefault(key, {"key": key, "shard": stem, "order": order})["sha256"] = digest
    frame = pl.DataFrame(list(rows.values()), schema=PART_SCHEMA)
    atomic_write(parts / f"{stem}{PART_SUFFIX}", frame.write_parquet)
    return frame.height


def merge(parts: Path, out_file: str | os.PathLike) -> pl.DataFrame:
    """The removal table from every shard's part: one row per removed sample (eval first, then
    exact, then near, when several apply)."""
    samples = pl.scan_parquet(sorted(parts.glob(f"*{PART_SUFFIX}"))).sort("order", "key")
    repeat = pl.col("sha256").is_not_null() & (pl.int_range(pl.len()).over("sha256") > 0)
    samples = samples.with_columns(exact_key=pl.when(repeat).then(pl.col("key").first().over("sha256")),
                                   exact_shard=pl.when(repeat).then(pl.col("shard").first().over("sha256")))
    reason = (pl.when(pl.col("eval_key").is_not_null()).then(pl.lit(EVAL))
              .when(pl.col("exact_key").is_not_null()).then(pl.lit(EXACT))
              .when(pl.col("near_key").is_not_null()).then(pl.lit(NEAR)))

    def pick(eval_col, exact_col, near_col):
        return (pl.when(pl.col("reason") == EVAL).then(eval_col)
                .when(pl.col("reason") == EXACT).then(exact_col).otherwise(near_col))

    removals = (samples.with_columns(reason=reason).filter(pl.col("reason").is_not_null())
                .select("key", "shard", "reason",
                        matched_key=pick(pl.col("eval_key"), pl.col("exact_key"), pl.col("near_key")),
                        matched_shard=pick(pl.col("eval_shard"), pl.col("exact_shard"), pl.col("near_shard")),
                        similarity=pick(pl.col("eval_similarity"), pl.lit(1.0), pl.col("near_similarity")))
                .cast(REMOVAL_SCHEMA).collect())
    atomic_write(out_file, removals.write_parquet)
    return removals


def run_dedup(embeddings: str, out: str, placement: Placement, retries: int = 2, patterns: Sequence[str] | None = None,
              eval_embeddings: str | None = None, threshold: float = 0.95, index_kind: str = "auto") -> int:
    """Find this rank's duplicates; the last rank to finish writes the removal table. Returns the exit status."""
    if not -1.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold is a cosine in [-1, 1], got {threshold}")
    if not out.endswith(".parquet"):
        raise UsageError(f"--out names a .parquet file, got {out}")
    shards = unique_stems(expand_shards(patterns) if patterns else cached_shards(embeddings))
    train = EmbeddingSet.load(embeddings, shards)
    index = NeighbourIndex(train.vectors, index_kind)
    evals = eval_index = None
    if eval_embeddings:
        evals = EmbeddingSet.load(eval_embeddings, cached_shards(eval_embeddings))
        eval_index = NeighbourIndex(evals.vectors, index_kind)
    parts = parts_dir(out)
    order = {shard: i for i, shard in enumerate(shards)}

    def work(shard: str) -> int:
        return dedup_shard(shard, order[shard], train, index, threshold, parts, evals, eval_index,
                           hash_images=bool(patterns))

    settings = {"embeddings": absolute(embeddings), "eval_embeddings": absolute(eval_embeddings),
                "exact": bool(patterns), "threshold": threshold, "index": index_kind}
    summary = run_shards("dedup", shards, work, parts, placement, retries, settings=settings)
    if all_done(parts, shards):
        removals = merge(parts, out)
        counts = dict(removals.group_by("reason").len().iter_rows())
        print(f"dedup: {removals.height:,} of {len(train.keys):,} samples to remove ("
              + ", ".join(f"{counts.get(r, 0):,} {r}" for r in (EXACT, NEAR, EVAL)) + f") → {out}")
    return summary.exit_status
