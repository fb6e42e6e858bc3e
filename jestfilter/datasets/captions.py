"""Captions for the demo's Fashion-MNIST images: clean alt-text-like captions and the noisy
kinds real web captions come in (file names and boilerplate, shop spam)."""

from __future__ import annotations

import numpy as np

from jestfilter.datasets.sources import spam

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# Words a caption may use for each class; the first is the class name written to classnames.txt.
CLASS_NOUNS = [
    ["t-shirt", "top", "tee"],
    ["trousers", "pants"],
    ["pullover", "sweater", "jumper"],
    ["dress"],
    ["coat", "jacket"],
    ["sandal"],
    ["shirt", "button-up shirt"],
    ["sneaker", "trainer", "running shoe"],
    ["bag", "handbag"],
    ["ankle boot", "boot"],
]
PLURAL_NOUNS = {"trousers", "pants"}
# Look-alike classes for "partly right" captions (the classes Fashion-MNIST models confuse).
RELATED_CLASSES = {0: [6], 2: [4, 6], 3: [4], 4: [2], 5: [7], 6: [0, 2], 7: [5, 9], 9: [7]}

CAPTION_TEMPLATES = [
    "a photo of {a}",
    "black and white picture of {a}",
    "product shot: {n}",
    "{a} on a plain background",
    "a small grayscale photo of {a}",
    "catalog photo of {a}",
    "{n}, studio shot",
    "low resolution image of {a}",
]
EVAL_TEMPLATES = [
    "a photo of the {}.",
    "black and white picture of the {}.",
    "product shot: {}.",
    "a low resolution photo of the {}.",
    "a catalog image of the {}.",
]
SPAM_WORDS = [
    "free", "shipping", "sale", "cheap", "buy", "now", "best", "price", "50%", "off", "new", "2019",
    "women", "men", "fashion", "outlet", "discount", "hot", "deal", "wholesale", "online", "shop",
]


def _with_article(noun: str) -> str:
    if noun in PLURAL_NOUNS:
        return f"a pair of {noun}"
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def clean_caption(rng: np.random.Generator, cls: int) -> str:
    noun = CLASS_NOUNS[cls][rng.integers(len(CLASS_NOUNS[cls]))]
    return CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))].format(a=_with_article(noun), n=noun)


def spam_caption(rng: np.random.Generator, cls: int) -> str:
    """The right class name buried in shop spam."""
    return spam(rng, SPAM_WORDS, CLASS_NOUNS[cls][0])
