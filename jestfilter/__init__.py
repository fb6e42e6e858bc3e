"""jestfilter: bootstrap image-text data quality with JEST (joint example selection).

``Selector``, ``Selection`` and ``SiglipOutputs`` are imported on first use, so that the
command line (``jestfilter --help``) starts without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jestfilter.selection import Selection, Selector, SiglipOutputs

__version__ = "0.1.0"

__all__ = ["Selection", "Selector", "SiglipOutputs", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Selection", "Selector", "SiglipOutputs"):
        return getattr(importlib.import_module("jestfilter.selection"), name)
    raise AttributeError(f"module 'jestfilter' has no attribute {name!r}")
