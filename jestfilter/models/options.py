"""The model side's names, as data: the default model, the ``local-dir:`` prefix of a model
folder, the pixel normalisations of a new model (``jestfilter.models.normalise``)."""

from __future__ import annotations

LOCAL_DIR = "local-dir:"  # open_clip's prefix of a model folder (a plain folder path works too)
# jest-tiny (7-px patches, 16 tokens a 28-px image) learns more than jest-tiny-p4 (4-px, 49 tokens)
# in the same steps on every set of the validation suite, by 3 to 14 points (docs/benchmarks.md);
# p4 leaves Flexi's coarse view 16 tokens where jest-tiny's has 4
DEFAULT_MODEL = "jest-tiny"
PIXEL_NORMS = ("data", "half", "clip")  # how a new model normalises its pixels
