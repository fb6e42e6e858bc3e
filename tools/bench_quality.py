"""Quality benchmark on the Fashion-MNIST demo: JEST against its baselines over several seeds,
joint against independent selection as the filter ratio grows, and Flexi-JEST.

Every run is a real `bootstrap` (same data for all seeds; the seed changes model init, data
order and sampling). Prints markdown tables and writes them with the raw numbers to OUT.

    python tools/bench_quality.py --out runs/bench-quality --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from jestfilter.datasets.demo import build_demo_data
from jestfilter.config import BootstrapConfig, TrainSettings
from jestfilter.pipeline import run_bootstrap

BASELINES = ["uniform", "easy_reference", "hard_learner", "independent"]


def bootstrap(demo, out: Path, compare=(), **train) -> dict:
    cfg = BootstrapConfig(curated=[demo.curated], web=[demo.web], eval=str(demo.eval), out=str(out),
                          progress=False, compare=list(compare), train=TrainSettings(**train))
    return run_bootstrap(cfg)


def final_runs(metrics: dict) -> dict[str, dict]:
    return {metrics["final"]["method"]: metrics["final"], **metrics["compare"]}


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-quality")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--ratios", type=float, nargs="*", default=[0.5, 0.9], help="extra filter ratios (seed 0)")
    args = parser.parse_args()
    out = Path(args.out)
    demo = build_demo_data(out / "demo-data", progress=False)
    started = time.perf_counter()

    # 1. every method at f = 0.8, several seeds
    by_method: dict[str, list[dict]] = {}
    for seed in args.seeds:
        metrics = bootstrap(demo, out / f"f0.8-seed{seed}", seed=seed, steps=args.steps, compare=BASELINES)
        for method, run in final_runs(metrics).items():
            run = {**run, "speedup": metrics["speedup"].get(method, {})}
            by_method.setdefault(method, []).append(run)
        print(f"seed {seed} done after {time.perf_counter() - started:.0f} s", flush=True)
    lines = ["| method (f = 0.8) | zero-shot top-1 | retrieval R@1 | examples to reach uniform's final | s/step |",
             "|---|---|---|---|---|"]
    for method, runs in by_method.items():
        reach = [r["speedup"].get("examples_ratio") for r in runs if r["speedup"].get("reached")]
        reach_text = f"{mean_sd(reach)}× ({len(reach)}/{len(runs)} seeds reach it)" if reach else "never"
        lines.append(f"| {method} | {mean_sd([r['zeroshot_top1'] for r in runs])} | "
                     f"{mean_sd([r['retrieval_r1'] for r in runs])} | {reach_text} | "
                     f"{mean_sd([r['seconds_per_step'] for r in runs])} |")
    table = "\n".join(lines)

    # 2. joint (learnability) against independent as the filter ratio grows, seed 0
    reference = f"local-dir:{out / f'f0.8-seed{args.seeds[0]}' / 'reference'}"
    ratio_rows = {0.8: {m: by_method[m][0]["zeroshot_top1"] for m in ("learnability", "independent")}}
    for ratio in args.ratios:
        metrics = bootstrap(demo, out / f"f{ratio}-seed{args.seeds[0]}", seed=args.seeds[0], steps=args.steps,
                            filter_ratio=ratio, reference=reference, compare=["independent"])
        ratio_rows[ratio] = {m: r["zeroshot_top1"] for m, r in final_runs(metrics).items()}
        print(f"f = {ratio} done after {time.perf_counter() - started:.0f} s", flush=True)
    ratio_lines = ["| filter ratio | joint (learnability) | independent | joint − independent |", "|---|---|---|---|"]
    for ratio in sorted(ratio_rows):
        row = ratio_rows[ratio]
        ratio_lines.append(f"| {ratio} | {row['learnability']:.3f} | {row['independent']:.3f} | "
                           f"{row['learnability'] - row['independent']:+.3f} |")
    ratio_table = "\n".join(ratio_lines)

    # 3. Flexi-JEST against full-resolution JEST, seed 0, same reference
    seed0 = {m: runs[0] for m, runs in by_method.items()}
    flexi = bootstrap(demo, out / f"flexi-seed{args.seeds[0]}", seed=args.seeds[0], steps=args.steps, flexi=True,
                      reference=reference, compare=[])["final"]
    target = seed0["uniform"]["zeroshot_top1"]
    flexi_lines = ["| run (seed 0) | zero-shot top-1 | s/step | step cost / uniform | seconds to reach uniform's final |",
                   "|---|---|---|---|---|"]
    for name, run in (("uniform", seed0["uniform"]), ("JEST", seed0["learnability"]), ("Flexi-JEST", flexi)):
        reached = next((seconds for (seconds, top1) in run["time_curve"] if top1 >= target), None)
        flexi_lines.append(f"| {name} | {run['zeroshot_top1']:.3f} | {run['seconds_per_step']:.3f} | "
                           f"{run['seconds_per_step'] / seed0['uniform']['seconds_per_step']:.2f}× | "
                           f"{'never' if reached is None else f'{reached:.0f}'} |")
    flexi_table = "\n".join(flexi_lines)

    report = f"{table}\n\n{ratio_table}\n\n{flexi_table}\n\n(total {time.perf_counter() - started:.0f} s)\n"
    print(report)
    (out / "quality.md").write_text(report)
    (out / "quality.json").write_text(json.dumps({"by_method": by_method, "ratios": ratio_rows, "flexi": flexi},
                                                 indent=1))


if __name__ == "__main__":
    main()
