"""Arithmetic precision of a run: open_clip_train's ``amp_bf16`` (autocast to bfloat16 around
the forward passes and the loss, fp32 master weights and optimiser), TF32 matmuls on CUDA."""

from __future__ import annotations

import contextlib

import torch


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


def compile_towers(model: torch.nn.Module) -> None:
    """``torch.compile`` the transformer blocks of both towers, in place (parameter names and
    checkpoints unchanged). The blocks are what every path runs: native and Flexi patches,
    whole and shortened captions."""
    for tower in (getattr(model, "visual", None), model):
        blocks = getattr(tower, "transformer", None)
        if isinstance(blocks, torch.nn.Module):
            blocks.compile()
