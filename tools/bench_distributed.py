"""Seconds per step of `jestfilter bootstrap` on 1 process against torchrun with N ranks, same global b.

    python tools/bench_distributed.py --ranks 2 --steps 30 --batch-size 32

Runs the tiny demo (jest-tiny, CPU unless CUDA is there) with --compare none and reads each run's
``seconds_per_step`` (reference: uniform on curated; final: online JEST) from metrics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from jestfilter.datasets.demo import build_demo_data

ROOT = Path(__file__).resolve().parents[1]


def run(prefix: list[str], demo, out: Path, args) -> dict:
    command = [*prefix, "-m", "jestfilter", "bootstrap", "--curated", demo.curated, "--web", demo.web,
               "--eval", str(demo.eval), "--out", str(out), "--steps", str(args.steps),
               "--reference-steps", str(args.steps), "--batch-size", str(args.batch_size), "--n-chunks", "4",
               "--eval-every", str(args.steps), "--checkpoint-every", str(args.steps), "--workers", "0",
               "--compare", "none", "--no-progress"]
    # torchrun sets OMP_NUM_THREADS=1 per rank; the single process gets the same, so the
    # comparison is 1 thread against N ranks of 1 thread (--threads to change it)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": str(args.threads)}
    subprocess.run(command, check=True, cwd=ROOT, env=env, capture_output=True)
    metrics = json.loads((out / "metrics.json").read_text())
    return {"reference": metrics["reference"]["seconds_per_step"], "final": metrics["final"]["seconds_per_step"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        demo = build_demo_data(tmp / "demo", curated=800, web=2000, eval=100, samples_per_shard=100,
                               progress=False)
        one = run([sys.executable], demo, tmp / "one", args)
        many = run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={args.ranks}"], demo, tmp / "many", args)
    print(f"b={args.batch_size}, B={args.batch_size * 5} (f=0.8), {args.steps} steps, seconds per step")
    print(f"{'run':28s} {'1 process':>10s} {f'{args.ranks} ranks':>10s}")
    for name, label in (("reference", "reference (uniform, b)"), ("final", "online JEST (B scored, b)")):
        print(f"{label:28s} {one[name]:10.3f} {many[name]:10.3f}")


if __name__ == "__main__":
    main()
