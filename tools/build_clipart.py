"""A second small real image set for baseline checks: Debian's openclipart-png clip art, 28 px.

Ten top-level clip-art folders are the classes; captions are made of the folder path and the
file's title (``food/desserts/birthday_cake.png`` → "food desserts: birthday cake"). Eval takes
``--eval-per-class`` images of every class (clean captions, ``.cls`` labels); the web split draws
``--web`` pairs from the remaining images (with repeats) and makes ``--noise`` of them noisy, in
the demo's kinds: mismatched caption, uninformative caption, junk image, duplicate, partial
caption (the title without its class word); ``--curated`` clean pairs from the same images. Needs ``apt-get install openclipart-png``.

    python tools/build_clipart.py /work/scratch/clipart --seed 0
"""

from __future__ import annotations

import argparse
import io
import re
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

SOURCE = Path("/usr/share/openclipart/png")
CLASSES = ["animals", "food", "people", "transportation", "recreation", "computer", "shapes",
           "signs_and_symbols", "tools", "office"]
TEMPLATES = ["{top} {sub}: {title}", "clip art of {title}, {top}", "{title} ({top})", "{top} clipart - {title}"]
EVAL_TEMPLATES = ["clip art of {}.", "a drawing from {}.", "{} clipart.", "an icon of {}."]
UNINFORMATIVE = ["IMG_{}.png", "clipart", "image", "untitled", "download", "drawing_{}", "icon {}"]
MAX_PIXELS = 4096 * 4096
NOISE_MIX = {"mismatched": 0.35, "uninformative": 0.2, "junk_image": 0.15, "duplicate": 0.1, "partial": 0.2}


def words(name: str) -> str:
    """File or folder name → words: underscores and dashes to spaces, digits and dots dropped."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-.\d]+", " ", name)).strip()


def render(path: Path, size: int) -> np.ndarray | None:
    """The picture on white, padded to a square, at ``size`` px: uint8 [size, size, 3]; None for
    a file PIL cannot read or a huge one (a few are hundreds of megapixels)."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                return None
            image.thumbnail((8 * size, 8 * size), Image.LANCZOS)  # cheap first shrink of big files
            image = image.convert("RGBA")
    except (OSError, Image.DecompressionBombError):
        return None
    side = max(image.size)
    canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    canvas.alpha_composite(image, ((side - image.width) // 2, (side - image.height) // 2))
    return np.asarray(canvas.convert("RGB").resize((size, size), Image.LANCZOS))


def caption(rng, path: Path, top: str, partial: bool = False) -> str:
    parts = path.relative_to(SOURCE / top).parts
    title = words(path.stem) or "picture"
    if partial:
        return title
    sub = words(parts[0]) if len(parts) > 1 else ""
    return TEMPLATES[rng.integers(len(TEMPLATES))].format(top=words(top), sub=sub, title=title).replace("  ", " ")


def jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=95)
    return out.getvalue()


def write(folder: Path, samples: list[dict], per_shard: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(0, len(samples), per_shard):
        with wds.TarWriter(str(folder / f"{shard // per_shard:05d}.tar")) as sink:
            for i, sample in enumerate(samples[shard : shard + per_shard], start=shard):
                sink.write({"__key__": f"{i:09d}", **sample})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--max-per-class", type=int, default=600)
    p.add_argument("--eval-per-class", type=int, default=80)
    p.add_argument("--web", type=int, default=8000)
    p.add_argument("--noise", type=float, default=0.6)
    p.add_argument("--curated", type=int, default=1000)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)

    pool, evals, pixels = [], [], {}  # (path, class index); path -> pixels
    for label, top in enumerate(CLASSES):
        paths = sorted((SOURCE / top).rglob("*.png"))
        kept = []
        for i in rng.permutation(len(paths)):
            if len(kept) == args.max_per_class:
                break
            image = render(paths[i], args.size)
            if image is not None:
                pixels[paths[i]] = image
                kept.append(paths[i])
        evals += [(path, label) for path in kept[: args.eval_per_class]]
        pool += [(path, label) for path in kept[args.eval_per_class :]]

    eval_samples = [{"jpg": jpeg(pixels[path]), "txt": caption(rng, path, CLASSES[label]), "cls": str(label)}
                    for path, label in evals]
    write(out / "eval", eval_samples, 500)
    (out / "eval" / "classnames.txt").write_text("".join(words(top) + "\n" for top in CLASSES))
    (out / "eval" / "templates.txt").write_text("".join(t + "\n" for t in EVAL_TEMPLATES))

    kinds = rng.choice(["clean", *NOISE_MIX], size=args.web,
                       p=[1 - args.noise, *(args.noise * w for w in NOISE_MIX.values())])
    duplicates = [pool[i] for i in rng.integers(len(pool), size=max(1, args.web // 500))]
    web = []
    for kind in kinds:
        path, label = pool[rng.integers(len(pool))]
        image, text = pixels[path], caption(rng, path, CLASSES[label])
        if kind == "mismatched":
            other, other_label = pool[rng.integers(len(pool))]
            while other_label == label:
                other, other_label = pool[rng.integers(len(pool))]
            text = caption(rng, other, CLASSES[other_label])
        elif kind == "uninformative":
            text = UNINFORMATIVE[rng.integers(len(UNINFORMATIVE))].format(rng.integers(10000))
        elif kind == "junk_image":
            image = rng.integers(0, 256, size=image.shape, dtype=np.uint8) if rng.random() < 0.5 else \
                np.full(image.shape, rng.integers(0, 256), dtype=np.uint8)
        elif kind == "duplicate":
            path, label = duplicates[rng.integers(len(duplicates))]
            image, text = pixels[path], caption(np.random.default_rng(0), path, CLASSES[label])
        elif kind == "partial":
            text = caption(rng, path, CLASSES[label], partial=True)
        web.append({"jpg": jpeg(image), "txt": text})
    write(out / "web", web, 500)
    curated = [pool[i] for i in rng.integers(len(pool), size=args.curated)]  # clean pairs, for a reference
    write(out / "curated", [{"jpg": jpeg(pixels[path]), "txt": caption(rng, path, CLASSES[label])}
                            for path, label in curated], 500)
    print(f"{len(pool)} training images, {len(evals)} eval images, {len(web)} web pairs "
          f"({(kinds != 'clean').mean():.0%} noisy) in {out}")


if __name__ == "__main__":
    main()
