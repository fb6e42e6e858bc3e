"""`jestfilter demo-data DIR`: build the embedded demo (curated / noisy web / eval) from Fashion-MNIST."""

from __future__ import annotations

import argparse

HELP = "build the demo data set (curated, noisy web and eval shards) from real Fashion-MNIST images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jestfilter.datasets.kinds import DEFAULT_MIX, NOISE_KINDS

    default_mix = ",".join(f"{kind}={DEFAULT_MIX[kind]}" for kind in NOISE_KINDS)
    parser.add_argument("dir", metavar="DIR", help="output folder (new or empty, or an earlier demo build)")
    parser.add_argument("--source", metavar="IDX_DIR", help="folder with Fashion-MNIST's four idx files "
                        "(default: $JESTFILTER_FASHION_MNIST, then /usr/share/datasets/fashion-mnist)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="same seed, same bytes")
    parser.add_argument("--curated", type=int, default=2000, metavar="N", help="clean curated pairs")
    parser.add_argument("--web", type=int, default=20000, metavar="N", help="noisy web pairs")
    parser.add_argument("--eval", type=int, default=2000, metavar="N", help="held-out eval samples")
    parser.add_argument("--noise", type=float, default=0.6, metavar="FRACTION",
                        help="fraction of web pairs that are noise")
    parser.add_argument("--mix", default=default_mix, metavar="KIND=W,...",
                        help=f"relative weights of the noise kinds; unnamed kinds get 0 "
                             f"(default: {default_mix})")  # fmt: skip
    parser.add_argument("--samples-per-shard", type=int, default=500, metavar="N",
                        help="samples per shard; small, unlike the 10000 of the other commands, so that the "
                             "demo's 20,000 web pairs make 40 shards for workers and ranks to share")
    parser.add_argument("--augment", type=int, default=1, metavar="K",
                        help="draw web samples from K variants of each image (flipped, shifted), for web pools "
                             "beyond 58,000")


def run(args: argparse.Namespace) -> int:
    from jestfilter.datasets.demo import NOISE_KINDS, build_demo_data, parse_mix

    paths = build_demo_data(
        args.dir,
        source=args.source,
        seed=args.seed,
        curated=args.curated,
        web=args.web,
        eval=args.eval,
        noise=args.noise,
        mix=parse_mix(args.mix),
        samples_per_shard=args.samples_per_shard,
        augment=args.augment,
    )
    if paths.reused:
        print(f"{paths.root} already holds this demo build (same arguments): nothing to do")
    counts = paths.split_counts
    print(f"curated {counts['curated']:>7,}  {paths.curated}")
    print(f"web     {counts['web']:>7,}  {paths.web}")
    print(f"eval    {counts['eval']:>7,}  {paths.eval}")
    for kind in ["clean", *NOISE_KINDS]:
        n = paths.kind_counts[kind]
        print(f"  web {kind:<14s}{n:>7,}  {n / counts['web']:6.1%}")
    print(f"ground truth of every web sample: {paths.truth}")
    return 0
