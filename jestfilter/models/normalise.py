"""How a model trained from scratch normalises its pixels: ``data`` (each channel's mean and std
over its training images: the curated set for bootstrap, the training shards for ``train``),
``half`` ((x − 0.5) / 0.5) or ``clip`` (CLIP's mean and std, open_clip's default, tuned for
photographs). The choice is saved in the model folder's ``preprocess_cfg``, so open_clip's
own loader and every jestfilter command read the model's inputs back the same way; a model
folder (a pretrained one included) keeps its own.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from jestfilter.data import RawSample, expand_shards, iter_samples
from jestfilter.data.pixels import decode_checked
from jestfilter.data.shards import image_member
from jestfilter.models.factory import input_size, model_spec
from jestfilter.models.options import LOCAL_DIR, PIXEL_NORMS
from jestfilter.models.preprocess import ImagePreprocess

STATS_SAMPLES = 2000  # images read for ``data`` (the first of the shards, in order)
HALF = ((0.5,) * 3, (0.5,) * 3)


class PixelStats(NamedTuple):
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def pixel_stats(norm: str, shards: str | Sequence[str], size: int, samples: int = STATS_SAMPLES) -> PixelStats | None:
    """The mean and std a new model of input ``size`` normalises with (None: ``clip``, the model
    config's own). ``data`` measures them on the first ``samples`` images of ``shards`` at the
    model's input size."""
    if norm not in PIXEL_NORMS:
        raise ValueError(f"unknown pixel normalisation {norm!r}: use one of {', '.join(PIXEL_NORMS)}")
    if norm == "clip":
        return None
    if norm == "half":
        return PixelStats(*HALF)
    images = []
    for sample in iter_samples(expand_shards(shards)):
        if isinstance(sample, RawSample):
            try:
                images.append(decode_checked(sample.members[image_member(sample)], size))
            except Exception:  # each decoder raises its own types; the loader rejects such a sample with its reason
                continue
            if len(images) >= samples:
                break
    if not images:
        raise ValueError("no readable image to measure the pixel mean and std on")
    unit = ImagePreprocess(size, (0.0,) * 3, (1 / 255,) * 3)  # resized like the model's inputs, in [0, 255]
    x = unit.to_model(images) / 255
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return PixelStats(tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(std.tolist()))


def stats_for_new_model(norm: str, model: str, shards: str | Sequence[str]) -> PixelStats | None:
    """``pixel_stats`` for a run that starts ``model``: a model name gets them (at its input
    size), a model folder keeps its own normalisation (None)."""
    spec = model_spec(model)
    if spec.startswith(LOCAL_DIR):
        return None
    return pixel_stats(norm, shards, input_size(spec))
