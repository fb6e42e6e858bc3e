"""What the benchmark scripts share: their seed arguments and a mean ± sd over seeds."""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path


def mean_sd(values: list[float | None], digits: int = 3, empty: str = "–") -> str:
    """``mean ± sd`` of the finite values (None and ∞, e.g. a run already at its target before
    training, are left out); ``empty`` when none is left."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return empty
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def seeds_parser(doc: str, out: str, tiny: str) -> argparse.ArgumentParser:
    """The arguments every multi-seed benchmark takes: ``--out`` (a Path), ``--seeds`` (0 1 2)
    and ``--tiny`` (help ``tiny``); ``doc``'s first line describes the script."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tiny", action="store_true", help=tiny)
    return parser
