"""`jestfilter bootstrap`: reference → online JEST → filtered shards → final model → report."""

from __future__ import annotations

import argparse
import json
import tomllib
from dataclasses import fields
from pathlib import Path

from jestfilter.cli import UsageError

HELP = "train a reference, select web data online with JEST, write filtered shards, train and evaluate"

DEMO_COMPARE = ["uniform", "easy_reference"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jestfilter.pipeline import METHODS

    data = parser.add_argument_group("data (all three, or none for the Fashion-MNIST demo)")
    data.add_argument("--curated", nargs="+", metavar="PATTERN", help="curated shards, e.g. 'cur/{000..009}.tar'")
    data.add_argument("--web", nargs="+", metavar="PATTERN", help="web shards, e.g. 'web/web-{000000..000039}.tar'")
    data.add_argument("--eval", metavar="DIR", help="eval folder: *.tar with KEY.jpg/.txt/.cls, classnames.txt")
    parser.add_argument("--out", metavar="DIR", help="output folder (default runs/demo)")
    parser.add_argument("--config", metavar="FILE", help="JSON or TOML file of these options (flags win)")
    run = parser.add_argument_group("selection and training")
    run.add_argument("--method", choices=METHODS, help="selection criterion (default learnability)")
    run.add_argument("--filter-ratio", type=float, help="f: share of each super-batch dropped (default 0.8)")
    run.add_argument("--steps", type=int, help="learner training steps (default 600)")
    run.add_argument("--batch-size", type=int, help="b: examples trained on per step over all ranks "
                     "(default 64; under torchrun each of N ranks reads B/N and trains on b/N)")
    run.add_argument("--reference-steps", type=int, help="reference training steps (default 400)")
    run.add_argument("--reference", metavar="local-dir:PATH", help="reuse this reference instead of training one")
    run.add_argument("--reference-cache", metavar="DIR", help="the reference's embeddings of the web shards "
                     "(a `jestfilter embed` output); shards missing there are embedded into it")
    run.add_argument("--model", help="jest-tiny (default), jest-small, jest-b16, an open_clip name or local-dir:PATH")
    run.add_argument("--flexi", action="store_true", default=None,
                     help="Flexi-JEST: score and co-train half of each batch at a coarser patch size")
    run.add_argument("--flexi-patch-size", type=int, help="coarse patch size (default twice the native one)")
    run.add_argument("--compare", metavar="M1,M2", help="also train these methods with the same budget "
                     "(default for the demo: uniform,easy_reference; 'none' for none)")
    run.add_argument("--seed", type=int)
    run.add_argument("--n-chunks", type=int, help="chunks of the joint sampler (default 16)")
    run.add_argument("--sampling", choices=["softmax", "greedy"])
    run.add_argument("--gain", type=float, help="inverse temperature of softmax sampling (default 1)")
    run.add_argument("--lr", type=float)
    run.add_argument("--eval-every", type=int, help="evaluate every N steps (default 100)")
    run.add_argument("--checkpoint-every", type=int, help="checkpoint every N steps (default 50)")
    run.add_argument("--samples-per-shard", type=int, help="samples per filtered shard (default 5000)")
    run.add_argument("--workers", type=int, help="decoding workers (default 2)")
    run.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
    run.add_argument("--no-progress", dest="progress", action="store_false", default=None)


def config_from(args: argparse.Namespace):
    """Defaults, then the --config file, then the flags given."""
    from jestfilter.pipeline import BootstrapConfig

    known = {f.name for f in fields(BootstrapConfig)}
    values: dict = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UsageError(f"config file not found: {path}")
        text = path.read_text()
        try:
            loaded = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
            raise UsageError(f"cannot parse {path}: {error}") from None
        unknown = sorted(set(k.replace("-", "_") for k in loaded) - known)
        if unknown:
            raise UsageError(f"unknown option(s) in {path}: {', '.join(unknown)}")
        values.update({k.replace("-", "_"): v for k, v in loaded.items()})
    values.update({k: v for k, v in vars(args).items() if k in known and v is not None})
    if isinstance(values.get("compare"), str):
        values["compare"] = [] if values["compare"] == "none" else [m for m in values["compare"].split(",") if m]
    for key in ("curated", "web"):
        if isinstance(values.get(key), str):
            values[key] = [values[key]]
    demo = values.get("curated") is None and values.get("web") is None and values.get("eval") is None
    if demo and "compare" not in values:
        values["compare"] = list(DEMO_COMPARE)
    return BootstrapConfig(**values)


def run(args: argparse.Namespace) -> int:
    from jestfilter.pipeline import run_bootstrap

    run_bootstrap(config_from(args))
    return 0
