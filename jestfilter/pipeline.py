"""bootstrap = reference → online JEST (+ filtered shards, manifest) → final model → evaluation.

Every stage leaves a marker when it is done (a model folder, a run's JSON, a finished shard
writer), so running the same command again after a crash redoes only what is missing.

Under torchrun every rank trains (see ``OnlineTrainer``), embeds its share of the web shards
and writes its own filtered shards and manifest parts (see ``FilteredOutput``); rank 0 alone
writes models, metrics and the report.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from jestfilter.config import BootstrapConfig, TrainSettings
from jestfilter.data import atomic_write_json, expand_shards, read_manifest
from jestfilter.distributed import barrier, init_distributed, main_first, resolve_device
from jestfilter.embeddings import EmbeddingCache, build_cache
from jestfilter.eval import evaluate, load_eval_set
from jestfilter.models import ModelBundle, create_model, forward_flops, save_local_dir
from jestfilter.report import write_report
from jestfilter.results import costs, manifest_counts, speedups, summary_table
from jestfilter.selection.criteria import criterion
from jestfilter.sinks import ExtremesTracker, FilteredOutput
from jestfilter.train.loop import OnlineTrainer

EXTREMES = "report-extremes.pt"


def prepare_data(cfg: BootstrapConfig) -> tuple[list[str], list[str], str]:
    """The curated and web shard lists and the eval folder; the demo data when none is given."""
    if cfg.curated is None:
        from jestfilter.datasets.demo import build_demo_data

        demo = build_demo_data(Path(cfg.out) / "demo-data", seed=cfg.train.seed, progress=cfg.progress)
        return expand_shards(demo.curated), expand_shards(demo.web), str(demo.eval)
    eval_dir = Path(cfg.eval)
    if not eval_dir.is_dir():
        raise FileNotFoundError(f"--eval directory not found: {eval_dir}")
    return expand_shards(cfg.curated), expand_shards(cfg.web), str(eval_dir)


def _fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


class Bootstrap:
    """One bootstrap job's stages, each skipped when its marker says it is done."""

    def __init__(self, cfg: BootstrapConfig):
        cfg.validate()
        self.cfg, self.out = cfg, Path(cfg.out)
        self.world, self.device = init_distributed(resolve_device(cfg.device))
        self.progress = cfg.progress and self.world.main
        with main_first(self.world):  # rank 0 builds the demo data, the others find it built
            (self.out / "runs").mkdir(parents=True, exist_ok=True)
            self.curated, self.web, eval_dir = prepare_data(cfg)
        self.eval_set = load_eval_set(eval_dir)

    def evaluator(self):
        eval_set, device = self.eval_set, self.device
        return lambda bundle: evaluate(bundle, eval_set, device=device)

    def new_model(self, role: str) -> ModelBundle:
        """A freshly initialised model for ``role`` (its own seed: see ``TrainSettings.model_seed``)."""
        torch.manual_seed(self.cfg.train.model_seed(role))
        return create_model(self.cfg.model, device=self.device, **self.cfg.init_bias())

    def trainer(self, bundle: ModelBundle, patterns, settings: TrainSettings, name: str, **parts) -> OnlineTrainer:
        return OnlineTrainer(bundle, patterns, settings, checkpoint=self.out / "checkpoints" / f"{name}.pt",
                             evaluate=self.evaluator(), name=name, progress=self.progress, **parts)

    # 1. the reference: trained on the curated shards (or reused), evaluated, saved
    def reference(self) -> tuple[ModelBundle, dict]:
        cfg, out = self.cfg, self.out
        folder, metrics_path = out / "reference", out / "runs" / "reference.json"
        if metrics_path.exists() and folder.is_dir():
            return create_model(f"local-dir:{folder}", device=self.device), json.loads(metrics_path.read_text())
        if cfg.reference:
            bundle = create_model(cfg.reference, device=self.device)
            metrics = {**self.evaluator()(bundle), "source": cfg.reference}
        else:
            bundle = self.new_model("reference")
            metrics = self.trainer(bundle, self.curated, cfg.reference_settings(), "reference").run()
        with main_first(self.world):
            if self.world.main:
                save_local_dir(bundle, folder)
                atomic_write_json(metrics_path, metrics)
        return bundle, metrics

    # 2. reference embeddings of the web data, computed once per reference model
    def reference_cache(self, reference: ModelBundle) -> tuple[EmbeddingCache | None, float]:
        """The cache, and the FLOPs of embedding the web pool with the reference (0 without one)."""
        if not any(criterion(m).needs_reference for m in self.cfg.methods):
            return None, 0.0
        world = self.world
        folder = self.cfg.reference_cache or self.out / "cache" / f"reference-{_fingerprint(self.out / 'reference')}"
        # each rank embeds every world-th shard; after the barrier every rank's cache finds them all
        build_cache(reference, sorted(self.web)[world.rank::world.size], folder, progress=self.progress)
        barrier(world)
        cache = EmbeddingCache(folder)
        cache.check_model(self.web, reference.model)
        per_example = forward_flops(reference.model)
        return cache, float(cache.rows(self.web) * (per_example.image + per_example.text))

    # 3. online training: the main method writes the filtered shards and the manifest
    def learner(self, method: str, cache: EmbeddingCache | None) -> dict:
        cfg, out, world = self.cfg, self.out, self.world
        run_path = out / "runs" / f"{method}.json"
        if run_path.exists():
            return json.loads(run_path.read_text())
        learner = self.new_model("learner")  # every method starts from the same initial learner
        main = method == cfg.train.method
        sink = FilteredOutput(out / "filtered", cfg.samples_per_shard, world=world) if main else None
        summary = self.trainer(learner, self.web, cfg.settings_for(method), method, reference=cache,
                               sink=sink).run()
        if main:
            sink.close()
        if world.main:
            if main:
                save_local_dir(learner, out / "final")
                torch.save(sink.extremes.state_dict(), out / EXTREMES)
            atomic_write_json(run_path, summary)
        barrier(world)
        return summary

    def run(self) -> dict:
        """Run (or resume) the whole job; returns the metrics also written to ``metrics.json``."""
        started = time.perf_counter()
        reference, reference_metrics = self.reference()
        if self.world.main:
            print(f"reference: zero-shot top-1 {reference_metrics['zeroshot_top1']:.3f}")
        cache, embedding_flops = self.reference_cache(reference)
        del reference
        runs = {method: self.learner(method, cache) for method in self.cfg.methods}
        if not self.world.main:
            return {}
        pool = cache.rows(self.web) if cache is not None else None
        return self.report(reference_metrics, runs, embedding_flops, pool, time.perf_counter() - started)

    # 4. metrics, report, summary (rank 0)
    def report(self, reference_metrics: dict, runs: dict[str, dict], embedding_flops: float, pool: int | None,
               seconds: float) -> dict:
        cfg, out = self.cfg, self.out
        manifest = read_manifest(out / "filtered")
        for run in runs.values():  # passes over the web pool (before a whole pass: over the samples cached)
            run["web_passes"] = run["passes"] if run["passes"] is not None or not pool else run["rows_read"] / pool
        needs_reference = {m: criterion(m).needs_reference for m in runs}
        cost = costs(runs, reference_metrics.get("flops", 0.0), embedding_flops, needs_reference)
        one_off = {m: cost["total_flops"][m] - runs[m]["flops"] for m in runs}
        metrics = {
            "reference": {**reference_metrics, "web_passes": 0.0},  # trained on the curated data
            "final": runs[cfg.train.method],
            "compare": {m: r for m, r in runs.items() if m != cfg.train.method},
            "costs": cost,
            "speedup": speedups(runs, one_off),
            "data": manifest_counts(manifest),
            "config": asdict(cfg),
            "seconds": seconds,
        }
        atomic_write_json(out / "metrics.json", metrics)
        truth = out / "demo-data" / "web_truth.parquet" if cfg.curated is None else None
        page = write_report(out, metrics, runs, manifest, read_extremes(out), truth=truth)
        print(summary_table(runs, metrics["speedup"]))
        print(f"report: {page}")
        return metrics


def run_bootstrap(cfg: BootstrapConfig) -> dict:
    """Run (or resume) a bootstrap job; returns the metrics also written to ``metrics.json``."""
    return Bootstrap(cfg).run()


def read_extremes(out: Path) -> ExtremesTracker | None:
    path = out / EXTREMES
    if not path.exists():
        return None
    tracker = ExtremesTracker()
    tracker.load_state_dict(torch.load(path, weights_only=True))
    return tracker
