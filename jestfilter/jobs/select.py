"""The select job: a reusable JEST-curated dataset, chosen offline from cached embeddings.

Within each input shard (so the job is idempotent per shard), the samples are shuffled by
(seed, shard) and cut into super-batches of B; the Selector jointly chooses b = B·(1 − f) of
every full super-batch (a short last one keeps its share in whole chunks) from the reference's
cached embeddings and, with ``--learner``, a fixed learner's, for learnability. No model is
trained, so the dataset is selected once and anyone can train on it (the paper's "pre-scored
datasets with easy-reference JEST"). Kept samples are written byte-for-byte, every sample gets
a manifest row, and ``sizes.json`` covers the finished folder, as in the filter job.
"""

from __future__ import annotations

import os
import random
from typing import Sequence

from jestfilter.config import TrainSettings
from jestfilter.data import expand_shards
from jestfilter.data.options import SAMPLES_PER_SHARD
from jestfilter.data.shards import iter_readable_shard
from jestfilter.data.types import RawSample, Rejected, SuperBatch
from jestfilter.distributed import resolve_device
from jestfilter.embeddings import CachedEmbeddings, cached_shards, load_embeddings
from jestfilter.errors import UsageError
from jestfilter.jobs.common import absolute, learner_embeddings
from jestfilter.jobs.output import ShardOutput, merge
from jestfilter.jobs.runner import Placement, all_done, run_shards, unique_stems
from jestfilter.models import ModelBundle, create_model
from jestfilter.scores import shard_seed
from jestfilter.selection import Selector, SiglipOutputs
from jestfilter.selection.batches import BatchPlan
from jestfilter.selection.criteria import criterion
from jestfilter.sinks.filtered import selection_of

MISSING_EMBEDDING = "missing_embedding"  # read fine, but not in the embeddings (it failed to decode there)


class _Rows:
    """One model's cached embeddings of a shard, looked up by key."""

    def __init__(self, cached: CachedEmbeddings):
        self.index = {key: row for row, key in enumerate(cached.keys)}
        self.outputs = cached.as_outputs()

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def of(self, samples: Sequence[RawSample]) -> SiglipOutputs:
        rows = [self.index[sample.key] for sample in samples]
        out = self.outputs
        return SiglipOutputs(out.image[rows], out.text[rows], out.scale, out.bias)


def select_shard(shard: str, embeddings_dir: str | os.PathLike, out_dir: str | os.PathLike, method: str,
                 filter_ratio: float, super_batch: int, n_chunks: int, seed: int, samples_per_shard: int,
                 learner: ModelBundle | None = None, batch_size: int = 256, manifest: str = "all") -> dict:
    """Select from one input shard into ``out_dir``; returns its counts and output sizes."""
    reference = _Rows(load_embeddings(embeddings_dir, shard))
    learned = None if learner is None else _Rows(learner_embeddings(learner, shard, out_dir, batch_size))
    samples, rejected = [], []
    for item in iter_readable_shard(shard):  # a shard that gives nothing is a failure, never done
        if isinstance(item, Rejected):
            rejected.append(item)
        elif item.key in reference and (learned is None or item.key in learned):
            samples.append(item)
        else:
            rejected.append(Rejected(item.key, item.source_shard, MISSING_EMBEDDING))
    own_seed = shard_seed(seed, shard)
    random.Random(own_seed).shuffle(samples)
    selector = Selector(method, filter_ratio, n_chunks, seed=own_seed, batch_size=kept_of(super_batch, filter_ratio))
    output = ShardOutput(out_dir, shard, samples_per_shard, manifest)
    groups = [samples[start:start + super_batch] for start in range(0, len(samples), super_batch)] or [[]]
    kept = 0
    for step, group in enumerate(groups):
        if group:
            selection = selector.select_with_scores(None if learned is None else learned.of(group),
                                                    reference.of(group), step=step)
        else:  # a shard with no usable sample: its rejections still get their rows
            selection = selection_of([])
        output.sink.record(SuperBatch.undecoded(group, rejected if step == 0 else []), selection, step=step)
        kept += len(selection.indices)
    counts = {"kept": kept, "dropped": len(samples) - kept, "rejected": len(rejected)}
    return {"samples": sum(counts.values()), **counts, "sizes": output.close()}


def check_plan(method: str | None, learner: str | None, filter_ratio: float, super_batch: int,
               n_chunks: int) -> str:
    """The criterion to select with, or a UsageError saying what to change."""
    method = method or ("learnability" if learner else "easy_reference")
    chosen = criterion(method)
    if chosen.offline is not None:
        raise UsageError(f"--method {method} scores each example alone: rank the pool with `score` and "
                         f"`filter --column {method} --keep-fraction F`")
    if chosen.random:
        raise UsageError("--method uniform scores nothing: select needs a criterion that scores with the "
                         "reference (or with --learner)")
    if chosen.needs_learner and not learner:
        raise UsageError(f"--method {method} scores with a learner: pass --learner local-dir:PATH")
    if learner and not chosen.needs_learner:
        raise UsageError(f"--method {method} does not use --learner: drop it or pass --method learnability")
    if not 0.0 < filter_ratio < 1.0:
        raise UsageError(f"--filter-ratio must lie strictly between 0 and 1, got {filter_ratio}")
    batches = BatchPlan.of(chosen, kept_of(super_batch, filter_ratio), filter_ratio, n_chunks)
    keep, chunks = batches.batch_size, batches.chunks  # 1 chunk for a per-example criterion
    if keep < chunks or keep % chunks or batches.super_batch != super_batch:
        fitting = max(chunks, round(keep / chunks) * chunks)
        raise UsageError(f"--super-batch {super_batch} at --filter-ratio {filter_ratio} keeps b={keep}, which "
                         f"does not split into {chunks} chunks of one B: use --super-batch "
                         f"{round(fitting / (1 - filter_ratio))}")
    return method


def kept_of(super_batch: int, filter_ratio: float) -> int:
    """b of every full super-batch of B within a shard."""
    return BatchPlan.reading(super_batch, filter_ratio).batch_size


def run_select(embeddings: str, patterns: Sequence[str], out: str, placement: Placement, retries: int = 2, *,
               filter_ratio: float, method: str | None = None, learner: str | None = None, super_batch: int = 320,
               n_chunks: int = TrainSettings.n_chunks, seed: int = 0, samples_per_shard: int = SAMPLES_PER_SHARD,
               batch_size: int = 256, device: str = "auto", manifest: str = "all") -> int:
    """Select from this rank's shards not yet done; the last rank to finish merges. Returns the exit status."""
    method = check_plan(method, learner, filter_ratio, super_batch, n_chunks)
    if samples_per_shard < 1:
        raise UsageError(f"--samples-per-shard must be positive, got {samples_per_shard}")
    cached_shards(embeddings)  # a missing or empty embedding folder fails here, before any work
    shards = unique_stems(expand_shards(patterns))
    bundle = create_model(learner, device=resolve_device(device)) if learner else None
    keep = kept_of(super_batch, filter_ratio)
    print(f"select: {method}, b={keep} of every super-batch of B={super_batch} within each shard")

    def work(shard: str) -> dict:
        return select_shard(shard, embeddings, out, method, filter_ratio, super_batch, n_chunks, seed,
                            samples_per_shard, bundle, batch_size, manifest)

    settings = {"embeddings": absolute(embeddings), "learner": absolute(learner), "method": method,
                "filter_ratio": filter_ratio, "super_batch": super_batch, "n_chunks": n_chunks, "seed": seed,
                "samples_per_shard": samples_per_shard, "manifest": manifest}
    summary = run_shards("select", shards, work, out, placement, retries, settings=settings)
    if all_done(out, shards):
        merge(out, shards, "select")
    return summary.exit_status
