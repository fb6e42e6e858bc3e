"""bootstrap = reference → online JEST (+ filtered shards, manifest) → final model → evaluation,
once or in rounds (each round's final model is the next round's reference).

Every stage leaves a marker when it is done (a model folder, a run's JSON, a finished shard
writer), so running the same command again after a crash redoes only what is missing.

Under torchrun every rank trains (see ``OnlineTrainer``), embeds its share of the web shards
and writes its own filtered shards and manifest parts (see ``FilteredOutput``); rank 0 alone
writes models, metrics and the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import polars as pl
import torch
from tqdm import tqdm

from jestfilter.config import BootstrapConfig, TrainSettings
from jestfilter.data import RawSample, atomic_write_json, expand_shards, iter_samples
from jestfilter.data.manifest import scan_dropped_counts, scan_manifest
from jestfilter.distributed import barrier, broadcast_object, init_distributed, lock_folder, main_first, resolve_device
from jestfilter.embeddings import EmbeddingCache, build_cache, cache_path
from jestfilter.eval import evaluate, load_eval_set
from jestfilter.machine import default_workers
from jestfilter.models import (ModelBundle, PixelStats, create_model, flexi_patch_size, forward_flops, input_size,
                               save_local_dir, start_model, stats_for_new_model)
from jestfilter.plan import Plan, Stage, Timing
from jestfilter.report import write_report, write_rounds_report
from jestfilter.results import (break_even, break_even_lines, costs, filtered_counts, filtered_line, manifest_counts,
                                pool_size, round_summary, rounds_table, speedups, summary_table)
from jestfilter.scores import pool_scores, top_fraction
from jestfilter.selection.criteria import criterion
from jestfilter.sinks import ExtremesTracker, FilteredOutput, scan_pool
from jestfilter.train.loop import OnlineTrainer
from jestfilter.train.precision import Phases, choose_phases
from jestfilter.train.schedule import evaluations
from jestfilter.train.stall import verdict

EXTREMES = "report-extremes.pt"


class Inputs(NamedTuple):
    """A run's data: curated and web shard lists, the eval folder, and (the demo) the web's truth."""

    curated: list[str]
    web: list[str]
    eval: str
    truth: Path | None = None  # web_truth.parquet: each demo web sample's noise kind


def prepare_data(cfg: BootstrapConfig) -> Inputs:
    """The curated and web shard lists and the eval folder; the demo data when none is given."""
    if cfg.curated is None:
        from jestfilter.datasets.demo import build_demo_data

        demo = build_demo_data(Path(cfg.out) / "demo-data", seed=cfg.train.seed, progress=cfg.progress)
        return Inputs(expand_shards(demo.curated), expand_shards(demo.web), str(demo.eval), Path(demo.truth))
    eval_dir = Path(cfg.eval)
    if not eval_dir.is_dir():
        raise FileNotFoundError(f"--eval directory not found: {eval_dir}")
    return Inputs(expand_shards(cfg.curated), expand_shards(cfg.web), str(eval_dir))


def _fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


class Bootstrap:
    """One bootstrap job's stages, each skipped when its marker says it is done."""

    def __init__(self, cfg: BootstrapConfig, inputs: Inputs | None = None):
        cfg.validate()
        self.cfg, self.out = cfg, Path(cfg.out)
        self.world, self.device = init_distributed(resolve_device(cfg.device))
        self.progress = cfg.progress and self.world.main
        with main_first(self.world):  # rank 0 builds the demo data, the others find it built
            (self.out / "runs").mkdir(parents=True, exist_ok=True)
            self.inputs = inputs or prepare_data(cfg)
        self.curated, self.web = self.inputs.curated, self.inputs.web
        # decoded for the learner's input size, as its training data (--decode full: as stored)
        self.eval_set = load_eval_set(self.inputs.eval, None if cfg.train.decode == "full" else input_size(cfg.model))
        self.plan = Plan([])  # run() makes the real one; a stage called on its own (a tool) has none

    def evaluator(self):
        eval_set, device = self.eval_set, self.device
        return lambda bundle: evaluate(bundle, eval_set, device=device)

    def new_model(self, role: str) -> ModelBundle:
        """A freshly initialised model for ``role`` (its own seed: see ``TrainSettings.model_seed``),
        normalising its pixels as ``--pixel-norm`` says, measured on the curated set: the
        reference and every learner alike."""
        return start_model(self.cfg.model, self.cfg.train.model_seed(role), self.cfg.train.batch_size, self.device,
                           pixel_stats=self.pixel_stats)

    @functools.cached_property
    def pixel_stats(self) -> PixelStats | None:
        return stats_for_new_model(self.cfg.train.pixel_norm, self.cfg.model, self.curated)

    def trainer(self, bundle: ModelBundle, patterns, settings: TrainSettings, name: str, **parts) -> OnlineTrainer:
        return OnlineTrainer(bundle, patterns, settings, checkpoint=self.out / "checkpoints" / f"{name}.pt",
                             evaluate=self.evaluator(), name=name, progress=self.progress,
                             on_evaluation=self.evaluation_line, **parts)

    def evaluation_line(self, step: int, steps: int, metrics: dict) -> None:
        tqdm.write(self.plan.eta_line(step, steps, metrics))

    # 0. what will happen, and for how long (rank 0 prints it)
    def make_plan(self) -> Plan:
        cfg, s = self.cfg, self.cfg.train
        learner = self.new_model("learner")
        flexi = flexi_patch_size(learner.model, s.flexi, s.flexi_patch_size)
        timing = self.timing = Timing.measure(learner, self.web[0], decode=s.decode, score_patch_size=flexi,
                                              score_precision=s.score_precision or "fp32",
                                              train_precision=s.train_precision or "fp32")
        del learner
        n_eval, done = len(self.eval_set), lambda name: (self.out / "runs" / f"{name}.json").exists()  # noqa: E731
        if cfg.reference:
            stages = [Stage("reference", f"reuse {cfg.reference}", timing.evaluations(1, n_eval), done("reference"))]
        else:
            what = f"{cfg.reference_steps} steps, b={s.batch_size}, on {len(self.curated)} curated shard(s)"
            seconds = (timing.training(cfg.reference_steps, s.batch_size, s.batch_size, False, s.workers)
                       + timing.evaluations(evaluations(cfg.reference_steps, s.eval_every), n_eval))
            stages = [Stage("reference", what, seconds, done("reference"))]
        if any(criterion(m).needs_reference for m in cfg.methods):
            todo = self.web
            if done("reference"):
                todo = [shard for shard in self.web if not cache_path(self.cache_folder(), shard).exists()]
            per_shard = sum(isinstance(x, RawSample) for x in iter_samples(self.web[:1]))
            stages.append(Stage("reference embeddings", f"embed {len(todo)} of {len(self.web)} web shard(s), "
                                f"~{per_shard * len(todo):,} samples", per_shard * len(todo) *
                                (timing.forward + timing.preprocess + timing.decode + timing.read), not todo))
        for method in cfg.methods:
            settings = cfg.settings_for(method)  # an offline criterion trains uniformly on its kept part
            chosen = criterion(settings.method)
            b, big = settings.batch_size, settings.selector().super_batch
            what = f"{settings.steps} steps, " + (f"b={b} chosen from B={big}" if not chosen.random else
                                                  f"b={b} at random" if settings.method == method else
                                                  f"b={b} at random from its top {1 - s.filter_ratio:.0%} of the web")
            if method == s.method:
                what += f"; writes filtered/ (rule {cfg.filtered_rule})"
            selecting = settings.select_steps if not chosen.random else 0  # then plain batches of b
            seconds = (timing.training(selecting, big, b, chosen.needs_learner, s.workers)
                       + timing.training(settings.steps - selecting, b, b, False, s.workers)
                       + timing.evaluations(evaluations(settings.steps, s.eval_every), n_eval))
            stages.append(Stage(method, what, seconds, done(method)))
        return Plan(stages)

    def workers_line(self) -> str:
        """How many loader workers the main method needs to keep up with its device, from the
        timed step of ``make_plan``, against the number it has."""
        s, timing = self.cfg.train, self.timing
        b = s.batch_size // self.world.size
        chosen = criterion(s.method)
        big = s.selector(self.world.size).super_batch // self.world.size if not chosen.random else b
        have = s.workers if s.workers is not None else default_workers(self.device)
        needed = timing.workers_needed(big, b, chosen.needs_learner)
        costs = (f"a loader worker reads a sample in {1e3 * timing.read:.2f} ms and decodes it in "
                 f"{1e3 * timing.decode:.2f} ms; this rank's device scores {big} and trains on {b} in "
                 f"{timing.step(big, b, chosen.needs_learner):.3f} s a step")
        if needed is None:
            return (f"loader: {costs}; no number of workers keeps up, since each one parses every sample's tar "
                    f"header: expect the device to wait (more, smaller ranks help)")
        verdict = "enough" if have >= needed else "too few: expect the device to wait (--workers)"
        return (f"loader: {costs}; keeping up needs {needed} worker{'s' * (needed != 1)} per rank, this run has "
                f"{have} ({verdict})")

    # 1. the reference: trained on the curated shards (or reused), evaluated, saved
    def reference(self) -> tuple[ModelBundle, dict]:
        cfg, out = self.cfg, self.out
        folder, metrics_path = out / "reference", out / "runs" / "reference.json"
        if metrics_path.exists() and folder.is_dir():
            return create_model(f"local-dir:{folder}", device=self.device), json.loads(metrics_path.read_text())
        if cfg.reference:
            bundle = create_model(cfg.reference, device=self.device)
            metrics = self.evaluator()(bundle)
            metrics = {**metrics, **verdict(metrics), "source": cfg.reference}
        else:
            bundle = self.new_model("reference")
            metrics = self.trainer(bundle, self.curated, cfg.reference_settings(), "reference").run()
        with main_first(self.world):
            if self.world.main:
                save_local_dir(bundle, folder)
                atomic_write_json(metrics_path, metrics)
        return bundle, metrics

    # 2. reference embeddings of the web data, computed once per reference model
    def cache_folder(self) -> Path:
        own = self.out / "cache" / f"reference-{_fingerprint(self.out / 'reference')}"
        return Path(self.cfg.reference_cache or own)

    def reference_cache(self, reference: ModelBundle) -> tuple[EmbeddingCache | None, dict]:
        """The cache, and what embedding the web pool with the reference cost (``flops``,
        ``seconds``; both 0 when no method needs it). The cost is recorded when the cache is
        first built here, so a resumed run still reports it."""
        record = self.out / "runs" / "reference_embedding.json"
        if not any(criterion(m).needs_reference for m in self.cfg.methods):
            return None, {"flops": 0.0, "seconds": 0.0}
        world, folder = self.world, self.cache_folder()
        # each rank embeds every world-th shard; after the barrier every rank's cache finds them all
        started = time.perf_counter()
        cache = build_cache(reference, self.web, folder, progress=self.progress, rank=world.rank,
                            world_size=world.size, decode=self.cfg.train.decode)
        barrier(world)
        cache.check_model(self.web, reference.model)
        if record.exists():
            return cache, json.loads(record.read_text())
        per_example = forward_flops(reference.model)
        cost = {"flops": float(cache.rows(self.web) * (per_example.image + per_example.text)),
                "seconds": time.perf_counter() - started}
        if world.main:
            atomic_write_json(record, cost)
        return cache, cost

    # 3. online training: the main method writes the filtered shards and the manifest; an offline
    #    criterion trains uniformly on the top 1 − f of the web data by its score
    def learner(self, method: str, cache: EmbeddingCache | None) -> dict:
        cfg, out, world = self.cfg, self.out, self.world
        run_path = out / "runs" / f"{method}.json"
        if run_path.exists():
            return json.loads(run_path.read_text())
        learner = self.new_model("learner")  # every method starts from the same initial learner
        main = method == cfg.train.method
        sink = FilteredOutput(out / "filtered", cfg.samples_per_shard, world=world, rule=cfg.filtered_rule,
                              keep_fraction=1 - cfg.train.filter_ratio, criterion=method,
                              seed=cfg.train.seed, manifest=cfg.manifest) if main else None
        offline = criterion(method).offline is not None
        kept = self.offline_keep(method, cache) if offline else None
        summary = self.trainer(learner, self.web, cfg.settings_for(method), method, reference=cache,
                               sink=sink, only=kept).run()
        if offline:
            summary = {**summary, "method": method, "offline_kept": len(kept)}
        if main:
            sink.close()
        if world.main:
            if main:
                save_local_dir(learner, out / "final")
                torch.save(sink.extremes.state_dict(), out / EXTREMES)
            atomic_write_json(run_path, summary)
        barrier(world)
        return summary

    def offline_keep(self, method: str, cache: EmbeddingCache) -> set[tuple[str, str]]:
        """(shard, key) of the top 1 − f of the web data by ``method``'s score under the reference,
        as `score` and `filter --column method --keep-fraction 1−f` would keep them."""
        scores = pool_scores(cache.cache_dir, self.web, self.cfg.train.seed)
        kept = top_fraction(scores, method, 1 - self.cfg.train.filter_ratio)
        return set(kept.select("shard", "key").iter_rows())

    def choose_precision(self) -> None:
        """Each phase's precision, decided once for the whole job (every model and arm alike, and
        a resumed job as it started): ``--precision auto`` times this machine (``choose_phases``)."""
        record, s = self.out / "runs" / "precision.json", self.cfg.train
        if record.exists():
            phases = Phases(**json.loads(record.read_text()))
        else:
            chosen = criterion(s.method)
            phases = choose_phases(s.precision, s.score_precision, s.train_precision, self.new_model("learner").model,
                                   s.selector(self.world.size).super_batch // self.world.size,
                                   s.batch_size // self.world.size, chosen.needs_learner)
            phases = broadcast_object(self.world, phases)
            if self.world.main:
                atomic_write_json(record, vars(phases))
        if self.world.main and phases.why != "as asked":
            print(phases.line(), flush=True)
        self.cfg.train = dataclasses.replace(s, score_precision=phases.score, train_precision=phases.train)

    def run(self) -> dict:
        """Run (or resume) the whole job; returns the metrics also written to ``metrics.json``."""
        cfg, out, main = self.cfg, self.out, self.world.main
        if (out / "metrics.json").exists() and all((out / "runs" / f"{m}.json").exists() for m in cfg.methods):
            if main:
                print(f"{out} holds a finished run: nothing to do (report: {out / 'report' / 'report.md'})")
            return json.loads((out / "metrics.json").read_text())
        started = time.perf_counter()
        self.choose_precision()
        self.plan = self.make_plan() if main else Plan([])
        if main:
            print("\n".join([*self.plan.lines(f"bootstrap → {out}, on {self.device} × {self.world.size} rank(s):"),
                             f"  {cfg.train.batch_summary(self.world.size)}", f"  {self.workers_line()}"]), flush=True)
        with self.stage("reference"):
            reference, reference_metrics = self.reference()
        if main:
            print(f"reference: zero-shot top-1 {reference_metrics['zeroshot_top1']:.3f}")
        with self.stage("reference embeddings"):
            cache, embedding = self.reference_cache(reference)
        del reference
        runs = {}
        for method in cfg.methods:
            with self.stage(method):
                runs[method] = self.learner(method, cache)
        if not main:
            return {}
        pool = cache.rows(self.web) if cache is not None else None
        metrics = self.report(reference_metrics, runs, embedding, pool, time.perf_counter() - started)
        if not cfg.keep_checkpoints:  # the run is complete: nothing to resume from any more
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
            (out / EXTREMES).unlink(missing_ok=True)
        return metrics

    @contextlib.contextmanager
    def stage(self, name: str):
        """Time one stage of the plan (a stage the plan leaves out is not timed)."""
        known = any(stage.name == name for stage in self.plan.stages)
        if known:
            self.plan.begin(name)
        yield
        if known:
            self.plan.end()

    # 4. metrics, report, summary (rank 0)
    def report(self, reference_metrics: dict, runs: dict[str, dict], embedding: dict, pool: int | None,
               seconds: float) -> dict:
        cfg, out = self.cfg, self.out
        manifest, dropped = scan_manifest(out / "filtered"), scan_dropped_counts(out / "filtered")  # read lazily
        for run in runs.values():  # passes over the web pool (before a whole pass: over the samples cached)
            run["web_passes"] = run["passes"] if run["passes"] is not None or not pool else run["rows_read"] / pool
        needs_reference = {m: criterion(m).needs_reference for m in runs}
        cost = costs(runs, reference_metrics, embedding, needs_reference)
        truth = self.inputs.truth
        filtered = filtered_counts(scan_pool(out / "filtered"), cfg.filtered_rule,
                                   pl.read_parquet(truth) if truth is not None else None,
                                   pool_size(manifest, dropped) if dropped is not None else None)
        speedup = speedups(runs, cost)
        cost["break_even"] = break_even(runs, cost, speedup)
        metrics = {
            "reference": {**reference_metrics, "web_passes": 0.0},  # trained on the curated data
            "final": runs[cfg.train.method],
            "compare": {m: r for m, r in runs.items() if m != cfg.train.method},
            "costs": cost,
            "speedup": speedup,
            "data": {**manifest_counts(manifest, dropped, scan_pool(out / "filtered")), "filtered": filtered},
            "config": asdict(cfg),
            "seconds": seconds,
        }
        atomic_write_json(out / "metrics.json", metrics)
        page = write_report(out, metrics, runs, manifest, read_extremes(out), truth=truth)
        print(summary_table(runs, metrics["speedup"]))
        print("\n".join(break_even_lines(cost["break_even"], cfg.train.steps)))
        print(filtered_line(filtered))
        print(f"report: {page}")
        return metrics


class Rounds:
    """``--rounds N``: round k+1 is a whole bootstrap in ``OUT/round-(k+1)/`` whose reference is
    round k's final model (its cache is named by the reference, so the web data is embedded
    again). A round whose ``metrics.json`` exists is done; the rounds stop early when a round's
    final model is not better than its reference. A comparison that does not use the reference
    (uniform) would train exactly as in round 1, so later rounds reuse its result."""

    def __init__(self, cfg: BootstrapConfig):
        cfg.validate()
        self.cfg, self.out = cfg, Path(cfg.out)
        self.world, _ = init_distributed(resolve_device(cfg.device))
        with main_first(self.world):
            self.inputs = prepare_data(cfg)

    def folder(self, k: int) -> Path:
        return self.out / f"round-{k}"

    def config(self, k: int) -> BootstrapConfig:
        if k == 1:
            return dataclasses.replace(self.cfg, out=str(self.folder(1)), rounds=1)
        return dataclasses.replace(self.cfg, out=str(self.folder(k)), rounds=1, reference_cache=None,
                                   reference=f"local-dir:{self.folder(k - 1) / 'final'}")

    def round(self, k: int) -> dict:
        """Round k's metrics (run or resumed here, or read when it is done), on every rank."""
        done = self.folder(k) / "metrics.json"
        if done.exists():
            return json.loads(done.read_text())
        if k > 1 and self.world.main:
            (self.folder(k) / "runs").mkdir(parents=True, exist_ok=True)
            for method in self.cfg.compare:
                first = self.folder(1) / "runs" / f"{method}.json"
                if not criterion(method).needs_reference and first.exists():
                    shutil.copy2(first, self.folder(k) / "runs" / first.name)
        metrics = Bootstrap(self.config(k), self.inputs).run()  # under the run's lock on OUT
        return broadcast_object(self.world, metrics if self.world.main else None)

    def run(self) -> dict:
        started = time.perf_counter()
        summaries, stopped = [], None
        for k in range(1, self.cfg.rounds + 1):
            metrics = self.round(k)
            summaries.append(round_summary(k, metrics))
            if self.cfg.early_stop and not summaries[-1]["improved"] and k < self.cfg.rounds:
                stopped = (f"round {k}'s final model (zero-shot {metrics['final']['zeroshot_top1']:.3f}) is not "
                           f"better than its reference ({metrics['reference']['zeroshot_top1']:.3f}): "
                           f"round {k + 1} not run")
                break
        if not self.world.main:
            return {}
        finals = {s["round"]: json.loads((self.folder(s["round"]) / "metrics.json").read_text()) for s in summaries}
        best = max(summaries, key=lambda s: s["final"]["zeroshot_top1"])["round"]
        metrics = {"rounds": summaries, "reference": finals[1]["reference"], "final": finals[len(summaries)]["final"],
                   "best_round": best, "stopped_early": stopped, "config": asdict(self.cfg),
                   "seconds": time.perf_counter() - started}
        atomic_write_json(self.out / "metrics.json", metrics)
        page = write_rounds_report(self.out, metrics, {k: m["final"] for k, m in finals.items()})
        print(rounds_table(summaries) + (f"\nstopped early: {stopped}" if stopped else ""))
        print(f"report: {page}")
        return metrics


def run_bootstrap(cfg: BootstrapConfig) -> dict:
    """Run (or resume) a bootstrap job; returns the metrics also written to ``metrics.json``.
    The job owns ``--out`` while it runs: rank 0 holds its lock (``jestfilter.data.lock``)."""
    cfg.validate()
    lock = lock_folder(cfg.out, init_distributed(resolve_device(cfg.device))[0])
    try:
        return (Bootstrap(cfg) if cfg.rounds == 1 else Rounds(cfg)).run()
    finally:
        if lock is not None:
            lock.release()


def read_extremes(out: Path) -> ExtremesTracker | None:
    """The most and least learnable examples the run kept for the report, if it kept any."""
    path = out / EXTREMES
    if not path.exists():
        return None
    tracker = ExtremesTracker()
    tracker.load_state_dict(torch.load(path, weights_only=True))
    return tracker
