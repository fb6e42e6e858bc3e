"""The machine's cores, shared by torchrun ranks, loader workers and torch's own threads, and
its arithmetic: bf16 autocast, TF32 matmuls on CUDA.

torch's default intra-op pool takes every core, whatever else runs: on a busy two-core box a
training step took 6.9 s with the default threads and 1.2 s with one (issue 13). So a run
chooses its loader workers and its torch threads from the cores this rank owns, says what it
chose, and lets ``--workers`` / ``--threads`` (or ``OMP_NUM_THREADS``) override it.
"""

from __future__ import annotations

import contextlib
import os

import torch

_said: set[tuple] = set()


def cores_per_rank() -> int:
    """The cores this process may run on, shared evenly among torchrun's local ranks."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(1, cores // max(1, ranks))


def default_workers(device: torch.device) -> int:
    """Loader workers: on a GPU decoding is the CPU's main job (half the cores, up to 8); on the
    CPU the model's arithmetic needs the cores, and one worker per four cores keeps up."""
    cores = cores_per_rank()
    if device.type == "cuda":
        return max(1, min(8, cores // 2))
    return max(1, cores // 4)


def default_threads(workers: int) -> tuple[int, str]:
    """torch threads and why: ``$OMP_NUM_THREADS`` when set, else the cores the workers leave."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    cores = cores_per_rank()
    return max(1, cores - workers), f"{cores} cores − {workers} loader worker{'s' * (workers != 1)}"


def configure(device: torch.device, workers: int | None, threads: int | None, say: bool = True) -> tuple[int, int]:
    """Choose (workers, threads), set torch's intra-op threads and say so once per choice."""
    workers = default_workers(device) if workers is None else workers
    if threads is None:
        threads, why = default_threads(workers)
    else:
        why = "--threads"
    torch.set_num_threads(threads)
    choice = (workers, threads, why)
    if say and choice not in _said:
        _said.add(choice)
        print(f"cpu: {threads} torch thread{'s' * (threads != 1)} ({why}), {workers} loader worker"
              f"{'s' * (workers != 1)}; change with --threads / --workers", flush=True)
    return workers, threads


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The forward passes' context: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"unknown precision {precision!r}: use fp32 or bf16")
    return contextlib.nullcontext()


def use_fast_kernels(device: torch.device) -> None:
    """TF32 for fp32 matmuls and convolutions on CUDA (10 mantissa bits, as open_clip_train
    allows); nothing elsewhere."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
