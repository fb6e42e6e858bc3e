"""A model's outputs for a batch in the form the Selector and SigLipLoss take (``SiglipOutputs``)."""

from __future__ import annotations

import torch

from jestfilter.models.flexi import encode_image
from jestfilter.selection import SiglipOutputs


def embed(
    model: torch.nn.Module, images: torch.Tensor, texts: torch.Tensor, patch_size: int | None = None
) -> SiglipOutputs:
    """What ``model(images, texts)`` returns, with the image tower optionally at a Flexi patch size."""
    image = encode_image(model, images, patch_size, normalize=True)
    return siglip_outputs(model, image, model.encode_text(texts, normalize=True))


def siglip_outputs(model: torch.nn.Module, image: torch.Tensor, text: torch.Tensor) -> SiglipOutputs:
    """Normalised embeddings with the model's exp'd logit scale and its bias (None for softmax CLIP)."""
    return SiglipOutputs(image, text, model.logit_scale.exp(), model.logit_bias)
