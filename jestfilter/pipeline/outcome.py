"""4. A finished run's numbers (``metrics.json``), report and summary lines (rank 0)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import polars as pl
import torch

from jestfilter.data import atomic_write_json
from jestfilter.data.manifest import scan_dropped_counts, scan_manifest
from jestfilter.pipeline.job import Job
from jestfilter.report import write_report
from jestfilter.results import (break_even, break_even_lines, costs, filtered_counts, filtered_line, manifest_counts,
                                pool_size, reference_behind, speedups, summary_table)
from jestfilter.sinks import ExtremesTracker, scan_pool


def report(job: Job, reference_metrics: dict, runs: dict[str, dict], embedding: dict, pool: int | None,
           seconds: float) -> dict:
    """Write ``metrics.json`` and the report; print the summary. Returns the metrics."""
    cfg, layout, main = job.cfg, job.layout, job.arms.main.name
    filtered = layout.filtered
    manifest, dropped = scan_manifest(filtered), scan_dropped_counts(filtered)  # read lazily
    for run in runs.values():  # passes over the web pool (before a whole pass: over the samples cached)
        run["web_passes"] = run["passes"] if run["passes"] is not None or not pool else run["rows_read"] / pool
    cost = costs(runs, reference_metrics, embedding, {arm.name: arm.needs_reference for arm in job.arms.all})
    truth = job.inputs.truth
    counts = filtered_counts(scan_pool(filtered), cfg.filtered_rule,
                             pl.read_parquet(truth) if truth is not None else None,
                             pool_size(manifest, dropped) if dropped is not None else None)
    speedup = speedups(runs, cost)
    cost["break_even"] = break_even(runs, cost, speedup)
    metrics = {
        "reference": {**reference_metrics, "web_passes": 0.0},  # trained on the curated data
        "final": runs[main],
        "compare": {m: r for m, r in runs.items() if m != main},
        "costs": cost,
        "speedup": speedup,
        "data": {**manifest_counts(manifest, dropped, scan_pool(filtered)), "filtered": counts},
        "config": asdict(cfg),
        "seconds": seconds,
    }
    atomic_write_json(layout.metrics, metrics)
    page = write_report(layout.out, metrics, runs, manifest, read_extremes(layout.extremes), truth=truth)
    print(summary_table(runs, metrics["speedup"]))
    behind = reference_behind(reference_metrics, runs, main)
    if behind:
        print(f"WARNING: {behind}")
    print("\n".join(break_even_lines(cost["break_even"], cfg.train.steps)))
    print(filtered_line(counts))
    print(f"report: {page}")
    return metrics


def read_extremes(path: Path) -> ExtremesTracker | None:
    """The most and least learnable examples the run kept for the report, if it kept any."""
    if not path.exists():
        return None
    tracker = ExtremesTracker()
    tracker.load_state_dict(torch.load(path, weights_only=True))
    return tracker
