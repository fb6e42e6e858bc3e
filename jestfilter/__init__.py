"""jestfilter: bootstrap image-text data quality with JEST (joint example selection)."""

from jestfilter.selection import Selection, Selector, SiglipOutputs

__version__ = "0.1.0"

__all__ = ["Selection", "Selector", "SiglipOutputs", "__version__"]
