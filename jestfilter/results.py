"""The numbers a bootstrap run reports: what happened to the web data and how much sooner each
method reached the uniform baseline's final accuracy."""

from __future__ import annotations

import polars as pl

from jestfilter.data.manifest import DROPPED, KEPT, REJECTED, reduce_in_chunks


def decision_counts(manifest: pl.LazyFrame | pl.DataFrame, dropped: pl.LazyFrame | None = None) -> dict:
    """Kept / dropped / rejected sample-passes and rejections and unscored drops by reason,
    aggregated lazily by polars' streaming engine (memory stays flat however many rows the
    manifest has). ``dropped``: a ``--manifest kept`` run's counts of the drops it did not
    record (``scan_dropped_counts``), added in."""
    groups = manifest.lazy().group_by("decision", "reason").agg(pl.len().cast(pl.Int64).alias("rows"))
    if dropped is not None:
        groups = pl.concat([groups, dropped.select(pl.lit(DROPPED).alias("decision"), "reason", "rows")])
    table = groups.group_by("decision", "reason").agg(pl.col("rows").sum()).collect(engine="streaming")
    counts = {row["decision"]: row["rows"] for row in table.group_by("decision").agg(pl.col("rows").sum())
              .iter_rows(named=True)}

    def by_reason(decision: str) -> dict:
        found = table.filter(pl.col("decision") == decision, pl.col("reason").is_not_null())
        return {row["reason"]: row["rows"] for row in found.iter_rows(named=True)}

    result = {"rows": sum(counts.values()), "decisions": counts, "rejected_by_reason": by_reason(REJECTED),
              "dropped_by_reason": by_reason(DROPPED)}  # short_super_batch under torchrun
    if dropped is not None:
        result["dropped_counted_not_recorded"] = int(dropped.select(pl.col("rows").sum()).collect().item() or 0)
    return result


def kept_per_sample(manifest: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """(source_shard, key, kept): how many passes kept each sample kept at least once, read a
    chunk at a time (``reduce_in_chunks``): memory grows with the samples, not the passes."""
    return reduce_in_chunks(manifest.lazy(), ["source_shard", "key"], [pl.len().alias("kept")],
                            [pl.col("kept").sum()], prepare=lambda rows: rows.filter(pl.col("decision") == KEPT))


def manifest_counts(manifest: pl.LazyFrame | pl.DataFrame, dropped: pl.LazyFrame | None = None,
                    pool: pl.LazyFrame | None = None) -> dict:
    """``decision_counts`` and the distinct samples kept: counted from the run's ``pool`` table
    (``scan_pool``: its samples chosen at least once, nothing held) when given, else from the
    manifest (memory: one entry per distinct kept sample)."""
    if pool is not None:
        unique = pool.filter(pl.col("chosen") > 0).select(pl.len()).collect(engine="streaming").item()
    else:
        unique = kept_per_sample(manifest).height
    return {**decision_counts(manifest, dropped), "unique_kept": unique}


def pool_size(manifest: pl.LazyFrame, dropped: pl.LazyFrame | None = None) -> int:
    """Distinct samples read unrejected, from the first pass's rows (every later pass reads the
    same pool again): what the pool table counts, also for a ``--manifest kept`` run."""
    first = manifest.lazy().filter(pl.col("pass") == 0, pl.col("decision").is_in([KEPT, DROPPED]))
    read = first.select(pl.len()).collect(engine="streaming").item()
    if dropped is not None:
        read += int(dropped.filter(pl.col("pass") == 0).select(pl.col("rows").sum()).collect().item() or 0)
    return read


def with_kind(rows: pl.DataFrame | pl.LazyFrame, truth: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    """``rows`` (``source_shard``, ``key``, ...) with the demo's noise ``kind`` of each sample
    from ``web_truth.parquet``, matched on (shard file name, key): keys repeat across shards."""
    kinds = truth.select(pl.col("shard").alias("shard_name"), "key", "kind")
    named = rows.with_columns(pl.col("source_shard").str.split("/").list.last().alias("shard_name"))
    return named.join(kinds, on=["shard_name", "key"], how="left").drop("shard_name")


def filtered_counts(pool: pl.DataFrame | pl.LazyFrame, rule: str, truth: pl.DataFrame | None = None,
                    pool_samples: int | None = None) -> dict:
    """What ``filtered/`` holds against the pool it was chosen from (``jestfilter.sinks.read_pool``):
    the unique fraction written and, with the demo's ``web_truth.parquet``, each kind's share
    of the web pool and of the written samples. ``pool_samples``: the pool's size when the
    table lists only the samples chosen (``--manifest kept``: ``pool_size``); each kind's pool
    share then comes from the whole web data in ``truth``."""
    pool = pool.lazy()
    sizes = pool.select(pl.len().alias("pool"), pl.col("output_shard").is_not_null().sum().alias("written"))
    sizes = sizes.collect(engine="streaming").row(0, named=True)  # counted as it is read: nothing held
    size = sizes["pool"] if pool_samples is None else pool_samples
    counts = {"rule": rule, "pool": size, "written": sizes["written"], "fraction": sizes["written"] / max(1, size)}
    if truth is not None:  # the demo's: its pool is small
        pool = pool.collect()
        written = pool.filter(pl.col("output_shard").is_not_null())
        def share(frame: pl.DataFrame) -> dict[str, float]:
            by_kind = with_kind(frame, truth).group_by("kind").len()
            return {row["kind"]: row["len"] / max(1, frame.height) for row in by_kind.iter_rows(named=True)}

        pool_share = share(pool) if pool_samples is None else {
            row["kind"]: row["len"] / truth.height for row in truth.group_by("kind").len().iter_rows(named=True)}
        written_share = share(written)
        counts["by_kind"] = {kind: {"pool_share": pool_share[kind], "written_share": written_share.get(kind, 0.0)}
                             for kind in sorted(pool_share, key=str)}
    return counts


def filtered_line(counts: dict) -> str:
    """``filtered_counts`` in one line for the terminal."""
    line = (f"filtered/: {counts['written']:,} of the {counts['pool']:,} web samples read "
            f"({counts['fraction']:.1%}, rule {counts['rule']})")
    if "by_kind" in counts:
        line += "; by kind, written (pool): " + ", ".join(
            f"{kind} {v['written_share']:.0%} ({v['pool_share']:.0%})" for kind, v in counts["by_kind"].items())
    return line


def reach(run: dict, target: float) -> dict[str, float] | None:
    """Examples, FLOPs and seconds at which ``run``'s zero-shot curve first reaches ``target``,
    interpolated linearly between the two evaluations around the crossing (None: never)."""
    accuracy = [top1 for _, top1 in run["curve"]]
    for k, top1 in enumerate(accuracy):
        if top1 >= target:
            frac = 0.0 if k == 0 else (target - accuracy[k - 1]) / (top1 - accuracy[k - 1])
            at = {}
            for name, curve in (("examples", "curve"), ("flops", "flops_curve"), ("seconds", "time_curve")):
                x = [point[0] for point in run[curve]]
                at[name] = x[k] if k == 0 else x[k - 1] + frac * (x[k] - x[k - 1])
            return at
    return None


def costs(runs: dict[str, dict], reference: dict, embedding: dict, needs_reference: dict[str, bool]) -> dict:
    """The one-off reference costs on their own lines (training: ``reference``'s summary;
    embedding the web pool: ``embedding`` with ``flops`` and ``seconds``) and each method's total
    FLOPs and seconds: its learner's scoring, training and loading, plus the one-off costs where
    the method scores with the reference."""
    training = {"flops": reference.get("flops", 0.0), "seconds": reference.get("train_seconds", 0.0)}
    result = {f"reference_{part}_{unit}": value for part, cost in (("training", training), ("embedding", embedding))
              for unit, value in cost.items()}
    for unit, own in (("flops", "flops"), ("seconds", "train_seconds")):
        one_off = training[unit] + embedding[unit]
        result[f"total_{unit}"] = {m: run[own] + (one_off if needs_reference[m] else 0.0) for m, run in runs.items()}
    return result


def speedups(runs: dict[str, dict], cost: dict | None = None) -> dict:
    """How much sooner each method reaches uniform's final zero-shot accuracy: uniform's
    examples, FLOPs and seconds to get there over the method's (interpolated; > 1 is faster).
    ``flops_ratio`` and ``seconds_ratio`` count the learner's loading, scoring and training;
    the ``..._with_reference`` ratios add the method's one-off reference costs (from ``cost``,
    what ``costs`` returns). Against a stalled uniform run nothing is claimed: every method's
    entry says ``baseline_stalled``."""
    if "uniform" not in runs:
        return {}
    if runs["uniform"].get("stalled"):
        return {method: {"reached": False, "baseline_stalled": True} for method in runs}
    target = runs["uniform"]["zeroshot_top1"]
    baseline = reach(runs["uniform"], target)
    result = {}
    for method, run in runs.items():
        at = reach(run, target)
        if at is None:
            result[method] = {"reached": False}
            continue
        ratio = {f"{name}_ratio": _ratio(baseline[name], at[name]) for name in at}
        for unit, own in (("flops", "flops"), ("seconds", "train_seconds")):
            one_off = cost[f"total_{unit}"][method] - run[own] if cost else 0.0
            ratio[f"{unit}_ratio_with_reference"] = _ratio(baseline[unit], at[unit] + one_off)
        result[method] = {"reached": True, **at, **ratio}
    return result


def break_even(runs: dict[str, dict], cost: dict, speedup: dict) -> dict:
    """For each method that uses the reference and reached uniform's final accuracy: the learner
    steps after which its seconds saved repay the reference's one-off seconds (training and
    embedding the web pool), and with a reused reference (rounds, a second ``--reference``
    run: the embedding pass only; a reused cache too: nothing).

    A method reaches a given accuracy after 1/r of uniform's examples (r: its examples ratio
    here); each of its steps costs j seconds against uniform's u, so each of its steps saves
    r·u − j seconds, and the one-off R is repaid after R / (r·u − j) steps (None: its steps
    cost more than the examples they save, never repaid). Estimated from this run's length."""
    if "uniform" not in runs:
        return {}
    u = runs["uniform"]["seconds_per_step"]
    result = {}
    for method, run in runs.items():
        one_off = cost["total_seconds"][method] - run["train_seconds"]
        at = speedup.get(method, {})
        if method == "uniform" or not one_off or not at.get("reached"):
            continue
        saving = at["examples_ratio"] * u - run["seconds_per_step"]
        embedding = cost["reference_embedding_seconds"]
        result[method] = {"one_off_seconds": one_off, "saving_per_step_seconds": saving,
                          "learner_steps": one_off / saving if saving > 0 else None,
                          "learner_steps_reused_reference": embedding / saving if saving > 0 else None}
    return result


def break_even_lines(even: dict, steps: int) -> list[str]:
    """``break_even`` in words, one line per method."""
    lines = []
    for method, row in even.items():
        if row["learner_steps"] is None:
            lines.append(f"break-even ({method}): never: its steps cost more than the examples they save "
                         f"({-row['saving_per_step_seconds']:.3f} s a step more than uniform for the same progress)")
            continue
        lines.append(f"break-even ({method}): the reference's {row['one_off_seconds']:.0f} s (training and "
                     f"embedding) are repaid after ~{row['learner_steps']:,.0f} learner steps (this run: {steps:,}); "
                     f"with a reused reference, after ~{row['learner_steps_reused_reference']:,.0f} (the embedding "
                     f"pass only), and at once with its cache too")
    return lines


def _ratio(baseline: float, value: float) -> float:
    return baseline / value if value else float("inf")


BEHIND_UNIFORM = 5.0  # points: behind a reference this far below uniform's final, JEST mostly lost to uniform
# what tools/reference_vs_uniform.py counted over the suite's and the bootstrapping study's runs (docs/benchmarks.md)
BEHIND_UNIFORM_SEEN = ("lost to uniform in 13 of the project's 16 measured runs (and beat it in 28 of the 29 whose "
                       "reference was at most 5 points below)")


def reference_behind(reference: dict, runs: dict[str, dict], main: str) -> str | None:
    """A note when the reference ended more than ``BEHIND_UNIFORM`` points below the uniform
    arm's final accuracy (a uniform that learned, beside the main method ``main``); None
    otherwise. JEST selects what its reference finds learnable: a reference worse than plain
    training on the web data has little to teach it."""
    uniform = runs.get("uniform")
    top1 = reference.get("zeroshot_top1")
    if main == "uniform" or not uniform or uniform.get("stalled") or top1 is None:
        return None
    gap = 100 * (uniform["zeroshot_top1"] - top1)
    if gap <= BEHIND_UNIFORM:
        return None
    return (f"the reference ended {gap:.1f} points below uniform ({top1:.3f} against {uniform['zeroshot_top1']:.3f}): "
            f"JEST selects what its reference finds learnable, and behind references this far below uniform it "
            f"{BEHIND_UNIFORM_SEEN} (docs/benchmarks.md). More or cleaner curated pairs make a better reference.")


def summary_table(runs: dict[str, dict], speedup: dict) -> str:
    lines = ["", f"{'method':22s} {'zero-shot':>9s} {'class R@1':>9s} {'examples':>9s} {'s/step':>7s} "
                 f"{'sooner (examples, time)':>24s}"]
    for method, run in runs.items():
        at = speedup.get(method, {})
        sooner = (f"{at['examples_ratio']:.2f}x, {at['seconds_ratio']:.2f}x" if at.get("reached")
                  else "- (uniform stalled)" if at.get("baseline_stalled") else ("-" if not at else "never"))
        lines.append(f"{method:22s} {run['zeroshot_top1']:9.3f} {run.get('retrieval_class_r1', float('nan')):9.3f} "
                     f"{run['examples_seen']:9d} {run['seconds_per_step']:7.3f} {sooner:>24s}"
                     + ("  STALLED" if run.get("stalled") else ""))
    return "\n".join(lines)



def round_summary(k: int, metrics: dict) -> dict:
    """One round of ``--rounds``: its reference and final model's numbers, its learner's cost,
    and whether the final model beat its reference (zero-shot top-1)."""
    quality = ("zeroshot_top1", "retrieval_r1", "retrieval_class_r1", "stalled", "stalled_reason")
    reference, final = metrics["reference"], metrics["final"]
    return {"round": k, "folder": f"round-{k}",
            "reference": {key: reference[key] for key in quality if key in reference},
            "final": {**{key: final[key] for key in quality if key in final},
                      "examples_seen": final["examples_seen"], "flops": final["flops"]},
            "reference_training_flops": reference.get("flops", 0.0),  # 0: a reused reference (rounds ≥ 2)
            "improved": final["zeroshot_top1"] > reference["zeroshot_top1"]}


def rounds_table(summaries: list[dict]) -> str:
    lines = ["", f"{'round':6s} {'reference':>9s} {'final':>7s} {'R@1':>6s} {'examples':>9s} {'FLOPs':>9s}  better"]
    for s in summaries:
        lines.append(f"{s['round']:<6d} {s['reference']['zeroshot_top1']:9.3f} {s['final']['zeroshot_top1']:7.3f} "
                     f"{s['final']['retrieval_r1']:6.3f} {s['final']['examples_seen']:9d} "
                     f"{s['final']['flops']:9.2e}  {'yes' if s['improved'] else 'no'}")
    return "\n".join(lines)


def curated_pairs(reference: dict) -> int | None:
    """Pairs in the curated set the reference was trained on (None for a reused reference, or
    one that never finished a pass)."""
    if not reference.get("passes") or not reference.get("rows_read"):
        return None
    return round(reference["rows_read"] / reference["passes"])
