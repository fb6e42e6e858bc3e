"""`jestfilter inspect PATTERN...`: count the samples of WebDataset shards and what is damaged."""

from __future__ import annotations

import argparse

HELP = "count samples per shard and damaged samples by reason (img2dataset-style shards)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("patterns", nargs="+", metavar="PATTERN",
                        help="shards: brace pattern (web/{00000..00039}.tar), glob, directory or URL")
    parser.add_argument("--decode", action="store_true",
                        help="also decode every image (finds images whose header is fine but pixels are not)")


def run(args: argparse.Namespace) -> int:
    from jestfilter.jobs.inspect import inspect_shards

    print("\n".join(inspect_shards(args.patterns, args.decode).lines()))
    return 0
