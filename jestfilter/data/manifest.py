"""One row per input sample per pass: what happened to it and why, as parquet parts.

The manifest is a folder ``manifest.parquet/`` of ``part-NNNNN.parquet`` files, each written
whole (temporary name, then rename) once ``rows_per_part`` rows have gathered, so memory does
not grow with the pool. polars (``pl.read_parquet("…/manifest.parquet/*.parquet")``), pandas
(``pd.read_parquet("…/manifest.parquet")``) and duckdb (``read_parquet('…/*.parquet')``) read it.
Under torchrun every rank writes its own parts (``rank-00001-part-NNNNN.parquet``) into the
same folder, so the folder still reads as one table.

With ``keep_dropped=False`` (``--manifest kept``) only kept and rejected samples get rows; the
dropped ones are counted per (source shard, pass, reason) in ``dropped.parquet/``, a part beside
each manifest part, which is 80 % fewer rows at f = 0.8 for users who do not need every drop.

Readers that must not hold the whole table (the report, the pool table, the ``top`` rule) scan it
lazily (``scan_manifest``) and aggregate with polars' streaming engine.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Callable, Mapping, Sequence

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
DROPPED_COUNTS = "dropped.parquet"  # with keep_dropped=False: the dropped samples, counted
DROPPED_SCHEMA = {"source_shard": pl.String, "pass": pl.Int32, "reason": pl.String, "rows": pl.Int64}


class Manifest:
    """Collect rows and write them as parquet parts under ``out_dir/manifest.parquet/``.

    ``score_columns`` names the per-sample scores the rows carry (e.g. the Selector's
    ``learner_loss``, ``reference_loss``, ``learnability``); a score not given is null.
    ``keep_dropped=False``: dropped samples are counted in ``out_dir/dropped.parquet/`` (one
    part per manifest part, same name) instead of getting rows.
    """

    def __init__(self, out_dir: str | os.PathLike, rows_per_part: int = 100_000, part_prefix: str = "part",
                 score_columns: Sequence[str] = (), keep_dropped: bool = True):
        self.path = Path(out_dir) / "manifest.parquet"
        self.path.mkdir(parents=True, exist_ok=True)
        self.keep_dropped = keep_dropped
        self.dropped_path = Path(out_dir) / DROPPED_COUNTS
        self._dropped: Counter[tuple[str, int, str | None]] = Counter()  # (shard, pass, reason) → rows
        if not keep_dropped:
            self.dropped_path.mkdir(exist_ok=True)
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
        """Add rows given as equal-length columns; a column left out is null. Without
        ``keep_dropped`` a dropped row is counted instead."""
        if not self.keep_dropped:
            columns = self._count_dropped(columns)
        n = len(columns["key"])
        for name, values in self._rows.items():
            given = columns.get(name)
            values.extend([None] * n if given is None else list(given))
        if len(self) >= self.rows_per_part:
            self.flush()

    def _count_dropped(self, columns: dict[str, Sequence]) -> dict[str, Sequence]:
        """``columns`` without their dropped rows, which are added to the counts."""
        decisions = columns["decision"]
        keep = [i for i, decision in enumerate(decisions) if decision != DROPPED]
        if len(keep) == len(decisions):
            return columns
        reasons = columns.get("reason") or [None] * len(decisions)
        self._dropped.update((columns["source_shard"][i], int(columns["pass"][i]), reasons[i])
                             for i, decision in enumerate(decisions) if decision == DROPPED)
        return {name: None if values is None else [values[i] for i in keep] for name, values in columns.items()}

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
        """Write the gathered rows as the next part (and the dropped samples counted since the
        last part, under the same name in ``dropped.parquet/``)."""
        if not len(self) and not self._dropped:
            return
        if self._fresh:
            self._refuse_old_parts()
        frame = pl.DataFrame(self._rows, schema=self.schema)
        if self._dropped:
            counts = pl.DataFrame([(*group, rows) for group, rows in sorted(self._dropped.items(), key=str)],
                                  schema=DROPPED_SCHEMA, orient="row")
            atomic_write(self.dropped_path / self.part(self.parts).name, counts.write_parquet,
                         tmp_dir=self.dropped_path.parent)
            self._dropped.clear()
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
        for folder in (self.path, self.dropped_path):
            leftovers = folder.parent.glob(f".{folder.name}-{self.part_prefix}-*.tmp")  # a killed write's
            for path in [*folder.glob(f"{self.part_prefix}-*"), *folder.glob(f".{self.part_prefix}-*"), *leftovers]:
                number = path.name.lstrip(".").removeprefix(f"{self.part_prefix}-").removesuffix(".parquet")
                if not number.isdigit() or int(number) >= self.parts:
                    path.unlink()
        self._rows = {name: [] for name in self.schema}
        self._dropped.clear()
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
    """All rows of ``out_dir/manifest.parquet`` (empty, with the schema, when there are none).
    Holds the whole table in memory: for a large one use ``scan_manifest``."""
    return scan_manifest(out_dir).collect()


def scan_manifest(out_dir: str | os.PathLike) -> pl.LazyFrame:
    """The rows of ``out_dir/manifest.parquet``, read lazily (aggregate them with
    ``collect(engine="streaming")`` and memory stays flat however many rows there are)."""
    path = Path(out_dir) / "manifest.parquet"
    if not any(path.glob("*part-*.parquet")):
        return pl.LazyFrame(schema=SCHEMA)
    return pl.scan_parquet(path / "*part-*.parquet")


CHUNK_ROWS = 2_000_000  # manifest rows a chunked reduction reads at a time


def reduce_in_chunks(rows: pl.LazyFrame, by: Sequence[str], partial: Sequence[pl.Expr], merge: Sequence[pl.Expr],
                     prepare: Callable[[pl.LazyFrame], pl.LazyFrame] = lambda rows: rows,
                     chunk_rows: int | None = None, spill: str | os.PathLike | None = None) -> pl.DataFrame:
    """``prepare(rows).group_by(by).agg(partial)``, merged with ``merge``, in memory that does
    not grow with the rows: an out-of-core group-by for a manifest far larger than memory.

    ``partial`` aggregates ``chunk_rows`` (default ``CHUNK_ROWS``) of ``rows`` at a time (a slice of the scan, read from
    its files alone; ``prepare`` filters it or adds columns), and each chunk's groups are split by
    a hash of ``by`` into as many buckets as there are chunks and written to ``spill`` (a
    temporary folder there; default: the system's). Each bucket's pieces are then merged with
    ``merge``, which must therefore be associative (sums, counts, min, max). Memory: one chunk,
    one bucket and the result (one row per group), however many rows there are; temporary disk:
    the chunks' groups. (polars' streaming group-by on its own kept state for every row it had
    read: 9 GB for 50M manifest rows over 1M samples; docs/benchmarks.md.)"""
    chunk_rows = chunk_rows or CHUNK_ROWS
    total = rows.select(pl.len()).collect().item()
    chunks = max(1, -(-total // chunk_rows))
    if chunks == 1:
        return prepare(rows).group_by(*by).agg(*partial).collect(engine="streaming")
    if spill is not None:
        Path(spill).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".reduce-", dir=spill) as folder:
        for chunk, start in enumerate(range(0, total, chunk_rows)):
            groups = prepare(rows.slice(start, chunk_rows)).group_by(*by).agg(*partial).collect(engine="streaming")
            bucket = (pl.struct(*by).hash(seed=0) % chunks).alias("_bucket")
            for (index,), piece in groups.with_columns(bucket).partition_by("_bucket", as_dict=True).items():
                piece.drop("_bucket").write_parquet(Path(folder) / f"{index:06d}-{chunk:06d}.parquet")
        merged = [pl.scan_parquet(Path(folder) / f"{index:06d}-*.parquet").group_by(*by).agg(*merge)
                  .collect(engine="streaming")
                  for index in range(chunks) if any(Path(folder).glob(f"{index:06d}-*.parquet"))]
    return pl.concat(merged) if merged else prepare(rows).group_by(*by).agg(*partial).collect()


def scan_dropped_counts(out_dir: str | os.PathLike) -> pl.LazyFrame | None:
    """``out_dir/dropped.parquet``'s counts of the dropped samples a ``--manifest kept`` run did
    not record (``source_shard, pass, reason, rows``), lazily; None when the manifest has a row
    for every dropped sample."""
    path = Path(out_dir) / DROPPED_COUNTS
    if not path.is_dir():
        return None
    if not any(path.glob("*part-*.parquet")):
        return pl.LazyFrame(schema=DROPPED_SCHEMA)
    return pl.scan_parquet(path / "*part-*.parquet")
