"""`jestfilter filter --shards PATTERN --scores DIR --out DIR (--threshold X | --keep-fraction F)`."""

from __future__ import annotations

import argparse

from jestfilter.commands._flags import add_job_arguments
from jestfilter.config import BootstrapConfig, described
from jestfilter.data.options import MANIFESTS, SAMPLES_PER_SHARD
from jestfilter.selection.criteria import OFFLINE_SCORES, SCORE_COLUMNS

HELP = "filter shards by a score threshold or a global keep fraction into shards + manifest, bytes unchanged"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shards", nargs="+", required=True, metavar="PATTERN", help="input shards")
    parser.add_argument("--scores", required=True, metavar="DIR", help="a score job's output folder")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder: <shard>-NNNNNN.tar, manifest.parquet/, sizes.json")
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument("--threshold", type=float, metavar="X",
                      help="keep samples whose score is X or better (default: none; give this or "
                           "--keep-fraction)")
    rule.add_argument("--keep-fraction", type=float, metavar="F",
                      help="keep the best fraction F of all scored samples (over every shard; default: "
                           "none, give this or --threshold)")
    parser.add_argument("--column", default="learnability",
                        help=f"score column: {', '.join(SCORE_COLUMNS + OFFLINE_SCORES)}")
    parser.add_argument("--lower-is-better", action="store_true",
                        help="keep low scores (e.g. --column reference_loss)")
    parser.add_argument("--remove", metavar="DEDUP_PARQUET",
                        help="drop the samples a dedup table lists (default: none)")
    parser.add_argument("--samples-per-shard", type=int, default=SAMPLES_PER_SHARD, metavar="N",
                        help="most samples per output shard")
    parser.add_argument("--merge", action="store_true",
                        help="only write sizes.json and _SUCCESS over every rank's output (done by "
                             "whichever rank finishes last anyway)")
    parser.add_argument("--manifest", default=BootstrapConfig.manifest, choices=tuple(MANIFESTS),
                        help="what manifest.parquet/ records: " + described(MANIFESTS))
    add_job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from jestfilter.commands._flags import placement_from_args
    from jestfilter.jobs.filter import run_filter

    placement = None if args.merge else placement_from_args(args)
    return run_filter(args.shards, args.scores, args.out, placement, args.retries, column=args.column,
                      lower_is_better=args.lower_is_better, threshold=args.threshold,
                      keep_fraction=args.keep_fraction, remove=args.remove,
                      samples_per_shard=args.samples_per_shard, merge_only=args.merge,
                      manifest=args.manifest)
