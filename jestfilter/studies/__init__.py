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

STUDY = Path(__file__).with_name("bootstrapping.json")
CHEAPER = {"learnability": "easy_reference"}  # a method → the learner-free one it was measured against


@cache
def cells() -> tuple[dict, ...]:
    """The published study's cells (none when nothing was published)."""
    return tuple(json.loads(STUDY.read_text())["cells"]) if STUDY.exists() else ()


def curve_at(curated_pairs: int | None) -> dict[str, list[dict]]:
    """{set: its curated-size curve (its cells by size at one learner length, the length with
    the most sizes)} for each set whose study measured ``curated_pairs`` curated pairs (within
    2 %); {} for a size none measured."""
    found: dict[str, list[dict]] = {}
    for cell in cells():
        if curated_pairs and abs(cell["curated"] - curated_pairs) <= 0.02 * cell["curated"]:
            curve = [c for c in cells() if c["set"] == cell["set"] and c["steps"] == cell["steps"]]
            if len(curve) > len(found.get(cell["set"], [])):
                found[cell["set"]] = sorted(curve, key=lambda c: c["curated"])
    return found


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
        quoted.append(f"{name} {min(means):+.1f} to {max(means):+.1f} points over {len(at)} curated size(s) at "
                      f"{length} × {at[0]['batch_size']}")
    return (f"note: in runs this long or longer the bootstrapping study measured {method} no better than {cheaper} "
            f"(no learner scoring): {'; '.join(quoted)}, 3 seeds a cell (docs/benchmarks.md). "
            f"--method {cheaper} or `jestfilter select` should do as well for less; {method} runs as asked.")
