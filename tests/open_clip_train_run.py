"""open_clip_train's own training entry point on our shards: the check that a folder we write
is a dataset other tools train on (sample count from our sizes.json, images and captions by
open_clip_train's webdataset pipeline)."""

from __future__ import annotations

import logging
from pathlib import Path


def train_one_epoch(shards: list[str], model_dir: Path, logs: Path, batch_size: int = 8) -> Path:
    """Train ``local-dir:model_dir`` for one epoch on ``shards`` with ``open_clip_train.main``
    (SigLIP, CPU, fp32); returns the checkpoint it wrote."""
    from open_clip_train.main import main

    levels = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    root_level, handlers = logging.root.level, list(logging.root.handlers)
    try:
        main(["--train-data", "::".join(shards), "--dataset-type", "webdataset", "--model", f"local-dir:{model_dir}",
              "--siglip", "--batch-size", str(batch_size), "--epochs", "1", "--workers", "1", "--device", "cpu",
              "--precision", "fp32", "--zeroshot-frequency", "0", "--report-to", "", "--logs", str(logs),
              "--name", "run", "--lr", "1e-3", "--warmup", "1", "--save-frequency", "1"])
    finally:  # open_clip_train sets every logger to INFO and adds root handlers: undo that
        for handler in set(logging.root.handlers) - set(handlers):
            logging.root.removeHandler(handler)
            handler.close()
        logging.root.setLevel(root_level)
        for name in logging.root.manager.loggerDict:
            logging.getLogger(name).setLevel(levels.get(name, logging.NOTSET))
    return logs / "run" / "checkpoints" / "epoch_1.pt"
