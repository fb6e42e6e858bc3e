"""Data-plane throughput: read, read-select-write (pass-through) and read-decode, beside a
plain tar copy of the same shards as the physical floor.

Shards are built once from Fashion-MNIST, upscaled to 256 px JPEG (quality 95, img2dataset's
defaults), in img2dataset's layout (KEY.jpg, KEY.txt, KEY.json). ``build_shards(...,
source="photos")`` makes them from OpenCV's sample photographs instead (random square crops,
colour, ~3× the bytes of an upscaled Fashion-MNIST image: closer to web images);
``tools/bench_decode.py`` uses both. All timings run on a warm page cache; each is the best of
``--repeats`` runs.

    python tools/bench_shards.py [--shards 8] [--per-shard 1000] [--data DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image
import webdataset as wds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jestfilter.datasets.fashion_mnist import load_fashion_mnist  # noqa: E402
from jestfilter.data import FilteredShardWriter, RawSample, SuperBatchLoader, expand_shards, iter_samples  # noqa: E402

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


PHOTOS = Path("/usr/share/doc/opencv-doc/examples/data")  # Debian's opencv-doc


def _photo_source(size: int):
    """(image n → size × size RGB crop, caption) from OpenCV's colour sample photographs: a seeded
    random square crop of 60–100 % of the shorter side of the photo n mod count."""
    photos = []
    for path in sorted(PHOTOS.glob("*.jpg")):
        with PIL.Image.open(path) as photo:
            if photo.mode == "RGB" and min(photo.size) >= 256:
                photos.append((path.stem, photo.copy()))
    if not photos:
        raise FileNotFoundError(f"no colour photographs in {PHOTOS} (apt install opencv-doc)")
    rng = np.random.default_rng(0)

    def make(n: int) -> tuple[PIL.Image.Image, str]:
        name, photo = photos[n % len(photos)]
        width, height = photo.size
        side = int(min(width, height) * rng.uniform(0.6, 1.0))
        left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        crop = photo.crop((left, top, left + side, top + side)).resize((size, size), PIL.Image.LANCZOS)
        return crop, f"a photo of {name.replace('_', ' ')}"

    return make


def _fashion_source(size: int):
    data = load_fashion_mnist()
    images, labels = data.train_images, data.train_labels

    def make(n: int) -> tuple[PIL.Image.Image, str]:
        image = PIL.Image.fromarray(images[n]).convert("RGB").resize((size, size), PIL.Image.LANCZOS)
        return image, f"a photo of a {CLASSES[labels[n]]}"

    return make


def build_shards(folder: Path, shards: int, per_shard: int, size: int, source: str = "fashion") -> list[str]:
    """``shards`` img2dataset-style shards of ``per_shard`` ``size``-px JPEGs (quality 95) from
    ``source`` (``fashion``: Fashion-MNIST upscaled; ``photos``: OpenCV's sample photographs),
    built once into ``folder``."""
    paths = [folder / f"{i:05d}.tar" for i in range(shards)]
    if all(p.exists() for p in paths):
        return [str(p) for p in paths]
    folder.mkdir(parents=True, exist_ok=True)
    make = {"fashion": _fashion_source, "photos": _photo_source}[source](size)
    for shard, path in enumerate(paths):
        with wds.TarWriter(str(path), mtime=0) as sink:
            for i in range(per_shard):
                n = shard * per_shard + i
                image, caption = make(n)
                out = io.BytesIO()
                image.save(out, format="JPEG", quality=95)
                key = f"{shard:05d}{i:04d}"
                meta = {"key": key, "caption": caption, "status": "success", "width": size, "height": size}
                sink.write({"__key__": key, "jpg": out.getvalue(), "txt": caption.encode(), "json": json.dumps(meta).encode()})
    return [str(p) for p in paths]


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--per-shard", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "jestfilter-bench-shards")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    shards = build_shards(args.data / f"{args.size}px-{args.shards}x{args.per_shard}", args.shards, args.per_shard, args.size)
    n = args.shards * args.per_shard
    mb = sum(os.path.getsize(s) for s in shards) / 1e6
    scratch = Path(tempfile.mkdtemp(prefix="jestfilter-bench-"))
    results = []

    def report(name: str, seconds: float, samples: int = n, megabytes: float = mb) -> None:
        results.append((name, seconds))
        print(f"| {name} | {seconds:.2f} | {samples / seconds:,.0f} | {megabytes / seconds:,.0f} |", flush=True)

    def cat_copy():
        out = scratch / "cat"
        out.mkdir(exist_ok=True)
        for s in shards:
            subprocess.run(["cat", s], stdout=open(out / Path(s).name, "wb"), check=True)

    def tar_copy():
        for s in shards:
            work = scratch / "tar" / Path(s).stem
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            subprocess.run(["tar", "-xf", s, "-C", str(work)], check=True)
            names = sorted(os.listdir(work))
            subprocess.run(["tar", "-cf", str(scratch / "tar" / Path(s).name), "-C", str(work), *names], check=True)

    def read():
        count = sum(isinstance(item, RawSample) for item in iter_samples(shards))
        assert count == n, count

    def pass_through():
        out = scratch / "filtered"
        shutil.rmtree(out, ignore_errors=True)
        writer = FilteredShardWriter(out, samples_per_shard=args.per_shard)
        for i, item in enumerate(iter_samples(shards)):
            if i % 2 == 0:
                writer.write(item)
        writer.close()

    import open_clip
    import torch

    # One intra-op thread, as in every DataLoader worker: on a busy 2-core box, torch's default
    # thread pool made per-image preprocessing in the main process ~30x slower.
    torch.set_num_threads(1)
    tokenizer = open_clip.SimpleTokenizer(context_length=77)

    def decode(workers):
        def run():
            count = sum(len(b) for b in SuperBatchLoader(shards, 256, tokenizer, workers=workers))
            assert count == n, count
        return run

    print(f"{n} samples in {len(shards)} shards, {mb:.1f} MB ({mb * 1e6 / n / 1e3:.1f} kB/sample), "
          f"{args.size} px JPEG q95; best of {args.repeats}, warm page cache\n")
    print("| step | seconds | samples/s | MB/s (input) |\n|---|---|---|---|")
    read()  # warm the page cache
    report("`cat` shard copy (byte floor)", best_of(args.repeats, cat_copy))
    report("`tar -xf` + `tar -cf` copy (tar floor)", best_of(args.repeats, tar_copy))
    report("read: iterate samples + checks", best_of(args.repeats, read))
    report("pass-through: read, keep every other, write", best_of(args.repeats, pass_through))
    report("read-decode to uint8 + tokenise, 0 workers", best_of(1, decode(0)))
    report("read-decode to uint8 + tokenise, 2 workers", best_of(1, decode(2)))
    times = dict(results)
    ratio = times["`tar -xf` + `tar -cf` copy (tar floor)"] / times["pass-through: read, keep every other, write"]
    print(f"\npass-through throughput = {ratio:.0%} of the tar copy (target >= 50%)")
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
