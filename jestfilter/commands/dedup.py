"""`jestfilter dedup --embeddings DIR [--shards PATTERN] [--eval-embeddings DIR] --out FILE.parquet`."""

from __future__ import annotations

import argparse

from jestfilter.jobs.runner import add_job_arguments

HELP = "find exact and near duplicates and eval look-alikes; write a removal table for filter --remove"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embeddings", required=True, metavar="DIR", help="an embed job's output folder")
    parser.add_argument("--shards", nargs="+", metavar="PATTERN",
                        help="the shards themselves, for exact duplicates (sha256 of the image bytes)")
    parser.add_argument("--eval-embeddings", metavar="DIR", help="an embed job's output on the eval shards")
    parser.add_argument("--out", required=True, metavar="FILE.parquet",
                        help="removal table (key, shard, reason, matched_key, matched_shard, similarity)")
    parser.add_argument("--threshold", type=float, default=0.95, help="cosine at or above which images match "
                        "(default 0.95)")
    parser.add_argument("--index", choices=("auto", "flat", "ivf"), default="auto",
                        help="faiss index: flat (exact), ivf (approximate), auto: ivf above 1M images")
    add_job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from jestfilter.cli import UsageError
    from jestfilter.data import expand_shards
    from jestfilter.jobs import dedup as job
    from jestfilter.jobs.common import absolute, cached_shards
    from jestfilter.jobs.runner import all_done, placement_from_args, run_shards, unique_stems

    if not -1.0 <= args.threshold <= 1.0:
        raise UsageError(f"--threshold is a cosine in [-1, 1], got {args.threshold}")
    if not args.out.endswith(".parquet"):
        raise UsageError(f"--out names a .parquet file, got {args.out}")
    placement = placement_from_args(args)
    shards = unique_stems(expand_shards(args.shards) if args.shards else cached_shards(args.embeddings))
    train = job.EmbeddingSet.load(args.embeddings, shards)
    index = job.build_index(train.vectors, args.index)
    evals = eval_index = None
    if args.eval_embeddings:
        evals = job.EmbeddingSet.load(args.eval_embeddings, cached_shards(args.eval_embeddings))
        eval_index = job.build_index(evals.vectors, args.index)
    parts = job.parts_dir(args.out)
    order = {shard: i for i, shard in enumerate(shards)}

    def work(shard: str) -> int:
        return job.dedup_shard(shard, order[shard], train, index, args.threshold, parts, evals, eval_index,
                               hash_images=bool(args.shards))

    settings = {"embeddings": absolute(args.embeddings), "eval_embeddings": absolute(args.eval_embeddings),
                "exact": bool(args.shards), "threshold": args.threshold, "index": args.index}
    summary = run_shards("dedup", shards, work, parts, placement, args.retries, settings=settings)
    if all_done(parts, shards):
        removals = job.merge(parts, args.out)
        counts = dict(removals.group_by("reason").len().iter_rows())
        print(f"dedup: {removals.height:,} of {len(train.keys):,} samples to remove ("
              + ", ".join(f"{counts.get(r, 0):,} {r}" for r in (job.EXACT, job.NEAR, job.EVAL)) + f") → {args.out}")
    return summary.exit_status
