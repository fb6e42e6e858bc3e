"""What a bootstrap run will do and for how long, from a timed step on this machine (rank 0
prints it at start), and whether the loader's workers keep up with the device."""

from __future__ import annotations

from jestfilter.data import RawSample, iter_samples
from jestfilter.embeddings import cache_path
from jestfilter.machine import default_workers
from jestfilter.models import flexi_patch_size
from jestfilter.pipeline.job import Job
from jestfilter.pipeline.layout import EMBEDDINGS, REFERENCE
from jestfilter.plan import Plan, Stage, Timing
from jestfilter.selection.criteria import criterion
from jestfilter.train.schedule import evaluations, step_plan


def measure(job: Job) -> Timing:
    """One timed step of the learner as the run will take it (decode, Flexi, precisions)."""
    s = job.cfg.train
    learner = job.new_model("learner")
    flexi = flexi_patch_size(learner.model, s.flexi, s.flexi_patch_size)
    return Timing.measure(learner, job.web[0], decode=s.decode, score_patch_size=flexi,
                          score_precision=s.score_precision or "fp32", train_precision=s.train_precision or "fp32")


def make_plan(job: Job, timing: Timing) -> Plan:
    """Every stage with what it does and its estimated seconds; ``RunLayout.done`` says which
    an earlier run finished."""
    cfg, s, layout = job.cfg, job.cfg.train, job.layout
    n_eval = len(job.eval_set)
    if cfg.reference:
        stages = [Stage(REFERENCE, f"reuse {cfg.reference}", timing.evaluations(1, n_eval), layout.done(REFERENCE))]
    else:
        what = f"{cfg.reference_steps} steps, b={s.batch_size}, on {len(job.curated)} curated shard(s)"
        seconds = (timing.training(cfg.reference_steps, s.batch_size, s.batch_size, False, s.workers)
                   + timing.evaluations(evaluations(cfg.reference_steps, s.eval_every), n_eval))
        stages = [Stage(REFERENCE, what, seconds, layout.done(REFERENCE))]
    if job.arms.need_reference:
        todo = job.web  # the cache's own shards say what is left to embed
        if layout.done(REFERENCE):
            todo = [shard for shard in job.web if not cache_path(layout.cache(cfg.reference_cache), shard).exists()]
        per_shard = sum(isinstance(x, RawSample) for x in iter_samples(job.web[:1]))
        stages.append(Stage(EMBEDDINGS, f"embed {len(todo)} of {len(job.web)} web shard(s), "
                            f"~{per_shard * len(todo):,} samples", per_shard * len(todo) *
                            (timing.forward + timing.preprocess + timing.decode + timing.read), not todo))
    for arm in job.arms.all:
        settings = arm.settings
        chosen = criterion(settings.method)
        b, big = settings.batch_size, settings.batches().super_batch
        read = step_plan(settings).mean_super_batch()  # B as the steps read it (--filter-ratio-end)
        what = f"{settings.steps} steps, " + (f"b={b} chosen from B={big}" if not chosen.random else
                                              f"b={b} at random" if not arm.offline else
                                              f"b={b} at random from its top {1 - s.filter_ratio:.0%} of the web")
        if arm.writes_filtered:
            what += f"; writes filtered/ (rule {cfg.filtered_rule})"
        selecting = settings.select_steps if not chosen.random else 0  # then plain batches of b
        seconds = (timing.training(selecting, read, b, chosen.needs_learner, s.workers)
                   + timing.training(settings.steps - selecting, b, b, False, s.workers)
                   + timing.evaluations(evaluations(settings.steps, s.eval_every), n_eval))
        stages.append(Stage(arm.name, what, seconds, layout.done(arm.name)))
    return Plan(stages)


def workers_line(job: Job, timing: Timing) -> str:
    """How many loader workers the main arm needs to keep up with its device, from the timed
    step, against the number it has."""
    s, world = job.arms.main.settings, job.world
    b = s.batch_size // world.size
    chosen = criterion(s.method)
    big = s.batches(world.size).super_batch // world.size
    have = s.workers if s.workers is not None else default_workers(job.device)
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
