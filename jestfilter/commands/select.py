"""`jestfilter select --embeddings DIR --shards PATTERN --out DIR --filter-ratio F`: offline joint selection."""

from __future__ import annotations

import argparse

from jestfilter.commands._flags import add_job_arguments
from jestfilter.config import DEVICE_HELP, BootstrapConfig, TrainSettings, described
from jestfilter.data.options import MANIFESTS, SAMPLES_PER_SHARD

HELP = ("select a reusable JEST-curated dataset offline: b = B·(1−f) of every super-batch of B within each "
        "shard, chosen jointly from cached embeddings; shards + manifest, bytes unchanged")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embeddings", required=True, metavar="DIR",
                        help="the reference's embeddings of the shards: an embed job's output or bootstrap's cache")
    parser.add_argument("--shards", nargs="+", required=True, metavar="PATTERN", help="input shards")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder: <shard>-NNNNNN.tar, manifest.parquet/, sizes.json")
    parser.add_argument("--filter-ratio", type=float, required=True, metavar="F",
                        help="f: share of every super-batch dropped")
    parser.add_argument("--method", help="criterion (default: easy_reference; learnability with --learner)")
    parser.add_argument("--learner", metavar="DIR",
                        help="a fixed learner model folder (DIR or local-dir:DIR) to score learnability with; it "
                             "embeds the shards itself (default: none)")
    parser.add_argument("--super-batch", type=int, default=320, metavar="B", help="super-batch size")
    parser.add_argument("--n-chunks", type=int, default=TrainSettings.n_chunks, metavar="N",
                        help="chunks of the joint sampler")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the super-batches and the sampler (with each shard's name)")
    parser.add_argument("--samples-per-shard", type=int, default=SAMPLES_PER_SHARD, metavar="N",
                        help="most samples per output shard")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N",
                        help="batch size of the learner's embedding pass")
    parser.add_argument("--device", default=BootstrapConfig.device, help=DEVICE_HELP)
    parser.add_argument("--manifest", default=BootstrapConfig.manifest, choices=tuple(MANIFESTS),
                        help="what manifest.parquet/ records: " + described(MANIFESTS))
    add_job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from jestfilter.commands._flags import placement_from_args
    from jestfilter.jobs.select import run_select

    return run_select(args.embeddings, args.shards, args.out, placement_from_args(args), args.retries,
                      filter_ratio=args.filter_ratio, method=args.method, learner=args.learner,
                      super_batch=args.super_batch, n_chunks=args.n_chunks, seed=args.seed,
                      samples_per_shard=args.samples_per_shard, batch_size=args.batch_size, device=args.device,
                      manifest=args.manifest)
