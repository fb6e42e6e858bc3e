"""The selection on disk: chosen samples as filtered shards, every sample in the manifest,
and the pool table; ``FilteredOutput`` adds the report's extremes behind the same sink."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import torch

from jestfilter.data.atomic import atomic_write
from jestfilter.data.layout import mark_complete
from jestfilter.data.manifest import Manifest
from jestfilter.data.options import MANIFESTS, SAMPLES_PER_SHARD
from jestfilter.data.types import RawSample, SuperBatch
from jestfilter.data.writer import FilteredShardWriter
from jestfilter.distributed import World, gather_objects
from jestfilter.selection import Selection
from jestfilter.selection.criteria import CRITERIA, SCORE_COLUMNS
from jestfilter.sinks.compose import Sinks
from jestfilter.sinks.extremes import Extremes
from jestfilter.sinks.pool import POOL, pool_table
from jestfilter.sinks.rules import FILTERED_RULES
from jestfilter.sinks.top import TopPass

SELECTION_SCORE = "selection_score"  # the conditional score a kept sample was drawn by


class FilteredShards:
    """Chosen samples → byte-for-byte shards, every sample → one manifest row per pass, and at
    ``close()`` the pool table (``pool.parquet/``: one row per sample read, how often it was
    chosen and the shard that holds it).

    ``rule`` says which samples the shards hold when the data is read in several passes
    (``jestfilter.sinks.rules``): ``all`` and ``first-pass`` write a sample when it is chosen;
    ``top`` writes nothing while training and, at ``close()``, its post-pass (``TopPass``) ranks
    the pool by ``criterion``'s mean score and copies its best ``keep_fraction`` from the source
    shards. ``manifest="kept"``: the manifest records kept and rejected samples and counts the
    dropped ones per shard (``jestfilter.data.manifest``); it cannot serve rule ``top``.

    Rank-aware: under torchrun every rank writes its own shards (``filtered-r001-000000.tar``),
    manifest and pool parts (``rank-00001-part-*.parquet``) into the same folder and applies the
    rule to the samples it read (each rank reads the same shards every pass), and ``close()``
    gathers every rank's shard sizes so rank 0 writes ``sizes.json`` and ``_SUCCESS`` once for
    all of them.
    """

    def __init__(self, folder: str | os.PathLike, samples_per_shard: int = SAMPLES_PER_SHARD, *,
                 world: World = World(), prefix: str = "filtered", part_prefix: str = "part", rule: str = "all",
                 keep_fraction: float | None = None, criterion: str = "learnability", seed: int = 0,
                 manifest: str = "all"):
        if rule not in FILTERED_RULES:
            raise ValueError(f"unknown rule {rule!r}: choose one of {', '.join(FILTERED_RULES)}")
        if manifest not in MANIFESTS:
            raise ValueError(f"unknown manifest {manifest!r}: choose one of {', '.join(MANIFESTS)}")
        if rule == "top" and manifest != "all":
            raise ValueError("rule 'top' ranks every sample by its scores in every pass: it needs --manifest all")
        self.post = TopPass(keep_fraction, seed) if rule == "top" else None
        self.folder, self.world, self.rule = Path(folder), world, rule
        self.criterion = CRITERIA[criterion]
        if world.size > 1:
            prefix, part_prefix = f"{prefix}-r{world.rank:03d}", f"rank-{world.rank:05d}-{part_prefix}"
        self.part_prefix = part_prefix
        self.writer = FilteredShardWriter(self.folder, samples_per_shard, prefix=prefix)
        self.manifest = Manifest(self.folder, part_prefix=part_prefix, score_columns=(*SCORE_COLUMNS, SELECTION_SCORE),
                                 keep_dropped=manifest == "all")

    def record(self, batch: SuperBatch, selection: Selection, step: int,
               unscored: Sequence[tuple[RawSample, str]] = (), reasons: Mapping[int, str] | None = None) -> None:
        """Write the chosen samples (as the rule says), a manifest row for every sample of
        ``batch`` (and for the ``unscored`` ones, dropped for their reason)."""
        kept = selection.indices.tolist()
        online = self.rule == "all" or (self.rule == "first-pass" and batch.pass_index == 0)
        shards = [self.writer.write(batch.samples[i]) if online else None for i in kept]
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

    def state_dict(self) -> dict:
        """Flush shards and manifest to disk; their position and the rule as a dict."""
        return {"writer": self.writer.state_dict(), "manifest": self.manifest.state_dict(), "rule": self.rule}

    def load_state_dict(self, state: dict) -> None:
        """Make the folder match ``state``. Every check comes first, so a refusal (another rule, a
        shard or a manifest part lost or changed) leaves the folder as it was."""
        if state.get("rule", self.rule) != self.rule:
            raise ValueError(f"cannot resume: the checkpoint's filtered/ holds the samples of rule {state['rule']!r}, "
                             f"not {self.rule!r}; give the same rule or start in a new folder")
        self.manifest.check_state(state["manifest"])
        self.writer.check_state(state["writer"])
        self.manifest.load_state_dict(state["manifest"], check=False)
        self.writer.load_state_dict(state["writer"], written=self.manifest.written(), check=False)

    def close(self) -> dict[str, int]:
        """Finish the manifest, write the rule's samples (``top``: now, from the source shards),
        the last shard and this rank's pool table; rank 0 marks the folder complete for all
        ranks. Returns every rank's shard sizes."""
        self.manifest.close()
        pool = pool_table(self.manifest.own_rows(), self.criterion, every_pass=self.manifest.keep_dropped)
        if self.post is not None:
            pool = self.post(pool, self.writer)
        self.writer.close(summary=False)
        (self.folder / POOL).mkdir(exist_ok=True)
        atomic_write(self.folder / POOL / f"{self.part_prefix}-00000.parquet", pool.write_parquet,
                     tmp_dir=self.folder)  # readers scan pool.parquet/ whole
        sizes = {name: n for part in gather_objects(self.world, self.writer.sizes) for name, n in part.items()}
        if self.world.main:
            mark_complete(self.folder, sizes)
        return sizes

    def manifest_folders(self) -> tuple[Path, Path]:
        """The manifest's parts and (``manifest="kept"``) the dropped counts' parts."""
        return self.manifest.path, self.manifest.dropped_path


class FilteredOutput(Sinks):
    """``FilteredShards`` and, on rank 0 with ``extremes``, the most and least learnable
    examples (``Extremes``, saved to ``extremes_path`` at ``close()`` when given), behind one
    sink; ``close()`` returns every rank's shard sizes."""

    def __init__(self, folder: str | os.PathLike, samples_per_shard: int = SAMPLES_PER_SHARD, *,
                 world: World = World(), extremes: bool = True, extremes_path: str | os.PathLike | None = None,
                 **shards):
        self.shards = FilteredShards(folder, samples_per_shard, world=world, **shards)
        self.manifest = self.shards.manifest  # a test may tune its rows per part
        super().__init__(self.shards, *([Extremes(extremes_path)] if extremes and world.main else []))


def selection_of(indices: Sequence[int], **scores: torch.Tensor | None) -> Selection:
    """A ``Selection`` made outside the Selector (a threshold, a keep fraction), for a sink."""
    values = {name: scores.get(name) for name in SCORE_COLUMNS}
    return Selection(torch.as_tensor(list(indices), dtype=torch.long), **values)
