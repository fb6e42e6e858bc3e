"""A colour glyph set rendered from the fonts of Debian's fonts-* packages: ``symbols``, 50
pictographic Unicode symbols named by their Unicode names (snowman, anchor, chess knight, ...).

Each image is one glyph of one font, in a random colour on a lighter random background colour,
near the centre, at a random size and slant (rendered at 4× and downsampled, so edges are
antialiased). Glyphs placed anywhere in the frame at half to 0.9 of its size, many fonts a
class, or captions naming colours often taught a tiny model almost nothing (docs/benchmarks.md);
so did Latin and Greek letters in any rendering tried (the letter is one token of the caption).
Train and eval images are drawn from the same fonts, each image with its own colours, size,
slant and place (as Fashion-MNIST's test photos come from the same catalogue as its training
ones; eval fonts held out entirely left a tiny model at chance). Captions name the class and
often the colours or the typeface, as alt-text of such images does.
"""

from __future__ import annotations

import functools
import hashlib
import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jestfilter.datasets.sources import Images, Sizes, Source, spam

FONT_ROOTS = [Path("/usr/share/fonts"), Path("/usr/share/texmf/fonts/opentype/public/tex-gyre")]
FONT_ENV = "JESTFILTER_FONTS"
# The font folders of the packages the suite names (others that happen to be installed are ignored,
# so that a build depends only on these packages).
FONT_DIRS = ["truetype/dejavu", "truetype/liberation2", "truetype/freefont", "opentype/urw-base35",
             "tex-gyre", "truetype/noto", "truetype/ancient-scripts", "truetype/crosextra",
             "opentype/linux-libertine", "opentype/ebgaramond", "truetype/open-sans", "truetype/lato",
             "opentype/cantarell", "opentype/comic-neue", "truetype/quicksand", "fonts-go", "truetype/hack",
             "opentype/stix"]  # fmt: skip
# The Debian packages of those folders (the Makefile's `make packages` installs the same list).
FONT_PACKAGES = " ".join((Path(__file__).parent / "font-packages.txt").read_text().split())
SIZE, SCALE = 28, 4  # written size; rendered at SCALE× first

COLOURS = {  # name → RGB centre; each draw jitters it a little
    "red": (200, 30, 30), "orange": (240, 140, 20), "yellow": (240, 220, 40), "green": (40, 160, 60),
    "teal": (20, 140, 140), "blue": (40, 70, 200), "purple": (120, 50, 170), "pink": (240, 130, 180),
    "brown": (120, 70, 30), "black": (15, 15, 15), "white": (245, 245, 245), "grey": (128, 128, 128),
}  # fmt: skip


@dataclass(frozen=True)
class Look:
    """How one glyph image was drawn (what a caption may mention)."""

    font: str  # the typeface's name, e.g. "DejaVu Serif Bold"
    ink: str  # colour names
    paper: str


@dataclass(frozen=True)
class Jitter:
    """How much one image of a glyph may differ from another: its size (share of the frame) and slant."""

    sizes: tuple[float, float] = (0.8, 0.9)
    slant: float = 5.0  # degrees either way
    shift: float = 0.1  # share of the free margin the glyph may move off the centre (0: centred)


class GlyphSource(Source):
    """A set of glyph classes, each one or more code points, rendered from the suite's fonts."""

    glyphs: list[str]  # per class, the character drawn
    jitter: Jitter = Jitter()
    fonts_per_class: int | None = None  # draw each class from at most this many of its fonts (spread by name)

    def locate(self, folder: str | Path | None) -> Path:
        root = folder or os.environ.get(FONT_ENV)
        roots = [Path(root)] if root else FONT_ROOTS
        if not font_files(tuple(roots)):
            raise FileNotFoundError(f"no fonts found for the {self.name} set: run `apt-get install {FONT_PACKAGES}` "
                                    f"or pass --source DIR holding .ttf/.otf files (or set {FONT_ENV})")
        return Path(root) if root else FONT_ROOTS[0]

    def identity(self, found: Path) -> dict:
        fonts = font_files(self._roots(found))
        digest = hashlib.sha256("\n".join(f"{p.name} {p.stat().st_size}" for p in fonts).encode()).hexdigest()
        return {"source": str(found.resolve()), "fonts": len(fonts), "fonts_sha256": digest[:16],
                "fonts_per_class": self.fonts_per_class,
                "jitter": [*self.jitter.sizes, self.jitter.slant, self.jitter.shift]}

    def _roots(self, found: Path) -> tuple[Path, ...]:
        return tuple(FONT_ROOTS) if found == FONT_ROOTS[0] else (found,)

    def load(self, found: Path, train: int, test: int, seed: int) -> Images:
        fonts = dict(enumerate(self.covering_fonts(found)))
        train_images, train_labels, notes = self.render(np.random.default_rng([seed, 8]), train, fonts)
        test_images, test_labels, test_notes = self.render(np.random.default_rng([seed, 9]), test, fonts)
        return Images(train_images, train_labels, test_images, test_labels, notes, test_notes)

    def covering_fonts(self, found: Path) -> list[list[Path]]:
        """Per class, the fonts that draw its glyph (a non-empty shape, not the missing-glyph box)."""
        covering = [[font for font in font_files(self._roots(found)) if draws(font, glyph)] for glyph in self.glyphs]
        empty = [self.glyphs[c] for c, fonts in enumerate(covering) if len(fonts) < 2]
        if empty:
            raise FileNotFoundError(f"fewer than 2 fonts draw {' '.join(empty)}: install {FONT_PACKAGES}")
        if self.fonts_per_class:  # evenly spaced through the sorted list: many families, not one's weights
            covering = [[fonts[i] for i in np.linspace(0, len(fonts) - 1, min(len(fonts), self.fonts_per_class)
                                                       ).round().astype(int)] for fonts in covering]
        return covering

    def render(self, rng: np.random.Generator, n: int, fonts: dict[int, list[Path]]
               ) -> tuple[np.ndarray, np.ndarray, list[Look]]:
        """``n`` images of random classes (balanced), their labels and looks."""
        labels = rng.permutation(np.arange(n) % self.classes).astype(np.int16)
        images = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
        looks = []
        for i, cls in enumerate(labels):
            font = fonts[int(cls)][rng.integers(len(fonts[int(cls)]))]
            images[i], look = draw(rng, font, self.glyphs[cls], self.jitter)
            looks.append(look)
        return images, labels, looks


@functools.cache
def font_files(roots: tuple[Path, ...]) -> list[Path]:
    """Every .ttf/.otf under the suite's font folders (or under a folder given instead), sorted."""
    if roots == tuple(FONT_ROOTS):
        folders = [FONT_ROOTS[1]] + [FONT_ROOTS[0] / d for d in FONT_DIRS if d != "tex-gyre"]
    else:
        folders = list(roots)
    files = {p for folder in folders if folder.is_dir() for p in folder.rglob("*") if p.suffix.lower() in (".ttf", ".otf")}
    return sorted(files, key=lambda p: p.name)


@functools.cache
def _font(path: Path) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), 24 * SCALE)


@functools.cache
def _mask(path: Path, glyph: str) -> Image.Image | None:
    """The glyph's shape cut to its ink, as an 'L' image (None when the font has no such glyph)."""
    font = _font(path)
    try:
        ink = font.getmask(glyph, mode="L")
    except (OSError, ValueError):
        return None
    image = Image.frombytes("L", ink.size, bytes(ink)) if ink.size[0] and ink.size[1] else None
    if image is None or image.getbbox() is None:
        return None
    if _is_missing_glyph(path, glyph):
        return None
    return image.crop(image.getbbox())


@functools.cache
def _cmap(path: Path) -> frozenset[int]:
    from fontTools.ttLib import TTFont  # matplotlib's dependency, present with the report's plots

    try:
        with TTFont(str(path), lazy=True) as font:
            return frozenset((font.getBestCmap() or {}).keys())
    except Exception:  # a file fontTools cannot read is a font we do not use
        return frozenset()


def _is_missing_glyph(path: Path, glyph: str) -> bool:
    return any(ord(ch) not in _cmap(path) for ch in glyph)


def draws(font: Path, glyph: str) -> bool:
    """Whether ``font`` has a real, visible shape for ``glyph``."""
    return not _is_missing_glyph(font, glyph) and _mask(font, glyph) is not None


def font_name(path: Path) -> str:
    """'DejaVuSerif-Bold.ttf' → 'DejaVuSerif Bold' (file names are what every font has)."""
    return path.stem.replace("-", " ").replace("_", " ")


def _luma(name: str) -> float:
    r, g, b = COLOURS[name]
    return 0.299 * r + 0.587 * g + 0.114 * b


def _darker(ink: str, paper: str) -> bool:
    """Ink at least 0.3 of the range darker than its paper: print-like, so a glyph's shape never
    flips between dark-on-light and light-on-dark (a tiny model learned nothing when it did)."""
    return _luma(paper) - _luma(ink) >= 0.3 * 255


PAPERS = [name for name in COLOURS if any(_darker(ink, name) for ink in COLOURS)]


def _colour(rng: np.random.Generator, names: list[str]) -> tuple[str, tuple[int, int, int]]:
    name = names[rng.integers(len(names))]
    jitter = rng.integers(-20, 21, size=3)
    return name, tuple(int(v) for v in np.clip(np.array(COLOURS[name]) + jitter, 0, 255))


def draw(rng: np.random.Generator, font: Path, glyph: str, jitter: Jitter = Jitter()) -> tuple[np.ndarray, Look]:
    """One image of ``glyph`` in ``font``: random colours, size, slant and position;
    ``[SIZE, SIZE, 3]`` uint8 and its look."""
    paper_name, paper = _colour(rng, PAPERS)
    ink_name, ink = _colour(rng, [name for name in COLOURS if _darker(name, paper_name)])
    shape = _mask(font, glyph)
    frame = SIZE * SCALE
    side = rng.uniform(*jitter.sizes) * frame
    ratio = side / max(shape.size)
    shape = shape.resize((max(1, round(shape.width * ratio)), max(1, round(shape.height * ratio))), Image.BICUBIC)
    shape = shape.rotate(rng.uniform(-jitter.slant, jitter.slant), resample=Image.BICUBIC, expand=True)
    left, top = (round((frame - side) / 2 + jitter.shift * (frame - side) / 2 * rng.uniform(-1, 1))
                 for side in shape.size)
    layer = Image.new("L", (frame, frame), 0)
    layer.paste(shape, (int(left), int(top)))
    image = Image.composite(Image.new("RGB", (frame, frame), ink), Image.new("RGB", (frame, frame), paper), layer)
    pixels = np.asarray(image.resize((SIZE, SIZE), Image.LANCZOS))
    return pixels, Look(font_name(font), ink_name, paper_name)


def _glyph_caption(rng: np.random.Generator, templates: list[str], noun: str, look: Look | None) -> str:
    """A caption naming ``noun``, and the look's colours or typeface where the template says so
    (a caption without a look, e.g. on a junk image, keeps to the noun)."""
    if look is None:
        templates = [t for t in templates if {f for _, f, _, _ in string.Formatter().parse(t) if f} == {"noun"}]
        look = Look("", "", "")
    template = templates[rng.integers(len(templates))]
    a_ink = f"{'an' if look.ink[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {look.ink}"
    return template.format(noun=noun, font=look.font, ink=look.ink, a_ink=a_ink, paper=look.paper)


# ---------------------------------------------------------------------------------------------
# symbols


# (code point, class name, other words for it, group): 50 pictures of things, one glyph per
# concept, so that no two classes are the same shape (100 classes, zodiac and planet signs among
# them, left a tiny model at chance on the noisy web pool); groups give "partly right" captions
# a look-alike to name instead.
SYMBOLS = [
    (0x2601, "cloud", ["cloud symbol"], "weather"), (0x2602, "umbrella", ["parasol"], "weather"),
    (0x2603, "snowman", ["snow man"], "weather"), (0x2605, "star", ["filled star"], "sky"),
    (0x2607, "lightning", ["lightning bolt"], "weather"), (0x260E, "telephone", ["phone"], "objects"),
    (0x2615, "hot beverage", ["cup of coffee"], "objects"), (0x2618, "shamrock", ["clover"], "plants"),
    (0x261B, "pointing hand", ["index finger"], "hands"), (0x2620, "skull and crossbones", ["jolly roger"], "warnings"),
    (0x2622, "radioactive sign", ["radiation"], "warnings"), (0x2623, "biohazard sign", ["biohazard"], "warnings"),
    (0x262E, "peace symbol", ["peace sign"], "emblems"), (0x262F, "yin yang", ["yin and yang"], "emblems"),
    (0x2638, "wheel of dharma", ["dharma wheel"], "emblems"), (0x2639, "frowning face", ["sad face"], "faces"),
    (0x263A, "smiling face", ["smiley"], "faces"), (0x263C, "sun with rays", ["sun"], "sky"),
    (0x263D, "crescent moon", ["moon"], "sky"), (0x2640, "female sign", ["venus symbol"], "signs"),
    (0x2642, "male sign", ["mars symbol"], "signs"), (0x265A, "chess king", ["king piece"], "chess"),
    (0x265C, "chess rook", ["castle piece"], "chess"), (0x265E, "chess knight", ["horse piece"], "chess"),
    (0x2660, "spade", ["spade suit"], "cards"), (0x2663, "club", ["club suit"], "cards"),
    (0x2665, "heart", ["heart suit"], "cards"), (0x2666, "diamond", ["diamond suit"], "cards"),
    (0x2669, "quarter note", ["crotchet"], "music"), (0x266B, "beamed eighth notes", ["two quavers"], "music"),
    (0x267B, "recycling symbol", ["recycle sign"], "signs"), (0x267F, "wheelchair", ["accessibility sign"], "signs"),
    (0x2691, "flag", ["black flag"], "objects"), (0x2693, "anchor", ["ship anchor"], "objects"),
    (0x2696, "scales", ["balance"], "tools"), (0x2699, "gear", ["cog"], "tools"),
    (0x269B, "atom", ["atom symbol"], "emblems"), (0x269C, "fleur-de-lis", ["lily emblem"], "emblems"),
    (0x26A0, "warning sign", ["caution triangle"], "warnings"), (0x2702, "scissors", ["shears"], "tools"),
    (0x2708, "airplane", ["plane"], "objects"), (0x2709, "envelope", ["letter"], "objects"),
    (0x270C, "victory hand", ["peace fingers"], "hands"), (0x270D, "writing hand", ["hand with pen"], "hands"),
    (0x270F, "pencil", ["pencil drawing"], "tools"), (0x2714, "check mark", ["tick"], "marks"),
    (0x271D, "latin cross", ["christian cross"], "crosses"), (0x2721, "star of david", ["hexagram"], "emblems"),
    (0x2744, "snowflake", ["snow crystal"], "weather"), (0x262D, "hammer and sickle", ["sickle"], "emblems"),
]  # fmt: skip
# Most captions name only the symbol: a caption that names colours lets a model match pairs by
# colour alone (a shortcut that taught a tiny model nothing about shapes when most captions did).
SYMBOL_CAPTIONS = [
    "the {noun} symbol", "{noun} icon", "clip art: {noun}", "dingbat: {noun}", "{noun}", "{noun} emblem",
    "{noun} pictogram", "a {noun} sign", "{noun} glyph from {font}", "{a_ink} {noun} on {paper}",
]  # fmt: skip
SYMBOL_EVAL_TEMPLATES = ["the {} symbol.", "an icon of a {}.", "{}.", "a {} pictogram."]
SYMBOL_SPAM = ["free", "icon", "vector", "png", "download", "clipart", "emoji", "sticker", "tattoo", "logo",
               "svg", "stock", "cheap", "set", "pack", "hd", "best", "unicode", "copy", "paste"]  # fmt: skip


class SymbolsSource(GlyphSource):
    """50 Unicode symbols that are pictures of things (weather, chess, cards, tools, signs)."""

    fonts_per_class = 4

    def __init__(self) -> None:
        self.glyphs = [chr(code) for code, *_ in SYMBOLS]
        self.words = [[name, *others] for _, name, others, _ in SYMBOLS]
        groups = [group for *_, group in SYMBOLS]
        related = {i: [j for j, g in enumerate(groups) if g == group and j != i] for i, group in enumerate(groups)}
        super().__init__(
            name="symbols", description="Unicode pictographs in colour (snowman, anchor, chess knight, ...), 4 fonts "
                                        "a symbol: 28 px RGB, 50 classes, a large web pool",
            needs=f"apt-get install {FONT_PACKAGES}", classnames=[name for _, name, _, _ in SYMBOLS],
            eval_templates=SYMBOL_EVAL_TEMPLATES, sizes=Sizes(curated=4000, web=200000, eval=2000),
            related={i: r for i, r in related.items() if r}, flips=False)

    def clean_caption(self, rng: np.random.Generator, cls: int, note: Any = None) -> str:
        words = self.words[cls]
        return _glyph_caption(rng, SYMBOL_CAPTIONS, words[rng.integers(len(words))], note)

    def spam_caption(self, rng: np.random.Generator, cls: int) -> str:
        return spam(rng, SYMBOL_SPAM, self.words[cls][0])
