"""The selection on disk: kept samples as filtered shards, every sample in the manifest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import torch

from jestfilter.data.layout import mark_complete
from jestfilter.data.manifest import Manifest
from jestfilter.data.types import RawSample, SuperBatch
from jestfilter.data.writer import FilteredShardWriter
from jestfilter.distributed import World, gather_objects
from jestfilter.selection import Selection
from jestfilter.selection.criteria import SCORE_COLUMNS
from jestfilter.sinks.extremes import ExtremesTracker

SELECTION_SCORE = "selection_score"  # the conditional score a kept sample was drawn by


class Sink(Protocol):
    """What the training loop and the jobs hand each step's selection to."""

    def record(self, batch: SuperBatch, selection: Selection, step: int,
               unscored: Sequence[tuple[RawSample, str]] = (), reasons: Mapping[int, str] | None = None) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def close(self) -> None: ...


class FilteredOutput:
    """Kept samples → byte-for-byte shards, every sample → one manifest row per pass, and the
    most/least learnable examples → ``extremes`` (for the report).

    Rank-aware: under torchrun every rank writes its own shards (``filtered-r001-000000.tar``)
    and manifest parts (``rank-00001-part-*.parquet``) into the same folder, and ``close()``
    gathers every rank's shard sizes so rank 0 writes ``sizes.json`` and ``_SUCCESS`` once for
    all of them. Only rank 0 tracks extremes (its own rows).
    """

    def __init__(self, folder: str | os.PathLike, samples_per_shard: int = 5000, *, world: World = World(),
                 prefix: str = "filtered", part_prefix: str = "part", extremes: bool = True):
        self.folder, self.world = Path(folder), world
        if world.size > 1:
            prefix, part_prefix = f"{prefix}-r{world.rank:03d}", f"rank-{world.rank:05d}-{part_prefix}"
        self.writer = FilteredShardWriter(self.folder, samples_per_shard, prefix=prefix)
        self.manifest = Manifest(self.folder, part_prefix=part_prefix, score_columns=(*SCORE_COLUMNS, SELECTION_SCORE))
        self.extremes = ExtremesTracker() if extremes and world.main else None

    def record(self, batch: SuperBatch, selection: Selection, step: int,
               unscored: Sequence[tuple[RawSample, str]] = (), reasons: Mapping[int, str] | None = None) -> None:
        """Write the chosen samples, a manifest row for every sample of ``batch`` (and for the
        ``unscored`` ones, dropped for their reason), and note the extremes."""
        kept = selection.indices.tolist()
        shards = [self.writer.write(batch.samples[i]) for i in kept]
        scores = {name: getattr(selection, name) for name in SCORE_COLUMNS}
        if selection.scores is not None:
            drawn = torch.full((len(batch),), float("nan"))
            drawn[selection.indices.cpu()] = selection.scores.float().cpu()
            scores[SELECTION_SCORE] = drawn
        chunks = None if selection.chunks is None else selection.chunks.tolist()
        self.manifest.record(batch, step=step, kept=kept, output_shards=shards, chunks=chunks, reasons=reasons,
                             **scores)
        for reason in dict.fromkeys(reason for _, reason in unscored):
            samples = [sample for sample, why in unscored if why == reason]
            self.manifest.record_dropped(samples, step=step, pass_index=batch.pass_index, reason=reason)
        if self.extremes is not None and selection.learnability is not None:
            self.extremes.add_batch(batch.samples, selection.learnability)

    def state_dict(self) -> dict:
        """Flush shards and manifest to disk; their position (and the extremes) as a dict."""
        state = {"writer": self.writer.state_dict(), "manifest": self.manifest.state_dict()}
        if self.extremes is not None:
            state["extremes"] = self.extremes.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.writer.load_state_dict(state["writer"])
        self.manifest.load_state_dict(state["manifest"])
        if self.extremes is not None and "extremes" in state:
            self.extremes.load_state_dict(state["extremes"])

    def close(self) -> dict[str, int]:
        """Finish the last shard and manifest part; rank 0 marks the folder complete for all
        ranks. Returns every rank's shard sizes."""
        self.writer.close(summary=False)
        self.manifest.close()
        sizes = {name: n for part in gather_objects(self.world, self.writer.sizes) for name, n in part.items()}
        if self.world.main:
            mark_complete(self.folder, sizes)
        return sizes


def selection_of(indices: Sequence[int], **scores: torch.Tensor | None) -> Selection:
    """A ``Selection`` made outside the Selector (a threshold, a keep fraction), for a sink."""
    values = {name: scores.get(name) for name in SCORE_COLUMNS}
    return Selection(torch.as_tensor(list(indices), dtype=torch.long), **values)
