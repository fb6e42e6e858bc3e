"""Digests of what a short seeded bootstrap selects and writes: kept keys, filtered shard
bytes and manifest rows. ``tests/test_behaviour_pin.py`` holds them against
``tests/golden/bootstrap_pin.json``; a change that is meant to alter selection or output
rewrites that file (``python tests/behaviour_pin.py --write``) in the same commit and says why.

What must not change is pinned exactly: decisions, keys, reasons, chunks and bytes. The float
scores of the manifest are pinned as values, compared with a tolerance: their last digits
depend on the CPU's kernels (another CPU of the same kind gave other low bits).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl

GOLDEN = Path(__file__).parent / "golden" / "bootstrap_pin.json"
ARGS = ["--steps", "10", "--reference-steps", "4", "--batch-size", "16", "--n-chunks", "4",
        "--eval-every", "10", "--checkpoint-every", "4", "--samples-per-shard", "40", "--workers", "0",
        "--compare", "none", "--seed", "3", "--no-progress", "--precision", "fp32"]  # fp32: not timed per machine


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digests(out: Path) -> dict:
    """What the run selected and wrote, as short digests."""
    filtered = out / "filtered"
    manifest = pl.read_parquet(filtered / "manifest.parquet" / "*.parquet")
    manifest = manifest.with_columns(pl.col("source_shard").str.split("/").list.last())  # not the temporary folder
    manifest = manifest.sort("pass", "step", "source_shard", "key")
    kept = manifest.filter(pl.col("decision") == "kept").select("pass", "step", "key")
    floats = sorted(name for name, dtype in manifest.schema.items() if dtype.is_float())
    exact = manifest.select(sorted(set(manifest.columns) - set(floats)))
    rows = "\n".join(json.dumps(r, sort_keys=True) for r in exact.iter_rows(named=True))
    shards = {p.name: _sha(p.read_bytes()) for p in sorted(filtered.glob("*.tar"))}
    return {
        "kept_rows": kept.height,
        "kept_keys": _sha("\n".join(f"{a}/{b}/{c}" for a, b, c in kept.iter_rows()).encode()),
        "manifest_rows": manifest.height,
        "manifest": _sha(rows.encode()),
        "manifest_scores": {name: [None if v is None else round(v, 5) for v in manifest[name].to_list()]
                            for name in floats},
        "shards": shards,
        "sizes": json.loads((filtered / "sizes.json").read_text()),
    }


def run_pinned(root: Path) -> dict:
    """Build the small demo data and run the pinned bootstrap under ``root``; its digests."""
    from jestfilter.datasets.demo import build_demo_data

    demo = build_demo_data(root / "data", curated=200, web=600, eval=100, samples_per_shard=100, progress=False)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    out = root / "run"
    result = subprocess.run([sys.executable, "-m", "jestfilter", "bootstrap", "--curated", demo.curated,
                             "--web", demo.web, "--eval", str(demo.eval), "--out", str(out), *ARGS],
                            capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return digests(out)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        found = run_pinned(Path(tmp))
    print(json.dumps(found, indent=1))
    if "--write" in sys.argv:
        GOLDEN.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}")
