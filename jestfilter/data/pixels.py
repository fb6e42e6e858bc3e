"""Image bytes → uint8 pixels: the decoding half of preprocessing, done once per sample in the
loader's workers (the other half, resize and normalise, runs batched on the model's device:
``jestfilter.models.preprocess``).

An image becomes its central square, ``[3, s, s]`` uint8 RGB at its stored resolution: the
crop is exact (no interpolation), so what a sample looks like never depends on the other
samples of its batch. torchvision's libjpeg-turbo/libpng/libwebp decoders are ~2× faster than
PIL's here and give the same pixels; PIL is the fallback for anything they refuse.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import PIL.Image
import torch
from torchvision.io import ImageReadMode, decode_image as _tv_decode

from jestfilter.data.images import check_size

Pixels = torch.Tensor | list[torch.Tensor]  # [n, 3, s, s] uint8, or one [3, s, s] per image when sizes differ


def decode_checked(data: bytes) -> torch.Tensor:
    """``decode_image`` behind the header's size check: a decompression bomb is never decoded.
    Raises ``BadImage`` (``image_too_large``, ``corrupt_image``) or the decoder's own error;
    ``image_reason`` turns either into the manifest's reason."""
    check_size(data)
    return decode_image(data)


def decode_image(data: bytes) -> torch.Tensor:
    """The central square of the image in ``data`` as uint8 ``[3, s, s]`` RGB; raises on bytes
    that are no decodable image."""
    try:
        pixels = _tv_decode(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        if pixels.dtype != torch.uint8:  # 16-bit PNG
            pixels = (pixels.float() * (255 / 65535)).round().to(torch.uint8)
    except RuntimeError:
        with PIL.Image.open(io.BytesIO(data)) as image:
            pixels = from_pil(image)
        return pixels
    return central_square(pixels)


def from_pil(image: PIL.Image.Image) -> torch.Tensor:
    """A PIL image's central square as uint8 ``[3, s, s]`` RGB."""
    array = np.array(image.convert("RGB"), dtype=np.uint8)
    return central_square(torch.from_numpy(array).permute(2, 0, 1).contiguous())


def central_square(pixels: torch.Tensor) -> torch.Tensor:
    """The central ``min(h, w)`` square of ``[c, h, w]`` pixels (torchvision's CenterCrop offsets)."""
    height, width = pixels.shape[-2:]
    side = min(height, width)
    if height == width:
        return pixels
    top, left = int(round((height - side) / 2.0)), int(round((width - side) / 2.0))
    return pixels[..., top:top + side, left:left + side].contiguous()


def stack_pixels(images: Sequence[torch.Tensor]) -> Pixels:
    """One ``[n, 3, s, s]`` tensor when every image has the same size (one transfer between
    processes), else the list."""
    if images and all(image.shape == images[0].shape for image in images):
        return torch.stack(list(images))
    return list(images)

