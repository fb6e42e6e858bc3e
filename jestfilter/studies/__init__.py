"""What the project's own bootstrapping study measured, shipped as data that runs quote.

``bootstrapping.json`` is written by ``tools/bench_bootstrapping.py --publish`` (its tables are in
docs/benchmarks.md, "Data-quality bootstrapping, measured"): a list of cells, one per set,
curated-set size and learner length, each with the seeds it averages and, as {mean, sd, n}, the
reference's, uniform's, easy_reference's and learnability's zero-shot top-1 and the paired
differences learnability − uniform (``gain``) and learnability − easy_reference (``over_easy``),
in points. A run reads it to say where it sits on the curated-size curve (the report) and when
a learner-free criterion measured as good as the one asked for (the plan, at start).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Iterable

STUDY = Path(__file__).with_name("bootstrapping.json")
CHEAPER = {"learnability": "easy_reference"}  # a method → the learner-free one it was measured against


@cache
def cells() -> tuple[dict, ...]:
    """The published study's cells (none when nothing was published)."""
    return tuple(json.loads(STUDY.read_text())["cells"]) if STUDY.exists() else ()


def longest_curves(starts: Iterable[dict], among: Iterable[dict]) -> dict[str, list[dict]]:
    """{set: its curated-size curve through any of the cells ``starts``}: the cells of ``among``
    of that set at that cell's learner length, by size, the length with the most sizes winning."""
    among = tuple(among)
    found: dict[str, list[dict]] = {}
    for cell in starts:
        curve = [c for c in among if c["set"] == cell["set"] and c["steps"] == cell["steps"]]
        if len(curve) > len(found.get(cell["set"], [])):
            found[cell["set"]] = sorted(curve, key=lambda c: c["curated"])
    return found


def curve_at(curated_pairs: int | None) -> dict[str, list[dict]]:
    """``longest_curves`` through the cells that measured ``curated_pairs`` curated pairs (within
    2 %); {} for a size none measured."""
    if not curated_pairs:
        return {}
    return longest_curves((c for c in cells() if abs(c["curated"] - curated_pairs) <= 0.02 * c["curated"]), cells())


def trained_examples(cell: dict) -> int:
    """The examples a cell's learner trained on (steps × batch)."""
    return cell["steps"] * cell["batch_size"]


def criterion_note(method: str, steps: int, batch_size: int) -> str | None:
    """The plan's note when, on every set measured, the shortest measured learner run of at
    least ``steps`` × ``batch_size`` examples found ``method`` no better than the learner-free
    criterion it was measured against (learnability − easy_reference not above its own sd in
    any cell there); None when a set was never measured that long or found ``method`` ahead."""
    cheaper = CHEAPER.get(method)
    by_set: dict[str, list[dict]] = {cell["set"]: [] for cell in cells()}
    for cell in cells():
        if trained_examples(cell) >= steps * batch_size:
            by_set[cell["set"]].append(cell)
    if cheaper is None or not by_set or not all(by_set.values()):
        return None  # nothing measured, or a set never measured this long: the study does not speak for it
    quoted = []
    for name, found in sorted(by_set.items()):
        length = min(c["steps"] for c in found)  # the cells of one set share their batch size
        at = [c for c in found if c["steps"] == length]
        if any(c["over_easy"]["mean"] > c["over_easy"]["sd"] for c in at):
            return None
        means = [c["over_easy"]["mean"] for c in at]
        seeds = min(c["over_easy"]["n"] for c in at)
        span = f"{means[0]:+.1f} points at 1 curated size" if len(at) == 1 else \
            f"{min(means):+.1f} to {max(means):+.1f} points over {len(at)} curated sizes"
        quoted.append(f"{name} {span} at {length} × {at[0]['batch_size']}, {seeds}+ seeds a cell, none beyond its sd")
    return (f"note: in runs this long or longer the bootstrapping study measured {method} no better than {cheaper} "
            f"(no learner scoring): {'; '.join(quoted)} (docs/benchmarks.md). "
            f"--method {cheaper} or `jestfilter select` should do as well for less; {method} runs as asked.")
