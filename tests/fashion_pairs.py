"""Real Fashion-MNIST image/caption pairs for the model, eval and training tests."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from PIL import Image

from jestfilter.datasets import captions, fashion_mnist

CLASSNAMES = [nouns[0] for nouns in captions.CLASS_NOUNS]  # what the demo writes to classnames.txt
TEMPLATES = ["a photo of a {}.", "a picture of a {}."]


@pytest.fixture
def one_torch_thread():
    """Train with one thread: on a shared 2-core box, competing OpenMP thread pools are 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def _fashion_mnist() -> fashion_mnist.FashionMNIST:
    try:
        return fashion_mnist.load_fashion_mnist()
    except FileNotFoundError as error:
        pytest.skip(str(error))


def load_fashion_mnist(split: str = "train", count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [n, 28, 28] and int64 labels [n] of a split, through the demo builder's reader."""
    data = _fashion_mnist()
    images, labels = (data.train_images, data.train_labels) if split == "train" else (data.test_images, data.test_labels)
    return images[:count], labels[:count].astype(np.int64)


def captions(labels: np.ndarray, template: str = TEMPLATES[0]) -> list[str]:
    return [template.format(CLASSNAMES[label]) for label in labels]


def to_tensors(bundle, images: np.ndarray, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images through the bundle's preprocess, captions through its tokenizer."""
    pixels = torch.stack([bundle.preprocess(Image.fromarray(image)) for image in images])
    return pixels, bundle.tokenizer(texts)
