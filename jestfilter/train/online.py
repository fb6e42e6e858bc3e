"""The training loop shared by every run: reference, uniform baseline and online JEST.

Each step takes one super-batch from the stream; a ``method`` other than ``uniform`` scores it
with the learner (no gradients) and the cached reference embeddings, the Selector picks b
examples, and the learner trains on them. Kept samples go to the shard writer, every sample's
fate to the manifest. The loop checkpoints model, optimiser, stream, writer and manifest in one
file, so a killed run restarts where the last checkpoint left it.

Under torchrun each rank reads its own shards, B/world rows a step, the Selector chooses b
over all ranks' rows together (b/world from each), the gradients are averaged over ranks and
the SigLIP loss sees every rank's texts as negatives. Ranks stay in lock-step: a step uses
the smallest row count any rank has (a pass ends at different times on different ranks);
the rows a rank reads beyond it go to the manifest as dropped, reason ``short_super_batch``.
Rank 0 checkpoints the model and optimiser, each rank its own stream, writer and manifest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from open_clip.loss import SigLipLoss
from tqdm import tqdm

from jestfilter.data import FilteredShardWriter, Manifest, SuperBatch, SuperBatchLoader, atomic_torch_save
from jestfilter.data.embeddings import EmbeddingCache
from jestfilter.data.manifest import DROPPED
from jestfilter.data.shards import caption_of, image_member
from jestfilter.distributed import (average_gradients, barrier, broadcast_object, broadcast_parameters,
                                    current_world, gather_objects, min_across)
from jestfilter.eval import EvalSet, evaluate
from jestfilter.models import ModelBundle, embed, forward_flops
from jestfilter.report import Example, ExtremesTracker
from jestfilter.selection import Selector
from jestfilter.train.checkpoint import restore_training_state, training_state
from jestfilter.train.optim import make_optimizer, make_scheduler
from jestfilter.train.step import train_step

NEEDS_LEARNER = {"learnability", "independent", "hard_learner"}
NEEDS_REFERENCE = {"learnability", "independent", "easy_reference"}
SHORT_SUPER_BATCH = "short_super_batch"  # read by a rank beyond the step's common row count


@dataclass
class TrainSettings:
    """One training run. ``batch_size`` is b, the examples trained on per step (over all ranks)."""

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
        """B = b / (1 − f) examples read per step over all ranks (b for uniform)."""
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
        self.world = current_world()
        self._check_world()
        broadcast_parameters(self.world, self.model)
        self.loss_fn = SigLipLoss(rank=self.world.rank, world_size=self.world.size)
        self.optimizer = make_optimizer(self.model, settings.lr, settings.weight_decay)
        self.scheduler = make_scheduler(self.optimizer, settings.steps, settings.warmup)
        self.loader = SuperBatchLoader(
            patterns, settings.super_batch // self.world.size, bundle.preprocess, bundle.tokenizer,
            workers=settings.workers, shuffle_buffer=settings.shuffle_buffer, seed=settings.seed, passes=None)
        if len(self.loader.shards) < self.world.size:
            raise ValueError(f"{len(self.loader.shards)} shard(s) for {self.world.size} ranks: every rank needs "
                             "at least one; write the data in more, smaller shards")
        self.history = History()
        self._selectors: dict[int, Selector | None] = {}
        full, coarse = forward_flops(self.model), forward_flops(self.model, settings.flexi_patch_size)
        self._train_flops = 3 * (full.image + full.text)  # forward + backward of one example
        if settings.flexi_patch_size:
            self._train_flops = 3 * ((full.image + coarse.image) / 2 + full.text)
        self._score_flops = coarse.image + coarse.text if settings.method in NEEDS_LEARNER else 0

    def _check_world(self) -> None:
        s, size = self.settings, self.world.size
        if size == 1:
            return
        chunks = 1 if s.method in ("uniform", "independent") else s.n_chunks
        if s.batch_size % (chunks * size) or s.super_batch % size:
            raise ValueError(f"b={s.batch_size} (B={s.super_batch}) does not split over {size} ranks"
                             + (f" × {chunks} chunks" if chunks > 1 else "")
                             + f": use a batch size that is a multiple of {chunks * size}")

    def rank_checkpoint(self, step: int) -> Path:
        """This rank's stream, writer and manifest state at ``step`` under torchrun."""
        c = self.checkpoint
        return c.with_name(f"{c.stem}.rank-{self.world.rank:05d}.step-{step:09d}{c.suffix}")

    # --- one step ---------------------------------------------------------------------------
    def selector_for(self, rows: int) -> Selector | None:
        """The Selector for ``rows`` per rank (a short super-batch keeps b a multiple of n_chunks × ranks)."""
        s = self.settings
        if s.method == "uniform":
            return None
        if rows not in self._selectors:
            step = (1 if s.method == "independent" else s.n_chunks) * self.world.size
            total = rows * self.world.size
            b = round(total * (1.0 - s.filter_ratio)) // step * step
            self._selectors[rows] = None if b == 0 else Selector(
                method=s.method, filter_ratio=1.0 - b / total, n_chunks=s.n_chunks, sampling=s.sampling,
                gain=s.gain, seed=s.seed)
        return self._selectors[rows]

    def common_rows(self, batch: SuperBatch) -> tuple[SuperBatch, list]:
        """The batch cut to the row count every rank has, and the samples cut off."""
        rows = min_across(self.world, len(batch), self.device)
        if rows == len(batch):
            return batch, []
        used = SuperBatch(batch.images[:rows], batch.texts[:rows], batch.samples[:rows], batch.rejected,
                          batch.pass_index, batch.index)
        return used, batch.samples[rows:]

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
        selection = selector.select_with_scores(learner, reference, step=step, group=self.world.group)
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
                          loss_fn=self.loss_fn, flexi_patch_size=self.settings.flexi_patch_size,
                          reduce_gradients=lambda model: average_gradients(self.world, model))

    def record(self, batch: SuperBatch, kept: torch.Tensor, scores: dict, step: int, surplus: list = ()) -> None:
        kept_list = kept.tolist()
        shards = [self.writer.write(batch.samples[i]) for i in kept_list] if self.writer else None
        if self.manifest is not None:
            self.manifest.record(batch, step=step, kept=kept_list, output_shards=shards, **scores)
            if surplus:
                self.manifest.append(key=[x.key for x in surplus], source_shard=[x.source_shard for x in surplus],
                                     step=[step] * len(surplus), decision=[DROPPED] * len(surplus),
                                     reason=[SHORT_SUPER_BATCH] * len(surplus),
                                     **{"pass": [batch.pass_index] * len(surplus)})
        if self.tracker is not None and "learnability" in scores:
            for i, value in enumerate(scores["learnability"].tolist()):
                sample = batch.samples[i]
                self.tracker.add(Example(value, sample.key, caption_of(sample), sample.members[image_member(sample)]))

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> dict:
        self.restore()
        s, h = self.settings, self.history
        if h.step == 0 and not h.curve:
            self.evaluate_now()
        bar = tqdm(total=s.steps, initial=h.step, desc=self.name, unit="step",
                   disable=not self.progress or not self.world.main)
        started = time.perf_counter()
        for batch in self.loader:
            if h.step >= s.steps:
                break
            batch, surplus = self.common_rows(batch)
            kept, scores = self.choose(batch, h.step)
            loss = self.train_on(batch, kept, h.step)
            self.record(batch, kept, scores, h.step, surplus)
            h.step += 1
            # every rank keeps and scores as many rows as this one
            h.examples_seen += len(kept) * self.world.size
            h.flops += (len(kept) * self._train_flops + len(batch) * self._score_flops) * self.world.size
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
        # rank 0 evaluates; every rank keeps the same curve
        metrics = evaluate(self.bundle, self.eval_set, device=self.device) if self.world.main else None
        metrics = broadcast_object(self.world, metrics)
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
        extra = {"history": vars(self.history), "last_metrics": getattr(self, "last_metrics", {})}
        if self.tracker is not None:
            extra["tracker"] = self.tracker.state_dict()
        shared = training_state(self.model, self.optimizer, self.scheduler, self.history.step, extra)
        own = {"loader": self.loader.state_dict()}
        for name in ("writer", "manifest"):
            if getattr(self, name) is not None:
                own[name] = getattr(self, name).state_dict()
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        if self.world.size == 1:
            atomic_torch_save(self.checkpoint, {**shared, **own})
            return
        # Every rank's part first, then the shared file, then the parts of the step before go:
        # a crash at any point leaves a shared file whose step every rank still has a part for.
        step = self.history.step
        atomic_torch_save(self.rank_checkpoint(step), own)
        barrier(self.world)
        if self.world.main:
            atomic_torch_save(self.checkpoint, shared)
        barrier(self.world)
        c = self.checkpoint
        for old in c.parent.glob(f"{c.stem}.rank-{self.world.rank:05d}.step-*{c.suffix}"):
            if old != self.rank_checkpoint(step):
                old.unlink()

    def restore(self) -> None:
        if not self.checkpoint.exists():
            return
        state = own = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        if self.world.size > 1:
            part = self.rank_checkpoint(state["step"])
            own = torch.load(part, weights_only=True) if part.exists() else None
            missing = [p for p in gather_objects(self.world, None if own else str(part)) if p]
            if missing:
                raise ValueError(f"cannot resume: {missing[0]} is missing (was the job started with another "
                                 "number of ranks?)")
        _, extra = restore_training_state(state, self.model, self.optimizer, self.scheduler)
        self.history = History(**extra["history"])
        self.last_metrics = extra["last_metrics"]
        self.loader.load_state_dict(own["loader"])
        for name, source in (("writer", own), ("manifest", own), ("tracker", extra)):
            part = getattr(self, name)
            if part is not None and name in source:
                part.load_state_dict(source[name])
