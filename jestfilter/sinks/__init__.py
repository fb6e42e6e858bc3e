"""Where a selection goes: every step's chosen samples and scores are handed to a sink.

A sink has ``record(batch, selection, step, unscored=())``, ``state_dict()`` /
``load_state_dict()`` (so a checkpoint can hold its position) and ``close()``. The training
loop, bootstrap and the offline jobs only talk to that interface, so a new kind of output
(another format, a list of uids) is one new class here, and ``Sinks`` puts several behind one:
``FilteredOutput`` is the filtered shards and manifest (``FilteredShards``, with rule ``top``'s
post-pass, ``TopPass``) and the report's extremes (``Extremes``). The names below are imported on
first use, so the rules (``jestfilter.sinks.rules``) can be read without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jestfilter.lazy import lazy_names

if TYPE_CHECKING:
    from jestfilter.sinks.compose import Sink, Sinks
    from jestfilter.sinks.extremes import Example, Extremes, ExtremesTracker
    from jestfilter.sinks.pool import read_pool, scan_pool
    from jestfilter.sinks.filtered import FilteredOutput, FilteredShards
    from jestfilter.sinks.top import TopPass

__all__ = ["Example", "Extremes", "ExtremesTracker", "FilteredOutput", "FilteredShards", "Sink", "Sinks", "TopPass",
           "read_pool", "scan_pool"]
_WHERE = {
    **dict.fromkeys(("Sink", "Sinks"), "compose"),
    **dict.fromkeys(("Example", "Extremes", "ExtremesTracker"), "extremes"),
    **dict.fromkeys(("FilteredOutput", "FilteredShards"), "filtered"),
    **dict.fromkeys(("read_pool", "scan_pool"), "pool"),
    **dict.fromkeys(("TopPass",), "top"),
}

__getattr__ = lazy_names(__name__, _WHERE)
