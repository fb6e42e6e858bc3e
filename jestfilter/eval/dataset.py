"""Read an evaluation directory once: images, captions, class labels, class names, templates.

Layout: ``*.tar`` shards holding ``KEY.jpg``, ``KEY.txt``, ``KEY.cls`` (class index),
``classnames.txt`` (one class per line) and optional ``templates.txt`` (``{}`` marks the class).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

from jestfilter.data.pixels import Pixels, decode_image, stack_pixels

DEFAULT_TEMPLATES = ["a photo of a {}.", "a picture of a {}.", "an image of a {}."]
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


@dataclass
class EvalSet:
    """A decoded evaluation set, kept in memory and reused by every ``evaluate`` call.

    ``images`` are uint8 pixels as the training loader decodes them (``decode_image``: one
    ``[n, 3, s, s]`` tensor, or a list when sizes differ), so evaluation goes through the same
    preprocessing (``ImagePreprocess.to_model``) as training and scoring.
    """

    images: Pixels
    captions: list[str]
    labels: np.ndarray
    classnames: list[str]
    templates: list[str]
    rejected: Counter = field(default_factory=Counter)  # reason -> samples or shards left out

    def __len__(self) -> int:
        return len(self.captions)


def load_eval_set(eval_dir: str | Path) -> EvalSet:
    """Decode every sample of the directory's shards; damaged samples are counted in ``rejected``."""
    eval_dir = Path(eval_dir)
    if not eval_dir.is_dir():
        raise FileNotFoundError(f"eval directory not found: {eval_dir}")
    shards = sorted(str(path) for path in eval_dir.glob("*.tar"))
    if not shards:
        raise FileNotFoundError(f"no *.tar shards in eval directory {eval_dir}")
    classnames = _lines(eval_dir / "classnames.txt")
    if classnames is None or not classnames:
        raise FileNotFoundError(f"eval directory {eval_dir} has no classnames.txt (one class name per line)")
    templates = _lines(eval_dir / "templates.txt") or DEFAULT_TEMPLATES
    if not all("{}" in template for template in templates):
        raise ValueError(f"every line of {eval_dir / 'templates.txt'} needs a {{}} for the class name")

    rejected: Counter = Counter()

    def count_shard_error(error: Exception) -> bool:
        rejected[f"unreadable shard data: {type(error).__name__}"] += 1
        return True  # go on with the next shard

    images, captions, labels = [], [], []
    # Every process reads the whole eval set, in order: no node/worker splitting, no shuffling.
    dataset = wds.DataPipeline(wds.SimpleShardList(shards), wds.tarfile_to_samples(handler=count_shard_error))
    for sample in dataset:
        decoded = _decode(sample, len(classnames))
        if isinstance(decoded, str):
            rejected[decoded] += 1
            continue
        image, caption, label = decoded
        images.append(image)
        captions.append(caption)
        labels.append(label)
    if not images:
        raise ValueError(f"no readable samples in eval directory {eval_dir} ({dict(rejected)})")
    return EvalSet(stack_pixels(images), captions, np.asarray(labels, dtype=np.int64), classnames, templates,
                   rejected)


def _decode(sample: dict, n_classes: int) -> tuple[torch.Tensor, str, int] | str:
    """(image, caption, label), or the reason the sample cannot be used."""
    image_bytes = next((sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample), None)
    if image_bytes is None:
        return "missing image"
    if "txt" not in sample:
        return "missing caption"
    if "cls" not in sample:
        return "missing class"
    try:
        label = int(sample["cls"].decode().strip())
    except (UnicodeDecodeError, ValueError):
        return "unreadable class index"
    if not 0 <= label < n_classes:
        return "class index out of range"
    try:
        image = decode_image(image_bytes)
    except Exception:  # each decoder raises its own types for damaged files
        return "corrupt image"
    return image, sample["txt"].decode("utf-8", errors="replace").strip(), label


def _lines(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]
