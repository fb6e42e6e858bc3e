"""The demo and the validation suite: curated / noisy web / eval shards built from real images.

The demo is Fashion-MNIST (``set="fashion"``); the suite's other sets (``SETS``: handwritten
digits, colour symbols, clip art) are built the same way from their own sources.
Images are stored as RGB JPEG (quality 95) because that is what img2dataset writes by default
and what open_clip_train's loader expects; JPEG encoding and decoding are deterministic, so
equal pixels give equal bytes. Shards follow img2dataset's layout (``00000.tar`` holding
``KEY.jpg``, ``KEY.txt``, ``KEY.json``, plus ``00000_stats.json``, ``00000.parquet`` and
``sizes.json``), see :mod:`jestfilter.data.layout`.

Splits draw disjoint images: curated and web from the train split, eval from the test split.
The web split mixes clean pairs with the noise kinds of real alt-text (see ``NOISE_KINDS``);
``web_truth.parquet``, outside the shards, names each web sample's kind.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import webdataset as wds
from PIL import Image
from tqdm import tqdm

from jestfilter.data.atomic import atomic_write_json
from jestfilter.data.layout import brace_pattern, sample_key, shard_name, write_sizes_json
from jestfilter.datasets.captions import CLASS_NAMES
from jestfilter.datasets.clipart import ClipartSource
from jestfilter.datasets.digits import DigitsSource
from jestfilter.datasets.fashion_mnist import FashionSource
from jestfilter.datasets.glyphs import SymbolsSource
from jestfilter.datasets.kinds import DEFAULT_MIX, NOISE_KINDS, SET_NAMES
from jestfilter.datasets.sources import Source, uninformative_caption

SETS: dict[str, Source] = {source.name: source for source in
                           (FashionSource(), DigitsSource(), SymbolsSource(), ClipartSource())}
assert list(SETS) == SET_NAMES
DUPLICATE_REPEATS = 50  # each duplicated sample appears about this many times
JUNK_TYPES = ["noise", "blank", "scrambled"]
TAR_MTIME = 946684800  # fixed member time (2000-01-01) so equal seeds give byte-identical tars
JPEG_QUALITY = 95


@dataclass
class DemoSample:
    """One image-text pair to write, with what we know about it."""

    pixels: np.ndarray  # [s, s] (grayscale) or [s, s, 3] (RGB) uint8
    caption: str
    kind: str = "clean"
    true_class: int | None = None  # the image's class (None: a junk image of no class)
    caption_class: int | None = None  # the class the caption names (None: it names none)
    detail: str | None = None  # junk type, partial type, duplicate group
    source_index: int | None = None  # index in the source's train split (variant v of image j: v · n_train + j)


@dataclass
class DemoPaths:
    """Where the demo lives: brace patterns for curated/web, the eval folder, the truth file."""

    root: Path
    curated: str
    web: str
    eval: Path
    truth: Path
    split_counts: dict[str, int] = field(default_factory=dict)
    kind_counts: dict[str, int] = field(default_factory=dict)
    reused: bool = False


# ---------------------------------------------------------------------------------------------
# Splits


@dataclass
class Pool:
    """Images to draw samples from, with their labels and looks (``notes``, or None)."""

    images: np.ndarray
    labels: np.ndarray
    notes: list[Any] | None = None

    def note(self, i: int) -> Any:
        return None if self.notes is None else self.notes[i % len(self.notes)]  # variants share their image's


def _clean_samples(rng: np.random.Generator, source: Source, pool: Pool, indices) -> list[DemoSample]:
    samples = []
    for i in indices:
        cls = int(pool.labels[i])
        caption = source.clean_caption(rng, cls, pool.note(int(i)))
        samples.append(DemoSample(pool.images[i], caption, "clean", cls, cls, None, int(i)))
    return samples


def allocate(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split ``total`` into integer counts proportional to ``weights`` (largest remainder)."""
    if total == 0:
        return dict.fromkeys(weights, 0)
    norm = sum(weights.values())
    exact = {kind: total * w / norm for kind, w in weights.items()}
    counts = {kind: math.floor(x) for kind, x in exact.items()}
    by_remainder = sorted(exact, key=lambda kind: (-(exact[kind] - counts[kind]), list(weights).index(kind)))
    for kind in by_remainder[: total - sum(counts.values())]:
        counts[kind] += 1
    return counts


def _junk_image(rng: np.random.Generator, kind: str, donor: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Noise, one flat colour, or the donor's patches shuffled: texture but no object."""
    if kind == "noise":
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    if kind == "blank":
        colour = rng.integers(0, 256) if len(shape) == 2 else rng.integers(0, 256, size=shape[2:])
        return np.full(shape, colour, dtype=np.uint8)
    # scrambled: the donor's 4 × 4 grid of patches in random order
    side, channels = shape[0], shape[2:]
    p = side // 4
    grid = donor[: 4 * p, : 4 * p].reshape(4, p, 4, p, *channels).swapaxes(1, 2).reshape(16, p, p, *channels)
    scrambled = grid[rng.permutation(16)].reshape(4, 4, p, p, *channels).swapaxes(1, 2).reshape(4 * p, 4 * p, *channels)
    out = donor.copy()
    out[: 4 * p, : 4 * p] = scrambled
    return out


def variants(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, pool: np.ndarray,
             k: int, flips: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``images`` followed by k − 1 randomly flipped (where ``flips``) and shifted (±2 px) copies,
    their labels, and ``pool`` spread over all k variants in a random order (the originals'
    pool first when k = 1)."""
    if k == 1:
        return images, labels, pool
    copies = [images]
    side = images.shape[1]
    edges = ((0, 0), (2, 2), (2, 2)) + ((0, 0),) * (images.ndim - 3)
    for _ in range(k - 1):
        moved = images
        if flips:
            flip = rng.random(len(images)) < 0.5
            moved = np.where(flip.reshape(-1, *[1] * (images.ndim - 1)), images[:, :, ::-1], images)
        shifts = rng.integers(-2, 3, size=(len(images), 2))
        padded = np.pad(moved, edges, mode="constant" if images.ndim == 3 else "edge")
        copies.append(np.stack([padded[i, 2 + dy:2 + side + dy, 2 + dx:2 + side + dx]
                                for i, (dy, dx) in enumerate(shifts)]))
    n = len(images)
    return np.concatenate(copies), np.tile(labels, k), rng.permutation(np.concatenate([pool + v * n for v in range(k)]))


def web_samples(
    rng: np.random.Generator, source: Source, pool: Pool, order: np.ndarray, counts: dict[str, int]
) -> list[DemoSample]:
    """The web split: ``counts[kind]`` samples of each kind, in random order.

    Every real image is taken once from ``order`` (indices into ``pool``), except a duplicate
    group's image, which repeats with its caption.
    """
    donors = iter(order)
    images, labels, classes = pool.images, pool.labels, source.classes

    def real(i, kind: str, caption_class: int | None, caption: str, detail: str | None = None) -> DemoSample:
        return DemoSample(images[i], caption, kind, int(labels[i]), caption_class, detail, int(i))

    samples = _clean_samples(rng, source, pool, [next(donors) for _ in range(counts["clean"])])
    for _ in range(counts["mismatched"]):
        i = next(donors)
        other = int((labels[i] + rng.integers(1, classes)) % classes)
        samples.append(real(i, "mismatched", other, source.clean_caption(rng, other)))  # another image's caption
    for _ in range(counts["uninformative"]):
        samples.append(real(next(donors), "uninformative", None, uninformative_caption(rng)))
    for _ in range(counts["junk_image"]):
        junk = JUNK_TYPES[rng.integers(len(JUNK_TYPES))]
        i = next(donors) if junk == "scrambled" else None
        pixels = _junk_image(rng, junk, None if i is None else images[i], images.shape[1:])
        cls = int(rng.integers(classes))
        donor = None if i is None else int(i)
        samples.append(DemoSample(pixels, source.clean_caption(rng, cls), "junk_image", None, cls, junk, donor))
    n_groups = math.ceil(counts["duplicate"] / DUPLICATE_REPEATS)
    for group, size in enumerate(allocate(counts["duplicate"], dict.fromkeys(range(n_groups), 1)).values()):
        i = next(donors)
        caption = source.clean_caption(rng, int(labels[i]), pool.note(int(i)))
        samples += [real(i, "duplicate", int(labels[i]), caption, f"group {group}")] * size
    for _ in range(counts["partial"]):
        i = next(donors)
        cls = int(labels[i])
        if cls in source.related and rng.random() < 0.5:
            related = source.related[cls][rng.integers(len(source.related[cls]))]
            samples.append(real(i, "partial", related, source.clean_caption(rng, related, pool.note(int(i))),
                                "related"))
        else:
            samples.append(real(i, "partial", cls, source.spam_caption(rng, cls), "spam"))
    return [samples[j] for j in rng.permutation(len(samples))]


# ---------------------------------------------------------------------------------------------
# Writing


def encode_jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels, "L").convert("RGB") if pixels.ndim == 2 else Image.fromarray(pixels, "RGB")
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def write_split(
    folder: Path, samples: list[DemoSample], samples_per_shard: int, bar: tqdm, with_class: bool = False
) -> list[tuple[str, str]]:
    """Write ``samples`` as img2dataset-style shards; returns (key, shard name) per sample.

    Each tar is written under a temporary name and renamed when complete; its
    ``_stats.json`` (img2dataset's done marker) comes after it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    placed, sizes = [], {}
    for shard, start in enumerate(range(0, len(samples), samples_per_shard)):
        name, rows = shard_name(shard), []
        tmp = folder / f".{name}.tmp"
        with wds.TarWriter(str(tmp), encoder=False, mtime=TAR_MTIME) as writer:
            for index, sample in enumerate(samples[start : start + samples_per_shard]):
                key = sample_key(shard, index, samples_per_shard)
                jpg = encode_jpeg(sample.pixels)
                height, width = sample.pixels.shape[:2]
                meta = {
                    "key": key, "caption": sample.caption, "status": "success", "error_message": None,
                    "width": width, "height": height, "original_width": width, "original_height": height,
                    "sha256": hashlib.sha256(jpg).hexdigest(),
                }  # fmt: skip
                members = {"__key__": key, "jpg": jpg, "txt": sample.caption.encode()}
                members["json"] = json.dumps(meta).encode()
                if with_class:
                    members["cls"] = str(sample.true_class).encode()
                writer.write(members)
                rows.append(meta)
                placed.append((key, name))
                bar.update(1)
        os.replace(tmp, folder / name)
        pl.DataFrame(rows, schema_overrides={"error_message": pl.String}).write_parquet(folder / f"{name[:-4]}.parquet")
        stats = {"count": len(rows), "successes": len(rows), "failed_to_download": 0, "failed_to_resize": 0,
                 "status_dict": {"success": len(rows)}}  # fmt: skip
        atomic_write_json(folder / f"{name[:-4]}_stats.json", stats)
        sizes[name] = len(rows)
    write_sizes_json(folder, sizes)
    return placed


def _truth_table(samples: list[DemoSample], placed: list[tuple[str, str]], names: list[str]) -> pl.DataFrame:
    def name(cls):
        return None if cls is None else names[cls]

    return pl.DataFrame(
        {
            "key": [key for key, _ in placed],
            "shard": [shard for _, shard in placed],
            "kind": [s.kind for s in samples],
            "true_class": [s.true_class for s in samples],
            "true_class_name": [name(s.true_class) for s in samples],
            "caption_class": [s.caption_class for s in samples],
            "caption_class_name": [name(s.caption_class) for s in samples],
            "caption": [s.caption for s in samples],
            "detail": [s.detail for s in samples],
            "source_index": [s.source_index for s in samples],
        },
        schema_overrides={
            "true_class": pl.Int8, "caption_class": pl.Int8, "detail": pl.String, "source_index": pl.Int32
        },  # fmt: skip
    )


# ---------------------------------------------------------------------------------------------
# Entry point


def parse_mix(text: str) -> dict[str, float]:
    """``"mismatched=0.5,junk_image=0.5"`` → weights of the noise kinds (the rest get 0)."""
    mix = dict.fromkeys(NOISE_KINDS, 0.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, value = part.partition("=")
        if not sep or kind.strip() not in mix:
            raise ValueError(f"bad --mix entry {part!r}: use KIND=WEIGHT with KIND in {', '.join(NOISE_KINDS)}")
        try:
            mix[kind.strip()] = float(value)
        except ValueError:
            raise ValueError(f"bad --mix weight {value!r} for {kind.strip()}: not a number") from None
    return mix


def _check(curated: int, web: int, eval: int, noise: float, mix: dict[str, float], samples_per_shard: int,
           augment: int) -> None:
    for name, value in {"curated": curated, "web": web, "eval": eval, "samples_per_shard": samples_per_shard}.items():
        if value < 1:
            raise ValueError(f"{name} must be a positive number of samples, got {value}")
    if augment < 1:
        raise ValueError(f"augment must be a positive number of variants, got {augment}")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be a fraction in [0, 1], got {noise}")
    if set(mix) - set(NOISE_KINDS) or any(w < 0 for w in mix.values()) or (noise > 0 and sum(mix.values()) <= 0):
        raise ValueError(f"mix needs non-negative weights of {', '.join(NOISE_KINDS)} with a positive sum, got {mix}")


def build_demo_data(
    out_dir: str | Path,
    source: str | Path | None = None,
    seed: int = 0,
    curated: int | None = None,
    web: int | None = None,
    eval: int | None = None,
    noise: float = 0.6,
    mix: dict[str, float] | None = None,
    samples_per_shard: int = 500,
    progress: bool = True,
    augment: int | None = None,
    set: str = "fashion",
) -> DemoPaths:
    """Build (or reuse, when ``out_dir`` already holds the same build) a set of the suite: the
    demo (``set="fashion"``) or another of ``SETS``.

    ``source`` is where the set's images are (default: its Debian package's files). Split sizes
    default to the set's own (``SETS[set].sizes``). ``noise`` is the fraction of web samples that
    are noise, split across ``NOISE_KINDS`` by the weights in ``mix`` (default ``DEFAULT_MIX``;
    kinds it leaves out get 0). ``augment=K`` lets the web split draw from K variants of every
    train image (the original, then randomly flipped and shifted copies), for web pools larger
    than the source. The same arguments give byte-identical shards. An interrupted build is
    redone from scratch on the next call.
    """
    if set not in SETS:
        raise ValueError(f"unknown set {set!r}: use one of {', '.join(SETS)}")
    origin = SETS[set]
    defaults = origin.sizes
    curated, web, eval = (defaults.curated if curated is None else curated, defaults.web if web is None else web,
                          defaults.eval if eval is None else eval)
    augment = defaults.augment if augment is None else augment
    mix = DEFAULT_MIX if mix is None else mix
    _check(curated, web, eval, noise, mix, samples_per_shard, augment)
    mix = {kind: float(mix.get(kind, 0.0)) for kind in NOISE_KINDS}
    found = origin.locate(source)
    out = Path(out_dir)
    params = {**origin.identity(found), "seed": seed, "curated": curated, "web": web, "eval": eval,
              "noise": noise, "mix": mix, "samples_per_shard": samples_per_shard}  # fmt: skip
    if augment != 1:
        params["augment"] = augment
    if set != "fashion":  # the demo's parameters read as they always have
        params["set"] = set
    marker = out / "demo.json"
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done["params"] == params and done["complete"]:
            return _paths(out, done, reused=True)
        for part in ("curated", "web", "eval", "web_truth.parquet", "demo.json"):  # only what we wrote
            path = out / part
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    elif out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no demo.json: give a new or empty folder")

    data = origin.load(found, curated + web, eval, seed)
    n_train = len(data.train_labels)
    if web > (n_train - curated) * augment or curated > n_train or eval > len(data.test_labels):
        raise ValueError(
            f"the {set} set has {n_train} train images for curated + web (× {augment} variants for web) "
            f"and {len(data.test_labels)} test images for eval; asked for {curated} + {web} and {eval}"
        )
    train_order = np.random.default_rng([seed, 0]).permutation(n_train)
    test_order = np.random.default_rng([seed, 1]).permutation(len(data.test_labels))
    noisy = round(web * noise)
    kind_counts = {"clean": web - noisy, **allocate(noisy, mix)}

    train = Pool(data.train, data.train_labels, data.train_notes)
    curated_samples = _clean_samples(np.random.default_rng([seed, 2]), origin, train, train_order[:curated])
    web_images, web_labels, order = variants(np.random.default_rng([seed, 5]), data.train, data.train_labels,
                                             train_order[curated:], augment, origin.flips)
    web_list = web_samples(np.random.default_rng([seed, 3]), origin, Pool(web_images, web_labels, data.train_notes),
                           order, kind_counts)
    eval_samples = _clean_samples(np.random.default_rng([seed, 4]), origin,
                                  Pool(data.test, data.test_labels, data.test_notes), test_order[:eval])

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, {"params": params, "complete": False})  # claims the folder for us
    with tqdm(total=curated + web + eval, desc=f"{set}-data", unit="sample", disable=not progress) as bar:
        write_split(out / "curated", curated_samples, samples_per_shard, bar)
        placed = write_split(out / "web", web_list, samples_per_shard, bar)
        write_split(out / "eval", eval_samples, samples_per_shard, bar, with_class=True)
    (out / "eval" / "classnames.txt").write_text("".join(f"{name}\n" for name in origin.classnames))
    (out / "eval" / "templates.txt").write_text("".join(f"{t}\n" for t in origin.eval_templates))
    names = CLASS_NAMES if set == "fashion" else origin.classnames
    _truth_table(web_list, placed, names).write_parquet(out / "web_truth.parquet")
    split_counts = {"curated": curated, "web": web, "eval": eval}
    done = {"params": params, "complete": True, "split_counts": split_counts, "kind_counts": kind_counts}
    atomic_write_json(marker, done)  # rewritten last: "complete" means every file is in place
    return _paths(out, done, reused=False)


def _paths(out: Path, done: dict, reused: bool) -> DemoPaths:
    def pattern(split: str) -> str:
        return brace_pattern(out / split, sorted(p.name for p in (out / split).glob("*.tar")))

    return DemoPaths(
        root=out,
        curated=pattern("curated"),
        web=pattern("web"),
        eval=out / "eval",
        truth=out / "web_truth.parquet",
        split_counts=done["split_counts"],
        kind_counts=done["kind_counts"],
        reused=reused,
    )
