"""One input shard's share of a job's filtered output, and the merge over every shard.

A shard's kept samples (``<shard>-NNNNNN.tar``) and manifest part
(``manifest.parquet/part-<shard>-NNNNN.parquet``) are written by a ``FilteredShards`` sink in a
private folder and moved in only when complete, so shards from many ranks never meet
half-written and a killed attempt leaves nothing behind. When every shard is done,
``sizes.json`` and ``_SUCCESS`` cover them all. The filter and select jobs write through it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Sequence

from jestfilter.data.layout import mark_complete, shard_stem
from jestfilter.jobs.runner import read_done
from jestfilter.sinks.filtered import FilteredShards


class ShardOutput:
    """``sink`` takes the shard's selections; ``close()`` moves the finished files in and
    returns their sizes (output shard name → samples)."""

    def __init__(self, out_dir: str | os.PathLike, shard: str, samples_per_shard: int, manifest: str = "all"):
        self.out_dir, stem = Path(out_dir), shard_stem(shard)
        self.work = self.out_dir / f".work-{stem}"
        shutil.rmtree(self.work, ignore_errors=True)  # what a killed attempt left
        self.sink = FilteredShards(self.work, samples_per_shard, prefix=stem, part_prefix=f"part-{stem}",
                                   manifest=manifest)
        self.shard_pattern = re.compile(rf"{re.escape(stem)}-\d{{6}}\.tar")  # the writer's names for this shard
        self.part_pattern = re.compile(rf"part-{re.escape(stem)}-\d{{5}}\.parquet")

    def close(self) -> dict[str, int]:
        sizes = self.sink.close()
        parts = []
        manifest_parts, dropped_parts = self.sink.manifest_folders()
        for folder in (manifest_parts, dropped_parts):  # dropped: --manifest kept
            if folder.is_dir():
                (self.out_dir / folder.name).mkdir(exist_ok=True)
                for part in sorted(folder.glob("*.parquet")):
                    os.replace(part, self.out_dir / folder.name / part.name)
                    parts.append(part.name)
        manifest, dropped = self.out_dir / "manifest.parquet", self.out_dir / dropped_parts.name
        for name in sizes:
            os.replace(self.work / name, self.out_dir / name)
        # a shard done again (it changed since) may now have fewer output shards or parts
        new = {*sizes, *parts}
        for old in [*self.out_dir.glob("*.tar"), *manifest.glob("*.parquet"), *dropped.glob("*.parquet")]:
            ours = self.shard_pattern.fullmatch(old.name) or self.part_pattern.fullmatch(old.name)
            if ours and old.name not in new:
                old.unlink()
        shutil.rmtree(self.work)
        return sizes


def merge(out_dir: str | os.PathLike, shards: Sequence[str], job: str = "filter") -> dict[str, int]:
    """Write ``sizes.json`` over every shard's output, then ``_SUCCESS``; all must be done."""
    out_dir = Path(out_dir)
    sizes: dict[str, int] = {}
    for shard in shards:
        record = read_done(out_dir, shard)
        if record is None:
            raise ValueError(f"shard {shard} is not done yet: run the {job} job until every shard is done")
        sizes.update(record["sizes"])
    mark_complete(out_dir, sizes)
    return sizes
