"""Benchmark: the embed batch job's throughput, and the bytes distributed selection exchanges.

    NO_ALBUMENTATIONS_UPDATE=1 python tools/bench_embed.py [--web 2000] [--worlds 2 4]

1. ``jestfilter embed`` on the demo web shards with the tiny model (random weights: the cost
   does not depend on them) on CPU: shards/s and samples/s of the job's own summary (model
   loading excluded), one rank, fresh output folder each repeat.
2. The Selector with ``group=`` under ``torchrun --nproc_per_node=W`` (gloo, CPU): every call
   to ``torch.distributed.all_gather`` is wrapped to count the bytes of the tensors it is given
   (sent: the input; received: the other ranks' parts of the output). The counts are checked
   against the formula below and the formula is then applied to the paper's shape at 256 GPUs.

Formula (learnability: two models, image and text each, N chunks, fp32 unless said):
  only each newly chosen chunk:  received per rank per step = (N−1)/N · 4·b·d·bytes
  all-gather every embedding:    received per rank per step = 4·(W−1)/W·B·d·bytes
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

N_CHUNKS = 16
SELECTION_SHAPES = [(1024, 256, 64), (2048, 512, 128), (4096, 512, 256)]  # (B, b, d)
PAPER = {"B": 163_840, "b": 32_768, "d": 768, "W": 256}


def bench_embed(web: int, repeats: int) -> dict:
    from jestfilter.cli import main
    from jestfilter.datasets.demo import build_demo_data
    from jestfilter.jobs.runner import read_done
    from jestfilter.models import create_model, save_local_dir

    work = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    demo = build_demo_data(work / "demo", curated=20, web=web, eval=20, samples_per_shard=250, progress=False)
    save_local_dir(create_model("jest-tiny"), work / "model")
    runs = []
    for repeat in range(repeats):
        out = work / f"emb-{repeat}"
        start = time.perf_counter()
        assert main(["embed", "--model", str(work / "model"), "--shards", demo.web, "--out", str(out)]) == 0
        wall = time.perf_counter() - start
        records = [read_done(out, p.name.removesuffix(".emb.npz") + ".tar") for p in out.glob("*.emb.npz")]
        seconds = sum(r["seconds"] for r in records)
        runs.append({"shards": len(records), "samples": sum(r["samples"] for r in records),
                     "shard_seconds": seconds, "wall_with_model_load": wall})
    best = min(runs, key=lambda r: r["shard_seconds"])
    return {**best, "shards_per_s": best["shards"] / best["shard_seconds"],
            "samples_per_s": best["samples"] / best["shard_seconds"], "runs": runs}


def selection_worker(out: str) -> None:
    """Run under torchrun: each rank selects from its own rows and counts all_gather bytes."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from jestfilter import Selector, SiglipOutputs

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    counted = {"sent": 0, "received": 0, "calls": 0}
    real_all_gather = dist.all_gather

    def counting_all_gather(outputs, tensor, *args, **kwargs):
        size = tensor.numel() * tensor.element_size()
        counted["sent"] += size
        counted["received"] += size * (len(outputs) - 1)
        counted["calls"] += 1
        return real_all_gather(outputs, tensor, *args, **kwargs)

    dist.all_gather = counting_all_gather
    results = []
    for B, b, d in SELECTION_SHAPES:
        generator = torch.Generator().manual_seed(rank)
        rows = B // world

        def model():
            image = F.normalize(torch.randn(rows, d, generator=generator), dim=1)
            text = F.normalize(torch.randn(rows, d, generator=generator), dim=1)
            return SiglipOutputs(image, text, torch.tensor(10.0), torch.tensor(-10.0))

        learner, reference = model(), model()
        counted.update(sent=0, received=0, calls=0)
        Selector(filter_ratio=1 - b / B, n_chunks=N_CHUNKS).select(learner, reference, step=0, group=dist.group.WORLD)
        results.append({"B": B, "b": b, "d": d, "W": world, **counted})
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    dist.destroy_process_group()


def bench_selection(worlds: list[int]) -> list[dict]:
    rows = []
    for world in worlds:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bytes.json"
            command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={world}",
                       "--standalone", __file__, "--selection-worker", str(out)]
            subprocess.run(command, check=True, capture_output=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
            rows += json.loads(out.read_text())
    for row in rows:
        row["formula_chunks"] = chunk_bytes(row["B"], row["b"], row["d"], row["W"])
        row["formula_all"] = all_embedding_bytes(row["B"], row["d"], row["W"])
    return rows


def chunk_bytes(B: int, b: int, d: int, W: int, bytes_per_value: int = 4, models: int = 2) -> int:
    """Received per rank per step when only each newly chosen chunk is gathered (the last
    chunk conditions nothing, so N−1 exchanges), plus the one row-count check."""
    per_chunk = 2 * models * (b // N_CHUNKS) * d * bytes_per_value * (W - 1) // W
    return (N_CHUNKS - 1) * per_chunk + 8 * (W - 1)


def all_embedding_bytes(B: int, d: int, W: int, bytes_per_value: int = 4, models: int = 2) -> int:
    """Received per rank per step when every rank gathers every embedding once."""
    return 2 * models * B * d * bytes_per_value * (W - 1) // W


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--web", type=int, default=2000, help="web samples to embed (default 2000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worlds", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--selection-worker", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.selection_worker:
        return selection_worker(args.selection_worker)

    embed = bench_embed(args.web, args.repeats)
    print(f"embed: {embed['shards']} shards, {embed['samples']:,} samples in {embed['shard_seconds']:.2f} s "
          f"(best of {args.repeats}): {embed['shards_per_s']:.2f} shards/s, {embed['samples_per_s']:,.0f} samples/s; "
          f"wall with model load {embed['wall_with_model_load']:.2f} s")
    print("\n| B | b | d | W | all_gather calls | sent / rank | received / rank | formula (chunks) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in bench_selection(args.worlds):
        print(f"| {row['B']:,} | {row['b']:,} | {row['d']} | {row['W']} | {row['calls']} | {row['sent']:,} | "
              f"{row['received']:,} | {row['formula_chunks']:,} |")
    B, b, d, W = PAPER["B"], PAPER["b"], PAPER["d"], PAPER["W"]
    for name, fp in (("fp32", 4), ("bf16", 2)):
        print(f"paper shape at W={W}, {name}: chunks only {chunk_bytes(B, b, d, W, fp) / 1e6:,.1f} MB received "
              f"per rank per step; all embeddings {all_embedding_bytes(B, d, W, fp) / 1e6:,.1f} MB")


if __name__ == "__main__":
    main()
