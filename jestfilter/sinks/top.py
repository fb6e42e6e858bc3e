"""Rule ``top``'s post-pass: at the end of a run, the best of the pool by mean score, copied
byte-for-byte from the source shards into the filtered folder."""

from __future__ import annotations

import sys

import polars as pl

from jestfilter.data.writer import FilteredShardWriter, copy_from_sources
from jestfilter.sinks.pool import choose_top


class TopPass:
    """Copies the top ``keep_fraction`` of a pool table (``choose_top``, ties by ``seed``)."""

    def __init__(self, keep_fraction: float | None, seed: int = 0):
        if not (keep_fraction is not None and 0 < keep_fraction <= 1):
            raise ValueError(f"rule 'top' needs a keep fraction in (0, 1], got {keep_fraction}")
        self.keep_fraction, self.seed = keep_fraction, seed

    def __call__(self, pool: pl.DataFrame, writer: FilteredShardWriter) -> pl.DataFrame:
        """Write the top of ``pool`` with ``writer``; the pool with each sample's output shard."""
        chosen = choose_top(pool, self.keep_fraction, self.seed)
        wanted = set(chosen.select("source_shard", "key").iter_rows())
        written = copy_from_sources(writer, wanted)
        if len(written) < len(wanted):  # a shard changed or broke since it was read: say so, keep the rest
            missing = sorted(wanted - set(written))
            print(f"warning: {len(missing)} chosen sample(s) are no longer readable in their source shards (e.g. "
                  f"{missing[0][1]!r} of {missing[0][0]}); pool.parquet lists them with no output shard",
                  file=sys.stderr)
        shard_of = pl.DataFrame([(s, k, o) for (s, k), o in written.items()], orient="row",
                                schema={"source_shard": pl.String, "key": pl.String, "written": pl.String})
        return (pool.join(shard_of, on=["source_shard", "key"], how="left")
                .with_columns(pl.col("written").alias("output_shard")).drop("written"))
