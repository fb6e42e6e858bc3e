"""Which samples bootstrap's ``filtered/`` holds when the web data is read in several passes
(applied by ``jestfilter.sinks.pool``, ``jestfilter.sinks.filtered`` and ``jestfilter.sinks.top``)."""

from __future__ import annotations

FILTERED_RULES = {
    "first-pass": "the samples chosen while the web data was read the first time, about (1−f) of it",
    "top": "the (1−f) of the web samples read with the highest mean score over the passes (e.g. learnability)",
    "all": "every sample chosen in any pass (several passes: far more than 1−f)",
}
