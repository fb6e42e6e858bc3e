"""`jestfilter score --embeddings DIR [--learner DIR --shards PATTERN] --out DIR`: offline scores."""

from __future__ import annotations

import argparse

from jestfilter.jobs.runner import add_job_arguments

HELP = "score cached embeddings per example (reference loss; learner loss and learnability) into parquet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embeddings", required=True, metavar="DIR",
                        help="reference embeddings: an embed job's output folder")
    parser.add_argument("--learner", metavar="DIR", help="learner model folder (local-dir:DIR or DIR); needs --shards")
    parser.add_argument("--shards", nargs="+", metavar="PATTERN",
                        help="input shards (default: every shard in --embeddings)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (<shard>.scores.parquet)")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N", help="learner batch size (default 256)")
    parser.add_argument("--device", default="auto", help="auto: this rank's GPU if any, else cpu")
    add_job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from jestfilter.cli import UsageError
    from jestfilter.data import expand_shards
    from jestfilter.jobs.common import absolute, cached_shards, job_device, load_model
    from jestfilter.jobs.runner import placement_from_args, run_shards, unique_stems
    from jestfilter.jobs.score import score_shard

    if args.learner and not args.shards:
        raise UsageError("--learner needs --shards: the learner embeds the shards itself")
    placement = placement_from_args(args)
    shards = unique_stems(expand_shards(args.shards) if args.shards else cached_shards(args.embeddings))
    learner = load_model(args.learner, job_device(args.device)) if args.learner else None

    def work(shard: str) -> int:
        return score_shard(shard, args.embeddings, args.out, learner, args.batch_size)

    settings = {"embeddings": absolute(args.embeddings), "learner": absolute(args.learner)}
    return run_shards("score", shards, work, args.out, placement, args.retries, settings=settings).exit_status
