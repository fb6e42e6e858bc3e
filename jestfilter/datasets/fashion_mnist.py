"""Fashion-MNIST's four idx files (Debian's dataset-fashion-mnist): find and read them; the
demo's source."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jestfilter.datasets.captions import (CLASS_NOUNS, EVAL_TEMPLATES, RELATED_CLASSES, clean_caption,
                                          spam_caption)
from jestfilter.datasets.sources import Images, Sizes, Source

DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
SOURCE_ENV = "JESTFILTER_FASHION_MNIST"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass
class FashionMNIST:
    train_images: np.ndarray  # [60000, 28, 28] uint8
    train_labels: np.ndarray  # [60000] uint8
    test_images: np.ndarray
    test_labels: np.ndarray


def find_fashion_mnist(source: str | Path | None = None) -> Path:
    """The folder holding the four idx files: ``source``, $JESTFILTER_FASHION_MNIST or Debian's."""
    folder = Path(source or os.environ.get(SOURCE_ENV) or DEFAULT_SOURCE)
    if all(_idx_path(folder, name) for name in IDX_FILES.values()):
        return folder
    raise FileNotFoundError(
        f"Fashion-MNIST idx files not found in {folder}: run `apt-get install dataset-fashion-mnist` "
        f"or pass --source DIR (or set {SOURCE_ENV})"
    )


def _idx_path(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an idx file (plain or .gz): 2 zero bytes, dtype code, ndim, big-endian int32 dims."""
    path = Path(path)
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file")
    ndim = data[3]
    shape = tuple(np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(source: str | Path | None = None) -> FashionMNIST:
    folder = find_fashion_mnist(source)
    return FashionMNIST(**{field: read_idx(_idx_path(folder, name)) for field, name in IDX_FILES.items()})


class FashionSource(Source):
    """The demo: Fashion-MNIST's 28-px grayscale product photos, 10 classes."""

    def __init__(self) -> None:
        super().__init__(
            name="fashion", description="Fashion-MNIST product photos: 28 px grayscale, 10 classes (the demo)",
            needs="apt-get install dataset-fashion-mnist", classnames=[nouns[0] for nouns in CLASS_NOUNS],
            eval_templates=EVAL_TEMPLATES, sizes=Sizes(curated=2000, web=20000, eval=2000),
            related=RELATED_CLASSES)

    def locate(self, folder: str | Path | None) -> Path:
        return find_fashion_mnist(folder)

    def load(self, found: Path, train: int, test: int, seed: int) -> Images:
        data = load_fashion_mnist(found)
        return Images(data.train_images, data.train_labels, data.test_images, data.test_labels)

    def clean_caption(self, rng: np.random.Generator, cls: int, note: Any = None) -> str:
        return clean_caption(rng, cls)

    def spam_caption(self, rng: np.random.Generator, cls: int) -> str:
        return spam_caption(rng, cls)
