"""The report's markdown page: plain-words comparisons, tables and the plots' places."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from jestfilter.report.plots import plot_curated_curve, plot_curves, plot_extremes, plot_score_histograms
from jestfilter.results import (break_even_lines, curated_pairs, decision_counts, kept_per_sample, reference_behind,
                                with_kind)
from jestfilter.sinks import ExtremesTracker
from jestfilter.studies import curve_at


def sooner(ratio: float) -> str:
    """``2.5`` → "2.5× sooner", ``0.5`` → "2.0× later"."""
    if ratio == float("inf"):
        return "at once"
    if ratio == 0:
        return "later (uniform was there at the start)"
    return f"{ratio:.1f}× sooner" if ratio >= 1 else f"{1 / ratio:.1f}× later"


def stalled_warnings(models: dict[str, dict]) -> list[str]:
    """A loud line for every model that did not learn (``stalled``), for the top of the page."""
    return [f"> **WARNING: {name} did not learn** ({model.get('stalled_reason', 'stalled')}); its numbers say "
            f"nothing about the method, and nothing is compared against it." for name, model in models.items()
            if model.get("stalled")]


def comparisons(metrics: dict, runs: dict[str, dict]) -> list[str]:
    """One sentence (or two) per compared method, in plain words."""
    main = metrics["final"]["method"]
    top1 = {m: run["zeroshot_top1"] for m, run in runs.items()}
    lines = []
    if runs.get("uniform", {}).get("stalled") and main != "uniform":
        lines.append(f"**{main}** ended at {top1[main]:.3f} zero-shot top-1; uniform sampling stalled "
                     f"({top1['uniform']:.3f}), so no gain or speed-up over it is claimed.")
    elif "uniform" in runs and main != "uniform":
        lines.append(f"**{main}** ended at {top1[main]:.3f} zero-shot top-1, {100 * (top1[main] - top1['uniform']):+.1f} "
                     f"points against uniform sampling's {top1['uniform']:.3f}.")
        at = metrics.get("speedup", {}).get(main, {})
        if at.get("reached"):
            lines[-1] += (f" It reached uniform's final accuracy after {at['examples']:,.0f} examples: "
                          f"{sooner(at['examples_ratio'])} than uniform in examples, {sooner(at['seconds_ratio'])} "
                          f"in wall-clock time (loading, scoring and selection included) and "
                          f"{sooner(at['flops_ratio'])} in FLOPs; counting the reference's one-off training and "
                          f"embedding pass, {sooner(at['seconds_ratio_with_reference'])} in time and "
                          f"{sooner(at['flops_ratio_with_reference'])} in FLOPs.")
        else:
            lines[-1] += " It never reached uniform's final accuracy."
    for method, value in top1.items():
        if method in (main, "uniform"):
            continue
        if value > top1[main]:
            lines.append(f"**{method}** ended {100 * (value - top1[main]):.1f} points above {main} ({value:.3f} "
                         f"against {top1[main]:.3f}): in this run the baseline beat the main method.")
        else:
            lines.append(f"{main} ended {100 * (top1[main] - value):.1f} points above **{method}** ({top1[main]:.3f} "
                         f"against {value:.3f}).")
    reference = metrics.get("reference", {}).get("zeroshot_top1")
    if reference is not None:
        verb = "beat" if top1[main] > reference else "did not beat"
        lines.append(f"The learner {verb} its reference ({top1[main]:.3f} against {reference:.3f}).")
    behind = reference_behind(metrics.get("reference", {}), runs, main)
    if behind:
        lines.append(f"**Note:** {behind[0].upper()}{behind[1:]}")
    return lines


def curated_curve(metrics: dict, runs: dict[str, dict], report_dir: Path) -> list[str]:
    """Where this run sits on the bootstrapping study's curated-size curve, when the study
    measured its curated set's size; nothing otherwise."""
    reference = metrics.get("reference", {})
    pairs = curated_pairs(reference)
    curves = curve_at(pairs)
    if not curves:
        return []
    gain = None  # the study's gain is learnability's over uniform, whichever arm is the run's main one
    if "learnability" in runs and "uniform" in runs:
        gain = 100 * (runs["learnability"]["zeroshot_top1"] - runs["uniform"]["zeroshot_top1"])
    lines = ["## Where this run sits on the curated-size curve", ""]
    for name, curve in curves.items():
        cell = min(curve, key=lambda c: abs(c["curated"] - pairs))
        lines.append(f"- The bootstrapping study measured {cell['curated']:,} curated pairs on its `{name}` set "
                     f"({cell['steps']} learner steps, {cell['reference']['n']} seeds): reference "
                     f"{cell['reference']['mean']:.3f} ± {cell['reference']['sd']:.3f}, JEST − uniform "
                     f"{cell['gain']['mean']:+.1f} ± {cell['gain']['sd']:.1f} points, learnability − easy_reference "
                     f"{cell['over_easy']['mean']:+.1f} ± {cell['over_easy']['sd']:.1f}.")
    this = f"JEST − uniform {gain:+.1f} points" if gain is not None else "no learnability and uniform arms to compare"
    plot = plot_curated_curve(curves, report_dir / "curated_curve.png", pairs, reference.get("zeroshot_top1"), gain)
    lines += [f"- This run ({pairs:,} curated pairs): reference {reference['zeroshot_top1']:.3f}, {this}. Another "
              "data set sits on its own curve; the study's shows how the gain moves with the curated set's size.",
              "", f"![curated-size curve]({plot.name})", ""]
    return lines


def comparison_table(runs: dict[str, dict]) -> str:
    """The final numbers of every method trained in this run."""
    lines = ["| method | zero-shot top-1 | class R@1 | retrieval R@1 | examples trained on | passes over the web "
             "| s/step |", "|---|---|---|---|---|---|---|"]
    for name, run in runs.items():
        passes = run.get("web_passes")
        lines.append(f"| {name} | {run['zeroshot_top1']:.3f} | {run.get('retrieval_class_r1', float('nan')):.3f} "
                     f"| {run.get('retrieval_r1', float('nan')):.3f} | {run.get('examples_seen', 0):,} "
                     f"| {'–' if passes is None else f'{passes:.1f}'} | {run.get('seconds_per_step', float('nan')):.3f} |")
    return "\n".join(lines)


def cost_table(metrics: dict, runs: dict[str, dict]) -> str:
    """What each part of the run cost, the reference's one-off costs on their own lines."""
    cost = metrics.get("costs")
    if not cost:
        return ""
    lines = ["| cost | FLOPs | seconds |", "|---|---|---|",
             f"| reference training | {cost['reference_training_flops']:.3g} | {cost['reference_training_seconds']:.0f} |",
             f"| reference embedding pass over the web | {cost['reference_embedding_flops']:.3g} "
             f"| {cost['reference_embedding_seconds']:.0f} |"]
    for method, run in runs.items():
        lines.append(f"| {method}: learner loading, scoring and training | {run['flops']:.3g} | {run['train_seconds']:.0f} |")
        lines.append(f"| **{method}: total** (with the reference where it uses it) | {cost['total_flops'][method]:.3g} "
                     f"| {cost['total_seconds'][method]:.0f} |")
    steps = metrics.get("config", {}).get("train", {}).get("steps", 0)
    lines += ["", *[f"- {line}." for line in break_even_lines(cost.get("break_even", {}), steps)]]
    return "\n".join(lines)


def kept_by_kind(manifest: pl.LazyFrame | pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """For data with known noise kinds (the demo): each kind's share of the web data against its
    share of the examples the learner trained on (kept sample-passes, counted with repeats).
    The manifest is read a chunk at a time (``kept_per_sample``)."""
    web = truth.group_by("kind").len("samples").with_columns(web_share=pl.col("samples") / pl.col("samples").sum())
    kept = (with_kind(kept_per_sample(manifest), truth).group_by("kind").agg(pl.col("kept").sum().alias("trained"))
            .with_columns(trained_share=pl.col("trained") / pl.col("trained").sum()))
    return (web.join(kept, on="kind", how="left").fill_null(0)
            .sort("trained_share", descending=True))


def web_data(manifest: pl.LazyFrame | pl.DataFrame, data: dict, truth: pl.DataFrame | None) -> list[str]:
    """What happened to the web samples: every row is one sample in one pass. The counts come
    from ``data`` (``manifest_counts``, computed once for metrics.json) when it has them."""
    if "decisions" not in data:
        data = {**decision_counts(manifest), **data}
    parts = ["## What happened to the web samples", "",
             "Every web sample has one manifest row per pass over the web data, so these count sample-passes.", "",
             "| decision | sample-passes |", "|---|---|"]
    parts += [f"| {decision} | {rows:,} |" for decision, rows in sorted(data["decisions"].items())]
    if data.get("dropped_counted_not_recorded"):
        parts += ["", f"`--manifest kept`: {data['dropped_counted_not_recorded']:,} dropped sample-passes were counted "
                  "per shard in `filtered/dropped.parquet/`, not recorded row by row."]
    if "unique_kept" in data:
        parts += ["", f"{data['unique_kept']:,} distinct samples were trained on at least once."]
    filtered = data.get("filtered")
    if filtered:
        parts += ["", f"`filtered/` holds {filtered['written']:,} of the {filtered['pool']:,} web samples read "
                  f"({filtered['fraction']:.1%}), chosen by the rule `{filtered['rule']}` (`--filtered-rule`)."]
        if "by_kind" in filtered:
            parts += ["", "| kind | share of the web samples read | share of `filtered/` |", "|---|---|---|"]
            parts += [f"| {kind} | {v['pool_share']:.1%} | {v['written_share']:.1%} |"
                      for kind, v in filtered["by_kind"].items()]
    reasons = sorted([(rows, decision, reason) for decision in ("rejected", "dropped")
                      for reason, rows in data.get(f"{decision}_by_reason", {}).items()], reverse=True)
    if reasons:
        parts += ["", "| decision | reason | sample-passes |", "|---|---|---|"]
        parts += [f"| {decision} | {reason} | {rows:,} |" for rows, decision, reason in reasons]
    if truth is not None:
        parts += ["", "Known kinds of the demo's web data (`web_truth.parquet`): each kind's share of the web "
                  "data and of the examples the main method trained on.", "",
                  "| kind | web samples | share of web | share of training examples |", "|---|---|---|---|"]
        parts += [f"| {row['kind']} | {row['samples']:,} | {row['web_share']:.1%} | {row['trained_share']:.1%} |"
                  for row in kept_by_kind(manifest, truth).iter_rows(named=True)]
    return parts


def write_report(out_dir: Path, metrics: dict, runs: dict[str, dict], manifest: pl.LazyFrame | pl.DataFrame | None,
                 tracker: ExtremesTracker | None, truth: Path | None = None) -> Path:
    """Writes report.md and its PNGs under out_dir/report/; returns the page's path. The manifest
    is best given lazily (``scan_manifest``): only aggregates of it are ever held in memory."""
    report_dir = Path(out_dir) / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    truth_table = pl.read_parquet(truth) if truth is not None and Path(truth).exists() else None
    reference = metrics.get("reference", {})
    config = metrics.get("config", {}).get("train", {})
    parts = ["# jestfilter bootstrap report", "",
             f"One run, seed {config.get('seed', '?')}, {metrics.get('seconds', 0) / 60:.1f} minutes in all: "
             "differences between methods of a few points are within the spread between seeds "
             "(`docs/benchmarks.md` has it over several seeds).", ""]
    warnings = stalled_warnings({"the reference": reference, **runs})
    if warnings:
        parts += [*warnings, ""]
    parts += ["## Did it help, and at what cost?", "", *[f"- {line}" for line in comparisons(metrics, runs)], ""]
    if reference:
        parts += [f"Reference model: zero-shot top-1 **{reference.get('zeroshot_top1', float('nan')):.3f}**, "
                  f"class R@1 {reference.get('retrieval_class_r1', float('nan')):.3f}.", ""]
    parts += curated_curve(metrics, runs, report_dir)
    parts += ["## Final models", "", comparison_table(runs), ""]
    table = cost_table(metrics, runs)
    if table:
        parts += ["## Costs", "", table, ""]
    curves = plot_curves(runs, report_dir / "curves.png", reference.get("zeroshot_top1"))
    parts += ["## Learning curves", "", "The dashed line is the reference's accuracy.", "",
              f"![curves]({curves.name})", ""]
    if manifest is not None:
        parts += web_data(manifest, metrics.get("data", {}), truth_table)
        histogram = plot_score_histograms(manifest, report_dir / "scores.png")
        if histogram:
            parts += ["", "## Scores of kept and dropped samples", "",
                      "Each example's own-pair scores in nats, early and late in training.", "",
                      f"![scores]({histogram.name})"]
    if tracker is not None:
        kinds = dict(truth_table.select("key", "kind").iter_rows()) if truth_table is not None else None
        grid = plot_extremes(tracker, report_dir / "extremes.png", kinds)
        if grid:
            parts += ["", "## Most and least learnable examples", "", f"![extremes]({grid.name})"]
    page = report_dir / "report.md"
    page.write_text("\n".join(parts) + "\n")
    return page


def write_rounds_report(out_dir: Path, metrics: dict, finals: dict[int, dict]) -> Path:
    """``out_dir/report/report.md`` for ``--rounds``: the rounds side by side, each round's final
    model's learning curve, and links to every round's own report."""
    report_dir = Path(out_dir) / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    stalled = stalled_warnings({f"round {s['round']}'s {role}": s[role] for s in metrics["rounds"]
                                for role in ("reference", "final")})
    parts = [f"# jestfilter bootstrap in {len(metrics['rounds'])} rounds", "", *stalled, *([""] if stalled else []),
             "Round k + 1's reference is round k's final model.", "",
             "| round | reference zero-shot | final zero-shot | final class R@1 | examples seen | learner FLOPs "
             "| final better than its reference |", "|---|---|---|---|---|---|---|"]
    for s in metrics["rounds"]:
        parts.append(f"| [{s['round']}](../{s['folder']}/report/report.md) | {s['reference']['zeroshot_top1']:.3f} "
                     f"| {s['final']['zeroshot_top1']:.3f} | {s['final'].get('retrieval_class_r1', float('nan')):.3f} "
                     f"| {s['final']['examples_seen']:,} | {s['final']['flops']:.3g} | {'yes' if s['improved'] else 'no'} |")
    if metrics.get("stopped_early"):
        parts += ["", f"Stopped early: {metrics['stopped_early']}."]
    curves = plot_curves({f"round {k}": final for k, final in finals.items()}, report_dir / "rounds.png")
    parts += ["", "## Each round's final model", "", f"![rounds]({curves.name})"]
    page = report_dir / "report.md"
    page.write_text("\n".join(parts) + "\n")
    return page
