"""Real Fashion-MNIST image/caption pairs for the model, eval and training tests."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

SOURCE = Path("/usr/share/datasets/fashion-mnist")
CLASSNAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
TEMPLATES = ["a photo of a {}.", "a picture of a {}."]


def load_fashion_mnist(split: str = "train", count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [n, 28, 28] and int labels [n] from the Debian idx files."""
    prefix = "train" if split == "train" else "t10k"
    images_file, labels_file = SOURCE / f"{prefix}-images-idx3-ubyte.gz", SOURCE / f"{prefix}-labels-idx1-ubyte.gz"
    if not images_file.is_file():
        pytest.skip(f"Fashion-MNIST not installed in {SOURCE} (Debian package dataset-fashion-mnist)")
    images = np.frombuffer(gzip.open(images_file).read(), np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.frombuffer(gzip.open(labels_file).read(), np.uint8, offset=8).astype(np.int64)
    return images[:count], labels[:count]


def captions(labels: np.ndarray, template: str = TEMPLATES[0]) -> list[str]:
    return [template.format(CLASSNAMES[label]) for label in labels]


def to_tensors(bundle, images: np.ndarray, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images through the bundle's preprocess, captions through its tokenizer."""
    pixels = torch.stack([bundle.preprocess(Image.fromarray(image)) for image in images])
    return pixels, bundle.tokenizer(texts)
