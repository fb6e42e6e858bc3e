"""Handwritten digits: the 5,000 20×20 digits of OpenCV's ``digits.png`` (Debian's opencv-doc),
upscaled to 28 px. A small set: its web pool is read many times."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from jestfilter.datasets.sources import Images, Sizes, Source, spam

DEFAULT_FILE = Path("/usr/share/doc/opencv-doc/examples/data/digits.png")
SOURCE_ENV = "JESTFILTER_DIGITS"
CELL, SIZE = 20, 28  # the sheet's digit cells, the size written
PER_CLASS_TEST = 100  # held out per class (fixed, whatever the build seed)

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# Digits people confuse in handwriting, for partly right captions.
RELATED = {0: [6], 1: [7], 2: [7], 3: [5, 8], 4: [9], 5: [3, 6], 6: [0, 5], 7: [1, 2], 8: [3, 9], 9: [4, 7]}
CAPTION_TEMPLATES = [
    "a handwritten digit {w}", "the number {d} written by hand", "digit {d}", "handwritten {w}",
    "a scanned digit: {w}", "{w}, written by hand", "number {d} in pencil", "a hand-drawn {d}",
    "the figure {w} on a form", "handwriting sample: {d}",
]  # fmt: skip
EVAL_TEMPLATES = ["a handwritten digit {}.", "the number {} written by hand.", "a scanned digit: {}."]
SPAM_WORDS = [
    "free", "download", "worksheet", "printable", "kids", "math", "font", "best", "stock", "vector",
    "png", "hd", "wallpaper", "2019", "cheap", "learn", "homework", "tattoo", "sticker", "number",
]  # fmt: skip


class DigitsSource(Source):
    """OpenCV's handwritten digit sheet: 500 digits a class, white on black."""

    def __init__(self) -> None:
        super().__init__(
            name="digits", description="handwritten digits (OpenCV's digits.png): 20 px upscaled to 28, 10 classes, "
                                       "a small web pool read many times",
            needs="apt-get install opencv-doc", classnames=WORDS, eval_templates=EVAL_TEMPLATES,
            sizes=Sizes(curated=1500, web=3400, eval=1000, augment=2), related=RELATED, flips=False)

    def locate(self, folder: str | Path | None) -> Path:
        path = Path(folder or os.environ.get(SOURCE_ENV) or DEFAULT_FILE)
        if path.is_dir():
            path = path / DEFAULT_FILE.name
        if not path.is_file():
            raise FileNotFoundError(f"OpenCV's digits.png not found at {path}: run `apt-get install opencv-doc` "
                                    f"or pass --source FILE (or set {SOURCE_ENV})")
        return path

    def load(self, found: Path, train: int, test: int, seed: int) -> Images:
        with Image.open(found) as sheet:
            pixels = np.asarray(sheet.convert("L"))
        rows, cols = pixels.shape[0] // CELL, pixels.shape[1] // CELL
        cells = pixels[: rows * CELL, : cols * CELL].reshape(rows, CELL, cols, CELL).transpose(0, 2, 1, 3)
        cells = cells.reshape(rows * cols, CELL, CELL)
        labels = np.repeat(np.arange(10, dtype=np.uint8), len(cells) // 10)  # 5 sheet rows a digit
        images = np.stack([np.asarray(Image.fromarray(c).resize((SIZE, SIZE), Image.BICUBIC)) for c in cells])
        order = np.random.default_rng(0).permutation(len(cells))
        test_rows = np.sort(np.concatenate([order[labels[order] == d][:PER_CLASS_TEST] for d in range(10)]))
        train_rows = np.setdiff1d(np.arange(len(cells)), test_rows)
        return Images(images[train_rows], labels[train_rows], images[test_rows], labels[test_rows])

    def clean_caption(self, rng: np.random.Generator, cls: int, note: Any = None) -> str:
        return CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))].format(w=WORDS[cls], d=cls)

    def spam_caption(self, rng: np.random.Generator, cls: int) -> str:
        return spam(rng, SPAM_WORDS, WORDS[cls])
