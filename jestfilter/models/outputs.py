"""The four things a SigLIP model produces for a batch, as the Selector and the loss take them."""

from __future__ import annotations

from typing import NamedTuple

import torch

from jestfilter.models.flexi import encode_image


class ModelOutputs(NamedTuple):
    """Normalised embeddings [n, d], exponentiated logit scale, logit bias (SiglipOutputs order)."""

    image: torch.Tensor
    text: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor


def embed(
    model: torch.nn.Module, images: torch.Tensor, texts: torch.Tensor, patch_size: int | None = None
) -> ModelOutputs:
    """What ``model(images, texts)`` returns, with the image tower optionally at a Flexi patch size."""
    image = encode_image(model, images, patch_size, normalize=True)
    text = model.encode_text(texts, normalize=True)
    bias = model.logit_bias if model.logit_bias is not None else torch.zeros((), device=image.device)
    return ModelOutputs(image, text, model.logit_scale.exp(), bias)
