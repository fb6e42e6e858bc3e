"""The human report of a bootstrap run: PNG plots and a markdown page beside metrics.json."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
from PIL import Image  # noqa: E402

from jestfilter.sinks import ExtremesTracker  # noqa: E402


def plot_curves(runs: dict[str, dict], path: Path) -> Path:
    """Zero-shot top-1 against examples seen and against training+scoring FLOPs, one line a method."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, run in runs.items():
        curve = run.get("curve") or []
        if not curve:
            continue
        seen = [point[0] for point in curve]
        accuracy = [point[1] for point in curve]
        axes[0].plot(seen, accuracy, marker="o", markersize=3, label=name)
        flops = run.get("flops_curve") or []
        if flops:
            axes[1].plot([p[0] for p in flops], [p[1] for p in flops], marker="o", markersize=3, label=name)
    axes[0].set_xlabel("examples seen (trained on)")
    axes[1].set_xlabel("FLOPs (training + scoring)")
    axes[1].ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    for axis in axes:
        axis.set_ylabel("zero-shot top-1")
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_score_histograms(manifest: pl.DataFrame, path: Path) -> Path | None:
    """Each score the run computed (learnability, learner loss, reference loss) of kept vs
    dropped samples; a score the criterion never computed (null in the manifest) is left out."""
    scored = manifest.filter(pl.col("decision").is_in(["kept", "dropped"]))
    columns = [c for c in ("learnability", "learner_loss", "reference_loss")
               if c in scored.columns and scored[c].drop_nulls().drop_nans().len()]
    if not columns:
        return None
    fig, axes = plt.subplots(1, len(columns), figsize=(4.4 * len(columns), 3.6), squeeze=False)
    for axis, column in zip(axes[0], columns):
        for decision, colour in (("dropped", "tab:red"), ("kept", "tab:green")):
            values = scored.filter(pl.col("decision") == decision)[column].drop_nulls().drop_nans().to_numpy()
            if len(values):
                axis.hist(values, bins=50, alpha=0.55, color=colour, label=f"{decision} ({len(values)})")
        axis.set_title(column.replace("_", " "))
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_extremes(tracker: ExtremesTracker, path: Path) -> Path | None:
    """A grid: top row the most learnable examples, bottom row the least, with their captions."""
    rows = [("most learnable", tracker.most), ("least learnable", tracker.least)]
    columns = max(len(examples) for _, examples in rows)
    if columns == 0:
        return None
    fig, axes = plt.subplots(2, columns, figsize=(1.9 * columns, 4.8), squeeze=False)
    for row, (title, examples) in enumerate(rows):
        for column in range(columns):
            axis = axes[row][column]
            axis.axis("off")
            if column >= len(examples):
                continue
            example = examples[column]
            try:
                axis.imshow(Image.open(io.BytesIO(example.image_bytes)).convert("RGB"))
            except OSError:
                axis.text(0.5, 0.5, "unreadable", ha="center")
            caption = example.caption if len(example.caption) <= 28 else example.caption[:27] + "…"
            axis.set_title(f"{caption}\n{example.learnability:+.2f}", fontsize=7)
        axes[row][0].text(-0.1, 0.5, title, rotation=90, va="center", ha="right", transform=axes[row][0].transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def comparison_table(runs: dict[str, dict]) -> str:
    """A markdown table of the final numbers of every method trained in this run."""
    lines = [
        "| method | zero-shot top-1 | retrieval R@1 | examples seen | wall-clock s |",
        "|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        lines.append(
            f"| {name} | {run.get('zeroshot_top1', float('nan')):.3f} | {run.get('retrieval_r1', float('nan')):.3f} "
            f"| {run.get('examples_seen', 0):,} | {run.get('train_seconds', float('nan')):.0f} |"
        )
    return "\n".join(lines)


def kept_by_kind(manifest: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """For data with known noise kinds (the demo): each kind's share of the web data against its
    share of the examples the learner trained on (kept rows, counted with repeats)."""
    kinds = truth.select("key", "kind")
    web = kinds.group_by("kind").len("samples").with_columns(web_share=pl.col("samples") / pl.col("samples").sum())
    kept = (manifest.filter(pl.col("decision") == "kept").select("key").join(kinds, on="key")
            .group_by("kind").len("trained").with_columns(trained_share=pl.col("trained") / pl.col("trained").sum()))
    return (web.join(kept, on="kind", how="left").fill_null(0)
            .sort("trained_share", descending=True))


def write_report(out_dir: Path, metrics: dict, runs: dict[str, dict], manifest: pl.DataFrame | None,
                 tracker: ExtremesTracker | None, truth: Path | None = None) -> Path:
    """Writes report.md and its PNGs under out_dir/report/; returns the page's path."""
    report_dir = Path(out_dir) / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    parts = ["# jestfilter bootstrap report", ""]
    reference = metrics.get("reference", {})
    if reference:
        parts += [f"Reference model: zero-shot top-1 **{reference.get('zeroshot_top1', float('nan')):.3f}**, "
                  f"retrieval R@1 {reference.get('retrieval_r1', float('nan')):.3f}.", ""]
    parts += ["## Final models", "", comparison_table(runs), ""]
    parts += ["## Learning curves", "", f"![curves]({plot_curves(runs, report_dir / 'curves.png').name})", ""]
    if manifest is not None:
        counts = manifest.group_by("decision").len().sort("decision")
        parts += ["## What happened to the web samples", "", "| decision | samples |", "|---|---|"]
        parts += [f"| {row['decision']} | {row['len']:,} |" for row in counts.iter_rows(named=True)]
        reasons = manifest.filter(pl.col("decision") == "rejected").group_by("reason").len().sort("len", descending=True)
        if reasons.height:
            parts += ["", "| rejected because | samples |", "|---|---|"]
            parts += [f"| {row['reason']} | {row['len']:,} |" for row in reasons.iter_rows(named=True)]
        if truth is not None and truth.exists():
            parts += ["", "Known kinds of the demo's web data (`web_truth.parquet`): each kind's share of the web "
                      "data and of the examples the main method trained on.", "",
                      "| kind | web samples | share of web | share of training examples |", "|---|---|---|---|"]
            parts += [f"| {row['kind']} | {row['samples']:,} | {row['web_share']:.1%} | {row['trained_share']:.1%} |"
                      for row in kept_by_kind(manifest, pl.read_parquet(truth)).iter_rows(named=True)]
        histogram = plot_score_histograms(manifest, report_dir / "scores.png")
        if histogram:
            parts += ["", "## Scores of kept and dropped samples", "", f"![scores]({histogram.name})"]
    if tracker is not None:
        grid = plot_extremes(tracker, report_dir / "extremes.png")
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
    parts = [f"# jestfilter bootstrap in {len(metrics['rounds'])} rounds", "",
             "Round k + 1's reference is round k's final model.", "",
             "| round | reference zero-shot | final zero-shot | final retrieval R@1 | examples seen | learner FLOPs "
             "| final better than its reference |", "|---|---|---|---|---|---|---|"]
    for s in metrics["rounds"]:
        parts.append(f"| [{s['round']}](../{s['folder']}/report/report.md) | {s['reference']['zeroshot_top1']:.3f} "
                     f"| {s['final']['zeroshot_top1']:.3f} | {s['final']['retrieval_r1']:.3f} "
                     f"| {s['final']['examples_seen']:,} | {s['final']['flops']:.3g} | {'yes' if s['improved'] else 'no'} |")
    if metrics.get("stopped_early"):
        parts += ["", f"Stopped early: {metrics['stopped_early']}."]
    curves = plot_curves({f"round {k}": final for k, final in finals.items()}, report_dir / "rounds.png")
    parts += ["", "## Each round's final model", "", f"![rounds]({curves.name})"]
    page = report_dir / "report.md"
    page.write_text("\n".join(parts) + "\n")
    return page
