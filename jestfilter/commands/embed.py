"""`jestfilter embed --model DIR --shards PATTERN --out DIR`: per-shard image/text embeddings."""

from __future__ import annotations

import argparse

from jestfilter.jobs.runner import add_job_arguments

HELP = "embed shards with a model into per-shard <shard>.emb.npz files (the reference cache bootstrap reads)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="model folder (local-dir:DIR or DIR), or a model name for random weights")
    parser.add_argument("--shards", nargs="+", required=True, metavar="PATTERN", help="input shards")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N", help="default 256")
    parser.add_argument("--device", default="auto", help="auto: this rank's GPU if any, else cpu")
    add_job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from jestfilter.data import expand_shards
    from jestfilter.data.embeddings import cache_path, embed_shard
    from jestfilter.jobs.common import absolute, job_device, load_model
    from jestfilter.jobs.runner import placement_from_args, run_shards, unique_stems

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    placement = placement_from_args(args)
    shards = unique_stems(expand_shards(args.shards))
    bundle = load_model(args.model, job_device(args.device))

    def work(shard: str) -> int:
        return embed_shard(bundle, shard, cache_path(args.out, shard), args.batch_size)

    settings = {"model": absolute(args.model)}
    return run_shards("embed", shards, work, args.out, placement, args.retries, settings=settings).exit_status
