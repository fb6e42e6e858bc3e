"""What a run has done and what it cost: steps, examples, FLOPs, seconds and learning curves."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Iterator

import torch

from jestfilter.models import forward_flops


@dataclass
class History:
    """What the run has done so far; saved in the checkpoint."""

    step: int = 0
    examples_seen: int = 0
    rows_read: int = 0  # this rank's samples (and rejections) read from the stream
    flops: float = 0.0
    seconds: float = 0.0
    curve: list = field(default_factory=list)  # [examples_seen, zeroshot_top1]
    flops_curve: list = field(default_factory=list)  # [flops, zeroshot_top1]
    time_curve: list = field(default_factory=list)  # [seconds, zeroshot_top1]
    losses: list = field(default_factory=list)
    phases: dict = field(default_factory=dict)  # seconds per part of a step (see PhaseTimer)
    agreement: list = field(default_factory=list)  # [step, spearman, overlap] of cheap vs full scoring
    learning_checked: bool = False  # the third-of-the-way verdict was given (jestfilter.train.stall)
    stalled: str | None = None  # why the run is not learning, if it is not

    def add_evaluation(self, top1: float) -> None:
        self.curve.append([self.examples_seen, top1])
        self.flops_curve.append([self.flops, top1])
        self.time_curve.append([self.seconds, top1])


class PhaseTimer:
    """Wall seconds per part of a step, added into ``seconds`` (on CUDA each part waits for
    its kernels, so the time lands where it was spent)."""

    def __init__(self, seconds: dict, device: torch.device):
        self.seconds, self.device = seconds, device

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started


class StepCost:
    """FLOPs of a step, counted per example by torch's FlopCounterMode: training costs three
    forward passes (forward + backward) of each example trained on (half of them at
    ``train_patch_size`` when Flexi co-trains), scoring one forward (at ``score_patch_size``
    with Flexi) of each example read."""

    def __init__(self, model: torch.nn.Module, score_patch_size: int | None, train_patch_size: int | None,
                 scores_with_learner: bool, score_context: int | None = None):
        full, cheap = forward_flops(model), forward_flops(model, score_patch_size, score_context)
        self.train = 3 * (full.image + full.text)
        if train_patch_size:  # half of each batch at the coarse patch size
            self.train = 3 * ((full.image + forward_flops(model, train_patch_size).image) / 2 + full.text)
        self.score = cheap.image + cheap.text if scores_with_learner else 0

    def __call__(self, read: int, trained: int) -> float:
        return trained * self.train + read * self.score
