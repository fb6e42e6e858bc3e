"""`jestfilter score --embeddings DIR [--learner DIR --shards PATTERN] --out DIR`: offline scores."""

from __future__ import annotations

import argparse

from jestfilter.commands._flags import add_job_arguments
from jestfilter.config import DEVICE_HELP, BootstrapConfig

HELP = ("score cached embeddings per example (reference loss, clip_score, neg_clip_loss; learner loss and "
        "learnability) into parquet")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embeddings", required=True, metavar="DIR",
                        help="reference embeddings: an embed job's output folder")
    parser.add_argument("--learner", metavar="DIR",
                        help="learner model folder (DIR or local-dir:DIR); needs --shards (default: none, "
                             "reference scores only)")
    parser.add_argument("--shards", nargs="+", metavar="PATTERN",
                        help="input shards (default: every shard in --embeddings)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (<shard>.scores.parquet)")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N", help="learner batch size")
    parser.add_argument("--device", default=BootstrapConfig.device, help=DEVICE_HELP)
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of neg_clip_loss's random batches (with the shard's name)")
    add_job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from jestfilter.commands._flags import placement_from_args
    from jestfilter.jobs.score import run_score

    return run_score(args.embeddings, args.out, placement_from_args(args), args.retries, args.learner, args.shards,
                     args.batch_size, args.device, args.seed)
