"""Joint example selection (JEST): score a super-batch with a learner and a reference model and
choose the sub-batch to train on. Pure torch: no files, no models.

The names below are imported on first use, so ``jestfilter.selection.criteria`` (the table of
criteria, plain Python) can be read without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jestfilter.selection.outputs import Selection, SiglipOutputs
    from jestfilter.selection.selector import Selector

__all__ = ["Selection", "Selector", "SiglipOutputs"]
_WHERE = {"Selection": "outputs", "SiglipOutputs": "outputs", "Selector": "selector"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"jestfilter.selection.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'jestfilter.selection' has no attribute {name!r}")
