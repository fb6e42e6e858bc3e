"""One bootstrap run: reference → its embeddings of the web data → each arm's learner (the main
one writing the filtered shards and the manifest) → metrics and report.

Every stage leaves what ``RunLayout.done`` looks for (a record and, where it trains one, a
model folder), so running the same command again after a crash redoes only what is missing.
Under torchrun every rank trains (see ``OnlineTrainer``), embeds its share of the web shards
and writes its own filtered shards and manifest parts (see ``FilteredOutput``); rank 0 alone
writes models, metrics and the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from typing import Iterator

from jestfilter.data import atomic_write_json
from jestfilter.distributed import broadcast_object
from jestfilter.embeddings import EmbeddingCache
from jestfilter.pipeline import stages
from jestfilter.pipeline.arms import build_arms
from jestfilter.pipeline.estimate import make_plan, measure, workers_line
from jestfilter.pipeline.job import Job
from jestfilter.pipeline.layout import EMBEDDINGS, REFERENCE
from jestfilter.pipeline.outcome import report
from jestfilter.plan import batch_summary
from jestfilter.selection.criteria import criterion
from jestfilter.studies import criterion_note
from jestfilter.train.precision import Phases, choose_phases
from jestfilter.train.stall import weak_reference


class Bootstrap(Job):
    """One bootstrap job's stages in order, each skipped when its layout says it is done."""

    def run(self) -> dict:
        """Run (or resume) the whole job; returns the metrics also written to ``metrics.json``."""
        layout, main = self.layout, self.world.main
        if layout.finished(self.arms.names):
            if main:
                print(f"{layout.out} holds a finished run: nothing to do (report: {layout.report_page})")
            return json.loads(layout.metrics.read_text())
        started = time.perf_counter()
        self.choose_precision()
        if main:
            timing = measure(self)
            self.plan = make_plan(self, timing)
            print("\n".join([*self.plan.lines(f"bootstrap → {layout.out}, on {self.device} × {self.world.size} "
                                              "rank(s):"),
                             f"  {batch_summary(self.cfg.train, self.world.size)}",
                             f"  {workers_line(self, timing)}"]), flush=True)
            note = criterion_note(self.cfg.train.method, self.cfg.train.steps, self.cfg.train.batch_size)
            if note:
                print(note, flush=True)
        with self.stage(REFERENCE):
            reference, reference_metrics = stages.reference(self)
        if main:
            print(f"reference: zero-shot top-1 {reference_metrics['zeroshot_top1']:.3f}")
            caution = weak_reference(reference_metrics["zeroshot_top1"], reference_metrics.get("chance"))
            if caution and self.arms.need_reference:
                print(caution, flush=True)
        with self.stage(EMBEDDINGS):
            cache, embedding = stages.reference_cache(self, reference)
        del reference
        runs = {}
        for arm in self.arms.all:
            with self.stage(arm.name):
                runs[arm.name] = stages.learner(self, arm, cache)
        if not main:
            return {}
        pool = cache.rows(self.web) if cache is not None else None
        metrics = report(self, reference_metrics, runs, embedding, pool, time.perf_counter() - started)
        if not self.cfg.keep_checkpoints:  # the run is complete: nothing to resume from any more
            layout.clean()
        return metrics

    def learner(self, method: str, cache: EmbeddingCache | None) -> dict:
        """The arm ``method``'s learner alone (a tool's use: the stage, with no plan)."""
        return stages.learner(self, self.arms.named(method), cache)

    def choose_precision(self) -> None:
        """Each phase's precision, decided once for the whole job (every model and arm alike, and
        a resumed job as it started): ``--precision auto`` times this machine (``choose_phases``).
        The arms are built again with it."""
        record, s, world = self.layout.precision, self.cfg.train, self.world
        if record.exists():
            phases = Phases(**json.loads(record.read_text()))
        else:
            phases = choose_phases(s.precision, s.score_precision, s.train_precision, self.new_model("learner").model,
                                   s.batches(world.size).super_batch // world.size, s.batch_size // world.size,
                                   criterion(s.method).needs_learner)
            phases = broadcast_object(world, phases)
            if world.main:
                atomic_write_json(record, vars(phases))
        if world.main and phases.why != "as asked":
            print(phases.line(), flush=True)
        self.cfg.train = dataclasses.replace(s, score_precision=phases.score, train_precision=phases.train)
        self.arms = build_arms(self.cfg)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one stage of the plan (a stage the plan leaves out is not timed)."""
        known = any(stage.name == name for stage in self.plan.stages)
        if known:
            self.plan.begin(name)
        yield
        if known:
            self.plan.end()
