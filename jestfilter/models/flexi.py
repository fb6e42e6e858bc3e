"""Flexi patch sizes: run an open_clip ViT at a coarser patch size with the same weights.

FlexiViT (Beyer et al. 2023) resamples the patch-embedding kernel with the pseudo-inverse of
the resize ("PI-resize") and interpolates the position embedding; Flexi-JEST scores the
super-batch at the coarse size and co-trains half of each batch there. The resampling here is
functional: the model is never modified, and gradients flow back into the base weights.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from timm.layers import resample_abs_pos_embed, resample_patch_embed
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from jestfilter.models.text import encode_text


def native_patch_size(model: torch.nn.Module) -> int:
    """The patch size the model was built with."""
    return _vision_transformer(model).patch_size[0]


def coarse_patch_size(model: torch.nn.Module) -> int:
    """Flexi's default coarse patch size: the divisor of the image size nearest to twice the
    native patch size (28 px at patch 4 → 7; 224 px at patch 16 → 32)."""
    visual = _vision_transformer(model)
    side, target = visual.image_size[0], 2 * visual.patch_size[0]
    divisors = [p for p in range(visual.patch_size[0] + 1, side + 1) if side % p == 0]
    if not divisors:
        raise ValueError(f"no patch size above {visual.patch_size[0]} divides the image size {side}")
    return min(divisors, key=lambda p: (abs(p - target), -p))


MIN_COARSE_TOKENS = 16  # jest-tiny's 2×2 coarse grid lost about 10 points in Flexi-JEST on the demo


def flexi_patch_size(model: torch.nn.Module, mode: str, chosen: int | None = None) -> int | None:
    """The patch size Flexi scores at: ``chosen``, else :func:`coarse_patch_size`; None when off."""
    return None if mode == "off" else (chosen or coarse_patch_size(model))


def coarse_view_warning(model: torch.nn.Module, patch_size: int | None) -> str | None:
    """A warning line when Flexi's coarse view keeps too few tokens to score by, else None."""
    if patch_size is None:
        return None
    side = _vision_transformer(model).image_size[0]
    tokens = (side // patch_size) ** 2
    if tokens >= MIN_COARSE_TOKENS:
        return None
    return (f"warning: Flexi's coarse view keeps {tokens} token(s) ({side} px in {patch_size}-px patches); below "
            f"{MIN_COARSE_TOKENS} its scores lost about 10 points on the demo. Use a model with smaller patches "
            f"(--model jest-tiny-p4 at 28 px) or a smaller --flexi-patch-size.")


def encode_image(
    model: torch.nn.Module, images: torch.Tensor, patch_size: int | None = None, normalize: bool = False
) -> torch.Tensor:
    """``model.encode_image(images)``, with the image tower cut into ``patch_size`` patches.

    ``patch_size=None`` is ``model.encode_image`` itself (any open_clip image tower); a patch
    size needs an open_clip ViT.
    """
    if patch_size is None:
        return model.encode_image(images, normalize=normalize)
    visual = _vision_transformer(model)
    height, width = images.shape[-2:]
    if height % patch_size or width % patch_size:
        raise ValueError(f"patch size {patch_size} does not divide the image size {height}x{width}")
    kernel, pos_embed = resampled_embeddings(visual, patch_size, [height // patch_size, width // patch_size])
    return _forward(visual, images, kernel, pos_embed, normalize)


def resampled_embeddings(
    visual: VisionTransformer, patch_size: int, grid: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch-embedding kernel (PI-resize) and position embedding for another patch size / grid.

    Both are identities at the native sizes. They are differentiable functions of the base
    weights, so training at the coarse size trains the one set of weights.
    """
    kernel = resample_patch_embed(visual.conv1.weight, [patch_size, patch_size])
    pos_embed = resample_abs_pos_embed(
        visual.positional_embedding.unsqueeze(0), new_size=grid, old_size=list(visual.grid_size), num_prefix_tokens=1
    )[0]
    return kernel, pos_embed


def _forward(
    visual: VisionTransformer, images: torch.Tensor, kernel: torch.Tensor, pos_embed: torch.Tensor, normalize: bool
) -> torch.Tensor:
    """open_clip's ``VisionTransformer.forward`` with the given patch kernel and position embedding."""
    x = F.conv2d(images, kernel, stride=kernel.shape[-1]).flatten(2).transpose(1, 2)  # [n, tokens, width]
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + pos_embed.to(x.dtype)
    x = visual.ln_pre(visual.patch_dropout(x))
    x = visual.transformer(x)
    pooled, _ = visual._pool(x)
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    return F.normalize(pooled, dim=-1) if normalize else pooled


class FlopCounts(NamedTuple):
    """Forward FLOPs of one example through each tower."""

    image: int
    text: int

    @property
    def image_fraction(self) -> float:
        return self.image / (self.image + self.text)


def forward_flops(model: torch.nn.Module, patch_size: int | None = None, context: int | None = None) -> FlopCounts:
    """FLOPs of one image and one caption through the towers, counted by torch's FlopCounterMode.

    The caption fills the model's context (or ``context`` tokens): the cost of the longest one.

    Counted with autograd on and the math attention kernel: under no_grad nn.MultiheadAttention
    takes a fused fast path, and the fused CPU attention kernel is not counted either. The
    kernel resampling is left out: it is done once per batch, not per example.
    """
    visual = _vision_transformer(model)
    patch = patch_size or visual.patch_size[0]
    parameter = next(model.parameters())
    image = torch.zeros(1, 3, *visual.image_size, device=parameter.device, dtype=parameter.dtype)
    text = torch.ones(1, min(context or model.context_length, model.context_length), dtype=torch.long,
                      device=parameter.device)
    kernel, pos_embed = resampled_embeddings(visual, patch, [size // patch for size in visual.image_size])
    with sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as image_counter:
            _forward(visual, image, kernel, pos_embed, normalize=False)
        with FlopCounterMode(display=False) as text_counter:
            encode_text(model, text)
    return FlopCounts(image_counter.get_total_flops(), text_counter.get_total_flops())


def _vision_transformer(model: torch.nn.Module) -> VisionTransformer:
    visual = getattr(model, "visual", model)
    if not isinstance(visual, VisionTransformer):
        raise ValueError(f"Flexi patch sizes need an open_clip VisionTransformer image tower, not {type(visual).__name__}")
    return visual
