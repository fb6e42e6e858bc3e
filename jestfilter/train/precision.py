"""Arithmetic precision of a run: open_clip_train's ``amp_bf16`` (autocast to bfloat16 around
the forward passes and the loss, fp32 master weights and optimiser), TF32 matmuls on CUDA.

The learner's two passes may differ: scoring (no gradients, B rows) and training (b rows,
forward and backward). On a CPU bf16 autocast made scoring 1.9–2.7× faster but training of a
tiny model slower (docs/benchmarks.md), so ``auto`` times both passes in both precisions at
start and keeps bf16 for a phase only where it is clearly faster on this machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from open_clip.loss import SigLipLoss

from jestfilter.machine import autocast, use_fast_kernels  # noqa: F401  (part of this module's interface)
from jestfilter.models import embed

FASTER = 1.15  # bf16 must beat fp32 by this factor to be chosen (timing noise must not flip the choice)


def compile_towers(model: torch.nn.Module) -> None:
    """``torch.compile`` the transformer blocks of both towers, in place (parameter names and
    checkpoints unchanged). The blocks are what every path runs: native and Flexi patches,
    whole and shortened captions."""
    for tower in (getattr(model, "visual", None), model):
        blocks = getattr(tower, "transformer", None)
        if isinstance(blocks, torch.nn.Module):
            blocks.compile()


@dataclass(frozen=True)
class Phases:
    """The precision of the scoring pass and of the training step, and why."""

    score: str
    train: str
    why: str

    def line(self) -> str:
        return f"precision: scoring {self.score}, training {self.train} ({self.why})"


def choose_phases(precision: str, score: str | None, train: str | None, model: torch.nn.Module, rows: int,
                  batch: int, scores: bool) -> Phases:
    """Each phase's precision: ``score`` / ``train`` when given, else ``precision``; ``auto``
    means bf16 on a GPU and, on a CPU, whichever precision runs the pass faster here (timed on
    ``rows`` scoring rows and a ``batch`` training step of random inputs; a run that does not
    score (``scores`` False) times only training)."""
    asked = {"score": score or (None if precision == "auto" else precision),
             "train": train or (None if precision == "auto" else precision)}
    open_ = [phase for phase, value in asked.items() if value is None and (phase == "train" or scores)]
    if not open_:
        return Phases(asked["score"] or "fp32", asked["train"], "as asked")
    device = model.logit_scale.device
    if device.type == "cuda":
        chosen = {phase: asked[phase] or "bf16" for phase in asked}
        return Phases(chosen["score"], chosen["train"], "bf16 autocast on the GPU, as open_clip_train's amp_bf16")
    timed = {phase: {p: _seconds(_pass(phase, model, rows if phase == "score" else batch, p)) for p in ("fp32", "bf16")}
             for phase in open_}
    chosen = {phase: asked[phase] or ("bf16" if phase in timed and timed[phase]["fp32"] > FASTER *
                                      timed[phase]["bf16"] else "fp32") for phase in asked}
    why = "; ".join(f"{phase} timed here: fp32 {1e3 * t['fp32']:.0f} ms, bf16 {1e3 * t['bf16']:.0f} ms"
                    for phase, t in timed.items())
    return Phases(chosen["score"], chosen["train"], why)


def _pass(phase: str, model: torch.nn.Module, rows: int, precision: str) -> Callable[[], None]:
    """One scoring pass (no gradients) or one training pass (forward, loss and backward; no
    update) on random inputs of the model's shapes."""
    device = model.logit_scale.device
    size = model.visual.image_size
    size = size if isinstance(size, int) else size[0]
    images = torch.randn(rows, 3, size, size, device=device)
    texts = torch.randint(1, model.vocab_size, (rows, model.context_length), device=device)
    loss_fn = SigLipLoss()

    def score() -> None:
        model.eval()
        with torch.no_grad(), autocast(precision, device):
            embed(model, images, texts)

    def train() -> None:
        model.train()
        with autocast(precision, device):
            loss = loss_fn(*embed(model, images, texts))
        loss.backward()
        model.zero_grad(set_to_none=True)

    return score if phase == "score" else train


def _seconds(run: Callable[[], None], repeats: int = 3) -> float:
    run()  # warm-up: allocations, kernel selection
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best
