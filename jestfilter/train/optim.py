"""AdamW with the CLIP/SigLIP parameter groups, and a warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch


def decays(name: str, parameter: torch.nn.Parameter) -> bool:
    """Weight decay only on weight matrices: not on biases, norms, embeddings' 1-d vectors, logit scale/bias."""
    return parameter.ndim >= 2 and "logit_" not in name and not name.endswith("bias")


def make_optimizer(
    model: torch.nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-6,
) -> torch.optim.AdamW:
    """AdamW as open_clip_train sets it up; β2 = 0.95 because 0.999 spiked in the JEST paper.

    ``weight_decay`` is *decoupled* weight decay as in big_vision (and so in the JEST paper's
    1e-4): each step multiplies a decayed weight by 1 − weight_decay × the schedule's factor,
    whatever the learning rate. torch's AdamW multiplies its decay by the learning rate, so it
    is given ``weight_decay / lr``.
    """
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for name, p in trainable if decays(name, p)], "weight_decay": weight_decay / lr},
        {"params": [p for name, p in trainable if not decays(name, p)], "weight_decay": 0.0},
    ]
    # fused: one kernel over all parameters (the per-tensor loop is the default on CPU and is slow)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)


def lr_factor(step: int, total_steps: int, warmup_steps: int, floor: float = 0.0) -> float:
    """Linear warm-up to 1 over ``warmup_steps``, then cosine decay to ``floor`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.05, floor: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over ``lr_factor``; call ``.step()`` once per training step."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    warmup_steps = round(warmup_fraction * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup_steps, floor)
    )
