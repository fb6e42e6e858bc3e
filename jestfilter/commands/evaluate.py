"""`jestfilter evaluate`: zero-shot top-1 and retrieval R@1 of a model on an eval directory."""

from __future__ import annotations

import argparse
import json

from jestfilter.config import DEVICE_HELP, BootstrapConfig

HELP = "evaluate a model (a model folder or a model name) on an eval directory: zero-shot and retrieval"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="model folder (DIR or local-dir:DIR, as bootstrap and train write it), or a model "
                             "name for random weights")
    parser.add_argument("--eval", required=True, metavar="DIR",
                        help="directory of *.tar shards + classnames.txt [+ templates.txt]")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N", help="images per forward pass")
    parser.add_argument("--device", default=BootstrapConfig.device, help=DEVICE_HELP)
    parser.add_argument("--patch-size", type=int, default=None, metavar="N",
                        help="evaluate the image tower at this Flexi patch size (default: the model's own)")


def run(args: argparse.Namespace) -> int:
    from jestfilter.distributed import resolve_device
    from jestfilter.eval import evaluate, load_eval_set
    from jestfilter.models import create_model

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    bundle = create_model(args.model, device=resolve_device(args.device))
    eval_set = load_eval_set(args.eval, bundle.preprocess.size)  # decoded for its input, as in training
    metrics = evaluate(bundle, eval_set, batch_size=args.batch_size, patch_size=args.patch_size)
    print(json.dumps({"model": args.model, "eval": args.eval, "samples": len(eval_set),
                      "rejected": dict(eval_set.rejected), **metrics}, indent=1))
    return 0
