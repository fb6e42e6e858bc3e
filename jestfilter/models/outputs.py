"""A model's outputs for a batch in the form the Selector and SigLipLoss take (``SiglipOutputs``)."""

from __future__ import annotations

import torch

from jestfilter.models.flexi import encode_image
from jestfilter.models.text import encode_text
from jestfilter.selection import SiglipOutputs


def embed(
    model: torch.nn.Module, images: torch.Tensor, texts: torch.Tensor, patch_size: int | None = None,
    context: int | None = None,
) -> SiglipOutputs:
    """What ``model(images, texts)`` returns, with the image tower optionally at a Flexi patch
    size and the captions optionally cut to ``context`` tokens (``jestfilter.models.text``)."""
    image = encode_image(model, images, patch_size, normalize=True)
    return siglip_outputs(model, image, encode_text(model, texts, normalize=True, context=context))


def siglip_outputs(model: torch.nn.Module, image: torch.Tensor, text: torch.Tensor) -> SiglipOutputs:
    """Normalised embeddings with the model's exp'd logit scale and its bias (None for softmax CLIP)."""
    return SiglipOutputs(image, text, model.logit_scale.exp(), model.logit_bias)
