"""The embed job: every shard's image and text embeddings by one model, one ``.emb.npz`` each."""

from __future__ import annotations

from typing import Sequence

from jestfilter.data import expand_shards
from jestfilter.distributed import resolve_device
from jestfilter.embeddings import cache_path, embed_shard
from jestfilter.jobs.common import absolute
from jestfilter.jobs.runner import Placement, run_shards, unique_stems
from jestfilter.models import create_model, weights_digest


def run_embed(model: str, patterns: Sequence[str], out: str, placement: Placement, retries: int = 2,
              batch_size: int = 256, device: str = "auto") -> int:
    """Embed this rank's shards not yet done; returns the exit status (1 if a shard failed)."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {batch_size}")
    shards = unique_stems(expand_shards(patterns))
    bundle = create_model(model, device=resolve_device(device))
    digest = weights_digest(bundle)  # recorded in every file: which weights made it

    def work(shard: str) -> int:
        return embed_shard(bundle, shard, cache_path(out, shard), batch_size, digest)

    settings = {"model": absolute(model)}
    return run_shards("embed", shards, work, out, placement, retries, settings=settings).exit_status
