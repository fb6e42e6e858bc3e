"""One row per input sample per pass: what happened to it and why, as parquet parts.

The manifest is a folder ``manifest.parquet/`` of ``part-NNNNN.parquet`` files, each written
whole (temporary name, then rename) once ``rows_per_part`` rows have gathered, so memory does
not grow with the pool. polars (``pl.read_parquet("…/manifest.parquet/*.parquet")``), pandas
(``pd.read_parquet("…/manifest.parquet")``) and duckdb (``read_parquet('…/*.parquet')``) read it.
Under torchrun every rank writes its own parts (``rank-00001-part-NNNNN.parquet``) into the
same folder, so the folder still reads as one table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import polars as pl
import torch

from jestfilter.data.atomic import atomic_write
from jestfilter.data.types import RawSample, SuperBatch

KEPT, DROPPED, REJECTED = "kept", "dropped", "rejected"

SCHEMA = {
    "key": pl.String,
    "source_shard": pl.String,
    "pass": pl.Int32,
    "step": pl.Int64,
    "decision": pl.String,  # kept | dropped | rejected
    "reason": pl.String,  # why a sample was rejected, or dropped without the usual scoring; else null
    "output_shard": pl.String,  # the filtered shard holding a kept sample
    "chunk": pl.Int32,  # the chunk of the step's selection a kept sample was drawn in
}
# Score columns (Float32, null where a score was not computed) follow, named by the caller.


class Manifest:
    """Collect rows and write them as parquet parts under ``out_dir/manifest.parquet/``.

    ``score_columns`` names the per-sample scores the rows carry (e.g. the Selector's
    ``learner_loss``, ``reference_loss``, ``learnability``); a score not given is null.
    """

    def __init__(self, out_dir: str | os.PathLike, rows_per_part: int = 100_000, part_prefix: str = "part",
                 score_columns: Sequence[str] = ()):
        self.path = Path(out_dir) / "manifest.parquet"
        self.path.mkdir(parents=True, exist_ok=True)
        self.rows_per_part, self.part_prefix = rows_per_part, part_prefix
        self.schema = {**SCHEMA, **{name: pl.Float32 for name in score_columns}}
        self.parts = 0
        self.part_rows: list[int] = []  # rows in each part written, checked on resume
        self._rows: dict[str, list] = {name: [] for name in self.schema}
        self._fresh = True

    def part(self, index: int) -> Path:
        return self.path / f"{self.part_prefix}-{index:05d}.parquet"

    def __len__(self) -> int:
        """Rows not yet written to a part."""
        return len(self._rows["key"])

    def append(self, **columns: Sequence) -> None:
        """Add rows given as equal-length columns; a column left out is null."""
        n = len(columns["key"])
        for name, values in self._rows.items():
            given = columns.get(name)
            values.extend([None] * n if given is None else list(given))
        if len(self) >= self.rows_per_part:
            self.flush()

    def record(
        self,
        batch: SuperBatch,
        *,
        step: int,
        kept: Sequence[int],
        output_shards: Sequence[str | None] | None = None,
        chunks: Sequence[int] | None = None,
        reasons: Mapping[int, str] | None = None,
        **scores: Sequence[float] | torch.Tensor | None,
    ) -> None:
        """Rows for a whole super-batch: ``kept`` indexes ``batch.samples`` (``output_shards``
        and ``chunks`` aligned with it), ``scores`` are per sample (one keyword per score
        column); every other sample is dropped (with ``reasons[i]`` when given) and every
        rejection is recorded with its reason."""
        kept = [int(i) for i in kept]
        shard_of = dict(zip(kept, output_shards)) if output_shards is not None else {}
        chunk_of = dict(zip(kept, (int(c) for c in chunks))) if chunks is not None else {}
        chosen, reasons = set(kept), reasons or {}
        samples, rejected = batch.samples, batch.rejected
        n, total = len(samples), len(samples) + len(rejected)
        unknown = set(scores) - set(self.schema)
        if unknown:
            raise ValueError(f"no score column {sorted(unknown)[0]!r} in this manifest")
        self.append(
            key=[s.key for s in samples] + [r.key for r in rejected],
            source_shard=[s.source_shard for s in samples] + [r.source_shard for r in rejected],
            **{"pass": [batch.pass_index] * total},
            step=[step] * total,
            decision=[KEPT if i in chosen else DROPPED for i in range(n)] + [REJECTED] * len(rejected),
            reason=[reasons.get(i) for i in range(n)] + [r.reason for r in rejected],
            output_shard=[shard_of.get(i) for i in range(n)] + [None] * len(rejected),
            chunk=[chunk_of.get(i) for i in range(n)] + [None] * len(rejected),
            **{name: _scores(values, n, len(rejected)) for name, values in scores.items()},
        )

    def record_dropped(self, samples: Sequence[RawSample], *, step: int, pass_index: int, reason: str) -> None:
        """Rows for samples read but dropped unscored, all for ``reason``."""
        if samples:
            self.append(key=[s.key for s in samples], source_shard=[s.source_shard for s in samples],
                        step=[step] * len(samples), decision=[DROPPED] * len(samples),
                        reason=[reason] * len(samples), **{"pass": [pass_index] * len(samples)})

    def flush(self) -> None:
        """Write the gathered rows as the next part."""
        if not len(self):
            return
        if self._fresh:
            self._refuse_old_parts()
        frame = pl.DataFrame(self._rows, schema=self.schema)
        atomic_write(self.part(self.parts), frame.write_parquet, tmp_dir=self.path.parent)  # readers scan the folder
        self.parts += 1
        self.part_rows.append(frame.height)
        self._rows = {name: [] for name in self.schema}

    close = flush

    def state_dict(self) -> dict:
        """Write pending rows, then return the parts the checkpoint covers and their row counts."""
        self.flush()
        return {"parts": self.parts, "rows": list(self.part_rows)}

    def load_state_dict(self, state: dict, check: bool = True) -> None:
        """Drop this writer's parts written after the checkpoint (and rows gathered since).
        Refuses, with ``ValueError``, a folder that lost or changed a part the checkpoint counts
        (``check=False``: the caller ran ``check_state`` already)."""
        if check:
            self.check_state(state)
        self.parts, self.part_rows = state["parts"], list(state.get("rows", []))
        leftovers = self.path.parent.glob(f".{self.path.name}-{self.part_prefix}-*.tmp")  # a killed write's
        for path in [*self.path.glob(f"{self.part_prefix}-*"), *self.path.glob(f".{self.part_prefix}-*"), *leftovers]:
            number = path.name.lstrip(".").removeprefix(f"{self.part_prefix}-").removesuffix(".parquet")
            if not number.isdigit() or int(number) >= self.parts:
                path.unlink()
        self._rows = {name: [] for name in self.schema}
        self._fresh = False

    def check_state(self, state: dict) -> None:
        """``ValueError`` unless every part the checkpoint counts is there with its rows."""
        for index, rows in enumerate(state.get("rows", [])):
            path = self.part(index)
            found = pl.scan_parquet(path).select(pl.len()).collect().item() if path.exists() else None
            if found != rows:
                what = "is missing" if found is None else f"holds {found:,} rows"
                raise ValueError(f"cannot resume: {path} {what}; the checkpoint counts {rows:,} rows in it. "
                                 "Restore it or start in a new folder")

    def own_rows(self) -> pl.LazyFrame:
        """Every row this writer has written to its parts (call after ``flush``), read lazily."""
        parts = sorted(self.path.glob(f"{self.part_prefix}-*.parquet"))
        return pl.scan_parquet(parts) if parts else pl.LazyFrame(schema=self.schema)

    def written(self) -> list[tuple[str, str, str]]:
        """(source shard, key, output shard) of every kept row in this writer's parts."""
        kept = self.own_rows().filter(pl.col("decision") == KEPT)
        return list(kept.select("source_shard", "key", "output_shard").collect().iter_rows())

    def _refuse_old_parts(self) -> None:
        if any(self.path.glob(f"{self.part_prefix}-*.parquet")):
            raise ValueError(f"{self.path} already holds a manifest: use a new folder or resume "
                             "from the run's checkpoint")
        self._fresh = False


def _scores(values, n: int, rejected: int) -> list:
    """One score per sample, then nulls for the rejections; a NaN is stored as null too."""
    if values is None:
        return [None] * (n + rejected)
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().tolist()
    if len(values) != n:
        raise ValueError(f"expected {n} scores, got {len(values)}")
    return [None if v is None or v != v else v for v in values] + [None] * rejected


def read_manifest(out_dir: str | os.PathLike) -> pl.DataFrame:
    """All rows of ``out_dir/manifest.parquet`` (empty, with the schema, when there are none)."""
    path = Path(out_dir) / "manifest.parquet"
    if not any(path.glob("*part-*.parquet")):
        return pl.DataFrame(schema=SCHEMA)
    return pl.read_parquet(path / "*part-*.parquet")
