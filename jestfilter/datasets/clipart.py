"""Clip art with its titles: Debian's openclipart-png, ten of its top folders as the classes, each
picture on white, padded to a square, at 28 px. Real image-text pairs: a caption is the folder
path and the file's title (``food/desserts/birthday_cake.png`` → "food desserts: birthday cake")."""

from __future__ import annotations

import functools
import os
import re
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from jestfilter.datasets.sources import Images, Sizes, Source, spam

DEFAULT_FOLDER = Path("/usr/share/openclipart/png")
SOURCE_ENV = "JESTFILTER_CLIPART"
SIZE = 28
FOLDERS = ["animals", "food", "people", "transportation", "recreation", "computer", "shapes", "signs_and_symbols",
           "tools", "office"]
PER_CLASS = 600  # pictures read per folder (the first by a fixed shuffle): big folders do not crowd out small ones
PER_CLASS_TEST = 80  # of those, held out for eval
MAX_PIXELS = 4096 * 4096  # a few files are hundreds of megapixels: skipped
CAPTION_TEMPLATES = ["{top} {sub}: {title}", "clip art of {title}, {top}", "{title} ({top})", "{top} clipart - {title}"]
EVAL_TEMPLATES = ["clip art of {}.", "a drawing from {}.", "{} clipart.", "an icon of {}."]
SPAM_WORDS = ["free", "clipart", "vector", "png", "download", "svg", "cartoon", "image", "drawing", "icon",
              "stock", "royalty", "art", "graphics", "cute", "best", "hd", "transparent", "set", "collection"]


class Title(NamedTuple):
    """What a picture's caption may say beyond its class: its sub-folder and its title."""

    sub: str
    title: str


def words(name: str) -> str:
    """File or folder name → words: underscores and dashes to spaces, digits and dots dropped."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-.\d]+", " ", name)).strip()


def render(path: Path) -> np.ndarray | None:
    """The picture on white, padded to a square, at 28 px: uint8 ``[28, 28, 3]``; None for a file
    PIL cannot read or a huge one."""
    try:
        with warnings.catch_warnings():  # a huge file is skipped below, not decoded: no bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    return None
                image.thumbnail((8 * SIZE, 8 * SIZE), Image.LANCZOS)  # a cheap first shrink of big files
                image = image.convert("RGBA")
    except (OSError, Image.DecompressionBombError):
        return None
    side = max(image.size)
    canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    canvas.alpha_composite(image, ((side - image.width) // 2, (side - image.height) // 2))
    return np.asarray(canvas.convert("RGB").resize((SIZE, SIZE), Image.LANCZOS))


@functools.cache
def pictures(found: Path) -> dict[str, list[tuple[np.ndarray, int, Title]]]:
    """(pixels, class, title) of the train and test pictures: the first ``PER_CLASS`` readable
    ones of each folder by a fixed shuffle (whatever the build seed, as the other sets' splits),
    ``PER_CLASS_TEST`` of them held out. Read once per process: reading thousands of PNGs is slow."""
    rng = np.random.default_rng(0)
    split: dict[str, list] = {"train": [], "test": []}
    for label, folder in enumerate(FOLDERS):
        paths = sorted((found / folder).rglob("*.png"))
        kept = []
        for i in rng.permutation(len(paths)):
            if len(kept) == PER_CLASS:
                break
            pixels = render(paths[i])
            if pixels is not None:
                parts = paths[i].relative_to(found / folder).parts
                kept.append((pixels, label, Title(words(parts[0]) if len(parts) > 1 else "",
                                                  words(paths[i].stem) or "picture")))
        split["test"] += kept[:PER_CLASS_TEST]
        split["train"] += kept[PER_CLASS_TEST:]
    return split


class ClipartSource(Source):
    """Ten openclipart folders as classes; a caption names the folder and the picture's title."""

    def __init__(self) -> None:
        super().__init__(
            name="clipart", description="openclipart drawings with their titles: 28 px RGB, 10 classes",
            needs="apt-get install openclipart-png", classnames=[words(folder) for folder in FOLDERS],
            eval_templates=EVAL_TEMPLATES, sizes=Sizes(curated=1000, web=8000, eval=800, augment=4))
        self.titles: list[list[Title]] = [[] for _ in FOLDERS]  # every train picture's title, per class

    def locate(self, folder: str | Path | None) -> Path:
        path = Path(folder or os.environ.get(SOURCE_ENV) or DEFAULT_FOLDER)
        if not all((path / name).is_dir() for name in FOLDERS):
            raise FileNotFoundError(f"openclipart's PNG folders not found in {path}: run `apt-get install "
                                    f"openclipart-png` or pass --source DIR (or set {SOURCE_ENV})")
        return path

    def load(self, found: Path, train: int, test: int, seed: int) -> Images:
        split = pictures(found)
        self.titles = [[title for _, label, title in split["train"] if label == cls] for cls in range(len(FOLDERS))]
        arrays = {name: (np.stack([p for p, _, _ in rows]), np.array([label for _, label, _ in rows], np.uint8))
                  for name, rows in split.items()}
        return Images(*arrays["train"], *arrays["test"], train_notes=[title for _, _, title in split["train"]],
                      test_notes=[title for _, _, title in split["test"]])

    def clean_caption(self, rng: np.random.Generator, cls: int, note: Any = None) -> str:
        """The folder and the picture's title; without a picture (a mismatched caption, a junk
        image), the title of a random picture of the class."""
        title = note if note is not None else self.titles[cls][rng.integers(len(self.titles[cls]))]
        template = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]
        return " ".join(template.format(top=self.classnames[cls], sub=title.sub, title=title.title).split())

    def spam_caption(self, rng: np.random.Generator, cls: int) -> str:
        return spam(rng, SPAM_WORDS, self.classnames[cls])
