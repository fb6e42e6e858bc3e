"""What the benchmark scripts share: a mean ± sd over seeds."""

from __future__ import annotations

import math
import statistics


def mean_sd(values: list[float | None], digits: int = 3, empty: str = "–") -> str:
    """``mean ± sd`` of the finite values (None and ∞, e.g. a run already at its target before
    training, are left out); ``empty`` when none is left."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return empty
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"
