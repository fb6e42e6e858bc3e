"""The image sources of the validation suite: labelled real images and the words captions use.

Every set of the suite (``SETS``) is one ``Source``: where its images come from (a Debian
package), how its clean and spam captions read, which classes a "partly right" caption may
name instead, and the zero-shot class names and templates of its eval folder. The demo-data
builder (``jestfilter.datasets.demo``) turns any source into curated / noisy web / eval shards
with the same noise kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Images:
    """A source's labelled images, uint8 ``[n, s, s]`` (grayscale) or ``[n, s, s, 3]`` (RGB).

    ``train_notes`` / ``test_notes``: per image, what a caption may say about it beyond its class
    (a glyph's font and colours, a drawing's title), or None."""

    train: np.ndarray
    train_labels: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray
    train_notes: list[Any] | None = None
    test_notes: list[Any] | None = None


@dataclass(frozen=True)
class Sizes:
    """A set's default split sizes: curated, web and eval pairs, and the web's image variants."""

    curated: int
    web: int
    eval: int
    augment: int = 1


@dataclass
class Source:
    """One set of the suite. Subclasses load the images and write the captions."""

    name: str
    description: str
    needs: str  # what to install for it
    classnames: list[str]  # the eval folder's classnames.txt, one per class
    eval_templates: list[str]  # templates.txt ("{}" is the class name)
    sizes: Sizes
    related: dict[int, list[int]] = field(default_factory=dict)  # look-alike classes for partly right captions
    flips: bool = True  # may a web variant be mirrored (not for digits or letters)

    def locate(self, folder: str | Path | None) -> Path:
        """The folder (or file) the images come from; raises FileNotFoundError saying what to install."""
        raise NotImplementedError

    def identity(self, found: Path) -> dict:
        """What identifies the source files in a build's parameters (a build is reused only when equal)."""
        return {"source": str(found.resolve())}

    def load(self, found: Path, train: int, test: int, seed: int) -> Images:
        """At least ``train`` train and ``test`` test images (sources that render make that many)."""
        raise NotImplementedError

    def clean_caption(self, rng: np.random.Generator, cls: int, note: Any = None) -> str:
        raise NotImplementedError

    def spam_caption(self, rng: np.random.Generator, cls: int) -> str:
        raise NotImplementedError

    @property
    def classes(self) -> int:
        return len(self.classnames)


UNINFORMATIVE_CAPTIONS = [
    "IMG_{4}.jpg", "DSC{5}", "image", "untitled", "click here", "photo", "thumbnail",
    "view larger image", "no description available", "screenshot_{4}", "image {1} of 8", "{3}.jpeg",
]  # fmt: skip


def uninformative_caption(rng: np.random.Generator) -> str:
    """File names and boilerplate, the same for every set; ``{k}`` becomes a random k-digit number."""
    template = UNINFORMATIVE_CAPTIONS[rng.integers(len(UNINFORMATIVE_CAPTIONS))]
    return template.format(*[f"{rng.integers(10**k):0{k}d}" for k in range(6)])


def spam(rng: np.random.Generator, words: list[str], name: str) -> str:
    """``name`` buried in 6 to 10 of ``words`` (shop and download-site spam)."""
    chosen = list(rng.choice(words, size=rng.integers(6, 11), replace=False))
    chosen.insert(rng.integers(len(chosen) + 1), name)
    return " ".join(chosen)
