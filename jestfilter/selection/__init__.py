"""Joint example selection (JEST): score a super-batch with a learner and a reference model and
choose the sub-batch to train on. Pure torch: no files, no models."""

from jestfilter.selection.outputs import Selection, SiglipOutputs
from jestfilter.selection.selector import Selector

__all__ = ["Selection", "Selector", "SiglipOutputs"]
