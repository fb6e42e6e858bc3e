"""`jestfilter demo-data DIR [--set NAME]`: build the demo (curated / noisy web / eval) from
Fashion-MNIST, or another set of the validation suite."""

from __future__ import annotations

import argparse

HELP = ("build the demo data set (curated, noisy web and eval shards) from real Fashion-MNIST images, or "
        "another set of the validation suite (--set)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jestfilter.datasets.kinds import DEFAULT_MIX, NOISE_KINDS, SET_NAMES

    default_mix = ",".join(f"{kind}={DEFAULT_MIX[kind]}" for kind in NOISE_KINDS)
    parser.add_argument("dir", metavar="DIR", help="output folder (new or empty, or an earlier demo build)")
    parser.add_argument("--set", default="fashion", choices=SET_NAMES,
                        help="which set: fashion (the demo, Fashion-MNIST), digits (handwritten, opencv-doc), "
                             "symbols (colour pictographs from the fonts-* packages), clipart (openclipart-png "
                             "drawings with their titles); docs/benchmarks.md describes each")
    parser.add_argument("--source", metavar="PATH", help="where the set's images are: Fashion-MNIST's four idx "
                        "files (default $JESTFILTER_FASHION_MNIST, then /usr/share/datasets/fashion-mnist), "
                        "digits.png ($JESTFILTER_DIGITS, then opencv-doc's), a folder of fonts ($JESTFILTER_FONTS, "
                        "then the fonts-* packages' folders), openclipart's png folder ($JESTFILTER_CLIPART)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="same seed, same bytes")
    parser.add_argument("--curated", type=int, metavar="N", help="clean curated pairs (default: the set's, "
                        "2000 for the demo)")
    parser.add_argument("--web", type=int, metavar="N", help="noisy web pairs (default: the set's, 20000 for the demo)")
    parser.add_argument("--eval", type=int, metavar="N", help="held-out eval samples (default: the set's, 2000 "
                        "for the demo)")
    parser.add_argument("--noise", type=float, default=0.6, metavar="FRACTION",
                        help="fraction of web pairs that are noise")
    parser.add_argument("--mix", default=default_mix, metavar="KIND=W,...",
                        help=f"relative weights of the noise kinds; unnamed kinds get 0 "
                             f"(default: {default_mix})")  # fmt: skip
    parser.add_argument("--samples-per-shard", type=int, default=500, metavar="N",
                        help="samples per shard; small, unlike the 10000 of the other commands, so that the "
                             "demo's 20,000 web pairs make 40 shards for workers and ranks to share")
    parser.add_argument("--augment", type=int, metavar="K",
                        help="draw web samples from K variants of each image (flipped, shifted), for web pools "
                             "beyond the source's (default: the set's: 1 for the demo, 2 for digits, 4 for clipart)")


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
        set=args.set,
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
