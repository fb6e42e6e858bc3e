"""`jestfilter train`: train a model uniformly on shards (e.g. the filtered output of bootstrap).

Runs under torchrun too: every rank reads its own shards, rank 0 writes the model and metrics."""

from __future__ import annotations

import argparse

from jestfilter.commands._flags import add_flags, given
from jestfilter.config import BootstrapConfig, TrainSettings

HELP = "train a model uniformly on shards, e.g. the filtered shards that bootstrap wrote"
OWN = ("model", "device", "keep_checkpoints")  # of BootstrapConfig
FLAGS = ("steps", "batch_size", "lr", "weight_decay", "warmup", "grad_clip_norm", "seed", "eval_every",
         "checkpoint_every", "workers", "threads", "precision", "compile", "shuffle_buffer", "pixel_norm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shards", nargs="+", required=True, metavar="PATTERN", help="training shards")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (final/, metrics.json)")
    parser.add_argument("--eval", metavar="DIR", help="eval folder for zero-shot and retrieval (default: none, "
                                                      "no evaluation)")
    add_flags(parser, BootstrapConfig, only=OWN)
    add_flags(parser, TrainSettings, only=FLAGS)


def run(args: argparse.Namespace) -> int:
    from jestfilter.jobs.train import train_uniform

    settings = TrainSettings(**given(args, TrainSettings), method="uniform")
    return train_uniform(args.shards, args.out, settings, eval_dir=args.eval, **given(args, BootstrapConfig, OWN))
