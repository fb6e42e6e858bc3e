"""Does the written dataset pay? Uniform training on bootstrap's filtered/ against uniform on the
raw web and against online JEST, with the same number of examples, over several seeds.

For each seed, one `bootstrap` on the demo (JEST with `--compare uniform`, `--filtered-rule top`, so
its filtered/ holds `top`). The same run's manifest also gives the `first-pass` and `all` sets, which
are copied from the web shards too. Then `jestfilter train` trains uniformly on each set with
JEST's steps and batch size, so every model has seen the same number of examples. The demo data
is the same for every seed; the seed changes model init, data order and sampling. Prints markdown
tables (zero-shot top-1 and R@1 as mean ± sd; each set's size and clean share) and writes them
with the raw numbers to OUT.

    python tools/bench_filtered.py --out runs/bench-filtered              # 3 seeds: ~30 min on 2 quiet cores
    python tools/bench_filtered.py --out /tmp/bench-filtered --tiny       # a smoke test: ~2 min
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import polars as pl

from jestfilter.config import BootstrapConfig, TrainSettings
from jestfilter.data import FilteredShardWriter, RawSample, iter_samples, read_manifest
from jestfilter.data.writer import copy_from_sources
from jestfilter.datasets.demo import build_demo_data
from jestfilter.jobs.train import train_uniform
from jestfilter.pipeline import run_bootstrap
from _stats import mean_sd, seeds_parser  # noqa: E402  (tools/ is on sys.path when run as a script)

RULES = ["top", "first-pass", "all"]


def rule_keys(run: Path, rule: str) -> set[tuple[str, str]]:
    """(source shard, key) of every sample a rule puts in filtered/, from the run's manifest."""
    manifest = read_manifest(run / "filtered")
    kept = manifest.filter(pl.col("decision") == "kept")
    if rule == "first-pass":
        kept = kept.filter(pl.col("pass") == 0)
    return set(kept.select("source_shard", "key").unique().iter_rows())


def copy_samples(keys: set[tuple[str, str]], folder: Path) -> int:
    """Write the samples ``keys`` names, byte-for-byte from their shards, as a filtered folder."""
    writer = FilteredShardWriter(folder)
    copy_from_sources(writer, keys)
    writer.close()  # sizes.json and _SUCCESS
    return sum(writer.sizes.values())


def clean_share(folder: Path, truth: pl.DataFrame) -> float:
    keys = [item.key for item in iter_samples(sorted(str(p) for p in folder.glob("*.tar")))
            if isinstance(item, RawSample)]
    kinds = truth.filter(pl.col("key").is_in(keys))["kind"]
    return float((kinds == "clean").mean()) if len(kinds) else float("nan")


def main() -> None:
    args = seeds_parser(__doc__, "runs/bench-filtered", "a few steps on a small demo: checks the script only").parse_args()
    out = args.out
    if args.tiny:
        demo = build_demo_data(out / "demo-data", curated=200, web=1000, eval=100, samples_per_shard=100,
                               progress=False)
        train = dict(steps=12, batch_size=16, n_chunks=4, eval_every=6, workers=0)
        reference_steps = 6
    else:
        demo = build_demo_data(out / "demo-data", progress=False)
        train, reference_steps = {}, 400
    truth = pl.read_parquet(demo.truth)
    started = time.perf_counter()
    results: dict[str, list[dict]] = {}
    sets: dict[str, list[dict]] = {}
    for seed in args.seeds:
        run = out / f"seed{seed}"
        settings = TrainSettings(seed=seed, **train)
        metrics = run_bootstrap(BootstrapConfig(curated=[demo.curated], web=[demo.web], eval=str(demo.eval),
                                                out=str(run), compare=["uniform"], progress=False, filtered_rule="top",
                                                reference_steps=reference_steps, train=settings))
        results.setdefault("online JEST (learnability)", []).append(metrics["final"])
        results.setdefault("uniform on the raw web", []).append(metrics["compare"]["uniform"])
        for rule in RULES:
            folder = run / "filtered" if rule == "top" else run / f"filtered-{rule}"
            written = (sum(json.loads((folder / "sizes.json").read_text()).values()) if rule == "top"
                       else copy_samples(rule_keys(run, rule), folder))
            sets.setdefault(rule, []).append({"written": written, "clean": clean_share(folder, truth)})
            trained = out / f"seed{seed}-train-{rule}"
            train_uniform([str(folder)], trained, TrainSettings(seed=seed, method="uniform", **train),
                          eval_dir=str(demo.eval))
            results.setdefault(f"uniform on filtered/ ({rule})", []).append(
                json.loads((trained / "metrics.json").read_text()))
        print(f"seed {seed} done after {time.perf_counter() - started:.0f} s", flush=True)

    examples = {name: {r["examples_seen"] for r in runs} for name, runs in results.items()}
    lines = [f"| trained on ({len(args.seeds)} seeds) | zero-shot top-1 | retrieval R@1 | examples seen |",
             "|---|---|---|---|"]
    for name, runs in results.items():
        lines.append(f"| {name} | {mean_sd([r['zeroshot_top1'] for r in runs])} | "
                     f"{mean_sd([r['retrieval_r1'] for r in runs])} | "
                     f"{', '.join(f'{n:,}' for n in sorted(examples[name]))} |")
    web = truth.height
    set_lines = ["| filtered/ rule | samples written (share of the web) | clean pairs (web: "
                 f"{float((truth['kind'] == 'clean').mean()):.1%}) |", "|---|---|---|"]
    for rule, rows in sets.items():
        written = statistics.mean(r["written"] for r in rows)
        set_lines.append(f"| {rule} | {written:,.0f} ({written / web:.1%}) | "
                         f"{mean_sd([r['clean'] for r in rows])} |")
    tables = "\n".join(lines) + "\n\n" + "\n".join(set_lines)
    print("\n" + tables)
    (out / "bench_filtered.md").write_text(tables + "\n")
    (out / "bench_filtered.json").write_text(json.dumps({"results": results, "sets": sets}, indent=1))
    print(f"\ntotal {time.perf_counter() - started:.0f} s; tables in {out / 'bench_filtered.md'}")


if __name__ == "__main__":
    main()
