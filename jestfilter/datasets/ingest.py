"""Turn a URL + caption list into WebDataset shards with img2dataset's own downloader.

We only choose defaults that suit JEST and check arguments before img2dataset's worker
processes start (so a typo fails in a second, not after a spawn); the downloading, resizing,
sharding and per-shard ``{shard}_stats.json`` / ``{shard}.parquet`` are img2dataset's.
Re-running into the same folder resumes: img2dataset skips shards whose ``_stats.json`` exists.

Only http(s) URLs of public addresses are handed to img2dataset (``url_check``): the others
are left out before it starts, counted by reason, and listed with their reason in
``OUT/_urls/refused.parquet``; ``allow_private=True`` admits a mirror on your own network.

What one URL may cost is bounded: img2dataset's own ``timeout`` (seconds a connection may wait
for the server at any one time) and ``max_image_area`` (pixels; OpenCV is told the same through
``OPENCV_IO_MAX_IMAGE_PIXELS``, so it refuses a larger image from its header instead of
decoding it first), and, through ``jestfilter.datasets.download``, the bytes a response may
hold and the seconds a download may take in all (img2dataset has no setting for these two).
img2dataset starts its workers with ``spawn``: call :func:`ingest` from a script's
``if __name__ == "__main__":`` block.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import json
import os
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import polars as pl

from jestfilter.data.layout import brace_pattern, write_sizes_json
from jestfilter.data.limits import max_image_pixels, max_sample_bytes
from jestfilter.data.options import SAMPLES_PER_SHARD
from jestfilter.datasets.url_check import ALLOWED_DIR, filter_url_lists

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # img2dataset imports albumentations, which phones home

OPENCV_PIXELS_ENV = "OPENCV_IO_MAX_IMAGE_PIXELS"  # OpenCV checks an image's header against it before decoding
URLS_DIR = "_urls"  # the checked url lists img2dataset reads, and the refused urls

INPUT_FORMATS = ["parquet", "csv", "csv.gz", "tsv", "tsv.gz", "jsonl", "jsonl.gz", "json", "json.gz", "txt", "txt.gz"]

# Defaults for JEST: keep the aspect ratio and leave the final crop to the model's preprocess,
# never upscale small images (it only invents pixels), one JPEG per sample, no wandb.
JEST_DEFAULTS = {
    "resize_mode": "keep_ratio",
    "resize_only_if_bigger": True,
    "encode_format": "jpg",
    "encode_quality": 95,
    "output_format": "webdataset",
    "distributor": "multiprocessing",
    "enable_wandb": False,
    "extract_exif": False,
}


@dataclass
class IngestSummary:
    """Totals over the ``*_stats.json`` files of an img2dataset output folder."""

    out_dir: Path
    sizes: dict[str, int] = field(default_factory=dict)  # shard file name → samples in it
    count: int = 0
    successes: int = 0
    failed_to_download: int = 0
    failed_to_resize: int = 0
    errors: Counter = field(default_factory=Counter)  # error message → samples
    refused: Counter = field(default_factory=Counter)  # reason → urls never handed to img2dataset

    @property
    def pattern(self) -> str | None:
        return brace_pattern(self.out_dir, list(self.sizes)) if self.sizes else None


def guess_input_format(urls: Path) -> str:
    """The img2dataset input format of a file (by suffix) or of the files in a folder."""
    names = [p.name for p in urls.iterdir() if p.is_file()] if urls.is_dir() else [urls.name]
    found = {fmt for name in names for fmt in INPUT_FORMATS if name.endswith(f".{fmt}")}  # suffixes never overlap
    if len(found) != 1:
        what = f"files in {urls}" if urls.is_dir() else urls.name
        formats = ", ".join(INPUT_FORMATS)
        raise ValueError(f"cannot tell the input format of {what}: pass --input-format, one of {formats}")
    return found.pop()


def parse_option(text: str) -> tuple[str, object]:
    """``"key=value"`` → (key, value); the value is read as a Python literal when it is one."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"bad img2dataset option {text!r}: use KEY=VALUE, e.g. retries=2")
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value


def _columns(path: Path, input_format: str) -> list[str] | None:
    """Column names of a parquet/csv/tsv url list (None for formats we don't peek into)."""
    if input_format == "parquet":
        return list(pl.read_parquet_schema(path))
    if input_format.split(".")[0] in ("csv", "tsv"):
        return pl.read_csv(path, n_rows=0, separator="\t" if input_format.startswith("tsv") else ",").columns
    return None


def check_arguments(
    urls: Path, input_format: str | None, url_col: str, caption_col: str | None, options: dict
) -> tuple[str, str | None]:
    """Fail fast on what img2dataset would only notice inside a worker. Returns (format, caption_col)."""
    import img2dataset

    if not urls.exists():
        raise FileNotFoundError(f"url list not found: {urls}")
    input_format = input_format or guess_input_format(urls)
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"unknown input format {input_format!r}: use one of {', '.join(INPUT_FORMATS)}")
    known = set(inspect.signature(img2dataset.download).parameters)
    for key in options:
        if key in ("url_list", "output_folder", "input_format", "url_col", "caption_col", "timeout", "max_image_area"):
            flag = {"url_list": "the URLS argument", "output_folder": "--out",
                    "max_image_area": "--max-image-pixels"}.get(key, f"--{key.replace('_', '-')}")
            raise ValueError(f"img2dataset option {key} is set by {flag}")
        if key not in known:
            raise ValueError(f"img2dataset.download has no option {key!r}")
    files = url_files(urls, input_format)
    if input_format.startswith("txt"):
        return input_format, None  # a plain list of URLs has no caption column
    columns = _columns(files[0], input_format)
    for column in (url_col, caption_col):
        if columns is not None and column is not None and column not in columns:
            raise ValueError(f"{files[0]} has no column {column!r} (columns: {', '.join(columns)})")
    return input_format, caption_col


def url_files(urls: Path, input_format: str) -> list[Path]:
    """The url list's files, in img2dataset's order."""
    files = sorted(p for p in urls.iterdir() if p.name.endswith(f".{input_format}")) if urls.is_dir() else [urls]
    if not files:
        raise ValueError(f"no *.{input_format} files in {urls}")
    return files


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` while the block runs (processes started in it inherit it)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def read_stats(out_dir: str | Path) -> IngestSummary:
    """Sum img2dataset's per-shard ``*_stats.json`` files (a shard is done iff its file exists)."""
    out = Path(out_dir)
    summary = IngestSummary(out_dir=out)
    for stats_file in sorted(out.glob("*_stats.json")):
        stats = json.loads(stats_file.read_text())
        tar = stats_file.name[: -len("_stats.json")] + ".tar"
        if (out / tar).is_file():
            summary.sizes[tar] = stats.get("successes", 0)
        for name in ("count", "successes", "failed_to_download", "failed_to_resize"):
            setattr(summary, name, getattr(summary, name) + stats.get(name, 0))
        summary.errors.update({k: v for k, v in stats.get("status_dict", {}).items() if k != "success"})
    return summary


def ingest(
    urls: str | Path,
    out_dir: str | Path,
    image_size: int = 64,
    samples_per_shard: int = SAMPLES_PER_SHARD,
    processes: int = 1,
    threads: int = 16,
    url_col: str = "url",
    caption_col: str | None = "caption",
    input_format: str | None = None,
    options: dict | None = None,
    allow_private: bool = False,
    timeout: float = 10.0,
    max_seconds: float = 30.0,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
) -> IngestSummary:
    """Download ``urls`` (a file or folder of url lists) into img2dataset shards in ``out_dir``.

    ``options`` go to ``img2dataset.download`` as they are and win over our defaults. Only
    http(s) URLs of public addresses (any address with ``allow_private``) are downloaded. A
    download fails (recorded by img2dataset with its reason) when the server keeps it waiting
    ``timeout`` seconds at once, when it takes over ``max_seconds`` in all, when its response
    holds over ``max_bytes`` (default: ``JESTFILTER_MAX_SAMPLE_BYTES``) or its image over
    ``max_pixels`` (default: ``JESTFILTER_MAX_IMAGE_PIXELS``). Writes ``sizes.json`` (for
    open_clip_train) and returns the totals of all shards in ``out_dir``.
    """
    max_bytes = max_sample_bytes() if max_bytes is None else max_bytes
    max_pixels = max_image_pixels() if max_pixels is None else max_pixels
    for name, value in {"image_size": image_size, "samples_per_shard": samples_per_shard, "processes": processes,
                        "threads": threads, "timeout": timeout, "max_seconds": max_seconds, "max_bytes": max_bytes,
                        "max_pixels": max_pixels}.items():  # fmt: skip
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
    options = dict(options or {})
    urls = Path(urls)
    input_format, caption_col = check_arguments(urls, input_format, url_col, caption_col, options)
    url_col = "url" if input_format.startswith("txt") else url_col  # img2dataset names a txt list's column so
    checked = filter_url_lists(url_files(urls, input_format), input_format, url_col, Path(out_dir) / URLS_DIR,
                               allow_private, threads)

    import img2dataset

    from jestfilter.datasets.download import Limits, limited_downloads  # imports img2dataset

    kwargs = {
        **JEST_DEFAULTS,
        "output_folder": str(out_dir),
        "image_size": image_size,
        "number_sample_per_shard": samples_per_shard,
        "processes_count": processes,
        "thread_count": threads,
        "url_col": url_col,
        "caption_col": caption_col,
        "timeout": timeout,
        "max_image_area": max_pixels,
        **options,
        "url_list": str(checked.folder / ALLOWED_DIR),
        "input_format": "parquet",  # the checked rows, every column kept
    }
    # img2dataset takes every *.json in the folder for a shard's done marker: hide ours meanwhile
    (Path(out_dir) / "sizes.json").unlink(missing_ok=True)
    sigint = signal.getsignal(signal.SIGINT)
    try:
        # OpenCV reads its pixel cap when it loads, in img2dataset's spawned workers: they inherit it
        with _environment(OPENCV_PIXELS_ENV, str(max_pixels)), limited_downloads(Limits(max_bytes, max_seconds)):
            if checked.allowed:
                img2dataset.download(**kwargs)
    finally:
        signal.signal(signal.SIGINT, sigint)  # img2dataset leaves its own Ctrl-C handler (sys.exit(0)) behind
    summary = read_stats(out_dir)
    summary.refused = checked.refused
    write_sizes_json(out_dir, summary.sizes)
    return summary
