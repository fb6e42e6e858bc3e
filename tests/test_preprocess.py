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

from jestfilter.data.pixels import (decode_checked, decode_deferred, decode_image, decode_options, is_deferred, is_jpeg,
                                    jpeg_scale, stack_pixels)
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


# --- decoding for the size the model needs -------------------------------------------------

def photo(width: int, height: int, fmt: str = "JPEG") -> bytes:
    """A Fashion-MNIST image stretched to ``width`` × ``height`` (as img2dataset's resize would),
    with a colour gradient, so reduced decoding has edges and chroma to get wrong."""
    images, _ = fashion_mnist(1)
    gray = PIL.Image.fromarray(images[0]).resize((width, height), PIL.Image.BICUBIC)
    ramp = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    rgb = PIL.Image.merge("RGB", (gray, PIL.Image.fromarray(ramp), PIL.Image.fromarray(255 - ramp)))
    out = io.BytesIO()
    rgb.save(out, format=fmt, quality=95) if fmt == "JPEG" else rgb.save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize("stored, size, scale", [(512, 28, 8), (512, 224, 2), (256, 128, 2), (256, 112, 2),
                                                 (256, 64, 4), (256, 224, 1), (55, 28, 1), (56, 28, 2)])
def test_a_large_jpeg_is_decoded_at_the_largest_reduction_that_keeps_the_models_input(stored, size, scale):
    data = photo(stored, stored)
    assert jpeg_scale(data, size) == scale
    pixels = decode_image(data, size)
    assert pixels.shape == (3, -(-stored // scale), -(-stored // scale)) and pixels.shape[-1] >= size


def test_a_reduced_decode_never_gives_fewer_pixels_than_the_model_needs_whatever_the_shape():
    for width, height in [(301, 517), (517, 301), (64, 1000), (1023, 129), (57, 57), (450, 449), (999, 1001)]:
        data = photo(width, height)
        for size in (28, 56, 100, 112, 128, 224):
            pixels = decode_image(data, size)
            side = pixels.shape[-1]
            assert pixels.shape[-2] == side, (width, height, size)  # the central square
            assert side >= min(size, width, height), (width, height, size)
            if min(width, height) >= 2 * size:  # reduced: below twice the input unless 1/8 was the limit
                assert side < 2 * size or jpeg_scale(data, size) == 8, (width, height, size, side)


def test_a_reduced_decode_gives_the_model_almost_the_input_a_full_decode_does():
    for stored, size in [(512, 28), (512, 224), (256, 128)]:
        data = photo(stored, stored)
        preprocess = ImagePreprocess(size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # inputs in [−1, 1]
        reduced, full = decode_image(data, size), decode_image(data)
        assert reduced.shape[-1] < full.shape[-1]
        difference = (preprocess.to_model(reduced[None]) - preprocess.to_model(full[None])).abs()
        # measured: 0.27–0.44 grey levels on average, at most 5 (at edges)
        assert difference.mean() < 1 / 127.5 and difference.max() < 16 / 127.5, (stored, size)


def test_png_webp_small_jpegs_and_the_28px_demo_decode_exactly_as_before():
    images, _ = fashion_mnist(4)
    for data in [photo(512, 512, "PNG"), photo(512, 384, "WEBP"), photo(40, 40), encode(images[0]),
                 encode(images[1], "PNG")]:
        assert torch.equal(decode_image(data, 28), decode_image(data))
        assert torch.equal(decode_checked(data, 28), decode_image(data))


def test_the_decode_setting_says_where_jpegs_are_decoded():
    assert decode_options("auto", "cpu", 224) == (224, False)
    assert decode_options("cpu", "cpu", 224) == (224, False)
    assert decode_options("full", "cpu", 224) == (None, False)
    assert decode_options("auto", torch.device("cuda", 0), 224) == (224, True)  # the device need not exist here
    with pytest.raises(ValueError, match="needs a CUDA device"):
        decode_options("gpu", "cpu", 224)
    with pytest.raises(ValueError, match="unknown --decode"):
        decode_options("fast", "cpu", 224)


def test_jpegs_deferred_to_the_device_decode_to_the_workers_pixels(web_shards):
    datas = [members[ext] for members in web_shards.samples.values() for ext in ("jpg", "png", "webp")
             if ext in members][:12] + [photo(512, 300), photo(64, 300)]
    held = [decode_checked(data, 28, defer_jpeg=True) for data in datas]
    assert [is_deferred(x) for x in held] == [is_jpeg(d) and jpeg_scale(d, 28) == 1 for d in datas]
    assert not is_deferred(held[-2])  # 300 px for 28: decoded at 1/8 in the worker, not deferred
    pixels, failed = decode_deferred(held, "cpu")
    assert failed == [] and isinstance(pixels, list)
    assert all(torch.equal(a, decode_image(d, 28)) for a, d in zip(pixels, datas))


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_a_reduced_decode_gives_libjpegs_scaled_pixels_for_colour_grey_and_cmyk_jpegs(mode):
    rgb = PIL.Image.open(io.BytesIO(photo(517, 301)))
    out = io.BytesIO()
    rgb.convert(mode).save(out, format="JPEG", quality=90)
    data = out.getvalue()
    with PIL.Image.open(io.BytesIO(data)) as image:  # libjpeg's own 1/4-scale decode, through PIL
        image.draft("RGB", (64, 64))
        expected = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    assert expected.shape[-2:] == (76, 130)
    assert torch.equal(decode_image(data, 64), expected[:, :, 27:103])  # its central square


def test_a_truncated_large_jpeg_is_still_refused_when_decoded_at_reduced_scale():
    data = photo(512, 512)
    for cut in (0.5, 0.99):
        with pytest.raises(Exception):
            decode_image(data[: int(len(data) * cut)], 28)
