"""The kinds of web sample the demo builds, and the names of the suite's sets (plain Python, so
the CLI can show them without loading the builder). Everything but "clean" is noise."""

NOISE_KINDS = ["mismatched", "uninformative", "junk_image", "duplicate", "partial"]
# Default weights of the noisy part of the demo's web split:
DEFAULT_MIX = {"mismatched": 0.35, "uninformative": 0.2, "junk_image": 0.15, "duplicate": 0.1, "partial": 0.2}
# The validation suite's sets (jestfilter.datasets.demo.SETS), the demo first.
SET_NAMES = ["fashion", "digits", "symbols", "clipart"]
