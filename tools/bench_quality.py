"""JEST against its baselines on the Fashion-MNIST demo, over seeds, filter ratios and two
repetition regimes, plus the sampling-gain sweep (issue 9's benchmark).

Regimes: ``repeated`` is the demo (20,000 web pairs, read ~10 times at f = 0.8); ``fresh`` has
an augmented web pool of 200,000 pairs (4 flipped/shifted variants of each image), so even
f = 0.9 reads each pair at most twice. Per seed and regime one reference is trained and its
web embeddings cached; every run of that seed reuses them, and every learner starts from the
same weights. Uniform does not depend on f: it is trained once per seed and regime.

    python tools/bench_quality.py --out runs/bench-quality                 # everything, hours on 2 cores
    python tools/bench_quality.py --out /tmp/bq --tiny --seeds 0 1         # a few minutes: checks the script

Writes OUT/quality.md (the tables) and OUT/quality.json (every run's numbers); runs resume.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from jestfilter.config import BootstrapConfig, TrainSettings
from jestfilter.datasets.demo import build_demo_data
from jestfilter.pipeline import run_bootstrap
from jestfilter.results import speedups
from _stats import mean_sd, seeds_parser  # noqa: E402  (tools/ is on sys.path when run as a script)

METHODS = ["learnability", "easy_reference", "independent", "hard_learner"]
GAINS = ["10", "100", "greedy"]  # besides the default
REGIMES = {"repeated": dict(web=20_000), "fresh": dict(web=200_000, augment=4)}
TINY_DATA = dict(curated=200, eval=100, samples_per_shard=100)
TINY_WEB = {"repeated": dict(web=600), "fresh": dict(web=3_000, augment=4)}
TINY_TRAIN = dict(steps=12, batch_size=16, n_chunks=4, eval_every=6, workers=0)


def bootstrap(demo, out: Path, seed: int, tiny: bool, compare: list[str], reference: Path | None = None,
              **train) -> dict[str, dict]:
    """One bootstrap run; every method's summary."""
    extra = {"reference_steps": 6} if tiny else {}
    if reference is not None:
        extra["reference"] = f"local-dir:{reference / 'reference'}"
        extra["reference_cache"] = str(next((reference / "cache").iterdir()))
    settings = TrainSettings(seed=seed, **(TINY_TRAIN if tiny else {}), **train)
    cfg = BootstrapConfig(curated=[demo.curated], web=[demo.web], eval=str(demo.eval), out=str(out), progress=False,
                          compare=compare, train=settings, **extra)
    metrics = run_bootstrap(cfg)
    return {metrics["final"]["method"]: metrics["final"], **metrics["compare"]}


def one_seed(demo, out: Path, seed: int, tiny: bool, ratios: list[float], gains: bool) -> dict:
    """{arm name: run summary} for one seed; arms are "uniform", "METHOD f=F" and "learnability gain=G"."""
    first = out / f"f0.8-seed{seed}"
    runs = bootstrap(demo, first, seed, tiny, compare=["uniform", *METHODS[1:]])
    arms = {"uniform": runs["uniform"], **{f"{m} f=0.8": runs[m] for m in METHODS}}
    for ratio in (r for r in ratios if r != 0.8):
        runs = bootstrap(demo, out / f"f{ratio}-seed{seed}", seed, tiny, compare=METHODS[1:], reference=first,
                         filter_ratio=ratio)
        arms.update({f"{m} f={ratio}": runs[m] for m in METHODS})
    for gain in GAINS if gains else []:
        options = {"sampling": "greedy"} if gain == "greedy" else {"gain": float(gain)}
        runs = bootstrap(demo, out / f"gain{gain}-seed{seed}", seed, tiny, compare=[], reference=first, **options)
        arms[f"learnability gain={gain}"] = runs["learnability"]
    return arms


def table(regime: str, seeds: dict[int, dict]) -> list[str]:
    """Per arm: zero-shot per seed, mean ± sd, class R@1, examples ratio to reach uniform, passes."""
    lines = [f"### {regime}", "", "| arm | zero-shot per seed | mean ± sd | class R@1 | sooner than uniform "
             "(examples) | sooner (seconds) | reached on | web passes |", "|---|---|---|---|---|---|---|---|"]
    speed = {seed: speedups({"uniform": arms["uniform"], **{a: r for a, r in arms.items() if a != "uniform"}})
             for seed, arms in seeds.items()}
    for arm in next(iter(seeds.values())):
        top1 = [arms[arm]["zeroshot_top1"] for arms in seeds.values()]
        reached = [speed[seed][arm] for seed in seeds if speed[seed][arm]["reached"]]
        lines.append(f"| {arm} | {', '.join(f'{v:.3f}' for v in top1)} | {mean_sd(top1)} "
                     f"| {mean_sd([arms[arm]['retrieval_class_r1'] for arms in seeds.values()])} "
                     f"| {mean_sd([r['examples_ratio'] for r in reached], 2)} "
                     f"| {mean_sd([r['seconds_ratio'] for r in reached], 2)} | {len(reached)}/{len(seeds)} "
                     f"| {mean_sd([arms[arm]['passes'] for arms in seeds.values()], 1)} |")
    return lines


def paired(regime: str, seeds: dict[int, dict], ratios: list[float]) -> list[str]:
    """Paired differences over seeds: what the paper's two orderings say."""
    lines = [f"Paired differences ({regime}; zero-shot, mean ± sd over seeds):", "",
             "| f | learnability − easy_reference | learnability − independent | learnability − uniform |",
             "|---|---|---|---|"]
    for ratio in ratios:
        def diff(other: str) -> str:
            return mean_sd([arms[f"learnability f={ratio}"]["zeroshot_top1"] - arms[other]["zeroshot_top1"]
                            for arms in seeds.values()])
        lines.append(f"| {ratio} | {diff(f'easy_reference f={ratio}')} | {diff(f'independent f={ratio}')} "
                     f"| {diff('uniform')} |")
    return lines


def main() -> None:
    parser = seeds_parser(__doc__, "runs/bench-quality", "tiny data and runs, to check the script")
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.8, 0.9])
    parser.add_argument("--no-gains", dest="gains", action="store_false", help="skip the sampling-gain sweep")
    args = parser.parse_args()
    out, started = args.out, time.perf_counter()
    results, lines = {}, ["## Quality over seeds, filter ratios and repetition regimes", ""]
    for regime in args.regimes:
        data = {**TINY_DATA, **TINY_WEB[regime]} if args.tiny else REGIMES[regime]
        demo = build_demo_data(out / f"demo-{regime}", progress=False, **data)
        seeds = {}
        for seed in args.seeds:
            seeds[seed] = one_seed(demo, out / regime, seed, args.tiny, args.ratios, args.gains and regime == "repeated")
            print(f"{regime} seed {seed} done after {time.perf_counter() - started:.0f} s", flush=True)
        results[regime] = seeds
        lines += [*table(regime, seeds), "", *paired(regime, seeds, args.ratios), ""]
    lines.append(f"({time.perf_counter() - started:.0f} s in all)")
    (out / "quality.md").write_text("\n".join(lines) + "\n")
    (out / "quality.json").write_text(json.dumps(results, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
