"""jestfilter: bootstrap image-text data quality with JEST (joint example selection)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
