"""The report's PNG plots (matplotlib, files only)."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
from PIL import Image  # noqa: E402

from jestfilter.sinks import ExtremesTracker  # noqa: E402

# Okabe & Ito's palette: told apart under every common colour-vision deficiency.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
KEPT, DROPPED = "#0072B2", "#E69F00"
SCORES = {"learnability": "learnability (learner − reference loss)", "learner_loss": "learner loss",
          "reference_loss": "reference loss"}


def plot_curves(runs: dict[str, dict], path: Path, reference: float | None = None) -> Path:
    """Zero-shot top-1 against examples seen, learner FLOPs and wall-clock seconds, one line a
    method; the reference's accuracy as a dashed line."""
    axes_of = [("curve", "examples trained on"), ("flops_curve", "learner FLOPs (training + scoring)"),
               ("time_curve", "wall-clock seconds (loading, scoring, training)")]
    fig, axes = plt.subplots(1, len(axes_of), figsize=(15, 4.2))
    for (name, run), colour in zip(runs.items(), PALETTE * 2):
        for axis, (curve, _) in zip(axes, axes_of):
            points = run.get(curve) or []
            if points:
                axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=name,
                          color=colour)
    for axis, (_, label) in zip(axes, axes_of):
        if reference is not None:
            axis.axhline(reference, color="#555555", linestyle="--", linewidth=1, label="reference")
        axis.set_xlabel(label)
        axis.set_ylabel("zero-shot top-1")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[1].ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    return _save(fig, path)


def plot_curated_curve(curves: dict[str, list[dict]], path: Path, curated: int, reference: float | None,
                       gain: float | None) -> Path:
    """The bootstrapping study's curves against curated-set size (log axis), one colour a set:
    the reference's accuracy (left) and JEST's gain over uniform in points (right), mean ± sd
    over seeds; this run's reference and gain as black stars at its curated size."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    measured = sorted({c["curated"] for curve in curves.values() for c in curve} | ({curated} if curated else set()))
    for (name, curve), colour in zip(curves.items(), PALETTE):
        sizes = [c["curated"] for c in curve]
        for axis, key in ((left, "reference"), (right, "gain")):
            axis.errorbar(sizes, [c[key]["mean"] for c in curve], yerr=[c[key]["sd"] for c in curve],
                          marker="o", capsize=3, color=colour, label=f"{name} ({curve[0]['steps']} learner steps)")
    for axis, value, label in ((left, reference, "reference zero-shot top-1"),
                               (right, gain, "JEST − uniform (points)")):
        if value is not None:
            axis.plot([curated], [value], marker="*", markersize=14, color="black", linestyle="none", label="this run")
        axis.set_xscale("log")
        axis.set_xticks(measured, [f"{size:,}" for size in measured])  # the sizes measured, not log-axis labels
        axis.minorticks_off()
        axis.set_xlabel("curated pairs")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return _save(fig, path)


BINS = 50


def score_histograms(manifest: pl.LazyFrame | pl.DataFrame, bins: int = BINS) -> dict | None:
    """What ``plot_score_histograms`` draws, as small tables: for each score the run computed,
    ``bins`` equal bins over its range and the kept and dropped sample-passes in each, early in
    training (the first fifth of the steps) and late (the last fifth). Aggregated lazily by
    polars' streaming engine: two passes over the manifest, a few kB of memory whatever its size.
    None when no score was computed."""
    scored = manifest.lazy().filter(pl.col("decision").is_in(["kept", "dropped"]))
    names = [c for c in SCORES if c in scored.collect_schema().names()]
    finite = {c: pl.col(c).filter(pl.col(c).is_finite()) for c in names}
    ranges = scored.select(pl.col("step").max().alias("last"),
                           *[e.min().alias(f"{c}_min") for c, e in finite.items()],
                           *[e.max().alias(f"{c}_max") for c, e in finite.items()],
                           *[e.len().alias(f"{c}_n") for c, e in finite.items()])
    ranges = ranges.collect(engine="streaming").row(0, named=True)
    columns = [c for c in names if ranges[f"{c}_n"]]
    if not columns or ranges["last"] is None:
        return None
    last = ranges["last"]
    phase = (pl.when(pl.col("step") < 0.2 * (last + 1)).then(pl.lit("early"))
             .when(pl.col("step") >= 0.8 * (last + 1)).then(pl.lit("late")).otherwise(None).alias("phase"))
    tables, edges = {}, {}
    for column in columns:
        low, high = ranges[f"{column}_min"], ranges[f"{column}_max"]
        width = (high - low) / bins if high > low else 1.0
        edges[column] = [low + i * width for i in range(bins + 1)]
        index = ((pl.col(column) - low) / width).floor().clip(0, bins - 1).cast(pl.Int32).alias("bin")
        tables[column] = (scored.filter(pl.col(column).is_finite()).select("decision", "step", index, phase)
                          .filter(pl.col("phase").is_not_null())
                          .group_by("phase", "decision", "bin").agg(pl.len().alias("count"),
                                                                   pl.col("step").min().alias("first"),
                                                                   pl.col("step").max().alias("last"))
                          .collect(engine="streaming"))
    return {"columns": columns, "edges": edges, "tables": tables}


def plot_score_histograms(manifest: pl.LazyFrame | pl.DataFrame, path: Path) -> Path | None:
    """Each score the run computed, kept against dropped, early in training (the first fifth of
    the steps) and late (the last fifth) apart; a score the criterion never computed (null in
    the manifest) is left out. ``manifest`` is best a LazyFrame (``scan_manifest``): only the
    histograms' counts are held (``score_histograms``)."""
    histograms = score_histograms(manifest)
    if histograms is None:
        return None
    columns, edges, tables = histograms["columns"], histograms["edges"], histograms["tables"]
    fig, axes = plt.subplots(2, len(columns), figsize=(4.6 * len(columns), 6.6), squeeze=False)
    for row, phase in enumerate(("early", "late")):
        for axis, column in zip(axes[row], columns):
            rows = tables[column].filter(pl.col("phase") == phase)
            steps = f"steps {rows['first'].min()}–{rows['last'].max()}" if rows.height else "no steps"
            centres = [(a + b) / 2 for a, b in zip(edges[column], edges[column][1:])]
            for decision, colour in (("dropped", DROPPED), ("kept", KEPT)):
                counts = [0] * len(centres)
                for bin_index, count in rows.filter(pl.col("decision") == decision).select("bin", "count").iter_rows():
                    counts[bin_index] = count
                if sum(counts):
                    axis.hist(centres, bins=edges[column], weights=counts, alpha=0.6, color=colour,
                              label=f"{decision} ({sum(counts):,})")
            axis.set_title(f"{SCORES[column]}, {phase} ({steps})", fontsize=9)
            axis.set_xlabel("own-pair score (nats)")
            axis.set_ylabel("sample-passes")
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=8)
    return _save(fig, path)


def plot_extremes(tracker: ExtremesTracker, path: Path, kinds: dict[str, str] | None = None) -> Path | None:
    """A grid: top row the most learnable examples, bottom row the least, with their whole
    captions, learnability (nats) and, where known (the demo), the kind of noise."""
    rows = [("most learnable", tracker.most), ("least learnable", tracker.least)]
    columns = max(len(examples) for _, examples in rows)
    if columns == 0:
        return None
    fig, axes = plt.subplots(2, columns, figsize=(2.1 * columns, 6.2), squeeze=False)
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
            lines = textwrap.wrap(example.caption, 22) + [f"{example.learnability:+.2f} nats"]
            if kinds and example.key in kinds:
                lines.append(f"[{kinds[example.key]}]")
            axis.set_title("\n".join(lines), fontsize=7)
        axes[row][0].text(-0.1, 0.5, title, rotation=90, va="center", ha="right", transform=axes[row][0].transAxes)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
