"""`jestfilter dedup --embeddings DIR [--shards PATTERN] [--eval-embeddings DIR] --out FILE.parquet`."""

from __future__ import annotations

import argparse

from jestfilter.commands._flags import add_job_arguments

HELP = "find exact and near duplicates and eval look-alikes; write a removal table for filter --remove"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embeddings", required=True, metavar="DIR", help="an embed job's output folder")
    parser.add_argument("--shards", nargs="+", metavar="PATTERN",
                        help="the shards themselves, for exact duplicates (sha256 of the image bytes; "
                        "default: none, near duplicates only)")
    parser.add_argument("--eval-embeddings", metavar="DIR",
                        help="an embed job's output on the eval shards (default: none, no eval look-alikes)")
    parser.add_argument("--out", required=True, metavar="FILE.parquet",
                        help="removal table (key, shard, reason, matched_key, matched_shard, similarity)")
    parser.add_argument("--threshold", type=float, default=0.95, metavar="X",
                        help="cosine at or above which images match")
    parser.add_argument("--index", choices=("auto", "flat", "ivf"), default="auto",
                        help="faiss index: flat (exact), ivf (approximate), auto: ivf above 1M images")
    add_job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from jestfilter.commands._flags import placement_from_args
    from jestfilter.jobs.dedup import run_dedup

    return run_dedup(args.embeddings, args.out, placement_from_args(args), args.retries, args.shards,
                     args.eval_embeddings, args.threshold, args.index)
