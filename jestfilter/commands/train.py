"""`jestfilter train`: train a model uniformly on shards (e.g. the filtered output of bootstrap).

Runs under torchrun too: every rank reads its own shards, rank 0 writes the model and metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "train a model uniformly on shards, e.g. the filtered shards that bootstrap wrote"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shards", nargs="+", required=True, metavar="PATTERN", help="training shards")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (model/, metrics.json)")
    parser.add_argument("--eval", metavar="DIR", help="eval folder for zero-shot and retrieval")
    parser.add_argument("--model", default="jest-tiny", help="model name or local-dir:PATH to continue from")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=64,
                        help="examples per step over all ranks (each of N torchrun ranks trains on 1/N)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    import torch

    from jestfilter.data import atomic_write_json
    from jestfilter.distributed import barrier, init_distributed
    from jestfilter.eval import load_eval_set
    from jestfilter.models import create_model, save_local_dir
    from jestfilter.pipeline import resolve_device
    from jestfilter.train.online import OnlineTrainer, TrainSettings

    for name in ("steps", "batch_size", "eval_every", "checkpoint_every"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    out = Path(args.out)
    eval_set = load_eval_set(args.eval) if args.eval else None
    world, device = init_distributed(resolve_device(args.device))
    torch.manual_seed(args.seed)
    bundle = create_model(args.model, device=device)
    settings = TrainSettings(steps=args.steps, batch_size=args.batch_size, seed=args.seed, lr=args.lr,
                             eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
                             workers=args.workers)
    trainer = OnlineTrainer(bundle, args.shards, settings, checkpoint=out / "checkpoint.pt", eval_set=eval_set,
                            name="train", progress=world.main)
    metrics = trainer.run()
    barrier(world)
    if not world.main:
        return 0
    save_local_dir(bundle, out / "model")
    atomic_write_json(out / "metrics.json", metrics)
    if eval_set is not None:
        print(f"zero-shot top-1 {metrics['zeroshot_top1']:.3f}, retrieval R@1 {metrics['retrieval_r1']:.3f}")
    print(f"model: {out / 'model'}")
    return 0
