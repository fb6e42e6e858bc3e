"""Training checkpoints: model, optimiser, schedule, step and extra state.

``training_state`` / ``restore_training_state`` turn the objects into one dict of tensors and
primitives (so it loads with ``torch.load(weights_only=True)``) and back; the pipeline can
store that dict beside the data plane's state. ``save_checkpoint`` / ``load_checkpoint`` do the
same through a file written atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def training_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    step: int = 0,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to resume training; ``extra`` holds tensors and primitives only."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "step": int(step),
        "extra": extra or {},
    }


def restore_training_state(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> tuple[int, dict[str, Any]]:
    """Load ``state`` into the given objects; return (step, extra)."""
    model.load_state_dict(state["model"])
    for name, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        if target is not None:
            if state[name] is None:
                raise ValueError(f"checkpoint holds no {name} state")
            target.load_state_dict(state[name])
    return state["step"], state["extra"]


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    step: int = 0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``training_state(...)`` to ``path``; a crash leaves the previous file intact."""
    # Imported here: the jestfilter.data package pulls in webdataset and polars, which a
    # training loop without checkpoints (or a GPU benchmark) does not need.
    from jestfilter.data.atomic import atomic_torch_save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(path, training_state(model, optimizer, scheduler, step, extra))
    return path


def load_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> tuple[int, dict[str, Any]]:
    """Restore what ``save_checkpoint`` wrote into the given objects; return (step, extra)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = torch.load(path, map_location=model.logit_scale.device, weights_only=True)
    return restore_training_state(state, model, optimizer, scheduler)
