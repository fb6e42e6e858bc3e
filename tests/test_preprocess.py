"""Preprocessing in two halves: uint8 decoding in the loader, batched resize/normalise on the
device. Every path (training, scoring, reference cache, evaluation) must see the same inputs."""

from __future__ import annotations

import io

import numpy as np
import open_clip
import PIL.Image
import torch
from conftest import encode, fashion_mnist

from jestfilter.data.pixels import decode_image, stack_pixels
from jestfilter.models import ImagePreprocess, create_model


def test_batched_preprocessing_matches_open_clips_eval_transform():
    preprocess = create_model("jest-tiny").preprocess
    images, _ = fashion_mnist(16)
    data = [encode(image) for image in images]
    transform = open_clip.image_transform(28, is_train=False)
    expected = torch.stack([transform(PIL.Image.open(io.BytesIO(d)).convert("RGB")) for d in data])
    pixels = stack_pixels([decode_image(d) for d in data])
    assert pixels.dtype == torch.uint8 and pixels.shape == (16, 3, 28, 28)
    assert torch.allclose(preprocess.to_model(pixels), expected, atol=1e-5)
    assert torch.allclose(preprocess(PIL.Image.open(io.BytesIO(data[0]))), expected[0], atol=1e-5)


def test_an_image_comes_out_the_same_whatever_else_is_in_its_batch():
    preprocess = ImagePreprocess(28, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    images, _ = fashion_mnist(3)
    small, big = decode_image(encode(images[0])), decode_image(encode(images[1], size=56))
    wide = decode_image(encode(np.concatenate([images[2], images[2]], axis=1)))  # 28 × 56
    assert wide.shape == (3, 28, 28)  # its central square
    mixed = stack_pixels([small, big, wide])
    assert isinstance(mixed, list)  # sizes differ: each size is resized as its own batch
    together = preprocess.to_model(mixed)
    alone = torch.cat([preprocess.to_model(image[None]) for image in (small, big, wide)])
    assert together.shape == (3, 3, 28, 28) and torch.equal(together, alone)


def test_every_stored_format_decodes_to_the_pixels_pil_sees(web_shards):
    for members in list(web_shards.samples.values())[:8]:
        ext = next(e for e in ("jpg", "png", "webp") if e in members)
        pil = torch.from_numpy(np.array(PIL.Image.open(io.BytesIO(members[ext])).convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(decode_image(members[ext]), pil), ext
