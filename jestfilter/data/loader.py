"""Raw samples → decoded super-batches of ``B``, in a deterministic, resumable order.

Order. Every rank owns a fixed share of the shards (webdataset's ``split_by_node``), the same
in every pass, so a sample is always read by the same rank and a rank's shard writer keeps each
key once without asking the others. Each pass shuffles the rank's shards with ``(seed, pass)``
and mixes samples in a seeded shuffle buffer (webdataset's ``_shuffle``). The stream is therefore a pure function of (shards, seed, pass),
and a position in it is just (pass, super-batches handed out), which ``state_dict()`` saves.

Workers. Every DataLoader worker reads the same raw stream (bytes only, cheap) but decodes
only every ``workers``-th super-batch, in turn; DataLoader hands them back in index
order, so the order never depends on worker timing, and resuming skips the super-batches
already handed out without decoding them. The price: each worker reads every byte of the
rank's shards (for local 256 px JPEGs ~70 µs a sample, against ~2.5 ms to decode and
preprocess it at 224 px; see docs/benchmarks.md).
"""

from __future__ import annotations

import io
import random
from collections import Counter
from typing import Callable, Collection, Iterable, Iterator, Sequence

import PIL.Image
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.filters import _shuffle
from webdataset.shardlists import split_by_node

from jestfilter.data.layout import shard_stem
from jestfilter.data.shards import CORRUPT_IMAGE, caption_of, expand_shards, image_member, iter_samples
from jestfilter.data.types import RawSample, Rejected, SuperBatch

Preprocess = Callable[[PIL.Image.Image], torch.Tensor]
Tokenizer = Callable[[list[str]], torch.Tensor]


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
    if only is not None:
        items = (x for x in items if isinstance(x, Rejected) or (shard_stem(x.source_shard), x.key) in only)
    if shuffle_buffer > 1:
        rng = random.Random(f"{seed}/{pass_index}/samples")
        items = _shuffle(items, bufsize=shuffle_buffer, initial=shuffle_buffer, rng=rng)
    return items


def group_super_batches(
    items: Iterable[RawSample | Rejected], size: int
) -> Iterator[tuple[list[RawSample], list[Rejected]]]:
    """(``size`` samples, rejections met on the way) groups; the last group takes the rest,
    and rejections after the last sample join the last group, so none is left out."""
    samples: list[RawSample] = []
    rejected: list[Rejected] = []
    held = None  # a full group held back until we know whether more samples follow
    for item in items:
        if isinstance(item, Rejected):
            rejected.append(item)
            continue
        samples.append(item)
        if len(samples) == size:
            if held:
                yield held
            held, samples, rejected = (samples, rejected), [], []
    if samples or not held:
        if held:
            yield held
        held = (samples, rejected)
    else:
        held[1].extend(rejected)
    if held[0] or held[1]:
        yield held


def decode(
    samples: list[RawSample], rejected: list[Rejected], preprocess: Preprocess, tokenizer: Tokenizer
) -> tuple[torch.Tensor, torch.Tensor, list[RawSample], list[Rejected]]:
    """Pixels through ``preprocess``, captions through ``tokenizer``; a sample whose image does
    not decode moves to the rejections (so a super-batch can come out a little short)."""
    images, kept, rejected = [], [], list(rejected)
    for sample in samples:
        try:
            with PIL.Image.open(io.BytesIO(sample.members[image_member(sample)])) as image:
                images.append(preprocess(image.convert("RGB")))
            kept.append(sample)
        except Exception:
            rejected.append(Rejected(sample.key, sample.source_shard, CORRUPT_IMAGE))
    if not kept:
        return torch.empty(0), torch.empty(0, dtype=torch.long), kept, rejected
    texts = tokenizer([caption_of(sample) for sample in kept])
    return torch.stack(images), texts, kept, rejected


class _PassDataset(IterableDataset):
    """One pass, from super-batch ``start`` on; each worker decodes its share."""

    def __init__(self, loader: "SuperBatchLoader", pass_index: int, start: int):
        self.loader, self.pass_index, self.start = loader, pass_index, start

    def __iter__(self) -> Iterator[SuperBatch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        cfg = self.loader
        stream = pass_stream(cfg.shards, cfg.seed, self.pass_index, cfg.shuffle_buffer, cfg.only)
        for index, (samples, rejected) in enumerate(group_super_batches(stream, cfg.batch_size)):
            # DataLoader asks worker 0 first, so worker 0 takes the first super-batch to yield
            if index < self.start or (index - self.start) % workers != worker:
                continue
            images, texts, samples, rejected = decode(samples, rejected, cfg.preprocess, cfg.tokenizer)
            yield SuperBatch(images, texts, samples, rejected, self.pass_index, index)


def _as_is(batch: SuperBatch) -> SuperBatch:
    return batch


class SuperBatchLoader:
    """Iterate super-batches of ``batch_size`` decoded samples over ``passes`` passes
    (``None``: forever). ``len(batch.samples)`` can be below ``batch_size`` at the end of a
    pass or when an image fails to decode.

    ``patterns``: brace patterns, globs, directories or URLs (see ``expand_shards``); a pattern
    that matches nothing raises at once. ``shuffle_buffer`` > 1 shuffles shards and samples
    (seeded); 0 or 1 keeps the shards' order. ``only``: the (shard name, key) of the samples to
    read, e.g. an offline filter's kept set; every other sample is skipped before decoding.
    ``rejections`` counts damaged input by reason over the super-batches handed out (kept
    across a resume), for the end-of-run summary.
    """

    def __init__(
        self,
        patterns: str | Sequence[str],
        batch_size: int,
        preprocess: Preprocess,
        tokenizer: Tokenizer,
        *,
        workers: int = 0,
        shuffle_buffer: int = 0,
        seed: int = 0,
        passes: int | None = 1,
        only: Collection[tuple[str, str]] | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.shards = expand_shards(patterns)
        self.batch_size, self.preprocess, self.tokenizer = batch_size, preprocess, tokenizer
        self.workers, self.shuffle_buffer, self.seed, self.passes = workers, shuffle_buffer, seed, passes
        self.only = None if only is None else frozenset(only)
        self.pass_index = 0  # the pass in progress
        self.handed_out = 0  # super-batches of that pass already yielded
        self.rows_this_pass = 0  # samples and rejections of that pass already yielded
        self.pass_rows: int | None = None  # samples and rejections in a whole pass, once one ended
        self.rejections: Counter[str] = Counter()  # reason → samples/shards rejected so far

    def __iter__(self) -> Iterator[SuperBatch]:
        while self.passes is None or self.pass_index < self.passes:
            dataset = _PassDataset(self, self.pass_index, self.handed_out)
            loader = DataLoader(dataset, batch_size=None, num_workers=self.workers, collate_fn=_as_is)
            for batch in loader:
                self.handed_out = batch.index + 1
                self.rows_this_pass += len(batch.samples) + len(batch.rejected)
                self.rejections.update(r.reason for r in batch.rejected)
                yield batch
            self.pass_index, self.handed_out = self.pass_index + 1, 0
            self.pass_rows, self.rows_this_pass = self.rows_this_pass, 0

    def state_dict(self) -> dict:
        """The stream position: every super-batch already yielded counts as consumed."""
        return {
            "pass": self.pass_index,
            "batches": self.handed_out,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "shuffle_buffer": self.shuffle_buffer,
            "shards": len(self.shards),
            "rejections": dict(self.rejections),
            "rows_this_pass": self.rows_this_pass,
            "pass_rows": self.pass_rows,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``; the loader must be built with the same data and settings."""
        for name, value in (("seed", self.seed), ("batch_size", self.batch_size),
                            ("shuffle_buffer", self.shuffle_buffer), ("shards", len(self.shards))):
            if state[name] != value:
                raise ValueError(f"cannot resume: {name} was {state[name]}, now {value}")
        self.pass_index, self.handed_out = state["pass"], state["batches"]
        self.rows_this_pass, self.pass_rows = state["rows_this_pass"], state["pass_rows"]
        self.rejections = Counter(state["rejections"])
