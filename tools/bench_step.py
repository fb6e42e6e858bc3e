"""Cost of a JEST step against a uniform step: learner scoring at full and at Flexi patch size.

A uniform step trains on b examples. A JEST step first scores a super-batch of B = k·b with the
learner under no_grad (reference embeddings are cached, so they cost nothing here), then
trains on the b chosen. `--flexi score` scores at a coarser patch size and trains at full
resolution; Flexi-JEST (`--flexi train`) also trains half the batch at the coarse size. Each
phase runs in the precision `--precision` gives it (auto: what a run would choose here). "Reusing the forward" runs the super-batch forward with autograd on and back-propagates
the loss of the b chosen rows (the paper's accounting), which PyTorch cannot make cheaper than
the full B-row backward. Prints measured times and the FLOP-predicted ratios side by side.

    python tools/bench_step.py                                   # jest-tiny, jest-small on CPU
    python tools/bench_step.py --device cuda --models jest-b16 --batch 64   # < 2 minutes on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from open_clip.loss import SigLipLoss

from jestfilter.models import coarse_patch_size, create_model, embed, forward_flops, native_patch_size
from jestfilter.train import make_optimizer, make_scheduler, train_step
from jestfilter.train.precision import autocast, choose_phases, compile_towers, use_fast_kernels


def timed(run, device: torch.device, repeats: int) -> float:
    """Median seconds of ``run()`` after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(name: str, device: torch.device, batch: int, factor: int, repeats: int, precision: str,
          compile_model: bool = False) -> dict:
    torch.manual_seed(0)
    model = create_model(name, device=device).model
    phases = choose_phases(precision, None, None, model, factor * batch, batch, scores=True)
    use_fast_kernels(device)
    if compile_model:
        compile_towers(model)
    patch = native_patch_size(model)
    coarse = coarse_patch_size(model)
    size = model.visual.image_size
    super_batch = factor * batch
    images = torch.randn(super_batch, 3, *size, device=device)
    texts = torch.randint(1, 49407, (super_batch, model.context_length), device=device)
    optimizer = make_optimizer(model, lr=1e-4, weight_decay=1e-4)
    scheduler = make_scheduler(optimizer, total_steps=10**6)
    def train(flexi=None):
        train_step(model, optimizer, scheduler, images[:batch], texts[:batch], flexi_patch_size=flexi,
                   precision=phases.train)

    def reuse():
        """The paper's alternative: keep the scoring forward of all B for the gradient of the b chosen."""
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast(phases.train, device):
            outputs = embed(model, images, texts)
            chosen = torch.arange(0, super_batch, factor, device=device)  # any b rows
            loss = SigLipLoss()(outputs.image[chosen], outputs.text[chosen], outputs.scale, outputs.bias)
        loss.backward()
        optimizer.step()

    def score(patch_size=None):
        model.eval()
        with torch.no_grad(), autocast(phases.score, device):
            embed(model, images, texts, patch_size)

    fine, rough = forward_flops(model), forward_flops(model, coarse)
    full_flops, coarse_flops = fine.image + fine.text, rough.image + fine.text
    uniform_flops = 3 * full_flops * batch
    return {
        "model": name,
        "device": str(device),
        "b": batch,
        "B": super_batch,
        "patch": f"{patch}/{coarse}",
        "precision (score/train)": f"{phases.score}/{phases.train}",
        "image FLOP share": fine.image_fraction,
        "image FLOPs coarse/full": rough.image / fine.image,
        "uniform step ms": 1e3 * timed(train, device, repeats),
        "flexi train ms": 1e3 * timed(lambda: train(coarse), device, repeats),
        "score B full ms": 1e3 * timed(score, device, repeats),
        "score B flexi ms": 1e3 * timed(lambda: score(coarse), device, repeats),
        "reuse-forward step ms": 1e3 * timed(reuse, device, repeats),
        "JEST/uniform FLOPs": (uniform_flops + full_flops * super_batch) / uniform_flops,
        "Flexi-JEST/uniform FLOPs": (1.5 * batch * (full_flops + coarse_flops) + coarse_flops * super_batch)
        / uniform_flops,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["jest-tiny", "jest-small"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64, help="training batch b")
    parser.add_argument("--factor", type=int, default=5, help="super-batch B = factor * b (5 is f = 0.8)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--compile", action="store_true", help="torch.compile the transformer blocks")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [bench(name, device, args.batch, args.factor, args.repeats, args.precision, args.compile)
            for name in args.models]
    for row in rows:
        row["JEST/uniform time"] = (row["score B full ms"] + row["uniform step ms"]) / row["uniform step ms"]
        row["JEST reusing the forward/uniform time"] = row["reuse-forward step ms"] / row["uniform step ms"]
        row["--flexi score/uniform time"] = (row["score B flexi ms"] + row["uniform step ms"]) / row["uniform step ms"]
        row["Flexi-JEST (--flexi train)/uniform time"] = ((row["score B flexi ms"] + row["flexi train ms"])
                                                          / row["uniform step ms"])
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    """Markdown table, one column per model."""
    print("| | " + " | ".join(row["model"] for row in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for key in rows[0]:
        if key == "model":
            continue
        cells = [f"{row[key]:.3g}" if isinstance(row[key], float) else str(row[key]) for row in rows]
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
