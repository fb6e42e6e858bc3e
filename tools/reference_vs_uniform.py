"""JEST follows its reference: over every finished bootstrap with a uniform arm under the given
folders (the suite's and the bootstrapping study's runs) whose uniform arm learned, JEST −
uniform against reference − uniform, binned by how far the reference ended below uniform, and behind references under
twice chance. The end-of-run note (``jestfilter.results.reference_behind``) and the warning at
start (``jestfilter.train.stall.weak_reference``) quote these counts.

    python tools/reference_vs_uniform.py runs/suite-lr1e-3 runs/bootstrapping
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jestfilter.results import BEHIND_UNIFORM, reference_behind
from jestfilter.train.stall import WEAK_REFERENCE_FACTOR, weak_reference
from _stats import mean_sd  # noqa: E402  (tools/ is on sys.path when run as a script)


def runs_with_uniform(roots: list[Path]) -> list[dict]:
    """Per bootstrap under ``roots`` whose main arm is learnability and whose uniform arm learned
    (nothing is claimed against a stalled one; a rounds run's rounds are left out), in points
    against uniform: JEST's gain, easy_reference's (None: not compared), and whether the run's
    own checks call its reference behind uniform or weak."""
    found = []
    for root in roots:
        for path in sorted(root.rglob("metrics.json")):
            metrics = json.loads(path.read_text())
            runs = {metrics.get("final", {}).get("method"): metrics.get("final"), **metrics.get("compare", {})}
            uniform, reference = runs.get("uniform"), metrics.get("reference", {})
            if not uniform or uniform.get("stalled") or "learnability" not in runs or "round-" in str(path):
                continue
            easy = runs.get("easy_reference")
            found.append({"gain": 100 * (runs["learnability"]["zeroshot_top1"] - uniform["zeroshot_top1"]),
                          "easy": 100 * (easy["zeroshot_top1"] - uniform["zeroshot_top1"]) if easy else None,
                          "behind": reference_behind(reference, runs, "learnability") is not None,
                          "weak": weak_reference(reference.get("zeroshot_top1"), reference.get("chance")) is not None})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", type=Path, nargs="+")
    found = runs_with_uniform(parser.parse_args().roots)
    print("| reference − uniform | runs | JEST ahead of uniform | JEST − uniform, mean ± sd (min, max) "
          "| easy_reference − uniform |")
    print("|---|---|---|---|---|")
    for label, rows in ((f"at most {BEHIND_UNIFORM:g} points below (or above)", [r for r in found if not r["behind"]]),
                        (f"more than {BEHIND_UNIFORM:g} points below", [r for r in found if r["behind"]]),
                        (f"any; the reference under {WEAK_REFERENCE_FACTOR:g}× chance", [r for r in found if r["weak"]])):
        gains = [r["gain"] for r in rows]
        print(f"| {label} | {len(gains)} | {sum(g > 0 for g in gains)} | {mean_sd(gains, 1)} "
              f"({min(gains):+.1f}, {max(gains):+.1f}) | {mean_sd([r['easy'] for r in rows], 1)} |")


if __name__ == "__main__":
    main()
