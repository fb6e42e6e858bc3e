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

from jestfilter.data.pixels import Pixels, decode_checked, image_reason, stack_pixels
from jestfilter.data.shards import caption_of, image_member, iter_samples, member_of
from jestfilter.data.types import RawSample, Rejected

DEFAULT_TEMPLATES = ["a photo of a {}.", "a picture of a {}.", "an image of a {}."]


@dataclass
class EvalSet:
    """A decoded evaluation set, kept in memory and reused by every ``evaluate`` call.

    ``images`` are uint8 pixels as the training loader decodes them (``decode_checked``: one
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


def load_eval_set(eval_dir: str | Path, image_size: int | None = None) -> EvalSet:
    """Decode every sample of the directory's shards; damaged samples are counted in ``rejected``.
    ``image_size``: the input side of the models it will evaluate; JPEGs at least twice as large
    are decoded at reduced scale, as the training loader does (``jestfilter.data.pixels``)."""
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
    images, captions, labels = [], [], []
    # Every process reads the whole eval set, in order, through the training data's checks.
    for item in iter_samples(shards):
        decoded = item.reason if isinstance(item, Rejected) else _decode(item, len(classnames), image_size)
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


def _decode(sample: RawSample, n_classes: int, image_size: int | None) -> tuple[torch.Tensor, str, int] | str:
    """(image, caption, label) of a sample that passed the data plane's checks, or the reason
    it cannot be used (the data plane's reasons, docs/data.md, and the class index's own)."""
    cls = member_of(sample, ("cls",))
    if cls is None:
        return "missing_class"
    try:
        label = int(sample.members[cls].decode().strip())
    except (UnicodeDecodeError, ValueError):
        return "unreadable_class"
    if not 0 <= label < n_classes:
        return "class_out_of_range"
    try:
        image = decode_checked(sample.members[image_member(sample)], image_size)
    except Exception as error:  # each decoder raises its own types for damaged files
        return image_reason(error)
    return image, caption_of(sample), label


def _lines(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]
