"""What the Selector takes (a SigLIP model's outputs) and what it gives back."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class SiglipOutputs(NamedTuple):
    """What a SigLIP model gives for a batch: open_clip's ``model(images, texts)`` in order.

    ``image`` and ``text`` are ``[B, d]`` L2-normalised embeddings; ``scale`` is already
    exponentiated (open_clip returns ``logit_scale.exp()``); ``bias`` is the logit bias
    (``None`` for CLIP models, read as 0).
    """

    image: Tensor
    text: Tensor
    scale: Tensor | float
    bias: Tensor | float | None


class Selection(NamedTuple):
    """The chosen sub-batch and each example's own-pair diagnostics (``[B]`` fp32 each).

    ``learner_loss`` / ``reference_loss`` are the loss of each example's own pair (i, i)
    under each model, None where that model was not given; ``learnability`` is their
    difference (None unless both were given). With ``loss="softmax"`` they are the paper's
    unconditional per-example score ``-scale·<u_i, v_i>``.

    ``chunks`` and ``scores`` are aligned with ``indices``: the chunk each chosen example was
    drawn in and the score it was drawn by (the criterion's conditional score in nats, before
    gain and noise); None when nothing was scored (``uniform``).
    """

    indices: Tensor
    learner_loss: Tensor | None
    reference_loss: Tensor | None
    learnability: Tensor | None
    chunks: Tensor | None = None
    scores: Tensor | None = None


def as_siglip_outputs(outputs, name: str, device: torch.device | None = None) -> SiglipOutputs:
    """Check a model's outputs and return them as fp32 tensors on one device.

    Scores are differences of similar numbers summed over thousands of pairs, so they are
    always computed in fp32 whatever the embeddings' dtype.
    """
    if not isinstance(outputs, tuple) or len(outputs) != 4:
        raise ValueError(f"{name} must be SiglipOutputs or a 4-tuple (image, text, scale, bias), "
                         f"got {type(outputs).__name__}")
    image, text, scale, bias = outputs
    for part, tensor in (("image", image), ("text", text)):
        if not isinstance(tensor, Tensor) or tensor.dim() != 2:
            shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
            raise ValueError(f"{name}.{part} must be a 2-D [B, d] tensor, got {shape}")
    if image.shape != text.shape:
        raise ValueError(f"{name}: image {tuple(image.shape)} and text {tuple(text.shape)} "
                         "embeddings differ in shape")
    device = image.device if device is None else device
    image, text = image.detach().to(device, torch.float32), text.detach().to(device, torch.float32)
    # Row sums carry any NaN or Inf along without a [B, d] temporary.
    if not (torch.isfinite(image.sum(dim=1)).all() and torch.isfinite(text.sum(dim=1)).all()):
        raise ValueError(f"{name} embeddings contain NaN or Inf")
    scale = _scalar(scale, f"{name}.scale", device)
    bias = _scalar(0.0 if bias is None else bias, f"{name}.bias", device)
    return SiglipOutputs(image, text, scale, bias)


def _scalar(value, name: str, device: torch.device) -> Tensor:
    tensor = torch.as_tensor(value.detach() if isinstance(value, Tensor) else value,
                             dtype=torch.float32, device=device)
    if tensor.numel() != 1 or not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must be one finite number, got {value!r}")
    return tensor.reshape(())
