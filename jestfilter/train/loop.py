"""The training loop behind every run: the reference, the baselines and online JEST.

Each step is the paper's Algorithm 2: read a super-batch of B = b/(1−f), score it with the
learner (no gradients) and the cached reference, let the Selector choose b, train one SigLIP
step on them, and hand the selection to the output sink. ``uniform`` reads b and trains on all
of it, and so does every method after ``select_until`` (see ``StepPlan``). Under torchrun every
rank reads its own B/N rows; the Selector chooses over all ranks' rows and the loss sees every
rank's negatives. The loader's workers decode to uint8; resizing and normalising happen here,
batched on the model's device, and every part of a step is timed (``time_breakdown``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Collection, Sequence

import torch
from tqdm import tqdm

from jestfilter.config import TrainSettings
from jestfilter.data import SuperBatch
from jestfilter.data.loader import decode_on_device
from jestfilter.distributed import average_gradients, broadcast_object, current_world, gather_objects, min_across
from jestfilter.embeddings import EmbeddingCache
from jestfilter.errors import Stopped
from jestfilter.models import ModelBundle, embed
from jestfilter.selection import Selection, Selector, SiglipOutputs
from jestfilter.selection.criteria import criterion
from jestfilter.sinks import Sink
from jestfilter.train.accounting import History, PhaseTimer, StepCost
from jestfilter.train.agreement import overlap, spearman
from jestfilter.train.checkpoint import restore_training_state, training_state
from jestfilter.train.precision import Phases, autocast
from jestfilter.train.schedule import evaluation_due, make_selector
from jestfilter.train.setup import build_trainer
from jestfilter.train.stall import due, not_learning, warning
from jestfilter.train.step import train_step

SHORT_SUPER_BATCH = "short_super_batch"  # read by a rank beyond the step's common row count
NOT_SELECTING = "after_select_until"  # trained on without scoring, after --select-until
Evaluate = Callable[[ModelBundle], dict]


class OnlineTrainer:
    """Trains ``bundle`` for ``settings.steps`` steps on the shards of ``patterns``.

    ``reference``: the cached reference embeddings (criteria that score with the reference
    need them); ``sink``: where each step's selection goes (e.g. ``FilteredOutput``);
    ``evaluate(bundle) -> metrics`` runs every ``eval_every`` steps (on rank 0), then
    ``on_evaluation(step, steps, metrics)`` (rank 0; e.g. to print a line); ``only``: the
    (shard name, key) of the samples to train on (an offline filter's kept set), else all.
    """

    def __init__(self, bundle: ModelBundle, patterns: str | Sequence[str], settings: TrainSettings, *,
                 checkpoint: str | Path, evaluate: Evaluate | None = None, reference: EmbeddingCache | None = None,
                 sink: Sink | None = None, name: str = "train", progress: bool = True,
                 only: Collection[tuple[str, str]] | None = None,
                 on_evaluation: Callable[[int, int, dict], None] | None = None):
        if criterion(settings.method).needs_reference and reference is None:
            raise ValueError(f"method {settings.method} needs reference embeddings")
        self.world = current_world()
        self.bundle, self.model, self.settings, self.name, self.progress = bundle, bundle.model, settings, name, progress
        self.device = self.model.logit_scale.device
        self.evaluate, self.reference, self.sink, self.on_evaluation = evaluate, reference, sink, on_evaluation
        parts = build_trainer(bundle, patterns, settings, self.world, checkpoint=checkpoint, only=only,
                              progress=progress)
        self.selector, self.plan, self.loader, self.checkpoint, self.phases = (
            parts.selector, parts.plan, parts.loader, parts.checkpoint, parts.phases)
        self.score_patch_size, self.train_patch_size = parts.score_patch_size, parts.train_patch_size
        self.loss_fn, self.optimizer, self.scheduler = parts.loss_fn, parts.optimizer, parts.scheduler
        self._selectors = {self.plan.super_batch(0): self.selector} if settings.filter_ratio_end is None else {}
        self.cost = StepCost(self.model, self.score_patch_size, self.train_patch_size,
                             self.selector.criterion.needs_learner, settings.score_context)
        self.history, self.last_metrics = History(), {}
        self.timer = PhaseTimer(self.history.phases, self.device)
        self.saved_step = 0  # the step the checkpoint on disk holds

    def run(self) -> dict:
        """Train (or resume) to the last step; returns the run's summary."""
        resumed = self.restore()
        s, h = self.settings, self.history
        if h.step == 0 and not h.curve:
            self.evaluate_now()
        if not resumed:  # before any output: a run killed before its first periodic checkpoint resumes here
            self.save()
        bar = tqdm(total=s.steps, initial=h.step, desc=self.name, unit="step",
                   disable=not self.progress or not self.world.main)
        started = time.perf_counter()
        batches = iter(self.loader)
        try:
            for batch in batches:
                if h.step >= s.steps:
                    break
                self.timer.seconds["load"] = self.timer.seconds.get("load", 0.0) + time.perf_counter() - started
                checked = self.timer.seconds.get("agreement", 0.0)
                rows, scored, kept, loss = self.step(batch, h.step)
                checking = self.timer.seconds.get("agreement", 0.0) - checked  # kept apart, as evaluation is
                self.account(rows, scored, kept, loss, time.perf_counter() - started - checking, bar)
                del batch  # not held while the next one is read (its raw bytes can be large)
                started = time.perf_counter()
        except Stopped as stop:  # SIGTERM or Ctrl-C: say where, for the CLI's one line
            stop.where = stop.where or (f" during step {h.step + 1} of {self.name}; the last checkpoint is at step "
                                        f"{self.saved_step} ({self.checkpoint.path})")
            raise
        finally:
            batches.close()  # ends the DataLoader workers now, not when the traceback is freed
            bar.close()
        return self.summary()

    def step(self, batch: SuperBatch, step: int) -> tuple[int, int, int, float | None]:
        """One step of the paper's Algorithm 2 on a super-batch; returns the rows it read,
        scored and trained on, and the loss."""
        if self.loader.defer_jpeg:  # --decode gpu: the JPEGs the workers left as bytes
            with self.timer("decode"):
                batch = decode_on_device(batch, self.device)
        batch, surplus = self.common_rows(batch)  # every rank the same number of rows
        if not len(batch):  # no image of it decoded (on some rank): record what was read, train on nothing
            if self.sink is not None:
                self.record(batch, None, surplus, step)
            return len(surplus) + len(batch.rejected), 0, 0, None
        with self.timer("preprocess"):  # decoded in the workers; resized and normalised here
            pixels = self.bundle.preprocess.to_model(batch.images, self.device)
            texts = batch.texts.to(self.device, non_blocking=True)
        selects = self.plan.selects(step)  # after --select-until: plain batches of b
        selection, scores = self.select(batch, pixels, texts, step) if selects else (None, None)
        kept = selection.indices.cpu() if selection is not None else torch.arange(len(batch))
        with self.timer("train"):
            loss = self.train_on(pixels, texts, kept, step)
        if self.sink is not None:
            with self.timer("write"):
                self.record(batch, selection, surplus, step)
        if selects and self.scores_cheaply and self.evaluation_due(step + 1):
            with self.timer("agreement"):
                self.check_agreement(pixels, texts, scores, selection, step)
        return len(batch) + len(surplus) + len(batch.rejected), len(batch) if selects else 0, len(kept), loss

    # --- the parts of a step ----------------------------------------------------------------
    def common_rows(self, batch: SuperBatch) -> tuple[SuperBatch, list]:
        """The batch cut to the row count every rank has, and the samples cut off."""
        rows = min_across(self.world, len(batch), self.device)
        if rows == len(batch):
            return batch, []
        used = SuperBatch(batch.images[:rows], batch.texts[:rows], batch.samples[:rows], batch.rejected,
                          batch.pass_index, batch.index, batch.timings)
        return used, batch.samples[rows:]

    def select(self, batch: SuperBatch, pixels: torch.Tensor, texts: torch.Tensor, step: int
               ) -> tuple[Selection, tuple[SiglipOutputs | None, SiglipOutputs | None]]:
        """Score the super-batch (learner and cached reference) and choose from it; returns the
        selection and the (learner, reference) outputs it chose by."""
        with self.timer("score"):
            learner = self.learner_embeddings(pixels, texts)
        with self.timer("reference"):
            reference = self.reference_embeddings(batch)
        with self.timer("select"):
            selection = self.selector_at(step).select_with_scores(learner, reference, step=step,
                                                                  group=self.world.group, rows=len(batch))
        return selection, (learner, reference)

    def selector_at(self, step: int) -> Selector:
        """The Selector for this step's B (one per filter ratio of a schedule)."""
        if not self.plan.reads_extra:  # uniform and offline arms read b at any filter ratio
            return self.selector
        rows = self.plan.super_batch(step)
        if rows not in self._selectors:
            self._selectors[rows] = make_selector(self.settings, self.world.size, self.plan.batches(step).filter_ratio)
        return self._selectors[rows]

    @torch.no_grad()
    def learner_embeddings(self, pixels: torch.Tensor, texts: torch.Tensor, cheap: bool = True
                           ) -> SiglipOutputs | None:
        """The learner's scoring pass over the super-batch, in fp32 for the Selector; ``cheap``:
        at the Flexi patch size and ``score_context`` tokens when they are set."""
        if not self.selector.criterion.needs_learner:
            return None
        self.model.eval()
        patch, context = (self.score_patch_size, self.settings.score_context) if cheap else (None, None)
        with autocast(self.phases.score, self.device):
            outputs = embed(self.model, pixels, texts, patch, context)
        return SiglipOutputs(outputs.image.float(), outputs.text.float(), outputs.scale.float(),
                             None if outputs.bias is None else outputs.bias.float())

    def reference_embeddings(self, batch: SuperBatch) -> SiglipOutputs | None:
        """The cached reference outputs of the super-batch's rows (None when the criterion needs none)."""
        if not self.selector.criterion.needs_reference:
            return None
        return self.reference.lookup(batch.samples, self.device)

    def train_on(self, pixels: torch.Tensor, texts: torch.Tensor, kept: torch.Tensor, step: int) -> float | None:
        """One optimiser step on the ``kept`` rows; returns the loss (None when nothing was kept)."""
        if not len(kept):  # a short super-batch too small for one chunk: nothing to train on
            return None
        if self.train_patch_size:  # a random half goes to the coarse patch size
            order = torch.randperm(len(kept), generator=torch.Generator().manual_seed(self.settings.seed * 7919 + step))
            kept = kept[order]
        rows = kept.to(pixels.device)
        return train_step(self.model, self.optimizer, self.scheduler, pixels[rows], texts[rows],
                          loss_fn=self.loss_fn, flexi_patch_size=self.train_patch_size,
                          max_grad_norm=self.settings.grad_clip_norm,
                          reduce_gradients=lambda model: average_gradients(self.world, model),
                          precision=self.phases.train)

    def record(self, batch: SuperBatch, selection: Selection | None, surplus: list, step: int) -> None:
        """Hand the step to the sink; after ``select_until`` every row is dropped unscored."""
        unscored = [(x, SHORT_SUPER_BATCH) for x in surplus]
        reasons = None
        if selection is None:
            selection = Selection(torch.zeros(0, dtype=torch.long), None, None, None)
            reasons = dict.fromkeys(range(len(batch)), NOT_SELECTING)
        self.sink.record(batch, selection, step, unscored=unscored, reasons=reasons)

    @property
    def scores_cheaply(self) -> bool:
        """Whether the learner scores a cheaper view than it trains on (Flexi, shorter captions)."""
        return self.selector.criterion.needs_learner and bool(self.score_patch_size or self.settings.score_context)

    def check_agreement(self, pixels: torch.Tensor, texts: torch.Tensor, scores: tuple, cheap: Selection,
                        step: int) -> None:
        """Score this super-batch at full resolution too: the Spearman agreement of the two
        views' per-example scores, and the share of the cheap view's choices that the full view
        makes with the same random draw."""
        _, reference = scores
        full = self.selector_at(step).select_with_scores(self.learner_embeddings(pixels, texts, cheap=False),
                                                         reference, step=step, group=self.world.group)

        def score(selection: Selection) -> torch.Tensor:
            return selection.learnability if selection.learnability is not None else selection.learner_loss

        self.history.agreement.append([step + 1, spearman(score(cheap), score(full)),
                                       overlap(cheap.indices, full.indices)])

    def account(self, rows: int, scored: int, trained: int, loss: float | None, seconds: float, bar: tqdm) -> None:
        """Count the step (every rank scores and trains as many rows as this one), then evaluate
        and checkpoint when due (their time is kept apart from the step's)."""
        s, h = self.settings, self.history
        h.step += 1
        h.rows_read += rows
        h.examples_seen += trained * self.world.size
        h.flops += self.cost(scored, trained) * self.world.size
        h.seconds += seconds
        if loss is not None:
            h.losses.append(loss)
            bar.set_postfix(loss=f"{loss:.3f}")
        bar.update()
        evaluated = self.evaluation_due(h.step)
        if evaluated:
            with self.timer("evaluate"):
                self.evaluate_now()
        if not h.learning_checked and due(h.step, s.steps) and (evaluated or self.evaluate is None):
            self.check_learning()
        if h.step % s.checkpoint_every == 0 or h.step == s.steps:
            with self.timer("checkpoint"):
                self.save()

    def evaluation_due(self, step: int) -> bool:
        return evaluation_due(step, self.settings.steps, self.settings.eval_every)

    def check_learning(self) -> None:
        """The verdict a third of the way through: is the run learning? (a loud line when not)"""
        h = self.history
        h.learning_checked = True
        h.stalled = not_learning(self.last_metrics.get("zeroshot_top1"), self.last_metrics.get("chance"), h.losses)
        if h.stalled and self.world.main:
            tqdm.write(warning(self.name, h.step, self.settings.steps, h.stalled))

    def stalled(self, metrics: dict) -> str | None:
        """Why the run is stalled: its verdict a third of the way, or a final accuracy still near chance."""
        if self.history.stalled:
            return self.history.stalled
        at_end = not_learning(metrics.get("zeroshot_top1"), metrics.get("chance"), [])
        return f"at the end {at_end}" if at_end else None

    # --- evaluation and summary -------------------------------------------------------------
    def evaluate_now(self) -> dict:
        if self.evaluate is None:
            return {}
        # rank 0 evaluates; every rank keeps the same curve
        metrics = broadcast_object(self.world, self.evaluate(self.bundle) if self.world.main else None)
        self.history.add_evaluation(metrics["zeroshot_top1"])
        self.last_metrics = metrics
        if self.on_evaluation is not None and self.world.main:
            self.on_evaluation(self.history.step, self.settings.steps, metrics)
        return metrics

    def summary(self) -> dict:
        """The run's numbers for ``metrics.json``: the last evaluation, counts, FLOPs, curves and times."""
        h = self.history
        metrics = dict(self.last_metrics or self.evaluate_now())
        stalled = self.stalled(metrics)
        return {**metrics, "stalled": stalled is not None, **({"stalled_reason": stalled} if stalled else {}),
                "method": self.settings.method, "precision": {"score": self.phases.score, "train": self.phases.train},
                "steps": h.step, "examples_seen": h.examples_seen,
                **self.passes(), "flops": h.flops, "train_seconds": h.seconds,
                "seconds_per_step": h.seconds / max(1, h.step), "final_loss": h.losses[-1] if h.losses else None,
                "curve": h.curve, "flops_curve": h.flops_curve, "time_curve": h.time_curve,
                "time_breakdown": self.time_breakdown(),
                **({"score_agreement": [dict(zip(("step", "spearman", "overlap"), row)) for row in h.agreement]}
                   if h.agreement else {})}

    def passes(self) -> dict:
        """``rows_read`` (samples and rejections, all ranks) and ``passes``: that over the rows of
        one whole pass (None before a pass ended)."""
        read = gather_objects(self.world, (self.history.rows_read, self.loader.pass_rows))
        rows = sum(r for r, _ in read)
        if any(pass_rows is None for _, pass_rows in read):
            return {"rows_read": rows, "passes": None}
        return {"rows_read": rows, "passes": rows / sum(pass_rows for _, pass_rows in read)}

    def time_breakdown(self) -> dict:
        """Seconds per part of the run on this rank: the step's parts (their sum is
        ``train_seconds``, give or take the bookkeeping between them), evaluation and
        checkpoints (outside ``train_seconds``), and the loader workers' own seconds, spent in
        parallel with the steps (``load`` is the time a step waited for them)."""
        phases = {name: round(seconds, 3) for name, seconds in self.history.phases.items()}
        workers = {name: round(seconds, 3) for name, seconds in self.loader.timings.items()}
        return {**phases, "loader_workers": workers, "steps": self.history.step}

    # --- checkpoints ------------------------------------------------------------------------
    def save(self) -> None:
        """Checkpoint the model, optimiser, loader, sink and history together (one atomic file)."""
        extra = {"history": vars(self.history), "last_metrics": self.last_metrics, "phases": vars(self.phases)}
        shared = training_state(self.model, self.optimizer, self.scheduler, self.history.step, extra)
        own = {"loader": self.loader.state_dict()}
        if self.sink is not None:
            own["sink"] = self.sink.state_dict()
        self.checkpoint.save(shared, own)
        self.saved_step = self.history.step

    def restore(self) -> bool:
        """Resume from the checkpoint when there is one (every part at the same step); False
        when there is none."""
        saved = self.checkpoint.load(self.device)
        if saved is None:
            return False
        shared, own = saved
        _, extra = restore_training_state(shared, self.model, self.optimizer, self.scheduler)
        self.history = History(**extra["history"])
        self.timer = PhaseTimer(self.history.phases, self.device)
        self.saved_step = self.history.step
        self.last_metrics = extra["last_metrics"]
        if "phases" in extra:  # the precisions chosen when the run started, not timed anew
            self.phases = Phases(**extra["phases"])
        self.loader.load_state_dict(own["loader"])
        if self.sink is not None:
            self.sink.load_state_dict(own["sink"])
        return True
