"""bootstrap = reference → online JEST (+ filtered shards, manifest) → final model → evaluation.

Every stage leaves a marker when it is done (a model folder, a run's JSON, a finished shard
writer), so running the same command again after a crash redoes only what is missing.

Under torchrun every rank trains (see ``OnlineTrainer``), embeds its share of the web shards
and writes its own filtered shards (``filtered-r001-000000.tar``) and manifest parts; rank 0
alone writes models, ``sizes.json``/``_SUCCESS`` for all ranks' shards, metrics and the report.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from jestfilter.data import FilteredShardWriter, Manifest, atomic_write_json, expand_shards, read_manifest
from jestfilter.data.embeddings import EmbeddingCache, build_cache
from jestfilter.data.writer import write_summary
from jestfilter.distributed import World, barrier, gather_objects, init_distributed, main_first
from jestfilter.eval import evaluate, load_eval_set
from jestfilter.models import create_model, native_patch_size, save_local_dir
from jestfilter.report import ExtremesTracker, write_report
from jestfilter.selection.selector import CRITERIA
from jestfilter.train.online import OnlineTrainer, TrainSettings

METHODS = tuple(CRITERIA)  # learnability, independent, hard_learner, easy_reference, uniform


@dataclass
class BootstrapConfig:
    """Everything a bootstrap run needs; the CLI flags and ``--config`` files fill it."""

    curated: list[str] | None = None
    web: list[str] | None = None
    eval: str | None = None
    out: str = "runs/demo"
    method: str = "learnability"
    filter_ratio: float = 0.8
    steps: int = 600
    batch_size: int = 64
    reference_steps: int = 400
    reference: str | None = None  # local-dir:PATH of a reference to reuse instead of training one
    reference_cache: str | None = None  # the reference's web embeddings, e.g. from `jestfilter embed`
    model: str = "jest-tiny"
    flexi: bool = False
    flexi_patch_size: int | None = None  # default: twice the native patch size
    compare: list[str] = field(default_factory=list)
    seed: int = 0
    n_chunks: int = 16
    sampling: str = "softmax"
    gain: float = 1.0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05
    eval_every: int = 100
    checkpoint_every: int = 50
    samples_per_shard: int = 5000
    workers: int = 2
    shuffle_buffer: int = 2000
    device: str = "auto"
    progress: bool = True

    def validate(self) -> None:
        """Fail fast, with one line, on arguments that cannot work."""
        given = [self.curated is not None, self.web is not None, self.eval is not None]
        if any(given) and not all(given):
            raise ValueError("give --curated, --web and --eval together (or none of them for the demo)")
        if self.reference and not self.reference.startswith("local-dir:"):
            raise ValueError(f"--reference must be a local-dir:PATH folder, got {self.reference!r}")
        for name in [self.method, *self.compare]:
            if name not in METHODS:
                raise ValueError(f"unknown method {name!r}: choose from {', '.join(METHODS)}")
        if not 0.0 < self.filter_ratio < 1.0:
            raise ValueError(f"--filter-ratio must lie strictly between 0 and 1, got {self.filter_ratio}")
        for name in ("steps", "batch_size", "eval_every", "checkpoint_every", "samples_per_shard", "n_chunks"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.reference_steps < 1 and not self.reference:
            raise ValueError("--reference-steps must be positive (or pass --reference local-dir:PATH)")
        if self.method != "uniform" and self.method != "independent" and self.batch_size % self.n_chunks:
            raise ValueError(f"--batch-size {self.batch_size} must be a multiple of --n-chunks {self.n_chunks}")

    def init_bias(self) -> dict:
        """Start new models at bias log(1/(b−1)), not −10: at small b it learns faster (docs/benchmarks.md)."""
        local = self.model.startswith("local-dir:")
        return {} if local else {"bias_for_batch_size": self.batch_size}

    def settings(self, method: str, steps: int, flexi_patch_size: int | None) -> TrainSettings:
        return TrainSettings(
            steps=steps, batch_size=self.batch_size, method=method, filter_ratio=self.filter_ratio,
            n_chunks=self.n_chunks, sampling=self.sampling, gain=self.gain, seed=self.seed, lr=self.lr,
            weight_decay=self.weight_decay, warmup=self.warmup, flexi_patch_size=flexi_patch_size,
            eval_every=self.eval_every, checkpoint_every=self.checkpoint_every, workers=self.workers,
            shuffle_buffer=self.shuffle_buffer)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def prepare_data(cfg: BootstrapConfig) -> tuple[list[str], list[str], str]:
    """The curated and web shard lists and the eval folder; the demo data when none is given."""
    if cfg.curated is None:
        from jestfilter.data.demo import build_demo_data

        demo = build_demo_data(Path(cfg.out) / "demo-data", seed=cfg.seed, progress=cfg.progress)
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


def run_bootstrap(cfg: BootstrapConfig) -> dict:
    """Run (or resume) the whole job; returns the metrics also written to ``metrics.json``."""
    cfg.validate()
    started = time.perf_counter()
    out = Path(cfg.out)
    world, device = init_distributed(resolve_device(cfg.device))
    progress = cfg.progress and world.main
    with main_first(world):  # rank 0 builds the demo data, the others find it built
        (out / "runs").mkdir(parents=True, exist_ok=True)
        curated, web, eval_dir = prepare_data(cfg)
    eval_set = load_eval_set(eval_dir)

    # 1. the reference: trained on the curated shards (or reused), evaluated, saved
    reference_dir = out / "reference"
    reference_metrics_path = out / "runs" / "reference.json"
    if reference_metrics_path.exists() and reference_dir.is_dir():
        reference_metrics = json.loads(reference_metrics_path.read_text())
        reference = create_model(f"local-dir:{reference_dir}", device=device)
    elif cfg.reference:
        reference = create_model(cfg.reference, device=device)
        reference_metrics = {**evaluate(reference, eval_set, device=device), "source": cfg.reference}
    else:
        torch.manual_seed(cfg.seed)
        reference = create_model(cfg.model, device=device, **cfg.init_bias())
        trainer = OnlineTrainer(reference, curated, cfg.settings("uniform", cfg.reference_steps, None),
                                checkpoint=out / "checkpoints" / "reference.pt", eval_set=eval_set,
                                name="reference", progress=progress)
        reference_metrics = trainer.run()
    with main_first(world):
        if world.main and not reference_metrics_path.exists():
            save_local_dir(reference, reference_dir)
            atomic_write_json(reference_metrics_path, reference_metrics)
    if world.main:
        print(f"reference: zero-shot top-1 {reference_metrics['zeroshot_top1']:.3f}")

    # 2. reference embeddings of the web data, computed once per reference model
    methods = [cfg.method] + [m for m in cfg.compare if m != cfg.method]
    cache = None
    if any(m in ("learnability", "independent", "easy_reference") for m in methods):
        cache_dir = cfg.reference_cache or out / "cache" / f"reference-{_fingerprint(reference_dir)}"
        # each rank embeds every world-th shard; after the barrier every rank's cache finds them all
        build_cache(reference, sorted(web)[world.rank::world.size], cache_dir, progress=progress)
        barrier(world)
        cache = EmbeddingCache(cache_dir)
        cache.check_model(web, reference.model)
    del reference

    # 3. online training: the main method writes the filtered shards and the manifest
    runs: dict[str, dict] = {}
    tracker = None
    for method in methods:
        run_path = out / "runs" / f"{method}.json"
        if run_path.exists():
            runs[method] = json.loads(run_path.read_text())
            continue
        torch.manual_seed(cfg.seed)  # every method starts from the same initial learner
        learner = create_model(cfg.model, device=device, **cfg.init_bias())
        flexi = (cfg.flexi_patch_size or 2 * native_patch_size(learner.model)) if cfg.flexi else None
        main = method == cfg.method
        tracker = ExtremesTracker() if main and world.main else None  # rank 0's rows only
        filtered = out / "filtered"
        writer, manifest = (filtered_outputs(filtered, cfg.samples_per_shard, world) if main else (None, None))
        trainer = OnlineTrainer(
            learner, web, cfg.settings(method, cfg.steps, flexi), checkpoint=out / "checkpoints" / f"{method}.pt",
            eval_set=eval_set, reference=cache, writer=writer, manifest=manifest, tracker=tracker, name=method,
            progress=progress)
        runs[method] = trainer.run()
        if main:
            writer.close(summary=world.size == 1)
            manifest.close()
            all_sizes = gather_objects(world, writer.sizes)
        if world.main:
            if main:
                if world.size > 1:
                    write_summary(filtered, {k: v for sizes in all_sizes for k, v in sizes.items()})
                save_local_dir(learner, out / "final")
                write_extremes(out, tracker)
            atomic_write_json(run_path, runs[method])
        barrier(world)
    if not world.main:
        return {}

    # 4. metrics, report, summary (rank 0)
    manifest = read_manifest(out / "filtered")
    metrics = {
        "reference": reference_metrics,
        "final": runs[cfg.method],
        "compare": {m: r for m, r in runs.items() if m != cfg.method},
        "speedup": speedups(runs),
        "data": manifest_counts(manifest),
        "config": asdict(cfg),
        "seconds": time.perf_counter() - started,
    }
    atomic_write_json(out / "metrics.json", metrics)
    truth = out / "demo-data" / "web_truth.parquet" if cfg.curated is None else None
    page = write_report(out, metrics, runs, manifest, read_extremes(out), truth=truth)
    print(summary_table(runs, metrics["speedup"]))
    print(f"report: {page}")
    return metrics


def filtered_outputs(folder: Path, samples_per_shard: int, world: World) -> tuple[FilteredShardWriter, Manifest]:
    """The shard writer and manifest of this rank (one of each per rank under torchrun)."""
    if world.size == 1:
        return FilteredShardWriter(folder, samples_per_shard, prefix="filtered"), Manifest(folder)
    return (FilteredShardWriter(folder, samples_per_shard, prefix=f"filtered-r{world.rank:03d}"),
            Manifest(folder, part_prefix=f"rank-{world.rank:05d}-part"))


def write_extremes(out: Path, tracker: ExtremesTracker) -> None:
    torch.save(tracker.state_dict(), out / "report-extremes.pt")


def read_extremes(out: Path) -> ExtremesTracker | None:
    path = out / "report-extremes.pt"
    if not path.exists():
        return None
    tracker = ExtremesTracker()
    tracker.load_state_dict(torch.load(path, weights_only=True))
    return tracker


def manifest_counts(manifest) -> dict:
    """Kept / dropped / rejected counts, and rejections and unscored drops by reason."""
    counts = {row["decision"]: row["len"] for row in manifest.group_by("decision").len().iter_rows(named=True)}

    def by_reason(decision: str) -> dict:
        rows = manifest.filter(manifest["decision"] == decision, manifest["reason"].is_not_null())
        return {row["reason"]: row["len"] for row in rows.group_by("reason").len().iter_rows(named=True)}

    return {"rows": manifest.height, "decisions": counts, "rejected_by_reason": by_reason("rejected"),
            "dropped_by_reason": by_reason("dropped"),  # short_super_batch under torchrun
            "unique_kept": manifest.filter(manifest["decision"] == "kept")["key"].n_unique()}


def examples_to_reach(run: dict, target: float) -> tuple[float, float] | None:
    """(examples seen, seconds) at the first evaluation where ``run`` reaches ``target``."""
    for (seen, top1), (seconds, _) in zip(run["curve"], run["time_curve"]):
        if top1 >= target:
            return seen, seconds
    return None


def speedups(runs: dict[str, dict]) -> dict:
    """How much sooner each method reaches uniform's final zero-shot accuracy (examples and time)."""
    if "uniform" not in runs:
        return {}
    uniform = runs["uniform"]
    target = uniform["zeroshot_top1"]
    result = {}
    for method, run in runs.items():
        reached = examples_to_reach(run, target)
        if reached is None:
            result[method] = {"reached": False}
            continue
        seen, seconds = reached
        result[method] = {"reached": True, "examples": seen, "seconds": seconds,
                          "examples_ratio": seen / max(1, uniform["examples_seen"]),
                          "time_ratio": seconds / max(1e-9, uniform["train_seconds"])}
    return result


def summary_table(runs: dict[str, dict], speedup: dict) -> str:
    lines = ["", f"{'method':16s} {'zero-shot':>9s} {'R@1':>6s} {'examples':>9s} {'s/step':>7s} {'reach uniform':>14s}"]
    for method, run in runs.items():
        reach = speedup.get(method, {})
        reached = f"{reach['examples_ratio']:.2f}x ex" if reach.get("reached") else ("-" if not reach else "never")
        lines.append(f"{method:16s} {run['zeroshot_top1']:9.3f} {run['retrieval_r1']:6.3f} "
                     f"{run['examples_seen']:9d} {run['seconds_per_step']:7.3f} {reached:>14s}")
    return "\n".join(lines)

