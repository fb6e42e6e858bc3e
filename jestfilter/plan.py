"""A run's stages at a glance: what each will do, and how long the rest should take.

At start every stage's time is estimated from a timed forward and training pass of the model
on this device and a timed decode of a few input samples (``Timing.measure``). At every
evaluation the time left is re-estimated: the stage in progress from its own pace, the stages
after it from their estimate scaled by how the run's measured time has compared with it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from jestfilter.config import TrainSettings
from jestfilter.data.loader import decode as decode_samples, decode_on_device
from jestfilter.data.pixels import decode_options
from jestfilter.data.shards import iter_samples
from jestfilter.data.types import RawSample, SuperBatch
from jestfilter.machine import autocast
from jestfilter.models import ModelBundle, embed
from jestfilter.selection.criteria import criterion

EVAL_COST = 1.5  # forward passes per eval sample: its image, its caption, a share of the class prompts


@dataclass(frozen=True)
class Timing:
    """Seconds per example of a no-grad forward (``score``: the learner's scoring forward, at the
    Flexi patch size where the run uses it), a training pass, and the input's path: a loader
    worker reading it (``read``: tar parsing, which every worker does for every sample) and
    decoding and tokenising it (``decode``), then the device's resize and normalisation
    (``preprocess``)."""

    forward: float
    train: float
    decode: float
    read: float = 0.0
    preprocess: float = 0.0
    score: float | None = None

    @classmethod
    def measure(cls, bundle: ModelBundle, shard: str, batch: int = 32, decode: str = "auto",
                score_patch_size: int | None = None, score_precision: str = "fp32",
                train_precision: str = "fp32") -> "Timing":
        """Time ``batch`` samples of ``shard`` through reading, decoding as the run will
        (``--decode``), preprocessing, a forward and a forward+backward (each in the precision
        the run gives that phase)."""
        model, device = bundle.model, bundle.model.logit_scale.device
        image_size, defer_jpeg = decode_options(decode, device, bundle.preprocess.size)
        started = time.perf_counter()
        samples = [s for s, _ in zip((x for x in iter_samples([shard]) if isinstance(x, RawSample)), range(batch))]
        if not samples:
            return cls(0.0, 0.0, 0.0)
        seconds_read = (time.perf_counter() - started) / len(samples)
        started = time.perf_counter()
        decoded = SuperBatch(*decode_samples(samples, [], bundle.tokenizer, image_size=image_size,
                                             defer_jpeg=defer_jpeg))
        seconds_decode = (time.perf_counter() - started) / len(samples)
        if not decoded.samples:
            return cls(0.0, 0.0, seconds_decode, seconds_read)
        started = time.perf_counter()
        if defer_jpeg:
            decoded = decode_on_device(decoded, device)
        images = bundle.preprocess.to_model(decoded.images, device)
        _synchronize(device)
        seconds_preprocess = (time.perf_counter() - started) / len(decoded)
        texts = decoded.texts.to(device)
        was_training = model.training
        with torch.no_grad(), autocast(score_precision, device):
            embed(model, images, texts)  # warm-up
            seconds_forward = _timed(lambda: embed(model, images, texts), device) / len(decoded)
            seconds_score = None
            if score_patch_size is not None:
                embed(model, images, texts, score_patch_size)
                seconds_score = _timed(lambda: embed(model, images, texts, score_patch_size), device) / len(decoded)

        def train():
            with autocast(train_precision, device):
                image, text, *_ = embed(model, images, texts)
            (image.float().sum() + text.float().sum()).backward()

        seconds_train = _timed(train, device) / len(decoded)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        return cls(seconds_forward, seconds_train, seconds_decode, seconds_read, seconds_preprocess, seconds_score)

    def step(self, read: int, trained: int, scored: bool) -> float:
        """Seconds the model's device spends on one step that reads ``read`` samples and trains
        on ``trained``: preprocessing, the scoring forward if ``scored``, the training pass."""
        scoring = read * (self.forward if self.score is None else self.score) if scored else 0.0
        return trained * self.train + scoring + read * self.preprocess

    def training(self, steps: int, read: int, trained: int, scored: bool, workers: int | None) -> float:
        """Seconds of ``steps`` steps that each read ``read`` samples and train on ``trained``
        (``workers`` decoding in parallel; None: as many as the machine gives, counted as one)."""
        return steps * (self.step(read, trained, scored) + read * self.decode / max(1, workers or 1))

    def workers_needed(self, read: int, trained: int, scored: bool) -> int | None:
        """Loader workers that hand out ``read`` decoded samples in the time the device spends on
        a step (``step``), or None when no number can: each worker reads every sample of the
        stream and decodes its share, so W workers give W / (W·read + decode) samples a second."""
        demand = read / max(self.step(read, trained, scored), 1e-9)  # samples a second the device takes
        if demand * self.read >= 1.0:
            return None
        return max(1, math.ceil(demand * self.decode / (1.0 - demand * self.read)))

    def evaluations(self, count: int, eval_samples: int) -> float:
        return count * eval_samples * EVAL_COST * self.forward


@dataclass
class Stage:
    name: str
    what: str
    seconds: float  # estimated at start
    done: bool = False  # finished by an earlier run of the same command


class Plan:
    """The stages in order; ``begin``/``end`` each, ``eta_line`` at every evaluation."""

    def __init__(self, stages: list[Stage]):
        self.stages = stages
        self.current: Stage | None = None
        self._began = 0.0
        self._first_step: int | None = None
        self.measured = 0.0  # seconds of the stages finished in this process
        self.estimated = 0.0  # what they were estimated to take

    def lines(self, title: str) -> list[str]:
        width = max(len(stage.name) for stage in self.stages)
        lines = [title]
        for number, stage in enumerate(self.stages, 1):
            when = "done" if stage.done else f"~{duration(stage.seconds)}"
            lines.append(f"  {number}. {stage.name:<{width}}  {stage.what}  [{when}]")
        lines.append(f"  estimated time: {duration(self.left())} (from a timed step on this machine; refined at "
                     "every evaluation)")
        return lines

    def begin(self, name: str) -> None:
        self.current = next(stage for stage in self.stages if stage.name == name)
        self._began, self._first_step = time.perf_counter(), None

    def end(self) -> None:
        if self.current is not None:
            self.measured += time.perf_counter() - self._began
            self.estimated += self.current.seconds
            self.current.done, self.current = True, None

    def left(self, step: int = 0, steps: int = 1) -> float:
        """Seconds left of the whole run, ``step`` of ``steps`` into the current stage."""
        later = [s for s in self.stages if not s.done and s is not self.current]
        pace = self.measured / self.estimated if self.estimated > 0 else 1.0
        here = 0.0
        if self.current is not None:
            if self._first_step is None:
                self._first_step = step
            done, elapsed = step - self._first_step, time.perf_counter() - self._began
            if done > 0:
                here = elapsed / done * (steps - step)
                pace = (self.measured + elapsed) / max(1e-9, self.estimated + self.current.seconds * done / steps)
            else:
                here = pace * self.current.seconds * (steps - step) / steps
        return here + pace * sum(s.seconds for s in later)

    def eta_line(self, step: int, steps: int, metrics: dict) -> str:
        name = self.current.name if self.current is not None else "run"
        return (f"[{name}] step {step}/{steps}: zero-shot {metrics['zeroshot_top1']:.3f}, R@1 "
                f"{metrics['retrieval_r1']:.3f}; about {duration(self.left(step, steps))} left in the run")


def batch_summary(settings: TrainSettings, ranks: int = 1) -> str:
    """b over all ranks and per rank (open_clip_train's --batch-size is per GPU), and the B read."""
    b, per_rank = settings.batch_size, settings.batch_size // ranks
    line = (f"batch: b={b} trained on per step over {ranks} rank(s), {per_rank} per rank "
            f"(open_clip_train --batch-size {per_rank})")
    if criterion(settings.method).random:
        return line
    super_batch = settings.batches(ranks).super_batch
    return f"{line}; chosen from super-batches of B={super_batch} ({super_batch // ranks} per rank)"


def duration(seconds: float) -> str:
    """``75`` → ``1m15s``; ``4000`` → ``1h07m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(run: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call of ``run``, the device's queued work included."""
    _synchronize(device)
    started = time.perf_counter()
    run()
    _synchronize(device)
    return time.perf_counter() - started
