"""docs/scale.md's tables: a DataComp-sized run on paper, from per-sample costs measured in this
repository (marked M) and stated assumptions (marked A). Change an input, rerun, paste.

    python tools/scale_plan.py > /tmp/scale-tables.md
"""

from __future__ import annotations

import math

# --- measured (docs/benchmarks.md) ----------------------------------------------------------
FORWARD_GFLOPS = {  # M: forward_flops, one image + one 77-token caption (open_clip configs, 224 px)
    "ViT-B/32": {"image": 8.818, "text": 5.960, "image_coarse": 3.130, "coarse_patch": 56},
    "ViT-B/16": {"image": 35.127, "text": 5.960, "image_coarse": 8.818, "coarse_patch": 32},
}
EMBED_DIM = 512  # M: both configs' embedding width (SigLIP B/16's is 768)
SHARD_KB = {256: 28.8, 512: 87.6}  # M: bytes a sample of OpenCV's photographs, JPEG q95 (bench_decode)
WORKER_RATE = {256: 1694.0, 512: 602.0}  # M: read + decode per core for a 224-px model (bench_decode run 3, workers' half)
CPU_RATE = {256: 317.0, 512: 249.0}  # M: read + decode + resize to 224 on one core (bench_decode run 3, after)
CACHE_BYTES_PER_DIM = 4  # M: fp16 image + text embedding: 2 · 2 bytes per dimension, plus the key
CACHE_KEY_BYTES = 36  # M: the .emb.npz's key column per sample (292 B a sample at d = 64)
MANIFEST_BYTES_PER_ROW = 15.8  # M: the demo run's manifest on disk (parquet, zstd)
SELECT_SECONDS = 0.78  # M: one Selector call at B = 163,840, b = 32,768, d = 768 on one H200
EXCHANGE_MB_PER_STEP = 376.0 * EMBED_DIM / 768  # M (formula checked by measurement): chunk all-gathers, fp32

# --- assumed --------------------------------------------------------------------------------
GPU_FLOPS = 989e12 * 0.40  # A: H100 bf16 dense peak at 40 % model FLOP utilisation
GPUS = 64  # A: 8 nodes of 8 H100s for the learner and reference runs
CORES_PER_GPU = 12  # A: loader cores per GPU (a 2 × 56-core node of 8 GPUs, less the trainers' own)
F = 0.8  # A: the paper's filter ratio
B_TRAIN = 32_768  # A: the paper's b (B = 163,840)
REFERENCE_SHARE = 1.0  # A: the reference trains on the curated data for as many samples as the learner
FIRST_PASS_SHARE = 1 - F  # filtered/ under --filtered-rule first-pass
SCALES = {"small": 12.8e6, "medium": 128e6, "large": 1.28e9}  # DataComp: pool = samples seen


def costs(model: str, seen: float, method: str, stored: int = 256) -> dict:
    """GPU FLOPs, samples decoded and selector seconds of one learner run."""
    g = FORWARD_GFLOPS[model]
    full = (g["image"] + g["text"]) * 1e9
    coarse = (g["image_coarse"] + g["text"]) * 1e9
    read = seen / (1 - F) if method != "uniform" else seen
    if method == "uniform":
        flops = 3 * seen * full
    elif method == "JEST":
        flops = read * full + 3 * seen * full
    else:  # Flexi-JEST: scores at the coarse patch size, trains half of each batch there
        flops = read * coarse + 3 * seen * ((g["image"] + g["image_coarse"]) / 2 + g["text"]) * 1e9
    steps = seen / B_TRAIN
    return {"flops": flops, "decoded": read, "select_s": steps * SELECT_SECONDS if method != "uniform" else 0.0,
            "steps": steps, "rows": read}


def hours(h: float) -> str:
    """GPU- or core-hours to two significant digits (minutes below an hour of wall-clock)."""
    return f"{h:,.2g}" if h < 10 else f"{h:,.0f}"


def wall(h: float) -> str:
    return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"


def human(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {suffix}{unit}"
    return f"{n:.3g} {unit}"


def main() -> None:
    print("| scale (samples seen = pool) | model | method | learner GPU-h | + reference GPU-h | + embedding GPU-h "
          "| selector GPU-h | wall-clock on 64 GPUs | images decoded | decode core-h (GPU run) | cores per GPU "
          "to keep up (256 / 512 px) | learner stage with 12 cores per GPU | manifest (all / kept) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scale, seen in SCALES.items():
        for model in FORWARD_GFLOPS:
            g = FORWARD_GFLOPS[model]
            reference = costs(model, REFERENCE_SHARE * seen, "uniform")
            embed_flops = seen * (g["image"] + g["text"]) * 1e9
            for method in ("uniform", "JEST", "Flexi-JEST"):
                run = costs(model, seen, method)
                learner_h = run["flops"] / GPU_FLOPS / 3600
                uses_reference = method != "uniform"
                reference_h = reference["flops"] / GPU_FLOPS / 3600 if uses_reference else 0.0
                embed_h = embed_flops / GPU_FLOPS / 3600 if uses_reference else 0.0
                select_h = run["select_s"] / 3600
                clock = (learner_h + reference_h + embed_h + select_h) / GPUS
                per_gpu_rate = run["decoded"] / (run["flops"] / GPU_FLOPS + run["select_s"])  # samples/s a GPU takes
                cores = per_gpu_rate / WORKER_RATE[256]
                cores_512 = per_gpu_rate / WORKER_RATE[512]
                core_h = run["decoded"] / WORKER_RATE[256] / 3600
                manifest = (f"{human(run['rows'] * MANIFEST_BYTES_PER_ROW, 'B')} / "
                            f"{human(seen * MANIFEST_BYTES_PER_ROW, 'B')}" if uses_reference else "–")
                print(f"| {scale} ({human(seen)}) | {model} | {method} | {hours(learner_h)} | {hours(reference_h)} "
                      f"| {hours(embed_h)} | {hours(select_h)} | {wall(clock)} | {human(run['decoded'])} "
                      f"| {hours(core_h)} | {math.ceil(cores)} / {math.ceil(cores_512)} "
                      f"| {wall(max(learner_h + select_h, core_h / CORES_PER_GPU) / GPUS)} | {manifest} |")
    print()
    print("| scale | pool shards (256 px / 512 px) | reference cache (d = 512 / 768) | filtered/ (first-pass) "
          "| download | selection exchange per rank (fp32) |")
    print("|---|---:|---:|---:|---:|---:|")
    for scale, seen in SCALES.items():
        cache = {d: seen * (CACHE_BYTES_PER_DIM * d + CACHE_KEY_BYTES) for d in (512, 768)}
        steps = seen / B_TRAIN
        print(f"| {scale} | {human(seen * SHARD_KB[256] * 1e3, 'B')} / {human(seen * SHARD_KB[512] * 1e3, 'B')} "
              f"| {human(cache[512], 'B')} / {human(cache[768], 'B')} "
              f"| {human(seen * FIRST_PASS_SHARE * SHARD_KB[256] * 1e3, 'B')} "
              f"| {human(seen * SHARD_KB[256] * 1e3, 'B')} | {human(steps * EXCHANGE_MB_PER_STEP * 1e6, 'B')} "
              f"({steps:,.0f} steps × {EXCHANGE_MB_PER_STEP:.0f} MB) |")


if __name__ == "__main__":
    main()
