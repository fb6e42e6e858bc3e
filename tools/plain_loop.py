"""A plain, careful SigLIP training loop: the reference for how strong a uniform baseline should be.

Loads every (image, caption) pair of the training shards into memory once, trains a jestfilter
model (jest-tiny by default) on batches drawn at random, and evaluates zero-shot top-1 on an
eval folder with ``jestfilter.eval.evaluate`` every ``--eval-every`` steps. Nothing of
jestfilter's training code is used (no OnlineTrainer, train_step, make_optimizer/scheduler):
only the model factory, the shard reader and the evaluation, so its numbers are an independent
check on the library's uniform baseline. Each flag moves one thing the library may do otherwise.

    python tools/plain_loop.py --web 'DEMO/web/*.tar' --eval DEMO/eval --seed 0 --json out.json
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time

import torch
import torch.nn.functional as F
from PIL import Image

from jestfilter.data.pixels import from_pil
from jestfilter.data.shards import caption_of, expand_shards, image_member, iter_samples
from jestfilter.data.types import RawSample
from jestfilter.eval import evaluate, load_eval_set
from jestfilter.models import ImagePreprocess, create_model, logit_bias_for_batch


PIXEL_STATS = {"tensor": ((0.0,) * 3, (1.0,) * 3), "half": ((0.5,) * 3, (0.5,) * 3)}


def preprocess_for(name: str, bundle, pixels: torch.Tensor) -> ImagePreprocess:
    """``openclip``: the model's own (resize, centre crop, its config's mean/std: CLIP's unless the
    model says otherwise); ``tensor``: pixels in [0, 1], nothing else; ``half``: (x − 0.5) / 0.5;
    ``data``: each channel's mean and std over the training ``pixels``. Each is an
    ImagePreprocess, so that training and evaluate() see the same inputs."""
    if name == "openclip":
        return bundle.preprocess
    if name == "data":
        x = pixels.float() / 255
        mean, std = x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).tolist()
    else:
        mean, std = PIXEL_STATS[name]
    return ImagePreprocess(bundle.preprocess.size, tuple(mean), tuple(std))


def load_pairs(pattern: str, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """All decodable samples of the shards, decoded with PIL: uint8 images [n, 3, H, W] (central
    squares) and tokens [n, context]."""
    images, captions = [], []
    for sample in iter_samples(expand_shards(pattern)):
        if isinstance(sample, RawSample):
            with Image.open(io.BytesIO(sample.members[image_member(sample)])) as image:
                images.append(from_pil(image))
            captions.append(caption_of(sample))
    return torch.stack(images), tokenizer(captions)


def lr_at(step: int, args) -> float:
    """Linear warm-up over the first ``warmup`` share of the steps, then cosine to 0."""
    warmup = round(args.warmup * args.steps)
    if step < warmup:
        return args.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, args.steps - warmup)
    return args.lr * 0.5 * (1 + math.cos(math.pi * progress))


def siglip_loss(image, text, scale, bias) -> torch.Tensor:
    """Sigmoid loss summed over all b² pairs, divided by b (open_clip's SigLipLoss)."""
    logits = scale * image @ text.T + bias
    labels = 2 * torch.eye(len(image), device=image.device) - 1
    return -F.logsigmoid(labels * logits).sum() / len(image)


def batches(n: int, args, generator: torch.Generator):
    """Index batches: ``replace`` draws every batch at random with replacement; ``epochs``
    walks shuffled passes without replacement (the last short batch of a pass is dropped)."""
    while True:
        if args.sampling == "replace":
            yield torch.randint(n, (args.batch,), generator=generator)
            continue
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - args.batch + 1, args.batch):
            yield order[start : start + args.batch]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--web", required=True, help="training shards (brace pattern, glob or folder)")
    p.add_argument("--eval", required=True, help="eval folder (jestfilter's layout)")
    p.add_argument("--model", default="jest-tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--wd", type=float, default=1e-4, help="torch AdamW decay (multiplied by the lr)")
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--warmup", type=float, default=0.05)
    p.add_argument("--bias-init", default="-10", help="a number, or 'batch' for log(1/(b-1))")
    p.add_argument("--scale-init", type=float, default=10.0, help="initial logit scale t (not log t)")
    p.add_argument("--clip", type=float, default=0.0, help="clip the global gradient norm to this (0: off)")
    p.add_argument("--sampling", choices=["replace", "epochs"], default="replace")
    p.add_argument("--preprocess", choices=["openclip", "tensor", "half", "data"], default="openclip")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--json", help="write the settings, curve and final metrics here")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    bias = logit_bias_for_batch(args.batch) if args.bias_init == "batch" else float(args.bias_init)
    bundle = create_model(args.model, init_logit_bias=bias, init_logit_scale=math.log(args.scale_init))
    model = bundle.model
    pixels, texts = load_pairs(args.web, bundle.tokenizer)
    bundle = bundle._replace(preprocess=preprocess_for(args.preprocess, bundle, pixels))  # evaluate() uses it too
    images = torch.cat([bundle.preprocess.to_model(pixels[i:i + 4096]) for i in range(0, len(pixels), 4096)])
    eval_set = load_eval_set(args.eval)

    decay = [q for name, q in model.named_parameters() if q.ndim >= 2 and "logit_" not in name]
    other = [q for name, q in model.named_parameters() if not (q.ndim >= 2 and "logit_" not in name)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": other, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, args.beta2), eps=1e-6)
    generator = torch.Generator().manual_seed(args.seed)
    curve, started = [], time.perf_counter()
    for step, index in zip(range(args.steps), batches(len(images), args, generator)):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args)
        model.train()
        image = model.encode_image(images[index], normalize=True)
        text = model.encode_text(texts[index], normalize=True)
        loss = siglip_loss(image, text, model.logit_scale.exp(), model.logit_bias)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # as open_clip_train does
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            metrics = evaluate(bundle, eval_set)
            curve.append([step + 1, metrics["zeroshot_top1"]])
            print(f"step {step + 1:5d}  loss {loss.item():.3f}  zero-shot {metrics['zeroshot_top1']:.3f}  "
                  f"scale {model.logit_scale.exp().item():.1f}  bias {model.logit_bias.item():.2f}", flush=True)
    result = {"settings": vars(args), "train_pairs": len(images), "curve": curve, "final": metrics,
              "pixel_mean": bundle.preprocess.mean, "pixel_std": bundle.preprocess.std,
              "logit_scale": model.logit_scale.exp().item(), "logit_bias": model.logit_bias.item(),
              "seconds": time.perf_counter() - started}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
