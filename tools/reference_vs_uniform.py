"""JEST follows its reference: over every finished bootstrap with a uniform arm under the given
folders (the suite's and the bootstrapping study's runs), JEST − uniform against reference −
uniform, binned by how far the reference ended below uniform, and behind references under
twice chance. The end-of-run note (``jestfilter.results.reference_behind``) and the warning at
start (``jestfilter.train.stall.weak_reference``) quote these counts.

    python tools/reference_vs_uniform.py runs/suite-lr1e-3 runs/bootstrapping
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jestfilter.results import BEHIND_UNIFORM
from jestfilter.train.stall import WEAK_REFERENCE_FACTOR
from _stats import mean_sd  # noqa: E402  (tools/ is on sys.path when run as a script)


def pairs(roots: list[Path]) -> list[tuple[float, float, float | None, bool]]:
    """(reference − uniform, JEST − uniform, easy_reference − uniform (None: not compared) in
    points, whether the reference was under twice chance) for every bootstrap whose main arm is
    learnability and that compared uniform; a rounds run's rounds are left out."""
    found = []
    for root in roots:
        for path in sorted(root.rglob("metrics.json")):
            metrics = json.loads(path.read_text())
            uniform = metrics.get("compare", {}).get("uniform")
            if not uniform or metrics.get("final", {}).get("method") != "learnability" or "round-" in str(path):
                continue
            top1, reference = uniform["zeroshot_top1"], metrics["reference"]
            easy = metrics["compare"].get("easy_reference")
            found.append((100 * (reference["zeroshot_top1"] - top1), 100 * (metrics["final"]["zeroshot_top1"] - top1),
                          100 * (easy["zeroshot_top1"] - top1) if easy else None,
                          reference["zeroshot_top1"] < WEAK_REFERENCE_FACTOR * reference["chance"]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", type=Path, nargs="+")
    found = pairs(parser.parse_args().roots)
    print("| reference − uniform | runs | JEST ahead of uniform | JEST − uniform, mean ± sd (min, max) "
          "| easy_reference − uniform |")
    print("|---|---|---|---|---|")
    for label, test in ((f"at most {BEHIND_UNIFORM:g} points below (or above)", lambda gap, _: gap >= -BEHIND_UNIFORM),
                        (f"more than {BEHIND_UNIFORM:g} points below", lambda gap, _: gap < -BEHIND_UNIFORM),
                        (f"any; the reference under {WEAK_REFERENCE_FACTOR:g}× chance", lambda _, weak: weak)):
        rows = [row for row in found if test(row[0], row[3])]
        gains = [gain for _, gain, _, _ in rows]
        print(f"| {label} | {len(gains)} | {sum(g > 0 for g in gains)} | {mean_sd(gains, 1)} "
              f"({min(gains):+.1f}, {max(gains):+.1f}) | {mean_sd([easy for _, _, easy, _ in rows], 1)} |")


if __name__ == "__main__":
    main()
