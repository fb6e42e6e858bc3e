"""`jestfilter evaluate`: zero-shot top-1 and retrieval R@1 of a model on an eval directory."""

from __future__ import annotations

import argparse
import json

HELP = "evaluate a model (local-dir:PATH or a model name) on an eval directory: zero-shot and retrieval"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="local-dir:PATH (as bootstrap writes it) or a model name")
    parser.add_argument("--eval", required=True, help="directory of *.tar shards + classnames.txt [+ templates.txt]")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--patch-size", type=int, default=None, help="evaluate the image tower at this Flexi patch size")


def run(args: argparse.Namespace) -> int:
    from jestfilter.eval import evaluate, load_eval_set
    from jestfilter.models import create_model

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    eval_set = load_eval_set(args.eval)
    bundle = create_model(args.model, device=args.device)
    metrics = evaluate(bundle, eval_set, batch_size=args.batch_size, patch_size=args.patch_size)
    print(json.dumps({"model": args.model, "eval": args.eval, "samples": len(eval_set),
                      "rejected": dict(eval_set.rejected), **metrics}, indent=1))
    return 0
