"""Which SigLIP bias init trains the tiny model better: -10 (SigLIP's) or log(1/(b-1)) (open_clip#650)?

Trains jest-tiny on real Fashion-MNIST image/caption pairs with each init and several seeds and
prints the final training loss and zero-shot / retrieval metrics on held-out test images.

    python tools/compare_bias_init.py --steps 200 --batch 64 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fashion_pairs import CLASSNAMES, TEMPLATES, captions, load_fashion_mnist, to_tensors  # noqa: E402

from jestfilter.eval import EvalSet, evaluate  # noqa: E402
from jestfilter.models import create_model  # noqa: E402
from jestfilter.train import make_optimizer, make_scheduler, train_step  # noqa: E402


def train_and_evaluate(bias: str, seed: int, steps: int, batch: int, eval_set: EvalSet) -> dict:
    torch.manual_seed(seed)
    bundle = create_model("jest-tiny", bias_for_batch_size=batch if bias == "batch" else None)
    generator = torch.Generator().manual_seed(seed)
    images, labels = load_fashion_mnist("train")
    order = torch.randperm(len(labels), generator=generator)[: steps * batch].numpy()
    pixels, texts = to_tensors(bundle, images[order], captions(labels[order]))
    optimizer = make_optimizer(bundle.model, lr=2e-3, weight_decay=1e-4)
    scheduler = make_scheduler(optimizer, steps, warmup_fraction=0.05)
    losses = [
        train_step(bundle.model, optimizer, scheduler, pixels[i : i + batch], texts[i : i + batch])
        for i in range(0, steps * batch, batch)
    ]
    metrics = evaluate(bundle, eval_set)
    return {"final loss": statistics.mean(losses[-20:]), "bias at end": bundle.model.logit_bias.item(), **metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-size", type=int, default=2000)
    args = parser.parse_args()
    test_images, test_labels = load_fashion_mnist("test", args.eval_size)
    eval_set = EvalSet(
        [Image.fromarray(image) for image in test_images], captions(test_labels), test_labels, CLASSNAMES, TEMPLATES
    )
    print("| bias init | seed | final loss | bias at end | zero-shot top-1 | retrieval R@1 |")
    print("|---|---:|---:|---:|---:|---:|")
    summary = {}
    for bias in ("-10", "batch"):
        for seed in args.seeds:
            result = train_and_evaluate(bias, seed, args.steps, args.batch, eval_set)
            summary.setdefault(bias, []).append(result)
            print(f"| {bias} | {seed} | {result['final loss']:.3f} | {result['bias at end']:.2f} | "
                  f"{result['zeroshot_top1']:.3f} | {result['retrieval_r1']:.3f} |", flush=True)
    for bias, results in summary.items():
        mean = {key: statistics.mean(r[key] for r in results) for key in ("final loss", "zeroshot_top1", "retrieval_r1")}
        print(f"| {bias} | mean | {mean['final loss']:.3f} | | {mean['zeroshot_top1']:.3f} | {mean['retrieval_r1']:.3f} |")


if __name__ == "__main__":
    main()
