"""One SigLIP training step, optionally Flexi (half the batch at a coarser patch size)."""

from __future__ import annotations

import math
from typing import Callable

import torch
from open_clip.loss import SigLipLoss

from jestfilter.models import embed, encode_image, encode_text, siglip_outputs
from jestfilter.selection import SiglipOutputs
from jestfilter.train.precision import autocast

MAX_LOGIT_SCALE = math.log(100.0)  # open_clip_train clamps the (log) scale to [0, ln 100]
_SIGLIP_LOSS = SigLipLoss()


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    images: torch.Tensor,
    texts: torch.Tensor,
    loss_fn: torch.nn.Module = _SIGLIP_LOSS,
    flexi_patch_size: int | None = None,
    max_grad_norm: float = 1.0,
    reduce_gradients: Callable[[torch.nn.Module], None] | None = None,
    precision: str = "fp32",
) -> float:
    """Train on one batch; return its loss.

    With ``flexi_patch_size`` the first half of the batch is encoded at the native patch size
    and the second half at ``flexi_patch_size``; the embeddings are joined before the loss,
    as Flexi-JEST co-trains both resolutions. The halves should be random: pass the batch in
    random order (the Selector returns its choices chunk by chunk, not shuffled).
    ``reduce_gradients(model)`` runs between the backward pass and the update (under torchrun:
    the mean over ranks). ``precision="bf16"`` runs the forward pass and the loss under bf16
    autocast; weights, gradients and the optimiser stay fp32.
    """
    model.train()
    device = model.logit_scale.device
    images, texts = images.to(device), texts.to(device)
    optimizer.zero_grad(set_to_none=True)
    with autocast(precision, device):
        outputs = flexi_embed(model, images, texts, flexi_patch_size)
        loss = loss_fn(*outputs)
    loss.backward()
    if reduce_gradients is not None:
        reduce_gradients(model)
    if max_grad_norm:  # 0 or None: no clipping
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
    return loss.item()


def flexi_embed(
    model: torch.nn.Module, images: torch.Tensor, texts: torch.Tensor, flexi_patch_size: int | None
) -> SiglipOutputs:
    """``embed``, with the second half of the images at ``flexi_patch_size`` when it is given."""
    if flexi_patch_size is None:
        return embed(model, images, texts)
    half = images.shape[0] // 2
    full = encode_image(model, images[:half], normalize=True)
    coarse = encode_image(model, images[half:], flexi_patch_size, normalize=True)
    return siglip_outputs(model, torch.cat([full, coarse]), encode_text(model, texts, normalize=True))
