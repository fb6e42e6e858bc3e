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
    return ModelOutputs(image, model.encode_text(texts, normalize=True), *logit_params(model))


def logit_params(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(exp'd logit scale, logit bias); a model trained without a bias (softmax CLIP) gets 0."""
    bias = model.logit_bias
    if bias is None:
        bias = torch.zeros((), device=model.logit_scale.device)
    return model.logit_scale.exp(), bias
