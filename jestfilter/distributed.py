"""Running under torchrun: the process group, this rank's place in it, and the few exchanges
the training loop and the pipeline need. With one process every helper is a no-op, so the
same code runs unchanged with or without torchrun.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist

from jestfilter.data.atomic import WriteFailed
from jestfilter.data.lock import RUN_LOCK, FolderLock, LockHeld

TIMEOUT_ENV = "JESTFILTER_DIST_TIMEOUT"  # seconds a rank waits for the others before failing
DEFAULT_TIMEOUT = 1800


@dataclass(frozen=True)
class World:
    """This process's rank and the number of ranks (1 without torchrun)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def group(self):
        """The process group for collectives (None with one process)."""
        return dist.group.WORLD if self.size > 1 else None


def current_world() -> World:
    """The world of an initialised process group, else one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size())


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: this process's GPU (torchrun's LOCAL_RANK, else SLURM_LOCALID) if there is one,
    else the CPU; any other name as torch reads it (``cpu``, ``cuda``, ``cuda:1``, ...)."""
    if name != "auto":
        try:
            return torch.device(name)
        except RuntimeError:
            raise ValueError(f"--device: not a device torch knows: {name!r} (auto, cpu, cuda, cuda:1, ...)") from None
    if not torch.cuda.is_available():
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0)))
    return torch.device("cuda", local % torch.cuda.device_count())


def init_distributed(device: torch.device) -> tuple[World, torch.device]:
    """Join torchrun's process group when WORLD_SIZE > 1; returns the world and this rank's device.

    nccl on CUDA (``device`` becomes cuda:LOCAL_RANK), gloo on CPU. Collectives give up after
    ``$JESTFILTER_DIST_TIMEOUT`` seconds (default 30 min), so a rank whose peer died fails
    with an error instead of waiting forever.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World(), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        seconds = _timeout_seconds()
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=seconds))
    return current_world(), device


def _timeout_seconds() -> int:
    value = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {value!r}")
    return int(value)


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


@contextlib.contextmanager
def main_first(world: World) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. builds shared files), the others after it."""
    if not world.main:
        barrier(world)
    yield
    if world.main:
        barrier(world)


def broadcast_object(world: World, value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if world.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(world: World, value: Any) -> list:
    """Every rank's ``value``, in rank order, on every rank."""
    if world.size == 1:
        return [value]
    values = [None] * world.size
    dist.all_gather_object(values, value)
    return values


def min_across(world: World, value: int, device: torch.device) -> int:
    """The smallest ``value`` over all ranks."""
    if world.size == 1:
        return value
    tensor = torch.tensor([value], device=_collective_device(device))
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def broadcast_parameters(world: World, model: torch.nn.Module) -> None:
    """Rank 0's weights everywhere: every rank starts from exactly the same model."""
    if world.size > 1:
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def average_gradients(world: World, model: torch.nn.Module) -> None:
    """Mean of every rank's gradients, in one all-reduce of one flat buffer (what DDP does in
    buckets during the backward pass; one buffer keeps it simple for models of our size)."""
    if world.size == 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def _collective_device(device: torch.device) -> torch.device:
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def lock_folder(folder: str | os.PathLike, world: World) -> FolderLock | None:
    """Rank 0 takes ``folder``'s run lock before any rank writes in it (the caller releases it);
    every rank raises the same one-line error when the folder is held (``LockHeld``) or cannot
    be written (``WriteFailed``)."""
    lock, error = None, None
    if world.main:
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            lock = FolderLock(Path(folder) / RUN_LOCK, str(folder)).acquire()
        except LockHeld as held:
            error = ("held", str(held))
        except OSError as failure:
            error = ("write", failure.strerror or str(failure))
    error = broadcast_object(world, error)
    if error:
        kind, message = error
        raise LockHeld(message) if kind == "held" else WriteFailed(folder, message)
    return lock
