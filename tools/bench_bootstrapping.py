"""Data-quality bootstrapping, measured: how the curated set's size, the learner's run length and
rounds decide what JEST gains over uniform and over learner-free easy-reference selection
(issue "Data-quality bootstrapping, measured").

Per set the web pool is fixed (``fashion`` with 200,000 augmented pairs and ``symbols`` with its
200,000, read about once; ``clipart`` with 5,000, read 7.7 times by uniform at 600 steps); the
curated shards are built for the largest size and a smaller curated set is its first shards
(500 pairs a shard), so every size sees the same web data. A reference trains on each curated
size for a fixed number of passes (``--passes``, 12.8 by default: the demo's 400 steps × 64 over
2,000 pairs). Uniform does not depend on the reference, so it is trained once per seed and
length and reused by every size.

    python tools/bench_bootstrapping.py --out runs/bootstrapping --study sizes --sets fashion symbols
    python tools/bench_bootstrapping.py --out runs/bootstrapping --study sizes --sets clipart --sizes 500 1000 2000
    python tools/bench_bootstrapping.py --out runs/bootstrapping --study lengths --lengths 600 2400
    python tools/bench_bootstrapping.py --out runs/bootstrapping --study rounds
    python tools/bench_bootstrapping.py --out /tmp/bb --tiny --seeds 1      # minutes: checks the script

Writes OUT/bootstrapping.md and OUT/bootstrapping.json; every run resumes or is skipped when done.
Run with OMP_NUM_THREADS=1; one process per seed (``--seeds 1``, ``--seeds 2``) shares 2 cores.
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

from jestfilter.config import BootstrapConfig, TrainSettings
from jestfilter.data import expand_shards
from jestfilter.datasets.demo import build_demo_data
from jestfilter.pipeline import run_bootstrap
from jestfilter.report.plots import plot_curated_curve
from jestfilter.results import curated_pairs
from jestfilter.studies import STUDY, longest_curves
from _stats import mean_sd, seeds_parser  # noqa: E402  (tools/ is on sys.path when run as a script)

POOLS = {"fashion": dict(web=200_000, augment=4), "symbols": dict(web=200_000),
         "clipart": dict(web=5_000)}  # its 3,328 train pictures: 5,000 web pairs (4 variants) beside ≤ 2,000 curated
SIZES = [500, 1000, 2000, 8000]
PER_SHARD = 500
TINY_POOLS = {"fashion": dict(web=2_000, augment=4), "symbols": dict(web=2_000), "clipart": dict(web=2_000)}
TINY_SIZES = [100, 200]
TINY = dict(batch_size=16, n_chunks=4, eval_every=6, workers=0)
COMPARE = ["uniform", "easy_reference"]


def data(root: Path, name: str, sizes: list[int], tiny: bool):
    pool = (TINY_POOLS if tiny else POOLS)[name]
    per_shard = 50 if tiny else PER_SHARD
    return build_demo_data(root / "data" / name, set=name, curated=max(sizes), eval=200 if tiny else None,
                           samples_per_shard=per_shard, progress=False, **pool), per_shard


def bootstrap(built, per_shard: int, out: Path, seed: int, size: int, steps: int, tiny: bool, passes: float,
              rounds: int = 1, uniform_from: Path | None = None) -> dict:
    """One bootstrap on the first ``size`` curated pairs; uniform copied from ``uniform_from``'s
    run of the same seed and length when it is there (it does not depend on the reference)."""
    curated = expand_shards(built.curated)[: max(1, size // per_shard)]
    reference_steps = max(1, round(passes * size / (TINY if tiny else {}).get("batch_size", 64)))
    if uniform_from is not None and (uniform_from / "runs" / "uniform.json").exists():
        folder = out / ("round-1" if rounds > 1 else "") / "runs"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(uniform_from / "runs" / "uniform.json", folder / "uniform.json")
    settings = TrainSettings(seed=seed, steps=steps, threads=1, **(TINY if tiny else {}))
    cfg = BootstrapConfig(curated=curated, web=[built.web], eval=str(built.eval), out=str(out), progress=False,
                          compare=COMPARE, reference_steps=reference_steps, rounds=rounds, early_stop=False,
                          train=settings)
    return run_bootstrap(cfg)


def cell(metrics: dict) -> dict:
    """What the tables need from one bootstrap's metrics."""
    runs = {metrics["final"]["method"]: metrics["final"], **metrics["compare"]}
    train = metrics["config"]["train"]
    return {"curated": curated_pairs(metrics["reference"]), "steps": train["steps"], "batch_size": train["batch_size"],
            "reference": metrics["reference"]["zeroshot_top1"],
            **{m: runs[m]["zeroshot_top1"] for m in runs},
            **{f"{m} sooner": metrics["speedup"].get(m, {}) for m in runs if m != "uniform"},
            "seconds": {m: runs[m]["train_seconds"] for m in runs},
            "reference seconds": metrics["costs"]["reference_training_seconds"]
            + metrics["costs"]["reference_embedding_seconds"],
            "break_even": metrics["costs"].get("break_even", {}),
            "uniform stalled": runs["uniform"].get("stalled", False)}


def sizes_run(root: Path, name: str, steps: int, seed: int, size: int) -> Path:
    """The folder of one bootstrap of the sizes study (the lengths study's and round 1 too)."""
    return root / name / f"sizes-steps{steps}" / f"seed{seed}" / f"curated{size}"


def sizes_study(root: Path, name: str, seeds: list[int], sizes: list[int], steps: int, tiny: bool,
                passes: float) -> dict:
    built, per_shard = data(root, name, sizes, tiny)
    out = {}
    for seed in seeds:
        first = None
        for size in sizes:
            run = sizes_run(root, name, steps, seed, size)
            out.setdefault(size, {})[seed] = cell(bootstrap(built, per_shard, run, seed, size, steps, tiny, passes,
                                                            uniform_from=first))
            first = first or run
    return out


def lengths_study(root: Path, name: str, seeds: list[int], size: int, lengths: list[int], tiny: bool,
                  passes: float, sizes: list[int]) -> dict:
    built, per_shard = data(root, name, sizes, tiny)
    return {steps: {seed: cell(bootstrap(built, per_shard, sizes_run(root, name, steps, seed, size), seed, size,
                                         steps, tiny, passes))
                    for seed in seeds} for steps in lengths}


def rounds_study(root: Path, name: str, seeds: list[int], size: int, rounds: int, steps: int, tiny: bool,
                 passes: float, sizes: list[int]) -> dict:
    """{round: {seed: cell}}: round 1 is the sizes study's run at ``size`` (copied in when it is
    there, so it is not trained twice); round k + 1's reference is round k's learnability model.
    A round's cost columns count its own embedding pass, not the rounds before it."""
    built, per_shard = data(root, name, sizes, tiny)
    out = {}
    for seed in seeds:
        run = root / name / f"rounds{rounds}-steps{steps}" / f"seed{seed}" / f"curated{size}"
        first = sizes_run(root, name, steps, seed, size)
        if (first / "metrics.json").exists() and not (run / "round-1").exists():
            shutil.copytree(first, run / "round-1")
        metrics = bootstrap(built, per_shard, run, seed, size, steps, tiny, passes, rounds=rounds)
        for summary in metrics["rounds"]:
            k = summary["round"]
            out.setdefault(k, {})[seed] = cell(json.loads((run / f"round-{k}" / "metrics.json").read_text()))
    return out


def table(title: str, label: str, cells: dict) -> list[str]:
    """Rows of ``cells`` ({row: {seed: cell}}): accuracies mean ± sd, learnability − easy_reference
    paired, examples ratios to uniform's final accuracy."""
    lines = [f"### {title}", "", f"| {label} | reference | uniform | easy_reference | learnability "
             "| learnability − easy_reference (paired) | examples ratio JEST | examples ratio easy_reference "
             "| FLOPs ratio JEST (with the reference) | seconds ratio JEST (with the reference) "
             "| minutes a seed (reference, its embedding pass, every arm) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row, seeds in cells.items():
        values = list(seeds.values())

        def column(key):
            return mean_sd([v[key] for v in values if key in v])

        def ratio(method, key="examples_ratio"):
            return mean_sd([v[f"{method} sooner"].get(key) for v in values
                            if v.get(f"{method} sooner", {}).get("reached")], 2)

        paired = [100 * (v["learnability"] - v["easy_reference"]) for v in values if "easy_reference" in v]
        lines.append(f"| {row} | {column('reference')} | {column('uniform')} | {column('easy_reference')} "
                     f"| {column('learnability')} | {mean_sd(paired, 1)} ({', '.join(f'{p:+.1f}' for p in paired)}) "
                     f"| {ratio('learnability')} | {ratio('easy_reference')} "
                     f"| {ratio('learnability', 'flops_ratio_with_reference')} "
                     f"| {ratio('learnability', 'seconds_ratio_with_reference')} "
                     f"| {mean_sd([(v['reference seconds'] + sum(v['seconds'].values())) / 60 for v in values], 1)} |")
    return lines


def summary(values: list[float]) -> dict:
    """{mean, sd, n} of ``values`` (sd 0 for one value)."""
    return {"mean": round(statistics.mean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0, "n": len(values)}


def merge(path: Path, study: str, name: str, cells: dict) -> dict:
    """Add ``cells`` ({row: {seed: cell}}) to the results file as it is now and return it: one
    process per seed writes the same file, so each keeps the others' seeds."""
    results = json.loads(path.read_text()) if path.exists() else {}
    rows = results.setdefault(study, {}).setdefault(name, {})
    for row, seeds in cells.items():
        rows.setdefault(str(row), {}).update({str(seed): c for seed, c in seeds.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str))
    return results


def publish(results: dict, path: Path, plot_path: Path, min_seeds: int = 3) -> None:
    """The study's cells, one per set, curated size and learner length (``jestfilter.studies``
    reads them): accuracies and the paired differences in points, over the seeds measured; and
    their curated-size curves to ``plot_path`` (docs/curated-size.png is a copy). A cell with
    fewer than ``min_seeds`` seeds is left out: the runs quote only what was measured enough."""
    seeds_of: dict[tuple, dict] = {}
    for study in ("sizes", "lengths"):
        for name, rows in results.get(study, {}).items():
            for seeds in rows.values():
                for seed, c in seeds.items():
                    if c.get("curated") and "easy_reference" in c:
                        seeds_of.setdefault((name, c["curated"], c["steps"], c["batch_size"]), {})[int(seed)] = c
    out = []
    for (name, curated, steps, batch_size), seeds in sorted(seeds_of.items()):
        if len(seeds) < min_seeds:
            continue
        values = list(seeds.values())
        out.append({"set": name, "curated": curated, "steps": steps, "batch_size": batch_size, "seeds": sorted(seeds),
                    **{k: summary([v[k] for v in values])
                       for k in ("reference", "uniform", "easy_reference", "learnability")},
                    "gain": summary([100 * (v["learnability"] - v["uniform"]) for v in values]),
                    "over_easy": summary([100 * (v["learnability"] - v["easy_reference"]) for v in values])})
    path.write_text(json.dumps({"source": "tools/bench_bootstrapping.py --publish (docs/benchmarks.md)",
                                "cells": out}, indent=1) + "\n")
    plot = plot_curated_curve(longest_curves(out, out), plot_path, 0, None, None)
    print(f"published {len(out)} cells to {path}, their curves to {plot}")


def main() -> None:
    parser = seeds_parser(__doc__, "runs/bootstrapping", "tiny data and runs: checks the script in minutes")
    parser.set_defaults(seeds=[1, 2, 3])
    parser.add_argument("--study", choices=["sizes", "lengths", "rounds"], default="sizes")
    parser.add_argument("--sets", nargs="+", default=["fashion", "symbols"], choices=list(POOLS))
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="curated sizes (pairs)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[600, 2400], help="learner steps (lengths study)")
    parser.add_argument("--steps", type=int, default=600, help="learner steps (sizes and rounds studies)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=float, default=12.8, help="the reference's passes over its curated set")
    parser.add_argument("--publish", nargs="?", type=Path, const=STUDY, default=None,
                        help="after the studies, write every cell measured so far for the runs to quote (default: "
                             "jestfilter/studies/bootstrapping.json)")
    args = parser.parse_args()
    sizes = args.sizes or (TINY_SIZES if args.tiny else SIZES)
    steps = 12 if args.tiny else args.steps
    results_path = args.out / "bootstrapping.json"
    results = {}
    lines = []
    for name in args.sets:
        if args.study == "sizes":
            cells = sizes_study(args.out, name, args.seeds, sizes, steps, args.tiny, args.passes)
            lines += table(f"{name}: curated size ({steps} learner steps)", "curated pairs", cells)
        elif args.study == "lengths":
            lengths = [12, 24] if args.tiny else args.lengths
            cells = lengths_study(args.out, name, args.seeds, min(sizes), lengths, args.tiny, args.passes, sizes)
            lines += table(f"{name}: learner length (curated {min(sizes)})", "learner steps", cells)
        else:
            cells = rounds_study(args.out, name, args.seeds, min(sizes), args.rounds, steps, args.tiny, args.passes,
                                 sizes)
            lines += table(f"{name}: rounds (curated {min(sizes)}, {steps} learner steps)", "round", cells)
        results = merge(results_path, args.study, name, cells)
        lines.append("")
    (args.out / f"bootstrapping-{args.study}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.publish:
        publish(results, args.publish, args.out / "curated-size.png")


if __name__ == "__main__":
    main()
