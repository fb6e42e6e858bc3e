"""Time `build_demo_data` with its defaults (24,000 samples) and report throughput and output size.

Usage: python tools/bench_demo_data.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

from jestfilter.datasets.demo import build_demo_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    seconds = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            paths = build_demo_data(Path(tmp) / "demo", progress=False)
            seconds.append(time.perf_counter() - start)
            size = sum(p.stat().st_size for p in paths.root.rglob("*") if p.is_file())
    samples = sum(paths.split_counts.values())
    median = statistics.median(seconds)
    print(f"build_demo_data defaults: {samples:,} samples, {size / 2**20:.0f} MiB written")
    print(f"  wall s per build: {', '.join(f'{s:.2f}' for s in seconds)} (median {median:.2f})")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  {samples / median:,.0f} samples/s; peak RSS {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
