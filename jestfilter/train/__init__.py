"""Training building blocks: optimiser and schedule, the SigLIP (and Flexi) step, checkpoints."""

from jestfilter.train.checkpoint import load_checkpoint, save_checkpoint
from jestfilter.train.optim import lr_factor, make_optimizer, make_scheduler
from jestfilter.train.step import MAX_LOGIT_SCALE, flexi_embed, train_step

__all__ = [
    "MAX_LOGIT_SCALE",
    "flexi_embed",
    "load_checkpoint",
    "lr_factor",
    "make_optimizer",
    "make_scheduler",
    "save_checkpoint",
    "train_step",
]
