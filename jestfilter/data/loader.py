"""Raw samples → decoded super-batches, in a deterministic, resumable order.

Order. Every rank owns a fixed share of the shards (webdataset's ``split_by_node``), the same
in every pass, so a sample is always read by the same rank and a rank's shard writer keeps each
key once without asking the others. Each pass shuffles the rank's shards with ``(seed, pass)``
and mixes samples in a seeded shuffle buffer (``buffer_shuffle``). The stream is therefore a
pure function of (shards, seed, pass),
and a position in it is just (pass, super-batches handed out), which ``state_dict()`` saves.
The n-th super-batch of the run holds ``batch_size(n)`` samples, so a run can read B while it
selects and b after (``--select-until``) without losing its place in the stream.

Workers. Every DataLoader worker reads the same raw stream (bytes only, cheap) but decodes
only every ``workers``-th super-batch, in turn; DataLoader hands them back in index
order, so the order never depends on worker timing, and resuming skips the super-batches
already handed out without decoding them. The price: each worker reads every byte of the
rank's shards (for local 256 px JPEGs ~70 µs a sample, against ~2.5 ms to decode and
preprocess it at 224 px; see docs/benchmarks.md). Workers live for the whole run (all
passes), decode to uint8 (``decode_checked``: resizing and normalising happen batched on the
model's device) and tokenise each distinct caption once (``CachedTokenizer``). Every
super-batch carries the seconds its worker spent reading, decoding and tokenising it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import random
import signal
import sys
import time
from collections import Counter
from typing import Callable, Collection, Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.shardlists import split_by_node

from jestfilter.data.layout import known_sizes, shard_stem
from jestfilter.data.limits import max_shuffle_bytes
from jestfilter.data.pixels import decode_checked, decode_deferred, image_reason, is_deferred, stack_pixels
from jestfilter.data.shards import (CORRUPT_IMAGE, caption_of, expand_shards, image_member, iter_samples,
                                    shard_identity)
from jestfilter.data.tokens import CachedTokenizer, Tokenizer
from jestfilter.data.types import RawSample, Rejected, SuperBatch

BatchSize = int | Callable[[int], int]  # rows of the n-th super-batch of the run


def pass_shards(shards: Sequence[str], seed: int, pass_index: int, shuffle: bool) -> list[str]:
    """This rank's shards (the same share every pass) in the pass's order."""
    mine = [s["url"] for s in split_by_node([{"url": url} for url in shards])]
    if shuffle:
        random.Random(f"{seed}/{pass_index}/shards").shuffle(mine)
    return mine


def pass_stream(
    shards: Sequence[str], seed: int, pass_index: int, shuffle_buffer: int,
    only: Collection[tuple[str, str]] | None = None,
) -> Iterator[RawSample | Rejected]:
    """One pass's raw samples and rejections, in order (only the samples ``only`` names, if given)."""
    items = iter_samples(pass_shards(shards, seed, pass_index, shuffle_buffer > 1))
    if shuffle_buffer > 1:
        items = buffer_shuffle(items, shuffle_buffer, random.Random(f"{seed}/{pass_index}/samples"),
                               max_shuffle_bytes())
    if only is not None:
        items = (x for x in items if isinstance(x, Rejected) or (shard_stem(x.source_shard), x.key) in only)
    return items


def buffer_shuffle(items: Iterable, size: int, rng: random.Random, max_bytes: int | None = None) -> Iterator:
    """Hold ``size`` items; for each new one, hand out a random held item, and more while the
    held samples' members come to over ``max_bytes`` (a few huge samples must not fill memory).
    Seeded by ``rng``, so the order is a pure function of the input and the seed."""
    held: list = []
    held_bytes = 0

    def take() -> object:
        nonlocal held_bytes
        i = rng.randrange(len(held))
        held[i], held[-1] = held[-1], held[i]
        item = held.pop()
        held_bytes -= _raw_bytes(item)
        return item

    for item in items:
        held.append(item)
        held_bytes += _raw_bytes(item)
        while held and (len(held) >= size or (max_bytes is not None and held_bytes > max_bytes)):
            yield take()
    while held:
        yield take()


def _raw_bytes(item: RawSample | Rejected) -> int:
    return sum(map(len, item.members.values())) if isinstance(item, RawSample) else 0


def group_super_batches(
    items: Iterable[RawSample | Rejected], size: BatchSize
) -> Iterator[tuple[list[RawSample], list[Rejected]]]:
    """(samples, rejections met on the way) groups of ``size`` samples (``size(j)`` for the
    j-th group when it is a function); the last group takes the rest, and rejections after
    the last sample join the last group, so none is left out."""
    size_of = size if callable(size) else lambda _: size
    samples: list[RawSample] = []
    rejected: list[Rejected] = []
    held = None  # a full group held back until we know whether more samples follow
    groups = 0
    target = size_of(0)
    for item in items:
        if isinstance(item, Rejected):
            rejected.append(item)
            continue
        if held:  # a sample follows, so the held group is not the last: out with it (one group in memory)
            yield held
            held = None
        samples.append(item)
        if len(samples) == target:
            held, samples, rejected = (samples, rejected), [], []
            groups += 1
            target = size_of(groups)
    if samples or not held:
        if held:
            yield held
        held = (samples, rejected)
    else:
        held[1].extend(rejected)
    if held[0] or held[1]:
        yield held


def decode(
    samples: list[RawSample], rejected: list[Rejected], tokenizer: Tokenizer, timings: Counter | None = None,
    image_size: int | None = None, defer_jpeg: bool = False,
) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor, list[RawSample], list[Rejected]]:
    """uint8 pixels (``decode_checked``: JPEGs at least twice ``image_size`` at reduced scale,
    with ``defer_jpeg`` the other JPEGs left as bytes for the device), captions through
    ``tokenizer``; a sample whose image does not decode moves to the rejections (so a
    super-batch can come out a little short). ``timings`` gathers the seconds spent decoding
    and tokenising."""
    timings = Counter() if timings is None else timings
    started = time.perf_counter()
    images, kept, rejected = [], [], list(rejected)
    for sample in samples:
        try:
            images.append(decode_checked(sample.members[image_member(sample)], image_size, defer_jpeg=defer_jpeg))
            kept.append(sample)
        except Exception as error:  # each decoder raises its own types for damaged files
            rejected.append(Rejected(sample.key, sample.source_shard, image_reason(error)))
    pixels = stack_pixels(images) if kept else torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    decoded = time.perf_counter()
    timings["decode"] += decoded - started
    texts = tokenizer([caption_of(sample) for sample in kept]) if kept else torch.empty(0, 0, dtype=torch.long)
    timings["tokenise"] += time.perf_counter() - decoded
    return pixels, texts, kept, rejected


def decode_on_device(batch: SuperBatch, device: torch.device | str) -> SuperBatch:
    """``batch`` with the JPEGs its worker left as bytes (``defer_jpeg``) decoded on ``device``
    (nvjpeg on a GPU); an image that decodes nowhere moves to the rejections (``corrupt_image``),
    as it would have in the worker. A batch with nothing deferred comes back as it is."""
    if isinstance(batch.images, torch.Tensor) or not any(is_deferred(image) for image in batch.images):
        return batch
    pixels, failed = decode_deferred(batch.images, device)
    if not failed:
        return dataclasses.replace(batch, images=pixels)
    bad = set(failed)
    keep = [i for i in range(len(batch)) if i not in bad]
    rejected = [*batch.rejected, *(Rejected(batch.samples[i].key, batch.samples[i].source_shard, CORRUPT_IMAGE)
                                   for i in failed)]
    return dataclasses.replace(batch, images=pixels, texts=batch.texts[keep],
                               samples=[batch.samples[i] for i in keep], rejected=rejected)


class NoSamples(ValueError):
    """A whole pass over the data gave no usable sample: another pass would give none either."""


class _StreamDataset(IterableDataset):
    """The stream from (pass, super-batch ``start``) on, over the remaining passes; each worker
    decodes its share, in turn."""

    def __init__(self, loader: "SuperBatchLoader"):
        self.loader = loader
        self.pass_index, self.start, self.first = loader.pass_index, loader.handed_out, loader.total - loader.handed_out

    def __iter__(self) -> Iterator[SuperBatch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        cfg = self.loader
        pass_index, start, first = self.pass_index, self.start, self.first  # first: run index of the pass's group 0
        turn = 0  # super-batches handed out by all workers since this stream began
        timings: Counter = Counter()
        while cfg.passes is None or pass_index < cfg.passes:
            stream = pass_stream(cfg.shards, cfg.seed, pass_index, cfg.shuffle_buffer, cfg.only)
            groups = group_super_batches(stream, lambda j, first=first: cfg.size_of(first + j))
            index = -1
            reading = time.perf_counter()
            for index, (samples, rejected) in enumerate(groups):
                if index < start:
                    continue
                mine, turn = turn % workers == worker, turn + 1
                if not mine:
                    continue
                # DataLoader asks worker 0 first, so worker 0 takes the first super-batch to yield
                timings["read"] += time.perf_counter() - reading
                images, texts, samples, rejected = decode(samples, rejected, cfg.tokenizer, timings, cfg.image_size,
                                                           cfg.defer_jpeg)
                yield SuperBatch(images, texts, samples, rejected, pass_index, index, dict(timings))
                del images, texts, samples, rejected  # the batch is the consumer's now: hold no raw bytes of it
                timings.clear()
                reading = time.perf_counter()
            first, pass_index, start = first + index + 1, pass_index + 1, 0


def _as_is(batch: SuperBatch) -> SuperBatch:
    return batch


def _die_with_parent(parent: int, worker_id: int) -> None:
    """A DataLoader worker ends when its main process dies, even by SIGKILL (Linux's
    PR_SET_PDEATHSIG), instead of holding its memory for hours."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class SuperBatchLoader:
    """Iterate super-batches of decoded samples over ``passes`` passes (``None``: forever).

    ``batch_size``: the rows of every super-batch, or a function giving the rows of the n-th
    super-batch of the run (counted over passes; it goes to the workers, so make it a
    picklable object rather than a lambda where processes are spawned). ``len(batch.samples)``
    can be below it at the end of a pass or when an image fails to decode. ``batch.images``
    is uint8 ``[n, 3, s, s]`` (each image's central square at its stored size; a list of
    ``[3, s, s]`` when sizes differ), ``batch.texts`` the token ids.

    ``patterns``: brace patterns, globs, directories or URLs (see ``expand_shards``); a pattern
    that matches nothing raises at once. ``shuffle_buffer`` > 1 shuffles shards and samples
    (seeded); 0 or 1 keeps the shards' order. ``only``: the (shard name, key) of the samples to
    read, e.g. an offline filter's kept set; every other sample is skipped before decoding.
    ``image_size``: the model's input side; the workers decode a JPEG at least twice as large
    at 1/2, 1/4 or 1/8 scale (never below it; ``jestfilter.data.pixels``), so ``images`` then
    holds fewer pixels than stored. ``defer_jpeg``: JPEGs that would be decoded at full scale
    are left as bytes, for ``decode_on_device`` (a run on a GPU decodes them there).
    ``workers`` decoding processes keep ``prefetch`` super-batches ready between them (default:
    at least 4, two per worker). ``rejections`` counts damaged input by reason over the
    super-batches handed out (kept across a resume), for the end-of-run summary; ``timings``
    the workers' seconds spent reading, decoding and tokenising them.
    """

    def __init__(
        self,
        patterns: str | Sequence[str],
        batch_size: BatchSize,
        tokenizer: Tokenizer,
        *,
        workers: int = 0,
        prefetch: int | None = None,
        shuffle_buffer: int = 0,
        seed: int = 0,
        passes: int | None = 1,
        pin_memory: bool = False,
        only: Collection[tuple[str, str]] | None = None,
        image_size: int | None = None,
        defer_jpeg: bool = False,
    ):
        if not callable(batch_size) and batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.shards = expand_shards(patterns)
        self.batch_size, self.tokenizer = batch_size, CachedTokenizer(tokenizer)
        self.workers, self.shuffle_buffer, self.seed, self.passes = workers, shuffle_buffer, seed, passes
        self.prefetch = prefetch or max(4, 2 * workers)
        self.pin_memory = pin_memory
        self.only = None if only is None else frozenset(only)
        self.image_size, self.defer_jpeg = image_size, defer_jpeg
        self.pass_index = 0  # the pass in progress
        self.handed_out = 0  # super-batches of that pass already yielded
        self.total = 0  # super-batches yielded since the run began, over all passes
        self.rows_this_pass = 0  # samples and rejections of that pass already yielded
        self.samples_this_pass = 0  # samples of that pass already yielded (none in a whole pass: stop)
        self.pass_rows: int | None = None  # samples and rejections in a whole pass, once one ended
        self.rejections: Counter[str] = Counter()  # reason → samples/shards rejected so far
        self.timings: Counter[str] = Counter()  # read/decode/tokenise → worker seconds so far

    def mixing_note(self) -> str | None:
        """A warning when the shuffle buffer spans only a few shards (their sizes known from
        ``sizes.json``): ordered shards then give ordered batches."""
        sizes = known_sizes(self.shards)
        if self.shuffle_buffer <= 1 or not sizes or self.shuffle_buffer >= 4 * max(sizes.values()):
            return None
        largest = max(sizes.values())
        return (f"note: the shuffle buffer ({self.shuffle_buffer:,} samples) spans about "
                f"{self.shuffle_buffer / largest:.1f} shards of {largest:,} samples; if the shards are ordered "
                "(img2dataset keeps its input's order), so will the batches be: raise --shuffle-buffer")

    def size_of(self, n: int) -> int:
        """Rows of the n-th super-batch of the run."""
        size = self.batch_size(n) if callable(self.batch_size) else self.batch_size
        if size < 1:
            raise ValueError(f"batch_size({n}) must be positive, got {size}")
        return size

    def __iter__(self) -> Iterator[SuperBatch]:
        extra = {"prefetch_factor": -(-self.prefetch // self.workers)} if self.workers else {}
        loader = DataLoader(_StreamDataset(self), batch_size=None, num_workers=self.workers, collate_fn=_as_is,
                            pin_memory=self.pin_memory, worker_init_fn=functools.partial(_die_with_parent, os.getpid()),
                            **extra)
        batches = iter(loader)
        try:
            for batch in batches:
                if batch.pass_index != self.pass_index:  # the pass before it ended
                    self._end_pass(batch.pass_index)
                self.handed_out = batch.index + 1
                self.total += 1
                self.rows_this_pass += len(batch.samples) + len(batch.rejected)
                self.samples_this_pass += len(batch.samples)
                self.rejections.update(r.reason for r in batch.rejected)
                self.timings.update(batch.timings)
                yield batch
                del batch  # not held while the next one is read (its raw bytes can be large)
        finally:  # this generator closed (a stop, the last step): end the workers now
            getattr(batches, "_shutdown_workers", lambda: None)()
        if self.passes is not None and self.pass_index < self.passes:
            self._end_pass(self.passes)

    def _end_pass(self, next_pass: int) -> None:
        if self.samples_this_pass == 0 and (self.passes is None or next_pass < self.passes):
            reasons = ", ".join(f"{n:,} {reason}" for reason, n in self.rejections.most_common(3)) or "nothing"
            raise NoSamples(f"a whole pass over the {len(self.shards):,} shard(s) gave no usable sample (rejected: "
                            f"{reasons}); `jestfilter inspect --decode` lists why")
        self.pass_index, self.handed_out = next_pass, 0
        self.pass_rows, self.rows_this_pass, self.samples_this_pass = self.rows_this_pass, 0, 0

    def state_dict(self) -> dict:
        """The stream position: every super-batch already yielded counts as consumed."""
        return {
            "pass": self.pass_index,
            "batches": self.handed_out,
            "total": self.total,
            "seed": self.seed,
            "batch_size": _describe(self.batch_size),
            "shuffle_buffer": self.shuffle_buffer,
            "shards": len(self.shards),
            "inputs": [list(shard_identity(shard)) for shard in self.shards],
            "samples_this_pass": self.samples_this_pass,
            "rejections": dict(self.rejections),
            "rows_this_pass": self.rows_this_pass,
            "pass_rows": self.pass_rows,
            "timings": dict(self.timings),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``; the loader must be built with the same data (the same shards,
        unchanged since) and settings, else ``ValueError``."""
        for name, value in (("seed", self.seed), ("batch_size", _describe(self.batch_size)),
                            ("shuffle_buffer", self.shuffle_buffer), ("shards", len(self.shards))):
            if state[name] != value:
                raise ValueError(f"cannot resume: {name} was {state[name]}, now {value}")
        changed = _changed_input(state.get("inputs"), self.shards)
        if changed:
            raise ValueError(f"cannot resume: {changed}; give the data the run began with or start in a new folder")
        self.pass_index, self.handed_out = state["pass"], state["batches"]
        self.total = state.get("total", state["batches"])
        self.rows_this_pass, self.pass_rows = state["rows_this_pass"], state["pass_rows"]
        self.samples_this_pass = state.get("samples_this_pass", self.rows_this_pass)
        self.rejections = Counter(state["rejections"])
        self.timings = Counter(state.get("timings", {}))


def _changed_input(saved: list | None, shards: Sequence[str]) -> str | None:
    """What differs between the shards a checkpoint read (their ``shard_identity``: path, size,
    modification time) and ``shards`` as they are now; None when nothing does (or the
    checkpoint predates the record)."""
    if saved is None:
        return None
    for (path, size, mtime), shard in zip(saved, shards):
        now_path, now_size, now_mtime = shard_identity(shard)
        if path != now_path:
            return f"the checkpoint read {path} where this run reads {now_path}"
        if (size, mtime) != (now_size, now_mtime):
            sizes = f"{size:,} bytes then, {now_size:,} now" if size != now_size else "same size, other time"
            return f"{path} changed since the checkpoint read it ({sizes})"
    return None


def _describe(batch_size: BatchSize) -> int | str:
    """What a resume compares: the number, or the schedule's repr (a dataclass says its fields)."""
    return batch_size if isinstance(batch_size, int) else repr(batch_size)
