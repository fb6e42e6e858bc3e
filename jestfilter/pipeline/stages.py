"""bootstrap's stages, each a function of the job (its layout and world) and, for a learner, its
arm. A stage that ``RunLayout.done`` calls done is read back, not run again."""

from __future__ import annotations

import time

from jestfilter.distributed import barrier, main_first
from jestfilter.embeddings import EmbeddingCache, build_cache
from jestfilter.models import ModelBundle, create_model, forward_flops, save_local_dir
from jestfilter.pipeline.arms import Arm
from jestfilter.pipeline.job import Job
from jestfilter.pipeline.layout import EMBEDDINGS, REFERENCE
from jestfilter.scores import pool_scores, top_fraction
from jestfilter.sinks import FilteredOutput
from jestfilter.train.stall import verdict

NO_COST = {"flops": 0.0, "seconds": 0.0}


def reference(job: Job) -> tuple[ModelBundle, dict]:
    """1. The reference: trained on the curated shards (or reused), evaluated, saved."""
    cfg, layout = job.cfg, job.layout
    if layout.done(REFERENCE):
        return create_model(f"local-dir:{layout.reference}", device=job.device), layout.read(REFERENCE)
    if cfg.reference:
        bundle = create_model(cfg.reference, device=job.device)
        metrics = job.evaluator()(bundle)
        metrics = {**metrics, **verdict(metrics), "source": cfg.reference}
    else:
        bundle = job.new_model("reference")
        metrics = job.trainer(bundle, job.curated, job.arms.reference, "reference").run()
    with main_first(job.world):
        if job.world.main:
            save_local_dir(bundle, layout.reference)
            layout.write(REFERENCE, metrics)
    return bundle, metrics


def reference_cache(job: Job, model: ModelBundle) -> tuple[EmbeddingCache | None, dict]:
    """2. The reference's embeddings of the web data (once per reference model), and what they
    cost (``flops``, ``seconds``; 0 when no arm needs them). The cost is recorded when the cache
    is first built here, so a resumed run still reports it."""
    if not job.arms.need_reference:
        return None, dict(NO_COST)
    world, layout = job.world, job.layout
    # each rank embeds every world-th shard; after the barrier every rank's cache finds them all
    started = time.perf_counter()
    cache = build_cache(model, job.web, layout.cache(job.cfg.reference_cache), progress=job.progress,
                        rank=world.rank, world_size=world.size, decode=job.cfg.train.decode)
    barrier(world)
    cache.check_model(job.web, model.model)
    if layout.done(EMBEDDINGS):
        return cache, layout.read(EMBEDDINGS)
    per_example = forward_flops(model.model)
    cost = {"flops": float(cache.rows(job.web) * (per_example.image + per_example.text)),
            "seconds": time.perf_counter() - started}
    if world.main:
        layout.write(EMBEDDINGS, cost)
    return cache, cost


def learner(job: Job, arm: Arm, cache: EmbeddingCache | None) -> dict:
    """3. One arm's learner, trained online on the web data: the main arm writes the filtered
    shards and the manifest; an offline arm trains uniformly on the top 1 − f by its score."""
    cfg, layout, world = job.cfg, job.layout, job.world
    if layout.done(arm.name):
        return layout.read(arm.name)
    model = job.new_model("learner")  # every arm starts from the same initial learner
    sink = FilteredOutput(layout.filtered, cfg.samples_per_shard, world=world, extremes_path=layout.extremes,
                          rule=cfg.filtered_rule, keep_fraction=1 - cfg.train.filter_ratio, criterion=arm.name,
                          seed=cfg.train.seed, manifest=cfg.manifest) if arm.writes_filtered else None
    kept = offline_keep(job, arm, cache) if arm.offline else None
    summary = job.trainer(model, job.web, arm.settings, arm.name, reference=cache, sink=sink, only=kept).run()
    if arm.offline:
        summary = {**summary, "method": arm.name, "offline_kept": len(kept)}
    if sink is not None:
        sink.close()  # rank 0's also saves the report's extremes
    if world.main:
        if arm.main:
            save_local_dir(model, layout.final)
        layout.write(arm.name, summary)
    barrier(world)
    return summary


def offline_keep(job: Job, arm: Arm, cache: EmbeddingCache) -> set[tuple[str, str]]:
    """(shard, key) of the top 1 − f of the web data by ``arm``'s score under the reference,
    as `score` and `filter --column NAME --keep-fraction 1−f` would keep them."""
    scores = pool_scores(cache.cache_dir, job.web, job.cfg.train.seed)
    kept = top_fraction(scores, arm.name, 1 - job.cfg.train.filter_ratio)
    return set(kept.select("shard", "key").iter_rows())
