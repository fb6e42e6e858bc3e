"""`jestfilter embed --model DIR --shards PATTERN --out DIR`: per-shard image/text embeddings."""

from __future__ import annotations

import argparse

from jestfilter.commands._flags import add_job_arguments
from jestfilter.config import DEVICE_HELP, BootstrapConfig

HELP = "embed shards with a model into per-shard <shard>.emb.npz files (the reference cache bootstrap reads)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="model folder (DIR or local-dir:DIR), or a model name for random weights")
    parser.add_argument("--shards", nargs="+", required=True, metavar="PATTERN", help="input shards")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N", help="images per forward pass")
    parser.add_argument("--device", default=BootstrapConfig.device, help=DEVICE_HELP)
    add_job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from jestfilter.jobs.embed import run_embed
    from jestfilter.commands._flags import placement_from_args

    return run_embed(args.model, args.shards, args.out, placement_from_args(args), args.retries,
                     args.batch_size, args.device)
