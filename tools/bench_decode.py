"""Read + decode + resize, per core: a plain PIL decode, the loader before issue 23 (every image
decoded at its stored size, then resized) and now (JPEGs decoded at 1/2, 1/4 or 1/8 scale when
stored at least twice the model's input), over shards of 256-px and 512-px JPEGs.

Shards come from ``tools/bench_shards.py``'s builder in img2dataset's layout (JPEG quality 95):
``fashion`` (Fashion-MNIST upscaled: smooth, 9 kB at 256 px) and ``photos`` (OpenCV's sample
photographs cropped and resized: 27 kB at 256 px, closer to web images). For each source size
and model input (28 px: the demo model; 112 and 128 px: a Flexi coarse view, 224/2 and 256/2;
224 px), in one process with one torch thread, each way of decoding reads every sample of the
shards (webdataset's tar reader and the data plane's checks, as the loader does), decodes it and
resizes it to the input:

* ``PIL``: ``PIL.Image.open`` → ``convert("RGB")`` → central square → ``resize(BICUBIC)`` (PIL's
  antialiased resize) → uint8 tensor, one image at a time: a plain decode + resize.
* ``before``: ``decode_checked(data)`` (torchvision, stored size), then
  ``ImagePreprocess.to_model`` on batches of 256 (antialiased bicubic in torch, on the CPU here;
  on a GPU run this half runs on the device): the loader and the model's preprocessing as they
  were, ``--decode full`` now.
* ``after``: the same with ``decode_checked(data, size)``, what the loader does now.
* ``workers' half``: ``after`` without the resize, i.e. what a loader worker does on a GPU run
  (where the resize runs on the GPU): the rate one CPU core feeds a GPU with.

The ways run interleaved, best of ``--repeats``; ``samples/s`` is per core. With ``--device
cuda`` a last column, ``GPU``, is ``--decode gpu``'s path: the worker reads and checks each JPEG
(``decode_checked(..., defer_jpeg=True)``), then ``decode_deferred`` decodes batches of 256 with
nvjpeg and ``to_model`` resizes them on the GPU: samples a second for one core and the GPU.

    OMP_NUM_THREADS=1 python tools/bench_decode.py [--samples 1000] [--sources fashion photos] [--device cuda]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_shards import build_shards  # noqa: E402

from jestfilter.data import RawSample, iter_samples  # noqa: E402
from jestfilter.data.pixels import central_square, decode_checked, decode_deferred, stack_pixels  # noqa: E402
from jestfilter.data.shards import image_member  # noqa: E402
from jestfilter.models import ImagePreprocess  # noqa: E402

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
TARGETS = {28: "demo model", 112: "Flexi view of 224", 128: "Flexi view of 256", 224: "ViT-B at 224"}
BATCH = 256


def images(shards: list[str]):
    """Each sample's image bytes, read through the data plane's reader."""
    for item in iter_samples(shards):
        if isinstance(item, RawSample):
            yield item.members[image_member(item)]


def plain_pil(shards: list[str], size: int) -> int:
    count = 0
    for data in images(shards):
        with PIL.Image.open(io.BytesIO(data)) as image:
            rgb = image.convert("RGB")
            side = min(rgb.size)
            left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
            small = rgb.crop((left, top, left + side, top + side)).resize((size, size), PIL.Image.BICUBIC)
            central_square(torch.from_numpy(np.asarray(small)).permute(2, 0, 1))
        count += 1
    return count


def loader_path(shards: list[str], size: int, reduced: bool, resize: bool = True) -> int:
    """The loader's worker half (decode to uint8) and, with ``resize``, the model's half (resize,
    normalise) on the CPU."""
    preprocess = ImagePreprocess(size, CLIP_MEAN, CLIP_STD)
    count, held = 0, []
    for data in images(shards):
        held.append(decode_checked(data, size if reduced else None))
        if len(held) == BATCH:
            if resize:
                preprocess.to_model(stack_pixels(held))
            count, held = count + len(held), []
    if held and resize:
        preprocess.to_model(stack_pixels(held))
    return count + len(held)


def gpu_path(shards: list[str], size: int, device: torch.device) -> int:
    """``--decode gpu``: bytes from the worker, nvjpeg and the resize on ``device``."""
    preprocess = ImagePreprocess(size, CLIP_MEAN, CLIP_STD)
    count, held = 0, []

    def flush() -> None:
        pixels, failed = decode_deferred(held, device)
        assert not failed
        preprocess.to_model(pixels, device)

    for data in images(shards):
        held.append(decode_checked(data, size, defer_jpeg=True))
        if len(held) == BATCH:
            flush()
            count, held = count + len(held), []
    if held:
        flush()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return count + len(held)


def timed(run) -> tuple[float, int]:
    started = time.perf_counter()
    count = run()
    return time.perf_counter() - started, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="samples per source and size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="stored JPEG sizes")
    parser.add_argument("--targets", type=int, nargs="+", default=list(TARGETS), help="model input sizes")
    parser.add_argument("--sources", nargs="+", default=["fashion", "photos"], choices=["fashion", "photos"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cuda: also time --decode gpu's path (nvjpeg)")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "jestfilter-bench-shards")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core, as in a loader worker
    device = torch.device(args.device)

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"Pillow {PIL.__version__}; one thread, best of {args.repeats}, interleaved\n")
    print("| source | stored px | input px | kB/sample | PIL samples/s | before samples/s | after samples/s "
          "| after / before | after / PIL | before / PIL | workers' half samples/s |"
          + (" GPU samples/s |" if device.type == "cuda" else ""))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if device.type == "cuda" else ""))
    for source in args.sources:
        for stored in args.sizes:
            per_shard = min(1000, args.samples)
            shards = build_shards(args.data / f"{source}-{stored}px-{-(-args.samples // per_shard)}x{per_shard}",
                                  -(-args.samples // per_shard), per_shard, stored, source)
            kilobytes = sum(len(d) for d in images(shards)) / args.samples / 1e3  # also warms the page cache
            for size in args.targets:
                ways = {"PIL": lambda: plain_pil(shards, size),
                        "before": lambda: loader_path(shards, size, reduced=False),
                        "after": lambda: loader_path(shards, size, reduced=True),
                        "workers": lambda: loader_path(shards, size, reduced=True, resize=False)}
                if device.type == "cuda":
                    ways["GPU"] = lambda: gpu_path(shards, size, device)
                best = {name: float("inf") for name in ways}
                for _ in range(args.repeats):
                    for name, run in ways.items():
                        seconds, count = timed(run)
                        assert count == args.samples, count
                        best[name] = min(best[name], seconds)
                rate = {name: args.samples / seconds for name, seconds in best.items()}
                print(f"| {source} | {stored} | {size} | {kilobytes:.1f} | {rate['PIL']:,.0f} | {rate['before']:,.0f} "
                      f"| {rate['after']:,.0f} | {rate['after'] / rate['before']:.2f}× | {rate['after'] / rate['PIL']:.2f}× "
                      f"| {rate['before'] / rate['PIL']:.2f}× | {rate['workers']:,.0f} |"
                      + (f" {rate['GPU']:,.0f} |" if "GPU" in rate else ""), flush=True)


if __name__ == "__main__":
    main()
