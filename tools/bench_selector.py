"""Benchmark: the Selector's accumulator form against a plain dense Algorithm 1.

    python tools/bench_selector.py                      # CPU, B = 3,200 and 12,800
    python tools/bench_selector.py --device cuda --paper-shape

Each measurement runs in a fresh subprocess. Time: best of --repeats calls (greedy sampling,
learnability, n_chunks=16; the dense form gives the same chunks, checked per row). Extra memory: what the call needs beyond its inputs — on CUDA
torch.cuda.max_memory_allocated() minus the memory allocated before the call; on CPU the
growth of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs just
before the call), so it counts every page the call touched, torch's allocations included.
Floor: 8·B·b·d FLOPs (four [B × chunk] products per chunk) at this device's fp32 GEMM rate,
measured on a large square matmul in the Selector's process right after it ran (on a shared
CPU the rate moves with the load, so each row has its own). The dense form is skipped where its B×B matrices
would not fit (the paper's shape needs over 100 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from dense_jest import dense_algorithm1, learnability_matrix  # noqa: E402

from jestfilter import Selector, SiglipOutputs  # noqa: E402

N_CHUNKS = 16
CPU_SHAPES = [(3200, 640, 256), (12800, 2560, 256)]
CUDA_SHAPES = [(12800, 2560, 256), (40960, 8192, 768)]
PAPER_SHAPE = (163840, 32768, 768)


def models(B: int, d: int, device: str) -> tuple[SiglipOutputs, SiglipOutputs]:
    g = torch.Generator(device).manual_seed(0)
    out = []
    for scale, bias in ((10.0, -10.0), (12.0, -8.0)):
        image = F.normalize(torch.randn(B, d, generator=g, device=device), dim=1)
        text = F.normalize(image + torch.randn(B, d, generator=g, device=device), dim=1)
        out.append(SiglipOutputs(image, text, torch.tensor(scale, device=device),
                                 torch.tensor(bias, device=device)))
    return out[0], out[1]


def run_dense(learner, reference, b):
    A = learnability_matrix(learner, reference, "learnability")
    return dense_algorithm1(A, b, N_CHUNKS)


def run_selector(learner, reference, b):
    B = learner.image.shape[0]
    return Selector(filter_ratio=1 - b / B, n_chunks=N_CHUNKS, sampling="greedy").select(
        learner, reference)


def peak_resident_bytes() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(kind: str, B: int, b: int, d: int, device: str, repeats: int) -> dict:
    """One worker: time and extra memory of one form on one shape."""
    run = run_dense if kind == "dense" else run_selector
    small = models(320, d, device)
    run(*small, 64)  # load kernels and libraries before measuring
    learner, reference = models(B, d, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        open("/proc/self/clear_refs", "w").write("5")  # peak RSS := current RSS
        before = peak_resident_bytes()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        indices = run(learner, reference, b)
        sync()
        seconds.append(time.perf_counter() - start)
    after = torch.cuda.max_memory_allocated() if device == "cuda" else peak_resident_bytes()
    return {"seconds": min(seconds), "extra_bytes": after - before,
            "indices": indices.cpu().tolist(), "gemm_gflops": gemm_gflops(device)}


def gemm_gflops(device: str) -> float:
    """fp32 matmul rate on this device (a large square product, best of several)."""
    n = 8192 if device == "cuda" else 2048
    a, c = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    best = float("inf")
    for _ in range(5):
        sync()
        start = time.perf_counter()
        a @ c
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def worker(kind: str, B: int, b: int, d: int, device: str, repeats: int) -> dict:
    command = [sys.executable, __file__, "--worker", kind, "--shape", f"{B},{b},{d}",
               "--device", device, "--repeats", str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def same_chunks(dense: list[int], ours: list[int], b: int) -> bool:
    """The same examples in every chunk (top-k may order near-equal scores differently)."""
    size = b // N_CHUNKS
    return all(set(dense[i:i + size]) == set(ours[i:i + size]) for i in range(0, b, size))


def memory_ratio(dense: int, ours: int) -> str:
    """dense / ours, with ours counted as at least 1 MiB (below that RSS growth is noise)."""
    if ours < 2**20:
        return f"≥{dense / 2**20:,.0f}×"
    return f"{dense / ours:,.0f}×"


def dense_fits(B: int, device: str) -> bool:
    """Dense needs about four fp32 B×B matrices at once."""
    need = 4 * 4 * B * B
    if device == "cuda":
        return need < 0.8 * torch.cuda.get_device_properties(0).total_memory
    return need < 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--shape", action="append", help="B,b,d (repeatable)")
    parser.add_argument("--paper-shape", action="store_true",
                        help=f"add B,b,d = {PAPER_SHAPE} (Selector only)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", choices=["dense", "selector"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    shapes = [tuple(map(int, s.split(","))) for s in args.shape] if args.shape else \
        (CUDA_SHAPES if args.device == "cuda" else CPU_SHAPES)
    if args.worker:
        print(json.dumps(measure(args.worker, *shapes[0], args.device, args.repeats)))
        return
    if args.paper_shape:
        shapes.append(PAPER_SHAPE)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device_name}; n_chunks={N_CHUNKS}, greedy; best of {args.repeats}\n")
    print("| B | b | d | dense s | dense extra MB | Selector s | Selector extra MB | speed-up "
          "| memory ratio | fp32 GEMM GFLOP/s | GEMM floor s | Selector / floor | same chunks |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for B, b, d in shapes:
        ours = worker("selector", B, b, d, args.device, args.repeats)
        rate = ours["gemm_gflops"]  # measured in the same process, right after the Selector
        floor = 8 * B * b * d / (rate * 1e9)
        row = [f"{B:,}", f"{b:,}", str(d)]
        if dense_fits(B, args.device):
            dense = worker("dense", B, b, d, args.device, args.repeats)
            row += [f"{dense['seconds']:.3f}", f"{dense['extra_bytes'] / 2**20:,.1f}"]
            ratios = [f"{dense['seconds'] / ours['seconds']:.1f}×",
                      memory_ratio(dense["extra_bytes"], ours["extra_bytes"])]
            same = "yes" if same_chunks(dense["indices"], ours["indices"], b) else "no"
        else:
            row += ["skipped", f"({4 * B * B / 2**30:,.0f} GiB per B×B matrix)"]
            ratios, same = ["–", "–"], "–"
        row += [f"{ours['seconds']:.3f}", f"{ours['extra_bytes'] / 2**20:,.1f}", *ratios,
                f"{rate:,.0f}", f"{floor:.3f}", f"{ours['seconds'] / floor:.2f}", same]
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
