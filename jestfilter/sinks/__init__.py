"""Where a selection goes: every step's chosen samples and scores are handed to a sink.

A sink has ``record(batch, selection, step, unscored=())``, ``state_dict()`` /
``load_state_dict()`` (so a checkpoint can hold its position) and ``close()``. The training
loop, bootstrap and the offline jobs only talk to that interface, so a new kind of output
(another format, a list of uids) is one new class here.
"""

from jestfilter.sinks.extremes import Example, ExtremesTracker
from jestfilter.sinks.filtered import FilteredOutput, Sink
from jestfilter.sinks.pool import read_pool, scan_pool

__all__ = ["Example", "ExtremesTracker", "FilteredOutput", "Sink", "read_pool", "scan_pool"]
