"""Is a run learning? A run is *stalled* when, a third of the way through, its zero-shot
accuracy is still within 1.5× chance or its training loss has not fallen, or when it ends
within 1.5× chance. Such a run says so loudly, and nothing is claimed against it."""

from __future__ import annotations

from statistics import fmean

STALL_FACTOR = 1.5  # accuracy ≤ this × chance counts as not learning
CHECK_AT = 1 / 3  # share of the steps after which the first verdict is given
LOSS_WINDOW = 50  # steps averaged at each end of the loss record
WEAK_REFERENCE_FACTOR = 2.0  # a reference below this × chance mostly selected worse than uniform
# what tools/reference_vs_uniform.py counted over the suite's and the bootstrapping study's runs (docs/benchmarks.md)
WEAK_REFERENCE_SEEN = "lost to uniform in 8 of the project's 10 measured runs, by up to 52 points"


def not_learning(top1: float | None, chance: float | None, losses: list[float]) -> str | None:
    """Why a run with accuracy ``top1`` (None: not evaluated) and training ``losses`` so far is
    not learning (None: it is)."""
    if top1 is not None and chance is not None and top1 <= STALL_FACTOR * chance:
        return f"zero-shot {top1:.3f} is within {STALL_FACTOR}× chance ({chance:.3f})"
    window = min(LOSS_WINDOW, len(losses) // 4)
    if window >= 5:
        first, last = fmean(losses[:window]), fmean(losses[-window:])
        if last >= first:
            return f"its loss has not fallen ({first:.3f} over its first {window} steps, {last:.3f} over its last)"
    return None


def due(step: int, steps: int) -> bool:
    """Whether the evaluation after ``step`` of ``steps`` gives the first verdict."""
    return step >= CHECK_AT * steps


def warning(name: str, step: int, steps: int, reason: str) -> str:
    return (f"WARNING: {name} is not learning: after {step} of {steps} steps {reason}. Check the data (are "
            f"captions and images paired? is the eval set's classnames.txt right?) and the recipe (--lr, --model); "
            f"its results are marked stalled and no speed-up is claimed against it.")


def verdict(metrics: dict) -> dict:
    """``stalled`` (and why) for a model that was evaluated, not trained here (a reused reference)."""
    reason = not_learning(metrics.get("zeroshot_top1"), metrics.get("chance"), [])
    return {"stalled": reason is not None, **({"stalled_reason": reason} if reason else {})}


def weak_reference(top1: float | None, chance: float | None) -> str | None:
    """A warning for a reference too weak to select with (zero-shot under 2× chance), else None.
    Behind such references JEST lost to uniform in most of the project's measured runs
    (``WEAK_REFERENCE_SEEN``); the user's method is kept, the run only says so."""
    if top1 is None or chance is None or top1 >= WEAK_REFERENCE_FACTOR * chance:
        return None
    return (f"WARNING: the reference's zero-shot accuracy {top1:.3f} is under {WEAK_REFERENCE_FACTOR:g}× chance "
            f"({chance:.3f}): behind references this weak JEST {WEAK_REFERENCE_SEEN} (docs/benchmarks.md). Train it "
            "longer or on more curated data, or check it against --compare uniform.")
