"""Preprocessing in two halves: uint8 decoding in the loader, batched resize/normalise on the
device. Every path (training, scoring, reference cache, evaluation) must see the same inputs."""

from __future__ import annotations

import io

import numpy as np
import open_clip
import PIL.Image
import pytest
import torch
from conftest import encode, fashion_mnist

from jestfilter.data.pixels import decode_image, stack_pixels
from jestfilter.models import ImagePreprocess, create_model, pixel_stats, save_local_dir, stats_for_new_model


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


def test_a_new_models_pixel_stats_round_trip_through_its_folder_and_open_clip(tmp_path):
    stats = ((0.13, 0.14, 0.15), (0.31, 0.32, 0.33))
    path = save_local_dir(create_model("jest-tiny", pixel_stats=stats), tmp_path / "m")
    assert ImagePreprocess.of(open_clip.create_model(f"local-dir:{path}")) == ImagePreprocess(28, *stats)
    *_, transform = open_clip.create_model_and_transforms(f"local-dir:{path}")
    normalize = transform.transforms[-1]
    assert tuple(normalize.mean) == stats[0] and tuple(normalize.std) == stats[1]
    assert create_model(str(path)).preprocess == ImagePreprocess(28, *stats)  # our loader and `evaluate` too
    with pytest.raises(ValueError, match="loaded as saved"):
        create_model(str(path), pixel_stats=stats)


def test_data_normalisation_measures_the_training_images_at_the_models_size(web_shards, tmp_path):
    images, _ = fashion_mnist(60)  # what web_shards holds, as 28-px images
    stats = pixel_stats("data", web_shards.pattern, 28)
    x = np.stack([np.asarray(PIL.Image.open(io.BytesIO(encode(image))).convert("RGB")) for image in images]) / 255
    assert np.allclose(stats.mean, x.mean(axis=(0, 1, 2)), atol=0.02)
    assert np.allclose(stats.std, x.std(axis=(0, 1, 2)), atol=0.02)
    assert pixel_stats("half", web_shards.pattern, 28) == ((0.5,) * 3, (0.5,) * 3)
    assert pixel_stats("clip", web_shards.pattern, 28) is None  # the model config's own (CLIP's)
    folder = save_local_dir(create_model("jest-tiny"), tmp_path / "m")
    assert stats_for_new_model("data", str(folder), web_shards.pattern) is None  # a model folder keeps its own
