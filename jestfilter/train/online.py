"""The training loop shared by every run: reference, uniform baseline and online JEST.

Each step takes one super-batch from the stream; a ``method`` other than ``uniform`` scores it
with the learner (no gradients) and the cached reference embeddings, the Selector picks b
examples, and the learner trains on them. Kept samples go to the shard writer, every sample's
fate to the manifest. The loop checkpoints model, optimiser, stream, writer and manifest in one
file, so a killed run restarts where the last checkpoint left it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from jestfilter.data import FilteredShardWriter, Manifest, SuperBatch, SuperBatchLoader, atomic_torch_save
from jestfilter.data.embeddings import EmbeddingCache
from jestfilter.data.shards import caption_of, image_member
from jestfilter.eval import EvalSet, evaluate
from jestfilter.models import ModelBundle, embed, forward_flops
from jestfilter.report import Example, ExtremesTracker
from jestfilter.selection import Selector
from jestfilter.train.optim import make_optimizer, make_scheduler
from jestfilter.train.step import train_step

NEEDS_LEARNER = {"learnability", "independent", "hard_learner"}
NEEDS_REFERENCE = {"learnability", "independent", "easy_reference"}


@dataclass
class TrainSettings:
    """One training run. ``batch_size`` is b, the examples trained on per step."""

    steps: int
    batch_size: int
    method: str = "uniform"  # uniform: plain batches of b; otherwise a Selector criterion
    filter_ratio: float = 0.8
    n_chunks: int = 16
    sampling: str = "softmax"
    gain: float = 1.0
    seed: int = 0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05
    flexi_patch_size: int | None = None  # Flexi-JEST: score, and train half of each batch, at this patch size
    eval_every: int = 100
    checkpoint_every: int = 100
    workers: int = 2
    shuffle_buffer: int = 2000

    @property
    def super_batch(self) -> int:
        """B = b / (1 − f) examples read per step (b for uniform)."""
        if self.method == "uniform":
            return self.batch_size
        return round(self.batch_size / (1.0 - self.filter_ratio))


@dataclass
class History:
    """What the run has done so far; saved in the checkpoint."""

    step: int = 0
    examples_seen: int = 0
    flops: float = 0.0
    seconds: float = 0.0
    curve: list = field(default_factory=list)  # [examples_seen, zeroshot_top1]
    flops_curve: list = field(default_factory=list)  # [flops, zeroshot_top1]
    time_curve: list = field(default_factory=list)  # [seconds, zeroshot_top1]
    losses: list = field(default_factory=list)


class OnlineTrainer:
    """Trains ``bundle`` for ``settings.steps`` steps on the shards of ``patterns``."""

    def __init__(self, bundle: ModelBundle, patterns: str | Sequence[str], settings: TrainSettings, *,
                 checkpoint: str | Path, eval_set: EvalSet | None = None,
                 reference: EmbeddingCache | None = None, writer: FilteredShardWriter | None = None,
                 manifest: Manifest | None = None, tracker: ExtremesTracker | None = None,
                 name: str = "train", progress: bool = True):
        if settings.method in NEEDS_REFERENCE and reference is None:
            raise ValueError(f"method {settings.method} needs reference embeddings")
        self.bundle, self.settings, self.name, self.progress = bundle, settings, name, progress
        self.model = bundle.model
        self.device = self.model.logit_scale.device
        self.checkpoint = Path(checkpoint)
        self.eval_set, self.reference = eval_set, reference
        self.writer, self.manifest, self.tracker = writer, manifest, tracker
        self.optimizer = make_optimizer(self.model, settings.lr, settings.weight_decay)
        self.scheduler = make_scheduler(self.optimizer, settings.steps, settings.warmup)
        self.loader = SuperBatchLoader(
            patterns, settings.super_batch, bundle.preprocess, bundle.tokenizer, workers=settings.workers,
            shuffle_buffer=settings.shuffle_buffer, seed=settings.seed, passes=None)
        self.history = History()
        self._selectors: dict[int, Selector | None] = {}
        full, coarse = forward_flops(self.model), forward_flops(self.model, settings.flexi_patch_size)
        self._train_flops = 3 * (full.image + full.text)  # forward + backward of one example
        if settings.flexi_patch_size:
            self._train_flops = 3 * ((full.image + coarse.image) / 2 + full.text)
        self._score_flops = coarse.image + coarse.text if settings.method in NEEDS_LEARNER else 0

    # --- one step ---------------------------------------------------------------------------
    def selector_for(self, rows: int) -> Selector | None:
        """The Selector for a super-batch of ``rows`` (a short one keeps b a multiple of n_chunks)."""
        s = self.settings
        if s.method == "uniform":
            return None
        if rows not in self._selectors:
            chunks = 1 if s.method == "independent" else s.n_chunks
            b = round(rows * (1.0 - s.filter_ratio)) // chunks * chunks
            self._selectors[rows] = None if b == 0 else Selector(
                method=s.method, filter_ratio=1.0 - b / rows, n_chunks=s.n_chunks, sampling=s.sampling,
                gain=s.gain, seed=s.seed)
        return self._selectors[rows]

    def choose(self, batch: SuperBatch, step: int) -> tuple[torch.Tensor, dict]:
        """Indices of the examples to train on, and per-example scores for the manifest."""
        rows = len(batch)
        if self.settings.method == "uniform":
            return torch.arange(rows), {}
        selector = self.selector_for(rows)
        if selector is None:  # too few samples left for even one chunk: all dropped, none trained
            return torch.zeros(0, dtype=torch.long), {}
        learner = reference = None
        if self.settings.method in NEEDS_LEARNER:
            self.model.eval()
            with torch.no_grad():
                learner = embed(self.model, batch.images.to(self.device), batch.texts.to(self.device),
                                self.settings.flexi_patch_size)
        if self.settings.method in NEEDS_REFERENCE:
            reference = self.reference.lookup(batch.samples, self.device)
        selection = selector.select_with_scores(learner, reference, step=step)
        scores = {"learner_loss": selection.learner_loss, "reference_loss": selection.reference_loss,
                  "learnability": selection.learnability}
        return selection.indices.cpu(), {k: v for k, v in scores.items() if v is not None}

    def train_on(self, batch: SuperBatch, kept: torch.Tensor, step: int) -> float | None:
        if not len(kept):
            return None
        if self.settings.flexi_patch_size:  # a random half goes to the coarse patch size
            order = torch.randperm(len(kept), generator=torch.Generator().manual_seed(self.settings.seed * 7919 + step))
            kept = kept[order]
        return train_step(self.model, self.optimizer, self.scheduler, batch.images[kept], batch.texts[kept],
                          flexi_patch_size=self.settings.flexi_patch_size)

    def record(self, batch: SuperBatch, kept: torch.Tensor, scores: dict, step: int) -> None:
        kept_list = kept.tolist()
        shards = [self.writer.write(batch.samples[i]) for i in kept_list] if self.writer else None
        if self.manifest is not None:
            self.manifest.record(batch, step=step, kept=kept_list, output_shards=shards, **scores)
        if self.tracker is not None and "learnability" in scores:
            for i, value in enumerate(scores["learnability"].tolist()):
                sample = batch.samples[i]
                self.tracker.add(Example(value, sample.key, caption_of(sample), sample.members[image_member(sample)]))

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> dict:
        s, h = self.settings, self.history
        self.restore()
        if h.step == 0 and not h.curve:
            self.evaluate_now()
        bar = tqdm(total=s.steps, initial=h.step, desc=self.name, unit="step", disable=not self.progress)
        started = time.perf_counter()
        for batch in self.loader:
            if h.step >= s.steps:
                break
            kept, scores = self.choose(batch, h.step)
            loss = self.train_on(batch, kept, h.step)
            self.record(batch, kept, scores, h.step)
            h.step += 1
            h.examples_seen += len(kept)
            h.flops += len(kept) * self._train_flops + len(batch) * self._score_flops
            if loss is not None:
                h.losses.append(loss)
                bar.set_postfix(loss=f"{loss:.3f}")
            bar.update()
            h.seconds += time.perf_counter() - started
            if h.step % s.eval_every == 0 or h.step == s.steps:
                self.evaluate_now()
            if h.step % s.checkpoint_every == 0 or h.step == s.steps:
                self.save()
            started = time.perf_counter()
        bar.close()
        return self.summary()

    def evaluate_now(self) -> dict:
        if self.eval_set is None:
            return {}
        metrics = evaluate(self.bundle, self.eval_set, device=self.device)
        h = self.history
        top1 = metrics["zeroshot_top1"]
        h.curve.append([h.examples_seen, top1])
        h.flops_curve.append([h.flops, top1])
        h.time_curve.append([h.seconds, top1])
        self.last_metrics = metrics
        return metrics

    def summary(self) -> dict:
        h = self.history
        metrics = dict(getattr(self, "last_metrics", None) or self.evaluate_now())
        steps = max(1, h.step)
        return {**metrics, "method": self.settings.method, "steps": h.step, "examples_seen": h.examples_seen,
                "flops": h.flops, "train_seconds": h.seconds, "seconds_per_step": h.seconds / steps,
                "final_loss": h.losses[-1] if h.losses else None, "curve": h.curve,
                "flops_curve": h.flops_curve, "time_curve": h.time_curve}

    # --- checkpoints --------------------------------------------------------------------------
    def save(self) -> None:
        state = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "history": vars(self.history),
            "loader": self.loader.state_dict(), "last_metrics": getattr(self, "last_metrics", {}),
        }
        if self.writer is not None:
            state["writer"] = self.writer.state_dict()
        if self.manifest is not None:
            state["manifest"] = self.manifest.state_dict()
        if self.tracker is not None:
            state["tracker"] = self.tracker.state_dict()
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(self.checkpoint, state)

    def restore(self) -> None:
        if not self.checkpoint.exists():
            return
        state = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.history = History(**state["history"])
        self.loader.load_state_dict(state["loader"])
        self.last_metrics = state["last_metrics"]
        for name in ("writer", "manifest", "tracker"):
            part = getattr(self, name)
            if part is not None and name in state:
                part.load_state_dict(state[name])
