"""Peak memory of the report and the pool table as the manifest grows: synthetic manifests of a
fixed pool read in 1 to 50 passes (1M to 50M sample-passes), each consumer in a fresh process.

The manifest is written as a run writes it (``manifest.parquet/part-NNNNN.parquet``, 100,000
rows a part, the sink's schema): ``--pool`` samples in shards of 10,000, read ``passes`` times
in super-batches of B = 320 with b = 64 kept (f = 0.8), 0.1 % rejected, random scores. The
consumers, each timed and measured (peak RSS, ``ru_maxrss``) in its own process:

* ``report``: what bootstrap's report reads: ``manifest_counts`` (decisions, reasons, distinct
  kept samples), ``score_histograms`` and ``kept_by_kind`` against a truth table of the pool;
* ``pool + top``: ``pool_table`` and ``choose_top`` (the ``top`` rule's ranking);
* ``report, eager`` (before issue 23): ``read_manifest`` (the whole table in memory) and the
  same numbers from it.

    python tools/bench_manifest.py [--pool 1000000] [--passes 1 10 50] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jestfilter.data.manifest import SCHEMA  # noqa: E402
from jestfilter.selection.criteria import SCORE_COLUMNS  # noqa: E402

PER_SHARD, PART_ROWS, B, b = 10_000, 100_000, 320, 64
KINDS = ["clean", "mismatched", "junk_image", "duplicate", "partial", "uninformative"]


def write_manifest(folder: Path, pool: int, passes: int) -> None:
    """``passes`` passes over ``pool`` samples as manifest parts under ``folder/manifest.parquet``."""
    out = folder / "manifest.parquet"
    if (folder / "done").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    out.mkdir(parents=True)
    schema = {**SCHEMA, **{name: pl.Float32 for name in SCORE_COLUMNS}, "selection_score": pl.Float32}
    rng = np.random.default_rng(0)
    total, part = pool * passes, 0
    for start in range(0, total, PART_ROWS):
        row = np.arange(start, min(total, start + PART_ROWS))
        n = len(row)
        rejected = rng.random(n) < 0.001
        frame = pl.DataFrame({"row": row, "rejected": rejected,
                              "learner": rng.normal(3.0, 1.0, n).astype(np.float32),
                              "reference": rng.normal(2.0, 1.0, n).astype(np.float32)})
        sample = (pl.col("row") * 7919) % pool  # each pass: the pool in another order
        decision = (pl.when(pl.col("rejected")).then(pl.lit("rejected"))
                    .when(pl.col("row") % B < b).then(pl.lit("kept")).otherwise(pl.lit("dropped")))
        frame = frame.with_columns(sample.alias("sample"), decision.alias("decision"),
                                   (pl.col("row") // pool).cast(pl.Int32).alias("pass"))
        kept, scored = pl.col("decision") == "kept", ~pl.col("rejected")
        frame = frame.select(
            pl.col("sample").cast(pl.String).str.zfill(9).alias("key"),
            pl.format("/data/web/web-{}.tar", (pl.col("sample") // PER_SHARD).cast(pl.String).str.zfill(6))
            .alias("source_shard"),
            "pass", (pl.col("row") // B).alias("step"), "decision",
            pl.when(pl.col("rejected")).then(pl.lit("corrupt_image")).alias("reason"),
            pl.when(kept & (pl.col("pass") == 0)).then(
                pl.format("filtered-{}.tar", (pl.col("row") // 10_000).cast(pl.String).str.zfill(6)))
            .alias("output_shard"),
            pl.when(kept).then(pl.col("row") % B // 4).alias("chunk"),
            pl.when(scored).then(pl.col("learner")).alias("learner_loss"),
            pl.when(scored).then(pl.col("reference")).alias("reference_loss"),
            pl.when(scored).then(pl.col("learner") - pl.col("reference")).alias("learnability"),
            pl.when(kept).then(pl.col("learner") - pl.col("reference")).alias("selection_score"),
        ).cast(schema)  # type: ignore[arg-type]
        frame.write_parquet(out / f"part-{part:05d}.parquet")
        part += 1
    truth = pl.DataFrame({"shard": [f"web-{s // PER_SHARD:06d}.tar" for s in range(pool)],
                          "key": [f"{s:09d}" for s in range(pool)],
                          "kind": [KINDS[s % len(KINDS)] for s in range(pool)]})
    truth.write_parquet(folder / "web_truth.parquet")
    (folder / "done").touch()


def consume(folder: Path, what: str) -> dict:
    """One consumer's work on the manifest in ``folder``; its seconds and peak RSS."""
    from jestfilter.data.manifest import read_manifest, scan_manifest
    from jestfilter.report.page import kept_by_kind
    from jestfilter.report.plots import score_histograms
    from jestfilter.results import manifest_counts
    from jestfilter.selection.criteria import CRITERIA
    from jestfilter.sinks.pool import choose_top, pool_table

    imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    truth = pl.read_parquet(folder / "web_truth.parquet")
    started = time.perf_counter()
    if what == "report":
        manifest = scan_manifest(folder)
        result = {"counts": manifest_counts(manifest)["decisions"], "bins": len(score_histograms(manifest)["columns"]),
                  "kinds": kept_by_kind(manifest, truth).height}
    elif what == "report-eager":
        manifest = read_manifest(folder)
        result = {"counts": manifest_counts(manifest)["decisions"], "bins": len(score_histograms(manifest)["columns"]),
                  "kinds": kept_by_kind(manifest, truth).height}
    elif what == "pool":
        pool = pool_table(scan_manifest(folder), CRITERIA["learnability"])
        top = choose_top(pool, 0.2, seed=0)
        result = {"pool": pool.height, "top": top.height}
    else:
        raise ValueError(what)
    return {**result, "seconds": time.perf_counter() - started, "imports_mb": imported,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--passes", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--eager-up-to", type=int, default=10_000_000, help="rows up to which to run the eager path")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "jestfilter-bench-manifest")
    parser.add_argument("--consume", nargs=2, metavar=("FOLDER", "WHAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        print(json.dumps(consume(Path(args.consume[0]), args.consume[1])))
        return
    print(f"pool {args.pool:,} samples, POLARS_MAX_THREADS={os.environ.get('POLARS_MAX_THREADS', 'all')}, "
          f"polars {pl.__version__}\n")
    print("| sample-passes | passes | on disk | consumer | seconds | peak RSS MB | of which imports |")
    print("|---:|---:|---:|---|---:|---:|---:|")
    for passes in args.passes:
        folder = args.data / f"pool{args.pool}-passes{passes}"
        started = time.perf_counter()
        write_manifest(folder, args.pool, passes)
        written = time.perf_counter() - started
        disk = sum(p.stat().st_size for p in (folder / "manifest.parquet").iterdir()) / 1e9
        rows = args.pool * passes
        for what in ("report", "pool", "report-eager"):
            if what == "report-eager" and rows > args.eager_up_to:
                continue
            done = subprocess.run([sys.executable, __file__, "--consume", str(folder), what], capture_output=True,
                                  text=True)
            if done.returncode:
                print(f"| {rows:,} | {passes} | {disk:.2f} GB | {what} | failed: {done.stderr.strip()[-200:]} | | |")
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| {rows:,} | {passes} | {disk:.2f} GB | {what} | {result['seconds']:.1f} | {result['peak_mb']:,.0f} "
                  f"| {result['imports_mb']:,.0f} |", flush=True)
        print(f"<!-- written in {written:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
