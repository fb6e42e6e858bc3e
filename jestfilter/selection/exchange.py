"""The exchange a distributed selection needs: each rank owns one stratum of the super-batch."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_rows(rows: int, group) -> tuple[int, int, int]:
    """(world size, this rank, rows over all ranks); every rank must pass the same row count."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    counts = all_gather_rows(torch.tensor([rows], device=_device(group)), group)
    if (counts != rows).any():
        raise ValueError(f"every rank must pass the same number of rows, got {counts.tolist()}")
    return world, rank, rows * world


def all_gather_rows(tensor: Tensor, group) -> Tensor:
    """Concatenate every rank's equally shaped tensor in rank order."""
    device = tensor.device
    tensor = tensor.to(_device(group)).contiguous()
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, tensor, group=group)
    return torch.cat(parts).to(device)


def _device(group) -> torch.device:
    """gloo exchanges CPU tensors, nccl CUDA tensors."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
