"""Offline against online selection on the Fashion-MNIST demo, several seeds, the same examples seen:
uniform; online JEST; the offline easy-reference JEST dataset (`jestfilter select` on the
reference's cache) trained uniformly; clip_score and neg_clip_loss top-k trained uniformly; and
JEST round 2 (round 1's final model as the reference).

Every arm takes the training recipe from `jestfilter.config`'s defaults (only the seed changes),
so the numbers follow the library's current defaults. Per seed: one `bootstrap --rounds 2
--compare uniform,clip_score,neg_clip_loss`, one `select` on round 1's reference cache, and a
uniform run on what it selected from the same initial learner. Prints a markdown table and
writes it with the raw numbers to OUT.

    python tools/bench_offline.py --out runs/bench-offline --seeds 0 1 2
    python tools/bench_offline.py --out /tmp/bench-offline-tiny --seeds 0 1 --tiny   # a minute: checks the script
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path

from jestfilter.config import BootstrapConfig, TrainSettings
from jestfilter.datasets.demo import build_demo_data
from jestfilter.jobs.runner import resolve_placement
from jestfilter.jobs.select import run_select
from jestfilter.pipeline import Bootstrap, run_bootstrap
from _stats import mean_sd, seeds_parser  # noqa: E402  (tools/ is on sys.path when run as a script)

OFFLINE = ["clip_score", "neg_clip_loss"]
ARMS = {"uniform": "uniform", "online JEST (learnability)": "online", "easy-reference JEST dataset, trained uniformly":
        "jest_dataset", "clip_score top-k": "clip_score", "neg_clip_loss top-k": "neg_clip_loss",
        "JEST round 2": "round2"}
TINY_DEMO = dict(curated=200, web=600, eval=100, samples_per_shard=100)
TINY_TRAIN = dict(steps=12, batch_size=16, n_chunks=4, eval_every=6, workers=0)


def config(demo, out: Path, seed: int, tiny: bool, **fields) -> BootstrapConfig:
    train = TrainSettings(seed=seed, **(TINY_TRAIN if tiny else {}))
    extra = {"reference_steps": 6} if tiny else {}
    return BootstrapConfig(curated=[demo.curated], web=[demo.web], eval=str(demo.eval), out=str(out),
                           progress=False, train=train, **extra, **fields)


def one_seed(demo, out: Path, seed: int, tiny: bool) -> dict[str, dict | None]:
    """Every arm's final metrics for one seed (None where the rounds stopped before round 2)."""
    cfg = config(demo, out, seed, tiny, rounds=2, early_stop=False, compare=["uniform", *OFFLINE])
    summary = run_bootstrap(cfg)
    one = json.loads((out / "round-1" / "metrics.json").read_text())
    two = out / "round-2" / "metrics.json"
    arms = {"uniform": one["compare"]["uniform"], "online": one["final"],
            "round2": json.loads(two.read_text())["final"] if two.exists() else None,
            **{name: one["compare"][name] for name in OFFLINE}}

    # the offline JEST dataset: easy-reference joint selection within each web shard, from round 1's cache
    selected = out / "jest-dataset" / "shards"
    cache = next((out / "round-1" / "cache").iterdir())
    train = cfg.train
    status = run_select(str(cache), [demo.web], str(selected), resolve_placement(0, 1, {}),
                        filter_ratio=train.filter_ratio, method="easy_reference",
                        super_batch=train.batches().super_batch, n_chunks=train.n_chunks, seed=seed)
    assert status == 0, "select failed"
    # trained uniformly exactly as bootstrap's uniform arm: same initial learner, recipe and budget
    arm = Bootstrap(dataclasses.replace(cfg, web=[str(selected / "*.tar")], out=str(out / "jest-dataset"), rounds=1,
                                        compare=["uniform"]))
    arms["jest_dataset"] = arm.learner("uniform", None)
    arms["stopped_early"] = summary.get("stopped_early")
    return arms


def table(results: dict[int, dict]) -> str:
    seeds = sorted(results)
    lines = ["| arm | zero-shot top-1 (per seed) | zero-shot mean ± sd | retrieval R@1 mean ± sd | examples seen |",
             "|---|---|---|---|---|"]
    for label, key in ARMS.items():
        runs = [results[s][key] for s in seeds if results[s][key] is not None]
        per_seed = ", ".join(f"{results[s][key]['zeroshot_top1']:.3f}" if results[s][key] else "stopped" for s in seeds)
        seen = sorted({r["examples_seen"] for r in runs})
        lines.append(f"| {label} | {per_seed} | {mean_sd([r['zeroshot_top1'] for r in runs])} | "
                     f"{mean_sd([r['retrieval_r1'] for r in runs])} | "
                     f"{', '.join(f'{n:,}' for n in seen) or 'n/a'} |")
    return "\n".join(lines)


def verdict(results: dict[int, dict]) -> str:
    """Which arm wins on mean zero-shot, and where online JEST does not beat an offline arm."""
    seeds = sorted(results)

    def top1(key: str) -> list[float | None]:
        return [results[s][key]["zeroshot_top1"] if results[s][key] else None for s in seeds]

    means = {label: statistics.mean([v for v in top1(key) if v is not None])
             for label, key in ARMS.items() if any(v is not None for v in top1(key))}
    winner = max(means, key=means.get)
    lines = [f"- Best mean zero-shot: **{winner}** ({means[winner]:.3f})."]
    online = top1("online")
    for label, key in list(ARMS.items())[2:5]:
        gaps = [a - b for a, b in zip(online, top1(key))]
        word = "beats" if all(g > 0 for g in gaps) else "does not beat"
        lines.append(f"- Online JEST {word} {label}: {statistics.mean(gaps):+.3f} on average "
                     f"({', '.join(f'{g:+.3f}' for g in gaps)}).")
    pairs = [(b, a) for a, b in zip(online, top1("round2")) if b is not None]
    if pairs:
        gaps = [b - a for b, a in pairs]
        word = "helps" if all(g > 0 for g in gaps) else "does not help reliably"
        lines.append(f"- A second round {word}: round 2 − round 1 = {statistics.mean(gaps):+.3f} on average "
                     f"({', '.join(f'{g:+.3f}' for g in gaps)}; {len(pairs)} of {len(seeds)} seeds ran round 2).")
    stopped = [s for s in seeds if results[s]["stopped_early"]]
    if stopped:
        lines.append(f"- Rounds stopped after round 1 (its final not better than its reference) on seeds {stopped}.")
    return "\n".join(lines)


def main() -> None:
    args = seeds_parser(__doc__, "runs/bench-offline", "a small demo and a few steps: checks the script only").parse_args()
    out = args.out
    demo = build_demo_data(out / "demo-data", progress=False, **(TINY_DEMO if args.tiny else {}))
    started = time.perf_counter()
    results = {}
    for seed in args.seeds:
        results[seed] = one_seed(demo, out / f"seed{seed}", seed, args.tiny)
        print(f"seed {seed} done after {time.perf_counter() - started:.0f} s", flush=True)
    report = f"{table(results)}\n\n{verdict(results)}\n\n(total {time.perf_counter() - started:.0f} s)\n"
    print(report)
    (out / "offline.md").write_text(report)
    (out / "offline.json").write_text(json.dumps({str(s): r for s, r in results.items()}, indent=1))


if __name__ == "__main__":
    main()
