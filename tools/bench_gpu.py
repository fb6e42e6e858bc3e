"""One prepared GPU check (≤ 10 minutes on one H200): step throughput and peak memory of uniform,
JEST and Flexi-JEST steps in fp32 and bf16 with the Selector inside the step, the Selector over
a one-process torchrun nccl group, and a short bootstrap end to end on synthetic shards.

    PYTHONPATH=. python tools/bench_gpu.py --out $OUT                       # jest-b16, 256 px, b 256
    PYTHONPATH=. python tools/bench_gpu.py --out /tmp/gpu --device cpu --tiny   # check it on a CPU

A step here is what ``OnlineTrainer`` runs per step once a super-batch is decoded: the learner
scores B = b/(1−f) rows under no_grad (Flexi: at the coarse patch size), the reference's
embeddings come from the cache (random unit vectors here), the Selector chooses b, and one
SigLIP step trains on them (Flexi: half of them at the coarse patch size). Inputs are random
pixels and tokens already on the device, so the numbers are the model's and the Selector's,
not the loader's. Writes gpu.md and gpu.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from jestfilter.config import BootstrapConfig, TrainSettings
from jestfilter.models import coarse_patch_size, create_model, embed
from jestfilter.selection import Selector, SiglipOutputs
from jestfilter.train import make_optimizer, make_scheduler, train_step
from jestfilter.train.precision import autocast, compile_towers, use_fast_kernels


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_benchmark(model_name: str, device: torch.device, batch: int, filter_ratio: float, repeats: int,
                   compile_model: bool) -> list[dict]:
    """Seconds, samples/s and peak memory of each kind of step in each precision."""
    use_fast_kernels(device)
    rows = []
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        bundle = create_model(model_name, device=device)
        model = bundle.model
        if compile_model:
            compile_towers(model)
        selector = Selector("learnability", filter_ratio, n_chunks=16, batch_size=batch)
        super_batch = selector.super_batch
        size = model.visual.image_size[0]
        pixels = torch.randn(super_batch, 3, size, size, device=device)
        texts = torch.randint(1, 49407, (super_batch, model.context_length), device=device)
        with torch.no_grad():
            dim = embed(model, pixels[:2], texts[:2]).image.shape[1]
        unit = lambda: torch.nn.functional.normalize(torch.randn(super_batch, dim, device=device), dim=-1)  # noqa: E731
        reference = SiglipOutputs(unit(), unit(), torch.tensor(10.0, device=device), torch.tensor(-10.0, device=device))
        optimizer = make_optimizer(model, lr=1e-4, weight_decay=1e-4)
        scheduler = make_scheduler(optimizer, total_steps=10**6)
        coarse = coarse_patch_size(model)

        def step(kind: str, step_index: int) -> None:
            flexi = coarse if kind == "Flexi-JEST" else None
            if kind == "uniform":
                kept = torch.arange(batch, device=device)
            else:
                model.eval()
                with torch.no_grad(), autocast(precision, device):
                    learner = embed(model, pixels, texts, flexi)
                learner = SiglipOutputs(learner.image.float(), learner.text.float(), learner.scale.float(),
                                        learner.bias.float())
                kept = selector.select(learner, reference, step=step_index)
            train_step(model, optimizer, scheduler, pixels[kept], texts[kept], flexi_patch_size=flexi,
                       precision=precision)

        for kind in ("uniform", "JEST", "Flexi-JEST"):
            for warm in range(2):
                step(kind, warm)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times = []
            for index in range(repeats):
                synchronize(device)
                started = time.perf_counter()
                step(kind, index)
                synchronize(device)
                times.append(time.perf_counter() - started)
            seconds = statistics.median(times)
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
            rows.append({"precision": precision, "step": kind, "b": batch, "B": super_batch if kind != "uniform" else batch,
                         "seconds": seconds, "trained samples/s": batch / seconds,
                         "read samples/s": (batch if kind == "uniform" else super_batch) / seconds,
                         "peak GiB": peak})
            print(json.dumps(rows[-1]), flush=True)
        del model, optimizer, bundle
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def nccl_check(device: str, batch: int, filter_ratio: float) -> dict:
    """Under torchrun: the Selector over the process group chooses what it chooses alone."""
    import torch.distributed as dist

    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend)
    where = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if device == "cuda" else torch.device("cpu")
    selector = Selector("learnability", filter_ratio, n_chunks=16, batch_size=batch)
    generator = torch.Generator().manual_seed(0)
    def unit() -> torch.Tensor:
        rows = torch.randn(selector.super_batch, 256, generator=generator)
        return torch.nn.functional.normalize(rows, dim=-1).to(where)

    learner, reference = (SiglipOutputs(unit(), unit(), 10.0, -10.0) for _ in range(2))
    alone = selector.select(learner, reference, step=3)
    synchronize(where)
    started = time.perf_counter()
    grouped = selector.select(learner, reference, step=3, group=dist.group.WORLD)
    synchronize(where)
    result = {"backend": backend, "world": dist.get_world_size(), "same choice": bool(torch.equal(alone, grouped)),
              "seconds": time.perf_counter() - started}
    dist.destroy_process_group()
    return result


def synthetic_shards(root: Path, counts: dict[str, int], size: int) -> dict[str, str]:
    """Ten classes of synthetic images (a class-coloured square on noise) with their captions, as
    img2dataset-style shards; eval with classes, class names and templates."""
    from jestfilter.data.layout import brace_pattern
    from jestfilter.datasets.demo import DemoSample, write_split

    classes = ["red", "green", "blue", "yellow", "cyan", "magenta", "white", "orange", "purple", "grey"]
    rng = np.random.default_rng(0)
    paths = {}
    for split, count in counts.items():
        samples = []
        for _ in range(count):
            label = int(rng.integers(10))
            image = rng.integers(0, 80, size=(size, size), dtype=np.uint8)
            top, left, side = *rng.integers(0, size // 2, size=2), size // 2
            image[top:top + side, left:left + side] = 25 * label + 20
            samples.append(DemoSample(image, f"a photo of a {classes[label]} square", true_class=label))
        with tqdm(total=count, disable=True) as bar:
            write_split(root / split, samples, 250, bar, with_class=split == "eval")
        paths[split] = brace_pattern(root / split, sorted(p.name for p in (root / split).glob("*.tar")))
    (root / "eval" / "classnames.txt").write_text("".join(f"{name} square\n" for name in classes))
    (root / "eval" / "templates.txt").write_text("a photo of a {}.\n")
    paths["eval"] = str(root / "eval")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-gpu"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="jest-b16")
    parser.add_argument("--batch", type=int, default=256, help="b")
    parser.add_argument("--filter-ratio", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also torch.compile the towers")
    parser.add_argument("--bootstrap-steps", type=int, default=40)
    parser.add_argument("--tiny", action="store_true", help="jest-tiny, b 32, a few steps: to check on a CPU")
    parser.add_argument("--nccl-check", action="store_true", help=argparse.SUPPRESS)  # run by torchrun below
    args = parser.parse_args()
    if args.tiny:
        args.model, args.batch, args.repeats, args.bootstrap_steps = "jest-tiny", 32, 2, 6
    if args.nccl_check:
        print("NCCL " + json.dumps(nccl_check(args.device, args.batch, args.filter_ratio)), flush=True)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    started = time.perf_counter()
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__}

    # 1. step throughput and memory
    report["steps"] = step_benchmark(args.model, device, args.batch, args.filter_ratio, args.repeats, args.compile)
    print(f"steps done after {time.perf_counter() - started:.0f} s", flush=True)

    # 2. the Selector over a one-process torchrun group (nccl on CUDA)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", __file__,
               "--nccl-check", "--device", device.type, "--batch", str(args.batch)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    line = next((line for line in result.stdout.splitlines() if line.startswith("NCCL ")), None)
    report["torchrun"] = json.loads(line[5:]) if line else {"error": result.stderr[-2000:]}
    print(json.dumps(report["torchrun"]), flush=True)

    # 3. a short bootstrap on synthetic shards, end to end, in bf16
    from jestfilter.pipeline import run_bootstrap

    counts = {"curated": 1000, "web": 4000, "eval": 500} if not args.tiny else {"curated": 200, "web": 400, "eval": 100}
    data = synthetic_shards(args.out / "synthetic", counts, size=64)
    steps = args.bootstrap_steps
    cfg = BootstrapConfig(curated=[data["curated"]], web=[data["web"]], eval=data["eval"], out=str(args.out / "bootstrap"),
                          model=args.model, reference_steps=steps, compare=["uniform"], device=args.device,
                          samples_per_shard=1000, progress=False,
                          train=TrainSettings(steps=steps, batch_size=args.batch, eval_every=max(1, steps // 2),
                                              checkpoint_every=steps, precision="bf16", shuffle_buffer=500))
    begun = time.perf_counter()
    metrics = run_bootstrap(cfg)
    report["bootstrap"] = {"seconds": time.perf_counter() - begun, "steps": steps,
                           **{m: {k: r[k] for k in ("zeroshot_top1", "seconds_per_step", "time_breakdown")}
                              for m, r in [("JEST", metrics["final"]), ("uniform", metrics["compare"]["uniform"])]}}
    report["seconds"] = time.perf_counter() - started
    (args.out / "gpu.json").write_text(json.dumps(report, indent=1))
    (args.out / "gpu.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    lines = [f"{report['device']}, torch {report['torch']}", "",
             "| precision | step | b | B | s/step | trained samples/s | read samples/s | peak GiB |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in report["steps"]:
        lines.append(f"| {row['precision']} | {row['step']} | {row['b']} | {row['B']} | {row['seconds']:.3f} | "
                     f"{row['trained samples/s']:,.0f} | {row['read samples/s']:,.0f} | {row['peak GiB']:.1f} |")
    by = {(row["precision"], row["step"]): row["seconds"] for row in report["steps"]}
    lines += ["", "| ratio | fp32 | bf16 |", "|---|---:|---:|"]
    for kind in ("JEST", "Flexi-JEST"):
        lines.append(f"| {kind} step / uniform step | {by['fp32', kind] / by['fp32', 'uniform']:.2f} | "
                     f"{by['bf16', kind] / by['bf16', 'uniform']:.2f} |")
    lines.append(f"| bf16 speed-up over fp32 (uniform step) | {by['fp32', 'uniform'] / by['bf16', 'uniform']:.2f}× | |")
    lines += ["", f"torchrun: {json.dumps(report['torchrun'])}", "",
              f"bootstrap (synthetic shards, bf16): {json.dumps(report['bootstrap'])}", "",
              f"total {report['seconds']:.0f} s"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
