"""The human report of a bootstrap run: a markdown page with PNG plots beside metrics.json.

It answers "did it help, by how much, at what cost": plain-words comparisons, a cost table,
learning curves against examples, FLOPs and wall-clock seconds, what happened to the web data,
the scores of kept and dropped samples, and the most and least learnable examples.
"""

from jestfilter.report.page import kept_by_kind, write_report, write_rounds_report

__all__ = ["kept_by_kind", "write_report", "write_rounds_report"]
