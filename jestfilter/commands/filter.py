"""`jestfilter filter --shards PATTERN --scores DIR --out DIR (--threshold X | --keep-fraction F)`."""

from __future__ import annotations

import argparse
import dataclasses

from jestfilter.jobs.runner import add_job_arguments

HELP = "filter shards by a score threshold or a global keep fraction into shards + manifest, bytes unchanged"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shards", nargs="+", required=True, metavar="PATTERN", help="input shards")
    parser.add_argument("--scores", required=True, metavar="DIR", help="a score job's output folder")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder: <shard>-NNNNNN.tar, manifest.parquet/, sizes.json")
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument("--threshold", type=float, metavar="X", help="keep samples whose score is X or better")
    rule.add_argument("--keep-fraction", type=float, metavar="F",
                      help="keep the best fraction F of all scored samples (over every shard)")
    parser.add_argument("--column", default="learnability",
                        help="score column: learnability (default), reference_loss, learner_loss")
    parser.add_argument("--lower-is-better", action="store_true",
                        help="keep low scores (e.g. --column reference_loss: the CLIP-score baseline)")
    parser.add_argument("--remove", metavar="DEDUP_PARQUET", help="drop the samples a dedup table lists")
    parser.add_argument("--samples-per-shard", type=int, default=10_000, metavar="N",
                        help="most samples per output shard (default 10000)")
    parser.add_argument("--merge", action="store_true",
                        help="only write sizes.json and _SUCCESS over every rank's output (done by "
                             "whichever rank finishes last anyway)")
    add_job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from jestfilter.cli import UsageError
    from jestfilter.data import expand_shards
    from jestfilter.jobs import filter as job
    from jestfilter.jobs.common import absolute
    from jestfilter.jobs.runner import all_done, placement_from_args, run_shards, unique_stems

    shards = unique_stems(expand_shards(args.shards))
    if args.merge:
        sizes = job.merge(args.out, shards)
        print(f"filter: sizes.json covers {len(sizes)} output shards, {sum(sizes.values()):,} samples")
        return 0
    if args.threshold is None and args.keep_fraction is None:
        raise UsageError("give --threshold X or --keep-fraction F")
    if args.keep_fraction is not None and not 0.0 <= args.keep_fraction <= 1.0:
        raise UsageError(f"--keep-fraction must be in [0, 1], got {args.keep_fraction}")
    if args.samples_per_shard < 1:
        raise UsageError(f"--samples-per-shard must be positive, got {args.samples_per_shard}")
    placement = placement_from_args(args)
    removals = job.read_removals(args.remove) if args.remove else None
    scores = job.scan_scores(args.scores, removals)
    rule, total, kept = job.keep_rule(scores, args.column, args.lower_is_better, args.threshold, args.keep_fraction)
    print(f"filter: {rule.describe()}: {kept:,} of {total:,} scored samples"
          + (f" after removing {len(removals):,} listed in {args.remove}" if removals is not None else ""))
    removed = {} if removals is None else {
        (shard, key): f"dedup_{reason}" for shard, key, reason in removals.iter_rows()}

    def work(shard: str) -> dict:
        return job.filter_shard(shard, args.scores, args.out, rule, removed, args.samples_per_shard)

    settings = {"scores": absolute(args.scores), **dataclasses.asdict(rule),
                "remove": absolute(args.remove), "samples_per_shard": args.samples_per_shard}
    summary = run_shards("filter", shards, work, args.out, placement, args.retries, settings=settings)
    if all_done(args.out, shards):
        job.merge(args.out, shards)
    return summary.exit_status
