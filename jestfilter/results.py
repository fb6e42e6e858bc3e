"""The numbers a bootstrap run reports: what happened to the web data and how much sooner each
method reached the uniform baseline's final accuracy."""

from __future__ import annotations

import polars as pl


def manifest_counts(manifest: pl.DataFrame) -> dict:
    """Kept / dropped / rejected counts, and rejections and unscored drops by reason."""
    counts = {row["decision"]: row["len"] for row in manifest.group_by("decision").len().iter_rows(named=True)}

    def by_reason(decision: str) -> dict:
        rows = manifest.filter(manifest["decision"] == decision, manifest["reason"].is_not_null())
        return {row["reason"]: row["len"] for row in rows.group_by("reason").len().iter_rows(named=True)}

    return {"rows": manifest.height, "decisions": counts, "rejected_by_reason": by_reason("rejected"),
            "dropped_by_reason": by_reason("dropped"),  # short_super_batch under torchrun
            "unique_kept": manifest.filter(manifest["decision"] == "kept")["key"].n_unique()}


def examples_to_reach(run: dict, target: float) -> tuple[float, float] | None:
    """(examples seen, seconds) at the first evaluation where ``run`` reaches ``target``."""
    for (seen, top1), (seconds, _) in zip(run["curve"], run["time_curve"]):
        if top1 >= target:
            return seen, seconds
    return None


def speedups(runs: dict[str, dict]) -> dict:
    """How much sooner each method reaches uniform's final zero-shot accuracy (examples and time)."""
    if "uniform" not in runs:
        return {}
    uniform = runs["uniform"]
    target = uniform["zeroshot_top1"]
    result = {}
    for method, run in runs.items():
        reached = examples_to_reach(run, target)
        if reached is None:
            result[method] = {"reached": False}
            continue
        seen, seconds = reached
        result[method] = {"reached": True, "examples": seen, "seconds": seconds,
                          "examples_ratio": seen / max(1, uniform["examples_seen"]),
                          "time_ratio": seconds / max(1e-9, uniform["train_seconds"])}
    return result


def summary_table(runs: dict[str, dict], speedup: dict) -> str:
    lines = ["", f"{'method':16s} {'zero-shot':>9s} {'R@1':>6s} {'examples':>9s} {'s/step':>7s} {'reach uniform':>14s}"]
    for method, run in runs.items():
        reach = speedup.get(method, {})
        reached = f"{reach['examples_ratio']:.2f}x ex" if reach.get("reached") else ("-" if not reach else "never")
        lines.append(f"{method:16s} {run['zeroshot_top1']:9.3f} {run['retrieval_r1']:6.3f} "
                     f"{run['examples_seen']:9d} {run['seconds_per_step']:7.3f} {reached:>14s}")
    return "\n".join(lines)

