"""Write the same web samples (bytes unchanged) in another order: sorted by a column of the demo's
``web_truth.parquet`` (e.g. ``true_class``), as a data set built class by class would be.

Used to test how the bootstrap's shard stream (shards shuffled, then a 2,000-sample shuffle
buffer) copes with web shards that are not already in random order; a loop that draws batches
at random from memory does not see the order at all.

    python tools/sort_shards.py DEMO/web DEMO/web_truth.parquet OUT/web --by true_class
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl
import webdataset as wds

from jestfilter.data.shards import expand_shards, iter_samples
from jestfilter.data.types import RawSample


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("shards", help="folder of web shards")
    p.add_argument("truth", help="web_truth.parquet (key, shard and the --by column)")
    p.add_argument("out")
    p.add_argument("--by", default="true_class")
    p.add_argument("--per-shard", type=int, default=500)
    args = p.parse_args()
    truth = pl.read_parquet(args.truth)
    rank = {(row["shard"], row["key"]): (row[args.by] is None, row[args.by] or 0, i)
            for i, row in enumerate(truth.iter_rows(named=True))}
    samples = [s for s in iter_samples(expand_shards(args.shards)) if isinstance(s, RawSample)]
    samples.sort(key=lambda s: rank[(Path(s.source_shard).name, s.key)])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(samples), args.per_shard):
        with wds.TarWriter(str(out / f"{start // args.per_shard:05d}.tar")) as sink:
            for sample in samples[start : start + args.per_shard]:
                sink.write({"__key__": sample.key, **sample.members})
    print(f"{len(samples)} samples sorted by {args.by} into {out}")


if __name__ == "__main__":
    main()
