"""Training checkpoints: model, optimiser, schedule, step and extra state.

``training_state`` / ``restore_training_state`` turn the objects into one dict of tensors and
primitives (so it loads with ``torch.load(weights_only=True)``) and back. ``save_checkpoint`` /
``load_checkpoint`` do the same through a file written atomically (temporary file, then
``os.replace``); ``RunCheckpoint`` adds the data plane's state and torchrun's ranks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from jestfilter.distributed import World, barrier, gather_objects


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


class RunCheckpoint:
    """A training run's checkpoint: the state every rank shares (model, optimiser, schedule,
    history) and each rank's own (its stream position and output sink).

    One process: both in one file, ``path``. Under torchrun each rank first writes its own part,
    ``<stem>.rank-RRRRR.step-SSSSSSSSS<suffix>``, then rank 0 the shared file, then the parts of
    the step before go: a crash at any point leaves a shared file whose step every rank still
    has a part for.
    """

    def __init__(self, path: str | os.PathLike, world: World):
        self.path, self.world = Path(path), world

    def part(self, step: int) -> Path:
        p = self.path
        return p.with_name(f"{p.stem}.rank-{self.world.rank:05d}.step-{step:09d}{p.suffix}")

    def save(self, shared: dict[str, Any], own: dict[str, Any]) -> None:
        from jestfilter.data.atomic import atomic_torch_save

        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.world.size == 1:
            atomic_torch_save(self.path, {**shared, "own": own})
            return
        step = shared["step"]
        atomic_torch_save(self.part(step), own)
        barrier(self.world)
        if self.world.main:
            atomic_torch_save(self.path, shared)
        barrier(self.world)
        for old in self.path.parent.glob(f"{self.path.stem}.rank-{self.world.rank:05d}.step-*{self.path.suffix}"):
            if old != self.part(step):
                old.unlink()

    def remove(self) -> None:
        """Delete the checkpoint and every rank's part (call once, after the run's outputs are written)."""
        for path in [self.path, *self.path.parent.glob(f"{self.path.stem}.rank-*.step-*{self.path.suffix}")]:
            path.unlink(missing_ok=True)

    def load(self, device: torch.device) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(shared, own), or None on a fresh start."""
        if not self.path.exists():
            return None
        shared = torch.load(self.path, map_location=device, weights_only=True)
        if self.world.size == 1:
            return shared, shared.pop("own")
        part = self.part(shared["step"])
        own = torch.load(part, weights_only=True) if part.exists() else None
        missing = [p for p in gather_objects(self.world, None if own else str(part)) if p]
        if missing:
            raise ValueError(f"cannot resume: {missing[0]} is missing (was the job started with another "
                             "number of ranks?)")
        return shared, own
