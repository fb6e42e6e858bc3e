"""The selection on disk: chosen samples as filtered shards, every sample in the manifest."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import polars as pl
import torch

from jestfilter.data.atomic import atomic_write
from jestfilter.data.layout import mark_complete
from jestfilter.data.manifest import Manifest
from jestfilter.data.options import MANIFESTS, SAMPLES_PER_SHARD
from jestfilter.data.types import RawSample, SuperBatch
from jestfilter.data.writer import FilteredShardWriter, copy_from_sources
from jestfilter.distributed import World, gather_objects
from jestfilter.selection import Selection
from jestfilter.selection.criteria import CRITERIA, SCORE_COLUMNS
from jestfilter.sinks.extremes import ExtremesTracker
from jestfilter.sinks.pool import POOL, choose_top, pool_table
from jestfilter.sinks.rules import FILTERED_RULES

SELECTION_SCORE = "selection_score"  # the conditional score a kept sample was drawn by


class Sink(Protocol):
    """What the training loop and the jobs hand each step's selection to."""

    def record(self, batch: SuperBatch, selection: Selection, step: int,
               unscored: Sequence[tuple[RawSample, str]] = (), reasons: Mapping[int, str] | None = None) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def close(self) -> None: ...


class FilteredOutput:
    """Chosen samples → byte-for-byte shards, every sample → one manifest row per pass, and the
    most/least learnable examples → ``extremes`` (for the report).

    ``rule`` says which samples the shards hold when the data is read in several passes
    (``jestfilter.sinks.pool``): ``all`` and ``first-pass`` write a sample when it is chosen;
    ``top`` writes nothing while training and, at ``close()``, ranks the pool from the manifest
    and copies its best ``keep_fraction`` from their source shards. ``close()``
    also writes ``pool.parquet/``: one row per sample read, how often it was chosen and the
    shard that holds it. ``criterion`` names the score ``top`` ranks by. ``manifest="kept"``:
    the manifest records kept and rejected samples and counts the dropped ones per shard
    (``jestfilter.data.manifest``); it cannot serve rule ``top``.

    Rank-aware: under torchrun every rank writes its own shards (``filtered-r001-000000.tar``),
    manifest and pool parts (``rank-00001-part-*.parquet``) into the same folder and applies the
    rule to the samples it read (each rank reads the same shards every pass), and ``close()``
    gathers every rank's shard sizes so rank 0 writes ``sizes.json`` and ``_SUCCESS`` once for
    all of them. Only rank 0 tracks extremes (its own rows).
    """

    def __init__(self, folder: str | os.PathLike, samples_per_shard: int = SAMPLES_PER_SHARD, *,
                 world: World = World(), prefix: str = "filtered", part_prefix: str = "part", extremes: bool = True,
                 rule: str = "all", keep_fraction: float | None = None, criterion: str = "learnability",
                 seed: int = 0, manifest: str = "all"):
        if rule not in FILTERED_RULES:
            raise ValueError(f"unknown rule {rule!r}: choose one of {', '.join(FILTERED_RULES)}")
        if manifest not in MANIFESTS:
            raise ValueError(f"unknown manifest {manifest!r}: choose one of {', '.join(MANIFESTS)}")
        if rule == "top" and manifest != "all":
            raise ValueError("rule 'top' ranks every sample by its scores in every pass: it needs --manifest all")
        if rule == "top" and not (keep_fraction is not None and 0 < keep_fraction <= 1):
            raise ValueError(f"rule 'top' needs a keep fraction in (0, 1], got {keep_fraction}")
        self.folder, self.world, self.rule = Path(folder), world, rule
        self.keep_fraction, self.seed = keep_fraction, seed
        self.criterion = CRITERIA[criterion]
        if world.size > 1:
            prefix, part_prefix = f"{prefix}-r{world.rank:03d}", f"rank-{world.rank:05d}-{part_prefix}"
        self.part_prefix = part_prefix
        self.writer = FilteredShardWriter(self.folder, samples_per_shard, prefix=prefix)
        self.manifest = Manifest(self.folder, part_prefix=part_prefix, score_columns=(*SCORE_COLUMNS, SELECTION_SCORE),
                                 keep_dropped=manifest == "all")
        self.extremes = ExtremesTracker() if extremes and world.main else None

    def record(self, batch: SuperBatch, selection: Selection, step: int,
               unscored: Sequence[tuple[RawSample, str]] = (), reasons: Mapping[int, str] | None = None) -> None:
        """Write the chosen samples (as the rule says), a manifest row for every sample of
        ``batch`` (and for the ``unscored`` ones, dropped for their reason), and note the extremes."""
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
        if self.extremes is not None and selection.learnability is not None:
            self.extremes.add_batch(batch.samples, selection.learnability)

    def state_dict(self) -> dict:
        """Flush shards and manifest to disk; their position, the rule (and the extremes) as a dict."""
        state = {"writer": self.writer.state_dict(), "manifest": self.manifest.state_dict(), "rule": self.rule}
        if self.extremes is not None:
            state["extremes"] = self.extremes.state_dict()
        return state

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
        if self.extremes is not None and "extremes" in state:
            self.extremes.load_state_dict(state["extremes"])

    def close(self) -> dict[str, int]:
        """Finish the manifest, write the rule's samples (``top``: now, from the source shards),
        the last shard and this rank's pool table; rank 0 marks the folder complete for all
        ranks. Returns every rank's shard sizes."""
        self.manifest.close()
        pool = pool_table(self.manifest.own_rows(), self.criterion, every_pass=self.manifest.keep_dropped)
        if self.rule == "top":
            pool = self._copy_top(pool)
        self.writer.close(summary=False)
        (self.folder / POOL).mkdir(exist_ok=True)
        atomic_write(self.folder / POOL / f"{self.part_prefix}-00000.parquet", pool.write_parquet,
                     tmp_dir=self.folder)  # readers scan pool.parquet/ whole
        sizes = {name: n for part in gather_objects(self.world, self.writer.sizes) for name, n in part.items()}
        if self.world.main:
            mark_complete(self.folder, sizes)
        return sizes

    def _copy_top(self, pool: pl.DataFrame) -> pl.DataFrame:
        """Write the top of ``pool`` from its source shards, byte-for-byte; the pool with each
        sample's output shard."""
        chosen = choose_top(pool, self.keep_fraction, self.seed)
        wanted = set(chosen.select("source_shard", "key").iter_rows())
        written = copy_from_sources(self.writer, wanted)
        if len(written) < len(wanted):  # a shard changed or broke since it was read: say so, keep the rest
            missing = sorted(wanted - set(written))
            print(f"warning: {len(missing)} chosen sample(s) are no longer readable in their source shards (e.g. "
                  f"{missing[0][1]!r} of {missing[0][0]}); pool.parquet lists them with no output shard",
                  file=sys.stderr)
        shard_of = pl.DataFrame([(s, k, o) for (s, k), o in written.items()], orient="row",
                                schema={"source_shard": pl.String, "key": pl.String, "written": pl.String})
        return (pool.join(shard_of, on=["source_shard", "key"], how="left")
                .with_columns(pl.col("written").alias("output_shard")).drop("written"))


def selection_of(indices: Sequence[int], **scores: torch.Tensor | None) -> Selection:
    """A ``Selection`` made outside the Selector (a threshold, a keep fraction), for a sink."""
    values = {name: scores.get(name) for name in SCORE_COLUMNS}
    return Selection(torch.as_tensor(list(indices), dtype=torch.long), **values)
